"""A source and a target domain as the four parts a UDA trial needs.

Source train, source validation (held out, seeded, for label-free selection), target train
(labels never given to a method) and target test (labelled, only for the oracle figure).
Digit-size data is held as uint8 tensors (shared with trials once through the object store);
image files too large for memory stay on disk and are decoded per batch
(``raydm.data.pipeline``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from raydm import data
from raydm.data import files
from raydm.data.samples import DomainSamples, ImageFiles, LabelledSet, seed_for

if TYPE_CHECKING:
    from raydm.sections import DataConfig


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


@dataclass(frozen=True)
class IndexedPair:
    """Both domains found, their classes matched and their parts split; image files not yet
    read. What can be wrong with a config's data shows here, in a fraction of a second,
    except unreadable images, which ``load`` finds."""

    config: DataConfig
    parts: dict[str, tuple[str, LabelledSet | ImageFiles]]  # part name: (role, samples)
    class_names: tuple[str, ...]

    def load(self) -> DomainPair:
        """Decode image files into memory when they fit ``data.memory_budget_mb`` (or as
        ``data.storage`` says); otherwise check they can be read."""
        in_memory = _fits_in_memory(self.config, [part for _, part in self.parts.values()])
        loaded = {}
        for key, (role, part) in self.parts.items():
            try:
                loaded[key] = _load_part(part, self.config, in_memory)
            except ValueError as err:
                raise DataError(f"data.{role}: {err}") from None
        first, size = loaded["source_train"], self.config.image_size
        if isinstance(first, ImageFiles):
            input_shape = (self.config.image_channels, size, size)
        else:
            input_shape = tuple(first.inputs.shape[1:])
        return DomainPair(**loaded, class_names=self.class_names, input_shape=input_shape)


def index_domain_pair(config: DataConfig) -> IndexedPair:
    """Build both domains, check they share their classes, and split them."""
    built: dict[str, DomainSamples] = {}
    for role in ("source", "target"):
        try:
            built[role] = data.find_domain(getattr(config, role)).build(config)
        except ValueError as err:
            raise DataError(f"data.{role}: {err}") from None
    source, target = built["source"], built["target"]
    if source.class_names != target.class_names:
        if set(source.class_names) == set(target.class_names):
            # Folder classes sort as text (1, 10, 2), list labels as numbers (1, 2, 10).
            raise DataError(
                f"data.source {config.source} and data.target {config.target} have the same "
                f"classes in another order ({', '.join(source.class_names)} against "
                f"{', '.join(target.class_names)}): the class indices would not match; give "
                "both domains the same way, as folders or as lists"
            )
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
    return IndexedPair(config, parts, source.class_names)


def load_domain_pair(config: DataConfig) -> DomainPair:
    """Both domains, split, their images decoded into memory when they fit (``IndexedPair``)."""
    return index_domain_pair(config).load()


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
