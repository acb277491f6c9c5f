"""How well a label-free criterion ranks (trial, epoch) points by their oracle accuracy: an
analysis after the fact, never a selector. The weighted Spearman correlation is Musgrave,
Belongie & Lim's ("Benchmarking validation methods for unsupervised domain adaptation",
arXiv:2208.07360, 2022).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata, spearmanr
from torch import Tensor

WEIGHTED_SPEARMAN_POWER = 2.0


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    mx = np.average(x, weights=w)
    my = np.average(y, weights=w)
    covariance = np.average((x - mx) * (y - my), weights=w)
    spread = math.sqrt(np.average((x - mx) ** 2, weights=w) * np.average((y - my) ** 2, weights=w))
    return float(covariance / spread) if spread > 0 else math.nan


def _weighted_ranks(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each value's rank counted in weight: the total weight of the smaller values, plus the
    mean weight of its tie group times (group size + 1) / 2. With unit weights this is the
    average-tie rank; without ties, the total weight of the values at or below it."""
    distinct, group, counts = np.unique(values, return_inverse=True, return_counts=True)
    group_weight = np.bincount(group, weights=weights, minlength=len(distinct))
    below = np.cumsum(group_weight) - group_weight
    return (below + (counts + 1) / 2 * group_weight / counts)[group]


def _vector(values) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).reshape(-1)


def rank_correlations(
    validator_values: Sequence[float] | np.ndarray | Tensor,
    oracle_values: Sequence[float] | np.ndarray | Tensor,
) -> dict[str, float]:
    """How well a validator ranks (trial, epoch) points by their oracle (target) accuracy.

    Returns ``{"spearman": ..., "weighted_spearman": ...}``:

    - ``spearman``: scipy's Spearman rank correlation.
    - ``weighted_spearman``: the weighted Spearman correlation of Musgrave et al. (2022), which
      cares most about the points either ranking puts on top, since that is where a model is
      selected. As their benchmark code defines it:

      1. dense ranks of the validator values and of the oracle values, each divided by its
         largest rank (so both lie in (0, 1]);
      2. weights w_i = max(validator rank_i, oracle rank_i)^p, p = ``WEIGHTED_SPEARMAN_POWER``;
      3. both value lists ranked again, in weight (``_weighted_ranks``), and the w-weighted
         Pearson correlation of those two weighted rank lists.

      With p = 0 this is the plain Spearman correlation.

    A non-finite validator value counts as the worst finite one (as Musgrave et al.'s code does:
    a validator that failed would not select that point). Both values are NaN when there are
    fewer than 3 points or either input is constant.
    """
    scores, oracle = _vector(validator_values), _vector(oracle_values)
    if len(scores) != len(oracle):
        raise ValueError(f"{len(scores)} validator values for {len(oracle)} oracle values")
    if not np.isfinite(oracle).all():
        raise ValueError("oracle values must be finite")
    nan = {"spearman": math.nan, "weighted_spearman": math.nan}
    finite = np.isfinite(scores)
    if len(scores) < 3 or not finite.any():
        return nan
    scores = np.where(finite, scores, scores[finite].min())
    if np.ptp(scores) == 0 or np.ptp(oracle) == 0:
        return nan
    score_ranks = rankdata(scores, method="dense")
    oracle_ranks = rankdata(oracle, method="dense")
    weights = (
        np.maximum(score_ranks / score_ranks.max(), oracle_ranks / oracle_ranks.max())
        ** WEIGHTED_SPEARMAN_POWER
    )
    return {
        "spearman": float(spearmanr(scores, oracle).statistic),
        "weighted_spearman": _weighted_pearson(
            _weighted_ranks(scores, weights), _weighted_ranks(oracle, weights), weights
        ),
    }
