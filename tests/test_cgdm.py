import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.engine import build_method
from raydm.methods.cgdm import (
    classifier_discrepancy,
    cluster_pseudo_labels,
    gradient_discrepancy,
    information_maximization,
    weighted_cross_entropy,
)
from tests.conftest import SPACES, model_inputs


def _cos(a, b):
    # A linear layer's bias in front of batch norm gets an exactly-zero gradient; torch's
    # cosine similarity (and so the official code) divides by max(|a| |b|, 1e-8) there.
    return torch.dot(a, b) / torch.clamp(a.norm() * b.norm(), min=1e-8)


def _reference_gradient_discrepancy(source_losses, target_losses, head_params):
    """The formula, one autograd call per loss and tensor (as the official code does)."""
    per_head = []
    for loss_s, loss_t, params in zip(source_losses, target_losses, head_params, strict=True):
        terms = []
        for p in params:
            g_s = torch.autograd.grad(loss_s, p, create_graph=True, retain_graph=True)[0]
            g_t = torch.autograd.grad(loss_t, p, create_graph=True, retain_graph=True)[0]
            if p.dim() > 1:
                cos = torch.stack([_cos(a, b) for a, b in zip(g_t, g_s, strict=True)]).mean()
            else:
                cos = _cos(g_t, g_s)
            terms.append(1 - cos)
        per_head.append(sum(terms) / len(terms))
    return sum(per_head) / len(per_head)


def _tiny_problem(seed=0, activation=nn.ReLU):
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Linear(5, 6), nn.Tanh()).double()
    heads = [
        nn.Sequential(nn.Linear(6, 4), nn.BatchNorm1d(4), activation(), nn.Linear(4, 3)).double()
        for _ in range(2)
    ]
    xs, xt = torch.randn(8, 5).double(), torch.randn(8, 5).double()
    ys, yt = torch.randint(0, 3, (8,)), torch.randint(0, 3, (8,))
    return g, heads, xs, xt, ys, yt


def _losses(g, heads, xs, xt, ys, yt):
    fs, ft = g(xs), g(xt)
    source = [F.cross_entropy(h(fs), ys) for h in heads]
    target = [weighted_cross_entropy(h(ft), yt) for h in heads]
    return source, target


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_discrepancy_matches_the_per_tensor_reference(seed):
    g, heads, xs, xt, ys, yt = _tiny_problem(seed)
    params = [list(h.parameters()) for h in heads]
    fast = gradient_discrepancy(*_losses(g, heads, xs, xt, ys, yt), params)
    fast_grads = torch.autograd.grad(fast, list(g.parameters()))
    slow = _reference_gradient_discrepancy(*_losses(g, heads, xs, xt, ys, yt), params)
    slow_grads = torch.autograd.grad(slow, list(g.parameters()))
    assert fast.item() == pytest.approx(slow.item(), abs=1e-6)
    for a, b in zip(fast_grads, slow_grads, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
        assert a.abs().sum() > 0  # second order: L_GD reaches the feature extractor


def test_gradient_discrepancy_is_zero_for_parallel_gradients_and_positive_otherwise():
    # tanh: a ReLU unit dead on the whole batch has a zero gradient row, whose cosine is 0.
    g, heads, xs, _, ys, _ = _tiny_problem(activation=nn.Tanh)
    for head in heads:
        head.eval()  # in eval mode no bias gradient is zeroed by the batch statistics
    params = [list(h.parameters()) for h in heads]
    # Same batch, same labels, all-equal weights: each target gradient is a positive multiple.
    fs = g(xs)
    source = [F.cross_entropy(h(fs), ys) for h in heads]
    target = [F.cross_entropy(h(fs), ys) * 0.3 for h in heads]
    assert gradient_discrepancy(source, target, params).item() == pytest.approx(0, abs=1e-6)
    _, _, _, xt, _, yt = _tiny_problem(seed=5)
    assert gradient_discrepancy(*_losses(g, heads, xs, xt, ys, yt), params).item() > 0.01


def test_flat_cosine_treats_each_tensor_as_one_vector():
    g, heads, xs, xt, ys, yt = _tiny_problem()
    params = [list(h.parameters()) for h in heads]
    flat = gradient_discrepancy(*_losses(g, heads, xs, xt, ys, yt), params, cosine="flat")
    source, target = _losses(g, heads, xs, xt, ys, yt)
    expected = []
    for loss_s, loss_t, ps in zip(source, target, params, strict=True):
        gs = torch.autograd.grad(loss_s, ps, retain_graph=True)
        gt = torch.autograd.grad(loss_t, ps, retain_graph=True)
        cos = [
            F.cosine_similarity(a.flatten(), b.flatten(), dim=0)
            for a, b in zip(gt, gs, strict=True)
        ]
        expected.append(torch.stack([1 - c for c in cos]).mean())
    assert flat.item() == pytest.approx(torch.stack(expected).mean().item(), abs=1e-9)


def test_information_maximization_by_hand():
    p = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [1 / 3, 1 / 3, 1 / 3]])
    eps = 1e-5
    entropies = [-sum(v * math.log(v + eps) for v in row) for row in p.tolist()]
    mean = [(p[0, k] + p[1, k] + p[2, k]).item() / 3 + eps for k in range(3)]
    expected = sum(entropies) / 3 + sum(v * math.log(v) for v in mean)
    assert information_maximization(p).item() == pytest.approx(expected, abs=1e-6)
    confident_diverse = torch.eye(3) * 0.98 + 0.01 / 1
    collapsed = torch.tensor([[0.98, 0.01, 0.01]] * 3)
    assert information_maximization(confident_diverse) < information_maximization(collapsed)


