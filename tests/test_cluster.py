"""A search survives losing a worker node and being interrupted; both tested for real.

Each test runs ``raydm tune`` as its own process, as a user does, against Ray processes on this
machine's loopback interface only.
"""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import moons_dann

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SPACE = """
train: {{epochs: {epochs}, iters_per_epoch: {iters}}}
search:
  num_samples: {samples}
  max_failures: 3
  searcher: {{sampler: tpe, seed: 0, n_startup_trials: 2}}
  scheduler: {{type: fifo}}
resources: {{cpu: 1}}
params: {{train.lr: {{loguniform: [1.0e-3, 1.0e-1]}}}}
"""


def _space(tmp_path: Path, epochs: int, iters: int, samples: int) -> str:
    return moons_dann(tmp_path / "data", SPACE.format(epochs=epochs, iters=iters, samples=samples))


def _tune(space: Path, storage: Path, *extra: str, env=None) -> subprocess.Popen:
    command = [sys.executable, "-m", "raydm", "tune", "--space", str(space)]
    command += ["--name", "run", "--storage-path", str(storage), *extra]
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def _epochs(storage: Path) -> dict[str, list[int]]:
    """The epochs each trial has reported so far, from Tune's progress files."""
    reported = {}
    for progress in (storage / "run").glob("*/progress.csv"):
        with progress.open() as handle:
            rows = list(csv.DictReader(handle))
        reported[progress.parent.name] = [int(float(row["epoch"])) for row in rows]
    return reported


def _wait_for(condition, timeout: float, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"raydm tune ended early:\n{process.stdout.read()}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"timed out:\n{process.stdout.read()}")
        time.sleep(0.2)


def test_losing_a_worker_node_resumes_its_trials_from_their_checkpoints(tmp_path):
    from ray.cluster_utils import Cluster

    # The head runs the driver and no trials (as on AWS); trials run on the worker node.
    loopback = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **loopback})
    try:
        worker = cluster.add_node(num_cpus=2, **loopback)
        cluster.wait_for_nodes()
        space = tmp_path / "space.yaml"
        space.write_text(_space(tmp_path, epochs=6, iters=2000, samples=2))
        storage = tmp_path / "results"
        search = _tune(space, storage, "--address", cluster.address)

        def both_mid_way() -> bool:
            epochs = _epochs(storage)
            return len(epochs) == 2 and all(1 <= len(e) <= 4 for e in epochs.values())

        _wait_for(both_mid_way, 120, search)
        before = _epochs(storage)
        cluster.remove_node(worker, allow_graceful=False)  # as a spot instance vanishes
        cluster.add_node(num_cpus=2, **loopback)  # the autoscaler's replacement
        output, _ = search.communicate(timeout=180)
    finally:
        cluster.shutdown()

    assert search.returncode == 0, output
    assert output.count("lost its worker or crashed: resuming it") == 2, output
    after = _epochs(storage)
    assert set(after) == set(before)  # the same two trials, no new ones
    for trial, epochs in after.items():
        # Resumed from the last checkpoint: at most the epoch in flight is done again, and the
        # trial does not start over from epoch 1.
        assert epochs[-1] == 6 and epochs.count(1) == 1, (trial, epochs)
        assert epochs[: len(before[trial])] == before[trial]
    with (storage / "run" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["status"] for row in rows] == ["completed", "completed"]
    # Each trial's best checkpoint survived the node: it is kept, with its weights.
    for row in rows:
        kept = storage / "run" / row["checkpoint"]
        assert (kept / "state.pt").is_file() and (kept / "config.yaml").is_file(), row


