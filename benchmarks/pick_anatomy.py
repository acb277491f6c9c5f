"""Why a search's label-free pick falls short of its best point: the two, class by class.

    python benchmarks/pick_anatomy.py EXPERIMENT_DIR

For a finished ``raydm tune`` search on data whose target test split has labels (the offline
pairs), the model the search delivers (its pick.json's first kept checkpoint, what ``raydm
predict`` uses) is set beside the point (trial, epoch) with the best oracle target accuracy.
That point is loaded from its checkpoint when the search kept it, and otherwise retrained from
its trial's config up to its epoch (a trial repeats itself to the bit on the platform it ran on:
BENCHMARKS.md, "Two runs of the same searches"). For each, on the target test split: accuracy
per class, the share of the images given each class, the mean confidence of right and of wrong
predictions, and the commonest confusions. It tells a pick that is confidently wrong on a few
classes from one that is unsure everywhere; results and commands are kept in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from raydm import engine, predict
from raydm import metrics as m
from raydm.analysis import scored_points
from raydm.config import ExperimentConfig
from raydm.data.pair import DomainPair, load_domain_pair
from raydm.experiment import load_experiment
from raydm.layout import TRIAL_ID

CONFUSIONS_SHOWN = 6


class _Reached(Exception):
    """Stops training once the wanted epoch's weights are taken."""


def retrained(config: ExperimentConfig, data: DomainPair, epoch: int) -> predict.Model:
    """The model of ``config`` trained on ``data`` to ``epoch`` (counted from 1)."""
    taken: list[predict.Model] = []

    def on_epoch(finished: int, metrics: dict, state: dict) -> None:
        if finished == epoch:
            cpu = torch.device("cpu")
            shape = data.input_shape
            taken.append(
                predict.model_from_state(config, state["model"], data.class_names, shape, cpu)
            )
            raise _Reached

    try:
        engine.fit(config, data, on_epoch=on_epoch)
    except _Reached:
        pass
    return taken[0]


def describe(probabilities: torch.Tensor, labels: np.ndarray, classes: tuple[str, ...]) -> None:
    predicted = probabilities.argmax(1).numpy()
    confidence = probabilities.max(1).values.numpy()
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    per_class = confusion.diagonal() / confusion.sum(1).clip(min=1)
    right = predicted == labels
    print(f"target accuracy {right.mean():.3f}")
    print("| class | " + " | ".join(map(str, classes)) + " |")
    print("|---" * (len(classes) + 1) + "|")
    print("| accuracy | " + " | ".join(f"{a:.2f}" for a in per_class) + " |")
    share = np.bincount(predicted, minlength=len(classes)) / len(predicted)
    print("| share predicted | " + " | ".join(f"{s:.2f}" for s in share) + " |")
    true_share = np.bincount(labels, minlength=len(classes)) / len(labels)
    print("| share true | " + " | ".join(f"{s:.2f}" for s in true_share) + " |")
    print(
        f"mean confidence: right {confidence[right].mean():.3f}, "
        f"wrong {confidence[~right].mean():.3f}"
    )
    off_diagonal = confusion.copy()
    np.fill_diagonal(off_diagonal, 0)
    commonest = np.argsort(-off_diagonal, axis=None)[:CONFUSIONS_SHOWN]
    pairs = [np.unravel_index(i, confusion.shape) for i in commonest if off_diagonal.flat[i]]
    print(
        "commonest confusions (true -> predicted, share of the true class): "
        + ", ".join(
            f"{classes[t]} -> {classes[p]} {off_diagonal[t, p] / confusion[t].sum():.2f}"
            for t, p in pairs
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    selector, kept = predict.kept_candidates(args.experiment)
    experiment = load_experiment(args.experiment)
    search = experiment.config
    data = load_domain_pair(search.data)
    points = scored_points(experiment)
    best = points.loc[points[m.TARGET_ACC].idxmax()]
    best_point = (str(best[TRIAL_ID]), int(best[m.EPOCH]))
    checkpoints = {(c.trial_id, c.epoch): c.checkpoint for c in kept}
    params = {row[TRIAL_ID]: row for row in experiment.results}
    by_point = points.set_index([TRIAL_ID, m.EPOCH])
    test = data.target_test
    images = predict.Images([str(i) for i in range(len(test))], test, None)
    for name, (trial, epoch) in (
        (f"the pick ({selector})", (kept[0].trial_id, kept[0].epoch)),
        ("the best oracle point", best_point),
    ):
        point = by_point.loc[(trial, epoch)]
        values = {key: params[trial][key] for key in search.params}
        print(f"\n## {name}: trial {trial}, epoch {epoch}, {selector} {point[selector]:.4f}")
        print(", ".join(f"{key}={value:.4g}" for key, value in values.items()))
        if (trial, epoch) in checkpoints:
            model = predict.load_model(checkpoints[trial, epoch], torch.device("cpu"))
        else:
            model = retrained(search.fixed(values), data, epoch)
        probabilities = predict.predict([model], images, batch_size=256)
        describe(probabilities, test.labels.numpy(), data.class_names)


if __name__ == "__main__":
    main()
