"""The Tune trainable: one trial's sampled params -> a fixed config -> ``engine.fit``.

Each epoch is reported with a checkpoint holding what an exact resume needs (model, optimisers,
batch-stream and RNG states) and the trial's resolved config, so every result directory says how
it was produced.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from raydm import engine
from raydm.config import ExperimentConfig
from raydm.data import DomainPair

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"


def train_trial(
    sampled: dict[str, Any],
    *,
    base: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
) -> None:
    config = base.fixed(sampled)
    # Torch would otherwise start one thread per core in every trial and oversubscribe them.
    torch.set_num_threads(max(1, int(config.resources.cpu)))
    resume_from = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume_from = torch.load(Path(directory) / STATE_FILE, weights_only=True)

    def report(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state, Path(directory) / STATE_FILE)
            (Path(directory) / CONFIG_FILE).write_text(config.to_yaml())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    engine.fit(config, data, on_epoch=report, resume_from=resume_from, pretrained=pretrained)
