"""Where a search's core-seconds go: training steps, evaluation, or Ray/Tune overhead.

    python benchmarks/search_overhead.py --num-samples 16
    python benchmarks/search_overhead.py --num-samples 4 8 16     # wall time against trials

Runs ``raydm tune`` as a user would (its own process, Ray started and stopped by it) on
``--space`` (default ``search_spaces/dann_printed.yaml``) with short trials (``--epochs`` of
``--iters`` iterations, ASHA as in the space but with grace 1 unless ``--set`` says otherwise),
on ``--cpus`` cores. Each trial reports, per epoch, the wall-clock seconds
of its training steps (``time/train_s``) and of its evaluation passes and validators
(``time/eval_s``).
Their sums over all trials, divided by wall time x cores, are the shares of the machine spent
training and evaluating. "In-trial other" is the rest of each trial's time from its start to
its last report (setting up, writing and handing over checkpoints, reporting). The rest is
core time with no trial running on it, split by when: before the first trial started (Python,
torch, the data and Ray starting, the trial processes importing torch), while the search ran
(a slot between two trials, or idle at the tail while the last trials finish), and after the
last report (Tune winding up, the results written, Ray shut down). Trial spans come from
Tune's results (whole-second timestamps, so each boundary is good to about a second). Ray's
and the driver's own work runs on the same cores and shows as slower trials, not in a column
of its own; the machine's busy share over the run (from /proc/stat) shows what idled.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from raydm import metrics as m
from raydm.experiment import load_experiment
from raydm.layout import TRIAL_ID

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann_printed.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, nargs="+", default=[16])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--cpus", type=int, default=os.cpu_count())
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides for raydm tune")
    parser.add_argument("--space", type=Path, default=SPACE)
    args = parser.parse_args()
    print(
        "| trials | epochs run | wall s | training % | evaluation % | trial work % "
        "| in-trial other % | no trial: start-up % | no trial: during % (of it, tail) "
        "| no trial: end % | machine busy % |"
        "\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    for num_samples in args.num_samples:
        row = measure(num_samples, args)
        print(
            f"| {num_samples} | {row['epochs']} | {row['wall']:.1f} | {row['train']:.1f} "
            f"| {row['eval']:.1f} | {row['train'] + row['eval']:.1f} | {row['report']:.1f} "
            f"| {row['startup']:.1f} "
            f"| {row['during']:.1f} ({row['tail']:.1f}) | {row['end']:.1f} | {row['busy']:.1f} |",
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
        command = [sys.executable, "-m", "raydm", "tune", "--space", str(args.space)]
        command += ["--storage-path", storage, "--name", "overhead"]
        command += [part for override in overrides for part in ("--set", override)]
        busy_before, total_before = _cpu_jiffies()
        start = time.time()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        end = time.time()
        busy_after, total_after = _cpu_jiffies()
        histories = load_experiment(Path(storage) / "overhead").histories
        wall = end - start
        core_seconds = wall * args.cpus
        work = histories[m.TIME_TRAIN] + histories[m.TIME_EVAL]
        idle = _slot_idle(histories, start, end, args.cpus)
        return {
            **{phase: 100 * seconds / core_seconds for phase, seconds in idle.items()},
            "wall": wall,
            "epochs": int(histories[m.EPOCH].notna().sum()),
            "train": 100 * histories[m.TIME_TRAIN].sum() / core_seconds,
            "eval": 100 * histories[m.TIME_EVAL].sum() / core_seconds,
            # time_this_iter_s spans report to report (the first: from the trial's start).
            "report": 100 * (histories["time_this_iter_s"] - work).sum() / core_seconds,
            "busy": 100 * (busy_after - busy_before) / (total_after - total_before),
        }


def _slot_idle(histories, start: float, end: float, cores: int) -> dict[str, float]:
    """Core-seconds with no trial on them: before the first trial, during the search (of it,
    the tail: after the last trial started, when no trial is left to fill a free slot), after
    the last report. A trial spans from its start to its last report."""
    # Tune's timestamps are whole seconds, cut down: half a second puts them back on average.
    reported = histories["timestamp"] + 0.5
    trials = histories.assign(began=reported - histories["time_total_s"], ended=reported)
    spans = trials.groupby(TRIAL_ID).agg(began=("began", "min"), ended=("ended", "max"))
    began, ended = spans["began"].to_numpy()[:, None], spans["ended"].to_numpy()[:, None]
    step = 0.05
    now = start + (np.arange(int((end - start) / step)) + 0.5) * step
    free = np.maximum(0, cores - ((began <= now) & (now < ended)).sum(0)) * step
    return {
        "startup": free[now < began.min()].sum(),
        "during": free[(now >= began.min()) & (now < ended.max())].sum(),
        "tail": free[(now >= began.max()) & (now < ended.max())].sum(),
        "end": free[now >= ended.max()].sum(),
    }


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


if __name__ == "__main__":
    main()
