"""Framework-free training: ``fit`` runs one configuration epoch by epoch.

No Ray here: the Tune trainable and ``raydm train`` both call ``fit`` and decide what to do with
each epoch's metrics and state (report and checkpoint, or print).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from raydm import metrics as m
from raydm.backbones import BACKBONES
from raydm.config import ExperimentConfig
from raydm.data import DomainPair, LabelledSet
from raydm.data.samples import seed_for
from raydm.methods import METHODS, Method

EpochCallback = Callable[[int, dict[str, float], dict[str, Any]], None]


def learning_rate(progress: float, lr: float, schedule: str, alpha: float, beta: float) -> float:
    """mu_p = mu_0 / (1 + alpha p)^beta (DANN, Ganin & Lempitsky 2015), or mu_0 if constant."""
    if schedule == "constant":
        return lr
    return lr / (1.0 + alpha * progress) ** beta


def choose_device(gpu: float) -> torch.device:
    return torch.device("cuda" if gpu > 0 and torch.cuda.is_available() else "cpu")


def build_method(config: ExperimentConfig, data: DomainPair) -> Method:
    backbone_entry = BACKBONES.get(config.model.backbone)
    backbone = backbone_entry.build(config.model.backbone_args, data.input_shape)
    method_class = METHODS.get(config.method)
    return method_class(config.method_args, backbone, data.num_classes, config.model, config.train)


class BatchStream:
    """Endless shuffled mini-batches drawn by indexing in-memory tensors.

    Each pass over the data is a fresh permutation from a seeded generator whose state is part
    of the checkpoint, so a resumed trial sees the batches the uninterrupted one would have.
    """

    def __init__(self, data: LabelledSet, batch_size: int, seed: int) -> None:
        self.data = data
        self.batch_size = min(batch_size, len(data))
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(len(data), generator=self.generator)
        self.position = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, labels, indices into the data)."""
        if self.position + self.batch_size > len(self.order):
            self.order = torch.randperm(len(self.data), generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return self.data.inputs[index], self.data.labels[index], index

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order,
            "position": self.position,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = state["position"]


def prepare(inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Model-ready floats: uint8 images become [-1, 1] in channels-last layout; points pass."""
    inputs = inputs.to(device, non_blocking=True)
    if inputs.dtype == torch.uint8:
        images = inputs.float().div_(127.5).sub_(1.0)
        return images.contiguous(memory_format=torch.channels_last)
    return inputs.float()


def place(method: Method, device: torch.device, images: bool) -> Method:
    """Move ``method`` to ``device``; convolutions get the channels-last layout, which oneDNN
    (CPU) and cuDNN run faster (a LeNet forward+backward: 66 -> 42 ms here)."""
    method = method.to(device)
    return method.to(memory_format=torch.channels_last) if images else method


@torch.no_grad()
def evaluate(
    method: Method, data: LabelledSet, device: torch.device, batch_size: int
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``method`` on ``data``."""
    was_training = method.training
    method.eval()
    correct, loss = 0, 0.0
    for start in range(0, len(data), batch_size):
        inputs = prepare(data.inputs[start : start + batch_size], device)
        labels = data.labels[start : start + batch_size].to(device)
        logits = method.predict(inputs)
        correct += (logits.argmax(1) == labels).sum().item()
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
    method.train(was_training)
    return correct / len(data), loss / len(data)


def _batches(data: LabelledSet, device: torch.device, batch_size: int):
    for start in range(0, len(data), batch_size):
        yield prepare(data.inputs[start : start + batch_size], device)


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
) -> dict[str, float]:
    """Train ``config`` on ``data``; return the last epoch's metrics.

    ``on_epoch(epoch, metrics, state)`` runs after every epoch; ``state`` is what
    ``resume_from`` needs to continue exactly where that epoch ended. It holds the live
    tensors, not copies: save or copy it before returning.
    """
    if config.params:
        raise ValueError(f"fit needs a fixed config; still searched: {', '.join(config.params)}")
    train = config.train
    torch.manual_seed(seed_for(train.seed, "init"))
    device = choose_device(config.resources.gpu)
    method = place(build_method(config, data), device, images=len(data.input_shape) == 3)
    source = BatchStream(data.source_train, train.batch_size, seed_for(train.seed, "source"))
    target = BatchStream(data.target_train, train.batch_size, seed_for(train.seed, "target"))
    iterations = train.iters_per_epoch or max(1, len(data.source_train) // train.batch_size)
    total = iterations * train.epochs
    first_epoch = 0
    if resume_from is not None:
        method.load_state_dict(resume_from["model"])
        for optimizer, state in zip(method.optimizers(), resume_from["optimizers"], strict=True):
            optimizer.load_state_dict(state)
        source.load_state_dict(resume_from["source_stream"])
        target.load_state_dict(resume_from["target_stream"])
        torch.set_rng_state(resume_from["torch_rng"])
        first_epoch = resume_from["epoch"]

    epoch_metrics: dict[str, float] = {}
    method.train()
    for epoch in range(first_epoch, train.epochs):
        sums: dict[str, float] = defaultdict(float)
        pseudo_labels = method.start_epoch(
            epoch, lambda: _batches(data.target_train, device, train.eval_batch_size)
        )
        for step in range(iterations):
            progress = (epoch * iterations + step) / total
            lr = learning_rate(progress, train.lr, train.lr_schedule, train.lr_alpha, train.lr_beta)
            for optimizer in method.optimizers():
                for group in optimizer.param_groups:
                    group["lr"] = lr * group["lr_mult"]
            source_inputs, source_labels, _ = source.next()
            target_inputs, _, target_index = target.next()  # target labels never reach it
            stats = method.update(
                prepare(source_inputs, device),
                source_labels.to(device),
                prepare(target_inputs, device),
                target_index.to(device),
                progress,
            )
            for name, value in stats.items():
                sums[name] += value
        epoch_metrics = {name: total_value / iterations for name, total_value in sums.items()}
        epoch_metrics[m.TRAIN_LR] = lr
        if pseudo_labels is not None:
            epoch_metrics.update(pseudo_label_stats(pseudo_labels, data))
        val_acc, val_loss = evaluate(method, data.source_val, device, train.eval_batch_size)
        target_acc, _ = evaluate(method, data.target_test, device, train.eval_batch_size)
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
            state = {
                "model": method.state_dict(),
                "optimizers": [opt.state_dict() for opt in method.optimizers()],
                "source_stream": source.state_dict(),
                "target_stream": target.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "epoch": epoch + 1,
            }
            on_epoch(epoch + 1, epoch_metrics, state)
    return epoch_metrics