def test_ctrl_c_saves_the_search_and_resume_finishes_the_same_trials(tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text(_space(tmp_path, epochs=6, iters=400, samples=4))
    storage = tmp_path / "results"
    search = _tune(space, storage)
    _wait_for(lambda: any(len(e) >= 2 for e in _epochs(storage).values()), 120, search)
    search.send_signal(signal.SIGINT)
    output, _ = search.communicate(timeout=120)
    assert search.returncode == 130, output
    assert "the search state is saved: continue it with --name run --resume" in output
    interrupted = _epochs(storage)
    assert 0 < len(interrupted) <= 4 and any(len(e) < 6 for e in interrupted.values())
    # Under fifo nothing stops early: a trial cut short was running, and is still to finish.
    with (storage / "run" / "results.csv").open() as handle:
        statuses = [row["status"] for row in csv.DictReader(handle)]
    assert "stopped" not in statuses and "interrupted" in statuses, statuses
    unfinished = 4 - statuses.count("completed")
    assert f"interrupted with {unfinished} trials unfinished" in output

    resumed = _tune(space, storage, "--resume")
    output, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, output
    assert "resuming" in output
    final = _epochs(storage)
    assert len(final) == 4  # the searcher's state came back: 4 trials in all, none twice
    assert set(interrupted) <= set(final)
    for trial, epochs in final.items():
        assert epochs[-1] == 6 and epochs.count(1) == 1, (trial, epochs)
    with (storage / "run" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len({row["trial_id"] for row in rows}) == 4
    assert all(row["status"] == "completed" for row in rows)
    # Optuna, too, saw each trial once.
    import optuna

    journal = optuna.storages.journal.JournalFileBackend(str(storage / "run" / "optuna.journal"))
    study = optuna.load_study(study_name="run", storage=optuna.storages.JournalStorage(journal))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4


def test_quarter_gpus_run_four_trials_at_once_on_one_gpu(tmp_path):
    """Ray's logical GPUs: one GPU declared, four trials asking 0.25 each run together."""
    import ray

    from raydm.config import load_config
    from raydm.tuning import run_search

    space = tmp_path / "space.yaml"
    space.write_text(
        _space(tmp_path, epochs=2, iters=4000, samples=4).replace(
            "resources: {cpu: 1}", "resources: {cpu: 0.5, gpu: 0.25}"
        )
    )
    ray.init(
        address="local",
        num_cpus=2,
        num_gpus=1,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
    )
    try:
        said = []
        outcome = run_search(
            load_config(space), name="quarters", storage_path=str(tmp_path), echo=said.append
        )
    finally:
        ray.shutdown()
    assert not any("running on CPU" in line for line in said)  # the GPU request was kept
    assert [t.status for t in outcome.trials] == ["completed"] * 4
    spans = []
    for trial_dir in (tmp_path / "quarters").glob("train_trial_*"):
        with (trial_dir / "progress.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        last = float(rows[-1]["timestamp"])
        spans.append((last - float(rows[-1]["time_total_s"]), last))
    assert len(spans) == 4
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all at once


def test_a_token_protected_cluster_is_joined_with_the_token_and_refused_without(
    tmp_path, monkeypatch
):
    from ray._private.authentication.authentication_token_setup import (
        _enable_token_auth,
        generate_and_save_token,
    )
    from ray.cluster_utils import Cluster

    if not (Path.home() / ".ray" / "auth_token").exists():
        generate_and_save_token()  # what any local ray.init() on this machine does first
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # the cluster's processes inherit it
    _enable_token_auth()  # and this process, which checks on the cluster, speaks it too
    loopback = {"node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, **loopback})
    address = cluster.address
    try:
        cluster.wait_for_nodes()
        space = tmp_path / "space.yaml"
        space.write_text(_space(tmp_path, epochs=1, iters=5, samples=1))
        storage = tmp_path / "results"
        driver_env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        with_token = subprocess.run(
            [sys.executable, "-m", "raydm", "tune", "--space", str(space), "--name", "t"]
            + ["--storage-path", str(storage), "--address", address],
            capture_output=True,
            text=True,
            env=driver_env,
            timeout=150,
        )
        empty_home = tmp_path / "home"
        empty_home.mkdir()
        without = subprocess.run(
            [sys.executable, "-m", "raydm", "tune", "--space", str(space), "--name", "u"]
            + ["--storage-path", str(storage), "--address", address],
            capture_output=True,
            text=True,
            env={**driver_env, "HOME": str(empty_home)},
            timeout=150,
        )
    finally:
        cluster.shutdown()
    assert with_token.returncode == 0, with_token.stdout + with_token.stderr
    assert "refused a driver without a token: retrying with" in with_token.stdout
    assert without.returncode == 1
    assert without.stderr.splitlines()[-1].startswith(
        f"raydm: error: --address: cannot join the Ray cluster at {address}"
    )
    assert "no Ray auth token here" in without.stderr


def test_an_asha_search_interrupted_and_resumed_keeps_its_stops_and_trials(tmp_path):
    space = tmp_path / "space.yaml"
    asha = "scheduler: {type: asha, grace_period: 1, reduction_factor: 2}"
    space.write_text(
        _space(tmp_path, epochs=4, iters=400, samples=4).replace("scheduler: {type: fifo}", asha)
    )
    storage = tmp_path / "results"
    search = _tune(space, storage)
    _wait_for(lambda: sum(len(e) for e in _epochs(storage).values()) >= 3, 120, search)
    search.send_signal(signal.SIGINT)
    output, _ = search.communicate(timeout=120)
    assert search.returncode == 130, output
    interrupted = _epochs(storage)

    resumed = _tune(space, storage, "--resume")
    output, _ = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, output
    final = _epochs(storage)
    assert len(final) == 4 and set(interrupted) <= set(final)
    for trial, epochs in final.items():
        # Tune takes a reported checkpoint in a second step after the result, so Ctrl-C can
        # fall between the two: then the last epoch reported before it is done once more, from
        # the checkpoint before (raydm keeps the later report of it). Nothing else repeats, and
        # no trial starts over.
        once_each = list(dict.fromkeys(epochs))
        assert once_each == list(range(1, len(once_each) + 1)), (trial, epochs)
        repeated = len(epochs) - len(once_each)
        assert repeated == 0 or (repeated == 1 and epochs.count(interrupted[trial][-1]) == 2), (
            trial,
            epochs,
            interrupted.get(trial),
        )
    with (storage / "run" / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    statuses = {row["trial_id"]: (row["status"], int(row["epochs"])) for row in rows}
    assert len(statuses) == 4
    # ASHA's rungs survived the interruption: it still stopped trials, at a rung (1 or 2).
    assert any(status == "stopped" for status, _ in statuses.values()), statuses
    for status, epochs in statuses.values():
        stopped_at_a_rung = status == "stopped" and epochs in (1, 2)
        assert stopped_at_a_rung or (status, epochs) == ("completed", 4), statuses


def test_a_local_search_keeps_every_ray_process_on_loopback(tmp_path, monkeypatch):
    # Without the test environment's setting: a user's shell does not have it.
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    space = tmp_path / "space.yaml"
    space.write_text(_space(tmp_path, epochs=1, iters=5, samples=1))
    storage = tmp_path / "results"
    output, _ = _tune(space, storage).communicate(timeout=180)
    (progress,) = (storage / "run").glob("*/progress.csv")
    with progress.open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["node_ip"] for row in rows} == {"127.0.0.1"}, output


EXIT_NOW = """
import sys
import ray
from raydm.cluster import connect, exit_now

connect(None, print)
node = ray._private.worker._global_node
print(" ".join(str(p.process.pid) for ps in node.all_processes.values() for p in ps))
sys.stdout.write("written last, unflushed")
exit_now(3)
"""


def test_the_quick_exit_after_a_search_keeps_the_exit_code_and_output_and_leaves_no_ray():
    # The GCS and raylet carry a parent-death signal, so they would also die without the
    # shutdown; what is checked is what a user sees: the code, all the output, no Ray left.
    done = subprocess.run(
        [sys.executable, "-c", EXIT_NOW], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert done.stdout.endswith("written last, unflushed")
    ray_pids = [int(pid) for pid in done.stdout.splitlines()[-2].split()]
    assert ray_pids  # the GCS and the raylet at least
    deadline = time.monotonic() + 10
    while ray_pids and time.monotonic() < deadline:
        ray_pids = [pid for pid in ray_pids if _alive(pid)]
        time.sleep(0.2)
    assert not ray_pids, "Ray's processes outlived the search"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended but waits for its parent
        return stat.read().split(") ")[-1][0] != "Z"
