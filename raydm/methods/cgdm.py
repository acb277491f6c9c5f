"""CGDM: cross-domain gradient discrepancy minimisation.

Su, Li, Lu, Zhu, Du, "Gradient Distribution Alignment Certificates Better Adversarial Domain
Adaptation" / "Cross-Domain Gradient Discrepancy Minimization for Unsupervised Domain
Adaptation", CVPR 2021. Defaults follow the official code (lijin118/CGDM) where it hard-wires a
choice; each such choice is an option here.

A feature extractor G and two classifier heads F1, F2 (prediction: argmax of F1 + F2). Each
iteration has three steps:
  A. G, F1, F2: source CE on both heads + w_ent * IM(target) + w_pl * weighted CE on pseudo-labels.
  B. F1, F2 only: source CE - w_dis * L_dis(target) + w_ent * IM(target) (heads disagree).
  C. G only, num_k times: w_dis * L_dis + w_ent * IM + w_gd * L_GD  (G makes them agree, and makes
     each head's target gradient point where its source gradient points).
Target pseudo-labels come from clustering target features, recomputed every few epochs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from raydm.methods.base import Method, sgd
from raydm.methods.options import CGDMArgs
from raydm.networks import parameter_groups

# The official code adds this inside its logarithms; kept so loss values match it.
LOG_EPS = 1e-5


# --- losses (module functions, so tests can check them by hand) ----------------------------


def information_maximization(probabilities: torch.Tensor) -> torch.Tensor:
    """IM as the official code minimises it: mean entropy + sum_k pbar_k log pbar_k.

    Low when each prediction is confident and the batch uses all classes evenly.
    """
    entropy = -(probabilities * torch.log(probabilities + LOG_EPS)).sum(1).mean()
    mean = probabilities.mean(0) + LOG_EPS
    return entropy + (mean * torch.log(mean)).sum()


def weighted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE weighted by w_i = 1 + exp(-H(p_i)), w normalised by its (detached) sum, then averaged.

    Labels of -1 (below the confidence threshold) take no part.
    """
    keep = labels >= 0
    if not keep.any():
        return logits.sum() * 0.0
    logits, labels = logits[keep], labels[keep]
    probabilities = F.softmax(logits, dim=1)
    entropy = -(probabilities * torch.log(probabilities + LOG_EPS)).sum(1)
    weight = 1.0 + torch.exp(-entropy)
    weight = weight / weight.sum().detach()
    return (weight * F.cross_entropy(logits, labels, reduction="none")).mean()


def classifier_discrepancy(logits1: torch.Tensor, logits2: torch.Tensor) -> torch.Tensor:
    """L_dis: mean absolute difference of the two heads' softmax outputs."""
    return (F.softmax(logits1, dim=1) - F.softmax(logits2, dim=1)).abs().mean()


def gradient_discrepancy(
    source_losses: list[torch.Tensor],
    target_losses: list[torch.Tensor],
    head_params: list[list[nn.Parameter]],
    cosine: Literal["rowwise", "flat"] = "rowwise",
) -> torch.Tensor:
    """L_GD: mean over heads of the mean over parameter tensors of (1 - cos(g_target, g_source)).

    The gradients of each head's source loss and target loss are taken w.r.t. that head's
    parameters with ``create_graph``, so L_GD back-propagates into the feature extractor. One
    autograd call per domain covers every head and tensor: a head's parameters do not reach the
    other head's loss, so the summed loss gives each head its own gradients.
    """
    flat_params = [p for params in head_params for p in params]
    source_grads = torch.autograd.grad(sum(source_losses), flat_params, create_graph=True)
    target_grads = torch.autograd.grad(sum(target_losses), flat_params, create_graph=True)
    per_head, start = [], 0
    for params in head_params:
        cosines = []
        for g_s, g_t in zip(
            source_grads[start : start + len(params)],
            target_grads[start : start + len(params)],
            strict=True,
        ):
            if g_s.dim() > 1 and cosine == "rowwise":
                cosines.append(F.cosine_similarity(g_t, g_s, dim=1).mean())
            else:
                cosines.append(F.cosine_similarity(g_t.flatten(), g_s.flatten(), dim=0))
        per_head.append((1.0 - torch.stack(cosines)).mean())
        start += len(params)
    return torch.stack(per_head).mean()


