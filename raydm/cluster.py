"""Where a search runs: a local Ray on loopback or a joined cluster, and how many trials and
what share of a GPU each gets there."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray

from raydm.config import ExperimentConfig

if TYPE_CHECKING:
    from raydm.data.pair import DomainPair

Echo = Callable[[str], None]


class ClusterError(RuntimeError):
    """The Ray cluster named by --address cannot be joined; one line for the user."""


def connect(address: str | None, echo: Echo) -> bool:
    """Start a local Ray, or join the cluster at ``address``; whether this call did either
    (False: Ray was already running in this process)."""
    # With num_to_keep set, Tune snapshots after every checkpoint and warns each time it does;
    # one checkpoint per epoch is what resuming needs, so the warning is only noise here.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return False
    if address:
        _join(address, echo)
        return True
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
    return True


def exit_now(code: int | None) -> None:
    """If this process runs Ray, shut it down and end the process with ``code`` without the
    interpreter's teardown; otherwise return, for the caller's usual exit.

    After a search, that teardown is native (torch's and Ray's libraries unloading) and took
    0.7-3 s of wall time with nothing left to write (BENCHMARKS.md). Everything the search
    writes is closed by then, and stdout and stderr are flushed here.
    """
    if not ray.is_initialized():
        return
    ray.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


CGROUP = Path("/sys/fs/cgroup")
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def visible_gpus(driver: Path = NVIDIA_GPUS) -> int:
    """The NVIDIA GPUs this process may use, without importing torch (for --dry-run): one
    entry per GPU in the driver's ``/proc`` folder, narrowed by CUDA_VISIBLE_DEVICES."""
    try:
        present = sum(1 for _ in driver.iterdir())
    except OSError:
        return 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return present
    # CUDA stops at the first invalid entry, so "0,-1,1" is one GPU.
    count = 0
    for entry in visible.split(","):
        entry = entry.strip()
        if not entry or entry.startswith("-"):
            break
        count += 1
    return min(count, present)


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
    from raydm.results import error_reason  # pandas, on this failure path only

    raise ClusterError(
        f"cannot join the Ray cluster at {address} ({error_reason(failure)}): {hint}"
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
        from raydm.gpu_probe import peak_gpu_memory  # torch and the training loop

        probe = ray.remote(num_gpus=1, num_cpus=resources.cpu)(peak_gpu_memory)
        peak, total = ray.get(probe.remote(largest, sample, pretrained))
        gpu = gpu_share(peak, total)
        echo(
            f"resources.gpu auto: one trial peaks at {peak / 2**30:.2f} GiB of the GPU's "
            f"{total / 2**30:.1f} GiB: {gpu:.4g} GPU per trial ({round(1 / gpu)} per GPU)"
        )
    else:
        return config
    return config.model_copy(update={"resources": resources.model_copy(update={"gpu": gpu})})


class ResourcesError(ValueError):
    """A trial asks for more than this machine has, so a local search would wait forever."""


def unfit_here(config: ExperimentConfig, cpus: int, gpus: int) -> str | None:
    """Why no trial of ``config`` could start on this machine (``cpus``, ``gpus``), or None.
    Without a GPU a trial runs on CPU (``fit_to_cluster``), so only a GPU count can be short."""
    resources = config.resources
    if resources.cpu > cpus:
        return f"resources.cpu: {resources.cpu:g} CPUs per trial, but this machine has {cpus}"
    if resources.gpu != "auto" and gpus and resources.gpu > gpus:
        return f"resources.gpu: {resources.gpu:g} GPUs per trial, but this machine has {gpus}"
    return None


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
