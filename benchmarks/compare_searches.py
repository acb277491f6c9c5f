"""Two runs of the regret benchmark side by side: what a change to the search cost and bought.

    python benchmarks/compare_searches.py benchmarks/results/selection-im-steered \
        benchmarks/results/selection-dann-rungs-1-4 --methods dann

For every search (pair, method, seed) that both folders of ``benchmarks/selection.py`` hold:
the epochs it ran (its points), its wall time, its best oracle point, and the pick of
``--select`` (the shipped selector by default): its oracle accuracy, its trial's place in the
order the trials started, and its regret. Then the means, and in
how many searches the second run's pick was better or worse; whether the start-up trials'
first epochs trained to the same floats, and the platforms each run recorded. No search is run.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import pandas as pd
from selection import saved_searches

from raydm import metrics as m
from raydm.analysis import criterion_table
from raydm.layout import TRIAL_ID

# The shipped spaces' TPE start-up trials: both runs draw the same configurations for them,
# whatever the trials reported, so their first epochs can be compared between runs.
STARTUP_TRIALS = 4


def summary(folder: Path, methods: list[str], select: str) -> pd.DataFrame:
    rows = []
    for (pair, method, seed), path in saved_searches(folder).items():
        if method not in methods:
            continue
        points = pd.read_csv(path, dtype={TRIAL_ID: str})
        (row,) = criterion_table(points, [select])  # the pick as raydm makes it
        best = points[m.TARGET_ACC].max()
        # Trials in the order they first reported (two run at once: to about a trial).
        started = points.groupby(TRIAL_ID)["timestamp"].min().rank(method="first")
        first_epoch = points[points[m.EPOCH] == 1].set_index(TRIAL_ID)[m.TRAIN_LOSS]
        startup_losses = sorted(first_epoch[started[started <= STARTUP_TRIALS].index])
        rows.append(
            {
                "pair": pair,
                "method": method,
                "seed": seed,
                "epochs": len(points),
                "wall_s": points["search_wall_s"].iloc[0],
                "best": best,
                "pick": row["picked_oracle_acc"],
                "pick_trial": started[row["picked_trial"]],
                "regret": best - row["picked_oracle_acc"],
                "startup_losses": startup_losses,
                # Runs before trials recorded it (2026-12-06) have no such column.
                "platforms": set(points[m.PLATFORM].dropna()) if m.PLATFORM in points else set(),
            }
        )
    return pd.DataFrame(rows).set_index(["pair", "method", "seed"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--methods", nargs="+", default=["dann", "cgdm"])
    parser.add_argument("--select", default=m.IM)
    args = parser.parse_args()
    before, after = (summary(f, args.methods, args.select) for f in (args.before, args.after))
    both = before.add_suffix("_before").join(after.add_suffix("_after"), how="inner")
    if both.empty:
        parser.error(
            f"{args.before} and {args.after} hold no search of the same pair, method and seed"
        )
    columns = ["epochs", "wall_s", "best", "pick", "pick_trial", "regret"]
    print("| pair | method | seed | " + " | ".join(f"{c}: before, after" for c in columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for (pair, method, seed), row in both.iterrows():
        cells = [_pair(row, c) for c in columns]
        print(f"| {pair} | {method} | {seed} | " + " | ".join(cells) + " |")
    means = both.mean(numeric_only=True)
    print(f"| mean of {len(both)} | | | " + " | ".join(_pair(means, c) for c in columns) + " |")
    gain = both["pick_after"] - both["pick_before"]
    print(
        f"\nthe pick ({args.select}): better in {int((gain > 1e-9).sum())}, worse in "
        f"{int((gain < -1e-9).sum())} of {len(both)} searches; epochs run: "
        f"{both['epochs_after'].sum() / both['epochs_before'].sum():.2f}x, wall time: "
        f"{both['wall_s_after'].sum() / both['wall_s_before'].sum():.2f}x"
    )
    print(_first_epochs_compared(both))
    for name, run in (("before", before), ("after", after)):
        platforms = set().union(*run["platforms"])
        print(f"{name} ran on: {'; '.join(sorted(platforms)) or 'not recorded'}")


def _first_epochs_compared(both: pd.DataFrame) -> str:
    """Whether the two runs trained the start-up trials to the same floats: each first-epoch
    training loss of the first run against the nearest of the second's in the same search."""
    same, differences = 0, []
    pairs = zip(both["startup_losses_before"], both["startup_losses_after"], strict=True)
    for before, after in pairs:
        for loss in before:
            nearest = min(after, key=lambda other: abs(other - loss))
            same += nearest == loss
            differences.append(abs(nearest - loss) / loss)
    return (
        f"the start-up trials' first-epoch training loss: equal to the bit in {same} of "
        f"{len(differences)}; relative difference median {statistics.median(differences):.1e}, "
        f"max {max(differences):.1e}"
    )


def _pair(row: pd.Series, column: str) -> str:
    before, after = row[f"{column}_before"], row[f"{column}_after"]
    if column in ("epochs", "wall_s", "pick_trial"):
        return f"{before:.0f}, {after:.0f}"
    return f"{before:.3f}, {after:.3f}"


if __name__ == "__main__":
    main()
