import csv
import json
import math
import os
import warnings

import optuna
import pytest
import ray
import torch
from click.testing import CliRunner

from raydm import engine
from raydm import metrics as m
from raydm.analysis import scored_points
from raydm.cli import main
from raydm.cluster import available_cpus, visible_gpus
from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.experiment import load_experiment
from raydm.layout import CONFIG_FILE
from raydm.results import _relative
from raydm.search_space import Choice, IntRange, optuna_space, sampled_values
from raydm.trainable import checkpoint_score
from raydm.tuning import PruningAwareOptunaSearch, build_searcher
from tests.conftest import SPACES


def _searcher(max_epochs: int) -> PruningAwareOptunaSearch:
    config = load_config(SPACES / "moons.yaml")
    return PruningAwareOptunaSearch(
        space=optuna_space(config.params),
        metric=m.SOURCE_VAL_ACC,
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_epochs=max_epochs,
    )


def _result(epoch: int, value: float, best: float | None = None) -> dict:
    return {
        m.SOURCE_VAL_ACC: value,
        f"{m.BEST_PREFIX}{m.SOURCE_VAL_ACC}": value if best is None else best,
        m.EPOCH: epoch,
        m.EPOCHS_PLANNED: 4,
        "training_iteration": epoch,
    }


def test_the_private_optuna_search_state_raydm_relies_on_is_there():
    # PruningAwareOptunaSearch reads and writes these; a Ray that renames them must fail here,
    # loudly, and not in a user's search (pyproject pins the Ray minor this passes on).
    searcher = _searcher(max_epochs=4)
    searcher.suggest("a")
    assert isinstance(searcher._ot_study, optuna.study.Study), "OptunaSearch._ot_study changed"
    assert isinstance(searcher._ot_trials.get("a"), optuna.trial.Trial), "_ot_trials changed"
    assert isinstance(searcher._completed_trials, set), "_completed_trials changed"


def test_early_stopped_trial_is_told_to_optuna_as_pruned():
    searcher = _searcher(max_epochs=4)
    for trial_id in ("stopped", "finished"):
        sampled = searcher.suggest(trial_id)
        assert set(sampled) == {"train.lr", "method_args.lambda_max"}
    searcher.on_trial_result("stopped", _result(1, 0.1))
    # Tune gives the result that made ASHA stop the trial only to on_trial_complete.
    searcher.on_trial_complete("stopped", _result(2, 0.2))
    for epoch in range(1, 5):
        searcher.on_trial_result("finished", _result(epoch, 0.2 * epoch))
    searcher.on_trial_complete("finished", _result(4, 0.8))
    states = {t.number: t for t in searcher._ot_study.trials}
    assert states[0].state == optuna.trial.TrialState.PRUNED
    assert states[0].intermediate_values == {1: 0.1, 2: 0.2}
    assert states[1].state == optuna.trial.TrialState.COMPLETE
    assert states[1].value == pytest.approx(0.8)


def test_completed_trial_is_told_its_best_epoch_the_value_selection_ranks_by():
    searcher = _searcher(max_epochs=4)
    searcher.suggest("peaked")
    for epoch, value in enumerate([0.5, 0.9, 0.7, 0.6], start=1):
        searcher.on_trial_result("peaked", _result(epoch, value, best=max(0.5, value)))
    searcher.on_trial_complete("peaked", _result(4, 0.6, best=0.9))
    trial = searcher._ot_study.trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.value == pytest.approx(0.9)


