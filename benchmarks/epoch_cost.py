"""How one DANN epoch's cost grows with the source set's size and with the batch size.

    python benchmarks/epoch_cost.py --repeats 3

One epoch of ``search_spaces/dann_printed.yaml`` (LeNet, the printed digits pair) per setting, in
this process, on ``--threads`` torch threads: the first ``--sizes`` source training images with a
batch of 64, then all of them with each of ``--batch-sizes``. An epoch is one pass over the
source set (source images / batch size iterations, each with as many target images). Prints the
median over ``--repeats`` of the epoch's training seconds (``time/train_s``) and of its
evaluation (``time/eval_s``: source validation, target test and validators, whose cost does not
depend on the training set or batch), with the range.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from raydm import engine
from raydm import metrics as m
from raydm.config import load_config
from raydm.data.pair import DomainPair, load_domain_pair

SPACE = Path(__file__).resolve().parent.parent / "search_spaces" / "dann_printed.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 4000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-batch-size", type=int, default=None)
    parser.add_argument("--root", default="~/.cache/raydm")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = ["params={}", "train.epochs=1", f"data.root={args.root}"]
    if args.eval_batch_size:
        overrides.append(f"train.eval_batch_size={args.eval_batch_size}")
    config = load_config(SPACE, overrides)
    data = load_domain_pair(config.data)
    settings = [(size, 64) for size in args.sizes]
    settings += [(len(data.source_train), batch) for batch in args.batch_sizes if batch != 64]
    print(
        "| source images | batch | iterations | training s (median, range) "
        "| ms per iteration | evaluation s (median, range) |\n|---|---|---|---|---|---|"
    )
    for size, batch in settings:
        pair = DomainPair(
            data.source_train.subset(torch.arange(min(size, len(data.source_train)))),
            data.source_val,
            data.target_train,
            data.target_test,
            data.class_names,
            data.input_shape,
        )
        run = config.with_values({"train.batch_size": batch})
        epochs = [engine.fit(run, pair) for _ in range(args.repeats)]
        train = [epoch[m.TIME_TRAIN] for epoch in epochs]
        evaluation = [epoch[m.TIME_EVAL] for epoch in epochs]
        size = len(pair.source_train)
        iterations = engine.iterations_per_epoch(run, pair)
        print(
            f"| {size} | {batch} | {iterations} | {_spread(train)} "
            f"| {1000 * statistics.median(train) / iterations:.0f} | {_spread(evaluation)} |",
            flush=True,
        )


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
