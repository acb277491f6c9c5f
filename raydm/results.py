"""A finished search's trials: their summaries, results.csv, the final pick, best.yaml and the
leaderboard (no Ray imported: the report reads what this writes)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raydm import layout, selection
from raydm import metrics as m
from raydm.config import ExperimentConfig
from raydm.search_space import optuna_value, sampled_values

Echo = Callable[[str], None]


def trial_status(result: dict, max_epochs: int) -> str:
    """failed (it reported m.FAILED), interrupted (still running when the search was: Tune
    marks every other trial's last result done), stopped (before its last epoch, by ASHA) or
    completed, from a trial's last result."""
    if result.get(m.FAILED):
        return "failed"
    if not result.get(m.DONE, True):
        return "interrupted"
    planned = min(result.get(m.EPOCHS_PLANNED, max_epochs), max_epochs)
    return "stopped" if result.get(m.EPOCH, 0) < planned else "completed"


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    status: str  # completed | stopped (early, by the scheduler) | failed | interrupted | unstarted
    params: dict[str, Any]
    epochs: int
    final: dict[str, float]
    best_value: float  # nan for a failed trial: it is never selected
    best_epoch: int
    reason: str = ""  # why a failed trial failed
    platform: str = ""  # what it last ran on (raydm.engine.platform); blank if it never reported


@dataclass(frozen=True)
class SearchOutcome:
    experiment_dir: Path
    trials: list[TrialSummary]  # ranked, best first
    best_config: ExperimentConfig | None
    unfinished: int = 0  # trials left pending or running by an interruption (Ctrl-C)
    pick: selection.Pick | None = None  # the final (trial, epoch), by search.select
    checkpoint: str | None = None  # the pick's checkpoint, relative to experiment_dir


@dataclass(frozen=True)
class Selection:
    """The final pick and the kept checkpoints it was chosen from, best first by the
    selector (what ``raydm predict`` and ``--ensemble`` read back from PICK_FILE)."""

    pick: selection.Pick
    ranking: list[dict[str, Any]]  # trial_id, epoch, value, checkpoint (relative path)

    @property
    def checkpoint(self) -> str:
        return self.ranking[0][layout.CHECKPOINT]

    def to_json(self) -> str:
        return json.dumps(
            {"selector": self.pick.selector, "ranking": self.ranking}, indent=1, allow_nan=False
        )


def final_pick(
    grid, trials: list[TrialSummary], config: ExperimentConfig, experiment_path: str, echo: Echo
) -> Selection | None:
    """The (trial, epoch) that search.select ranks first among the kept checkpoints of the
    trials that did not fail; by search.metric when the selector has nothing to rank (no trial
    kept the softmax EnsV needs, or none reported the selector's metric). EnsV's ensemble is
    every epoch of those trials, kept or not. None when no trial kept a checkpoint."""
    eligible = {trial.trial_id for trial in trials if trial.status in ("completed", "stopped")}
    histories, kept = {}, {}
    for result in grid:
        trial_id = _trial_id(result)
        history = result.metrics_dataframe
        if history is not None and len(history):
            histories[trial_id] = history.assign(**{selection.TRIAL_ID: trial_id})
        for checkpoint, reported in result.best_checkpoints or []:
            if m.EPOCH in reported:
                kept[(trial_id, int(reported[m.EPOCH]))] = _relative(
                    checkpoint.path, experiment_path
                )
    if not histories:
        return None
    # Trials in results.csv's order (best first by search.metric), as the report reads them,
    # so that a tie of the selector goes to the same point in both.
    frames = [histories[trial.trial_id] for trial in trials if trial.trial_id in histories]
    points = selection.candidates(pd.concat(frames, ignore_index=True), eligible)
    selector = config.search.selector
    softmaxes: dict[selection.Point, Any] = {}
    if selector == m.ENSV:
        for result in grid:
            trial_id = _trial_id(result)
            if result.checkpoint is not None and trial_id in eligible:
                with result.checkpoint.as_directory() as directory:
                    softmaxes.update(selection.read_softmaxes(Path(directory), trial_id))
    mode = config.search.mode if selector == config.search.metric else None
    ranked = _kept_only(selection.ranking(points, selector, softmaxes, mode), kept)
    if ranked.empty:
        echo(
            f"search.select {selector}: nothing to rank by; picking by {config.search.metric} "
            "among the kept checkpoints"
        )
        selector = config.search.metric
        ranked = _kept_only(selection.ranking(points, selector, mode=config.search.mode), kept)
    pick = selection.first(ranked, selector)
    if pick is None:
        return None
    rows = [
        {
            layout.TRIAL_ID: str(row[selection.TRIAL_ID]),
            m.EPOCH: int(row[m.EPOCH]),
            selection.RANK_VALUE: float(row[selection.RANK_VALUE]),
            layout.CHECKPOINT: kept[(str(row[selection.TRIAL_ID]), int(row[m.EPOCH]))],
        }
        for _, row in ranked.iterrows()
    ]
    return Selection(pick, rows)


def _kept_only(ranked: pd.DataFrame, kept: dict[selection.Point, str]) -> pd.DataFrame:
    keys = zip(ranked[selection.TRIAL_ID].astype(str), ranked[m.EPOCH].astype(int), strict=True)
    return ranked[[key in kept for key in keys]].reset_index(drop=True)


def _relative(path: str, experiment_path: str) -> str:
    """A checkpoint's path relative to the experiment (so the experiment can be moved or
    downloaded), else as Tune gives it. Tune gives remote paths without their scheme
    (``bucket/prefix/...`` for ``s3://bucket/prefix``)."""
    if "://" in experiment_path:
        base = experiment_path.split("://", 1)[1].rstrip("/") + "/"
        return path[len(base) :] if path.startswith(base) else path
    try:
        return str(Path(path).resolve().relative_to(Path(experiment_path).resolve()))
    except ValueError:
        return path


def summarize(grid, config: ExperimentConfig) -> list[TrialSummary]:
    metric, mode = config.search.metric, config.search.mode
    sign = 1 if mode == "max" else -1
    trials = []
    for result in grid:
        last = result.metrics or {}
        history = result.metrics_dataframe
        best_value, best_epoch = math.nan, 0
        if history is not None and metric in history and history[metric].notna().any():
            row = history.loc[(sign * history[metric]).idxmax()]
            best_value, best_epoch = float(row[metric]), int(row[m.EPOCH])
        reason = ""
        if result.error is not None:
            status, reason = "failed", error_reason(result.error)
        elif m.EPOCH not in last and not last.get(m.FAILED):
            status = "unstarted"  # an interruption came before its first epoch
        else:
            status = trial_status(last, config.max_epochs())
            if status == "failed":
                reason = str(last.get(m.FAILURE_REASON, ""))
        if status == "failed":
            best_value, best_epoch = math.nan, 0
        trials.append(
            TrialSummary(
                trial_id=_trial_id(result),
                status=status,
                params=sampled_values(config.params, result.config or {}),
                epochs=int(last.get(m.EPOCH, 0)),
                final={  # best/<metric> is best_value already
                    key: value
                    for key, value in last.items()
                    if m.is_reported(key)
                    and not key.startswith(m.BEST_PREFIX)
                    and isinstance(value, (int, float))
                },
                best_value=best_value,
                best_epoch=best_epoch,
                reason=reason,
                platform=str(last.get(m.PLATFORM, "")),
            )
        )
    return sorted(
        trials,
        key=lambda t: -math.inf if math.isnan(t.best_value) else sign * t.best_value,
        reverse=True,
    )


def _trial_id(result) -> str:
    return str((result.metrics or {}).get("trial_id", Path(result.path).name))


def error_reason(error: BaseException) -> str:
    """One line for a Ray error: the last line of its message, which for a trial's error is
    the exception the trial raised."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def write_results(
    trials: list[TrialSummary],
    config: ExperimentConfig,
    path: Path,
    chosen: Selection | None = None,
) -> None:
    """results.csv, with the columns ``layout.results_columns`` gives, best trial first; each
    trial's checkpoint is its best kept one by the selector."""
    checkpoints: dict[str, str] = {}
    for row in chosen.ranking if chosen else []:
        checkpoints.setdefault(row[layout.TRIAL_ID], row[layout.CHECKPOINT])
    metric = config.search.metric
    reported = sorted({name for trial in trials for name in trial.final})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(
            handle, fieldnames=layout.results_columns(config.params, metric, reported)
        )
        writer.writeheader()
        for trial in trials:
            writer.writerow(
                {
                    layout.TRIAL_ID: trial.trial_id,
                    layout.STATUS: trial.status,
                    layout.EPOCHS: trial.epochs,
                    **{key: optuna_value(value) for key, value in trial.params.items()},
                    **{layout.final_column(name): trial.final.get(name, "") for name in reported},
                    layout.best_column(metric): trial.best_value,
                    layout.BEST_EPOCH: trial.best_epoch,
                    layout.CHECKPOINT: checkpoints.get(trial.trial_id, ""),
                    layout.PLATFORM: trial.platform,
                    layout.REASON: trial.reason,
                }
            )


def best_yaml(
    best: ExperimentConfig,
    trial: TrialSummary,
    chosen: Selection,
    searched: ExperimentConfig,
) -> str:
    pick = chosen.pick
    header = (
        f"# Selected by raydm with {pick.selector}: trial {trial.trial_id}, {pick.selector} = "
        f"{pick.value:.4f} at epoch {pick.epoch} of {trial.epochs} run ({trial.status}).\n"
        f"# The search was steered by {searched.search.metric}; the pick ranked the kept "
        "checkpoints of every trial that did not fail.\n"
        f"# The selected model is the checkpoint {chosen.checkpoint} (next to this file):\n"
        "#   raydm predict <this experiment> --images SPEC   labels images with it.\n"
        "# raydm train --config best.yaml trains the trial again from scratch, to its last epoch\n"
        "# (not the selected one); it repeats the trial's figures to the bit only on the platform\n"
        f"# the trial ran on: {trial.platform or 'not recorded'}.\n"
    )
    return header + best.to_yaml()


def leaderboard(outcome: SearchOutcome, config: ExperimentConfig, top: int = 10) -> str:
    """The top trials as a fixed-width table, then the failed trials with their reasons."""
    metric = config.search.metric
    headers = ["trial", "status", "epochs", *config.params, f"best {metric}", "@epoch"]
    shown = [name for name in (m.SOURCE_VAL_ACC, m.TARGET_ACC) if name != metric]
    headers += [f"final {name}" for name in shown]
    rows = [
        [
            trial.trial_id,
            trial.status,
            str(trial.epochs),
            *(format_value(trial.params.get(key)) for key in config.params),
            format_value(trial.best_value),
            str(trial.best_epoch),
            *(format_value(trial.final.get(name)) for name in shown),
        ]
        for trial in outcome.trials[:top]
    ]
    lines = format_table(headers, rows)
    lines += [f"{t.trial_id} failed: {t.reason}" for t in outcome.trials if t.status == "failed"]
    if outcome.pick is not None:
        lines.append(f"final pick: {outcome.pick.describe()}")
    if outcome.checkpoint is not None:
        lines.append(f"selected model: {outcome.experiment_dir / outcome.checkpoint}")
    return "\n".join(lines)


def format_table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Fixed-width lines: the headers, then one line per row."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    return lines


def format_value(value: Any) -> str:
    """A table cell: 4 significant digits for floats, "nan" for NaN, "" for None."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)
