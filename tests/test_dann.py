import math

import pytest
import torch
import torch.nn.functional as F

from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.engine import build_method, learning_rate
from raydm.methods.dann import adaptation_weight, reverse_gradient
from tests.conftest import SPACES, model_inputs


def test_gradient_reversal_is_identity_forward_and_negates_scaled_gradient():
    inputs = torch.randn(5, 3, requires_grad=True)
    outputs = reverse_gradient(inputs, 0.7)
    assert torch.equal(outputs, inputs)
    upstream = torch.randn(5, 3)
    outputs.backward(upstream)
    assert torch.allclose(inputs.grad, -0.7 * upstream)


@pytest.mark.parametrize(
    ("progress", "expected"),
    [(0.0, 0.0), (0.5, 2 / (1 + math.exp(-5)) - 1), (1.0, 2 / (1 + math.exp(-10)) - 1)],
)
def test_adaptation_weight_follows_the_paper_ramp(progress, expected):
    assert adaptation_weight(progress, 1.0, 10.0) == pytest.approx(expected, rel=1e-12)
    # The ceiling scales the whole ramp.
    assert adaptation_weight(progress, 0.3, 10.0) == pytest.approx(0.3 * expected, rel=1e-12)


def test_adaptation_weight_values_by_hand():
    assert adaptation_weight(0.5, 1.0, 10.0) == pytest.approx(0.986614, abs=1e-6)
    assert adaptation_weight(1.0, 1.0, 10.0) == pytest.approx(0.999909, abs=1e-6)


@pytest.mark.parametrize(
    ("progress", "expected"), [(0.0, 0.01), (0.5, 0.01 / 6**0.75), (1.0, 0.01 / 11**0.75)]
)
def test_inverse_learning_rate_schedule(progress, expected):
    assert learning_rate(progress, 0.01, "inverse", 10.0, 0.75) == pytest.approx(expected)
    assert learning_rate(progress, 0.01, "constant", 10.0, 0.75) == 0.01


def test_learning_rate_by_hand():
    assert learning_rate(0.5, 0.01, "inverse", 10.0, 0.75) == pytest.approx(0.0026084, abs=1e-7)
    assert learning_rate(1.0, 0.01, "inverse", 10.0, 0.75) == pytest.approx(0.0016556, abs=1e-7)


def _moons_dann(data_root, *overrides):
    config = load_config(SPACES / "moons.yaml", [f"data.root={data_root}", "params={}", *overrides])
    data = load_domain_pair(config.data)
    torch.manual_seed(0)
    return config, data, build_method(config, data)


def test_dann_update_gives_the_features_the_reversed_scaled_domain_gradient(data_root, monkeypatch):
    """Through DANN.update: G's gradient is grad(L_cls) - lambda_p grad(L_domain), while the
    domain classifier gets grad(L_domain) at full strength (JMLR: lambda scales G's part only)."""
    config, data, method = _moons_dann(data_root)
    source, target = (
        model_inputs(config, d.inputs[:16]) for d in (data.source_train, data.target_train)
    )
    labels = data.source_train.labels[:16]
    monkeypatch.setattr(method.optimizer, "step", lambda: None)  # keep the gradients, not steps
    stats = method.update(source, labels, target, torch.arange(16), progress=0.3)
    lam = adaptation_weight(0.3, 1.0, 10.0)
    assert stats["train/lambda"] == pytest.approx(lam)
    weight, disc_weight = method.backbone[1].weight, method.discriminator[0].weight
    got_backbone, got_disc = weight.grad.clone(), disc_weight.grad.clone()

    features = method.backbone(torch.cat([source, target]))
    loss_cls = F.cross_entropy(method.head(features[:16]), labels)
    is_source = torch.cat([torch.ones(16), torch.zeros(16)])
    domain_logits = method.discriminator(features).squeeze(1)
    loss_domain = F.binary_cross_entropy_with_logits(domain_logits, is_source)
    (g_cls,) = torch.autograd.grad(loss_cls, weight, retain_graph=True)
    g_dom, g_disc = torch.autograd.grad(loss_domain, [weight, disc_weight])
    assert g_dom.abs().sum() > 0
    assert torch.allclose(got_backbone, g_cls - lam * g_dom, atol=1e-6)
    assert torch.allclose(got_disc, g_disc, atol=1e-6)


def test_dann_update_reports_the_scheduled_lambda(data_root):
    config, data, method = _moons_dann(data_root, "method_args.lambda_max=0.5")
    source = model_inputs(config, data.source_train.inputs[:8])
    target = model_inputs(config, data.target_train.inputs[:8])
    stats = method.update(
        source, data.source_train.labels[:8], target, torch.arange(8), progress=0.5
    )
    assert stats["train/lambda"] == pytest.approx(0.5 * adaptation_weight(0.5, 1.0, 10.0))
    assert stats["train/loss"] == pytest.approx(
        stats["train/loss_cls"] + stats["train/loss_domain"]
    )


def test_source_only_never_looks_at_the_target(data_root):
    config, data, method = _moons_dann(data_root, "method=source_only", "method_args={}")
    source = model_inputs(config, data.source_train.inputs[:8])
    labels = data.source_train.labels[:8]
    torch.manual_seed(1)
    before = [p.clone() for p in method.parameters()]
    method.update(source, labels, torch.full((8, 2), float("nan")), torch.arange(8), 0.0)
    after = list(method.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(b, a) for b, a in zip(before, after, strict=True))


@pytest.mark.parametrize("passes", ["joint", "separate"])
def test_domain_passes_choose_which_batch_statistics_normalise_the_source(data_root, passes):
    """With batch norm in the backbone, joint passes normalise the source by the statistics of
    source + target together, separate passes by the source's alone."""
    config = load_config(
        SPACES / "dann.yaml",
        [
            "params={}",
            f"data.root={data_root}",
            "data.source=digits_printed",
            "data.target=digits_handwritten",
            "data.printed_per_class=10",
            "model.backbone_args.batch_norm=true",
            f"method_args.domain_passes={passes}",
        ],
    )
    data = load_domain_pair(config.data)
    torch.manual_seed(0)
    method = build_method(config, data)
    source = model_inputs(config, data.source_train.inputs[:8])
    target = model_inputs(config, data.target_train.inputs[:8]) * 3 + 1  # other statistics
    labels = data.source_train.labels[:8]
    method.optimizer.step = lambda: None  # weights stay as they were
    stats = method.update(source, labels, target, torch.arange(8), progress=0.5)
    with torch.no_grad():
        alone = F.cross_entropy(method.head(method.backbone(source)), labels).item()
        mixed = method.head(method.backbone(torch.cat([source, target]))[:8])
        together = F.cross_entropy(mixed, labels).item()
    assert abs(alone - together) > 1e-3
    expected = alone if passes == "separate" else together
    assert stats["train/loss_cls"] == pytest.approx(expected, rel=1e-5)
