"""Trials that cannot go on, GPU shares, and clusters that cannot be joined."""

import csv
import json

import optuna
import pytest
from click.testing import CliRunner
from PIL import Image

from raydm import cluster, engine, tuning
from raydm import metrics as m
from raydm.cli import main
from raydm.config import ConfigError, load_config
from raydm.data.pair import load_domain_pair
from tests.conftest import SPACES, moons_dann, tune_ok

GiB = 2**30


def test_a_diverging_loss_stops_training_with_the_reason(data_root):
    config = load_config(
        SPACES / "moons.yaml", [f"data.root={data_root}", "params={}", "train.lr=1.0e+5"]
    )
    with pytest.raises(engine.Diverged, match=r"became nan at epoch 1, iteration \d+ .*train.lr"):
        engine.fit(config, load_domain_pair(config.data))


@pytest.mark.parametrize(
    ("peak_gib", "total_gib", "share"),
    [
        # need = peak * 1.25 + 0.59 GiB of CUDA context
        (1.0, 24.0, 1 / 8),  # 1.84 GiB: 13 would fit, at most 8 trials a GPU
        (4.0, 24.0, 1 / 4),  # 5.59 GiB: 4 fit
        (10.0, 24.0, 1 / 1),  # 13.1 GiB: 1 fits
        (30.0, 24.0, 1 / 1),  # does not fit at all: one trial per GPU, its own OOM error
        (7.0, 80.0, 1 / 8),  # 9.34 GiB on an 80 GiB H100: 8
    ],
)
def test_gpu_auto_share_by_hand(peak_gib, total_gib, share):
    assert cluster.gpu_share(int(peak_gib * GiB), int(total_gib * GiB)) == share


def test_gpu_auto_probes_the_largest_batch_size(write_space):
    space = write_space(
        """
method: dann
resources: {gpu: auto}
params:
  train.batch_size: {choice: [32, 128, 64]}
  train.lr: {loguniform: [1.0e-3, 1.0e-1]}
"""
    )
    config = load_config(space)
    assert config.resources.gpu == "auto" and config.resources.wants_gpu
    values = cluster.largest_values(config)
    assert values["train.batch_size"] == 128 and 1e-3 <= values["train.lr"] <= 1e-1
    with pytest.raises(ConfigError, match="gpu must be 0, a whole number, 1/k .* or auto"):
        load_config(space, ["resources.gpu=0.3"])


def test_failed_trials_are_told_to_optuna_as_failed():
    searcher = tuning.PruningAwareOptunaSearch(
        space={"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)},
        metric="val/source_acc",
        mode="max",
        max_epochs=4,
    )
    searcher.suggest("t1")
    searcher.on_trial_result("t1", {"val/source_acc": 0.5, "training_iteration": 1})
    failed = {"val/source_acc": float("nan"), "training_iteration": 2, m.FAILED: 1.0, m.EPOCH: 1}
    searcher.on_trial_complete("t1", failed)
    (trial,) = searcher._ot_study.trials
    assert trial.state == optuna.trial.TrialState.FAIL


def test_joining_a_cluster_without_a_token_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)

    def refused(**kwargs):  # what Ray raises after its connection attempts time out
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(cluster.ray, "init", refused)
    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    result = CliRunner().invoke(
        main, ["tune", "--space", str(SPACES / "moons.yaml"), "--address", "10.0.0.1:6379"]
    )
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "raydm: error: --address: cannot join the Ray cluster at 10.0.0.1:6379 (Failed to "
        "connect to Ray cluster at 10.0.0.1:6379): no Ray auth token here: if the cluster uses "
        "token authentication, copy the head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN) "
        "and set RAY_AUTH_MODE=token"
    )


