"""The Tune trainable: one trial's sampled params -> a fixed config -> ``engine.fit``.

Each epoch is reported with a checkpoint holding what an exact resume needs (model, optimisers,
batch-stream and RNG states) and the trial's resolved config, so every result directory says how
it was produced.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from ray import tune

from raydm import engine
from raydm import metrics as m
from raydm.config import ExperimentConfig
from raydm.data.pair import DomainPair
from raydm.layout import CONFIG_FILE, SOFTMAX_FILE, STATE_FILE
from raydm.search_space import sampled_values

BEST_KEY = "selection_best"  # sign-adjusted best of the selection metric, kept for resumes


def train_trial(
    sampled: dict[str, Any],
    *,
    base: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
) -> None:
    config = base.fixed(sampled_values(base.params, sampled))
    # Torch would otherwise start one thread per core in every trial and oversubscribe them.
    engine.use_threads_of(config)
    platform = engine.platform(config)
    gpu = config.resources.gpu
    if 0 < gpu < 1 and torch.cuda.is_available():
        # Ray packs trials on a GPU without isolating its memory: cap each at its share so
        # one cannot starve the others (it gets an out-of-memory error instead).
        torch.cuda.set_per_process_memory_fraction(gpu)
    resume_from, softmax_history = None, {}
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume_from = torch.load(Path(directory) / STATE_FILE, weights_only=True)
            saved = Path(directory) / SOFTMAX_FILE
            if saved.exists():  # a checkpoint written before EnsV has none
                softmax_history = torch.load(saved, weights_only=True)

    epochs_done = resume_from["epoch"] if resume_from else 0
    metric, sign = config.search.metric, 1 if config.search.mode == "max" else -1
    best = resume_from.get(BEST_KEY, -math.inf) if resume_from else -math.inf

    def report(epoch: int, metrics: dict[str, float], state: dict[str, Any]) -> None:
        nonlocal epochs_done, best
        epochs_done = epoch
        # The best value so far travels with every result, so the last result (what
        # TensorBoard's HParams view and Optuna see) carries it, for stopped trials too.
        value = metrics.get(metric, math.nan)
        if not math.isnan(value):
            best = max(best, sign * value)
        metrics = {**metrics, f"{m.BEST_PREFIX}{metric}": sign * best}
        metrics[m.CHECKPOINT_SCORE] = checkpoint_score(metrics, epoch, config)
        metrics[m.PLATFORM] = platform
        softmax_history[epoch] = state.pop(engine.TARGET_SOFTMAX)  # for EnsV, not resuming
        with tempfile.TemporaryDirectory() as directory:
            torch.save({**state, BEST_KEY: best}, Path(directory) / STATE_FILE)
            torch.save(softmax_history, Path(directory) / SOFTMAX_FILE)
            (Path(directory) / CONFIG_FILE).write_text(config.to_yaml())
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    try:
        engine.fit(
            config,
            data,
            on_epoch=report,
            resume_from=resume_from,
            pretrained=pretrained,
            # The rungs are the search's (base's), the last epoch the trial's own.
            costly_epochs=base.costly_validator_epochs(config.train.epochs),
        )
    except engine.Diverged as err:
        _report_failure(str(err), config, epochs_done)
    except torch.cuda.OutOfMemoryError:
        _report_failure(
            f"CUDA out of memory within this trial's share of the GPU (resources.gpu {gpu}): "
            "lower train.batch_size or raise resources.gpu",
            config,
            epochs_done,
        )


def checkpoint_score(metrics: dict[str, float], epoch: int, config: ExperimentConfig) -> float:
    """m.CHECKPOINT_SCORE of an epoch (nan when its metric is: Tune keeps those last)."""
    name, mode = config.search.checkpoint_ranking()
    value = metrics.get(name, math.nan)
    return (value if mode == "max" else -value) - 1e-9 * epoch


def _report_failure(reason: str, config: ExperimentConfig, epochs_done: int) -> None:
    """End the trial as failed, with its reason, without Tune retrying it."""
    tune.report(
        {
            config.search.metric: math.nan,
            m.EPOCH: epochs_done,
            m.EPOCHS_PLANNED: config.train.epochs,
            m.FAILED: 1.0,
            m.FAILURE_REASON: reason,
            m.PLATFORM: engine.platform(config),
        }
    )
