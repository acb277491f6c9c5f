"""The tensors a domain is made of."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LabelledSet:
    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> LabelledSet:
        return LabelledSet(self.inputs[index], self.labels[index])


@dataclass(frozen=True)
class DomainSamples:
    """What a domain builder returns; ``test`` is None when the data has no official split."""

    train: LabelledSet
    test: LabelledSet | None
    class_names: tuple[str, ...]


def seed_for(seed: int, purpose: str) -> int:
    """A seed per purpose, so that adding a random draw elsewhere does not shift this one."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")
