"""Adaptation methods, one file each, behind one registry.

An entry holds the method's options and a one-line summary, and imports the method's file (and
with it torch) only when the method is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raydm.methods.options import CGDMArgs, DANNArgs, MethodArgs, SourceOnlyArgs
from raydm.registry import Registry

if TYPE_CHECKING:
    from raydm.methods.base import Method


@dataclass(frozen=True)
class MethodEntry:
    Args: type[MethodArgs]
    summary: str
    implementation: str  # "module:class"

    def load(self) -> type[Method]:
        module, _, name = self.implementation.partition(":")
        return getattr(importlib.import_module(module), name)


METHODS: Registry[MethodEntry] = Registry("method")
METHODS.register("source_only")(
    MethodEntry(
        SourceOnlyArgs,
        "The baseline: the same network trained on the source alone.",
        "raydm.methods.source_only:SourceOnly",
    )
)
METHODS.register("dann")(
    MethodEntry(
        DANNArgs,
        "DANN (Ganin & Lempitsky 2015): gradient reversal, lambda_p schedule.",
        "raydm.methods.dann:DANN",
    )
)
METHODS.register("cgdm")(
    MethodEntry(
        CGDMArgs,
        "CGDM (Su et al. 2021): two heads, gradient discrepancy, cluster pseudo-labels.",
        "raydm.methods.cgdm:CGDM",
    )
)
