"""DANN against the source-only baseline with fixed configs, several seeds, no search.

Prints a markdown table of oracle target accuracy (mean ± sd over seeds) at the last epoch, for
the moons toy and the offline digits pair. Results and the command are kept in BENCHMARKS.md.

    python benchmarks/dann_vs_source_only.py --seeds 3
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
# Fixed settings per pair; the searched params of each space are pinned here.
PAIRS = {
    "moons -> moons_rotated": (
        "moons.yaml",
        ["train.lr=0.05", "method_args.lambda_max=1.0", "train.epochs=20"],
    ),
    "digits_printed -> digits_handwritten": (
        "dann.yaml",
        [
            "train.lr=0.01",
            "train.weight_decay=5.0e-4",
            "method_args.lambda_max=1.0",
            "method_args.gamma=10.0",
            "train.epochs=10",
        ],
    ),
    # The region the default search favours (higher lr); the same lr for both methods.
    "digits_printed -> digits_handwritten (lr 0.08)": (
        "dann.yaml",
        [
            "train.lr=0.08",
            "train.weight_decay=5.0e-4",
            "method_args.lambda_max=0.3",
            "method_args.gamma=10.0",
            "train.epochs=10",
        ],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| pair | method | target acc (mean ± sd) | per seed | seconds per run |")
    print("|---|---|---|---|---|")
    for pair in args.pairs:
        space, pinned = PAIRS[pair]
        for method in ("source_only", "dann"):
            accuracies, seconds = [], []
            for seed in range(args.seeds):
                overrides = [*pinned, f"train.seed={seed}", "params={}"]
                if method == "source_only":
                    overrides = [o for o in overrides if "method_args" not in o]
                    overrides += ["method=source_only", "method_args={}"]
                config = load_config(SPACES / space, overrides)
                data = load_domain_pair(config.data)
                start = time.perf_counter()
                final = engine.fit(config, data)
                seconds.append(time.perf_counter() - start)
                accuracies.append(final[m.TARGET_ACC])
            mean, sd = statistics.mean(accuracies), statistics.pstdev(accuracies)
            per_seed = ", ".join(f"{a:.3f}" for a in accuracies)
            print(
                f"| {pair} | {method} | {mean:.3f} ± {sd:.3f} | {per_seed} | "
                f"{statistics.median(seconds):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
