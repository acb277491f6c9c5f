"""Label-free model-selection criteria for unsupervised domain adaptation.

Every validator here is "higher is better", so a search can maximise any of them (see
``raydm.metrics.SELECTABLE``). They are plain torch / scikit-learn functions of a model's
outputs; none of them sees a target label. ``macro_accuracy`` uses source validation labels
only. How well a validator ranks models by their oracle accuracy is ``raydm.correlation``'s.

Sources:

- Entropy: Grandvalet & Bengio, "Semi-supervised learning by entropy minimization", NeurIPS
  2004; used to select UDA models by Morerio, Cavazza & Murino, "Minimal-entropy correlation
  alignment for unsupervised deep domain adaptation", ICLR 2018.
- Information maximisation (IM): Gomes, Krause & Perona, "Discriminative clustering by
  regularized information maximization", NeurIPS 2010; Liang, Hu & Feng, "Do we really need
  to access the source data? (SHOT)", ICML 2020.
- Batch nuclear-norm (BNM): Cui, Wang, Zhuo, Li, Huang & Tian, "Towards discriminability and
  diversity: batch nuclear-norm maximization under label insufficient situations", CVPR 2020.
- Soft neighbourhood density (SND): Saito, Kim, Teterwak, Sclaroff, Darrell & Saenko, "Tune it
  the right way: unsupervised validation of domain adaptation via soft neighborhood density",
  ICCV 2021.
- ClassAMI: Musgrave, Belongie & Lim, "Benchmarking validation methods for unsupervised domain
  adaptation", arXiv:2208.07360, 2022.
- Deep embedded validation (DEV): You, Wang, Chen, Wang & Long, "Towards accurate model
  selection in deep unsupervised domain adaptation", ICML 2019, which builds on importance-
  weighted cross-validation (IWCV: Sugiyama, Krauledat & Müller, JMLR 2007); DEVN, DEV with
  normalised weights, as the pytorch-adapt library offers it.
- MixVal: Hu et al., "Mixed samples as probes for unsupervised model selection in domain
  adaptation", NeurIPS 2023 (code: LHXXHB/MixVal).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from raydm import metrics as m

# scikit-learn is imported by the costly validators that use it: a search's driver imports
# this module through the trainable and uses none of it, and importing it (with scipy) put
# 0.6 s before Ray's start (BENCHMARKS.md, the driver without scikit-learn).
if TYPE_CHECKING:
    from sklearn.linear_model import LogisticRegression

EPS = 1e-12  # floor of a probability inside a logarithm
# k-means restarts of ClassAMI: few enough to stay cheap each epoch, enough that one bad
# initialisation does not decide the score.
KMEANS_RESTARTS = 3
# Inverse regularisation strengths DEV's domain classifier chooses from (by held-out log loss).
DOMAIN_CLASSIFIER_CS = (0.01, 0.1, 1.0, 10.0, 100.0)
# Principal components the domain classifier sees: a LeNet's 1,200 features took its
# cross-validated fits 6.3 s an epoch here; 64 components (two power iterations) about 0.5 s.
DOMAIN_CLASSIFIER_DIMENSIONS = 64
MAX_LOG_RATIO = 50.0  # DEV clips log density ratios here so that exp() stays finite


def _matrix(values: Tensor, name: str) -> Tensor:
    """``values`` as a non-empty 2-D float64 tensor on the CPU."""
    values = torch.as_tensor(values).detach().cpu().to(torch.float64)
    if values.ndim != 2 or values.shape[0] == 0 or values.shape[1] == 0:
        raise ValueError(
            f"{name} must be a non-empty N x D matrix, got shape {tuple(values.shape)}"
        )
    return values


def _entropy(probabilities: Tensor) -> Tensor:
    """Entropy (nats) of each row; rows are probability vectors. 0 log 0 counts as 0."""
    return -(probabilities * probabilities.clamp_min(EPS).log()).sum(-1)


def neg_entropy(probabilities: Tensor) -> float:
    """Minus the mean entropy (natural log) of the N x K target softmax outputs.

    0 for one-hot predictions, -log K for uniform ones. Confident predictions score higher.
    """
    p = _matrix(probabilities, "probabilities")
    return -_entropy(p).mean().item()


def information_maximization(probabilities: Tensor) -> float:
    """IM = H(mean prediction) - mean per-sample entropy, of N x K softmax outputs.

    High when each prediction is confident (low per-sample entropy) and the classes are used
    equally often (high entropy of the mean): at most log K, for one-hot predictions spread
    evenly over the K classes; 0 for uniform predictions and for predictions that all put
    the same confident answer. This is the validator's sign convention (higher is better), the
    opposite of the IM *loss* that CGDM and SHOT minimise.
    """
    p = _matrix(probabilities, "probabilities")
    return (_entropy(p.mean(0)) - _entropy(p).mean()).item()


def batch_nuclear_norm(probabilities: Tensor) -> float:
    """BNM (Cui et al., CVPR 2020): nuclear norm of the N x K softmax matrix divided by N.

    The nuclear norm grows with both the confidence and the diversity of the predictions: it
    is K for N = K one-hot predictions that use every class once (score 1) and sqrt(N) for N
    one-hot predictions of the same class (score 1/sqrt(N)).
    """
    p = _matrix(probabilities, "probabilities")
    return (torch.linalg.matrix_norm(p, ord="nuc") / p.shape[0]).item()


def soft_neighborhood_density(
    probabilities: Tensor, temperature: float = 0.05, batch_size: int = 1024
) -> float:
    """SND (Saito et al., ICCV 2021): the mean entropy of each sample's soft neighbourhood.

    Each row of the N x K softmax outputs is L2-normalised (P); the similarities
    S = P P^T / temperature, with each sample's similarity to itself excluded (set to -inf),
    go through a row-wise softmax, giving each sample a distribution over its N - 1
    neighbours; SND is the mean over samples of that distribution's entropy. A sample with
    many equally close neighbours spreads its distribution over all of them (high entropy);
    one with a single close neighbour concentrates it there (low entropy). (A sample that is
    equally far from all others also gets a flat, high-entropy distribution.) Higher is
    better, as in the paper. Rows are processed ``batch_size`` at a time, so memory is
    O(batch_size x N) rather than O(N^2). Needs at least two samples.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    p = F.normalize(_matrix(probabilities, "probabilities"), dim=1)
    n = p.shape[0]
    if n < 2:
        raise ValueError("soft_neighborhood_density needs at least two samples")
    total = torch.zeros((), dtype=torch.float64)
    for start in range(0, n, batch_size):
        block = p[start : start + batch_size]
        rows = torch.arange(block.shape[0])
        similarity = block @ p.T / temperature
        similarity[rows, start + rows] = -math.inf
        log_q = similarity.log_softmax(1)
        q = log_q.exp()
        # The excluded self-similarity has q = 0 and log q = -inf; it contributes nothing.
        total -= torch.where(q > 0, q * log_q, torch.zeros_like(q)).sum()
    return (total / n).item()


