"""The standard UDA benchmarks, read from their published on-disk formats under ``data.root``.

MNIST, USPS and SVHN download through torchvision when the network allows; raydm then reads
the files itself (USPS's libsvm .bz2, SVHN's .mat) so that any copy in the published format
works. MNIST-M, Office-31, Office-Home and VisDA-2017 have no stable public download: their
folders must be put in place by hand, and a missing one is an error that says where and in which
layout.
"""

from __future__ import annotations

import bz2
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from raydm import downloads
from raydm.data import IMAGE_BENCHMARKS, benchmark_location, files
from raydm.data.samples import DomainSamples, LabelledSet, fit_images

if TYPE_CHECKING:
    from raydm.sections import DataConfig

log = logging.getLogger(__name__)
DIGITS = tuple(str(d) for d in range(10))


def build_benchmark(benchmark: str, domain: str, config: DataConfig) -> DomainSamples:
    root = config.root_path
    location = root / benchmark_location(benchmark, domain)
    if not location.exists():
        layout = IMAGE_BENCHMARKS[benchmark][1].format(domain=domain)
        raise ValueError(
            f"{benchmark}:{domain} is not under {root}: no public download exists; "
            f"put it there as {root}/{layout}"
        )
    if location.suffix == ".txt":
        return files.build_list(location, config)
    return files.build_folder(location, config)


def build_mnistm(config: DataConfig) -> DomainSamples:
    """MNIST-M (Ganin & Lempitsky 2015) as its archive unpacks: ``mnist_m/mnist_m_train/`` with
    ``mnist_m/mnist_m_train_labels.txt`` ("00000000.png 5" lines), and the same for test."""
    folder = config.root_path / "mnist_m"
    parts = []
    for split in ("train", "test"):
        labels_file = folder / f"mnist_m_{split}_labels.txt"
        if not labels_file.exists():
            raise ValueError(
                f"MNIST-M is not under {config.root_path}: it has no stable public download; "
                f"unpack Ganin's mnist_m.tar.gz there so that {labels_file} and "
                f"{folder / f'mnist_m_{split}'}/ exist (train and test)"
            )
        samples = files.build_list(labels_file, config, base=folder / f"mnist_m_{split}")
        if samples.class_names != DIGITS:
            raise ValueError(f"{labels_file} has labels {samples.class_names}, expected 0..9")
        parts.append(samples.train)
    return DomainSamples(parts[0], parts[1], DIGITS)


def build_mnist(config: DataConfig) -> DomainSamples:
    from torchvision.datasets import MNIST

    root = config.root_path / "mnist"
    parts = []
    for train in (True, False):
        dataset = _torchvision(MNIST, root, "MNIST/raw/*-idx?-ubyte", train=train)
        parts.append(LabelledSet(fit_images(dataset.data.unsqueeze(1), config), dataset.targets))
    return DomainSamples(parts[0], parts[1], DIGITS)


def build_usps(config: DataConfig) -> DomainSamples:
    from torchvision.datasets import USPS

    root = config.root_path / "usps"
    parts = []
    for file, train in (("usps.bz2", True), ("usps.t.bz2", False)):
        if not (root / file).exists():
            _torchvision(USPS, root, file, train=train)
        images, labels = read_usps(root / file)
        parts.append(LabelledSet(fit_images(images, config), labels))
    return DomainSamples(parts[0], parts[1], DIGITS)


def build_svhn(config: DataConfig) -> DomainSamples:
    from torchvision.datasets import SVHN

    root = config.root_path / "svhn"
    parts = []
    for split in ("train", "test"):
        file = root / f"{split}_32x32.mat"
        if not file.exists():
            _torchvision(SVHN, root, file.name, split=split)
        images, labels = read_svhn(file)
        parts.append(LabelledSet(fit_images(images, config), labels))
    return DomainSamples(parts[0], parts[1], DIGITS)


def read_usps(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """USPS in libsvm format: ``label index:value ...`` per line, labels 1..10, values in
    [-1, 1], 256 values per 16x16 image."""
    try:
        lines = bz2.decompress(path.read_bytes()).decode().splitlines()
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a bz2-compressed libsvm file: {err}") from None
    images = np.zeros((len(lines), 256), dtype=np.float32)
    labels = np.zeros(len(lines), dtype=np.int64)
    for row, line in enumerate(lines):
        try:
            label, *pairs = line.split()
            labels[row] = int(float(label)) - 1
            for pair in pairs:
                index, value = pair.split(":")
                if not 1 <= int(index) <= 256:
                    raise IndexError(f"feature {index} of 256")
                images[row, int(index) - 1] = float(value)
        except (ValueError, IndexError) as err:
            raise ValueError(f"{path} line {row + 1}: not a USPS libsvm line ({err})") from None
    pixels = np.round((images + 1) / 2 * 255).clip(0, 255).astype(np.uint8)
    return torch.from_numpy(pixels.reshape(-1, 1, 16, 16)), torch.from_numpy(labels)


def read_svhn(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """SVHN's cropped-digits .mat: X is 32x32x3xN, y is N x 1 with 10 standing for 0."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path} is not a MATLAB file: {err}") from None
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path} is not SVHN's cropped digits: it holds no X and y")
    images = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))
    labels = torch.from_numpy(mat["y"].astype(np.int64).flatten() % 10)
    return images, labels


def _torchvision(dataset_class, root: Path, expected: str, **split):
    """Open a torchvision dataset from ``root``, downloading it when absent; fail fast."""
    try:
        return dataset_class(str(root), download=False, **split)
    except FileNotFoundError:
        pass
    except Exception as err:  # noqa: BLE001 - torchvision's readers fail in many ways
        if "not found" not in str(err).lower():  # there, but damaged: a download would not help
            raise ValueError(
                f"{dataset_class.__name__} files under {root} cannot be read "
                f"({type(err).__name__}): replace them with the published ones ({root}/{expected})"
            ) from None
    log.info("downloading %s into %s", dataset_class.__name__, root)
    try:
        with downloads.bounded_wait():
            return dataset_class(str(root), download=True, **split)
    except Exception as err:  # noqa: BLE001 - any network or archive failure means the same
        raise ValueError(
            f"{dataset_class.__name__} is not under {root} and could not be downloaded "
            f"({type(err).__name__}); put the published files there ({root}/{expected})"
        ) from None
