"""A finished search, read back from the experiment directory ``raydm tune`` left, without Ray.

The directory holds ``search_space.yaml`` (the validated search), ``results.csv`` (one row per
trial, best first), ``best.yaml`` (when a trial was picked) and one ``train_trial_<id>_...``
directory per trial with Tune's ``progress.csv`` (one row per reported epoch) and its last
checkpoint. Only files are read, so a copy of the directory can be reported anywhere.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from raydm import layout
from raydm import metrics as m
from raydm.config import ConfigError, ExperimentConfig, load_config
from raydm.layout import (
    BEST_FILE,
    PROGRESS_FILE,
    RESULTS_FILE,
    SPACE_FILE,
    TRIAL_DIR_PREFIX,
    TRIAL_ID,
)


class ReportError(ValueError):
    """An experiment directory cannot be reported on; the message is one line naming it."""


@dataclass(frozen=True, eq=False)
class Experiment:
    config: ExperimentConfig  # the search as validated (search_space.yaml)
    # results.csv rows in file order (ranked, best first), keyed by its columns: "epochs" and
    # "best_epoch" as int, searched params as their distribution's type (None where blank),
    # "best:<metric>" and "final:<name>" as float (nan where blank), the rest as text.
    results: list[dict[str, Any]]
    # Every trial's progress.csv rows, one row per (trial, epoch) report, with "trial_id" as
    # text; a trial resumed from its checkpoint that reported an epoch twice keeps its last
    # report of it. A failed trial's failure row (NaN metrics) is kept.
    histories: pd.DataFrame
    best_config_path: Path | None
    path: Path | None = None  # the experiment directory

    @property
    def metric(self) -> str:
        return self.config.search.metric

    @property
    def mode(self) -> str:
        return self.config.search.mode


def load_experiment(path: str | Path) -> Experiment:
    """Read the experiment directory ``path`` that ``raydm tune`` wrote."""
    path = Path(path)
    if not path.is_dir():
        raise ReportError(f"{path}: no such experiment directory")
    space = path / SPACE_FILE
    if not space.is_file():
        raise ReportError(f"{path}: no {SPACE_FILE}: not an experiment directory of raydm tune")
    try:
        config = load_config(space)
    except ConfigError as err:
        raise ReportError(str(err)) from None
    results_path = path / RESULTS_FILE
    if not results_path.is_file():
        raise ReportError(
            f"{path}: no {RESULTS_FILE}: the search has not ended (raydm tune --resume finishes it)"
        )
    results = _read_results(results_path, config)
    best = path / BEST_FILE
    return Experiment(
        config=config,
        results=results,
        histories=_read_histories(path, [row[TRIAL_ID] for row in results]),
        best_config_path=best if best.is_file() else None,
        path=path,
    )


def _read_results(path: Path, config: ExperimentConfig) -> list[dict[str, Any]]:
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            columns, rows = reader.fieldnames or (), list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReportError(f"{path}: cannot read: {err}") from None
    if TRIAL_ID not in columns:
        raise ReportError(f"{path}: no {TRIAL_ID} column: not a results file raydm wrote")
    typed = []
    for line, row in enumerate(rows, start=2):  # line 1 is the header
        out: dict[str, Any] = {}
        for column, text in row.items():
            if column is None:  # more cells than the header has columns
                raise ReportError(f"{path}: line {line}: more cells than columns")
            text = text or ""
            try:
                out[column] = _typed_cell(column, text, config)
            except ValueError:
                raise ReportError(
                    f"{path}: line {line}: {column}: {text!r} is not a value it can take"
                ) from None
        out[TRIAL_ID] = str(out.get(TRIAL_ID, ""))
        typed.append(out)
    return typed


def _typed_cell(column: str, text: str, config: ExperimentConfig) -> Any:
    if column in (layout.EPOCHS, layout.BEST_EPOCH):
        return int(float(text)) if text else 0
    if column.startswith((layout.BEST_PREFIX, layout.FINAL_PREFIX)):
        return float(text) if text else math.nan
    if column in config.params:
        return config.params[column].from_optuna(text) if text else None
    return text


def _read_histories(path: Path, trial_ids: list[str]) -> pd.DataFrame:
    order = {trial_id: rank for rank, trial_id in enumerate(trial_ids)}
    frames = []
    for directory in sorted(path.glob(f"{TRIAL_DIR_PREFIX}*")):
        progress = directory / PROGRESS_FILE
        if not progress.is_file():
            continue
        try:
            frame = pd.read_csv(progress, dtype={TRIAL_ID: str})
        except pd.errors.EmptyDataError:
            continue
        except (OSError, UnicodeDecodeError, pd.errors.ParserError) as err:
            raise ReportError(f"{progress}: cannot read: {err}") from None
        own_id = trial_id_of(directory.name, trial_ids)
        if TRIAL_ID not in frame:
            frame[TRIAL_ID] = own_id
        frame[TRIAL_ID] = frame[TRIAL_ID].fillna(own_id).astype(str)
        frames.append(frame)
    if not frames:
        return pd.DataFrame({TRIAL_ID: pd.Series(dtype=str), m.EPOCH: pd.Series(dtype=float)})
    histories = pd.concat(frames, ignore_index=True, sort=False)
    if m.EPOCH in histories:
        histories = _drop_repeated_epochs(histories)
    # Trials in results.csv order (best first), each trial's rows in the order reported.
    rank = histories[TRIAL_ID].map(order).fillna(len(order))
    histories = histories.assign(_rank=rank).sort_values("_rank", kind="stable")
    return histories.drop(columns="_rank").reset_index(drop=True)


def trial_id_of(directory_name: str, trial_ids: list[str]) -> str:
    """The trial a Tune trial directory (``train_trial_<id>_<index>_<params>_<date>``) is of."""
    rest = directory_name.removeprefix(TRIAL_DIR_PREFIX)
    for trial_id in sorted(trial_ids, key=len, reverse=True):
        if trial_id and rest.startswith(f"{trial_id}_"):
            return trial_id
    match = re.match(r"[^_]+", rest)
    return match.group(0) if match else directory_name


def _drop_repeated_epochs(histories: pd.DataFrame) -> pd.DataFrame:
    reported = [column for column in histories if m.is_reported(str(column))]
    if not reported:
        return histories
    has_data = histories[reported].notna().any(axis=1) & histories[m.EPOCH].notna()
    repeated = histories[has_data].duplicated([TRIAL_ID, m.EPOCH], keep="last")
    return histories.drop(index=repeated[repeated].index)


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
