"""What a search delivers: its selected model labels the user's images (raydm predict), alone
or as an ensemble of kept checkpoints, and leaves as a torch.export program (raydm export)."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import ray
import torch
from click.testing import CliRunner
from PIL import Image

from raydm.cli import main
from raydm.data import find_domain
from raydm.data.files import decode_image
from raydm.data.pair import random_split
from raydm.data.samples import seed_for
from raydm.experiment import load_experiment
from raydm.sections import DataConfig

pytestmark = pytest.mark.ray

SPACE = """
method: dann
data:
  source: digits_printed
  target: folder:{target}
  root: {root}
  printed_per_class: 12
  image_size: 16
  target_test_fraction: 0.3
model: {{backbone: lenet, backbone_args: {{batch_norm: true}}, classifier_hidden: [64]}}
train: {{epochs: 3, iters_per_epoch: 30, batch_size: 32, eval_batch_size: 64}}
search:
  num_samples: 2
  scheduler: {{type: fifo}}
  searcher: {{n_startup_trials: 2}}
resources: {{cpu: 1}}
params: {{train.lr: {{loguniform: [1.0e-2, 5.0e-2]}}}}
"""


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A finished search on printed digits -> a folder of other printed digit PNGs."""
    root = tmp_path_factory.mktemp("predict")
    target = root / "target"
    # Digits printed in other fonts' draws (seed 1): a target the model learns well enough
    # for its labels to be worth checking.
    config = DataConfig(root=str(root / "data"), image_size=16, printed_per_class=30, seed=1)
    printed = find_domain("digits_printed").build(config).train
    for index in range(len(printed)):
        path = target / str(int(printed.labels[index])) / f"{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(printed.inputs[index, 0].numpy()).save(path)
    space = root / "space.yaml"
    space.write_text(SPACE.format(target=target, root=root / "data"))
    storage = root / "results"
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        command = ["tune", "--space", str(space), "--name", "run", "--storage-path", str(storage)]
        result = CliRunner().invoke(main, command)
        assert result.exit_code == 0, result.output
    finally:
        ray.shutdown()
    return storage / "run", target


def _predict(experiment, *options):
    return CliRunner().invoke(main, ["predict", str(experiment), *map(str, options)])


def _rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_predict_labels_the_target_test_images_as_the_search_scored_them(searched, tmp_path):
    experiment, target = searched
    # The target test split, as the search drew it: a seeded permutation of the folder's files.
    files = sorted(target.rglob("*.png"), key=lambda p: (p.parent.name, p.name))
    _, test_index = random_split(len(files), 0.3, seed_for(0, "target-test"))
    test_folder = tmp_path / "test"
    for i in test_index.tolist():
        destination = test_folder / files[i].parent.name / files[i].name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(files[i], destination)
    out = tmp_path / "labels.csv"
    result = _predict(experiment, "--images", f"folder:{test_folder}", "--out", out)
    assert result.exit_code == 0, result.output
    rows = _rows(out)
    assert len(rows) == len(test_index)
    accuracy = sum(Path(r["path"]).parent.name == r["prediction"] for r in rows) / len(rows)
    top = json.loads((experiment / "pick.json").read_text())["ranking"][0]
    histories = load_experiment(experiment).histories
    trial = histories[histories["trial_id"] == top["trial_id"]].set_index("epoch")
    reported = float(trial.loc[top["epoch"], "oracle/target_acc"])
    assert accuracy > 0.5  # a model that learned something: its labels are not all one class
    assert accuracy == pytest.approx(reported, abs=1e-6)  # float32, as reported
    assert all(0 < float(r["confidence"]) <= 1 for r in rows)


