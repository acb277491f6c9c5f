"""The Ray Tune wiring: searcher, scheduler, Tuner and resume.

This is the one module that drives Ray Tune. The searcher is built with its space as Optuna
distributions (``raydm.search_space``, the one translation of the params) and so with the
search's metric and mode; ``TuneConfig`` gets the same two, for the scheduler and the results.
"""

from __future__ import annotations

import math
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import ray
from ray import tune
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search.optuna import OptunaSearch

from raydm import metrics as m
from raydm.cluster import (
    ResourcesError,
    available_cpus,
    connect,
    fit_to_cluster,
    max_concurrent,
    unfit_here,
    visible_gpus,
)
from raydm.config import ExperimentConfig
from raydm.data.pair import IndexedPair, index_domain_pair
from raydm.layout import (
    BEST_FILE,
    PICK_FILE,
    RESULTS_FILE,
    SPACE_FILE,
    STUDY_FILE,
    unwritable,
)
from raydm.networks import pretrained_state
from raydm.progress import SearchProgress
from raydm.results import (
    SearchOutcome,
    best_yaml,
    final_pick,
    summarize,
    trial_status,
    write_results,
)
from raydm.schedulers import build_scheduler
from raydm.search_space import optuna_space
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
        space=optuna_space(config.params),
        metric=config.search.metric,
        mode=config.search.mode,
        sampler=sampler,
        max_epochs=config.max_epochs(),
        storage=storage,
        # Ray's OptunaSearch loads an existing study of the same name: one name per experiment.
        study_name=study_name,
    )


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
    unwritable_here = "://" not in experiment_path and unwritable(Path(experiment_path))
    if unwritable_here:  # refused before the data and Ray, which take a while
        raise ExperimentPathError(f"--storage-path {storage_path}: {unwritable_here}")
    if not resume and _read_storage(f"{experiment_path}/{SPACE_FILE}") is not None:
        # A second search under the same name would replace the first's results and feed its
        # trials to the new one's Optuna study.
        raise ExperimentPathError(
            f"{experiment_path}: an experiment is already there; continue it with --resume, "
            "or choose another --name"
        )
    if address is None:
        unfit = unfit_here(config, available_cpus()[0], visible_gpus())
        if unfit:
            raise ResourcesError(f"{unfit}: no trial could start")
    echo("preparing data ...")
    # Missing or mismatched data stops the search before Ray starts. Then Ray starts while
    # the images decode and the weights load (once: they reach every trial through the
    # object store); an unreadable image or bad weights still stop it before any trial, and
    # a Ray started for it is shut down first.
    indexed = index_domain_pair(config.data)
    with ThreadPoolExecutor(max_workers=1) as pool:
        inputs = pool.submit(_load_inputs, indexed, config)
        started = connect(address, echo)
        try:
            data, pretrained = inputs.result()
        except Exception:
            if started:
                ray.shutdown()
            raise
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
        saved = _read_storage(f"{experiment_path}/{SPACE_FILE}")
        if saved is not None and "keep_checkpoints" not in saved:
            echo(
                "this search began under a raydm that kept only each trial's latest "
                "checkpoint: the final pick is among those"
            )
        tuner = tune.Tuner.restore(experiment_path, trainable, resume_errored=True)
    else:
        if resume:
            echo(f"nothing to resume at {experiment_path}: starting a new search there")
        experiment_dir.mkdir(parents=True, exist_ok=True)
        (experiment_dir / SPACE_FILE).write_text(requested.to_yaml())
        tuner = tune.Tuner(
            trainable,
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
                # The best epochs by the final selector, and (always, for resuming) the latest.
                checkpoint_config=tune.CheckpointConfig(
                    num_to_keep=config.search.checkpoints_per_trial(),
                    checkpoint_score_attribute=m.CHECKPOINT_SCORE,
                    checkpoint_score_order="max",
                ),
                failure_config=tune.FailureConfig(max_failures=config.search.max_failures),
                callbacks=[progress],
                verbose=0,
            ),
        )
    echo(f"searching: {config.search.num_samples} trials, {config.search.ranking_words()}")
    handler = signal.getsignal(signal.SIGINT)
    grid = tuner.fit()  # the first Ctrl-C makes Tune save its state and return here
    trials = summarize(grid, config)
    experiment_dir.mkdir(parents=True, exist_ok=True)
    best_config, unfinished, chosen = None, 0, None
    if _interrupted(handler):
        finished = sum(t.status not in ("interrupted", "unstarted") for t in trials)
        unfinished = config.search.num_samples - finished
    elif trials and not math.isnan(trials[0].best_value):
        chosen = final_pick(grid, trials, config, experiment_path, echo)
    write_results(trials, config, experiment_dir / RESULTS_FILE, chosen)
    if chosen is not None:
        trial = next(t for t in trials if t.trial_id == chosen.pick.trial_id)
        # As asked, not as run: a GPU request stays in best.yaml for a machine that has one.
        best_config = requested.fixed(trial.params)
        (experiment_dir / PICK_FILE).write_text(chosen.to_json())
        (experiment_dir / BEST_FILE).write_text(best_yaml(best_config, trial, chosen, config))
    if remote:
        _copy_to_storage(experiment_dir, experiment_path)
    return SearchOutcome(
        experiment_dir,
        trials,
        best_config,
        unfinished,
        chosen.pick if chosen else None,
        chosen.checkpoint if chosen else None,
    )


def _load_inputs(indexed: IndexedPair, config: ExperimentConfig):
    data = indexed.load()
    return data, pretrained_state(config.model.backbone, config.model.backbone_args)


class ExperimentPathError(ValueError):
    """The experiment directory (--storage-path, --name) cannot take this search: it holds
    another search (--resume), or an experiment already (no --resume), or cannot be written;
    the message is one line."""


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
        raise ExperimentPathError(f"cannot resume: {str(err).splitlines()[0]}") from None
    ours, theirs = _settings_by_key(config), _settings_by_key(saved)
    for key in [*theirs, *(k for k in ours if k not in theirs)]:
        if key.startswith(RESUMABLE_CHANGES) or ours.get(key) == theirs.get(key):
            continue
        raise ExperimentPathError(
            f"{experiment_path}/{SPACE_FILE}: --resume with another search: {key} is "
            f"{ours.get(key)!r} now but {theirs.get(key)!r} in the experiment (use --force-resume "
            "to continue it anyway, or another --name for a new search)"
        )


def _settings_by_key(config: ExperimentConfig) -> dict[str, Any]:
    """Every setting by its dotted key; each searched param's distribution is one value."""
    searched = {f"params.{key}": dist.to_yaml() for key, dist in config.params.items()}
    return {**_dotted(config.settings_dict()), **searched}


def _dotted(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        return {prefix: node}
    flat = {}
    for key, value in node.items():
        flat.update(_dotted(value, f"{prefix}.{key}" if prefix else key))
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
    for name in (SPACE_FILE, RESULTS_FILE, BEST_FILE, PICK_FILE, STUDY_FILE):
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