def test_a_choice_of_lists_is_searched_in_a_stored_study_and_comes_back_as_lists(tmp_path):
    # Optuna stores only None, bool, int, float and str choices (it warned, and a journal
    # study could not hold them faithfully); the layer widths travel as JSON text instead.
    config = load_config(
        SPACES / "moons.yaml",
        ["params.model.classifier_hidden={choice: [[100, 100], [200]]}"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        searcher = build_searcher(config, tmp_path / "study.log")
        sampled = [searcher.suggest(f"t{k}") for k in range(6)]
    hidden = {tuple(sampled_values(config.params, s)["model.classifier_hidden"]) for s in sampled}
    assert hidden == {(100, 100), (200,)}
    assert {s["model.classifier_hidden"] for s in sampled} == {"[100, 100]", "[200]"}
    # results.csv holds the same text, and reading it gives the list back
    assert Choice(([100, 100], [200])).from_optuna("[200]") == [200]


def test_a_choice_of_null_is_a_sampled_value_that_the_trial_gets():
    # Optuna hands null back as None; a trial that drew it failed on a "missing" param.
    config = load_config(
        SPACES / "moons.yaml", ["params.train.iters_per_epoch={choice: [null, 5]}"]
    )
    values = sampled_values(config.params, {"train.lr": 0.01, "train.iters_per_epoch": None})
    assert values["train.iters_per_epoch"] is None
    assert config.fixed({**values, "method_args.lambda_max": 1.0}).train.iters_per_epoch is None
    assert "train.iters_per_epoch" not in sampled_values(config.params, {})  # never started
    with pytest.raises(ValueError, match="not one of the choices"):
        Choice(([100, 100], [200])).from_optuna("[300]")


def test_the_searcher_searches_the_one_translation_with_both_int_bounds():
    config = load_config(
        SPACES / "moons.yaml", ["params.method_args.discriminator_layers={int: [1, 3]}"]
    )
    assert config.params["method_args.discriminator_layers"] == IntRange(1, 3)
    space = optuna_space(config.params)
    assert space["method_args.discriminator_layers"] == optuna.distributions.IntDistribution(1, 3)
    assert build_searcher(config)._space == space


def test_parallel_tpe_uses_the_constant_liar():
    sampler = build_searcher(load_config(SPACES / "moons.yaml"))._sampler
    assert isinstance(sampler, optuna.samplers.TPESampler) and sampler._constant_liar


def test_failed_trial_is_told_as_failed():
    searcher = _searcher(max_epochs=4)
    searcher.suggest("crashed")
    searcher.on_trial_complete("crashed", None, error=True)
    assert searcher._ot_study.trials[0].state == optuna.trial.TrialState.FAIL


@pytest.mark.ray
def test_tiny_search_writes_results_and_best_config_that_reruns(
    tmp_path, ray_session, keep_torch_threads
):
    storage = tmp_path / "results"
    args = [
        "tune",
        "--space",
        str(SPACES / "moons.yaml"),
        "--name",
        "tiny",
        "--storage-path",
        str(storage),
        "--set",
        f"data.root={tmp_path / 'data'}",
        "--set",
        "search.num_samples=6",
        "--set",
        "train.epochs=4",
        "--set",
        "train.iters_per_epoch=10",
        "--set",
        "search.scheduler.grace_period=1",
        "--set",
        "search.scheduler.reduction_factor=3",
        "--set",
        "search.searcher.n_startup_trials=2",
        # a wide lr range so that some trials are clearly worse than others
        "--set",
        "params.train.lr={loguniform: [1.0e-5, 0.3]}",
        # options Optuna cannot store as they are: they travel as JSON text
        "--set",
        "params.model.classifier_hidden={choice: [[16], [32, 32]]}",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    experiment = storage / "tiny"
    assert "best config:" in result.output and str(experiment) in result.output

    with (experiment / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    assert {
        "train.lr",
        "method_args.lambda_max",
        "best:val/source_acc",
        "best_epoch",
        "final:oracle/target_acc",
        "final:train/loss_domain",
        "final:train/lambda",
        "epochs",
        "status",
    } <= set(rows[0])
    statuses = [row["status"] for row in rows]
    assert "stopped" in statuses, statuses
    assert all(int(row["epochs"]) < 4 for row in rows if row["status"] == "stopped")
    assert all(int(row["epochs"]) == 4 for row in rows if row["status"] == "completed")
    best_values = [float(row["best:val/source_acc"]) for row in rows]
    assert best_values == sorted(best_values, reverse=True)
    # Trials reuse the processes of finished ones: 6 trials, 2 CPU slots, 2 processes.
    histories = load_experiment(experiment).histories
    assert histories["pid"].nunique() <= 2
    assert (histories[m.TIME_TRAIN] > 0).all() and (histories[m.TIME_EVAL] > 0).all()

    # What Optuna learned from: stopped trials as PRUNED with their last rung's value. The
    # study is kept in a journal file that optuna-dashboard (or Optuna itself) opens.
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(experiment / "optuna.journal"))
    )
    study = optuna.load_study(study_name="tiny", storage=storage)
    assert len(study.trials) == 6
    states = [trial.state for trial in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == statuses.count("stopped")
    assert states.count(optuna.trial.TrialState.COMPLETE) == statuses.count("completed")
    for trial in study.trials:
        if trial.state == optuna.trial.TrialState.PRUNED:
            assert max(trial.intermediate_values) in {1, 2, 3}

    searched = load_config(experiment / "search_space.yaml")
    assert searched.search.num_samples == 6 and "train.lr" in searched.params

    best = load_config(experiment / "best.yaml")
    assert best.params == {}
    picked = json.loads((experiment / "pick.json").read_text())["ranking"][0]["trial_id"]
    (picked_row,) = [row for row in rows if row["trial_id"] == picked]
    assert picked_row["best:val/source_acc"] == rows[0]["best:val/source_acc"]  # ties: any
    assert best.train.lr == pytest.approx(float(picked_row["train.lr"]))
    assert picked_row["model.classifier_hidden"] in ("[16]", "[32, 32]")
    assert best.model.classifier_hidden == json.loads(picked_row["model.classifier_hidden"])
    read_back = {row["trial_id"]: row for row in load_experiment(experiment).results}
    assert read_back[picked]["model.classifier_hidden"] == best.model.classifier_hidden

    # Each trial keeps its best epoch's checkpoint and its latest; the pick is a kept one.
    # (Of epochs tied on source accuracy, the first is the best, for Tune as for the pick.)
    histories = load_experiment(experiment).histories
    for trial_id, history in histories.groupby("trial_id"):
        (trial_dir,) = experiment.glob(f"train_trial_{trial_id}*")
        kept = {_checkpoint_epoch(path) for path in trial_dir.glob("checkpoint_*")}
        best_epoch = int(history.loc[history[m.SOURCE_VAL_ACC].idxmax(), m.EPOCH])
        assert kept == {best_epoch, int(history[m.EPOCH].max())}, trial_id
    chosen = json.loads((experiment / "pick.json").read_text())
    top = chosen["ranking"][0]
    assert chosen["selector"] == m.SOURCE_VAL_ACC
    assert top["value"] == pytest.approx(float(rows[0]["best:val/source_acc"]))  # ties: any
    assert _checkpoint_epoch(experiment / top["checkpoint"]) == top["epoch"]
    (picked_row,) = [row for row in rows if row["trial_id"] == top["trial_id"]]
    assert picked_row["checkpoint"] == top["checkpoint"]
    assert int(picked_row["best_epoch"]) == top["epoch"]
    assert f"the checkpoint {top['checkpoint']}" in (experiment / "best.yaml").read_text()
    assert f"selected model: {experiment / top['checkpoint']}" in result.output

    # The last trial to start ran in a process that earlier trials had used; trained afresh
    # here, on the trial's thread count, its config gives the trial's every figure to the bit:
    # nothing of an earlier trial leaks into a reused process.
    started = histories.groupby("trial_id")["timestamp"].min()
    (last_dir,) = experiment.glob(f"train_trial_{started.idxmax()}*")
    last_config = load_config(next(last_dir.glob("checkpoint_*")) / CONFIG_FILE)
    engine.use_threads_of(last_config)
    fresh = {}
    engine.fit(
        last_config,
        load_domain_pair(last_config.data),
        on_epoch=lambda epoch, metrics, state: fresh.update({epoch: metrics}),
    )
    _assert_reported(histories[histories["trial_id"] == started.idxmax()], fresh, tolerance=0)
    # Every trial says what it ran on (this machine, on the config's threads), and so do
    # best.yaml, which repeats to the bit only there, and raydm train.
    platform = engine.platform(last_config)
    assert platform.endswith(", 1 thread)")  # moons.yaml: resources.cpu 1
    assert {row["platform"] for row in rows} == {platform}
    assert set(histories[m.PLATFORM]) == {platform}
    assert f"# the trial ran on: {platform}." in (experiment / "best.yaml").read_text()

    ray.shutdown()
    rerun = CliRunner().invoke(main, ["train", "--config", str(experiment / "best.yaml")])
    assert rerun.exit_code == 0, rerun.output
    assert "epoch 4/4" in rerun.output and f"platform: {platform}" in rerun.output
    # The rerun repeats the picked trial's figures as far as the trial ran (to the 4 decimals
    # it prints).
    printed = {
        int(line.split()[1].split("/")[0]): {
            name: float(value) for name, value in (part.split("=") for part in line.split()[2:])
        }
        for line in rerun.output.splitlines()
        if line.startswith("epoch ")
    }
    _assert_reported(histories[histories["trial_id"] == top["trial_id"]], printed, tolerance=5.1e-5)


def _assert_reported(history, metrics_by_epoch: dict, tolerance: float) -> None:
    """Every finite metric ``history`` (one trial's rows) reported is in ``metrics_by_epoch``,
    within ``tolerance`` (0: to the bit; 5.1e-5: the 4 decimals ``raydm train`` prints)."""
    compared = 0
    for _, row in history.iterrows():
        metrics = metrics_by_epoch[int(row[m.EPOCH])]
        for name in (*m.VALIDATORS, m.SOURCE_VAL_LOSS, m.TARGET_ACC, m.TRAIN_LOSS):
            if name in metrics and math.isfinite(row[name]):
                assert metrics[name] == pytest.approx(row[name], rel=0, abs=tolerance), name
                compared += 1
    assert compared >= 3 * len(history), compared


def test_gpu_request_on_a_cluster_without_gpus_runs_on_cpu_and_says_so(monkeypatch):
    from raydm import cluster

    config = load_config(SPACES / "moons.yaml", ["resources.gpu=0.25"])
    said = []
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 2.0})
    assert cluster.fit_to_cluster(config, None, None, said.append).resources.gpu == 0
    assert said == ["resources.gpu is 0.25 but the cluster has no GPU: running on CPU"]
    auto = config.model_copy(
        update={"resources": config.resources.model_copy(update={"gpu": "auto"})}
    )
    assert cluster.fit_to_cluster(auto, None, None, said.append).resources.gpu == 0
    assert said[-1] == "resources.gpu is auto but the cluster has no GPU: running on CPU"
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 1.0})
    assert cluster.fit_to_cluster(config, None, None, said.append).resources.gpu == 0.25
    assert len(said) == 2
    # A joined cluster keeps the request: its autoscaler adds GPU workers on demand.
    monkeypatch.setattr(cluster.ray, "cluster_resources", lambda: {"CPU": 4.0})
    joined = cluster.fit_to_cluster(config, None, None, said.append, local=False)
    assert joined.resources.gpu == 0.25 and "autoscaler" in said[-1]


