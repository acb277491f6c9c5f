"""One line per finished trial and per new best, while a search runs."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ray import tune

from raydm import metrics as m
from raydm.config import ExperimentConfig
from raydm.results import trial_status

Echo = Callable[[str], None]


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
