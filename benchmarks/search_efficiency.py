"""Search efficiency on the offline digits pair: ASHA + TPE against plain random search.

    python benchmarks/search_efficiency.py --seeds 0 1 2 --iters 20 \
        --set search.num_samples=8 train.epochs=4 search.scheduler.grace_period=1

For each searcher seed, two searches of ``search_spaces/dann_printed.yaml`` with the same trials'
budget (the space's ``num_samples`` trials of up to ``train.epochs`` epochs each) and the same
training seed:

- random: Optuna's random sampler; every trial runs to its last epoch (FIFO);
- asha_tpe: the space as shipped: TPE after its random start-up trials, ASHA stopping the weak.

Within a search, trials run one at a time, so the order in which epochs were consumed is the
order in which they ran; ``--parallel`` searches run side by side (one core each). For each
search: the epochs it consumed, its best label-free metric (``search.metric``), and the oracle
target accuracy of the (trial, epoch) it selected. For asha_tpe, also the epochs consumed until
its best-so-far reached the final best of random search with the same seed.
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
from raydm.report import TRIAL_ID, load_experiment

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann_printed.yaml"
METHODS = {
    "random": ["search.searcher.sampler=random", "search.scheduler.type=fifo"],
    "asha_tpe": [],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--iters", type=int, default=None, help="train.iters_per_epoch")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for both searches")
    args = parser.parse_args()
    jobs = [(seed, method) for seed in args.seeds for method in METHODS]
    with tempfile.TemporaryDirectory() as storage, ThreadPoolExecutor(args.parallel) as pool:
        runs = dict(
            zip(jobs, pool.map(lambda job: _search(*job, storage, args), jobs), strict=True)
        )
    print(
        "| seed | method | epochs run | best metric (at epoch #) | selected: oracle acc "
        "| epochs to reach random's best |\n|---|---|---|---|---|---|"
    )
    fractions = []
    for seed in args.seeds:
        target = runs[seed, "random"]["best"]
        for method in METHODS:
            run = runs[seed, method]
            reached = _epochs_to_reach(run["curve"], target)
            if method == "asha_tpe":
                total = runs[seed, "random"]["epochs"]
                fractions.append(reached / total if reached else math.inf)
            print(
                f"| {seed} | {method} | {run['epochs']} | {run['best']:.4f} "
                f"({run['best_at']}) | {run['selected_oracle']:.3f} "
                f"| {reached if reached else 'not reached'} |"
            )
    finite = [f for f in fractions if math.isfinite(f)]
    print(
        f"asha_tpe epochs to random's best, as a share of random's epochs: "
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
        *([f"train.iters_per_epoch={args.iters}"] if args.iters else []),
        *args.set,
    ]
    command = [sys.executable, "-m", "raydm.cli", "tune", "--space", str(SPACE)]
    command += ["--storage-path", storage, "--name", name]
    command += [part for override in overrides for part in ("--set", override)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    experiment = load_experiment(Path(storage) / name)
    metric, sign = experiment.metric, 1 if experiment.mode == "max" else -1
    rows = _in_run_order(experiment.histories.dropna(subset=[metric]))
    curve = (sign * rows[metric]).cummax().tolist()
    selected = experiment.results[0]
    chosen = rows[
        (rows[TRIAL_ID] == selected[TRIAL_ID]) & (rows[m.EPOCH] == selected["best_epoch"])
    ]
    return {
        "epochs": len(rows),
        "curve": curve,
        "best": curve[-1],
        "best_at": _epochs_to_reach(curve, curve[-1]),
        "selected_oracle": float(chosen[m.TARGET_ACC].iloc[-1]),
    }


def _in_run_order(rows: pd.DataFrame) -> pd.DataFrame:
    """One search's epochs in the order they ran: trials one at a time, by start time."""
    started = (rows["timestamp"] - rows["time_total_s"]).groupby(rows[TRIAL_ID]).transform("min")
    return rows.assign(_started=started).sort_values(["_started", m.EPOCH]).drop(columns="_started")


def _epochs_to_reach(curve: list[float], target: float) -> int | None:
    """How many epochs had run when the best-so-far first reached ``target`` (sign-adjusted)."""
    for count, value in enumerate(curve, start=1):
        if value >= target:
            return count
    return None


if __name__ == "__main__":
    main()