@pytest.mark.ray
def test_a_search_selecting_with_ensv_picks_the_most_agreeing_point_and_says_so(
    tmp_path, ray_session
):
    storage = tmp_path / "results"
    args = ["tune", "--space", str(SPACES / "moons.yaml"), "--name", "ensv"]
    args += ["--storage-path", str(storage), "--set", f"data.root={tmp_path / 'data'}"]
    for setting in (
        "search.num_samples=3",
        "train.epochs=2",
        "train.iters_per_epoch=5",
        "search.scheduler.type=fifo",
        "search.select=ensv",
        "params.train.lr={loguniform: [1.0e-4, 0.3]}",
    ):
        args += ["--set", setting]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "final pick: ensv = " in result.output
    experiment = storage / "ensv"
    # Every epoch of every trial is a candidate; the pick is the one EnsV scores highest.
    points = scored_points(load_experiment(experiment))
    assert len(points) == 6 and points[m.ENSV].between(0, 1).all()
    best = points.loc[points[m.ENSV].idxmax()]
    header = (experiment / "best.yaml").read_text().splitlines()[0]
    assert header.startswith(
        f"# Selected by raydm with ensv: trial {best['trial_id']}, ensv = {best[m.ENSV]:.4f} "
        f"at epoch {best[m.EPOCH]} of 2 run"
    )
    # EnsV ranks every epoch, so every epoch's checkpoint is kept, ranked in pick.json.
    ranking = json.loads((experiment / "pick.json").read_text())["ranking"]
    assert len(ranking) == 6 and len(list(experiment.glob("*/checkpoint_*"))) == 6
    values = [row["value"] for row in ranking]
    assert values == sorted(values, reverse=True) and values[0] == pytest.approx(best[m.ENSV])
    assert _checkpoint_epoch(experiment / ranking[0]["checkpoint"]) == best[m.EPOCH]
    picked_lr = load_config(experiment / "best.yaml").train.lr
    with (experiment / "results.csv").open() as handle:
        lrs = {row["trial_id"]: float(row["train.lr"]) for row in csv.DictReader(handle)}
    assert picked_lr == pytest.approx(lrs[best["trial_id"]])


