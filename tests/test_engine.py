import copy
import math

import pytest
import torch

from raydm import engine
from raydm import metrics as m
from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.engine import learning_rate
from tests.conftest import SPACES, learned


@pytest.fixture
def moons(data_root):
    config = load_config(
        SPACES / "moons.yaml",
        [f"data.root={data_root}", "params={}", "train.epochs=3", "train.iters_per_epoch=15"],
    )
    return config, load_domain_pair(config.data)


def test_resuming_from_a_checkpoint_repeats_the_uninterrupted_run(moons):
    config, data = moons
    torch.set_num_threads(1)
    states, history = {}, []

    def keep(epoch, metrics, state):
        states[epoch] = copy.deepcopy(state)  # the state is live: fit goes on training it
        history.append(dict(metrics))

    uninterrupted = engine.fit(config, data, on_epoch=keep)
    resumed = engine.fit(config, data, resume_from=states[1])
    assert learned(resumed) == learned(uninterrupted)
    assert uninterrupted[m.TIME_TRAIN] > 0 and uninterrupted[m.TIME_EVAL] > 0
    assert [h[m.EPOCH] for h in history] == [1, 2, 3]
    assert all(h[m.EPOCHS_PLANNED] == 3 for h in history)


def test_every_epoch_reports_losses_lr_accuracies_and_validators(moons):
    config, data = moons
    reported = []
    engine.fit(config, data, on_epoch=lambda epoch, metrics, state: reported.append(metrics))
    for name in (
        "train/loss_cls",
        "train/loss_domain",
        "train/lambda",
        m.TRAIN_LR,
        m.SOURCE_VAL_ACC,
        m.SOURCE_VAL_LOSS,
        m.TARGET_ACC,
    ):
        assert name in reported[-1], name
    assert m.GPU_PEAK_MEMORY not in reported[-1]  # on a CPU there is no GPU memory to report
    lambdas = [r["train/lambda"] for r in reported]
    assert lambdas == sorted(lambdas) and 0 < lambdas[0] < lambdas[-1] <= 1
    # The ramp spans the PLANNED iterations (3 epochs of 15): by the last epoch p is past 2/3,
    # so lambda_p = 2 / (1 + exp(-10 p)) - 1 > 0.997 there, whatever the iteration count.
    assert lambdas[-1] > 0.997
    lrs = [r[m.TRAIN_LR] for r in reported]
    assert lrs == sorted(lrs, reverse=True)
    # The last reported lr is that of the last iteration, p = 44/45.
    assert lrs[-1] == pytest.approx(learning_rate(44 / 45, config.train.lr, "inverse", 10, 0.75))
    for name in m.VALIDATORS:
        assert name in reported[-1], name
    last = reported[-1]
    assert -math.log(2) <= last[m.NEG_ENTROPY] <= 0  # two classes
    assert 0 <= last[m.IM] <= math.log(2) + 1e-9
    assert 0 < last[m.BNM] <= 1
    assert -1 <= last[m.CLASS_AMI] <= 1
    assert 0 <= last[m.SOURCE_VAL_MACRO_ACC] <= 1
    # Balanced source validation classes: macro and micro accuracy agree within a class share.
    assert abs(last[m.SOURCE_VAL_MACRO_ACC] - last[m.SOURCE_VAL_ACC]) < 0.1


def test_costly_validators_only_at_their_epochs_and_training_does_not_change(moons):
    config, data = moons
    # Dropout draws from torch's global generator every step: a validator drawing from it too
    # would change the training that follows.
    config = config.with_values({"model.dropout": 0.3})
    torch.set_num_threads(1)
    every, scheduled = [], []
    engine.fit(config, data, on_epoch=lambda epoch, metrics, state: every.append(metrics))
    engine.fit(
        config,
        data,
        on_epoch=lambda epoch, metrics, state: scheduled.append(metrics),
        costly_epochs={2},
    )
    for epoch, (all_of_them, some) in enumerate(zip(every, scheduled, strict=True), start=1):
        # Every epoch reports every key (Tune's progress.csv keeps the first epoch's only).
        assert set(some) == set(all_of_them)
        for name in m.COSTLY_VALIDATORS:
            assert math.isfinite(all_of_them[name])
            assert math.isfinite(some[name]) == (epoch == 2), (epoch, name)
        # Skipping them draws nothing from the training's random streams: every value the
        # scheduled run computes is the every-epoch run's, to the bit.
        for name in (*m.VALIDATORS, m.SOURCE_VAL_LOSS, m.TARGET_ACC, m.TRAIN_LOSS):
            if math.isfinite(some[name]):
                assert some[name] == all_of_them[name], (epoch, name)


def test_fit_refuses_a_config_that_still_searches(data_root):
    config = load_config(SPACES / "moons.yaml", [f"data.root={data_root}"])
    with pytest.raises(ValueError, match="still searched"):
        engine.fit(config, load_domain_pair(config.data))


def test_platform_names_what_changes_the_floats_torch_kernels_and_threads_or_the_gpu(
    monkeypatch, keep_torch_threads
):
    config = load_config(SPACES / "moons.yaml")
    kernels = torch.backends.cpu.get_cpu_capability()  # AVX512 here, AVX2 on older CPUs
    torch.set_num_threads(1)
    one_thread = f"torch {torch.__version__}, cpu ({kernels} kernels, 1 thread)"
    assert engine.platform(config) == one_thread
    torch.set_num_threads(2)
    assert engine.platform(config).endswith(f"({kernels} kernels, 2 threads)")
    # No GPU here: stand-ins for what torch says of one.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 91002)
    on_gpu = load_config(SPACES / "moons.yaml", ["resources.gpu=0.25"])
    assert engine.platform(on_gpu) == f"torch {torch.__version__}, cuda (NVIDIA H100, cuDNN 91002)"
    assert engine.platform(config).startswith(f"torch {torch.__version__}, cpu (")


def test_on_a_gpu_the_saved_state_holds_that_devices_generator_and_restores_it(monkeypatch):
    # No GPU here: a stand-in for torch.cuda's generator checks what is saved and restored.
    cuda_state, restored = torch.tensor([7], dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: cuda_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: restored.append(s))
    gpu = torch.device("cuda", 0)
    state = engine.rng_state(gpu)
    assert torch.equal(state["cuda_rng"], cuda_state)
    assert "cuda_rng" not in engine.rng_state(torch.device("cpu"))
    before = torch.get_rng_state()
    torch.rand(3)
    engine.restore_rng_state({**state, "torch_rng": before}, gpu)
    assert torch.equal(torch.get_rng_state(), before) and restored == [cuda_state]