def cluster_pseudo_labels(
    features: torch.Tensor, probabilities: torch.Tensor, rounds: int
) -> torch.Tensor:
    """Pseudo-labels by clustering target features, as the official code does.

    1. Append a constant 1 to every feature and L2-normalise.
    2. Initial centroids: the prediction-weighted means c_k = sum_i p_ik f_i / sum_i p_ik.
    3. Assign each sample to the centroid of highest cosine similarity.
    4. ``rounds`` times: recompute centroids from the hard assignment, and reassign.
    """
    features = torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype)], 1)
    features = F.normalize(features, dim=1)
    num_classes = probabilities.shape[1]
    affinity = probabilities
    for _ in range(rounds + 1):
        centroids = affinity.T @ features / (affinity.sum(0)[:, None] + 1e-8)
        labels = (features @ F.normalize(centroids, dim=1).T).argmax(1)
        affinity = F.one_hot(labels, num_classes).to(features.dtype)
    return labels


# --- the method ----------------------------------------------------------------------------


def _head(in_features: int, hidden: list[int], num_classes: int, dropout: float) -> nn.Sequential:
    """Dropout-FC-BN-ReLU per hidden width, then Dropout-FC (the official digits heads)."""
    layers: list[nn.Module] = []
    widths = [in_features, *hidden]
    for width_in, width_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [
            nn.Dropout(dropout),
            nn.Linear(width_in, width_out),
            nn.BatchNorm1d(width_out),
            nn.ReLU(),
        ]
    layers += [nn.Dropout(dropout), nn.Linear(widths[-1], num_classes)]
    return nn.Sequential(*layers)


def _official_init(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0.0, 0.01)
        nn.init.normal_(module.bias, 0.0, 0.01)
    elif isinstance(module, nn.BatchNorm1d):
        nn.init.normal_(module.weight, 1.0, 0.01)
        nn.init.zeros_(module.bias)


