"""The two-moons toy of the DANN JMLR paper (Ganin et al. 2016, section 5.1.1).

The source is a sample of two inter-twinning moons; the target is a second sample of the same
distribution rotated by ``data.moons_rotation`` degrees (35 in the paper) about the moons' centre.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
from sklearn.datasets import make_moons

from raydm.data.samples import DomainSamples, LabelledSet, seed_for

if TYPE_CHECKING:
    from raydm.sections import DataConfig

CLASS_NAMES = ("upper", "lower")
# make_moons draws the upper moon on x in [-1, 1] and the lower one on [0, 2]; (0.5, 0.25) is
# the centre of the pair, so the rotation turns the whole picture in place.
CENTRE = np.array([0.5, 0.25])


def build_moons(config: DataConfig) -> DomainSamples:
    return _moons(config, degrees=0.0, purpose="moons")


def build_moons_rotated(config: DataConfig) -> DomainSamples:
    return _moons(config, degrees=config.moons_rotation, purpose="moons_rotated")


def _moons(config: DataConfig, degrees: float, purpose: str) -> DomainSamples:
    def sample(part: str) -> LabelledSet:
        points, labels = make_moons(
            n_samples=config.moons_samples,
            noise=config.moons_noise,
            random_state=seed_for(config.seed, f"{purpose}-{part}") % 2**31,
        )
        points = rotate(points, degrees)
        return LabelledSet(
            torch.tensor(points, dtype=torch.float32), torch.tensor(labels, dtype=torch.int64)
        )

    return DomainSamples(train=sample("train"), test=sample("test"), class_names=CLASS_NAMES)


def rotate(points: np.ndarray, degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return (points - CENTRE) @ rotation.T + CENTRE
