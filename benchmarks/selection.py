"""The regret benchmark: how good is each label-free selector's pick of a real search?

    python benchmarks/selection.py --pairs mnist_mnistm --methods dann cgdm --seeds 0 1 2

For every offline pair x method x seed, one run of the method's shipped search
(``search_spaces/<method>.yaml`` on the pair's domains, ``search.searcher.seed`` and
``train.seed`` set to the seed), plus the source-only search of the same pair and seed. Each
search's candidates (every epoch of every trial that did not fail, with every label-free
criterion and EnsV's agreement; ``raydm.report.scored_points``) are saved to
``--out/<pair>-<method>-seed<k>.csv``; a search whose file exists is not run again, so the
benchmark resumes where it stopped and ``--analyse-only`` re-reads what is there.

For every criterion of ``raydm.metrics.LABEL_FREE``, and EnsV over the trials' final epochs
only (``ensv_final``, as EnsV's official code runs it), per search:

- the oracle target accuracy of its pick (the point where it is best);
- regret: the search's best oracle point minus the pick's;
- gain: the pick's oracle accuracy minus that of the same criterion's pick in the source-only
  search of the same pair and seed;
- the weighted Spearman correlation (Musgrave et al. 2022) of the criterion with the oracle.

And per search, the oracle accuracy on the target test split of ``raydm predict --ensemble
K`` for K = 1, 3, 5 (the top K kept checkpoints by the search's selector), saved to
``--out/<pair>-<method>-seed<k>-ensemble.csv``.

The summary ranks the criteria by their mean regret over every pair and method: the shipped
default is chosen from that mean, never per pair (that would use target labels in hindsight).
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from target_accuracy import PAIRS

from raydm import metrics as m
from raydm import predict
from raydm.analysis import criterion_table, saved_softmaxes, scored_points
from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.experiment import load_experiment
from raydm.layout import TRIAL_ID
from raydm.selection import ensv_column

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
BASELINE = "source_only"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument("--methods", nargs="+", default=["dann", "cgdm"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/selection"))
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every search")
    parser.add_argument("--analyse-only", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        for seed in args.seeds:  # a seed of every pair first, so a cut-off run is balanced
            for pair in args.pairs:
                for method in [BASELINE, *args.methods]:
                    _search(pair, method, seed, args)
    analyse(args.out, args.pairs, args.methods, args.seeds)


def _points_file(out: Path, pair: str, method: str, seed: int) -> Path:
    return out / f"{pair}-{method}-seed{seed}.csv"


def saved_searches(out: Path) -> dict[tuple[str, str, int], Path]:
    """Every search whose points are saved under ``out``: (pair, method, seed) -> its file."""
    searches = {}
    for path in sorted(out.glob("*-seed[0-9].csv")):
        pair, method, seed = path.stem.split("-")  # the names of _points_file
        searches[pair, method, int(seed.removeprefix("seed"))] = path
    return searches


def _search(pair: str, method: str, seed: int, args) -> None:
    path = _points_file(args.out, pair, method, seed)
    if path.exists():
        return
    overrides = [
        *PAIRS[pair].data,
        f"data.root={args.root}",
        f"search.searcher.seed={seed}",
        f"train.seed={seed}",
        # Every criterion where picks can fall, to compare them (the shipped spaces compute
        # the costly ones only when a search ranks by them).
        "search.costly_validators=rungs",
        *args.set,
    ]
    with tempfile.TemporaryDirectory() as storage:
        command = [sys.executable, "-m", "raydm", "tune", "--space"]
        command += [str(SPACES / f"{method}.yaml"), "--storage-path", storage, "--name", "search"]
        command += [part for override in overrides for part in ("--set", override)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wall = time.perf_counter() - started
        experiment = load_experiment(Path(storage) / "search")
        points = with_ensv_of_final_epochs(scored_points(experiment), saved_softmaxes(experiment))
        ensembles = ensemble_accuracies(Path(storage) / "search", experiment.config)
    pd.DataFrame(ensembles).to_csv(_ensemble_file(path), index=False)
    points.assign(search_wall_s=wall).to_csv(path, index=False)
    print(f"{path.name}: {len(points)} points in {wall:.0f} s", flush=True)


ENSEMBLE_SIZES = (1, 3, 5)


def _ensemble_file(points_file: Path) -> Path:
    return points_file.with_name(points_file.stem + "-ensemble.csv")


def ensemble_accuracies(experiment_dir: Path, config) -> list[dict]:
    """The oracle target accuracy of ``raydm predict --ensemble K`` (the top K kept
    checkpoints by the search's selector, softmax averaged) on the target test split."""
    test = load_domain_pair(config.data).target_test
    _, ranking = predict.kept_candidates(experiment_dir)
    ranking = ranking[: max(ENSEMBLE_SIZES)]
    models = [predict.load_model(c.checkpoint, torch.device("cpu")) for c in ranking]
    images = predict.Images([str(i) for i in range(len(test))], test, None)
    rows = []
    for size in ENSEMBLE_SIZES:
        if size > len(models):
            break
        probabilities = predict.predict(models[:size], images, batch_size=256)
        accuracy = (probabilities.argmax(1) == test.labels).float().mean().item()
        members = " ".join(c.describe().replace(" ", "_") for c in ranking[:size])
        rows.append({"ensemble": size, "oracle_acc": accuracy, "members": members})
    return rows


# EnsV as its official code runs it: the ensemble of each candidate's final checkpoint only,
# the arm beside raydm's ensemble of every (trial, epoch).
ENSV_FINAL = "ensv_final"
CRITERIA = (*m.LABEL_FREE, ENSV_FINAL)


def with_ensv_of_final_epochs(points: pd.DataFrame, softmaxes) -> pd.DataFrame:
    """``points`` with EnsV's agreement of each trial's last epoch with the ensemble of the
    trials' last epochs (nan at the other epochs)."""
    last = points.groupby(TRIAL_ID)[m.EPOCH].transform("max") == points[m.EPOCH]
    finals = points[last]
    column = pd.Series(ensv_column(finals, softmaxes), index=finals.index)
    return points.assign(**{ENSV_FINAL: column})


def score(points: pd.DataFrame, baseline: pd.DataFrame | None) -> dict[str, dict[str, float]]:
    """Per criterion: the pick's oracle accuracy, regret, gain over the baseline's pick with the
    same criterion (and the best point's gain over it), and weighted Spearman, for one
    search's points."""
    best = float(points[m.TARGET_ACC].max())
    baseline_picks = {}
    if baseline is not None:
        baseline_picks = {
            row["validator"]: row["picked_oracle_acc"]
            for row in criterion_table(baseline, [c for c in CRITERIA if c in baseline])
        }
    scores = {}
    # A search measured before a criterion was added has no column for it.
    for row in criterion_table(points, [c for c in CRITERIA if c in points]):
        at_pick, against = row["picked_oracle_acc"], baseline_picks.get(row["validator"], math.nan)
        scores[row["validator"]] = {
            "oracle_at_pick": at_pick,
            "regret": best - at_pick,
            "gain": at_pick - against,
            "best_gain": best - against,  # what the best point gains over the baseline's pick
            "weighted_spearman": row["weighted_spearman"],
        }
    return scores


def analyse(out: Path, pairs: list[str], methods: list[str], seeds: list[int]) -> None:
    rows = []
    for pair in pairs:
        for seed in seeds:
            baseline_file = _points_file(out, pair, BASELINE, seed)
            baseline = (
                pd.read_csv(baseline_file, dtype={TRIAL_ID: str})
                if baseline_file.exists()
                else None
            )
            for method in [BASELINE, *methods]:
                path = _points_file(out, pair, method, seed)
                if not path.exists():
                    continue
                points = pd.read_csv(path, dtype={TRIAL_ID: str})
                against = None if method == BASELINE else baseline
                best = float(points[m.TARGET_ACC].max())
                for name, values in score(points, against).items():
                    rows.append(
                        {
                            "pair": pair,
                            "method": method,
                            "seed": seed,
                            "criterion": name,
                            "best_oracle": best,
                            **values,
                        }
                    )
    if not rows:
        print("no searches measured yet")
        return
    table = pd.DataFrame(rows)
    print(
        "| pair | method | seed | best oracle point | im pick (shipped) | source_acc pick "
        "| mixval_inter pick | ensv pick |\n|---|---|---|---|---|---|---|---|"
    )
    for (pair, method, seed), group in table.groupby(["pair", "method", "seed"], sort=False):
        by = group.set_index("criterion")["oracle_at_pick"]
        print(
            f"| {pair} | {method} | {seed} | {group['best_oracle'].iloc[0]:.3f} | "
            + " | ".join(
                f"{by.get(name, math.nan):.3f}"
                for name in (m.IM, m.SOURCE_VAL_ACC, m.MIXVAL_INTER, m.ENSV)
            )
            + " |"
        )
    adapted = table[table["method"] != BASELINE]
    searches = adapted.groupby(["pair", "method", "seed"]).ngroups
    print(
        f"\nover {searches} adapted searches (every pair and method; source-only searches "
        "only as the gain's baseline):"
    )
    print(
        "| criterion | mean regret | max regret | mean gain over source-only's pick "
        "| beats it where the best point does | mean weighted Spearman |\n"
        "|---|---|---|---|---|---|"
    )
    summary = []
    for name, group in adapted.groupby("criterion"):
        gains = group["gain"].dropna()
        where = group[group["best_gain"] > 0]
        spearman = [v for v in group["weighted_spearman"] if math.isfinite(v)]
        summary.append(
            (
                group["regret"].mean(),
                name,
                group["regret"].max(),
                gains.mean() if len(gains) else math.nan,
                f"{int((where['gain'] > 0).sum())}/{len(where)}",
                statistics.fmean(spearman) if spearman else math.nan,
            )
        )
    for regret, name, worst, gain, beats, spearman in sorted(summary):
        print(f"| {name} | {regret:.4f} | {worst:.4f} | {gain:+.4f} | {beats} | {spearman:.3f} |")
    print("\nmean regret per pair and method:")
    columns = adapted.groupby(["pair", "method"], sort=False).groups
    print("| criterion | " + " | ".join(f"{p} {mt}" for p, mt in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for _, name, *_ in sorted(summary):
        cells = []
        for pair, method in columns:
            group = adapted[(adapted["pair"] == pair) & (adapted["method"] == method)]
            cells.append(f"{group.loc[group['criterion'] == name, 'regret'].mean():.4f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"\nlowest mean regret: {sorted(summary)[0][1]}")
    analyse_noise_floor(adapted, out)
    searches = {
        key: _read_points(out, *key) for key in adapted.groupby(["pair", "method", "seed"]).groups
    }
    analyse_regret_sources(searches)
    analyse_costly_schedule(searches)
    analyse_ensembles(out, pairs, methods, seeds)


def _read_points(out: Path, pair: str, method: str, seed: int) -> pd.DataFrame:
    return pd.read_csv(_points_file(out, pair, method, seed), dtype={TRIAL_ID: str})


def analyse_regret_sources(searches: dict[tuple, pd.DataFrame]) -> None:
    """Each criterion's mean regret split in two: choosing the wrong trial (the best point
    minus the best point of the picked trial) and the wrong epoch of that trial."""
    rows = []
    for points in searches.values():
        best = points[m.TARGET_ACC].max()
        trial_best = points.groupby(TRIAL_ID)[m.TARGET_ACC].max()
        for row in criterion_table(points, [c for c in CRITERIA if c in points]):
            across = best - trial_best[row["picked_trial"]]
            within = trial_best[row["picked_trial"]] - row["picked_oracle_acc"]
            rows.append({"criterion": row["validator"], "across": across, "within": within})
    table = pd.DataFrame(rows).groupby("criterion")[["across", "within"]].mean()
    table = table.assign(regret=table.sum(axis=1)).sort_values("regret")
    print("\nwhere the regret comes from (adapted searches): the wrong trial, the wrong epoch")
    print("| criterion | mean regret | wrong trial | wrong epoch of the right trial |")
    print("|---|---|---|---|")
    for name, row in table.iterrows():
        print(f"| {name} | {row['regret']:.4f} | {row['across']:.4f} | {row['within']:.4f} |")


def analyse_costly_schedule(searches: dict[tuple, pd.DataFrame]) -> None:
    """The costly validators' picks when a search computes them only where this benchmark's
    searches do (``search.costly_validators: rungs``) against every epoch, on the same points:
    a validator's value does not depend on when it is computed."""
    rows = []
    for (_, method, _), points in searches.items():
        config = load_config(SPACES / f"{method}.yaml", ["search.costly_validators=rungs"])
        computed = [
            epoch in config.costly_validator_epochs(planned)
            for epoch, planned in zip(points[m.EPOCH], points[m.EPOCHS_PLANNED], strict=True)
        ]
        every, scheduled = (
            {r["validator"]: r for r in criterion_table(part, m.COSTLY_VALIDATORS)}
            for part in (points, points[computed])
        )
        best = points[m.TARGET_ACC].max()
        for name in every:
            before, after = every[name], scheduled[name]
            rows.append(
                {
                    "criterion": name,
                    "every_epoch": best - before["picked_oracle_acc"],
                    "rungs": best - after["picked_oracle_acc"],
                    "same_pick": (before["picked_trial"], before["picked_epoch"])
                    == (after["picked_trial"], after["picked_epoch"]),
                    "computed": float(np.mean(computed)),
                }
            )
    rows = pd.DataFrame(rows)
    rows["better"] = rows["rungs"] < rows["every_epoch"] - 1e-9
    rows["worse"] = rows["rungs"] > rows["every_epoch"] + 1e-9
    table = rows.groupby("criterion", sort=False).agg(
        every_epoch=("every_epoch", "mean"),
        rungs=("rungs", "mean"),
        same_pick=("same_pick", "mean"),
        better=("better", "sum"),
        worse=("worse", "sum"),
        computed=("computed", "mean"),
    )
    print("\nthe costly validators computed every epoch or only at rungs and last epochs")
    print(
        "| criterion | mean regret, every epoch | mean regret, rungs | same pick "
        "| searches where rungs pick better | worse |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in table.iterrows():
        print(
            f"| {name} | {row['every_epoch']:.4f} | {row['rungs']:.4f} | {row['same_pick']:.0%} "
            f"| {row['better']:.0f} | {row['worse']:.0f} |"
        )
    print(f"share of the points where they are computed: {table['computed'].mean():.0%}")


def noise_floor(accuracies: np.ndarray, test_size: int, draws: int = 2000, seed: int = 0) -> float:
    """The regret a perfect selector would show on a test split of ``test_size`` images: with
    each point's accuracy as its truth, the mean over binomial draws of the best drawn point
    minus the draw of the truly best one. Draws are independent per point; the points' errors
    on shared images are correlated, which makes the real floor lower: an upper estimate."""
    rng = np.random.default_rng(seed)
    drawn = rng.binomial(test_size, accuracies, size=(draws, len(accuracies))) / test_size
    return float((drawn.max(axis=1) - drawn[:, int(np.argmax(accuracies))]).mean())


def analyse_noise_floor(adapted: pd.DataFrame, out: Path) -> None:
    """Per pair: the mean regret a perfect selector would show from the oracle's own noise."""
    print("\nthe oracle's noise floor: the regret of a perfect selector (an upper estimate)")
    print(
        "| pair | target test images | mean noise floor | mean regret of im (shipped) "
        "| of source_acc |"
    )
    print("|---|---|---|---|---|")
    for pair, group in adapted.groupby("pair", sort=False):
        config = load_config(SPACES / "dann.yaml", ["params={}", *PAIRS[pair].data])
        test_size = len(load_domain_pair(config.data).target_test)
        floors = []
        for (method, seed), _ in group.groupby(["method", "seed"]):
            points = _read_points(out, pair, method, seed)
            floors.append(noise_floor(points[m.TARGET_ACC].to_numpy(), test_size))
        shipped, source_acc = (
            group.loc[group["criterion"] == name, "regret"].mean()
            for name in (m.IM, m.SOURCE_VAL_ACC)
        )
        print(
            f"| {pair} | {test_size} | {statistics.fmean(floors):.4f} | {shipped:.4f} "
            f"| {source_acc:.4f} |"
        )


def analyse_ensembles(out: Path, pairs: list[str], methods: list[str], seeds: list[int]) -> None:
    """Per pair and method: the oracle accuracy of --ensemble K against the single pick."""
    rows = []
    for pair in pairs:
        for method in [BASELINE, *methods]:
            for seed in seeds:
                path = _ensemble_file(_points_file(out, pair, method, seed))
                if path.exists():
                    accuracy = pd.read_csv(path).set_index("ensemble")["oracle_acc"]
                    single = accuracy[1]
                    where = {"pair": pair, "method": method, "seed": seed}
                    rows += [
                        {**where, "k": k, "gain": acc - single}
                        for k, acc in accuracy.items()
                        if k > 1
                    ]
    if not rows:
        return
    table = pd.DataFrame(rows)
    print("\n--ensemble K: oracle accuracy minus the single pick's (mean over seeds; wins/seeds)")
    print("| pair | method | " + " | ".join(f"K={k}" for k in ENSEMBLE_SIZES[1:]) + " |")
    print("|---|---|" + "---|" * (len(ENSEMBLE_SIZES) - 1))
    for (pair, method), group in table.groupby(["pair", "method"], sort=False):
        cells = []
        for k in ENSEMBLE_SIZES[1:]:
            gains = group.loc[group["k"] == k, "gain"]
            cells.append(f"{gains.mean():+.4f} ({int((gains > 0).sum())}/{len(gains)})")
        print(f"| {pair} | {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
