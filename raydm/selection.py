"""The final pick of a search: one (trial, epoch) point, chosen without target labels.

A search ends with candidates: every epoch of every trial that did not fail. ``search.metric``
steers TPE and ASHA while the search runs; ``search.select`` (by default the same metric)
chooses among the candidates afterwards:

- a reported metric: the point where it is best, over every epoch of every trial;
- ``ensv`` (EnsV: Hu et al., NeurIPS 2024 Datasets and Benchmarks; code LHXXHB/EnsV): the
  point whose target predictions agree most with the ensemble of all candidates
  (``ensemble_agreement``). It needs each point's softmax on the validation target subset,
  which every checkpoint keeps.

Ties go to the first point in the order given (the search's ranking, then epoch order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from raydm import metrics as m
from raydm.layout import SOFTMAX_FILE, TRIAL_ID

Point = tuple[str, int]  # (trial id, epoch)
RANK_VALUE = "value"  # the selector's value in a ranking


@dataclass(frozen=True)
class Pick:
    selector: str
    trial_id: str
    epoch: int
    value: float  # the selector's value at the pick: the metric, or EnsV's agreement

    def describe(self) -> str:
        return f"{self.selector} = {self.value:.4f} at trial {self.trial_id}, epoch {self.epoch}"


def candidates(histories: pd.DataFrame, eligible: set[str]) -> pd.DataFrame:
    """One row per (trial, epoch) report of the ``eligible`` trials (the last report of an
    epoch a resumed trial reported twice), in the order given."""
    points = histories[histories[TRIAL_ID].isin(eligible) & histories[m.EPOCH].notna()]
    points = points.drop_duplicates([TRIAL_ID, m.EPOCH], keep="last")
    return points.assign(**{m.EPOCH: points[m.EPOCH].astype(int)}).reset_index(drop=True)


def ranking(
    points: pd.DataFrame,
    selector: str,
    softmaxes: Mapping[Point, torch.Tensor] | None = None,
    mode: str | None = None,
) -> pd.DataFrame:
    """``points`` with a finite value of ``selector`` (a metric, best by ``mode``, by default
    its direction in ``m.SELECTABLE``; or ``m.ENSV``, from ``softmaxes`` when given, else
    from the points' own ensv column), best first, as (trial id, epoch, ``RANK_VALUE``) rows;
    ties keep the order given."""
    if selector == m.ENSV:
        if softmaxes is not None:
            points = points.assign(**{m.ENSV: ensv_column(points, softmaxes)})
        mode = "max"
    if selector not in points:
        return pd.DataFrame(columns=[TRIAL_ID, m.EPOCH, RANK_VALUE])
    values = pd.to_numeric(points[selector], errors="coerce")
    ranked = points.assign(**{RANK_VALUE: values})[np.isfinite(values)]
    ascending = (mode or m.SELECTABLE[selector]) == "min"
    ranked = ranked.sort_values(RANK_VALUE, ascending=ascending, kind="stable")
    return ranked[[TRIAL_ID, m.EPOCH, RANK_VALUE]].reset_index(drop=True)


def first(ranked: pd.DataFrame, selector: str) -> Pick | None:
    """The top point of a ``ranking``; None when it is empty."""
    if ranked.empty:
        return None
    top = ranked.iloc[0]
    return Pick(selector, str(top[TRIAL_ID]), int(top[m.EPOCH]), float(top[RANK_VALUE]))


def by_metric(points: pd.DataFrame, metric: str, mode: str | None = None) -> Pick | None:
    """The point where ``metric`` is best (``mode``, by default its direction in
    ``m.SELECTABLE``); None when no point reported a finite value."""
    return first(ranking(points, metric, mode=mode), metric)


def ensemble_agreement(probabilities: torch.Tensor) -> torch.Tensor:
    """EnsV (Hu et al., NeurIPS 2024): each candidate's agreement with the candidates' ensemble.

    ``probabilities`` is M x N x K: the softmax outputs of M candidate models on the same N
    unlabelled target samples. The ensemble's pseudo-labels are the argmax of the candidates'
    mean softmax; each candidate's score is the share of samples on which its own argmax gives
    the same label. An outlier (a diverged or collapsed candidate) disagrees with the majority
    and scores low, so the pick is never the worst of the lot.
    """
    p = torch.as_tensor(probabilities).detach().cpu().to(torch.float32)
    if p.ndim != 3 or 0 in p.shape:
        raise ValueError(
            f"probabilities must be a non-empty M x N x K array, got shape {tuple(p.shape)}"
        )
    consensus = p.mean(0).argmax(1)
    return (p.argmax(2) == consensus).to(torch.float64).mean(1)


def ensv_scores(softmaxes: Mapping[Point, torch.Tensor]) -> dict[Point, float]:
    """EnsV's agreement of each point with the ensemble of all of them."""
    if not softmaxes:
        return {}
    stacked = torch.stack([p.float() for p in softmaxes.values()])
    return dict(zip(softmaxes, ensemble_agreement(stacked).tolist(), strict=True))


def ensv_column(points: pd.DataFrame, softmaxes: Mapping[Point, torch.Tensor]) -> list[float]:
    """EnsV's agreement of each of ``points`` with the ensemble of those whose softmax is in
    ``softmaxes`` (nan for the others), in the order of ``points``."""
    order = [(str(t), int(e)) for t, e in zip(points[TRIAL_ID], points[m.EPOCH], strict=True)]
    scores = ensv_scores({point: softmaxes[point] for point in order if point in softmaxes})
    return [scores.get(point, np.nan) for point in order]


def select(
    points: pd.DataFrame,
    selector: str,
    softmaxes: Mapping[Point, torch.Tensor] | None = None,
    mode: str | None = None,
) -> Pick | None:
    """The final pick among ``points`` by ``selector`` (a metric name, best by ``mode``, or
    ``m.ENSV``)."""
    return first(ranking(points, selector, softmaxes, mode), selector)


def read_softmaxes(checkpoint_dir: Path, trial_id: str) -> dict[Point, torch.Tensor]:
    """The per-epoch target softmax one trial's checkpoint holds ({} if it holds none)."""
    path = Path(checkpoint_dir) / SOFTMAX_FILE
    if not path.is_file():
        return {}
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return {(trial_id, int(epoch)): probabilities for epoch, probabilities in saved.items()}
