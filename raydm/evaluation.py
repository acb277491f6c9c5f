"""One epoch's evaluation: the passes over the held-out parts and every label-free validator.

The source validation split and the target's oracle test split are scored whole; the
validators look at fixed, seeded subsets chosen once per run, so that every epoch and every
trial with the same seed is scored on the same samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from raydm import metrics as m
from raydm import validators
from raydm.data import pipeline
from raydm.data.pair import DomainPair
from raydm.data.pipeline import Loader, Transform
from raydm.data.samples import seed_for
from raydm.methods.base import Method
from raydm.sections import TrainConfig

# Samples per domain the importance-weighted validators' domain classifier sees each epoch:
# with 1,000 they were a third of a LeNet epoch's evaluation on MNIST -> MNIST-M here.
IMPORTANCE_SAMPLES = 500


def seeded_rows(size: int, count: int, seed: int) -> torch.Tensor:
    """``count`` of ``range(size)`` (all if fewer), drawn by ``seed``, in order."""
    if size <= count:
        return torch.arange(size)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))
    return order[:count].sort().values


def seeded_subset(part, count: int, seed: int):
    return part if len(part) <= count else part.subset(seeded_rows(len(part), count, seed))


@dataclass(frozen=True)
class Outputs:
    """What ``method`` makes of a part of the data, on the CPU, in the part's order."""

    logits: torch.Tensor
    labels: torch.Tensor
    features: torch.Tensor | None  # backbone features, flattened, when asked for

    def accuracy(self) -> float:
        return (self.logits.argmax(1) == self.labels).float().mean().item()

    def losses(self) -> torch.Tensor:
        return F.cross_entropy(self.logits, self.labels, reduction="none")


@torch.no_grad()
def outputs(
    method: Method,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    transform: Transform,
    keep_features: bool = False,
    mixval: validators.MixVal | None = None,
) -> Outputs:
    """One evaluation pass of ``method`` over (raw inputs, labels) batches; with ``mixval``,
    each batch's mixes are scored too, on the inputs already prepared for the pass."""
    was_training = method.training
    method.eval()
    logits, labels, features = [], [], []
    for inputs, batch_labels in batches:
        prepared = transform.evaluation(inputs)
        batch_features = method.backbone(prepared)
        batch_logits = method.classify(batch_features)
        logits.append(batch_logits.float().cpu())
        labels.append(batch_labels.cpu())
        if keep_features:
            features.append(batch_features.flatten(1).cpu())
        if mixval is not None:
            mixval.add(lambda x: method.classify(method.backbone(x)), prepared, batch_logits)
    method.train(was_training)
    return Outputs(torch.cat(logits), torch.cat(labels), torch.cat(features) if features else None)


class Evaluation:
    """The fixed parts an epoch's evaluation scores, chosen once for a run of ``data``."""

    def __init__(self, data: DomainPair, train: TrainConfig) -> None:
        self.data, self.batch_size = data, train.eval_batch_size
        self.seed = seed_for(train.seed, "validators")
        self.mixval_seed = seed_for(train.seed, "mixval")
        # The validators look at a fixed, seeded subset of the unlabelled target (their cost
        # grows with it: SND pairs every sample with every other, ClassAMI runs k-means).
        self.validation_targets = seeded_subset(
            data.target_train, train.validation_samples, seed_for(train.seed, "validation-subset")
        )
        # The importance-weighted validators (IWCV, DEV, DEVN) train their domain classifier on
        # seeded samples of the source training split, the source validation split and that
        # target subset; the source training sample needs an evaluation pass of its own.
        self.source_train_sample = seeded_subset(
            data.source_train, IMPORTANCE_SAMPLES, seed_for(train.seed, "dev-source_train")
        )
        self.source_val_rows = seeded_rows(
            len(data.source_val), IMPORTANCE_SAMPLES, seed_for(train.seed, "dev-source_val")
        )
        self.target_rows = seeded_rows(
            len(self.validation_targets), IMPORTANCE_SAMPLES, seed_for(train.seed, "dev-target")
        )

    def run(
        self, method: Method, transform: Transform, loader: Loader, costly: bool = True
    ) -> tuple[dict[str, float], torch.Tensor]:
        """Every evaluation metric of ``method`` now (``m.COSTLY_VALIDATORS`` nan unless
        ``costly``), and its softmax on the validation target subset."""
        data = self.data

        def scored(part, keep_features=True, mixval=None):
            batches = pipeline.evaluation_batches(part, self.batch_size, loader)
            return outputs(method, batches, transform, keep_features, mixval)

        val = scored(data.source_val, keep_features=costly)
        test = scored(data.target_test, keep_features=False)
        # Only the target's inputs are used here: its labels never reach a validator. The
        # same seed each epoch pairs the same inputs for MixVal, so its epochs are comparable.
        mixval = validators.MixVal(seed=self.mixval_seed) if costly else None
        unlabelled = scored(self.validation_targets, keep_features=costly, mixval=mixval)
        probabilities = unlabelled.logits.softmax(1)
        val_losses = val.losses()
        metrics = {
            **validators.target_validators(
                probabilities, unlabelled.features, data.num_classes, self.seed, costly
            ),
            m.SOURCE_VAL_ACC: val.accuracy(),
            m.SOURCE_VAL_MACRO_ACC: validators.macro_accuracy(
                val.logits, val.labels, data.num_classes
            ),
            m.SOURCE_VAL_LOSS: val_losses.mean().item(),
            m.TARGET_ACC: test.accuracy(),
        }
        if costly:
            source_train = scored(self.source_train_sample)
            metrics.update(mixval.scores())
            metrics.update(
                validators.importance_weighted_scores(
                    val.features[self.source_val_rows],
                    val_losses[self.source_val_rows],
                    source_train.features,
                    unlabelled.features[self.target_rows],
                    seed=self.seed,
                )
            )
        else:  # nan, not absent: Tune's progress.csv keeps the first epoch's keys only
            metrics.update(dict.fromkeys(m.COSTLY_VALIDATORS, math.nan))
        return metrics, probabilities