def class_ami(features: Tensor, predictions: Tensor, num_classes: int, seed: int = 0) -> float:
    """ClassAMI (Musgrave et al., 2022): agreement between k-means clusters of the target
    features and the model's predicted classes.

    k-means (``num_classes`` clusters, ``KMEANS_RESTARTS`` restarts, ``random_state=seed``) on
    the L2-normalised N x D target features, then the adjusted mutual information
    (scikit-learn's ``adjusted_mutual_info_score``) between cluster ids and predictions: about
    0 when predictions ignore the feature clusters, 1 when they coincide. When there are fewer
    distinct feature vectors than ``num_classes`` the number of clusters is reduced to that
    count; constant predictions get whatever scikit-learn's AMI defines.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    x = F.normalize(_matrix(features, "features").flatten(1), dim=1)
    labels = torch.as_tensor(predictions).detach().cpu().reshape(-1).numpy()
    if len(labels) != x.shape[0]:
        raise ValueError(f"{len(labels)} predictions for {x.shape[0]} feature vectors")
    clusters = min(num_classes, torch.unique(x, dim=0).shape[0])
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score

    if clusters == 1:
        cluster_ids = np.zeros(len(labels), dtype=np.int64)
    else:
        kmeans = KMeans(n_clusters=clusters, n_init=KMEANS_RESTARTS, random_state=seed)
        cluster_ids = kmeans.fit_predict(x.to(torch.float32).numpy())
    return float(adjusted_mutual_info_score(cluster_ids, labels))


def macro_accuracy(logits_or_predictions: Tensor, labels: Tensor, num_classes: int) -> float:
    """Mean over the classes present in ``labels`` of the per-class recall.

    ``logits_or_predictions`` is either N class indices or an N x C matrix of scores (logits
    or probabilities), whose row-wise argmax is the prediction. Unlike plain (micro) accuracy,
    every class counts equally however many samples it has.
    """
    predictions = torch.as_tensor(logits_or_predictions).detach().cpu()
    if predictions.ndim == 2:
        predictions = predictions.argmax(1)
    predictions = predictions.reshape(-1).long()
    labels = torch.as_tensor(labels).detach().cpu().reshape(-1).long()
    if len(labels) == 0:
        raise ValueError("macro_accuracy needs at least one labelled sample")
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes})")
    support = torch.bincount(labels, minlength=num_classes)
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes)
    present = support > 0
    return (correct[present].double() / support[present]).mean().item()


def _domain_classifier(warm_start: bool = False) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(class_weight="balanced", max_iter=1000, warm_start=warm_start)


def domain_log_ratio(
    source_features: Tensor, target_features: Tensor, query: Tensor, seed: int = 0
) -> np.ndarray:
    """log(p_target(x) / p_source(x)) at each row of ``query``, from a fresh logistic-regression
    domain classifier trained on source (0) vs target (1) features.

    The features are standardised with the pooled mean and spread (an affine map, so a log
    ratio that is linear in the features stays linear) and, when wider than
    ``DOMAIN_CLASSIFIER_DIMENSIONS``, projected on their leading principal components. The
    classes are weighted as balanced, so the classifier's log odds estimate the density ratio
    directly; with unweighted classes they would include log(n_t / n_s), which DEV's reference
    code removes by multiplying the odds by n_s / n_t. As DEV selects its domain classifier's
    weight decay on held-out data, the inverse regularisation strength is chosen from
    ``DOMAIN_CLASSIFIER_CS`` by cross-validated log loss (a density ratio needs the classifier's
    probabilities to be right, not just its decisions). Log ratios are clipped at
    +-``MAX_LOG_RATIO``.
    """
    from sklearn.decomposition import PCA
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    source = _matrix(source_features, "source_features").flatten(1).numpy()
    target = _matrix(target_features, "target_features").flatten(1).numpy()
    query = _matrix(query, "query").flatten(1).numpy()
    x = np.concatenate([source, target])
    mean, spread = x.mean(0), x.std(0)
    spread[spread == 0] = 1.0
    x, query = (x - mean) / spread, (query - mean) / spread
    components = min(DOMAIN_CLASSIFIER_DIMENSIONS, len(x))
    if x.shape[1] > components:
        pca = PCA(components, svd_solver="randomized", iterated_power=2, random_state=seed)
        x, query = pca.fit_transform(x), pca.transform(query)
    y = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    folds = min(3, len(source), len(target))
    best_c = 1.0
    if folds >= 2:
        held_out_loss = np.zeros(len(DOMAIN_CLASSIFIER_CS))
        for fit_rows, held_rows in StratifiedKFold(folds, shuffle=True, random_state=seed).split(
            x, y
        ):
            # Each C starts from the previous one's solution: a path, cheaper than fresh fits.
            classifier = _domain_classifier(warm_start=True)
            for index, c in enumerate(DOMAIN_CLASSIFIER_CS):
                classifier.set_params(C=c).fit(x[fit_rows], y[fit_rows])
                probabilities = classifier.predict_proba(x[held_rows])
                held_out_loss[index] += log_loss(y[held_rows], probabilities, labels=[0, 1])
        best_c = DOMAIN_CLASSIFIER_CS[int(np.argmin(held_out_loss))]
    classifier = _domain_classifier().set_params(C=best_c).fit(x, y)
    return np.clip(classifier.decision_function(query), -MAX_LOG_RATIO, MAX_LOG_RATIO)


def _dev(weights: np.ndarray, losses: np.ndarray) -> float:
    """DEV's risk: the importance-weighted mean loss with its control variate."""
    weighted = weights * losses
    eta = 0.0
    if len(weights) > 1:
        variance = np.var(weights, ddof=1)
        if variance > 1e-12 * max(1.0, float(np.mean(weights)) ** 2):
            eta = -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def importance_weighted_scores(
    source_val_features: Tensor,
    source_val_losses: Tensor,
    source_train_features: Tensor,
    target_features: Tensor,
    seed: int = 0,
) -> dict[str, float]:
    """Three estimates of the target risk from the labelled source validation set, each
    negated so that higher is better, keyed by their ``raydm.metrics`` names.

    A fresh domain classifier (``domain_log_ratio``; never a method's own discriminator, which
    is trained to be fooled) on source train vs target features gives each source validation
    sample its density ratio w = p_target / p_source. With L the per-sample losses:

    - IWCV (Sugiyama et al. 2007): mean(w L).
    - DEV (You et al. 2019): mean(w L) + eta mean(w) - eta with the control variate
      eta = -Cov(w L, w) / Var(w) (0 when the weights do not vary), which uses E[w] = 1 to
      cancel much of IWCV's variance.
    - DEVN (DEV with normalised weights, as pytorch-adapt offers it): w / max(w), shifted to
      mean 1; a few huge weights then cannot dominate. With mean-1 weights the control variate
      term vanishes, so DEVN is mean(w' L) for those weights w'.
    """
    losses = torch.as_tensor(source_val_losses).detach().cpu().to(torch.float64).reshape(-1)
    if len(losses) != len(source_val_features):
        raise ValueError(
            f"{len(losses)} losses for {len(source_val_features)} source validation samples"
        )
    log_ratio = domain_log_ratio(source_train_features, target_features, source_val_features, seed)
    weights = np.exp(log_ratio)
    losses = losses.numpy()
    scaled = weights / weights.max()
    normalised = scaled - scaled.mean() + 1.0
    return {
        m.IWCV: -float(np.mean(weights * losses)),
        m.DEV: -_dev(weights, losses),
        m.DEVN: -float(np.mean(normalised * losses)),
    }


