import os

import pytest
import ray
from click.testing import CliRunner

from raydm.cli import main
from raydm.config import ConfigError, load_config
from raydm.search_space import Choice, IntRange, LogUniform
from tests.conftest import SPACES

VALID = """
method: dann
data: {source: moons, target: moons_rotated}
model: {backbone: mlp, classifier_hidden: []}
train: {epochs: 3}
params:
  train.lr: {loguniform: [1.0e-3, 1.0e-1]}
"""


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("train: {epochs: 3, lr_typo: 1}", "train.lr_typo: unknown key"),
        ("train: {epochs: three}", "train.epochs: Input should be a valid integer"),
        ("method: mcd", "method: unknown method 'mcd'; choose one of: cgdm, dann, source_only"),
        ("data: {source: mnist_typo, target: moons_rotated}", "data.source: unknown domain"),
        ("model: {backbone: vgg}", "model.backbone: unknown backbone 'vgg'"),
        ("resources: {gpu: 0.3}", "resources.gpu: gpu must be 0, a whole number, 1/k"),
        ("resources: {gpu: 1.5}", "resources.gpu: gpu must be 0, a whole number, 1/k"),
        (
            "params: {train.lr: {loguniform: [0.1, 0.01]}}",
            "params.train.lr: loguniform needs lo < hi",
        ),
        (
            "params: {train.lr: {loguniform: [0, 0.1]}}",
            "params.train.lr: loguniform needs bounds > 0",
        ),
        (
            "params: {train.lr: {loguniform: [-1, 0.1]}}",
            "params.train.lr: loguniform needs bounds > 0",
        ),
        ("params: {train.lr: {uniform: [0.1]}}", "params.train.lr: uniform takes a list [lo, hi]"),
        (
            "params: {train.lr: {normal: [0, 1]}}",
            "params.train.lr: a searched param is one mapping",
        ),
        (
            "params: {train.lrr: {uniform: [0.1, 0.2]}}",
            "params.train.lrr: train has no field 'lrr'",
        ),
        ("params: {method_args.nope: {uniform: [0.1, 0.2]}}", "method_args has no field 'nope'"),
        ("params: {train.lr: {uniform: [-1, 0.2]}}", "params.train.lr: value -1.0 is invalid"),
        (
            "params: {train.batch_size: {int: [1, 4]}}",
            "params.train.batch_size: value 1 is invalid",
        ),
        ("params: {train.epochs: {uniform: [1, 5]}}", "params.train.epochs: ASHA compares trials"),
        (
            "params: {train.batch_size: {uniform: [8, 64]}}",
            "value 29.392 is invalid for train.batch_size",
        ),
        (
            "params: {data.moons_rotation: {uniform: [0, 60]}}",
            "data.* is fixed for the whole search",
        ),
        ("params: {resources.cpu: {choice: [1, 2]}}", "resources.* is fixed for the whole search"),
        ("params: {train.seed: {choice: [0, 1]}}", "params.train.seed: it chooses the target"),
        (
            "params: {train.validation_samples: {choice: [50, 100]}}",
            "trials are compared on the same ones; run one search per value",
        ),
        ("params: {1: 2}", "params: key 1 is not a dotted field name"),
        ("search: {scheduler: {max_t: 2}}", "search.scheduler.max_t 2 is below train.epochs 3"),
        ("search: {scheduler: {max_t: 9}}", "search.scheduler.max_t 9 is above train.epochs 3"),
        ("search: {scheduler: {type: fifo, max_t: 2}}", "but fifo runs every trial for train"),
        ("resources: {gpu: true}", "resources.gpu: expected a number, got True"),
        ("resources: {gpu: -1}", "resources.gpu: gpu must be 0 or more, got -1"),
        ("resources: {cpu: .inf}", "resources.cpu: Input should be a finite number"),
        ("search: {metric: oracle/target_acc}", "search: oracle/target_acc uses target labels"),
        ("search: {metric: accuracy}", "search.metric: unknown metric 'accuracy'"),
        (
            "search: {metric: val/source_loss, mode: max}",
            "search.mode: max would rank val/source_loss backwards: it is better lower",
        ),
        ("model: {backbone: lenet}", "model.backbone lenet takes images but data.source moons"),
        ("params: {model.classifier_hidden: {choice: [[1], '[1]']}}", "must differ (to Optuna)"),
        ("search: {keep_checkpoints: 0}", "keep at least 1 checkpoint per trial, or all; got 0"),
        (
            "search: {keep_checkpoints: some}",
            "keep at least 1 checkpoint per trial, or all; got 'some'",
        ),
        ("search: {keep_checkpoints: true}", "search.keep_checkpoints: expected a number"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(write_space, edit, expected):
    base = VALID.replace("params:\n  train.lr: {loguniform: [1.0e-3, 1.0e-1]}\n", "")
    section = edit.split(":")[0]
    text = "\n".join(line for line in base.splitlines() if not line.startswith(f"{section}:"))
    path = write_space(text + "\n" + edit + "\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message
    # The same through the command line: exit code 2, that one line, no traceback.
    result = CliRunner().invoke(main, ["tune", "--space", str(path)])
    assert result.exit_code == 2
    assert result.output == f"raydm: error: {message}\n"


def test_cli_rejects_bad_file_with_exit_2_and_starts_nothing(write_space, tmp_path):
    path = write_space(VALID.replace("epochs: 3", "epochs: 3, lr: -1"))
    storage = tmp_path / "results"
    result = CliRunner().invoke(
        main, ["tune", "--space", str(path), "--storage-path", str(storage)]
    )
    assert result.exit_code == 2
    assert result.output.strip().count("\n") == 0
    assert "train.lr: Input should be greater than 0 (got -1)" in result.output
    assert "Traceback" not in result.output
    assert not storage.exists()
    assert not ray.is_initialized()


def test_cli_reports_invalid_yaml_and_missing_file(write_space):
    bad = write_space("train: {epochs: [1\n")
    result = CliRunner().invoke(main, ["tune", "--space", str(bad)])
    assert result.exit_code == 2 and "invalid YAML" in result.output
    result = CliRunner().invoke(main, ["tune", "--space", "no/such.yaml"])
    assert result.exit_code == 2 and "no/such.yaml: no such file" in result.output


def test_set_values_are_typed_by_the_schema(write_space):
    config = load_config(
        write_space(VALID),
        [
            "train.epochs=5",
            "train.lr=1e-3",
            "train.nesterov=true",
            "model.classifier_hidden=[8, 4]",
            "method_args.lambda_max=0.5",
            "params.method_args.gamma={uniform: [1, 20]}",
            "params.train.batch_size={choice: [16, 32]}",
            "params.method_args.discriminator_layers={int: [1, 3]}",
            "data.root=2024",
        ],
    )
    assert config.data.root == os.path.abspath("2024")  # a folder name that is a number
    assert config.train.epochs == 5 and isinstance(config.train.epochs, int)
    assert config.train.lr == pytest.approx(1e-3) and isinstance(config.train.lr, float)
    assert config.train.nesterov is True
    assert config.model.classifier_hidden == [8, 4]
    assert config.method_args.lambda_max == 0.5
    assert config.params["train.lr"] == LogUniform(1e-3, 1e-1)
    assert config.params["train.batch_size"] == Choice((16, 32))
    assert config.params["method_args.discriminator_layers"] == IntRange(1, 3)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("train.epochs=abc", "train.epochs: Input should be a valid integer"),
        ("train.nope=1", "train.nope: unknown key (from --set train.nope=1)"),
        ("train.epochs", "expected key.path=value"),
        (" =3", "--set ' =3': expected key.path=value"),
        ("method=dan", "method: unknown method 'dan'"),
        ("train.epochs=true", "train.epochs: expected a number, got True"),
        # Method and backbone options are guarded as the sections are.
        ("method_args.lambda_max=true", "method_args.lambda_max: expected a number, got True"),
        ("method_args.gamma=false", "method_args.gamma: expected a number, got False"),
        ("train=[1", "--set train=[1: line 1 invalid YAML"),
    ],
)
def test_bad_set_is_a_one_line_error(write_space, override, expected):
    result = CliRunner().invoke(
        main, ["tune", "--space", str(write_space(VALID)), "--set", override]
    )
    assert result.exit_code == 2
    assert expected in result.output
    assert result.output.strip().count("\n") == 0


