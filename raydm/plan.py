"""What a search would do, without starting Ray or loading data: ``raydm tune --dry-run``.

Imports neither torch nor the training code, so that it answers in well under a second.
"""

from __future__ import annotations

from raydm.cluster import available_cpus, max_concurrent, unfit_here, visible_gpus
from raydm.config import ExperimentConfig
from raydm.search_space import optuna_space


def dry_run(config: ExperimentConfig, address: str | None) -> str:
    """What a search would do, without starting Ray or loading data: the resolved config, the
    space as Optuna sees it, the resources per trial, the trials at once and the budget."""
    lines = ["resolved config (after --set):", config.to_yaml().rstrip(), ""]
    space = optuna_space(config.params)
    lines.append("search space as Optuna sees it:" if space else "search space: nothing searched")
    lines += [f"  {key}: {distribution}" for key, distribution in space.items()]
    resources = config.resources
    lines.append("")
    lines.append(f"per trial: {resources.cpu:g} CPU, {resources.gpu} GPU")
    if address:
        lines.append(f"trials at once: set by the cluster at {address} when the search starts")
    else:
        (cpus, where), gpus = available_cpus(), visible_gpus()
        # As the search would run here: on CPU without a GPU; auto's share is not known yet.
        gpu = 0.0 if not gpus else (resources.gpu if resources.gpu != "auto" else 1.0)
        here = config.model_copy(update={"resources": resources.model_copy(update={"gpu": gpu})})
        at_once = max_concurrent(here, local=True, total={"CPU": cpus, "GPU": gpus})
        device = (
            f"{gpus} GPU" if gpu else "CPU only" + (" (no GPU here)" if resources.wants_gpu else "")
        )
        unfit = unfit_here(config, cpus, gpus)
        fits = f"no trial could start ({unfit})" if unfit else f"{at_once} trials at once"
        lines.append(f"this machine: {cpus} CPUs ({where}), {device}: {fits}")
    epochs, trials = config.max_epochs(), config.search.num_samples
    lines.append(f"budget: {trials} trials x {epochs} epochs = at most {trials * epochs} epochs")
    scheduler = config.search.scheduler
    if scheduler.type == "asha":
        rungs = scheduler.rungs(epochs)
        lines.append(
            f"ASHA compares trials at epochs {', '.join(f'{r:g}' for r in rungs)} and keeps the "
            f"top 1/{scheduler.reduction_factor:g} at each: it may stop the rest there"
        )
    lines.append("dry run: nothing started")
    return "\n".join(lines)
