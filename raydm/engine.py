"""Framework-free training: ``fit`` runs one configuration epoch by epoch.

No Ray here: the Tune trainable and ``raydm train`` both call ``fit`` and decide what to do with
each epoch's metrics and state (report and checkpoint, or print).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F

from raydm import metrics as m
from raydm import validators
from raydm.backbones import BACKBONES, load_pretrained, pretrained_state
from raydm.config import ExperimentConfig
from raydm.data import DomainPair, pipeline
from raydm.data.pipeline import Loader, TrainBatches, Transform
from raydm.data.samples import seed_for
from raydm.methods import METHODS, Method

EpochCallback = Callable[[int, dict[str, float], dict[str, Any]], None]


class Diverged(RuntimeError):
    """A loss became NaN or infinite: the trial cannot recover, so it is not retried."""


def learning_rate(progress: float, lr: float, schedule: str, alpha: float, beta: float) -> float:
    """mu_p = mu_0 / (1 + alpha p)^beta (DANN, Ganin & Lempitsky 2015), or mu_0 if constant."""
    if schedule == "constant":
        return lr
    return lr / (1.0 + alpha * progress) ** beta


def choose_device(wants_gpu: bool) -> torch.device:
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


def build_method(
    config: ExperimentConfig, data: DomainPair, pretrained: dict[str, torch.Tensor] | None = None
) -> Method:
    backbone_entry = BACKBONES.get(config.model.backbone)
    backbone = backbone_entry.build(
        config.model.backbone_args, pipeline.model_input_shape(data, config.data)
    )
    load_pretrained(backbone, pretrained)
    method_class = METHODS.get(config.method)
    return method_class(config.method_args, backbone, data.num_classes, config.model, config.train)


def place(method: Method, device: torch.device, images: bool) -> Method:
    """Move ``method`` to ``device``; convolutions get the channels-last layout, which oneDNN
    (CPU) and cuDNN run faster (a LeNet forward+backward: 66 -> 42 ms here)."""
    method = method.to(device)
    return method.to(memory_format=torch.channels_last) if images else method


@torch.no_grad()
def evaluate(
    method: Method, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], transform: Transform
) -> tuple[float, float, torch.Tensor, torch.Tensor]:
    """(accuracy, mean cross-entropy, predictions, labels) of ``method`` over (raw inputs,
    labels) batches."""
    was_training = method.training
    method.eval()
    loss, predictions, truth = 0.0, [], []
    for inputs, labels in batches:
        labels = labels.to(transform.device)
        logits = method.predict(transform.evaluation(inputs))
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        predictions.append(logits.argmax(1).cpu())
        truth.append(labels.cpu())
    method.train(was_training)
    predictions, truth = torch.cat(predictions), torch.cat(truth)
    return (predictions == truth).float().mean().item(), loss / len(truth), predictions, truth


@torch.no_grad()
def target_outputs(
    method: Method, batches: Iterable[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(softmax probabilities, backbone features) of ``method`` over prepared target batches,
    on the CPU: what the label-free validators look at."""
    was_training = method.training
    method.eval()
    probabilities, features = [], []
    for inputs in batches:
        batch_features = method.backbone(inputs)
        probabilities.append(method.classify(batch_features).softmax(1).cpu())
        features.append(batch_features.flatten(1).cpu())
    method.train(was_training)
    return torch.cat(probabilities), torch.cat(features)


def summarize_runs(runs: list[dict[str, float]]) -> dict[str, str]:
    """Each final metric of one or more runs of a config: the value, or "mean ± sd" (sample
    standard deviation) over several seeds."""
    summary = {}
    for key in runs[0]:
        values = torch.tensor([float(run[key]) for run in runs], dtype=torch.float64)
        if len(runs) == 1:
            summary[key] = f"{values[0].item():.4f}"
        else:
            summary[key] = f"{values.mean().item():.4f} ± {values.std().item():.4f}"
    return summary


def pseudo_label_stats(pseudo_labels: torch.Tensor, data: DomainPair) -> dict[str, float]:
    """Pseudo-label accuracy against the target labels (an oracle figure: reported, never
    used) and the share of target samples given each class."""
    labelled = pseudo_labels >= 0
    truth = data.target_train.labels
    correct = (pseudo_labels[labelled].cpu() == truth[labelled.cpu()]).float()
    stats = {
        m.PSEUDO_LABEL_ACC: correct.mean().item() if labelled.any() else 0.0,
        m.PSEUDO_LABEL_COVERAGE: labelled.float().mean().item(),
    }
    counts = torch.bincount(pseudo_labels[labelled].cpu(), minlength=data.num_classes)
    for name, count in zip(data.class_names, counts.tolist(), strict=True):
        stats[f"{m.PSEUDO_LABEL_SHARE}/{name}"] = count / len(pseudo_labels)
    return stats


