"""`raydm report`: the leaderboard, the best config and what picked it, the failed trials and
the validator table, as text (``render_text``) or as JSON-ready data (``to_json``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raydm import layout
from raydm import metrics as m
from raydm.analysis import validator_table
from raydm.experiment import Experiment
from raydm.layout import (
    TRIAL_ID,
)
from raydm.results import format_table, format_value


def render_text(experiment: Experiment) -> str:
    """The leaderboard, the best config's path, the failed trials and the validator table."""
    config = experiment.config
    metric = experiment.metric
    lines = [f"{len(experiment.results)} trials, {config.search.ranking_words()}"]
    headers = ["trial", "status", "epochs", *config.params, f"best {metric}", "@epoch"]
    headers.append(f"final {m.TARGET_ACC}")
    rows = [
        [
            row[TRIAL_ID],
            str(row.get("status", "")),
            format_value(row.get("epochs")),
            *(format_value(row.get(key)) for key in config.params),
            format_value(row.get(layout.best_column(metric), math.nan)),
            format_value(row.get("best_epoch")),
            format_value(row.get(layout.final_column(m.TARGET_ACC), math.nan)),
        ]
        for row in experiment.results
    ]
    lines += format_table(headers, rows)
    lines.append("")
    best = experiment.best_config_path
    lines.append(f"best config: {best if best is not None else 'none'}")
    if best is not None:  # its first line says what picked it, and where
        lines.append(best.read_text().splitlines()[0].removeprefix("# "))
    failed = _failed(experiment)
    lines.append("")
    lines.append(f"failed trials: {len(failed) or 'none'}")
    lines += [f"  {item['trial_id']}: {item['reason']}" for item in failed]
    lines.append("")
    table = validator_table(experiment)
    if not table:
        lines.append("validators: none reported")
        return "\n".join(lines)
    lines.append(
        "validators (label-free): the (trial, epoch) each would pick over all epochs, "
        f"and its rank correlation with {m.TARGET_ACC}"
    )
    headers = [
        "validator",
        "picked trial",
        "epoch",
        m.TARGET_ACC,
        "spearman",
        "weighted spearman",
        "points",
    ]
    rows = [
        [
            row["validator"],
            row["picked_trial"],
            format_value(row["picked_epoch"]),
            format_value(row["picked_oracle_acc"]),
            format_value(row["spearman"]),
            format_value(row["weighted_spearman"]),
            format_value(row["points"]),
        ]
        for row in table
    ]
    lines += format_table(headers, rows)
    return "\n".join(lines)


def to_json(experiment: Experiment) -> dict[str, Any]:
    """What ``render_text`` shows, as plain data for ``json.dumps`` (nan becomes None)."""
    metric = experiment.metric
    trials = []
    for row in experiment.results:
        trials.append(
            {
                "trial_id": row[TRIAL_ID],
                "status": row.get("status", ""),
                "epochs": row.get("epochs", 0),
                "params": {key: row.get(key) for key in experiment.config.params},
                "best_value": row.get(layout.best_column(metric), math.nan),
                "best_epoch": row.get("best_epoch", 0),
                "final": {
                    column.removeprefix(layout.FINAL_PREFIX): value
                    for column, value in row.items()
                    if column.startswith(layout.FINAL_PREFIX)
                },
                "reason": row.get("reason", ""),
            }
        )
    best = experiment.best_config_path
    return _plain(
        {
            "metric": metric,
            "mode": experiment.mode,
            "trials": trials,
            "best_config": str(best) if best is not None else None,
            "failed": _failed(experiment),
            "validators": validator_table(experiment),
        }
    )


def _failed(experiment: Experiment) -> list[dict[str, str]]:
    return [
        {"trial_id": row[TRIAL_ID], "reason": row.get("reason") or "no reason recorded"}
        for row in experiment.results
        if row.get("status") == "failed"
    ]


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)
