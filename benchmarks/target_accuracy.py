"""Target accuracy of source-only, DANN and CGDM at the shipped fixed configs, no search.

Each method runs its search space's own settings (``params`` dropped, so every searched key
keeps the value its section gives) on every pair, over several seeds, and the table puts the
published figure beside raydm's. On MNIST -> MNIST-M the plain DANN of
``benchmarks/plain_dann.py`` runs too, at the same number of iterations as raydm's DANN.
Results and the command are kept in BENCHMARKS.md.

    python benchmarks/target_accuracy.py --seeds 0 1 2
    python benchmarks/target_accuracy.py --pairs mnist_mnistm \
        --set train.epochs=10 train.iters_per_epoch=300
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import plain_dann
import torch

from raydm import engine
from raydm import metrics as m
from raydm.config import load_config
from raydm.data.pair import load_domain_pair

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"
METHOD_SPACES = {"source_only": "source_only.yaml", "dann": "dann.yaml", "cgdm": "cgdm.yaml"}
# The plain recipe of benchmarks/plain_dann.py, at as many iterations as raydm's DANN config.
PLAIN = ("plain_source_only", "plain_dann")


@dataclass(frozen=True)
class Pair:
    name: str
    data: list[str]  # overrides that select the domains
    published: dict[str, str] = field(default_factory=dict)  # method -> figure and source


PAIRS = {
    "mnist_mnistm": Pair(
        "mnist_offline -> mnistm_offline",
        ["data.source=mnist_offline", "data.target=mnistm_offline", "data.image_channels=3"],
        {
            "source_only": ".5225 (JMLR T2, 60k MNIST)",
            "dann": ".7666 (JMLR T2)",
            "plain_source_only": ".5225 (JMLR T2)",
            "plain_dann": ".7666 (JMLR T2)",
        },
    ),
    "mnist_handwritten": Pair(
        "mnist_offline -> digits_handwritten",
        ["data.source=mnist_offline", "data.target=digits_handwritten", "data.image_channels=1"],
        {
            "source_only": "M→U .752 (ADDA T2, 2,000 imgs); 82.1 (TLlib, full)",
            "dann": "M→U .771 (ADDA T2); 91.7 (TLlib)",
        },
    ),
    "handwritten_mnist": Pair(
        "digits_handwritten -> mnist_offline",
        ["data.source=digits_handwritten", "data.target=mnist_offline", "data.image_channels=1"],
        {
            "source_only": "U→M .571 (ADDA T2, 1,800 imgs); 74.6 (TLlib, full)",
            "dann": "U→M .730 (ADDA T2); 95.2 (TLlib)",
        },
    ),
    "printed_handwritten": Pair(
        "digits_printed -> digits_handwritten",
        ["data.source=digits_printed", "data.target=digits_handwritten", "data.image_channels=1"],
    ),
}


def fixed_config(pair: Pair, method: str, seed: int, extra: list[str]):
    space = METHOD_SPACES["dann" if method in PLAIN else method]
    return load_config(SPACES / space, ["params={}", *pair.data, *extra, f"train.seed={seed}"])


def run(pair: Pair, method: str, seed: int, extra: list[str]) -> float:
    config = fixed_config(pair, method, seed, extra)
    if method in PLAIN:
        data = plain_dann.pair(config.data.source, config.data.target)
        iterations = config.train.epochs * config.train.iters_per_epoch
        return plain_dann.train(
            data.source_train,
            data.target_train,
            data.target_test,
            iterations,
            seed,
            adapt=method == "plain_dann",
        )
    return engine.fit(config, load_domain_pair(config.data))[m.TARGET_ACC]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--pairs", nargs="*", default=list(PAIRS), choices=list(PAIRS))
    parser.add_argument(
        "--methods", nargs="*", default=[*METHOD_SPACES, *PLAIN], choices=[*METHOD_SPACES, *PLAIN]
    )
    parser.add_argument("--set", dest="extra", nargs="*", default=[], help="extra overrides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| pair | method | iterations | target acc (mean ± sd) | per seed | published | s/run |")
    print("|---|---|---|---|---|---|---|")
    for key in args.pairs:
        pair = PAIRS[key]
        for method in args.methods:
            if method in PLAIN and key != "mnist_mnistm":
                continue  # the plain recipe is the JMLR MNIST -> MNIST-M one
            accuracies, seconds = [], []
            for seed in args.seeds:
                start = time.perf_counter()
                accuracies.append(run(pair, method, seed, args.extra))
                seconds.append(time.perf_counter() - start)
            train = fixed_config(pair, method, args.seeds[0], args.extra).train
            sd = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
            print(
                f"| {pair.name} | {method} | {train.epochs * train.iters_per_epoch} | "
                f"{statistics.mean(accuracies):.3f} ± {sd:.3f} | "
                f"{', '.join(f'{a:.3f}' for a in accuracies)} | "
                f"{pair.published.get(method, '')} | {statistics.median(seconds):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
