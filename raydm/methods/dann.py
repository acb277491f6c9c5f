"""DANN: domain-adversarial training through a gradient reversal layer.

Ganin & Lempitsky, "Unsupervised Domain Adaptation by Backpropagation", ICML 2015; Ganin et al.,
"Domain-Adversarial Training of Neural Networks", JMLR 17(59), 2016.

The domain classifier learns to tell source from target features at full strength; the gradient
reversal layer hands the feature extractor the opposite of that gradient scaled by lambda_p, so
features become indistinguishable across domains while staying discriminative for the labels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from raydm.methods.options import DANNArgs
from raydm.methods.source_only import SourceOnly


def adaptation_weight(progress: float, lambda_max: float, gamma: float) -> float:
    """lambda_p = lambda_max * (2 / (1 + exp(-gamma p)) - 1), JMLR eq. (14) with a ceiling."""
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0)


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by -coefficient."""

    @staticmethod
    def forward(ctx, inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
        ctx.coefficient = coefficient
        return inputs.view_as(inputs)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        return -ctx.coefficient * grad_output, None


def reverse_gradient(inputs: torch.Tensor, coefficient: float) -> torch.Tensor:
    return GradientReversal.apply(inputs, coefficient)


class DANN(SourceOnly):
    """DANN (Ganin & Lempitsky 2015): gradient reversal, lambda_p schedule."""

    Args = DANNArgs

    def __init__(self, args: DANNArgs, backbone: nn.Module, num_classes: int, model, train):
        super().__init__(args, backbone, num_classes, model, train)
        layers: list[nn.Module] = []
        width = backbone.out_features
        for _ in range(args.discriminator_layers):
            layers += [
                nn.Linear(width, args.discriminator_hidden),
                nn.ReLU(),
                nn.Dropout(args.discriminator_dropout),
            ]
            width = args.discriminator_hidden
        self.discriminator = nn.Sequential(*layers, nn.Linear(width, 1))
        self.optimizer.add_param_group(
            {
                "params": self.discriminator.parameters(),
                "lr_mult": args.discriminator_lr_mult,
                "lr": train.lr * args.discriminator_lr_mult,
            }
        )

    def update(self, source, labels, target, target_index, progress):
        lam = self.args.lambda_max
        if self.args.lambda_schedule == "ramp":
            lam = adaptation_weight(progress, self.args.lambda_max, self.args.gamma)
        if self.args.domain_passes == "joint":
            features = self.backbone(torch.cat([source, target]))
        else:
            features = torch.cat([self.backbone(source), self.backbone(target)])
        logits = self.head(features[: len(source)])
        loss_cls = F.cross_entropy(logits, labels)
        domain_logits = self.discriminator(reverse_gradient(features, lam)).squeeze(1)
        is_source = torch.cat([torch.ones(len(source)), torch.zeros(len(target))]).to(features)
        loss_domain = F.binary_cross_entropy_with_logits(domain_logits, is_source)
        loss = loss_cls + loss_domain
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        domain_acc = ((domain_logits > 0).float() == is_source).float().mean()
        return {
            "train/loss": loss.item(),
            "train/loss_cls": loss_cls.item(),
            "train/loss_domain": loss_domain.item(),
            "train/domain_acc": domain_acc.item(),
            "train/lambda": lam,
        }
