"""The report on a finished search, from a hand-written experiment directory (no Ray run)."""

import csv
import dataclasses
import json
import math

import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from raydm import layout
from raydm import metrics as m
from raydm.analysis import param_importances, validator_table
from raydm.cli import main
from raydm.config import load_config
from raydm.experiment import ReportError, load_experiment
from raydm.plots import write_plots
from raydm.report import render_text, to_json
from raydm.results import Selection, TrialSummary, best_yaml, write_results
from raydm.sections import SchedulerConfig
from raydm.selection import Pick
from tests.conftest import SPACES

# Trial ids as Tune writes them; "1234e567" is one pandas would read as a float if let.
A, B, C, D = "aaaa0001", "bbbb0002", "1234e567", "dddd0004"
REASON = "train/loss became nan at epoch 2, iteration 3 (lr 0.29): lower train.lr"
PARAMS = {
    A: {"train.lr": 0.01, "method_args.lambda_max": 1.0},
    B: {"train.lr": 0.003, "method_args.lambda_max": 0.5},
    C: {"train.lr": 0.1, "method_args.lambda_max": 1.9},
    D: {"train.lr": 0.29, "method_args.lambda_max": 0.2},
}
NAN = math.nan
# Per trial, one tuple per progress.csv row: (epoch, val/source_acc, val/im, oracle/target_acc).
# B reported epoch 2 twice (resumed from its checkpoint): the second report is the one kept.
# D reported epoch 1, then failed (its failure row repeats epoch 1, with NaN metrics).
ROWS = {
    A: [(1, 0.70, 0.10, 0.60), (2, 0.80, 0.30, 0.70), (3, 0.90, 0.50, 0.82), (4, 0.88, 0.45, 0.80)],
    B: [
        (1, 0.65, 0.05, 0.55),
        (2, 0.74, 1.50, 0.64),
        (2, 0.75, 0.99, 0.65),
        (3, 0.85, 0.40, 0.75),
        (4, 0.86, 0.60, 0.78),
    ],
    C: [(1, 0.60, 0.02, 0.50), (2, 0.70, 0.15, 0.58)],
    D: [(1, 0.55, NAN, 0.45), (1, NAN, NAN, NAN)],
}
STATUS = {A: "completed", B: "completed", C: "stopped", D: "failed"}


def neg_entropy(oracle: float) -> float:
    """A validator strictly increasing in the oracle accuracy."""
    return math.log(oracle) - 1.0