def test_an_ensemble_averages_the_top_kept_checkpoints(searched, tmp_path):
    experiment, target = searched
    ranking = json.loads((experiment / "pick.json").read_text())["ranking"]
    assert len(ranking) >= 2
    images = ("--images", f"folder:{target / '3'}", "--probabilities")
    singles = []
    for row in ranking[:2]:
        out = tmp_path / f"{row['trial_id']}-{row['epoch']}.csv"
        chosen = ("--trial", row["trial_id"], "--epoch", row["epoch"])
        assert _predict(experiment, *images, *chosen, "--out", out).exit_code == 0
        singles.append(_rows(out))
    out = tmp_path / "ensemble.csv"
    result = _predict(experiment, *images, "--ensemble", 2, "--out", out)
    assert result.exit_code == 0, result.output
    ensemble = _rows(out)
    columns = [c for c in ensemble[0] if c.startswith("p_")]
    assert columns == [f"p_{d}" for d in range(10)]
    for mixed, first, second in zip(ensemble, *singles, strict=True):
        probabilities = [float(mixed[c]) for c in columns]
        assert sum(probabilities) == pytest.approx(1, abs=1e-4)
        for c in columns:
            mean = (float(first[c]) + float(second[c])) / 2
            assert float(mixed[c]) == pytest.approx(mean, abs=2e-6)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing experiment", "no such experiment directory"),
        ("no kept checkpoint", "no kept checkpoint there"),
        ("unreadable image", "broken.png cannot be read"),
        ("class mismatch", "the images' domain has the classes upper, lower, but the model"),
        ("unknown candidate", "trial nope has no kept checkpoint; kept: trial"),
        ("ensemble of one trial", "--ensemble takes the top kept checkpoints; --trial names"),
        ("empty checkpoint file", "state.pt: not a checkpoint raydm wrote (EOFError)"),
        ("config of another input size", "its weights do not fit the network of its config.yaml"),
        ("config of another network", "its weights do not fit the network of its config.yaml"),
        ("no kept checkpoint listed", "pick.json: lists no kept checkpoint"),
        ("output under a file", "cannot write into"),
    ],
)
def test_bad_input_is_one_line_a_non_zero_exit_and_writes_nothing(
    searched, tmp_path, case, message
):
    experiment, target = searched
    images = f"folder:{target / '1'}"
    extra = []
    if case == "missing experiment":
        experiment = tmp_path / "nowhere"
    elif case == "no kept checkpoint":
        copy = tmp_path / "copy"
        shutil.copytree(experiment, copy)
        top = json.loads((copy / "pick.json").read_text())["ranking"][0]
        shutil.rmtree(copy / top["checkpoint"])
        experiment = copy
    elif case == "unreadable image":
        broken = tmp_path / "images"
        shutil.copytree(target / "1", broken)
        (broken / "broken.png").write_bytes(b"not a png")
        images = f"folder:{broken}"
    elif case == "class mismatch":
        images = "moons"
    elif case == "unknown candidate":
        extra = ["--trial", "nope"]
    elif case == "ensemble of one trial":
        extra = ["--trial", "nope", "--ensemble", "2"]
    out = tmp_path / "labels.csv"
    if case in DAMAGES:
        experiment = _damaged_copy(experiment, tmp_path / "copy", DAMAGES[case])
    elif case == "output under a file":
        (tmp_path / "a file").write_text("")
        extra = ["--out", tmp_path / "a file" / "labels.csv"]  # the last --out counts
    result = _predict(experiment, "--images", images, "--out", out, *extra)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("raydm: error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not out.exists() and not list(tmp_path.glob(".labels.csv*"))


def _empty(checkpoint: Path) -> None:
    (checkpoint / "state.pt").write_bytes(b"")


def _edit_config(old: str, new: str):
    def edit(checkpoint: Path) -> None:
        config = checkpoint / "config.yaml"
        assert old in config.read_text()
        config.write_text(config.read_text().replace(old, new))

    return edit


DAMAGES = {
    "empty checkpoint file": _empty,
    "config of another input size": _edit_config("image_size: 16", "image_size: 24"),
    "config of another network": _edit_config(
        "classifier_hidden:\n  - 64", "classifier_hidden:\n  - 7"
    ),
    "no kept checkpoint listed": None,  # pick.json's ranking emptied
}


def _damaged_copy(experiment: Path, copy: Path, damage) -> Path:
    """A copy of ``experiment`` whose selected checkpoint (or pick.json) is damaged."""
    shutil.copytree(experiment, copy)
    pick = json.loads((copy / "pick.json").read_text())
    if damage is None:
        (copy / "pick.json").write_text(json.dumps({**pick, "ranking": []}))
    else:
        damage(copy / pick["ranking"][0]["checkpoint"])
    return copy


@pytest.mark.parametrize("case", list(DAMAGES))
def test_export_of_a_damaged_experiment_is_one_line_and_writes_nothing(searched, tmp_path, case):
    experiment = _damaged_copy(searched[0], tmp_path / "copy", DAMAGES[case])
    out = tmp_path / "model.pt2"
    result = CliRunner().invoke(main, ["export", str(experiment), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("raydm: error: ") and result.output.count("\n") == 1
    assert not out.exists()


def test_the_exported_model_runs_in_plain_torch_as_predict_does(searched, tmp_path):
    experiment, target = searched
    model_file = tmp_path / "model.pt2"
    result = CliRunner().invoke(main, ["export", str(experiment), "--out", str(model_file)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "labels.csv"
    images = ("--images", f"folder:{target / '7'}", "--probabilities")
    assert _predict(experiment, *images, "--out", out).exit_code == 0
    rows = _rows(out)
    batch = torch.stack([decode_image(r["path"], 16, 1) for r in rows])
    torch.save(batch, tmp_path / "batch.pt")
    # A fresh interpreter in which raydm cannot be imported.
    script = f"""
import json, sys
sys.modules["raydm"] = None
import torch
extra = {{"raydm.json": ""}}
model = torch.export.load({str(model_file)!r}, extra_files=extra).module()
info = json.loads(extra["raydm.json"])
with torch.no_grad():
    probabilities = model(torch.load({str(tmp_path / "batch.pt")!r}))
out = {{"probabilities": probabilities, "classes": info["class_names"]}}
torch.save(out, {str(tmp_path / "out.pt")!r})
"""
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path
    )
    assert run.returncode == 0, run.stderr
    exported = torch.load(tmp_path / "out.pt")
    assert exported["classes"] == [str(d) for d in range(10)]
    predicted = torch.tensor([[float(r[f"p_{d}"]) for d in range(10)] for r in rows])
    assert torch.allclose(exported["probabilities"], predicted, atol=1e-5)


def test_an_image_list_with_placeholder_labels_is_labelled_whole(searched, tmp_path):
    # Unlabelled images listed with a placeholder label, as an image list needs one.
    experiment, target = searched
    paths = sorted(target.rglob("*.png"))[:25]
    listing = tmp_path / "unlabelled.txt"
    listing.write_text("".join(f"{path} 0\n" for path in paths))
    out = tmp_path / "labels.csv"
    result = _predict(experiment, "--images", f"list:{listing}", "--out", out)
    assert result.exit_code == 0, result.output
    assert [row["path"] for row in _rows(out)] == [str(path) for path in paths]


def test_a_full_disk_while_writing_labels_is_one_error_and_leaves_no_part_file(
    tmp_path, monkeypatch
):
    from raydm import predict

    def full(*_):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(predict.os, "replace", full)
    out = tmp_path / "labels.csv"
    with pytest.raises(predict.PredictError) as error:
        predict.write_predictions(out, ["a"], torch.tensor([[0.2, 0.8]]), ("x", "y"), False)
    assert str(error.value) == f"{out}: cannot write (No space left on device)"
    assert list(tmp_path.iterdir()) == []
