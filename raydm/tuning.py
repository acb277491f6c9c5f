"""The Ray Tune wiring: searcher, scheduler, Tuner, resume, and what a search leaves behind.

This is the one module that drives Ray Tune. Metric and mode are given once, to ``TuneConfig``;
Tune hands them to the searcher and the scheduler.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import ray
from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from raydm import metrics as m
from raydm import selection
from raydm.backbones import pretrained_state
from raydm.config import ExperimentConfig
from raydm.data import DomainPair, load_domain_pair
from raydm.report import (
    BEST_FILE,
    RESULTS_FILE,
    SPACE_FILE,
    STUDY_FILE,
    asha_rungs,
    format_table,
    format_value,
)
from raydm.search_space import to_tune_space
from raydm.trainable import train_trial

Echo = Callable[[str], None]


class PruningAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna an early-stopped trial is PRUNED, a failed one FAILED,
    and a completed one's best epoch.

    Ray's OptunaSearch reports every trial that ends without an error as COMPLETE with its last
    value, so TPE would treat a 2-epoch score of a trial ASHA stopped as if it were a finished
    run. As PRUNED, TPE ranks it by the intermediate values it already received per epoch. A
    trial that diverged ends without a Tune error (it must not be retried) but has no value. A
    completed trial's value is its best epoch's, the value selection ranks it by.
    """

    def __init__(self, *args: Any, max_epochs: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_epochs = max_epochs

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        known = trial_id in self._ot_trials and trial_id not in self._completed_trials
        status = trial_status(result, self._max_epochs) if result and known else None
        if status == "completed" and not error:
            # The value the final pick ranks a trial by is its best epoch's (raydm.selection),
            # not its last one's: tell TPE that one.
            best = result.get(f"{m.BEST_PREFIX}{self.metric}", result.get(self.metric))
            result = {**result, self.metric: best}
        if error or status in (None, "completed"):
            super().on_trial_complete(trial_id, result, error)
            return
        trial = self._ot_trials[trial_id]
        if status == "stopped" and self.metric in result:
            # Tune sends the result that made the scheduler stop the trial only here, not to
            # on_trial_result; record it so TPE sees the trial's value at its last rung.
            trial.report(result[self.metric], result[TRAINING_ITERATION])
        states = optuna.trial.TrialState
        self._ot_study.tell(trial, state=states.PRUNED if status == "stopped" else states.FAIL)
        self._completed_trials.add(trial_id)


def trial_status(result: dict, max_epochs: int) -> str:
    """failed (it reported m.FAILED), stopped (before its last epoch: ASHA or an interruption)
    or completed, from an ended trial's last result."""
    if result.get(m.FAILED):
        return "failed"
    planned = min(result.get(m.EPOCHS_PLANNED, max_epochs), max_epochs)
    return "stopped" if result.get(m.EPOCH, 0) < planned else "completed"


def build_searcher(
    config: ExperimentConfig, study_file: Path | None = None, study_name: str = "raydm"
) -> OptunaSearch | None:
    """The Optuna searcher; with ``study_file``, its study is kept in that Optuna journal file
    (``optuna-dashboard FILE`` opens it)."""
    if not config.params:
        return None  # nothing to search: num_samples repeats of the one config
    searcher = config.search.searcher
    if searcher.sampler == "tpe":
        # constant_liar: trials proposed while others still run are steered away from the
        # running ones' points, instead of all piling onto the current best region.
        sampler = optuna.samplers.TPESampler(
            seed=searcher.seed,
            n_startup_trials=searcher.n_startup_trials,
            multivariate=True,
            constant_liar=True,
        )
    else:
        sampler = optuna.samplers.RandomSampler(seed=searcher.seed)
    storage = None
    if study_file is not None:
        backend = optuna.storages.journal.JournalFileBackend(str(study_file))
        storage = optuna.storages.JournalStorage(backend)
    return PruningAwareOptunaSearch(
        sampler=sampler,
        max_epochs=config.max_epochs(),
        storage=storage,
        # Ray's OptunaSearch loads an existing study of the same name: one name per experiment.
        study_name=study_name,
    )


def build_scheduler(config: ExperimentConfig):
    scheduler = config.search.scheduler
    if scheduler.type == "fifo":
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=scheduler.time_attr,
        max_t=config.max_epochs(),
        grace_period=min(scheduler.grace_period, config.max_epochs()),
        reduction_factor=scheduler.reduction_factor,
    )


