"""A finished search as users look at it: TensorBoard (read through its own HTTP data API)
and `raydm report`."""

import json
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from click.testing import CliRunner

from raydm import metrics as m
from raydm.cli import main
from tests.conftest import moons_dann, tune_ok


def _get(url: str, body: dict | None = None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.ray
@pytest.mark.slow
def test_board_and_report_show_every_trial(tmp_path, write_space, ray_session):
    space = write_space(
        moons_dann(
            tmp_path / "data",
            """
train: {epochs: 2, iters_per_epoch: 5}
search: {num_samples: 2, scheduler: {type: fifo}, costly_validators: rungs}
params: {train.lr: {loguniform: [1.0e-3, 1.0e-1]}}
""",
        )
    )
    storage = tmp_path / "results"
    tune_ok(space, "tb", storage)

    report = CliRunner().invoke(main, ["report", str(storage / "tb"), "--format", "json"])
    assert report.exit_code == 0, report.output
    summary = json.loads(report.output)
    assert summary["metric"] == "val/source_acc" and len(summary["trials"]) == 2
    # Every label-free criterion, EnsV included: each trial's last checkpoint kept the target
    # softmax of both its epochs.
    validators = [row["validator"] for row in summary["validators"]]
    assert validators == list(m.LABEL_FREE)
    for row in summary["validators"]:
        # 2 trials x 2 epochs; under fifo the costly validators only at each trial's last.
        assert row["points"] == (2 if row["validator"] in m.COSTLY_VALIDATORS else 4), row

    board = subprocess.Popen(
        [sys.executable, "-m", "raydm.cli", "board", str(storage / "tb"), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = board.stdout.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
        assert match, line  # bound to loopback unless asked otherwise
        url = match.group(1)
        runs = []
        for _ in range(60):  # TensorBoard loads event files in the background
            runs = _get(url + "data/runs")
            if len(runs) == 2:
                break
            time.sleep(0.5)
        assert len(runs) == 2 and all(run.startswith("train_trial_") for run in runs)
        tag = urllib.parse.quote("ray/tune/val/source_acc")
        series = _get(
            f"{url}data/plugin/scalars/scalars?run={urllib.parse.quote(runs[0])}&tag={tag}"
        )
        assert [step for _, step, _ in series] == [1, 2]  # one point per epoch
        experiment = _get(url + "data/plugin/hparams/experiment", {"experimentName": ""})
        assert [h["name"] for h in experiment["hparamInfos"]] == ["train.lr"]
        metric_tags = {info["name"]["tag"] for info in experiment["metricInfos"]}
        assert {"ray/tune/best/val/source_acc", "ray/tune/oracle/target_acc"} <= metric_tags
        assert "ray/tune/val/snd" in metric_tags  # the label-free validators too
        groups = _get(
            url + "data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 100,
            },
        )
        assert groups["totalSize"] == 2  # one HParams session per trial
    finally:
        board.terminate()
        board.wait(timeout=30)
