"""The report's figures: learning curves, the epochs ASHA let each trial reach, parameter
importance, and each label-free criterion against the oracle accuracy."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raydm import metrics as m
from raydm.analysis import param_importances, scored_points, validator_table
from raydm.experiment import Experiment, ReportError
from raydm.layout import (
    STATUSES,
    TRIAL_ID,
)
from raydm.results import format_value

STATUS_COLOURS = {
    "completed": "tab:green",
    "stopped": "tab:orange",
    "failed": "tab:red",
    "interrupted": "tab:purple",
    "unstarted": "tab:gray",
}


def write_plots(
    experiment: Experiment,
    directory: str | Path,
    on_skip: Callable[[str], None] = lambda reason: None,
) -> list[Path]:
    """Write the report's PNG files into ``directory`` (created if needed); return them.

    ``learning_curves.png``, ``asha_rungs.png``, ``param_importance.png`` (only with at least
    2 searched params and 3 completed or stopped trials: ``on_skip`` is told why not) and
    ``validators_vs_oracle.png`` (only when a validator was reported). A plot that is not
    written is not in the returned list.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        _save(_learning_curves(experiment), directory / "learning_curves.png"),
        _save(_asha_rungs(experiment), directory / "asha_rungs.png"),
    ]
    try:
        importances = param_importances(experiment)
    except ReportError as err:
        on_skip(f"no param_importance.png: {err}")
        importances = None
    if importances is not None:
        written.append(
            _save(_importance_figure(experiment, importances), directory / "param_importance.png")
        )
    table = validator_table(experiment)
    if table:
        figure = _validators_figure(experiment, table)
        written.append(_save(figure, directory / "validators_vs_oracle.png"))
    return written


def _figure(width: float, height: float, **margins: float):
    # A bare Figure draws with the Agg canvas, leaving pyplot's global backend alone. Fixed
    # margins: an automatic layout would draw every figure twice.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(**{"left": 0.08, "right": 0.97, "bottom": 0.12, "top": 0.86, **margins})
    return figure


def _save(figure, path: Path) -> Path:
    figure.savefig(path, format="png", dpi=100)
    return path


def _trial_order(experiment: Experiment) -> list[str]:
    order = [row[TRIAL_ID] for row in experiment.results]
    if TRIAL_ID in experiment.histories:
        order += [t for t in experiment.histories[TRIAL_ID].unique() if t not in order]
    return order


def _learning_curves(experiment: Experiment):
    from matplotlib.ticker import MaxNLocator

    figure = _figure(12, 4.5, wspace=0.25)
    axes = figure.subplots(1, 2)
    histories = experiment.histories
    trials = _trial_order(experiment)
    status = {row[TRIAL_ID]: row.get("status", "") for row in experiment.results}
    colours = _colours(len(trials))
    for ax, name in zip(axes, (experiment.metric, m.TARGET_ACC), strict=True):
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if name not in histories or m.EPOCH not in histories:
            ax.text(0.5, 0.5, "not reported", ha="center", va="center", transform=ax.transAxes)
            continue
        for trial_id, colour in zip(trials, colours, strict=True):
            rows = histories[histories[TRIAL_ID] == trial_id]
            values = pd.to_numeric(rows[name], errors="coerce")
            keep = values.notna() & rows[m.EPOCH].notna()
            if not keep.any():
                continue
            ax.plot(
                rows.loc[keep, m.EPOCH],
                values[keep],
                marker=".",
                color=colour,
                linestyle=":" if status.get(trial_id) == "failed" else "-",
                label=f"{trial_id} ({status.get(trial_id, '?')})",
            )
    if 0 < len(trials) <= 20:
        handles, labels = axes[1].get_legend_handles_labels()
        if not handles:
            handles, labels = axes[0].get_legend_handles_labels()
        if handles:
            axes[1].legend(handles, labels, fontsize="small", loc="best")
    figure.suptitle(f"selection metric and oracle accuracy per epoch ({len(trials)} trials)")
    return figure


def _asha_rungs(experiment: Experiment):
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    figure = _figure(
        max(6, 0.5 * len(experiment.results) + 2), 4.5, left=0.12, bottom=0.25, top=0.85
    )
    ax = figure.subplots()
    ids = [row[TRIAL_ID] for row in experiment.results]
    statuses = [row.get("status", "") for row in experiment.results]
    ax.bar(
        range(len(ids)),
        [row.get("epochs", 0) for row in experiment.results],
        color=[STATUS_COLOURS.get(s, "tab:blue") for s in statuses],
    )
    ax.set_xticks(range(len(ids)), ids, rotation=60, ha="right", fontsize="small")
    ax.set_xlabel("trial (best first)")
    ax.set_ylabel("epochs reached")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    scheduler = experiment.config.search.scheduler
    max_t = experiment.config.max_epochs()
    if scheduler.type == "asha":
        for rung in scheduler.rungs(max_t):
            ax.axhline(rung, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(
            f"epochs per trial\ndashed: ASHA rungs (grace {scheduler.grace_period}, "
            f"reduction {scheduler.reduction_factor:g}, max {max_t})",
            fontsize="medium",
        )
    else:
        ax.axhline(max_t, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(f"epochs per trial ({scheduler.type}, {max_t} planned)", fontsize="medium")

    present = [s for s in STATUSES if s in statuses]
    ax.legend(handles=[Patch(color=STATUS_COLOURS[s], label=s) for s in present], loc="best")
    return figure


def _importance_figure(experiment: Experiment, importances: dict[str, float]):
    height = 1.6 + 0.5 * len(importances)
    figure = _figure(8, height, left=0.3, bottom=0.6 / height, top=1 - 0.6 / height)
    ax = figure.subplots()
    names = list(importances)[::-1]  # most important on top
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("fANOVA importance (Optuna, normalised)")
    ax.set_title(
        f"importance of each searched param for best {experiment.metric}", fontsize="medium"
    )
    return figure


def _validators_figure(experiment: Experiment, table: list[dict[str, Any]]):
    columns = min(3, len(table))
    rows = math.ceil(len(table) / columns)
    height = 4 * rows
    figure = _figure(
        4.5 * columns,
        height,
        left=0.1,
        bottom=0.55 / height,
        top=1 - 1.0 / height,
        hspace=0.55,
        wspace=0.35,
    )
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).ravel()
    histories = scored_points(experiment)
    for ax, row in zip(axes, table, strict=False):
        name = row["validator"]
        ax.set_title(
            f"{name}\nspearman {format_value(row['spearman'])}, "
            f"weighted {format_value(row['weighted_spearman'])}",
            fontsize="medium",
        )
        ax.set_xlabel(name)
        ax.set_ylabel(m.TARGET_ACC)
        if m.TARGET_ACC not in histories:
            continue
        x = pd.to_numeric(histories[name], errors="coerce")
        y = pd.to_numeric(histories[m.TARGET_ACC], errors="coerce")
        keep = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[keep], y[keep], s=12, alpha=0.7)
        picked = (histories[TRIAL_ID] == row["picked_trial"]) & keep
        picked &= histories[m.EPOCH] == row["picked_epoch"]
        ax.scatter(x[picked], y[picked], s=120, marker="*", color="tab:red", label="picked")
        ax.legend(loc="lower right", fontsize="small")
    for ax in axes[len(table) :]:
        ax.set_visible(False)
    figure.suptitle("label-free validators against target accuracy, every (trial, epoch)")
    return figure


def _colours(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(count)]