class ClusterError(RuntimeError):
    """The Ray cluster named by --address cannot be joined; one line for the user."""


def connect(address: str | None, echo: Echo) -> None:
    # With num_to_keep set, Tune snapshots after every checkpoint and warns each time it does;
    # one checkpoint per epoch is what resuming needs, so the warning is only noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address:
        _join(address, echo)
        return
    cpus, where = available_cpus()
    # A local search needs no network: keep every Ray process on loopback, and start a Ray of
    # its own even if another runs on this machine (address="local").
    ray.init(
        address="local",
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
    )
    echo(f"started a local Ray with {cpus} CPUs ({where})")


CGROUP = Path("/sys/fs/cgroup")


def available_cpus(cgroup: Path = CGROUP) -> tuple[int, str]:
    """The CPUs this process may use, and where that count comes from: the CPUs it may be
    scheduled on (its affinity), capped by a container's CPU quota (cgroup v2 ``cpu.max`` or
    v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``), rounded down, at least 1. os.cpu_count()
    counts the host's CPUs, so a quota-limited container would run too many trials at once."""
    try:
        cpus, where = len(os.sched_getaffinity(0)), "affinity"
    except AttributeError:  # not on Linux
        cpus, where = os.cpu_count() or 1, "os.cpu_count"
    quota = _cpu_quota(cgroup)
    if quota is not None and quota < cpus:
        return max(1, math.floor(quota)), f"cgroup CPU quota {quota:g}"
    return cpus, where


def _cpu_quota(cgroup: Path) -> float | None:
    try:
        limit, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        pass
    try:
        limit = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
        return None if limit <= 0 else limit / period
    except (OSError, ValueError):
        return None


def _join(address: str, echo: Echo) -> None:
    """Join the cluster at ``address``. Ray sends its auth token to an explicit address only
    in token mode (RAY_AUTH_MODE=token), and a token-mode driver cannot run actors on a cluster
    without tokens; so try as configured, then once in token mode if this machine has one."""
    token = _auth_token_here()
    try:
        ray.init(address=address, log_to_driver=False)
        return
    except (ConnectionError, ray.exceptions.AuthenticationError) as err:
        failure = err
    if token and "RAY_AUTH_MODE" not in os.environ:
        echo(
            f"the cluster at {address} refused a driver without a token: retrying with {token} "
            "(set RAY_AUTH_MODE=token to skip this wait)"
        )
        _use_token_mode()
        ray.shutdown()
        try:
            ray.init(address=address, log_to_driver=False)
            return
        except (ConnectionError, ray.exceptions.AuthenticationError) as err:
            failure = err
    if token:
        hint = f"is it running, and is {token} the cluster's token?"
    else:
        hint = (
            "no Ray auth token here: if the cluster uses token authentication, copy the "
            "head's ~/.ray/auth_token here (or set RAY_AUTH_TOKEN) and set RAY_AUTH_MODE=token"
        )
    raise ClusterError(
        f"cannot join the Ray cluster at {address} ({_error_reason(failure)}): {hint}"
    ) from None


def _use_token_mode() -> None:
    """RAY_AUTH_MODE=token for this process. Ray caches the mode when it first reads it, and
    its own switch (what `ray start` and address="auto" use) refreshes that cache."""
    try:
        from ray._private.authentication.authentication_token_setup import _enable_token_auth
    except ImportError:  # a later Ray: the environment variable alone
        os.environ["RAY_AUTH_MODE"] = "token"
        return
    _enable_token_auth()


