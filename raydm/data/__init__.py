"""One place for domains: named builders, splits, and the in-memory tensors trials train on.

A domain builder returns its labelled samples as tensors (uint8 images N×C×H×W, or float
points N×D), with a test part when the dataset has one. ``load_domain_pair`` turns a source and
a target into the four parts a UDA trial needs: source train, source validation (held out,
seeded, for label-free selection), target train (labels never given to a method) and target
test (labelled, only for the oracle figure).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from raydm.data import digits, files, moons, standard
from raydm.data.samples import DomainSamples, LabelledSet, seed_for
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
        "images", digits.build_printed, "digits rendered from TrueType fonts, 32x32 grey"
    ),
    "digits_handwritten": Domain(
        "images", digits.build_handwritten, "scikit-learn's handwritten digits, 8x8 to 32x32"
    ),
    "mnist": Domain("images", standard.build_mnist, "MNIST 60k/10k (torchvision download)"),
    "usps": Domain("images", standard.build_usps, "USPS 7,291/2,007 (libsvm .bz2 files)"),
    "svhn": Domain("images", standard.build_svhn, "SVHN 73,257/26,032 (.mat files)"),
}.items():
    DOMAINS.register(_name)(_domain)


# Domains named by a prefix and a path: the user's own data.
PATH_DOMAINS = {
    "folder": (files.check_folder, files.build_folder, "an ImageFolder tree: PATH/<class>/<image>"),
    "list": (files.check_list, files.build_list, "an image list: 'relative/path label' lines"),
}


def find_domain(name: str, root: Path) -> Domain:
    """The domain called ``name``: a registered one, ``folder:PATH`` / ``list:FILE``, or a
    domain of Office-31, Office-Home or VisDA under ``root`` (``office31:amazon``).

    Raises ValueError with a message fit for a one-line user error.
    """
    prefix, sep, location = name.partition(":")
    if sep and prefix in standard.IMAGE_BENCHMARKS:
        path = standard.benchmark_location(prefix, location, root)
        kind = "list" if path.suffix == ".txt" else "folder"
        return Domain("images", functools.partial(PATH_DOMAINS[kind][1], path), name)
    if sep and prefix in PATH_DOMAINS:
        check, build, description = PATH_DOMAINS[prefix]
        path = Path(location).expanduser().resolve()
        check(path)
        return Domain("images", functools.partial(build, path), description)
    if name not in DOMAINS:
        prefixes = ", ".join(
            [f"{p}:PATH" for p in PATH_DOMAINS]
            + [f"{b}:{'|'.join(d)}" for b, (d, _) in standard.IMAGE_BENCHMARKS.items()]
        )
        raise ValueError(f"{DOMAINS.unknown_message(name)}, {prefixes}")
    return DOMAINS.get(name)


@dataclass(frozen=True)
class DomainPair:
    source_train: LabelledSet
    source_val: LabelledSet
    target_train: LabelledSet
    target_test: LabelledSet
    class_names: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.source_train.inputs.shape[1:])


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


class DataError(ValueError):
    """The data a config names cannot be loaded; the message is one line for the user."""


def load_domain_pair(config: DataConfig) -> DomainPair:
    try:
        source = find_domain(config.source, config.root_path).build(config)
        target = find_domain(config.target, config.root_path).build(config)
    except ValueError as err:
        raise DataError(str(err)) from None
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
        train_index_t, test_index_t = stratified_split(
            target.train.labels, config.target_test_fraction, seed_for(config.seed, "target-test")
        )
        target_train, target_test = (
            target.train.subset(train_index_t),
            target.train.subset(test_index_t),
        )
    return DomainPair(
        source_train=source.train.subset(train_index),
        source_val=source.train.subset(val_index),
        target_train=target_train,
        target_test=target_test,
        class_names=source.class_names,
    )
