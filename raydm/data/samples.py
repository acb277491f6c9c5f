"""The tensors a domain is made of."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelledSet:
    inputs: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> LabelledSet:
        return LabelledSet(self.inputs[index], self.labels[index])


@dataclass(frozen=True, eq=False)
class ImageFiles:
    """Labelled images still on disk: decoded once into a ``LabelledSet`` when they fit the
    memory budget, or batch by batch by DataLoader workers when they do not."""

    paths: np.ndarray  # of str: subsets index it as fast as the labels
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> ImageFiles:
        return ImageFiles(self.paths[index.numpy()], self.labels[index])


@dataclass(frozen=True)
class DomainSamples:
    """What a domain builder returns; ``test`` is None when the data has no official split."""

    train: LabelledSet | ImageFiles
    test: LabelledSet | ImageFiles | None
    class_names: tuple[str, ...]


def fit_images(images: torch.Tensor, config) -> torch.Tensor:
    """uint8 N x C x H x W images at ``data.image_size`` square with ``data.image_channels``."""
    images = images.to(torch.uint8)
    if images.shape[1] == 3 and config.image_channels == 1:
        luminance = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        images = (images.float() * luminance).sum(1, keepdim=True).round().to(torch.uint8)
    elif images.shape[1] == 1 and config.image_channels == 3:
        images = images.expand(-1, 3, -1, -1)
    size = (config.image_size, config.image_size)
    if tuple(images.shape[2:]) != size:
        resized = F.interpolate(images.float(), size=size, mode="bilinear", antialias=True)
        images = resized.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


def seed_for(seed: int, purpose: str) -> int:
    """A seed per purpose, so that adding a random draw elsewhere does not shift this one."""
    digest = hashlib.sha256(f"{seed}:{purpose}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def cached(path: Path, build: Callable[[], Any], what: str) -> Any:
    """The tensors saved at ``path``, or ``build()``'s, saved there first.

    The file is written under a temporary name and renamed, so builders running at once
    (trials on one machine) never read half a file.
    """
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a broken file
            log.warning("rebuilding %s: %s is unreadable (%s)", what, path, err)
    log.info("building %s into %s (once; later runs reuse it)", what, path)
    built = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".tmp{random.getrandbits(32)}")
    torch.save(built, partial)
    partial.replace(path)
    return built