def test_checkpoint_scores_keep_the_first_of_tied_epochs_as_the_pick_takes_it():
    config = load_config(SPACES / "moons.yaml")
    accuracies = [0.5, 0.9, 0.9, 0.7]
    scores = [
        checkpoint_score({m.SOURCE_VAL_ACC: a}, e, config) for e, a in enumerate(accuracies, 1)
    ]
    assert scores[1] > scores[2] > scores[3] > scores[0]  # epoch 2 before its tie, epoch 3
    assert math.isnan(checkpoint_score({}, 1, config))  # Tune ranks nan checkpoints last
    by_loss = load_config(SPACES / "moons.yaml", ["search.select=val/source_loss"])
    lower, higher = (checkpoint_score({m.SOURCE_VAL_LOSS: v}, 1, by_loss) for v in (0.2, 0.3))
    assert lower > higher  # lower is better for a loss


def test_checkpoint_paths_are_kept_relative_to_the_experiment_local_or_remote(tmp_path):
    experiment = tmp_path / "run"
    inside = experiment / "train_trial_a" / "checkpoint_000002"
    assert _relative(str(inside), str(experiment)) == "train_trial_a/checkpoint_000002"
    # Tune names a remote checkpoint without its scheme.
    remote = "bucket/prefix/run/train_trial_a/checkpoint_000002"
    assert _relative(remote, "s3://bucket/prefix/run") == "train_trial_a/checkpoint_000002"
    assert (
        _relative("/elsewhere/checkpoint_000001", str(experiment)) == "/elsewhere/checkpoint_000001"
    )


