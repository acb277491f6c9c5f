"""What a search leaves behind, named once: the experiment directory's files, each trial's
checkpoint files and the columns of results.csv.

Nothing heavy is imported here, so the Ray worker (raydm.trainable), the search (raydm.tuning)
and the report (raydm.report) can all read these names without each other's dependencies.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# The experiment directory.
RESULTS_FILE = "results.csv"  # one row per trial, best first
BEST_FILE = "best.yaml"  # the picked trial's complete config
SPACE_FILE = "search_space.yaml"  # the resolved search, as validated, for the record
STUDY_FILE = "optuna.journal"  # the Optuna study, for optuna-dashboard
# The final pick and every kept checkpoint it was chosen from, best first by the selector:
# {"selector": ..., "ranking": [{trial_id, epoch, value, checkpoint}, ...]}.
PICK_FILE = "pick.json"
TRIAL_DIR_PREFIX = "train_trial_"  # Tune's directory per trial ...
PROGRESS_FILE = "progress.csv"  # ... with one row per reported epoch

# Each checkpoint.
STATE_FILE = "state.pt"  # what an exact resume needs
CONFIG_FILE = "config.yaml"  # the trial's resolved config
# Every epoch's float16 softmax on the validation target subset so far, {epoch: N x K}: the
# latest checkpoint, which a trial always keeps, holds all of its epochs, for EnsV.
SOFTMAX_FILE = "target_softmax.pt"

# results.csv: these columns, each searched param, best:<metric>, best_epoch, final:<name> for
# every metric the trials reported, checkpoint, platform and reason.
TRIAL_ID = "trial_id"
# completed | stopped (early, by the scheduler) | failed | interrupted | unstarted
STATUS = "status"
EPOCHS = "epochs"
BEST_EPOCH = "best_epoch"
REASON = "reason"  # why a failed trial failed
PLATFORM = "platform"  # what the trial last ran on (raydm.engine.platform)
CHECKPOINT = "checkpoint"  # the trial's best kept checkpoint by the selector, relative path
BEST_PREFIX = "best:"
FINAL_PREFIX = "final:"
STATUSES = ("completed", "stopped", "failed", "interrupted", "unstarted")


def best_column(metric: str) -> str:
    return f"{BEST_PREFIX}{metric}"


def final_column(name: str) -> str:
    return f"{FINAL_PREFIX}{name}"


def results_columns(params: Iterable[str], metric: str, reported: Iterable[str]) -> list[str]:
    """results.csv's header, in order."""
    columns = [TRIAL_ID, STATUS, EPOCHS, *params, best_column(metric), BEST_EPOCH]
    return [*columns, *(final_column(name) for name in reported), CHECKPOINT, PLATFORM, REASON]


def unwritable(directory: Path) -> str | None:
    """Why files could not be written into ``directory`` (made if missing), or None; checked
    without making it, so that a command refuses a bad output path before its work, not after."""
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot write into {directory}: {existing} is a file"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"cannot write into {directory}: {existing} is read-only"
    return None
