"""What a finished search tells beyond its leaderboard: every candidate (trial, epoch) scored
by each label-free criterion (EnsV included), which point each would pick and how well it
ranks the points by their oracle accuracy, and Optuna's fANOVA parameter importance."""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from raydm import layout, selection
from raydm import metrics as m
from raydm.correlation import rank_correlations
from raydm.experiment import Experiment, ReportError, finite, trial_id_of
from raydm.layout import (
    TRIAL_DIR_PREFIX,
    TRIAL_ID,
)
from raydm.search_space import optuna_space, optuna_value

MIN_IMPORTANCE_PARAMS = 2
MIN_IMPORTANCE_TRIALS = 3


def scored_points(experiment: Experiment) -> pd.DataFrame:
    """Every (trial, epoch) point of the trials that did not fail (the final pick's candidates),
    with what each reported and, in column ``m.ENSV``, EnsV's agreement of the point with the
    ensemble of all points whose checkpoint kept its target softmax (nan for the others)."""
    eligible = {
        row[TRIAL_ID] for row in experiment.results if row.get("status") in ("completed", "stopped")
    }
    points = selection.candidates(experiment.histories, eligible)
    return points.assign(**{m.ENSV: selection.ensv_column(points, saved_softmaxes(experiment))})


def saved_softmaxes(experiment: Experiment) -> dict[selection.Point, torch.Tensor]:
    """Each (trial, epoch)'s target softmax, from each trial's last checkpoint."""
    softmaxes = {}
    trial_ids = [row[TRIAL_ID] for row in experiment.results]
    for directory in (experiment.path or Path("/nonexistent")).glob(f"{TRIAL_DIR_PREFIX}*"):
        checkpoints = sorted(directory.glob("checkpoint_*"))
        if checkpoints:
            trial_id = trial_id_of(directory.name, trial_ids)
            softmaxes.update(selection.read_softmaxes(checkpoints[-1], trial_id))
    return softmaxes


def validator_table(experiment: Experiment) -> list[dict[str, Any]]:
    """``criterion_table`` of every label-free criterion (``m.LABEL_FREE``) over the
    experiment's candidate points (``scored_points``)."""
    return criterion_table(scored_points(experiment), m.LABEL_FREE)


def criterion_table(points: pd.DataFrame, criteria: Iterable[str]) -> list[dict[str, Any]]:
    """One row per criterion of ``criteria`` (a column of ``points``; its direction from
    ``m.SELECTABLE``, else higher is better) that has a value at some point.

    ``picked_*``: the (trial, epoch) point the criterion picks (``raydm.selection``: its best
    value over every epoch of every trial that did not fail, the first of equal values), and the
    oracle accuracy there (nan if not reported). ``spearman`` and ``weighted_spearman``
    (``raydm.correlation.rank_correlations``) compare the criterion, signed so that higher is
    better, with the oracle accuracy over the ``points`` that have both.
    """
    oracle = (
        pd.to_numeric(points[m.TARGET_ACC], errors="coerce")
        if m.TARGET_ACC in points
        else pd.Series(math.nan, index=points.index, dtype=float)
    )
    rows = []
    for name in criteria:
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

    distributions = optuna_space(experiment.config.params)
    if len(distributions) < MIN_IMPORTANCE_PARAMS:
        raise ReportError(
            f"param importance needs at least {MIN_IMPORTANCE_PARAMS} searched params; "
            f"this search has {len(distributions)}"
        )
    best_column = layout.best_column(experiment.metric)
    trials = []
    for row in experiment.results:
        value = row.get(best_column, math.nan)
        if row.get("status") not in ("completed", "stopped") or not finite(value):
            continue
        params = {key: optuna_value(row.get(key)) for key in distributions}
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
