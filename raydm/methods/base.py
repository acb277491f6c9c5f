"""What every adaptation method provides to the training loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar

import torch
from torch import nn

from raydm.methods.options import MethodArgs


class Method(nn.Module):
    """A model plus its update rule (DomainBed's ``Algorithm`` shape).

    ``update`` takes one labelled source batch and one unlabelled target batch and performs the
    method's whole optimisation step; ``progress`` runs from 0 to 1 over the trial's planned
    iterations so schedules do not depend on a hard-wired iteration count.
    """

    Args: ClassVar[type[MethodArgs]]

    def update(
        self,
        source: torch.Tensor,
        labels: torch.Tensor,
        target: torch.Tensor,
        target_index: torch.Tensor,
        progress: float,
    ) -> dict[str, float]:
        """One optimisation step; ``target_index`` locates the target batch in the target set
        (for per-sample state such as pseudo-labels), never its labels."""
        raise NotImplementedError

    def start_epoch(
        self, epoch: int, target_batches: Callable[[], Iterable[torch.Tensor]]
    ) -> torch.Tensor | None:
        """Work done once per epoch over the whole target set; returns the pseudo-labels in
        force for this epoch (one per target train sample, -1 where none), if the method has."""
        return None

    backbone: nn.Module

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from backbone features."""
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor) -> torch.Tensor:
        """Class logits."""
        return self.classify(self.backbone(inputs))

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimiser; param groups carry ``lr_mult`` for the shared lr schedule."""
        raise NotImplementedError


def classifier(in_features: int, hidden: list[int], num_classes: int, dropout: float) -> nn.Module:
    """An MLP head: (dropout, linear, relu) per hidden width, then (dropout, linear)."""
    layers: list[nn.Module] = []
    widths = [in_features, *hidden]
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Dropout(dropout), nn.Linear(width_in, width_out), nn.ReLU()]
    layers += [nn.Dropout(dropout), nn.Linear(widths[-1], num_classes)]
    return nn.Sequential(*layers)


def sgd(groups: list[dict], lr: float, momentum: float, nesterov: bool, weight_decay: float):
    for group in groups:
        group.setdefault("lr_mult", 1.0)
        group["lr"] = lr * group["lr_mult"]
    return torch.optim.SGD(
        groups,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov and momentum > 0,
        weight_decay=weight_decay,
    )