def fit(
    config: ExperimentConfig,
    data: DomainPair,
    on_epoch: EpochCallback | None = None,
    resume_from: dict[str, Any] | None = None,
    pretrained: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train ``config`` on ``data``; return the last epoch's metrics.

    ``on_epoch(epoch, metrics, state)`` runs after every epoch; ``state`` is what
    ``resume_from`` needs to continue exactly where that epoch ended. It holds the live
    tensors, not copies: save or copy it before returning. ``pretrained`` is the backbone's
    starting weights when the caller has loaded them already (a search loads them once).
    """
    if config.params:
        raise ValueError(f"fit needs a fixed config; still searched: {', '.join(config.params)}")
    train = config.train
    if pretrained is None:
        pretrained = pretrained_state(config.model.backbone, config.model.backbone_args)
    torch.manual_seed(seed_for(train.seed, "init"))
    device = choose_device(config.resources.wants_gpu)
    method, transform, loader, source, target = _setup(config, data, pretrained, device)
    iterations = train.iters_per_epoch or max(1, len(data.source_train) // train.batch_size)
    total = iterations * train.epochs
    first_epoch = 0
    if resume_from is not None:
        method.load_state_dict(resume_from["model"])
        for optimizer, state in zip(method.optimizers(), resume_from["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        source.stream.load_state_dict(resume_from["source_stream"])
        target.stream.load_state_dict(resume_from["target_stream"])
        transform.generator.set_state(resume_from["augment_rng"])
        torch.set_rng_state(resume_from["torch_rng"])
        first_epoch = resume_from["epoch"]

    def target_batches():
        return _prepared(data.target_train, train.eval_batch_size, loader, transform)

    # DEV (You et al. 2019) is too costly for every ASHA rung; the features it needs are kept
    # with each checkpoint for `raydm report` to score the top trials afterwards.
    dev_parts = {
        name: _seeded_subset(part, DEV_SAMPLES, seed_for(train.seed, f"dev-{name}"))
        for name, part in (
            ("source_val", data.source_val),
            ("source_train", data.source_train),
            ("target", data.target_train),
        )
    }

    # The validators look at a fixed, seeded subset of the unlabelled target (their cost grows
    # with it: SND pairs every sample with every other, ClassAMI runs k-means).
    validation_targets = _seeded_subset(
        data.target_train, train.validation_samples, seed_for(train.seed, "validation-subset")
    )

    epoch_metrics: dict[str, float] = {}
    method.train()
    for epoch in range(first_epoch, train.epochs):
        sums: dict[str, float] = defaultdict(float)
        pseudo_labels = method.start_epoch(epoch, target_batches)
        for step in range(iterations):
            progress = (epoch * iterations + step) / total
            lr = learning_rate(progress, train.lr, train.lr_schedule, train.lr_alpha, train.lr_beta)
            for optimizer in method.optimizers():
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
            source_inputs, source_labels, _ = source.next()
            target_inputs, _, target_index = target.next()  # target labels never reach it
            stats = method.update(
                transform.train(source_inputs),
                source_labels.to(device),
                transform.train(target_inputs),
                target_index.to(device),
                progress,
            )
            broken = sorted(name for name, value in stats.items() if not math.isfinite(value))
            if broken:
                raise Diverged(
                    f"{broken[0]} became {stats[broken[0]]} at epoch {epoch + 1}, iteration "
                    f"{step + 1} (lr {lr:.3g}): lower train.lr or the adaptation weights"
                )
            for name, value in stats.items():
                sums[name] += value
        epoch_metrics = {name: total_value / iterations for name, total_value in sums.items()}
        epoch_metrics[m.TRAIN_LR] = lr
        if pseudo_labels is not None:
            epoch_metrics.update(pseudo_label_stats(pseudo_labels, data))
        val_acc, val_loss, val_predicted, val_truth = evaluate(
            method,
            pipeline.evaluation_batches(data.source_val, train.eval_batch_size, loader),
            transform,
        )
        target_acc, *_ = evaluate(
            method,
            pipeline.evaluation_batches(data.target_test, train.eval_batch_size, loader),
            transform,
        )
        probabilities, features = target_outputs(
            method, _prepared(validation_targets, train.eval_batch_size, loader, transform)
        )
        epoch_metrics.update(
            validators.target_validators(
                probabilities, features, data.num_classes, seed=seed_for(train.seed, "validators")
            )
        )
        epoch_metrics[m.SOURCE_VAL_MACRO_ACC] = validators.macro_accuracy(
            val_predicted, val_truth, data.num_classes
        )
        epoch_metrics.update(
            {
                m.SOURCE_VAL_ACC: val_acc,
                m.SOURCE_VAL_LOSS: val_loss,
                m.TARGET_ACC: target_acc,
                m.EPOCH: epoch + 1,
                m.EPOCHS_PLANNED: train.epochs,
            }
        )
        if on_epoch is not None:
            dev_inputs = {
                **_features_and_losses(
                    method, dev_parts["source_val"], loader, transform, "source_val"
                ),
                **_features_and_losses(
                    method, dev_parts["source_train"], loader, transform, "source_train"
                ),
                **_features_and_losses(method, dev_parts["target"], loader, transform, "target"),
            }
            state = {
                "model": method.state_dict(),
                "optimizers": [opt.state_dict() for opt in method.optimizers()],
                "source_stream": source.stream.state_dict(),
                "target_stream": target.stream.state_dict(),
                "augment_rng": transform.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                DEV_INPUTS: dev_inputs,
            }
            on_epoch(epoch + 1, epoch_metrics, state)
    source.close()
    target.close()
    return epoch_metrics


# Samples per part whose features are saved for DEV: enough for its domain classifier,
# small enough (float16) to checkpoint every epoch.
DEV_SAMPLES = 1000
DEV_INPUTS = "dev_inputs"  # key of those features in the epoch state


def _seeded_subset(part, count: int, seed: int):
    if len(part) <= count:
        return part
    order = torch.randperm(len(part), generator=torch.Generator().manual_seed(seed))
    return part.subset(order[:count].sort().values)


@torch.no_grad()
def _features_and_losses(
    method: Method, part, loader: Loader, transform: Transform, name: str
) -> dict[str, torch.Tensor]:
    """Backbone features (float16, CPU) of ``part`` and, where labels may be used (source),
    per-sample cross-entropy: the inputs of DEV."""
    was_training = method.training
    method.eval()
    features, losses = [], []
    for inputs, labels in pipeline.evaluation_batches(part, 1024, loader):
        batch_features = method.backbone(transform.evaluation(inputs))
        features.append(batch_features.flatten(1).half().cpu())
        if name.startswith("source"):
            logits = method.classify(batch_features)
            losses.append(F.cross_entropy(logits, labels.to(logits.device), reduction="none").cpu())
    method.train(was_training)
    out = {f"{name}_features": torch.cat(features)}
    if losses:
        out[f"{name}_losses"] = torch.cat(losses)
    return out


def _setup(
    config: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
    device: torch.device,
) -> tuple[Method, Transform, Loader, TrainBatches, TrainBatches]:
    train = config.train
    method = place(build_method(config, data, pretrained), device, len(data.input_shape) == 3)
    image_input = BACKBONES.get(config.model.backbone).image_input
    transform = Transform(config.data, image_input, device, seed_for(train.seed, "augment"))
    # DataLoader workers only where images stream from disk; in-memory batches are indexed.
    workers = max(1, int(config.resources.cpu)) if data.streamed else 0
    loader = Loader(
        config.data.image_size, config.data.image_channels, workers, device.type == "cuda"
    )
    source_seed, target_seed = seed_for(train.seed, "source"), seed_for(train.seed, "target")
    source = TrainBatches(data.source_train, train.batch_size, source_seed, loader)
    target = TrainBatches(data.target_train, train.batch_size, target_seed, loader)
    return method, transform, loader, source, target


def _prepared(part, batch_size: int, loader: Loader, transform: Transform):
    for inputs, _ in pipeline.evaluation_batches(part, batch_size, loader):
        yield transform.evaluation(inputs)


def peak_gpu_memory(
    config: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, torch.Tensor] | None,
    iterations: int = 3,
) -> tuple[int, int]:
    """(peak bytes one trial's training reserves on this GPU, the GPU's total bytes).

    Runs the last epoch's work for a few iterations (for CGDM: with pseudo-labels, so the
    second-order gradient discrepancy is in it) and one evaluation pass of a batch.
    """
    device = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats(device)
    method, transform, loader, source, target = _setup(config, data, pretrained, device)
    method.train()
    eval_size = config.train.eval_batch_size
    method.start_epoch(
        config.train.epochs - 1, lambda: _prepared(data.target_train, eval_size, loader, transform)
    )
    for _ in range(iterations):
        source_inputs, source_labels, _ = source.next()
        target_inputs, _, target_index = target.next()
        method.update(
            transform.train(source_inputs),
            source_labels.to(device),
            transform.train(target_inputs),
            target_index.to(device),
            1.0,
        )
    evaluate(method, pipeline.evaluation_batches(data.source_val, eval_size, loader), transform)
    source.close()
    target.close()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_reserved(device), torch.cuda.get_device_properties(
        device
    ).total_memory