def test_weighted_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2, 1])
    eps = 1e-5
    weights, losses = [], []
    for row, label in zip(logits.tolist(), labels.tolist(), strict=True):
        z = sum(math.exp(v) for v in row)
        p = [math.exp(v) / z for v in row]
        weights.append(1 + math.exp(sum(v * math.log(v + eps) for v in p)))
        losses.append(-math.log(p[label]))
    total = sum(weights)
    expected = sum(w / total * loss for w, loss in zip(weights, losses, strict=True)) / 3
    assert weighted_cross_entropy(logits, labels).item() == pytest.approx(expected, abs=1e-6)
    # Ignored samples (-1, below the confidence threshold) take no part.
    ignored = weighted_cross_entropy(logits, torch.tensor([0, 2, -1]))
    assert ignored.item() == pytest.approx(
        weighted_cross_entropy(logits[:2], labels[:2]).item(), abs=1e-7
    )


def test_classifier_discrepancy_by_hand():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    # softmax: [0.5, 0.5] vs [0.75, 0.25]; mean |difference| = 0.25
    assert classifier_discrepancy(a, b).item() == pytest.approx(0.25)


def _blobs(noise_flip: float, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[6.0, 0, 0], [0, 6.0, 0], [0, 0, 6.0]])
    labels = torch.arange(3).repeat_interleave(40)
    features = centres[labels] + torch.randn(120, 3, generator=generator)
    # Noisy initial predictions: the right class most of the time, a wrong one otherwise.
    predicted = labels.clone()
    flip = torch.rand(120, generator=generator) < noise_flip
    predicted[flip] = (labels[flip] + 1) % 3
    probabilities = F.one_hot(predicted, 3).float() * 0.6 + 0.4 / 3
    return features, probabilities, labels, predicted


def test_clustering_recovers_blob_labels_from_noisy_predictions():
    features, probabilities, labels, predicted = _blobs(noise_flip=0.3)
    assert (predicted == labels).float().mean() < 0.8
    pseudo = cluster_pseudo_labels(features, probabilities, rounds=1)
    assert (pseudo == labels).float().mean() > 0.97


def test_zero_rounds_is_the_assignment_to_the_initial_centroids():
    features, probabilities, _, _ = _blobs(noise_flip=0.3, seed=1)
    extended = F.normalize(torch.cat([features, torch.ones(120, 1)], 1), dim=1)
    centroids = probabilities.T @ extended / probabilities.sum(0)[:, None]
    cosine = F.normalize(extended, dim=1) @ F.normalize(centroids, dim=1).T
    assert torch.equal(cluster_pseudo_labels(features, probabilities, rounds=0), cosine.argmax(1))