@pytest.mark.ray
def test_a_diverging_trial_fails_with_its_reason_once_and_the_search_goes_on(
    tmp_path, write_space, ray_session
):
    space = write_space(
        moons_dann(
            tmp_path / "data",
            """
train: {epochs: 3, iters_per_epoch: 10}
search:
  num_samples: 2
  max_failures: 2
  searcher: {sampler: random, seed: 0}
  scheduler: {type: fifo}
params: {train.lr: {choice: [0.01, 1.0e+5]}}
""",
        )
    )
    storage = tmp_path / "results"
    output = tune_ok(space, "nan", storage)
    with (storage / "nan" / "results.csv").open() as handle:
        rows = {float(row["train.lr"]): row for row in csv.DictReader(handle)}
    assert set(rows) == {0.01, 1e5}, "seed 0 of the random sampler draws both values"
    good, bad = rows[0.01], rows[1e5]
    assert good["status"] == "completed" and good["reason"] == ""
    assert bad["status"] == "failed" and bad["best:val/source_acc"] == "nan"
    assert bad["reason"].startswith("train/loss became nan at epoch 1")
    assert bad["platform"] == good["platform"] != ""  # what a failure ran on, to reproduce it
    assert f"{bad['trial_id']} failed: train/loss became nan" in output
    assert load_config(storage / "nan" / "best.yaml").train.lr == 0.01
    # Not retried: the failing trial started once (max_failures would have restarted a crash).
    (trial_dir,) = [p for p in (storage / "nan").iterdir() if bad["trial_id"] in p.name]
    assert (trial_dir / "progress.csv").read_text().count("\n") == 2  # header + the failure


@pytest.mark.ray
def test_remote_storage_gets_the_results_files_next_to_tunes(tmp_path, monkeypatch, ray_session):
    """A storage URI (s3:// on a cluster; file:// here, through the same pyarrow code)."""
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text(
        f"method: source_only\ndata: {{source: moons, target: moons_rotated, root: "
        f"{tmp_path / 'data'}}}\nmodel: {{backbone: mlp}}\n"
        "train: {epochs: 1, iters_per_epoch: 5}\nsearch: {num_samples: 1}\n"
    )
    uri = f"file://{tmp_path / 'bucket'}"
    tune_ok(space, "remote", uri)
    stored = tmp_path / "bucket" / "remote"
    for name in ("results.csv", "best.yaml", "search_space.yaml", "pick.json"):
        assert (stored / name).read_bytes() == (tmp_path / "remote" / name).read_bytes(), name
    assert any(stored.glob("train_trial_*/checkpoint_*/state.pt"))  # Tune's own, alongside
    # The selected checkpoint is named relative to the experiment, where it is in the bucket.
    selected = json.loads((stored / "pick.json").read_text())["ranking"][0]["checkpoint"]
    assert selected.startswith("train_trial_") and (stored / selected / "state.pt").is_file()


@pytest.mark.ray
def test_an_unreadable_image_found_while_ray_starts_still_exits_2_leaving_no_ray(
    tmp_path, write_space, monkeypatch
):
    import threading
    import time

    import ray

    from raydm.data.pair import IndexedPair

    decode = IndexedPair.load
    seen = {}

    def decode_while_ray_starts(indexed):
        deadline = time.monotonic() + 60
        while not ray.is_initialized() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["ray_up_during_decode"] = ray.is_initialized()
        seen["in_a_thread"] = threading.current_thread() is not threading.main_thread()
        return decode(indexed)

    monkeypatch.setattr(IndexedPair, "load", decode_while_ray_starts)
    for domain in ("a", "b"):
        for index, name in enumerate(("cat", "dog")):
            for i in range(4):
                path = tmp_path / domain / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (8, 8), (60 * index, 0, 0)).save(path)
    (tmp_path / "b" / "dog" / "3.png").write_bytes(b"not a png")
    space = write_space(
        f"method: dann\ndata: {{source: 'folder:{tmp_path / 'a'}', "
        f"target: 'folder:{tmp_path / 'b'}'}}\nsearch: {{num_samples: 1}}\n"
    )
    storage = tmp_path / "results"
    command = ["tune", "--space", str(space), "--storage-path", str(storage)]
    result = CliRunner().invoke(main, command)
    # The folders were found and their classes matched before Ray started; the images were
    # decoded while it started, and the bad one stopped the search before any trial.
    assert seen == {"ray_up_during_decode": True, "in_a_thread": True}
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert lines[-1].startswith(f"raydm: error: {space}: data.target: image ")
    assert "3.png" in lines[-1]
    assert not ray.is_initialized() and not storage.exists()
