"""What batch norm does to DANN and source-only on MNIST -> MNIST-M (offline), arm by arm.

Every raydm arm is ``search_spaces/dann.yaml``'s network and optimiser (LeNet, FC100-FC100 head,
SGD 0.01 with the inverse schedule, weight decay 5e-4, batches of 64 + 64, gamma 10, lambda_max
1) at ``--iterations`` (epochs of 300); the arms differ only in batch norm:

- ``bn joint``: batch norm after each conv, one backbone pass over source + target (the mixed
  batch's statistics, in training and in the running averages used at evaluation);
- ``bn separate``: the same network, one pass per domain (``domain_passes: separate``);
- ``no bn``: no batch norm (the JMLR network);
- ``+ AdaBN``: a batch-norm arm's final weights evaluated with its running statistics recomputed
  on the unlabelled target train split (Li et al. 2017), no other change.

The ``plain`` arms are ``benchmarks/plain_dann.py``: the paper's recipe written without raydm.

    python benchmarks/batch_norm.py --seeds 0 1 --iterations 3000
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import plain_dann
import torch
from torch import nn

from raydm import engine, evaluation
from raydm import metrics as m
from raydm.backbones import BACKBONES
from raydm.config import load_config
from raydm.data import pipeline
from raydm.data.pair import load_domain_pair
from raydm.data.pipeline import Loader, Transform

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann.yaml"
SOURCE_ONLY = ["method=source_only", "method_args={}"]
NO_BN = ["model.backbone_args.batch_norm=false"]
# Named explicitly, so that an arm means the same whatever DANN's default is.
JOINT = ["method_args.domain_passes=joint"]
SEPARATE = ["method_args.domain_passes=separate"]
# arm -> (overrides of dann.yaml's own settings, whether to add an AdaBN row)
ARMS = {
    "source_only bn": (SOURCE_ONLY, True),
    "source_only no bn": (SOURCE_ONLY + NO_BN, False),
    "dann bn joint": (JOINT, True),
    "dann bn separate": (SEPARATE, True),
    "dann no bn": (NO_BN + JOINT, False),  # as measured; without batch norm both are one function
    "plain source_only": (None, False),
    "plain dann": (None, False),
}


def run_raydm(overrides: list[str], seed: int, iterations: int) -> tuple[float, float | None]:
    """(target accuracy, the same weights' target accuracy with AdaBN statistics)."""
    epochs = max(1, iterations // 300)
    config = load_config(
        SPACE,
        [
            "params={}",
            f"train.epochs={epochs}",
            f"train.iters_per_epoch={iterations // epochs}",
            *overrides,
            f"train.seed={seed}",
        ],
    )
    data = load_domain_pair(config.data)
    final_state = {}

    def keep(epoch, metrics, state):
        if epoch == config.train.epochs:
            final_state.update({k: v.clone() for k, v in state["model"].items()})

    final = engine.fit(config, data, on_epoch=keep)
    method = engine.build_method(config, data)
    method.load_state_dict(final_state)
    if not any(isinstance(layer, nn.BatchNorm2d) for layer in method.modules()):
        return final[m.TARGET_ACC], None
    return final[m.TARGET_ACC], adabn_accuracy(method, config, data)


def adabn_accuracy(method, config, data) -> float:
    """Target test accuracy with every batch-norm layer's statistics re-estimated on the
    unlabelled target train split (cumulative averages over one pass)."""
    transform = Transform(
        config.data, BACKBONES.get(config.model.backbone).image_input, torch.device("cpu"), 0
    )
    loader = Loader(config.data.image_size, config.data.image_channels, 0, False)
    for layer in method.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.reset_running_stats()
            layer.momentum = None
    method.train()
    with torch.no_grad():
        for inputs, _ in pipeline.evaluation_batches(data.target_train, 256, loader):
            method.backbone(transform.evaluation(inputs))
    test = evaluation.outputs(
        method, pipeline.evaluation_batches(data.target_test, 256, loader), transform
    )
    return test.accuracy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| arm ({args.iterations} iterations) | target acc (mean ± sd) | per seed | s per run |")
    print("|---|---|---|---|")
    for arm in args.arms:
        overrides, with_adabn = ARMS[arm]
        plain, adabn, seconds = [], [], []
        for seed in args.seeds:
            start = time.perf_counter()
            if overrides is None:
                data = plain_dann.pair()
                accuracy = plain_dann.train(
                    data.source_train, data.target_train, data.target_test, args.iterations,
                    seed, adapt=arm == "plain dann",
                )  # fmt: skip
            else:
                accuracy, adapted = run_raydm(overrides, seed, args.iterations)
                adabn.append(adapted)
            plain.append(accuracy)
            seconds.append(time.perf_counter() - start)
        rows = [(arm, plain)] + ([(f"{arm} + AdaBN", adabn)] if with_adabn else [])
        for name, values in rows:
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            print(
                f"| {name} | {statistics.mean(values):.3f} ± {sd:.3f} | "
                f"{', '.join(f'{v:.3f}' for v in values)} | {statistics.median(seconds):.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
