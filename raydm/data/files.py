"""Domains from the user's own files: an ImageFolder tree or an image-list file.

``folder:PATH``: one sub-folder per class, class names from the folder names (sorted).
``list:FILE``: one sample per line, ``relative/path label``; the label is the last token (paths
may contain spaces) and paths are relative to the list's folder. Images are decoded once, resized
to ``data.image_size`` square and held as uint8 tensors (grey or RGB per ``data.image_channels``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raydm.data.samples import DomainSamples, LabelledSet

if TYPE_CHECKING:
    from raydm.config import DataConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def check_folder(path: Path) -> None:
    """Raise ValueError, naming the path, unless it is an ImageFolder tree."""
    if not path.is_dir():
        raise ValueError(f"folder {path} does not exist")
    if not any(child.is_dir() for child in path.iterdir()):
        raise ValueError(f"folder {path} has no class sub-folders (expected PATH/<class>/<image>)")


def check_list(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"image list {path} does not exist")


def build_folder(path: Path, config: DataConfig) -> DomainSamples:
    check_folder(path)
    class_names = tuple(sorted(child.name for child in path.iterdir() if child.is_dir()))
    files, labels = [], []
    for index, name in enumerate(class_names):
        images = sorted(p for p in (path / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        files += images
        labels += [index] * len(images)
    if not files:
        raise ValueError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _samples(files, labels, class_names, config)


def build_list(path: Path, config: DataConfig) -> DomainSamples:
    check_list(path)
    files, raw_labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.rstrip().rpartition(" ")
        if not relative or not label.lstrip("-").isdigit():
            raise ValueError(f"{path} line {number}: expected 'relative/path label', got {line!r}")
        files.append(path.parent / relative.strip())
        raw_labels.append(int(label))
    if not files:
        raise ValueError(f"image list {path} is empty")
    # Labels keep their numeric meaning across domains: class k is named "k".
    class_names = tuple(str(k) for k in sorted(set(raw_labels)))
    index = {int(name): i for i, name in enumerate(class_names)}
    labels = [index[k] for k in raw_labels]
    return _samples(files, labels, class_names, config)


def _samples(
    files: list[Path], labels: list[int], class_names: tuple[str, ...], config: DataConfig
) -> DomainSamples:
    images = _decode(files, config)
    return DomainSamples(LabelledSet(images, torch.tensor(labels)), None, class_names)


def _decode(files: list[Path], config: DataConfig) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    mode = "L" if config.image_channels == 1 else "RGB"
    size = (config.image_size, config.image_size)
    arrays = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert(mode).resize(size, Image.Resampling.BILINEAR)
                arrays.append(np.asarray(image, dtype=np.uint8))
        except FileNotFoundError:
            raise ValueError(f"image {file} does not exist") from None
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"image {file} cannot be read: {err}") from None
    stacked = torch.from_numpy(np.stack(arrays))
    return stacked.unsqueeze(1) if config.image_channels == 1 else stacked.permute(0, 3, 1, 2)