def write_experiment(directory, params=None):
    """An experiment directory as `raydm tune` leaves it, with the numbers of ROWS."""
    overrides = ["train.epochs=4"]
    config = load_config(SPACES / "moons.yaml", overrides)
    if params is not None:
        config = config.model_copy(update={"params": params})
    directory.mkdir(parents=True)
    (directory / layout.SPACE_FILE).write_text(config.to_yaml())
    metric = config.search.metric
    summaries = []
    for index, (trial_id, rows) in enumerate(ROWS.items(), start=1):
        trial_dir = directory / f"train_trial_{trial_id}_{index}_train_lr=0.0100_2026-11-23_13-04"
        trial_dir.mkdir()
        failed = trial_id == D
        columns = [metric, m.IM, m.NEG_ENTROPY, m.TARGET_ACC, f"{m.BEST_PREFIX}{metric}"]
        columns += [m.EPOCH, m.EPOCHS_PLANNED, "timestamp", "training_iteration", "trial_id"]
        columns += [m.FAILED, m.FAILURE_REASON] if failed else []
        best = -math.inf
        with (trial_dir / "progress.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for iteration, (epoch, acc, im, oracle) in enumerate(rows, start=1):
                last_of_failed = failed and iteration == len(rows)
                best = best if math.isnan(acc) else max(best, acc)
                row = {
                    metric: acc,
                    m.IM: im,
                    m.NEG_ENTROPY: NAN if math.isnan(oracle) else neg_entropy(oracle),
                    m.TARGET_ACC: oracle,
                    m.EPOCH: epoch,
                    m.EPOCHS_PLANNED: 4,
                    "timestamp": 1795439045 + iteration,
                    "training_iteration": iteration,
                    "trial_id": trial_id,
                }
                if last_of_failed:  # the failure report has no best/ value
                    row = {key: value for key, value in row.items() if key in (metric, m.EPOCH)}
                    row.update({"trial_id": trial_id, m.FAILED: 1.0, m.FAILURE_REASON: REASON})
                else:
                    row[f"{m.BEST_PREFIX}{metric}"] = best
                writer.writerow({key: "" if value is NAN else value for key, value in row.items()})
        good = [r for r in rows if not math.isnan(r[1])]
        best_row = max(good, key=lambda r: r[1])
        last = rows[-1]
        summaries.append(
            TrialSummary(
                trial_id=trial_id,
                status=STATUS[trial_id],
                params={key: PARAMS[trial_id][key] for key in config.params},
                epochs=last[0],
                final={metric: last[1], m.TARGET_ACC: last[3]} if not failed else {metric: NAN},
                best_value=NAN if failed else best_row[1],
                best_epoch=0 if failed else best_row[0],
                reason=REASON if failed else "",
            )
        )
    best = summaries[0]
    pick = Pick(metric, best.trial_id, best.best_epoch, best.best_value)
    checkpoint = f"train_trial_{best.trial_id}/checkpoint_{best.best_epoch - 1:06d}"
    ranking = [{"trial_id": best.trial_id, "epoch": best.best_epoch, "value": best.best_value}]
    chosen = Selection(pick, [{**ranking[0], layout.CHECKPOINT: checkpoint}])
    write_results(summaries, config, directory / layout.RESULTS_FILE, chosen)
    best_config = config.fixed({key: best.params[key] for key in config.params})
    (directory / layout.BEST_FILE).write_text(best_yaml(best_config, best, chosen, config))
    return directory


@pytest.fixture
def experiment_dir(tmp_path):
    return write_experiment(tmp_path / "moons-search")


def by_validator(experiment):
    return {row["validator"]: row for row in validator_table(experiment)}


def test_load_experiment_reads_results_histories_and_best_config(experiment_dir):
    experiment = load_experiment(experiment_dir)
    assert experiment.config.search.metric == m.SOURCE_VAL_ACC
    assert [row["trial_id"] for row in experiment.results] == [A, B, C, D]  # ranked
    first = experiment.results[0]
    assert first["status"] == "completed" and first["epochs"] == 4 and first["best_epoch"] == 3
    assert first["train.lr"] == 0.01 and first["best:val/source_acc"] == 0.90
    assert math.isnan(experiment.results[3]["best:val/source_acc"])
    assert experiment.results[3]["reason"] == REASON
    histories = experiment.histories
    assert list(histories["trial_id"].unique()) == [A, B, C, D]
    # B's repeated epoch 2 keeps its last report; D's failure row stays.
    assert len(histories) == 4 + 4 + 2 + 2
    b2 = histories[(histories["trial_id"] == B) & (histories[m.EPOCH] == 2)]
    assert b2[m.IM].tolist() == [0.99]
    assert histories[histories["trial_id"] == D][m.FAILED].tolist()[-1] == 1.0
    assert experiment.best_config_path == experiment_dir / "best.yaml"


def test_validator_table_picks_the_best_point_over_all_epochs(experiment_dir):
    rows = by_validator(load_experiment(experiment_dir))
    assert set(rows) == {m.SOURCE_VAL_ACC, m.IM, m.NEG_ENTROPY}
    # val/im peaks at B's epoch 2 (not its last, nor the selected trial), D's NaN ignored.
    im = rows[m.IM]
    assert (im["picked_trial"], im["picked_epoch"]) == (B, 2)
    assert im["picked_oracle_acc"] == pytest.approx(0.65)
    kept = [r for trial in (A, B, C) for r in ROWS[trial] if (trial, r[2]) != (B, 1.50)]
    assert im["points"] == len(kept) == 10
    expected = spearmanr([r[2] for r in kept], [r[3] for r in kept]).statistic
    assert im["spearman"] == pytest.approx(expected)
    assert -1 <= im["weighted_spearman"] <= 1
    # The selection metric's own pick: A's epoch 3 of 4; D's good epoch counts as a point.
    acc = rows[m.SOURCE_VAL_ACC]
    assert (acc["picked_trial"], acc["picked_epoch"]) == (A, 3)
    assert acc["picked_oracle_acc"] == pytest.approx(0.82)
    assert acc["points"] == 10


def test_a_validator_monotone_in_the_oracle_has_rank_correlation_one(experiment_dir):
    row = by_validator(load_experiment(experiment_dir))[m.NEG_ENTROPY]
    assert (row["picked_trial"], row["picked_epoch"]) == (A, 3)
    assert row["spearman"] == pytest.approx(1.0)
    assert row["weighted_spearman"] == pytest.approx(1.0)
    assert row["points"] == 10


def test_render_text_shows_leaderboard_best_config_failures_and_validators(experiment_dir):
    text = render_text(load_experiment(experiment_dir))
    lines = text.splitlines()
    assert lines[0].endswith(" trials, ranked by val/source_acc (max)")
    header = next(line for line in lines if line.startswith("trial "))
    assert "train.lr" in header and "best val/source_acc" in header and "@epoch" in header
    row_a = next(line for line in lines if line.startswith(A)).split()
    assert row_a[:5] == [A, "completed", "4", "0.01", "1"]
    assert row_a[5:] == ["0.9", "3", "0.8"]  # best, its epoch, final oracle accuracy
    row_d = next(line for line in lines if line.startswith(D)).split()
    assert row_d[1] == "failed" and row_d[5] == "nan"
    assert f"best config: {experiment_dir / 'best.yaml'}" in lines
    picked_by = lines[lines.index(f"best config: {experiment_dir / 'best.yaml'}") + 1]
    assert picked_by.startswith(f"Selected by raydm with {m.SOURCE_VAL_ACC}: trial {A}")
    assert f"  {D}: {REASON}" in lines
    row_im = next(line for line in lines if line.startswith(m.IM)).split()
    assert row_im[:4] == [m.IM, B, "2", "0.65"] and row_im[-1] == "10"
    row_ne = next(line for line in lines if line.startswith(m.NEG_ENTROPY)).split()
    assert row_ne[4:] == ["1", "1", "10"]


def test_to_json_is_plain_data_with_the_same_content(experiment_dir):
    experiment = load_experiment(experiment_dir)
    data = json.loads(json.dumps(to_json(experiment), allow_nan=False))
    assert set(data) == {"metric", "mode", "trials", "best_config", "failed", "validators"}
    assert (data["metric"], data["mode"]) == (m.SOURCE_VAL_ACC, "max")
    assert data["best_config"] == str(experiment_dir / "best.yaml")
    assert data["failed"] == [{"trial_id": D, "reason": REASON}]
    trials = {trial["trial_id"]: trial for trial in data["trials"]}
    assert [trial["trial_id"] for trial in data["trials"]] == [A, B, C, D]
    assert trials[A]["params"] == PARAMS[A]
    assert (trials[A]["best_value"], trials[A]["best_epoch"]) == (0.9, 3)
    assert trials[A]["final"][m.TARGET_ACC] == 0.80
    assert trials[C]["status"] == "stopped" and trials[C]["epochs"] == 2
    assert trials[D]["best_value"] is None  # nan
    validators = {row["validator"]: row for row in data["validators"]}
    assert validators[m.IM]["picked_trial"] == B and validators[m.IM]["picked_epoch"] == 2
    assert validators[m.NEG_ENTROPY]["spearman"] == pytest.approx(1.0)


def test_write_plots_writes_every_png(experiment_dir, tmp_path):
    out = tmp_path / "plots" / "nested"
    written = write_plots(load_experiment(experiment_dir), out)
    names = [path.name for path in written]
    assert names == [
        "learning_curves.png",
        "asha_rungs.png",
        "param_importance.png",
        "validators_vs_oracle.png",
    ]
    for path in written:
        assert path.parent == out and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_param_importance_covers_the_searched_params(experiment_dir):
    importances = param_importances(load_experiment(experiment_dir))
    assert set(importances) == {"train.lr", "method_args.lambda_max"}
    assert sum(importances.values()) == pytest.approx(1.0)


def test_param_importance_plot_is_skipped_with_one_param(tmp_path):
    config = load_config(SPACES / "moons.yaml")
    experiment = load_experiment(
        write_experiment(tmp_path / "one", params={"train.lr": config.params["train.lr"]})
    )
    with pytest.raises(ReportError, match="at least 2 searched params"):
        param_importances(experiment)
    written = write_plots(experiment, tmp_path / "plots")
    assert "param_importance.png" not in [path.name for path in written]
    assert not (tmp_path / "plots" / "param_importance.png").exists()
    assert (tmp_path / "plots" / "learning_curves.png").exists()


@pytest.mark.parametrize(
    ("grace", "factor", "max_t"),
    [(1, 3.0, 10), (2, 2.0, 4), (2, 2.0, 8), (1, 2.0, 5), (3, 4.0, 50)],
)
def test_asha_rungs_are_where_ray_places_them(grace, factor, max_t):
    from ray.tune.schedulers import ASHAScheduler

    asha = ASHAScheduler(
        metric="a", mode="max", max_t=max_t, grace_period=grace, reduction_factor=factor
    )
    milestones = sorted({float(rung[0]) for rung in asha._brackets[0]._rungs} | {max_t})
    scheduler = SchedulerConfig(grace_period=grace, reduction_factor=factor)
    assert scheduler.rungs(max_t) == milestones


@pytest.mark.parametrize("missing", ["directory", "search_space.yaml", "results.csv"])
def test_an_incomplete_experiment_is_a_one_line_report_error(experiment_dir, missing):
    if missing == "directory":
        path = experiment_dir.parent / "no-such-search"
    else:
        path = experiment_dir
        (experiment_dir / missing).unlink()
    with pytest.raises(ReportError) as error:
        load_experiment(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    if missing != "directory":
        assert missing in message


@pytest.mark.parametrize("text", ["", "a,b\n1,2\n"])
def test_a_results_file_without_trial_ids_is_a_one_line_report_error(experiment_dir, text):
    (experiment_dir / layout.RESULTS_FILE).write_text(text)
    with pytest.raises(ReportError) as error:
        load_experiment(experiment_dir)
    assert str(error.value) == (
        f"{experiment_dir / layout.RESULTS_FILE}: no trial_id column: not a results file raydm "
        "wrote"
    )


def test_plots_that_could_not_be_written_are_refused_before_the_report(experiment_dir, tmp_path):
    (tmp_path / "a file").write_text("")
    plots = tmp_path / "a file" / "figures"
    result = CliRunner().invoke(main, ["report", str(experiment_dir), "--plots", str(plots)])
    assert result.exit_code == 2
    assert result.output == (
        f"raydm: error: --plots {plots}: cannot write into {plots}: {tmp_path / 'a file'} is a "
        "file\n"
    )


def test_param_importance_is_refused_when_every_trial_scored_the_same(experiment_dir):
    experiment = load_experiment(experiment_dir)
    column = f"best:{experiment.metric}"
    same = [{**row, column: 0.5} for row in experiment.results if row["status"] != "failed"]
    with pytest.raises(ReportError, match="different val/source_acc values"):
        param_importances(dataclasses.replace(experiment, results=same))


def _finished_trial(trial_id: str, values: list[tuple[float, float]]):
    """A trial as Tune's ResultGrid hands it over: its reports, each epoch kept."""
    from types import SimpleNamespace

    import pandas as pd

    rows = [
        {m.EPOCH: epoch, m.EPOCHS_PLANNED: len(values), m.IM: im, m.SOURCE_VAL_ACC: accuracy}
        for epoch, (im, accuracy) in enumerate(values, start=1)
    ]
    kept = [(SimpleNamespace(path=f"/e/{trial_id}/checkpoint_{r[m.EPOCH]}"), r) for r in rows]
    return SimpleNamespace(
        metrics={**rows[-1], "trial_id": trial_id},
        metrics_dataframe=pd.DataFrame(rows),
        best_checkpoints=kept,
        checkpoint=None,
        path=f"/e/{trial_id}",
        error=None,
        config={"train.lr": 0.01},
    )


def test_a_tie_of_the_selector_goes_to_the_same_point_in_the_pick_and_the_report():
    from raydm.analysis import criterion_table
    from raydm.results import final_pick, summarize
    from raydm.selection import candidates

    overrides = ["search.metric=val/im", "search.select=val/source_acc", "params={}"]
    config = load_config(SPACES / "moons.yaml", overrides)
    # B was created first; A ranks first by IM. Both reach source accuracy 0.95 once.
    grid = [
        _finished_trial("B", [(0.1, 0.90), (0.2, 0.95)]),
        _finished_trial("A", [(0.3, 0.95), (0.4, 0.90)]),
    ]
    trials = summarize(grid, config)
    assert [t.trial_id for t in trials] == ["A", "B"]  # results.csv's order
    pick = final_pick(grid, trials, config, "/e", print).pick
    import pandas as pd

    histories = pd.concat([g.metrics_dataframe.assign(trial_id=g.path[-1]) for g in grid[::-1]])
    (reported,) = criterion_table(candidates(histories, {"A", "B"}), [m.SOURCE_VAL_ACC])
    assert (pick.trial_id, pick.epoch) == ("A", 1)
    assert (reported["picked_trial"], reported["picked_epoch"]) == ("A", 1)


def test_a_trial_the_interruption_left_running_is_interrupted_not_stopped():
    from raydm.results import trial_status

    last = {m.EPOCH: 2, m.EPOCHS_PLANNED: 4}
    assert trial_status({**last, m.DONE: False}, 4) == "interrupted"
    assert trial_status({**last, m.DONE: True}, 4) == "stopped"  # Tune marks ASHA's stops done
    assert trial_status({**last, m.EPOCH: 4, m.DONE: True}, 4) == "completed"
    assert trial_status({**last, m.FAILED: True, m.DONE: False}, 4) == "failed"