def _checkpoint_epoch(checkpoint_dir) -> int:
    return torch.load(checkpoint_dir / "state.pt", weights_only=True)["epoch"]


def test_the_local_cpu_count_honours_a_container_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)))
    assert available_cpus(tmp_path) == (16, "affinity")  # no cgroup files: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == (16, "affinity")
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # cgroup v2: 2.5 CPUs
    assert available_cpus(tmp_path) == (2, "cgroup CPU quota 2.5")
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # cgroup v1: half a CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == (1, "cgroup CPU quota 0.5")


def test_the_dry_runs_gpu_count_reads_the_driver_as_cuda_visible_devices_narrows_it(
    tmp_path, monkeypatch
):
    assert visible_gpus(tmp_path / "no-driver") == 0
    for bus in ("0000:01:00.0", "0000:02:00.0", "0000:03:00.0"):
        (tmp_path / bus).mkdir()
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert visible_gpus(tmp_path) == 3
    for visible, count in (("", 0), ("-1", 0), ("1", 1), ("0,2", 2), ("0,-1,1", 1), ("0,1,2,3", 3)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert visible_gpus(tmp_path) == count, visible


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ("search.metric=val/im", "search.metric"),
        ("train.epochs=5", "train.epochs"),
        ("params.train.lr={loguniform: [1.0e-4, 1.0e-2]}", "params.train.lr"),
        ("search.scheduler.grace_period=3", "search.scheduler.grace_period"),
    ],
)
def test_resume_refuses_another_search_naming_the_first_changed_key(tmp_path, change, key):
    # The experiment as a first run left it; resuming it with a change starts nothing.
    experiment = tmp_path / "results" / "run"
    experiment.mkdir(parents=True)
    base = load_config(SPACES / "moons.yaml", [f"data.root={tmp_path / 'data'}"])
    (experiment / "search_space.yaml").write_text(base.to_yaml())
    args = ["tune", "--space", str(SPACES / "moons.yaml"), "--name", "run", "--resume"]
    args += ["--storage-path", str(tmp_path / "results"), "--set", f"data.root={tmp_path / 'data'}"]
    result = CliRunner().invoke(main, [*args, "--set", change])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0
    assert f"search_space.yaml: --resume with another search: {key} is " in result.output
    assert sorted(p.name for p in experiment.iterdir()) == ["search_space.yaml"]
    assert not (tmp_path / "data").exists()  # refused before any data was built


