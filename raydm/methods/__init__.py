"""Adaptation methods, one file each, behind one registry."""

from raydm.methods.base import Method
from raydm.methods.cgdm import CGDM
from raydm.methods.dann import DANN
from raydm.methods.source_only import SourceOnly
from raydm.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")
METHODS.register("source_only")(SourceOnly)
METHODS.register("dann")(DANN)
METHODS.register("cgdm")(CGDM)