class CGDM(Method):
    """CGDM (Su et al. 2021): two heads, gradient discrepancy, cluster pseudo-labels."""

    Args = CGDMArgs

    def __init__(self, args: CGDMArgs, backbone: nn.Module, num_classes: int, model, train):
        super().__init__()
        self.args = args
        self.backbone = backbone
        self.heads = nn.ModuleList(
            _head(backbone.out_features, model.classifier_hidden, num_classes, model.dropout)
            for _ in range(2)
        )
        if args.head_init == "normal":
            self.heads.apply(_official_init)
        # A buffer so that .to(device) moves it; not persistent because its length changes
        # (empty until the first clustering): the checkpoint carries it as extra state.
        self.register_buffer("pseudo_labels", torch.empty(0, dtype=torch.int64), persistent=False)
        self.generator_optimizer = sgd(
            parameter_groups(backbone, train.backbone_lr_mult),
            train.lr,
            args.generator_momentum,
            False,
            train.weight_decay,
        )
        self.head_optimizer = sgd(
            [{"params": self.heads.parameters(), "lr_mult": args.head_lr_mult}],
            train.lr,
            train.momentum,
            train.nesterov,
            train.weight_decay,
        )
        last = [head[-1] for head in self.heads]
        self._gd_params = [
            list(layer.parameters()) if args.gd_params == "last" else list(head.parameters())
            for layer, head in zip(last, self.heads, strict=True)
        ]

    def optimizers(self):
        return [self.generator_optimizer, self.head_optimizer]

    # Pseudo-labels belong in the checkpoint: a resumed trial must not train without them.
    def get_extra_state(self):
        return {"pseudo_labels": self.pseudo_labels.cpu()}

    def set_extra_state(self, state) -> None:
        self.pseudo_labels = state["pseudo_labels"].to(self.pseudo_labels.device)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.heads[0](features) + self.heads[1](features)

    # --- pseudo-labels -----------------------------------------------------------------------

    def start_epoch(
        self, epoch: int, target_batches: Callable[[], Iterable[torch.Tensor]]
    ) -> torch.Tensor | None:
        args = self.args
        current = self.pseudo_labels if len(self.pseudo_labels) else None
        if epoch < args.pseudo_label_start:
            return current
        if (epoch - args.pseudo_label_start) % args.pseudo_label_every:
            return current
        was_training = self.training
        self.eval()
        features, logits = [], []
        with torch.inference_mode():
            for inputs in target_batches():
                batch_features = self.backbone(inputs)
                features.append(batch_features.float().cpu())
                logits.append(self.classify(batch_features).cpu())
        self.train(was_training)
        probabilities = F.softmax(torch.cat(logits).float(), dim=1)
        labels = cluster_pseudo_labels(torch.cat(features), probabilities, args.kmeans_rounds)
        if args.threshold is not None:
            labels[probabilities.max(1).values < args.threshold] = -1
        self.pseudo_labels = labels.to(self.pseudo_labels.device)
        return labels

    # --- one iteration -----------------------------------------------------------------------

    def update(self, source, labels, target, target_index, progress):
        pseudo = self.pseudo_labels[target_index] if len(self.pseudo_labels) else None
        both = torch.cat([source, target])
        stats = self.step_a(both, labels, pseudo)
        # G does not change in step B, so B and the first step-C repetition share one forward.
        features = self.backbone(both)
        stats |= self.step_b(features.detach(), labels)
        stats |= self.step_c(both, labels, pseudo, features)
        return stats

    def step_a(self, both, labels, pseudo) -> dict[str, float]:
        """G, F1, F2: source CE on both heads, target IM, weighted CE on pseudo-labels."""
        args, n_source = self.args, len(labels)
        logits = self._forward_heads(self.backbone(both))
        loss_source = sum(F.cross_entropy(out[:n_source], labels) for out in logits)
        loss = loss_source + args.w_ent * self._im(logits, n_source)
        if pseudo is not None:
            loss = loss + args.w_pl * sum(
                weighted_cross_entropy(out[n_source:], pseudo) for out in logits
            )
        self._step(loss, self.optimizers())
        return {"train/loss": loss.item(), "train/loss_cls": loss_source.item() / 2}

    def step_b(self, features, labels) -> dict[str, float]:
        """F1, F2 only, on fixed features: fit the source while disagreeing on the target."""
        args, n_source = self.args, len(labels)
        logits = self._forward_heads(features.detach())
        loss_source = sum(F.cross_entropy(out[:n_source], labels) for out in logits)
        loss_dis = classifier_discrepancy(logits[0][n_source:], logits[1][n_source:])
        loss = loss_source - args.w_dis * loss_dis + args.w_ent * self._im(logits, n_source)
        self._step(loss, [self.head_optimizer])
        return {"train/loss_dis_heads": loss_dis.item()}

    def step_c(self, both, labels, pseudo, features=None) -> dict[str, float]:
        """G only, num_k times: agree on the target, align target and source head gradients.

        ``features``: G's output on ``both`` with its graph, if the caller has it already.
        """
        args, n_source = self.args, len(labels)
        g_params = list(self.backbone.parameters())
        loss_gd = torch.zeros(())
        for repetition in range(args.num_k):
            if repetition or features is None:  # each repetition sees the G the last one left
                features = self.backbone(both)
            logits = self._forward_heads(features)
            loss_dis = classifier_discrepancy(logits[0][n_source:], logits[1][n_source:])
            loss_im = self._im(logits, n_source)
            loss = args.w_dis * loss_dis + args.w_ent * loss_im
            if pseudo is not None and args.w_gd > 0:
                loss_gd = gradient_discrepancy(
                    [F.cross_entropy(out[:n_source], labels) for out in logits],
                    [weighted_cross_entropy(out[n_source:], pseudo) for out in logits],
                    self._gd_params,
                    args.gd_cosine,
                )
                loss = loss + args.w_gd * loss_gd
            self.generator_optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=g_params)  # no gradient lands on the heads
            self.generator_optimizer.step()
        return {
            "train/loss_dis": loss_dis.item(),
            "train/loss_im": loss_im.item(),
            "train/loss_gd": loss_gd.item(),
        }

    def _forward_heads(self, features: torch.Tensor) -> list[torch.Tensor]:
        return [head(features) for head in self.heads]

    @staticmethod
    def _im(logits: list[torch.Tensor], n_source: int) -> torch.Tensor:
        """IM of each head's target predictions, summed over the heads (official code)."""
        return sum(information_maximization(F.softmax(out[n_source:], 1)) for out in logits)

    def _step(self, loss: torch.Tensor, optimizers: list[torch.optim.Optimizer]) -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward(
            inputs=[p for opt in optimizers for g in opt.param_groups for p in g["params"]]
        )
        for optimizer in optimizers:
            optimizer.step()
