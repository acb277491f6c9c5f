"""What each entry point loads: the Ray worker and the cheap commands stay light."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter per check


def test_the_ray_worker_imports_no_reporting_code():
    # What a trial's process loads: no report, plots or selection (Ray Tune itself brings
    # pandas, so pandas is not checked).
    loaded = _loaded_by("raydm.trainable")
    for heavy in ("matplotlib", "raydm.report", "raydm.results", "raydm.selection"):
        assert heavy not in loaded, heavy


def test_a_search_driver_imports_no_scikit_learn_before_ray_starts():
    # Its imports are on the way to the first trial; only the costly validators use it, in
    # the trials.
    loaded = _loaded_by("raydm.tuning")
    assert "raydm.validators" in loaded  # through the trainable: the check reaches it
    assert "sklearn" not in loaded and "scipy" not in loaded


def test_the_report_reads_an_experiment_without_ray():
    assert "ray" not in _loaded_by("raydm.report")


def _loaded_by(module: str) -> list[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def test_the_data_package_does_not_import_the_config_that_validates_its_names():
    # config imports data's domain look-up; data names DataConfig for type hints only.
    assert not {"raydm.config", "raydm.sections"} & set(_loaded_by("raydm.data"))


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["list", "methods"],
        ["list", "domains"],
        ["list", "backbones"],
        ["list", "validators"],
        ["tune", "--space", "search_spaces/cgdm.yaml", "--dry-run"],
        ["tune", "--space", "search_spaces/dann.yaml", "--set", "train.epochs=0"],
    ],
    ids=lambda command: " ".join(command[:2]) + (" (error)" if "train.epochs=0" in command else ""),
)
def test_cheap_commands_import_neither_torch_nor_scikit_learn(command):
    root = Path(__file__).resolve().parent.parent
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "raydm.cli", *command],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert run.returncode == (2 if "train.epochs=0" in command else 0), run.stderr[-500:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert imported, "no import times: -X importtime did not run"
    assert not {"torch", "sklearn"} & imported


def test_a_trial_with_no_costly_validator_to_compute_never_imports_scikit_learn(tmp_path):
    # Only the costly validators use it (ClassAMI's k-means, the importance-weighted domain
    # classifier): a trial of the shipped spaces, which rank by none, skips its import (1-1.5 s
    # of a trial process's first epoch on 2 cores).
    import torch

    from raydm.config import load_config
    from raydm.data.pair import load_domain_pair

    root = Path(__file__).resolve().parent.parent
    overrides = [f"data.root={tmp_path}", "params={}", "train.epochs=2", "train.iters_per_epoch=2"]
    config = load_config(root / "search_spaces" / "moons.yaml", overrides)
    saved = tmp_path / "pair.pt"
    torch.save(load_domain_pair(config.data), saved)  # moons are made by scikit-learn
    code = f"""
import sys, torch
from raydm import engine
from raydm.config import load_config
config = load_config({str(root / "search_spaces" / "moons.yaml")!r}, {overrides!r})
data = torch.load({str(saved)!r}, weights_only=False)
for costly_epochs, name in ((frozenset(), "none"), ({{2}}, "epoch 2")):
    metrics = engine.fit(config, data, costly_epochs=costly_epochs)
    print(name, "sklearn" in sys.modules, metrics["val/class_ami"] == metrics["val/class_ami"])
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert run.returncode == 0, run.stderr[-800:]
    # The check can fail: a run that computes them imports it and gets a ClassAMI value.
    assert run.stdout.split("\n")[:2] == ["none False False", "epoch 2 True True"]
