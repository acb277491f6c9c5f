"""The source-only baseline: the same network and loop as DANN, without the domain branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raydm.methods.base import Method, classifier, sgd
from raydm.methods.options import SourceOnlyArgs
from raydm.networks import parameter_groups


class SourceOnly(Method):
    """The baseline: the same network trained on the source alone."""

    Args = SourceOnlyArgs

    def __init__(self, args: SourceOnlyArgs, backbone: nn.Module, num_classes: int, model, train):
        super().__init__()
        self.args = args
        self.backbone = backbone
        self.head = classifier(
            backbone.out_features, model.classifier_hidden, num_classes, model.dropout
        )
        self.optimizer = sgd(
            [
                *parameter_groups(backbone, train.backbone_lr_mult),
                {"params": self.head.parameters()},
            ],
            train.lr,
            train.momentum,
            train.nesterov,
            train.weight_decay,
        )

    def update(self, source, labels, target, target_index, progress):
        loss = F.cross_entropy(self.predict(source), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {"train/loss_cls": loss.item(), "train/loss": loss.item()}

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def optimizers(self):
        return [self.optimizer]
