"""Can a combination of the label-free criteria beat IM's pick? Read from saved searches only.

    python benchmarks/selector_combinations.py

Each rule below picks one point (trial, epoch) of a search from the label-free columns that
``benchmarks/selection.py`` saved for it; the table gives each rule's mean regret (the search's
best oracle point minus the pick's) over the adapted searches of each results folder. The two
default folders hold different runs of the same 24 searches (steered by source accuracy, and
by IM as shipped), so a rule that only fits one folder's noise shows it in the other. No search
is run; nothing here is shipped unless BENCHMARKS.md says so.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from selection import BASELINE, saved_searches

from raydm import metrics as m
from raydm.layout import TRIAL_ID

RESULTS = Path(__file__).resolve().parent / "results"
Rule = Callable[[pd.DataFrame], pd.Series]


def _rank(values: pd.Series) -> pd.Series:
    return values.rank(pct=True)


def _within_source_accuracy(margin: float) -> Rule:
    """IM among the points whose source accuracy is within ``margin`` of the search's best."""

    def rule(points: pd.DataFrame) -> pd.Series:
        accuracy = points[m.SOURCE_VAL_ACC]
        return points[m.IM].where(accuracy >= accuracy.max() - margin)

    return rule


def _diversity_weighted(weight: float) -> Rule:
    """Negative entropy plus ``weight`` times IM's diversity term H(mean prediction); IM is
    weight 1."""

    def rule(points: pd.DataFrame) -> pd.Series:
        return points[m.NEG_ENTROPY] + weight * (points[m.IM] - points[m.NEG_ENTROPY])

    return rule


def _last_epochs(points: pd.DataFrame) -> pd.Series:
    last = points.groupby(TRIAL_ID)[m.EPOCH].transform("max") == points[m.EPOCH]
    return points[m.IM].where(last)


def _smoothed(points: pd.DataFrame) -> pd.Series:
    """A point's IM averaged with its trial's previous epoch: a trial whose IM jumps for one
    epoch is not preferred for it."""
    ordered = points.sort_values(m.EPOCH)
    mean = ordered.groupby(TRIAL_ID)[m.IM].transform(lambda v: v.rolling(2, min_periods=1).mean())
    return mean.reindex(points.index)


# DANN's own discriminator, on its training batches: the one logged signal of whether the
# target's features sit among the source's. Other methods have no such column and keep IM.
DISCRIMINATOR_ACC = "train/domain_acc"


def _discriminator_confused(points: pd.DataFrame) -> pd.Series:
    """IM among the points whose discriminator accuracy is at most the search's median."""
    if DISCRIMINATOR_ACC not in points:
        return points[m.IM]
    accuracy = points[DISCRIMINATOR_ACC]
    return points[m.IM].where(accuracy <= accuracy.median())


def _rank_with_confusion(points: pd.DataFrame) -> pd.Series:
    if DISCRIMINATOR_ACC not in points:
        return points[m.IM]
    return _rank(points[m.IM]) - _rank(points[DISCRIMINATOR_ACC])


RULES: dict[str, Rule] = {
    "im (shipped)": lambda p: p[m.IM],
    "im, last epoch of each trial": _last_epochs,
    "im, mean of a trial's last two epochs": _smoothed,
    "im within 0.01 of the best source acc": _within_source_accuracy(0.01),
    "im within 0.02 of the best source acc": _within_source_accuracy(0.02),
    "im within 0.05 of the best source acc": _within_source_accuracy(0.05),
    "neg entropy + 0.5 x diversity": _diversity_weighted(0.5),
    "neg entropy + 2 x diversity": _diversity_weighted(2.0),
    "rank mean: im, source acc": lambda p: _rank(p[m.IM]) + _rank(p[m.SOURCE_VAL_ACC]),
    "rank mean: im, -source loss": lambda p: _rank(p[m.IM]) - _rank(p[m.SOURCE_VAL_LOSS]),
    "rank mean: im, ensv": lambda p: _rank(p[m.IM]) + _rank(p[m.ENSV]),
    "rank mean: im, class_ami": lambda p: _rank(p[m.IM]) + _rank(p[m.CLASS_AMI]).fillna(0),
    "ensv among im's top half": lambda p: p[m.ENSV].where(p[m.IM] >= p[m.IM].median()),
    "im where DANN's discriminator is at most its median accuracy": _discriminator_confused,
    "rank mean: im, -DANN's discriminator acc": _rank_with_confusion,
}


def regrets(folder: Path) -> pd.DataFrame:
    """One row per adapted search of ``folder`` and rule: the rule's regret."""
    rows = []
    for (pair, method, seed), path in saved_searches(folder).items():
        if method == BASELINE:
            continue
        points = pd.read_csv(path, dtype={TRIAL_ID: str})
        best = points[m.TARGET_ACC].max()
        for name, rule in RULES.items():
            pick = rule(points).idxmax()
            regret = best - points.loc[pick, m.TARGET_ACC]
            rows.append(
                {"pair": pair, "method": method, "seed": seed, "rule": name, "regret": regret}
            )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = [RESULTS / "selection", RESULTS / "selection-im-steered"]
    parser.add_argument("folders", nargs="*", type=Path, default=default)
    args = parser.parse_args()
    columns = {}
    for folder in args.folders:
        table = regrets(folder)
        searches = len(table) // len(RULES)
        by_method = table.pivot_table(index="rule", columns="method", values="regret")
        for method in by_method:
            columns[f"{folder.name}: {method}"] = by_method[method]
        columns[f"{folder.name}: all {searches}"] = table.groupby("rule")["regret"].mean()
    summary = pd.DataFrame(columns).loc[list(RULES)]
    print("mean regret (points of target accuracy) over the adapted searches of each folder\n")
    print("| rule | " + " | ".join(summary.columns) + " |")
    print("|---" * (len(summary.columns) + 1) + "|")
    for rule, row in summary.iterrows():
        print(f"| {rule} | " + " | ".join(f"{100 * value:.1f}" for value in row) + " |")


if __name__ == "__main__":
    main()