def _auth_token_here() -> str | None:
    """Where this machine keeps a Ray auth token, if it has one."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or "~/.ray/auth_token").expanduser()
    return str(path) if path.is_file() else None


def fit_to_cluster(
    config: ExperimentConfig,
    data: DomainPair,
    pretrained: dict[str, Any] | None,
    echo: Echo,
    local: bool = True,
) -> ExperimentConfig:
    """The config with the GPU share each trial gets here: CPU, saying so, when this machine
    has no GPU; for ``gpu: auto``, the share a probe of one trial's peak memory allows. A
    joined cluster without GPUs yet keeps the request: its autoscaler adds GPU workers for it.
    """
    resources = config.resources
    no_gpu_now = ray.cluster_resources().get("GPU", 0) == 0
    if resources.wants_gpu and no_gpu_now and local:
        echo(f"resources.gpu is {resources.gpu} but the cluster has no GPU: running on CPU")
        gpu = 0.0
    elif resources.wants_gpu and no_gpu_now and resources.gpu != "auto":
        echo("the cluster has no GPU yet: trials wait for its autoscaler to add GPU workers")
        return config
    elif resources.gpu == "auto":
        largest = config.fixed(largest_values(config))
        sample = data.first(max(2 * largest.train.batch_size, largest.train.eval_batch_size))
        probe = ray.remote(num_gpus=1, num_cpus=resources.cpu)(_probe_peak_memory)
        peak, total = ray.get(probe.remote(largest, sample, pretrained))
        gpu = gpu_share(peak, total)
        echo(
            f"resources.gpu auto: one trial peaks at {peak / 2**30:.2f} GiB of the GPU's "
            f"{total / 2**30:.1f} GiB: {gpu:.4g} GPU per trial ({round(1 / gpu)} per GPU)"
        )
    else:
        return config
    return config.model_copy(update={"resources": resources.model_copy(update={"gpu": gpu})})


def max_concurrent(
    config: ExperimentConfig, local: bool, total: dict[str, float] | None = None
) -> int:
    """search.max_concurrent, or: as many trials as this machine (``total`` resources, by
    default the running Ray's) fits at once; on a joined cluster, every trial (its autoscaler
    sizes the cluster to the demand it sees).

    Without a limit Tune starts one trial at a time when a searcher proposes them, so trial
    start-up would never overlap and a GPU shared 1/k would never hold k trials."""
    if config.search.max_concurrent:
        return config.search.max_concurrent
    if not local:
        return config.search.num_samples
    total = ray.cluster_resources() if total is None else total
    slots = int(total.get("CPU", 0) / config.resources.cpu + 1e-9)
    if config.resources.gpu:
        slots = min(slots, int(total.get("GPU", 0) / config.resources.gpu + 1e-9))
    return max(1, min(slots, config.search.num_samples))


# An allowance for one CUDA context (with cuDNN and cuBLAS loaded) outside torch's allocator,
# which each trial, being its own process, pays once. Not measured here (no GPU was at hand):
# measure it on the GPUs you use and lower or raise it.
CUDA_CONTEXT_BYTES = 600 * 2**20
MAX_TRIALS_PER_GPU = 8


def gpu_share(peak: int, total: int, margin: float = 0.25) -> float:
    """The smallest 1/k GPU share (k <= MAX_TRIALS_PER_GPU) that holds a trial's ``peak``
    allocator bytes plus ``margin`` and a CUDA context; 1.0 when even one barely fits."""
    need = peak * (1 + margin) + CUDA_CONTEXT_BYTES
    trials = max(1, min(MAX_TRIALS_PER_GPU, int(total // need)))
    return 1.0 / trials


def largest_values(config: ExperimentConfig) -> dict[str, Any]:
    """A value for every searched key, the largest for batch sizes (they set the memory)."""
    values = {}
    for key, distribution in config.params.items():
        candidates = distribution.probe_values()
        values[key] = max(candidates) if key.endswith("batch_size") else candidates[0]
    return values


def _probe_peak_memory(config: ExperimentConfig, data: DomainPair, pretrained) -> tuple[int, int]:
    from raydm.engine import peak_gpu_memory

    return peak_gpu_memory(config, data, pretrained)


@dataclass(frozen=True)
class TrialSummary:
    trial_id: str
    status: str  # completed | stopped (early, by the scheduler) | failed | unstarted
    params: dict[str, Any]
    epochs: int
    final: dict[str, float]
    best_value: float  # nan for a failed trial: it is never selected
    best_epoch: int
    reason: str = ""  # why a failed trial failed


@dataclass(frozen=True)
class SearchOutcome:
    experiment_dir: Path
    trials: list[TrialSummary]  # ranked, best first
    best_config: ExperimentConfig | None
    unfinished: int = 0  # trials left pending or running by an interruption (Ctrl-C)
    pick: selection.Pick | None = None  # the final (trial, epoch), by search.select


def default_name(config: ExperimentConfig) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{config.method}-{config.data.source}-to-{config.data.target}-{stamp}"


def run_search(
    config: ExperimentConfig,
    *,
    name: str | None = None,
    storage_path: str = "results",
    address: str | None = None,
    resume: bool = False,
    force_resume: bool = False,
    echo: Echo = print,
) -> SearchOutcome:
    name = name or default_name(config)
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).expanduser().resolve())
    experiment_path = f"{storage_path.rstrip('/')}/{name}"
    if resume and not force_resume:
        check_same_search(config, experiment_path)
    echo("preparing data ...")
    # First: bad data or weights stop the search before Ray starts. Both are loaded once and
    # reach every trial through the object store.
    data = load_domain_pair(config.data)
    pretrained = pretrained_state(config.model.backbone, config.model.backbone_args)
    connect(address, echo)
    requested, config = config, fit_to_cluster(config, data, pretrained, echo, address is None)
    trainable = tune.with_resources(
        tune.with_parameters(train_trial, base=config, data=data, pretrained=pretrained),
        {"cpu": config.resources.cpu, "gpu": config.resources.gpu},
    )
    progress = SearchProgress(config, echo)
    remote = "://" in experiment_path
    # On remote storage (s3://...) the search's own files are written here, then copied there.
    experiment_dir = Path(name).resolve() if remote else Path(experiment_path)
    if resume and tune.Tuner.can_restore(experiment_path):
        echo(f"resuming {experiment_path}")
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_errored=True)
    else:
        if resume:
            echo(f"nothing to resume at {experiment_path}: starting a new search there")
        experiment_dir.mkdir(parents=True, exist_ok=True)
        (experiment_dir / SPACE_FILE).write_text(requested.to_yaml())
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune_space(config.params),
            tune_config=tune.TuneConfig(
                metric=config.search.metric,
                mode=config.search.mode,
                search_alg=build_searcher(config, experiment_dir / STUDY_FILE, name),
                scheduler=build_scheduler(config),
                num_samples=config.search.num_samples,
                max_concurrent_trials=max_concurrent(config, local=address is None),
                # A new trial runs in a finished trial's process: no Python, torch and Ray
                # start-up per trial (reset_config of Tune's function trainable).
                reuse_actors=True,
            ),
            run_config=tune.RunConfig(
                name=name,
                storage_path=storage_path,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
                callbacks=[progress],
                verbose=0,
            ),
        )
    echo(f"searching: {config.search.num_samples} trials, selecting on {config.search.metric}")
    handler = signal.getsignal(signal.SIGINT)
    grid = tuner.fit()  # the first Ctrl-C makes Tune save its state and return here
    trials = summarize(grid, config)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    write_results(trials, config, experiment_dir / RESULTS_FILE)
    best_config, unfinished, pick = None, 0, None
    if _interrupted(handler):
        finished = sum(t.status != "unstarted" for t in trials)
        unfinished = config.search.num_samples - finished
    elif trials and not math.isnan(trials[0].best_value):
        pick = final_pick(grid, trials, config, echo)
        chosen = next(trial for trial in trials if trial.trial_id == pick.trial_id)
        # As asked, not as run: a GPU request stays in best.yaml for a machine that has one.
        best_config = requested.fixed(chosen.params)
        (experiment_dir / BEST_FILE).write_text(best_yaml(best_config, chosen, pick, config))
    if remote:
        _copy_to_storage(experiment_dir, experiment_path)
    return SearchOutcome(experiment_dir, trials, best_config, unfinished, pick)


def final_pick(grid, trials: list[TrialSummary], config: ExperimentConfig, echo: Echo):
    """The (trial, epoch) that search.select ranks first among every epoch of the trials that
    did not fail; by search.metric when the selector has nothing to rank (no trial kept the
    softmax EnsV needs, or none reported the selector's metric)."""
    eligible = {trial.trial_id for trial in trials if trial.status in ("completed", "stopped")}
    frames = []
    for result in grid:
        history = result.metrics_dataframe
        if history is not None and len(history):
            trial_id = _trial_id(result)
            frames.append(history.assign(**{selection.TRIAL_ID: trial_id}))
    points = selection.candidates(pd.concat(frames, ignore_index=True), eligible)
    selector = selection.selector_of(config.search.select, config.search.metric)
    softmaxes: dict[selection.Point, Any] = {}
    if selector == m.ENSV:
        for result in grid:
            trial_id = _trial_id(result)
            if result.checkpoint is not None and trial_id in eligible:
                with result.checkpoint.as_directory() as directory:
                    softmaxes.update(selection.read_softmaxes(Path(directory), trial_id))
    mode = config.search.mode if selector == config.search.metric else None
    pick = selection.select(points, selector, softmaxes, mode)
    if pick is None:
        echo(f"search.select {selector}: nothing to rank by; picking by {config.search.metric}")
        pick = selection.by_metric(points, config.search.metric, config.search.mode)
    return pick


class ResumeError(ValueError):
    """--resume names an experiment of another search; the message is one line."""


# Keys a resumed search may change: where it runs, not what it searches.
RESUMABLE_CHANGES = ("data.root", "resources.", "search.max_concurrent", "search.max_failures")


def check_same_search(config: ExperimentConfig, experiment_path: str) -> None:
    """Refuse to resume ``experiment_path`` with a search that differs from the one it holds
    (its search_space.yaml): trials of two searches would be mixed in one study and ranking."""
    saved_text = _read_storage(f"{experiment_path}/{SPACE_FILE}")
    if saved_text is None:
        return  # nothing there yet: --resume starts it
    import yaml

    from raydm.config import ConfigError, config_from_dict

    try:
        saved = config_from_dict(yaml.safe_load(saved_text), f"{experiment_path}/{SPACE_FILE}")
    except (ConfigError, yaml.YAMLError) as err:
        raise ResumeError(f"cannot resume: {str(err).splitlines()[0]}") from None
    ours, theirs = _dotted(config.to_dict()), _dotted(saved.to_dict())
    for key in [*theirs, *(k for k in ours if k not in theirs)]:
        if key.startswith(RESUMABLE_CHANGES) or ours.get(key) == theirs.get(key):
            continue
        raise ResumeError(
            f"{experiment_path}/{SPACE_FILE}: --resume with another search: {key} is "
            f"{ours.get(key)!r} now but {theirs.get(key)!r} in the experiment (use --force-resume "
            "to continue it anyway, or another --name for a new search)"
        )


def _dotted(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or (prefix.startswith("params.") and prefix.count(".") > 1):
        return {prefix.rstrip("."): node}
    if not node:
        return {prefix.rstrip("."): node}
    flat = {}
    for key, value in node.items():
        flat.update(_dotted(value, f"{prefix}{key}."))
    return flat


def _read_storage(path: str) -> str | None:
    """A text file from a local path or remote storage (s3://...), None if it is not there."""
    if "://" not in path:
        file = Path(path)
        return file.read_text() if file.is_file() else None
    import pyarrow.fs

    filesystem, inner = pyarrow.fs.FileSystem.from_uri(path)
    if filesystem.get_file_info(inner).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(inner) as stream:
        return stream.read().decode()


def _copy_to_storage(experiment_dir: Path, experiment_path: str) -> None:
    """Put the search's own files next to Tune's in remote storage, where a user (or the next
    --resume from another machine) looks for them."""
    import pyarrow.fs

    filesystem, root = pyarrow.fs.FileSystem.from_uri(experiment_path)
    for name in (SPACE_FILE, RESULTS_FILE, BEST_FILE, STUDY_FILE):
        local = experiment_dir / name
        if local.exists():
            with filesystem.open_output_stream(f"{root}/{name}") as stream:
                stream.write(local.read_bytes())


def _interrupted(handler_before_fit) -> bool:
    """Whether Ctrl-C (or SIGUSR1) ended the search: Tune's handler puts the previous SIGINT
    handler back when, and only when, it fires; it is installed in the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        return False
    if os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0") != "0":
        return False
    fired = signal.getsignal(signal.SIGINT) is handler_before_fit
    signal.signal(signal.SIGINT, handler_before_fit)
    return fired


def dry_run(config: ExperimentConfig, address: str | None) -> str:
    """What a search would do, without starting Ray or loading data: the resolved config, the
    space as Optuna sees it, the resources per trial, the trials at once and the budget."""
    import torch

    lines = ["resolved config (after --set):", config.to_yaml().rstrip(), ""]
    space = OptunaSearch.convert_search_space(to_tune_space(config.params)) if config.params else {}
    lines.append("search space as Optuna sees it:" if space else "search space: nothing searched")
    lines += [f"  {key}: {distribution}" for key, distribution in space.items()]
    resources = config.resources
    lines.append("")
    lines.append(f"per trial: {resources.cpu:g} CPU, {resources.gpu} GPU")
    if address:
        lines.append(f"trials at once: set by the cluster at {address} when the search starts")
    else:
        (cpus, where), gpus = available_cpus(), torch.cuda.device_count()
        # As the search would run here: on CPU without a GPU; auto's share is not known yet.
        gpu = 0.0 if not gpus else (resources.gpu if resources.gpu != "auto" else 1.0)
        here = config.model_copy(update={"resources": resources.model_copy(update={"gpu": gpu})})
        at_once = max_concurrent(here, local=True, total={"CPU": cpus, "GPU": gpus})
        device = (
            f"{gpus} GPU" if gpu else "CPU only" + (" (no GPU here)" if resources.wants_gpu else "")
        )
        lines.append(f"this machine: {cpus} CPUs ({where}), {device}: {at_once} trials at once")
    epochs, trials = config.max_epochs(), config.search.num_samples
    lines.append(f"budget: {trials} trials x {epochs} epochs = at most {trials * epochs} epochs")
    scheduler = config.search.scheduler
    if scheduler.type == "asha":
        rungs = asha_rungs(scheduler.grace_period, scheduler.reduction_factor, epochs)
        lines.append(
            f"ASHA compares trials at epochs {', '.join(f'{r:g}' for r in rungs)} and keeps the "
            f"top 1/{scheduler.reduction_factor:g} at each: it may stop the rest there"
        )
    lines.append("dry run: nothing started")
    return "\n".join(lines)


def summarize(grid, config: ExperimentConfig) -> list[TrialSummary]:
    metric, mode = config.search.metric, config.search.mode
    sign = 1 if mode == "max" else -1
    trials = []
    for result in grid:
        last = result.metrics or {}
        history = result.metrics_dataframe
        best_value, best_epoch = math.nan, 0
        if history is not None and metric in history and history[metric].notna().any():
            row = history.loc[(sign * history[metric]).idxmax()]
            best_value, best_epoch = float(row[metric]), int(row[m.EPOCH])
        reason = ""
        if result.error is not None:
            status, reason = "failed", _error_reason(result.error)
        elif m.EPOCH not in last and not last.get(m.FAILED):
            status = "unstarted"  # an interruption came before its first epoch
        else:
            status = trial_status(last, config.max_epochs())
            if status == "failed":
                reason = str(last.get(m.FAILURE_REASON, ""))
        if status == "failed":
            best_value, best_epoch = math.nan, 0
        trials.append(
            TrialSummary(
                trial_id=_trial_id(result),
                status=status,
                params={key: (result.config or {}).get(key) for key in config.params},
                epochs=int(last.get(m.EPOCH, 0)),
                final={  # best/<metric> is best_value already
                    key: value
                    for key, value in last.items()
                    if m.is_reported(key)
                    and not key.startswith(m.BEST_PREFIX)
                    and isinstance(value, (int, float))
                },
                best_value=best_value,
                best_epoch=best_epoch,
                reason=reason,
            )
        )
    return sorted(
        trials,
        key=lambda t: -math.inf if math.isnan(t.best_value) else sign * t.best_value,
        reverse=True,
    )


def _trial_id(result) -> str:
    return str((result.metrics or {}).get("trial_id", Path(result.path).name))


def _error_reason(error: BaseException) -> str:
    """One line for a trial's error: the last line of Ray's message, which is the exception
    the trial raised."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


def write_results(trials: list[TrialSummary], config: ExperimentConfig, path: Path) -> None:
    metric = config.search.metric
    reported = sorted({name for trial in trials for name in trial.final})
    columns = ["trial_id", "status", "epochs", *config.params]
    columns += [f"best:{metric}", "best_epoch", *(f"final:{name}" for name in reported)]
    columns += ["reason"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for trial in trials:
            writer.writerow(
                {
                    "trial_id": trial.trial_id,
                    "status": trial.status,
                    "epochs": trial.epochs,
                    **trial.params,
                    **{f"final:{name}": trial.final.get(name, "") for name in reported},
                    f"best:{metric}": trial.best_value,
                    "best_epoch": trial.best_epoch,
                    "reason": trial.reason,
                }
            )


def best_yaml(
    best: ExperimentConfig,
    trial: TrialSummary,
    pick: selection.Pick,
    searched: ExperimentConfig,
) -> str:
    header = (
        f"# Selected by raydm with {pick.selector}: trial {trial.trial_id}, {pick.selector} = "
        f"{pick.value:.4f} at epoch {pick.epoch} of {trial.epochs} run ({trial.status}).\n"
        f"# The search was steered by {searched.search.metric}; the pick ranked every epoch of "
        "every trial that did not fail.\n# Re-run it with: raydm train --config best.yaml\n"
    )
    return header + best.to_yaml()


def leaderboard(outcome: SearchOutcome, config: ExperimentConfig, top: int = 10) -> str:
    """The top trials as a fixed-width table, then the failed trials with their reasons."""
    metric = config.search.metric
    headers = ["trial", "status", "epochs", *config.params, f"best {metric}", "@epoch"]
    shown = [name for name in (m.SOURCE_VAL_ACC, m.TARGET_ACC) if name != metric]
    headers += [f"final {name}" for name in shown]
    rows = [
        [
            trial.trial_id,
            trial.status,
            str(trial.epochs),
            *(format_value(trial.params.get(key)) for key in config.params),
            format_value(trial.best_value),
            str(trial.best_epoch),
            *(format_value(trial.final.get(name)) for name in shown),
        ]
        for trial in outcome.trials[:top]
    ]
    lines = format_table(headers, rows)
    lines += [f"{t.trial_id} failed: {t.reason}" for t in outcome.trials if t.status == "failed"]
    if outcome.pick is not None:
        lines.append(f"final pick: {outcome.pick.describe()}")
    return "\n".join(lines)


class SearchProgress(tune.Callback):
    """One line per finished trial and per new best, readable in a terminal or a CI log."""

    def __init__(self, config: ExperimentConfig, echo: Echo) -> None:
        self.metric, self.mode = config.search.metric, config.search.mode
        self.total = config.search.num_samples
        self.max_epochs = config.max_epochs()
        self.echo = echo
        self.started = time.monotonic()
        self.best: tuple[float, str] | None = None
        self.counts = {"completed": 0, "stopped": 0, "failed": 0}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        value = result.get(self.metric)
        if value is None or math.isnan(value):
            return
        better = self.best is None or (
            value > self.best[0] if self.mode == "max" else value < self.best[0]
        )
        if better:
            self.best = (value, trial.trial_id)
            self._line(
                trials,
                f"new best {self.metric}={value:.4f} ({trial.trial_id}, "
                f"epoch {result.get(m.EPOCH)})",
            )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        last = trial.last_result or {}
        status = trial_status(last, self.max_epochs)
        self.counts[status] += 1
        if status == "failed":
            event = f"{trial.trial_id} failed: {last.get(m.FAILURE_REASON)}"
        else:
            event = f"{trial.trial_id} {status} after {last.get(m.EPOCH, 0)} epochs"
        self._line(trials, event, ended=trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.counts["failed"] += 1
        self._line(trials, f"{trial.trial_id} failed: see {trial.path}", ended=trial)

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._line(trials, f"{trial.trial_id} lost its worker or crashed: resuming it")

    def _line(self, trials, event: str, ended=None) -> None:
        # Tune calls back before it updates the ending trial's status; do not count it.
        running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)
        done = sum(self.counts.values())
        best = f"best {self.best[0]:.4f}" if self.best else "no result yet"
        elapsed = time.monotonic() - self.started
        # A rough estimate from the pace of finished trials (stopped ones end sooner).
        left = (
            f", ~{elapsed / done * (self.total - done):.0f}s left" if 0 < done < self.total else ""
        )
        self.echo(
            f"[{elapsed:6.0f}s] {done}/{self.total} done ({self.counts['stopped']} stopped early, "
            f"{self.counts['failed']} failed), {running} running, {best}{left} | {event}"
        )
