"""Domains from the user's own files: an ImageFolder tree or an image-list file.

``folder:PATH``: one sub-folder per class, class names from the folder names (sorted).
``list:FILE``: one sample per line, ``relative/path label``; the label is the last token (paths
may contain spaces) and paths are relative to the list's folder, or else to ``data.root`` (as in
lists that name ``domain/images/...`` from the dataset's top). Images are resized to
``data.image_size`` square, grey or RGB per ``data.image_channels``, and decoded once into memory
when they fit ``data.memory_budget_mb``, otherwise batch by batch.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raydm.data.samples import DomainSamples, ImageFiles, LabelledSet

if TYPE_CHECKING:
    from raydm.sections import DataConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".webp"}


def _visible(name: str) -> bool:
    """Not a hidden file or folder (.ipynb_checkpoints, a Mac's ._x.png, __MACOSX from a zip):
    as a class it would not match the other domain's, as an image it is a copy or no image."""
    return not name.startswith(".") and name != "__MACOSX"


def class_folders(path: Path) -> list[Path]:
    """An ImageFolder tree's class folders, sorted by name."""
    return sorted(child for child in path.iterdir() if child.is_dir() and _visible(child.name))


def image_files(folder: Path) -> list[Path]:
    """The images at any depth below ``folder``, sorted, following linked folders (as
    torchvision's ImageFolder does) but each real folder once."""
    found, seen = [], set()
    for directory, subdirectories, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:  # a link back up the tree
            subdirectories.clear()
            continue
        seen.add(real)
        subdirectories[:] = [name for name in subdirectories if _visible(name)]
        found += [
            Path(directory, name)
            for name in names
            if _visible(name) and Path(name).suffix.lower() in IMAGE_SUFFIXES
        ]
    return sorted(found)


def check_folder(path: Path) -> None:
    """Raise ValueError, naming the path, unless it is an ImageFolder tree."""
    if not path.is_dir():
        raise ValueError(f"folder {path} does not exist")
    if not class_folders(path):
        raise ValueError(f"folder {path} has no class sub-folders (expected PATH/<class>/<image>)")


def check_list(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"image list {path} does not exist")


def build_folder(path: str | Path, config: DataConfig) -> DomainSamples:
    path = Path(path)
    check_folder(path)
    class_names = tuple(child.name for child in class_folders(path))
    files, labels = [], []
    for index, name in enumerate(class_names):
        images = image_files(path / name)
        files += images
        labels += [index] * len(images)
    if not files:
        raise ValueError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return _samples(files, labels, class_names)


def build_list(path: str | Path, config: DataConfig, base: Path | None = None) -> DomainSamples:
    """The images an image list names; ``base`` is the folder its paths start from (by default
    the list's folder, or ``data.root`` if the first image is only found there)."""
    path = Path(path)
    check_list(path)
    try:  # utf-8-sig: a list saved by a Windows editor starts with a byte-order mark
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError(f"image list {path} is not UTF-8 text ({err.reason})") from None
    relatives, raw_labels, lines_of = [], [], {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        relative, _, label = line.rstrip().rpartition(" ")
        if not relative or not (label.lstrip("-").isascii() and label.lstrip("-").isdigit()):
            raise ValueError(f"{path} line {number}: expected 'relative/path label', got {line!r}")
        relative = relative.strip()
        if relative in lines_of:  # it would land in both the training and the test split
            raise ValueError(
                f"{path} line {number}: {relative} is listed again (first on line "
                f"{lines_of[relative]})"
            )
        lines_of[relative] = number
        relatives.append(relative)
        raw_labels.append(int(label))
    if not relatives:
        raise ValueError(f"image list {path} is empty")
    if base is None:
        base = path.parent
        if not (base / relatives[0]).exists() and (config.root_path / relatives[0]).exists():
            base = config.root_path
    # Labels keep their numeric meaning across domains: class k is named "k".
    class_names = tuple(str(k) for k in sorted(set(raw_labels)))
    index = {int(name): i for i, name in enumerate(class_names)}
    labels = [index[k] for k in raw_labels]
    return _samples([base / relative for relative in relatives], labels, class_names)


def _samples(files: list[Path], labels: list[int], class_names: tuple[str, ...]) -> DomainSamples:
    paths = np.array([str(file) for file in files])
    return DomainSamples(ImageFiles(paths, torch.tensor(labels)), None, class_names)


def decode_image(path: str, size: int, channels: int) -> torch.Tensor:
    """One image file as a uint8 C x size x size tensor; ValueError naming the file if it
    cannot be read."""
    from PIL import Image

    mode = "L" if channels == 1 else "RGB"
    with _opened(path) as image:
        # A JPEG at least twice the target size decodes at a reduced scale (DCT scaling),
        # still no smaller than the target, instead of at full size.
        image.draft(mode, (size, size))
        image = _eight_bit(image, path)
        pixels = np.asarray(
            image.convert(mode).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8
        )
    tensor = torch.from_numpy(pixels.copy())
    return tensor.unsqueeze(0) if channels == 1 else tensor.permute(2, 0, 1).contiguous()


def _eight_bit(image, path: str):
    """``image`` in 8 bits: PIL would clip a 16-bit grey image (mode I;16, or I as PNG opens
    it) to 255, almost all white, rather than scale it."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image, dtype=np.float64)
        if values.min() < 0 or values.max() > 65535:
            raise UnreadableImage(f"image {path} cannot be read: its values exceed 16 bits")
        # Mode I also holds 8-bit images (some TIFFs): those are kept as they are.
        scale = 257 if image.mode != "I" or values.max() > 255 else 1
        return Image.fromarray(np.round(values / scale).astype(np.uint8))
    if image.mode == "F":
        raise UnreadableImage(f"image {path} cannot be read: float images are not supported")
    return image


def decode_all(files: ImageFiles, size: int, channels: int) -> LabelledSet:
    """Every image of ``files`` decoded in memory; threads, since PIL decodes without the GIL."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        images = list(pool.map(lambda path: decode_image(path, size, channels), files.paths))
    return LabelledSet(torch.stack(images), files.labels)


def check_readable(files: ImageFiles) -> None:
    """Raise ValueError naming the first file that is missing or not an image; reads headers
    only, so it is quick even for a dataset streamed because it is too big to decode."""

    def check(path: str) -> None:
        with _opened(path):
            pass

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(check, files.paths))


class UnreadableImage(ValueError):
    """An image file that is missing or cannot be decoded; the message names it."""


@contextmanager
def _opened(path: str):
    """The PIL image at ``path``; a missing or unreadable file is a ValueError naming it, also
    when reading fails inside the block (PIL decodes lazily)."""
    from PIL import Image, UnidentifiedImageError

    path = str(path)  # paths come as numpy strings, which PIL's messages would show raw
    try:
        with Image.open(path) as image:
            yield image
    except FileNotFoundError:
        raise UnreadableImage(f"image {path} does not exist") from None
    except UnidentifiedImageError:
        raise UnreadableImage(
            f"image {path} cannot be read: not an image format PIL knows"
        ) from None
    except OSError as err:
        raise UnreadableImage(f"image {path} cannot be read: {err}") from None