def test_constant_param_sets_the_field(write_space):
    config = load_config(write_space(VALID + "  train.momentum: 0.5\n"))
    assert config.train.momentum == 0.5
    assert "train.momentum" not in config.params


def test_fixed_config_round_trips_through_yaml(write_space, tmp_path):
    config = load_config(write_space(VALID))
    fixed = config.fixed({"train.lr": 0.02})
    assert fixed.params == {} and fixed.train.lr == 0.02
    path = tmp_path / "fixed.yaml"
    path.write_text(fixed.to_yaml())
    assert load_config(path) == fixed
    with pytest.raises(ValueError, match="no value for searched params: train.lr"):
        config.fixed({})


def test_the_flagship_spaces_share_their_pair_and_the_baseline_its_network_and_budget():
    """A table of DANN and CGDM against source-only compares methods, nothing else."""
    dann, baseline, cgdm = (
        load_config(SPACES / name) for name in ("dann.yaml", "source_only.yaml", "cgdm.yaml")
    )
    assert (dann.data.source, dann.data.target) == ("mnist_offline", "mnistm_offline")
    assert dann.data == baseline.data == cgdm.data
    assert dann.model == baseline.model and dann.train == baseline.train
    assert dann.method_args.domain_passes == "separate"
    # The lambda ramp and the lr schedule span the planned iterations, set explicitly.
    assert dann.train.iters_per_epoch * dann.train.epochs == 1000