# MixVal's mixing coefficient (Hu et al. 2023): above 1/2, so the first input dominates the mix
# and a model that respects the target's class structure keeps predicting its class.
MIXVAL_LAMBDA = 0.55
# Inputs whose mixes MixVal scores each epoch (the first of the pass): its mixed forward passes
# cost as much as the pass itself, and a fixed seeded pairing of 1,024 keeps the comparison
# between epochs and trials fair.
MIXVAL_SAMPLES = 1024


class MixVal:
    """MixVal (Hu et al., NeurIPS 2023), accumulated over the batches of one evaluation pass.

    Each batch's inputs x get the model's hard pseudo-labels y = argmax f(x). A seeded
    permutation pairs every input a with a partner b of the same batch; the mix
    lam x_a + (1 - lam) x_b (lam = ``MIXVAL_LAMBDA``) is labelled y_a, and the model is right
    on it when argmax f(mix) = y_a. ICE_intra is the accuracy over pairs with y_a = y_b, ICE_inter
    over pairs with y_a != y_b: a model whose decision boundaries follow the target's clusters
    keeps both high, one that cuts through them (or confuses mixes of different classes) does
    not. Inputs are mixed as the model sees them (after normalisation, which is affine, so this
    is the same as mixing the raw images).

    A group without pairs scores 0: a model that puts every input in one class (collapsed) has
    no inter-class pair, and nothing shows that it separates any classes. Only the first
    ``samples`` inputs of the pass are scored.
    """

    def __init__(
        self, seed: int = 0, lam: float = MIXVAL_LAMBDA, samples: int = MIXVAL_SAMPLES
    ) -> None:
        if not 0.5 < lam < 1:
            raise ValueError(f"MixVal's lambda must lie in (0.5, 1), got {lam}")
        self.lam = lam
        self._left = samples
        self._generator = torch.Generator().manual_seed(seed)
        self._correct = {"intra": 0, "inter": 0}
        self._pairs = {"intra": 0, "inter": 0}

    def add(self, predict, inputs: Tensor, logits: Tensor) -> None:
        """Score the mixes of one batch: ``predict`` maps inputs to logits, ``logits`` are its
        outputs on ``inputs`` (already computed by the evaluation pass)."""
        inputs, logits = inputs[: self._left], logits[: self._left]
        if len(inputs) < 2:
            return
        self._left -= len(inputs)
        labels = logits.argmax(1).cpu()
        partner = torch.randperm(len(inputs), generator=self._generator)
        mixed = self.lam * inputs + (1 - self.lam) * inputs[partner.to(inputs.device)]
        right = predict(mixed).argmax(1).cpu() == labels
        same = labels == labels[partner]
        for group, members in (("intra", same), ("inter", ~same)):
            self._correct[group] += int(right[members].sum())
            self._pairs[group] += int(members.sum())

    def scores(self) -> dict[str, float]:
        ice = {
            group: self._correct[group] / self._pairs[group] if self._pairs[group] else 0.0
            for group in self._pairs
        }
        return {
            m.MIXVAL_INTRA: ice["intra"],
            m.MIXVAL_INTER: ice["inter"],
            m.MIXVAL: (ice["intra"] + ice["inter"]) / 2,
        }


def target_validators(
    probabilities: Tensor,
    features: Tensor | None,
    num_classes: int,
    seed: int = 0,
    costly: bool = True,
) -> dict[str, float]:
    """The label-free target validators of one model, keyed by their ``raydm.metrics`` names:
    all of them, or without SND and ClassAMI (``costly`` False).

    ``probabilities`` are the N x K softmax outputs and ``features`` the N x D backbone
    features of the same unlabelled target samples (needed only when ``costly``); ClassAMI
    compares the features' clusters with the predictions ``probabilities.argmax(1)``.
    """
    scores = {
        m.NEG_ENTROPY: neg_entropy(probabilities),
        m.IM: information_maximization(probabilities),
        m.BNM: batch_nuclear_norm(probabilities),
    }
    if costly:
        scores[m.SND] = soft_neighborhood_density(probabilities)
        scores[m.CLASS_AMI] = class_ami(features, probabilities.argmax(1), num_classes, seed=seed)
    return scores
