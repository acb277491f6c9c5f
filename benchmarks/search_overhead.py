"""Where a search's core-seconds go: training steps, evaluation, or Ray/Tune overhead.

    python benchmarks/search_overhead.py --num-samples 16
    python benchmarks/search_overhead.py --num-samples 4 8 16     # wall time against trials

Runs ``raydm tune`` as a user would (its own process, Ray started and stopped by it) on
``search_spaces/dann.yaml`` with short trials (``--epochs`` of ``--iters`` iterations, ASHA as
in the space), on ``--cpus`` cores. Each trial reports, per epoch, the wall-clock seconds of its
training steps (``time/train_s``) and of its evaluation passes and validators (``time/eval_s``).
Their sums over all trials, divided by wall time x cores, are the shares of the machine spent
training and evaluating. "In-trial other" is the rest of each trial's time from its start to
its last report (setting up, writing and handing over checkpoints, reporting); "outside trials"
went to starting Ray and the trials' processes, the searcher, Tune's loop and idle cores. The
machine's busy share over the run comes from /proc/stat.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raydm import metrics as m
from raydm.report import load_experiment

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, nargs="+", default=[16])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for raydm tune")
    args = parser.parse_args()
    print(
        "| trials | epochs run | wall s | training % | evaluation % | in-trial other % "
        "| outside trials % | machine busy % |\n|---|---|---|---|---|---|---|---|"
    )
    for num_samples in args.num_samples:
        row = measure(num_samples, args)
        print(
            f"| {num_samples} | {row['epochs']} | {row['wall']:.1f} | {row['train']:.1f} "
            f"| {row['eval']:.1f} | {row['report']:.1f} "
            f"| {100 - row['train'] - row['eval'] - row['report']:.1f} | {row['busy']:.1f} |",
            flush=True,
        )


def measure(num_samples: int, args) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as storage:
        overrides = [
            f"search.num_samples={num_samples}",
            f"train.epochs={args.epochs}",
            f"train.iters_per_epoch={args.iters}",
            f"data.root={args.root}",
            "search.scheduler.grace_period=1",
            *args.set,
        ]
        command = [sys.executable, "-m", "raydm.cli", "tune", "--space", str(SPACE)]
        command += ["--storage-path", storage, "--name", "overhead"]
        command += [part for override in overrides for part in ("--set", override)]
        busy_before, total_before = _cpu_jiffies()
        start = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        busy_after, total_after = _cpu_jiffies()
        histories = load_experiment(Path(storage) / "overhead").histories
        core_seconds = wall * args.cpus
        work = histories[m.TIME_TRAIN] + histories[m.TIME_EVAL]
        return {
            "wall": wall,
            "epochs": int(histories[m.EPOCH].notna().sum()),
            "train": 100 * histories[m.TIME_TRAIN].sum() / core_seconds,
            "eval": 100 * histories[m.TIME_EVAL].sum() / core_seconds,
            # time_this_iter_s spans report to report (the first: from the trial's start).
            "report": 100 * (histories["time_this_iter_s"] - work).sum() / core_seconds,
            "busy": 100 * (busy_after - busy_before) / (total_after - total_before),
        }


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


if __name__ == "__main__":
    main()
