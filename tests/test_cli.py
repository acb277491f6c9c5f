"""`raydm list` against the registries, and `raydm train` against separate runs and trials."""

import re
import statistics

import pytest
import torch
from click.testing import CliRunner

from raydm import engine
from raydm import metrics as m
from raydm.backbones import BACKBONES
from raydm.cli import main
from raydm.config import load_config
from raydm.data import DOMAINS, IMAGE_BENCHMARKS, PATH_DOMAINS
from raydm.data.pair import load_domain_pair
from raydm.methods import METHODS
from tests.conftest import SPACES


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("methods", METHODS.names()),
        ("backbones", BACKBONES.names()),
        ("validators", list(m.LABEL_FREE)),
        (
            "domains",
            DOMAINS.names()
            + [f"{prefix}:PATH" for prefix in PATH_DOMAINS]
            + [f"{name}:{'|'.join(domains)}" for name, (domains, _) in IMAGE_BENCHMARKS.items()],
        ),
    ],
)
def test_list_prints_one_line_per_registered_entry(kind, expected):
    result = CliRunner().invoke(main, ["list", kind])
    assert result.exit_code == 0, result.output
    assert [line.split()[0] for line in result.output.splitlines()] == expected


def test_list_shows_the_options_each_entry_takes():
    lines = {
        line.split()[0]: line
        for line in CliRunner().invoke(main, ["list", "methods"]).output.splitlines()
    }
    assert "lambda_max=1.0" in lines["dann"] and "gamma=10.0" in lines["dann"]
    assert "w_gd=0.01" in lines["cgdm"] and "num_k=4" in lines["cgdm"]
    assert CliRunner().invoke(main, ["list", "everything"]).exit_code == 2


def test_train_seeds_reports_mean_and_sd_over_separate_runs(data_root, write_space):
    overrides = [f"data.root={data_root}", "params={}", "train.epochs=2", "train.iters_per_epoch=5"]
    space = SPACES / "moons.yaml"
    result = CliRunner().invoke(
        main,
        ["train", "--config", str(space), "--seeds", "2"]
        + sum((["--set", o] for o in overrides), []),
    )
    assert result.exit_code == 0, result.output
    assert "final metrics over 2 seeds (mean ± sd):" in result.output
    shown = dict(
        line.strip().split(": ", 1) for line in result.output.splitlines() if line.startswith("  ")
    )
    config = load_config(space, overrides)
    data = load_domain_pair(config.data)
    runs = [
        engine.fit(config.with_values({"train.seed": seed}), data)
        for seed in (config.train.seed, config.train.seed + 1)
    ]
    values = [run[m.TARGET_ACC] for run in runs]
    assert values[0] != values[1]  # different seeds, different runs
    mean, sd = (float(part) for part in shown[m.TARGET_ACC].split(" ± "))
    assert mean == pytest.approx(statistics.mean(values), abs=1e-4)
    assert sd == pytest.approx(statistics.stdev(values), abs=1e-4)


@pytest.mark.parametrize("space", sorted(SPACES.glob("*.yaml")), ids=lambda path: path.name)
def test_dry_run_shows_the_search_and_starts_nothing(space):
    import ray

    result = CliRunner().invoke(main, ["tune", "--space", str(space), "--dry-run"])
    assert result.exit_code == 0, result.output
    config = load_config(space)
    out = result.output
    assert "resolved config (after --set):" in out and f"method: {config.method}" in out
    for key in config.params:
        assert f"  {key}: " in out.split("search space as Optuna sees it:")[1]
    epochs = config.max_epochs()
    trials = config.search.num_samples
    assert f"budget: {trials} trials x {epochs} epochs = at most {trials * epochs} epochs" in out
    assert re.search(r"this machine: \d+ CPUs \((affinity|cgroup CPU quota [\d.]+)\)", out)
    assert out.rstrip().endswith("dry run: nothing started")
    assert not ray.is_initialized()


def test_train_runs_torch_on_the_configs_cpus_as_a_searchs_trial_does(
    data_root, monkeypatch, keep_torch_threads
):
    # Another thread count sums CPU ops in another order: a rerun of a best.yaml would drift
    # from the trial it repeats.
    threads_in_fit = []
    real_fit = engine.fit

    def fit(*args, **kwargs):
        threads_in_fit.append(torch.get_num_threads())
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(engine, "fit", fit)
    torch.set_num_threads(3)  # a fresh process starts one per core
    overrides = [f"data.root={data_root}", "params={}", "train.epochs=1", "train.iters_per_epoch=2"]
    for cpus in (1, 2):
        result = CliRunner().invoke(
            main,
            ["train", "--config", str(SPACES / "moons.yaml"), "--set", f"resources.cpu={cpus}"]
            + sum((["--set", o] for o in overrides), []),
        )
        assert result.exit_code == 0, result.output
    assert threads_in_fit == [1, 2]