@pytest.mark.parametrize(
    "search, per_trial, ranking",
    [
        ({}, 1, ("val/source_acc", "max")),  # the pick's metric: each trial's best epoch
        ({"metric": "val/source_loss", "mode": "min"}, 1, ("val/source_loss", "min")),
        ({"metric": "val/source_loss"}, 1, ("val/source_loss", "min")),  # mode: its direction
        ({"select": "val/source_loss"}, 1, ("val/source_loss", "min")),  # its own direction
        ({"select": "val/bnm", "keep_checkpoints": 3}, 3, ("val/bnm", "max")),
        ({"select": "ensv"}, None, ("val/source_acc", "max")),  # EnsV ranks every epoch
        ({"select": "ensv", "keep_checkpoints": 2}, 2, ("val/source_acc", "max")),
        ({"keep_checkpoints": "all"}, None, ("val/source_acc", "max")),
    ],
)
def test_each_trial_keeps_the_checkpoints_the_final_pick_ranks(search, per_trial, ranking):
    config = load_config(SPACES / "moons.yaml", [f"search.{k}={v}" for k, v in search.items()])
    assert config.search.checkpoints_per_trial() == per_trial
    assert config.search.checkpoint_ranking() == ranking


@pytest.mark.parametrize(
    "settings, last_epoch, epochs",
    [
        ([], 8, frozenset()),  # the shipped dann.yaml ranks and selects by IM: none at all
        # dann.yaml: ASHA with grace 1 and factor 4 over 8 epochs compares at 1, 4 and 8.
        (["search.costly_validators=rungs"], 8, {1, 4, 8}),
        # A trial with fewer planned epochs ends at its own last.
        (["search.costly_validators=rungs"], 5, {1, 4, 5, 8}),
        (
            [
                "search.costly_validators=rungs",
                "search.scheduler.grace_period=2",
                "search.scheduler.reduction_factor=3",
            ],
            8,
            {2, 6, 8},
        ),  # 2 x 3 = 6
        (
            [
                "search.costly_validators=rungs",
                "search.scheduler.reduction_factor=2.5",
                "search.scheduler.grace_period=1",
            ],
            8,
            {1, 3, 7, 8},
        ),  # milestones 1, 2.5, 6.25: compared at the first epoch past each
        (["search.costly_validators=rungs", "search.scheduler.type=fifo"], 8, {8}),
        (["search.costly_validators=every_epoch"], 8, None),
        (["search.metric=val/snd"], 8, None),  # what steers ASHA and TPE is there every epoch
        (["search.select=val/class_ami"], 8, None),  # and so is what the final pick ranks by
        (["search.costly_validators=rungs", "search.select=val/im"], 8, {1, 4, 8}),
    ],
)
def test_where_the_costly_validators_are_computed(settings, last_epoch, epochs):
    config = load_config(SPACES / "dann.yaml", settings)
    assert config.costly_validator_epochs(last_epoch) == epochs


def test_a_choice_reads_back_what_this_and_older_raydm_versions_wrote():
    widths = Choice(([64, 64], [32]))
    assert widths.from_optuna([64, 64]) == [64, 64]  # a trial config from before JSON text
    assert widths.from_optuna("[32]") == [32]  # the JSON text Optuna stores
    names = Choice((["a"], ["b"]))
    assert names.from_optuna("['b']") == ["b"]  # an old results.csv cell: Python's text
    assert names.from_optuna('["b"]') == ["b"]
    assert Choice((1, "1")).from_optuna("1") == "1" and Choice((1, "1")).from_optuna(1) == 1


def test_a_key_given_twice_is_refused_not_silently_replaced(write_space):
    path = write_space(VALID + "train: {epochs: 9}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    line = len(VALID.splitlines()) + 1
    assert str(caught.value) == f"{path}: line {line} invalid YAML: 'train' is given twice"


def test_a_search_says_what_ranks_its_trials_and_what_picks_the_model():
    shipped = load_config(SPACES / "dann.yaml").search
    assert shipped.ranking_words() == "ranked by val/im (max)"
    split = load_config(
        SPACES / "moons.yaml", ["search.metric=val/source_loss", "search.select=ensv"]
    )
    assert split.search.ranking_words() == "ranked by val/source_loss (min), picked by ensv"
