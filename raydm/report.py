"""A finished search, read back from its experiment directory and reported without Ray.

``raydm tune`` leaves in the experiment directory ``search_space.yaml`` (the validated search),
``results.csv`` (one row per trial, best first), ``best.yaml`` (when a trial was selected) and
one ``train_trial_<id>_...`` directory per trial holding Tune's ``progress.csv`` (one row per
reported epoch). This module turns those files into:

- a leaderboard, the failed trials with their reasons and a validator table as text
  (``render_text``) or as JSON-ready data (``to_json``);
- the validator table itself (``validator_table``): for each label-free validator, the
  (trial, epoch) point it would select over every epoch of every trial, the oracle (target)
  accuracy there, and its rank correlations with the oracle accuracy;
- plots (``write_plots``): learning curves, the epochs ASHA let each trial reach, Optuna's
  fANOVA parameter importance and each validator against the oracle accuracy.

Only files are read: the report works on a copy of the directory, without Ray.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raydm import layout, selection
from raydm import metrics as m
from raydm.config import ConfigError, ExperimentConfig, load_config
from raydm.layout import (
    BEST_FILE,
    PROGRESS_FILE,
    RESULTS_FILE,
    SPACE_FILE,
    STATUSES,
    TRIAL_DIR_PREFIX,
    TRIAL_ID,
)
from raydm.results import format_table, format_value
from raydm.search_space import Choice, Distribution, IntRange, LogUniform, Uniform
from raydm.validators import rank_correlations

STATUS_COLOURS = {
    "completed": "tab:green",
    "stopped": "tab:orange",
    "failed": "tab:red",
    "unstarted": "tab:gray",
}
MIN_IMPORTANCE_PARAMS = 2
MIN_IMPORTANCE_TRIALS = 3


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


# --- loading -------------------------------------------------------------------------------


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
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise ReportError(f"{path}: cannot read: {err}") from None
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
                    f"{path}: line {line}: {column} is not a number: {text!r}"
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
        return _param_value(config.params[column], text) if text else None
    return text


def _param_value(distribution: Distribution, text: str) -> Any:
    if isinstance(distribution, (LogUniform, Uniform)):
        return float(text)
    if isinstance(distribution, IntRange):
        return int(float(text))
    for option in distribution.options:  # Choice: csv wrote str(option)
        if str(option) == text:
            return option
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
        own_id = _trial_id_of(directory.name, trial_ids)
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


def _trial_id_of(directory_name: str, trial_ids: list[str]) -> str:
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


# --- analysis -----------------------------------------------------------------------------


def scored_points(experiment: Experiment) -> pd.DataFrame:
    """Every (trial, epoch) point of the trials that did not fail (the final pick's candidates),
    with what each reported and, in column ``m.ENSV``, EnsV's agreement of the point with the
    ensemble of all points whose checkpoint kept its target softmax (nan for the others)."""
    eligible = {
        row[TRIAL_ID] for row in experiment.results if row.get("status") in ("completed", "stopped")
    }
    points = selection.candidates(experiment.histories, eligible)
    softmaxes = saved_softmaxes(experiment)
    order = list(zip(points[TRIAL_ID].astype(str), points[m.EPOCH].astype(int), strict=True))
    scores = selection.ensv_scores(
        {point: softmaxes[point] for point in order if point in softmaxes}
    )
    return points.assign(**{m.ENSV: [scores.get(point, math.nan) for point in order]})


def saved_softmaxes(experiment: Experiment) -> dict[selection.Point, torch.Tensor]:
    """Each (trial, epoch)'s target softmax, from each trial's last checkpoint."""
    softmaxes = {}
    trial_ids = [row[TRIAL_ID] for row in experiment.results]
    for directory in (experiment.path or Path("/nonexistent")).glob(f"{TRIAL_DIR_PREFIX}*"):
        checkpoints = sorted(directory.glob("checkpoint_*"))
        if checkpoints:
            trial_id = _trial_id_of(directory.name, trial_ids)
            softmaxes.update(selection.read_softmaxes(checkpoints[-1], trial_id))
    return softmaxes


def validator_table(experiment: Experiment) -> list[dict[str, Any]]:
    """One row per label-free criterion (``m.LABEL_FREE``) that has a value at some
    candidate point (``scored_points``).

    ``picked_*``: the (trial, epoch) point the criterion picks (``raydm.selection``: its best
    value over every epoch of every trial that did not fail, the first of equal values), and the
    oracle accuracy there (nan if not reported). ``spearman`` and ``weighted_spearman``
    (``raydm.validators.rank_correlations``) compare the criterion, signed so that higher is
    better, with the oracle accuracy over the ``points`` that have both.
    """
    points = scored_points(experiment)
    oracle = (
        pd.to_numeric(points[m.TARGET_ACC], errors="coerce")
        if m.TARGET_ACC in points
        else pd.Series(math.nan, index=points.index, dtype=float)
    )
    rows = []
    for name in m.LABEL_FREE:
        pick = selection.by_metric(points, name, m.SELECTABLE.get(name, "max"))
        if pick is None:
            continue
        sign = -1.0 if m.SELECTABLE.get(name) == "min" else 1.0
        values = sign * pd.to_numeric(points[name], errors="coerce")
        both = np.isfinite(values) & np.isfinite(oracle)
        correlations = rank_correlations(
            np.array(values[both], dtype=float), np.array(oracle[both], dtype=float)
        )
        at_pick = (points[TRIAL_ID] == pick.trial_id) & (points[m.EPOCH] == pick.epoch)
        rows.append(
            {
                "validator": name,
                "picked_trial": pick.trial_id,
                "picked_epoch": pick.epoch,
                "picked_oracle_acc": float(oracle[at_pick].iloc[0]),
                "spearman": float(correlations["spearman"]),
                "weighted_spearman": float(correlations["weighted_spearman"]),
                "points": int(both.sum()),
            }
        )
    return rows


def param_importances(experiment: Experiment) -> dict[str, float]:
    """Optuna's fANOVA importance of each searched param for the best selection metric.

    One Optuna trial per completed or stopped trial with every param and a finite best value.
    Raises ReportError, saying why, with fewer than 2 params or 3 such trials, or when fANOVA
    finds nothing to explain (every trial scored the same).
    """
    import optuna

    distributions = {key: _optuna_distribution(d) for key, d in experiment.config.params.items()}
    if len(distributions) < MIN_IMPORTANCE_PARAMS:
        raise ReportError(
            f"param importance needs at least {MIN_IMPORTANCE_PARAMS} searched params; "
            f"this search has {len(distributions)}"
        )
    best_column = layout.best_column(experiment.metric)
    trials = []
    for row in experiment.results:
        value = row.get(best_column, math.nan)
        if row.get("status") not in ("completed", "stopped") or not _finite(value):
            continue
        params = {key: _optuna_value(row.get(key)) for key in distributions}
        if None in params.values():
            continue
        try:  # refuses a value outside its distribution
            trial = optuna.trial.create_trial(
                value=float(value), params=params, distributions=distributions
            )
        except ValueError:
            continue
        trials.append(trial)
    if len(trials) < MIN_IMPORTANCE_TRIALS:
        raise ReportError(
            f"param importance needs at least {MIN_IMPORTANCE_TRIALS} completed or stopped "
            f"trials with a {experiment.metric} value; this search has {len(trials)}"
        )
    direction = "maximize" if experiment.mode == "max" else "minimize"
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line
    try:
        study = optuna.create_study(direction=direction)
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(trials)
    if len({trial.value for trial in trials}) == 1:
        raise ReportError(
            f"param importance needs different {experiment.metric} values; every trial has "
            f"{trials[0].value:.4g}"
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    try:
        importances = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except RuntimeError as err:  # e.g. "zero total variance" when the params never differ
        raise ReportError(f"param importance: {err}") from None
    return {key: float(value) for key, value in importances.items()}


def _optuna_distribution(distribution: Distribution):
    import optuna.distributions as od

    if isinstance(distribution, LogUniform):
        return od.FloatDistribution(distribution.low, distribution.high, log=True)
    if isinstance(distribution, Uniform):
        return od.FloatDistribution(distribution.low, distribution.high)
    if isinstance(distribution, IntRange):
        return od.IntDistribution(distribution.low, distribution.high)
    assert isinstance(distribution, Choice)
    return od.CategoricalDistribution([_optuna_value(o) for o in distribution.options])


def _optuna_value(value: Any) -> Any:
    """Optuna's categorical choices are None, bool, int, float or str."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


# --- text and JSON ---------------------------------------------------------------------------


def render_text(experiment: Experiment) -> str:
    """The leaderboard, the best config's path, the failed trials and the validator table."""
    config = experiment.config
    metric = experiment.metric
    lines = [f"selecting on {metric} ({experiment.mode}), {len(experiment.results)} trials"]
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


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# --- plots -------------------------------------------------------------------------------


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
