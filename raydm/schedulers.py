"""ASHA as raydm runs it: rungs that survive ``--resume``, and successive halving's own
count of which trials go on."""

from __future__ import annotations

import io
import math
from typing import Any

import pandas as pd
from ray.tune.experiment import Trial
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.schedulers.async_hyperband import _Bracket

from raydm.config import ExperimentConfig
from raydm.layout import PROGRESS_FILE


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive ``--resume``.

    Tune saves neither the scheduler nor its rungs with the search state: a restored search
    gets the ASHA it started with, empty, and judges a trial resumed past a rung at its next
    epoch against only the values reported since the resume. Here each restored trial's
    reports are replayed from its progress file, so the rungs hold what they held; a stop
    decided on a trial's last report, lost to the interruption, is carried out at its next one.
    The restored trials' reports are replayed together, in the order they were made (Tune's
    whole-second timestamps, then the order the trials were created): a trial's decision at a
    rung depends on the trials that reached it before, and trial by trial, a trial would meet
    rivals that came after it and could be stopped where the search had promoted it.
    """

    def __init__(
        self,
        *,
        grace_period: int,
        max_t: int,
        reduction_factor: float,
        cutoff: str = "rank",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            grace_period=grace_period, max_t=max_t, reduction_factor=reduction_factor, **kwargs
        )
        self._stop_at_next_report: set[str] = set()
        self._to_replay: list[Trial] = []
        if cutoff == "rank":  # Ray's rungs, cut by rank (Ray is pinned to 2.60)
            self._brackets = [
                RankCutoffBracket(grace_period, max_t, reduction_factor, s, self._stop_last_trials)
                for s in range(len(self._brackets))
            ]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        super().on_trial_add(tune_controller, trial)
        if trial.run_metadata.last_result:  # restored: replayed with the others before a result
            self._to_replay.append(trial)

    def _replay(self, tune_controller) -> None:
        trials, self._to_replay = self._to_replay, []
        reports = [
            (result.get("timestamp", 0), order, step, trial, result)
            for order, trial in enumerate(trials)
            for step, result in enumerate(_reported(trial))
        ]
        last_decisions = {}
        for *_, trial, result in sorted(reports, key=lambda report: report[:3]):
            decision = super().on_trial_result(tune_controller, trial, result)
            last_decisions[trial.trial_id] = trial, decision
        for trial, decision in last_decisions.values():
            if decision == TrialScheduler.STOP and trial.status != Trial.TERMINATED:
                self._stop_at_next_report.add(trial.trial_id)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if self._to_replay:
            self._replay(tune_controller)
        if trial.trial_id in self._stop_at_next_report:
            self._stop_at_next_report.discard(trial.trial_id)
            return TrialScheduler.STOP
        return super().on_trial_result(tune_controller, trial, result)


class RankCutoffBracket(_Bracket):
    """Successive halving's cut as Optuna's pruner makes it: of the n trials that reached a
    rung, the newcomer included, the best floor(n / reduction_factor) go on (the top of a rung
    that Li et al. 2020's ASHA promotes), and at least the best one, since a stopped trial cannot
    wait for more to arrive. Ray's own cut-off, the (1 - 1/reduction_factor) quantile of the
    trials already there, lets the second of three through."""

    def cutoff(self, recorded: dict[str, float]) -> float | None:
        values = sorted((v for v in recorded.values() if not math.isnan(v)), reverse=True)
        if not values:
            return None
        kept = max(1, int((len(values) + 1) // self.rf))
        return values[kept - 1]


def _reported(trial: Trial) -> list[dict[str, Any]]:
    """The results ``trial`` reported before the search was interrupted, from its progress
    file on the search's storage (where a resume reads the search state from); a result keeps
    only the keys it had (Tune writes the others blank)."""
    path = f"{trial.storage.trial_fs_path}/{PROGRESS_FILE}"
    try:
        with trial.storage.storage_filesystem.open_input_stream(path) as stream:
            rows = pd.read_csv(io.BytesIO(stream.readall()))
    except (OSError, pd.errors.EmptyDataError):
        return []
    return [row.dropna().to_dict() for _, row in rows.iterrows()]


def build_scheduler(config: ExperimentConfig):
    scheduler = config.search.scheduler
    if scheduler.type == "fifo":
        return FIFOScheduler()
    return ResumableASHA(
        time_attr=scheduler.time_attr,
        max_t=config.max_epochs(),
        grace_period=min(scheduler.grace_period, config.max_epochs()),
        reduction_factor=scheduler.reduction_factor,
        cutoff=scheduler.cutoff,
    )