@pytest.mark.parametrize(
    ("request_", "gpus", "expected"),
    [
        ("resources.cpu=3", 0, "resources.cpu: 3 CPUs per trial, but this machine has 2"),
        ("resources.gpu=2", 1, "resources.gpu: 2 GPUs per trial, but this machine has 1"),
    ],
)
def test_a_trial_larger_than_this_machine_is_refused_before_data_or_ray(
    tmp_path, monkeypatch, request_, gpus, expected
):
    import raydm.tuning

    # Ray would otherwise wait for the resources for ever, with nothing on screen.
    monkeypatch.setattr(raydm.tuning, "available_cpus", lambda: (2, "affinity"))
    monkeypatch.setattr(raydm.tuning, "visible_gpus", lambda: gpus)
    space = str(SPACES / "moons.yaml")
    args = ["tune", "--space", space, "--set", request_, "--set", f"data.root={tmp_path / 'd'}"]
    result = CliRunner().invoke(main, [*args, "--storage-path", str(tmp_path / "results")])
    assert result.exit_code == 2, result.output
    assert result.output == f"raydm: error: {space}: {expected}: no trial could start\n"
    assert not (tmp_path / "d").exists() and not (tmp_path / "results").exists()


def test_a_trial_that_fits_this_machine_is_not_refused():
    from raydm.cluster import unfit_here

    config = load_config(SPACES / "moons.yaml", ["resources.cpu=2", "resources.gpu=0.25"])
    assert unfit_here(config, cpus=2, gpus=1) is None
    assert unfit_here(config, cpus=2, gpus=0) is None  # no GPU: the trial runs on CPU


def test_a_new_search_under_an_existing_name_is_refused_and_touches_nothing(tmp_path):
    experiment = tmp_path / "results" / "run"
    experiment.mkdir(parents=True)
    first = load_config(SPACES / "moons.yaml", ["search.metric=val/source_loss"])
    (experiment / "search_space.yaml").write_text(first.to_yaml())
    (experiment / "results.csv").write_text("trial_id\nabc\n")
    before = {p.name: p.read_bytes() for p in experiment.iterdir()}
    args = ["tune", "--space", str(SPACES / "moons.yaml"), "--name", "run"]
    args += ["--storage-path", str(tmp_path / "results"), "--set", f"data.root={tmp_path / 'd'}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"raydm: error: {experiment}: an experiment is already there; continue it with "
        "--resume, or choose another --name\n"
    )
    assert {p.name: p.read_bytes() for p in experiment.iterdir()} == before
    assert not (tmp_path / "d").exists()  # refused before any data was built


