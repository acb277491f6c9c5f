"""Search efficiency: ASHA + TPE against plain random search, judged on the oracle at the pick.

    python benchmarks/search_efficiency.py --seeds 0 1 2 --select val/source_acc

For each searcher seed, two searches of ``--space`` (default ``search_spaces/dann.yaml``) with
the same trials' budget (the space's ``num_samples`` trials of up to ``train.epochs`` epochs
each) and the same training seed:

- random: Optuna's random sampler; every trial runs to its last epoch (FIFO);
- asha_tpe: the space as shipped: TPE after its random start-up trials, ASHA stopping the weak.

Both are steered by ``--metric`` (default: the space's ``search.metric``). Within a search,
trials run one at a time, so the order in which epochs were consumed is the order in which
they ran; ``--parallel`` searches run side by side (one core each). After every consumed epoch,
the pick so far (``raydm.selection`` with ``--select``, default the metric: the best point among
the epochs run so far, or EnsV over them) has an oracle target accuracy; the table gives each
search's final pick and, for asha_tpe, the epochs it consumed until its pick's oracle accuracy
first reached that of random search's final pick with the same seed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from raydm import metrics as m
from raydm import selection
from raydm.analysis import saved_softmaxes, scored_points
from raydm.experiment import load_experiment
from raydm.layout import TRIAL_ID

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
METHODS = {
    "random": ["search.searcher.sampler=random", "search.scheduler.type=fifo"],
    "asha_tpe": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=None, help="train.iters_per_epoch")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--space", type=Path, default=SPACES / "dann.yaml")
    parser.add_argument("--metric", default=None, help="search.metric, steering both searches")
    parser.add_argument("--select", default=None, help="the pick's criterion; default: metric")
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for both searches")
    args = parser.parse_args()
    jobs = [(seed, method) for seed in args.seeds for method in METHODS]
    with tempfile.TemporaryDirectory() as storage, ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(
            zip(jobs, pool.map(lambda job: _search(*job, storage, args), jobs), strict=True)
        )
    print(
        "| seed | method | epochs run | pick: oracle acc (at epoch #) "
        "| epochs until the pick reached random's |\n|---|---|---|---|---|"
    )
    fractions = []
    for seed in args.seeds:
        target = runs[seed, "random"]["curve"][-1]
        for method in METHODS:
            run = runs[seed, method]
            reached = _epochs_to_reach(run["curve"], target)
            if method == "asha_tpe":
                total = runs[seed, "random"]["epochs"]
                fractions.append(reached / total if reached else math.inf)
            print(
                f"| {seed} | {method} | {run['epochs']} | {run['curve'][-1]:.3f} "
                f"({_epochs_to_reach(run['curve'], run['curve'][-1])}) "
                f"| {reached if reached else 'not reached'} |"
            )
    finite = [f for f in fractions if math.isfinite(f)]
    print(
        "asha_tpe epochs until its pick's oracle accuracy reached random's final pick's, as a "
        f"share of random's epochs: "
        f"{', '.join(f'{f:.2f}' if math.isfinite(f) else 'not reached' for f in fractions)}"
        + (f" (median {statistics.median(fractions):.2f})" if len(finite) == len(fractions) else "")
    )


def _search(seed: int, method: str, storage: str, args) -> dict:
    name = f"{method}-seed{seed}"
    overrides = [
        f"search.searcher.seed={seed}",
        "search.max_concurrent=1",
        f"data.root={args.root}",
        *METHODS[method],
        *([f"search.metric={args.metric}"] if args.metric else []),
        *([f"train.iters_per_epoch={args.iters}"] if args.iters else []),
        *args.set,
    ]
    command = [sys.executable, "-m", "raydm", "tune", "--space", str(args.space)]
    command += ["--storage-path", storage, "--name", name]
    command += [part for override in overrides for part in ("--set", override)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    experiment = load_experiment(Path(storage) / name)
    criterion = args.select or experiment.metric
    points = _in_run_order(scored_points(experiment).reset_index(drop=True))
    softmaxes = saved_softmaxes(experiment) if criterion == m.ENSV else None
    curve = []
    for count in range(1, len(points) + 1):
        so_far = points.iloc[:count]
        mode = experiment.mode if criterion == experiment.metric else None
        pick = selection.select(so_far, criterion, softmaxes, mode)
        if pick is None:
            curve.append(-math.inf)
            continue
        at = (so_far[TRIAL_ID] == pick.trial_id) & (so_far[m.EPOCH] == pick.epoch)
        curve.append(float(so_far.loc[at, m.TARGET_ACC].iloc[0]))
    return {"epochs": len(points), "curve": curve}


def _in_run_order(rows: pd.DataFrame) -> pd.DataFrame:
    """One search's epochs in the order they ran: trials one at a time, by start time."""
    started = (rows["timestamp"] - rows["time_total_s"]).groupby(rows[TRIAL_ID]).transform("min")
    return rows.assign(_started=started).sort_values(["_started", m.EPOCH]).drop(columns="_started")


def _epochs_to_reach(curve: list[float], target: float) -> int | None:
    """How many epochs had run when the pick's oracle accuracy first reached ``target``."""
    for count, value in enumerate(curve, start=1):
        if value >= target:
            return count
    return None


if __name__ == "__main__":
    main()
