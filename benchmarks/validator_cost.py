"""What each label-free validator costs per epoch, beside the epoch's training.

    python benchmarks/validator_cost.py --repeats 5
    python benchmarks/validator_cost.py --repeats 5 --space search_spaces/source_only.yaml

One model of ``--space`` (by default ``search_spaces/dann.yaml``: DANN, MNIST -> MNIST-M,
offline), trained for one epoch of the space's iterations on one torch thread, as a trial runs.
Then, ``--repeats`` times: each evaluation pass an epoch makes and each validator's own work on
their outputs. Prints the median seconds of each and their share of one epoch (training +
evaluation), with every validator on and with only those computed every epoch (the costly
ones, ``metrics.COSTLY_VALIDATORS``, wait for ASHA's rungs and a trial's last epoch).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from raydm import engine, evaluation, validators
from raydm.config import load_config
from raydm.data import pipeline
from raydm.data.pair import load_domain_pair

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--root", default="~/.cache/raydm")
    parser.add_argument("--space", type=Path, default=SPACE)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.space, ["params={}", "train.epochs=1", f"data.root={args.root}"])
    data = load_domain_pair(config.data)
    method, transform, loader, source, target = engine.setup(
        config, data, None, torch.device("cpu")
    )
    started = time.perf_counter()
    for _ in range(engine.iterations_per_epoch(config, data)):
        engine.train_step(method, source, target, transform, progress=0.5)
    train_s = time.perf_counter() - started
    size = config.train.eval_batch_size
    subset = evaluation.seeded_subset(data.target_train, config.train.validation_samples, 0)
    sample = evaluation.seeded_subset(data.source_train, evaluation.IMPORTANCE_SAMPLES, 0)

    def passes(part, mixval=None):
        batches = pipeline.evaluation_batches(part, size, loader)
        return evaluation.outputs(method, batches, transform, keep_features=True, mixval=mixval)

    timings: dict[str, list[float]] = {}

    def timed(name, work):
        began = time.perf_counter()
        result = work()
        timings.setdefault(name, []).append(time.perf_counter() - began)
        return result

    for _ in range(args.repeats):
        val = timed("source validation pass", lambda: passes(data.source_val))
        timed("target test pass (oracle)", lambda: passes(data.target_test))
        unlabelled = timed("validation target pass", lambda: passes(subset))
        mixval = validators.MixVal(seed=0)
        timed("validation target pass + MixVal", lambda mv=mixval: passes(subset, mv))
        source_train = timed("source train sample pass", lambda: passes(sample))
        p = unlabelled.logits.softmax(1)
        timed(
            "entropy, IM, BNM",
            lambda p=p: [
                validators.neg_entropy(p),
                validators.information_maximization(p),
                validators.batch_nuclear_norm(p),
            ],
        )
        timed("SND", lambda p=p: validators.soft_neighborhood_density(p))
        timed(
            "ClassAMI",
            lambda u=unlabelled, p=p: validators.class_ami(
                u.features, p.argmax(1), data.num_classes
            ),
        )
        timed(
            "IWCV + DEV + DEVN",
            lambda v=val, s=source_train, u=unlabelled: validators.importance_weighted_scores(
                v.features, v.losses(), s.features, u.features[: evaluation.IMPORTANCE_SAMPLES]
            ),
        )
    medians = {name: statistics.median(values) for name, values in timings.items()}
    mixval_s = medians["validation target pass + MixVal"] - medians["validation target pass"]
    evaluation_s = (
        sum(value for name, value in medians.items() if name != "validation target pass + MixVal")
        + mixval_s
    )
    epoch = train_s + evaluation_s
    print(
        f"one epoch's training: {train_s:.2f} s; evaluation with every validator: "
        f"{evaluation_s:.2f} s ({evaluation_s / epoch:.1%} of the epoch)"
    )
    # What an epoch off the rungs computes: the three passes and IM's family on the softmax.
    every_epoch = ("source validation pass", "target test pass (oracle)", "validation target pass")
    cheap_s = sum(medians[name] for name in every_epoch) + medians["entropy, IM, BNM"]
    print(
        f"an epoch without the costly validators: evaluation {cheap_s:.2f} s "
        f"({cheap_s / (train_s + cheap_s):.1%} of the epoch)"
    )
    print("| part | seconds (median) | share of the epoch |\n|---|---|---|")
    rows = {**medians, "MixVal (its mixed forward passes)": mixval_s}
    rows.pop("validation target pass + MixVal")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds:.3f} | {seconds / epoch:.1%} |")


if __name__ == "__main__":
    main()
