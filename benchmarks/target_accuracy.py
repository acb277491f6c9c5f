"""Target accuracy of source-only, DANN and CGDM with fixed configs, several seeds, no search.

Prints a markdown table of the oracle target accuracy (mean ± sd over seeds) at the last epoch.
Results and the command are kept in BENCHMARKS.md.

    python benchmarks/target_accuracy.py --seeds 3
    python benchmarks/target_accuracy.py --seeds 3 --pairs digits --methods cgdm
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from raydm import engine
from raydm import metrics as m
from raydm.config import load_config
from raydm.data import load_domain_pair

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
NO_ADAPTATION = ["method=source_only", "method_args={}"]
# (pair, method) -> (search space, overrides that pin every searched param)
RUNS = {
    ("moons", "source_only"): ("moons.yaml", ["train.lr=0.05", "train.epochs=20", *NO_ADAPTATION]),
    ("moons", "dann"): (
        "moons.yaml",
        ["train.lr=0.05", "train.epochs=20", "method_args.lambda_max=1.0"],
    ),
    # CGDM's heads get one hidden layer of 15 (BN, ReLU), as the official heads have hidden
    # layers; on linear heads it scored 0.692 ± 0.018, below source-only.
    ("moons", "cgdm"): (
        "moons.yaml",
        [
            "train.lr=0.05",
            "train.epochs=20",
            "method=cgdm",
            "method_args={}",
            "model.classifier_hidden=[15]",
        ],
    ),
    # Digits: the same images seen by every method (10 epochs x 62 batches of 64 per domain;
    # CGDM trains on batches of 32 as the official code, so twice as many iterations).
    ("digits", "source_only"): ("dann.yaml", ["train.lr=0.01", "train.epochs=10", *NO_ADAPTATION]),
    ("digits", "dann"): (
        "dann.yaml",
        [
            "train.lr=0.01",
            "train.epochs=10",
            "method_args.lambda_max=1.0",
            "method_args.gamma=10.0",
        ],
    ),
    ("digits", "cgdm"): (
        "cgdm.yaml",
        ["train.lr=0.01", "train.epochs=10", "train.iters_per_epoch=125"],
    ),
}
PAIR_NAMES = {
    "moons": "moons -> moons_rotated (35°)",
    "digits": "digits_printed -> digits_handwritten",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0, help="to split seeds over processes")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", nargs="*", default=list(PAIR_NAMES), choices=list(PAIR_NAMES))
    parser.add_argument("--methods", nargs="*", default=["source_only", "dann", "cgdm"])
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| pair | method | target acc (mean ± sd) | per seed | seconds per run |")
    print("|---|---|---|---|---|")
    for pair in args.pairs:
        for method in args.methods:
            space, pinned = RUNS[(pair, method)]
            accuracies, seconds = [], []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                overrides = ["params={}", *pinned, *args.extra, f"train.seed={seed}"]
                config = load_config(SPACES / space, overrides)
                data = load_domain_pair(config.data)
                start = time.perf_counter()
                final = engine.fit(config, data)
                seconds.append(time.perf_counter() - start)
                accuracies.append(final[m.TARGET_ACC])
            mean, sd = statistics.mean(accuracies), statistics.pstdev(accuracies)
            per_seed = ", ".join(f"{a:.3f}" for a in accuracies)
            print(
                f"| {PAIR_NAMES[pair]} | {method} | {mean:.3f} ± {sd:.3f} | {per_seed} | "
                f"{statistics.median(seconds):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