def test_a_storage_path_that_could_not_be_written_is_refused_before_data_or_ray(tmp_path):
    (tmp_path / "a file").write_text("")
    storage = tmp_path / "a file" / "results"
    args = ["tune", "--space", str(SPACES / "moons.yaml"), "--storage-path", str(storage)]
    result = CliRunner().invoke(main, [*args, "--name", "run", "--set", f"data.root={tmp_path}/d"])
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"raydm: error: --storage-path {storage}: cannot write into {storage / 'run'}: "
        f"{tmp_path / 'a file'} is a file\n"
    )
    assert not (tmp_path / "d").exists()


def test_resume_may_change_where_a_search_runs(tmp_path):
    from raydm.tuning import check_same_search

    base = load_config(SPACES / "moons.yaml")
    (tmp_path / "search_space.yaml").write_text(base.to_yaml())
    moved = load_config(SPACES / "moons.yaml", ["data.root=/elsewhere", "resources.cpu=2"])
    check_same_search(moved, str(tmp_path))  # no error


def _restored_trial(
    directory, trial_id: str, status: str, values: list[float], times: list[int] | None = None
):
    """A trial as Tune restores it for --resume: its reports (made at Tune's whole-second
    ``times``, by default all at once) in its progress file."""
    from types import SimpleNamespace

    from pyarrow.fs import LocalFileSystem

    trial_dir = directory / trial_id
    trial_dir.mkdir()
    with (trial_dir / "progress.csv").open("w", newline="") as handle:
        rows = csv.writer(handle)
        rows.writerow([m.SOURCE_VAL_ACC, m.SND, "training_iteration", "timestamp"])
        for epoch, value in enumerate(values, start=1):
            # The costly validator blank, as on most epochs.
            rows.writerow([value, "", epoch, times[epoch - 1] if times else 0])
    return SimpleNamespace(
        trial_id=trial_id,
        status=status,
        run_metadata=SimpleNamespace(
            last_result={"training_iteration": len(values)} if values else {}
        ),
        storage=SimpleNamespace(trial_fs_path=str(trial_dir), storage_filesystem=LocalFileSystem()),
    )


def test_a_resumed_asha_search_keeps_its_rungs_and_a_stop_the_interruption_lost(tmp_path):
    from ray.tune.schedulers import TrialScheduler

    from raydm.schedulers import ResumableASHA

    def asha() -> ResumableASHA:
        # Ray's quantile cut-off, whose values below move with every value a rung holds.
        return ResumableASHA(
            metric=m.SOURCE_VAL_ACC,
            mode="max",
            max_t=4,
            grace_period=1,
            reduction_factor=2,
            cutoff="quantile",
        )

    resumed, fresh = asha(), asha()
    # Rungs at epochs 1 and 2. "done" finished; "cut" reported epoch 2 far below "done" at
    # that rung, and Ctrl-C came before Tune stopped it.
    resumed.on_trial_add(
        None, _restored_trial(tmp_path, "done", "TERMINATED", [0.8, 0.9, 0.9, 0.9])
    )
    cut = _restored_trial(tmp_path, "cut", "RUNNING", [0.9, 0.1])
    resumed.on_trial_add(None, cut)
    new = _restored_trial(tmp_path, "new", "PENDING", [])
    for scheduler in (resumed, fresh):
        scheduler.on_trial_add(None, new)
    at_rung_1 = {m.SOURCE_VAL_ACC: 0.5, "training_iteration": 1}
    # The rung at epoch 1 holds 0.8 and 0.9 (cut-off 0.85): the new trial's 0.5 is stopped
    # there, where a fresh ASHA, with empty rungs, lets it go on.
    assert resumed.on_trial_result(None, new, at_rung_1) == TrialScheduler.STOP
    assert fresh.on_trial_result(None, new, at_rung_1) == TrialScheduler.CONTINUE
    # "cut" is stopped at its next report, whatever its value; once.
    again = {m.SOURCE_VAL_ACC: 0.99, "training_iteration": 2}
    assert resumed.on_trial_result(None, cut, again) == TrialScheduler.STOP
    assert resumed.on_trial_result(None, cut, again) == TrialScheduler.CONTINUE
    # A restored trial without a progress file (nothing synced yet) adds nothing to the rungs:
    # rung 1 still holds 0.8, 0.9 and the new trial's 0.5 (cut-off 0.8), where the lost
    # trial's 0.1, had it been replayed, would have lowered the cut-off to 0.65.
    lost = _restored_trial(tmp_path, "lost", "RUNNING", [0.1, 0.1])
    (tmp_path / "lost" / "progress.csv").unlink()
    resumed.on_trial_add(None, lost)
    later = _restored_trial(tmp_path, "later", "PENDING", [])
    resumed.on_trial_add(None, later)
    at_rung_1_again = {m.SOURCE_VAL_ACC: 0.7, "training_iteration": 1}
    assert resumed.on_trial_result(None, later, at_rung_1_again) == TrialScheduler.STOP