@pytest.fixture
def digits_cgdm(data_root):
    config = load_config(
        SPACES / "cgdm.yaml",
        [
            f"data.root={data_root}",
            "params={}",
            "data.source=digits_printed",
            "data.target=digits_handwritten",
            "data.image_channels=1",
            "data.printed_per_class=10",
        ],
    )
    data = load_domain_pair(config.data)
    torch.manual_seed(0)
    method = build_method(config, data)
    method.train()
    source = model_inputs(config, data.source_train.inputs[:8])
    target = model_inputs(config, data.target_train.inputs[:8])
    pseudo = torch.randint(0, 10, (8,))
    return method, torch.cat([source, target]), data.source_train.labels[:8], pseudo


def _snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module) -> bool:
    return any(not torch.equal(b, a) for b, a in zip(before, module.parameters(), strict=True))


def test_step_a_trains_everything(digits_cgdm):
    method, both, labels, pseudo = digits_cgdm
    g_before, heads_before = _snapshot(method.backbone), _snapshot(method.heads)
    method.step_a(both, labels, pseudo)
    assert _changed(g_before, method.backbone) and _changed(heads_before, method.heads)


def test_step_b_changes_only_the_heads(digits_cgdm):
    method, both, labels, _ = digits_cgdm
    g_before, heads_before = _snapshot(method.backbone), _snapshot(method.heads)
    method.step_b(method.backbone(both), labels)
    assert not _changed(g_before, method.backbone)
    assert _changed(heads_before, method.heads)
    assert all(p.grad is None for p in method.backbone.parameters())


def test_step_c_changes_only_the_generator_and_gd_reaches_it(digits_cgdm):
    method, both, labels, pseudo = digits_cgdm
    method.zero_grad(set_to_none=True)
    g_before, heads_before = _snapshot(method.backbone), _snapshot(method.heads)
    stats = method.step_c(both, labels, pseudo)
    assert stats["train/loss_gd"] > 0
    assert _changed(g_before, method.backbone)
    assert not _changed(heads_before, method.heads)
    assert all(p.grad is None for p in method.heads.parameters())


def test_step_c_gradient_discrepancy_term_moves_the_generator(digits_cgdm):
    """With every other step-C weight at zero, G still moves: L_GD's gradient reaches it."""
    method, both, labels, pseudo = digits_cgdm
    method.args = method.args.model_copy(update={"w_dis": 0.0, "w_ent": 0.0, "w_gd": 1.0})
    g_before = _snapshot(method.backbone)
    method.step_c(both, labels, pseudo)
    assert _changed(g_before, method.backbone)
    method.args = method.args.model_copy(update={"w_gd": 0.0})
    g_before = _snapshot(method.backbone)
    method.step_c(both, labels, pseudo)
    # Only weight decay acts now: every change is the decay step, lr * wd * param.
    lr, decay = method.generator_optimizer.param_groups[0]["lr"], 5e-4
    for before, after in zip(g_before, method.backbone.parameters(), strict=True):
        expected = before * (1 - lr * decay) ** method.args.num_k
        assert torch.allclose(after, expected, atol=1e-7)


def test_pseudo_labels_follow_the_schedule_and_survive_a_checkpoint(digits_cgdm):
    method, inputs, *_ = digits_cgdm
    method.args = method.args.model_copy(update={"pseudo_label_every": 2})
    method.pseudo_labels = torch.empty(0, dtype=torch.int64)
    calls = []

    def batches():
        calls.append(1)
        return [torch.randn(16, *inputs.shape[1:])]

    assert method.start_epoch(0, batches) is None  # warm-up: the official code waits one epoch
    assert calls == []
    labels = method.start_epoch(1, batches)
    assert labels.shape == (16,) and labels.min() >= 0 and len(calls) == 1
    assert method.start_epoch(2, batches) is labels and len(calls) == 1  # kept between updates
    method.start_epoch(3, batches)
    assert len(calls) == 2
    current = method.pseudo_labels
    state = method.state_dict()
    method.pseudo_labels = torch.empty(0, dtype=torch.int64)
    method.load_state_dict(state)
    assert torch.equal(method.pseudo_labels, current)  # resumed trials keep their labels


def test_confidence_threshold_marks_unsure_targets_unlabelled(digits_cgdm):
    method, inputs, *_ = digits_cgdm
    method.args = method.args.model_copy(update={"threshold": 0.99})
    # Freshly initialised heads are unsure of everything.
    labels = method.start_epoch(1, lambda: [torch.randn(16, *inputs.shape[1:])])
    assert (labels == -1).all()