def test_a_resumed_asha_replays_the_trials_reports_in_the_order_they_were_made(tmp_path):
    from ray.tune.schedulers import TrialScheduler

    from raydm.schedulers import ResumableASHA

    resumed = ResumableASHA(
        metric=m.SOURCE_VAL_ACC, mode="max", max_t=6, grace_period=2, reduction_factor=2
    )
    # "late" reached the rung at epoch 2 alone (at second 100) and went on; "early", created
    # first, reached it after (second 105) with more. Ctrl-C came during late's epoch 3.
    early = _restored_trial(tmp_path, "early", "RUNNING", [0.9, 0.97], [95, 105])
    late = _restored_trial(tmp_path, "late", "RUNNING", [0.8, 0.95], [90, 100])
    resumed.on_trial_add(None, early)
    resumed.on_trial_add(None, late)
    epoch_3 = {m.SOURCE_VAL_ACC: 0.96, "training_iteration": 3}
    # Replayed trial by trial, late would meet early's 0.97 at the rung and be stopped now.
    assert resumed.on_trial_result(None, late, epoch_3) == TrialScheduler.CONTINUE


def _decisions(cutoff: str | None, values: list[float]) -> list[str]:
    """CONTINUE or STOP for trials reaching ASHA's first rung (epoch 1, reduction factor 4)
    with ``values``, in that order, under the scheduler built from a config with
    ``search.scheduler.cutoff`` (None: the default)."""
    from types import SimpleNamespace

    from raydm.schedulers import build_scheduler

    config = load_config(
        SPACES / "moons.yaml",
        [
            "train.epochs=8",
            "search.scheduler.type=asha",
            "search.scheduler.grace_period=1",
            "search.scheduler.reduction_factor=4",
            *([f"search.scheduler.cutoff={cutoff}"] if cutoff else []),
        ],
    )
    scheduler = build_scheduler(config)
    scheduler.set_search_properties(m.SOURCE_VAL_ACC, "max")
    decisions = []
    for number, value in enumerate(values):
        trial = SimpleNamespace(trial_id=f"t{number}", run_metadata=SimpleNamespace(last_result={}))
        scheduler.on_trial_add(None, trial)
        result = {m.SOURCE_VAL_ACC: value, "training_iteration": 1}
        decisions.append(scheduler.on_trial_result(None, trial, result))
    return decisions


def test_asha_rank_cutoff_keeps_the_best_quarter_of_a_rung_counting_the_newcomer():
    from ray.tune.schedulers import TrialScheduler

    go, stop = TrialScheduler.CONTINUE, TrialScheduler.STOP
    values = [0.50, 0.70, 0.60, 0.655, 0.66, 0.55, 0.40, 0.69, 0.68]
    # rank: the n-th arrival goes on only if among the best max(1, n // 4) of the n values:
    # the best of 1, 2, ..., 7; of 8, the best 2 (0.70 and 0.69); of 9, the best 2 again.
    assert _decisions("rank", values) == [go, go, stop, stop, stop, stop, stop, go, stop]
    assert _decisions(None, values) == _decisions("rank", values)  # the default
    # Ray's quantile: at least the 75th percentile of the earlier values, interpolated: 0.655
    # passes that of [0.50, 0.70, 0.60] (0.65), and 0.68 that of the eight before (0.6675).
    assert _decisions("quantile", values) == [go, go, stop, go, stop, stop, stop, go, go]
