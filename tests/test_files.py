"""Domains from the user's own files, built in their real on-disk formats."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from raydm.cli import main
from raydm.config import load_config
from raydm.data import find_domain
from raydm.data.files import check_readable, decode_image
from raydm.data.pair import load_domain_pair
from raydm.sections import DataConfig
from tests.conftest import tune_ok, tune_refused

CLASSES = ("cat", "dog", "fox")


def _image(path, value: int, size=(20, 14)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    pixels[: size[1] // 2] = 255 - value  # a top/bottom pattern that survives resizing
    Image.fromarray(pixels).save(path)


def _folder(root, per_class=6, classes=CLASSES, fmt="png"):
    for index, name in enumerate(classes):
        for i in range(per_class):
            _image(root / name / f"img {i}.{fmt}", 40 * index + i)
    return root


def test_image_folder_gives_sorted_classes_labels_and_resized_tensors(tmp_path):
    _folder(tmp_path / "product", fmt="jpg")
    _folder(tmp_path / "real")
    config = DataConfig(
        source=f"folder:{tmp_path / 'product'}",
        target=f"folder:{tmp_path / 'real'}",
        image_size=16,
        image_channels=3,
        source_val_fraction=0.34,
    )
    pair = load_domain_pair(config)
    assert pair.class_names == CLASSES
    assert pair.input_shape == (3, 16, 16)
    assert pair.source_train.inputs.dtype == torch.uint8
    assert len(pair.source_train) + len(pair.source_val) == 18
    assert torch.equal(pair.source_val.labels.bincount(), torch.tensor([2, 2, 2]))
    # The pixel values tell which class folder an image came from.
    for images, labels in [(pair.target_train.inputs, pair.target_train.labels)]:
        bottom = images[:, 0, -1, 0].long()
        assert torch.equal(bottom // 40, labels)
    grey = load_domain_pair(config.model_copy(update={"image_channels": 1}))
    assert grey.input_shape == (1, 16, 16)


def test_image_list_labels_are_the_last_token_and_paths_relative_to_the_list(tmp_path):
    lines = []
    for label in (0, 2, 5):
        for i in range(4):
            relative = f"images/class {label}/{i}.png"
            _image(tmp_path / relative, 40 * label // 5 + i)
            lines.append(f"{relative} {label}")
    listing = tmp_path / "image_list.txt"
    listing.write_text("\n".join(lines) + "\n\n")
    config = DataConfig(source=f"list:{listing}", target=f"list:{listing}", image_size=8)
    pair = load_domain_pair(config)
    assert pair.class_names == ("0", "2", "5")
    assert (
        sorted(pair.target_train.labels.tolist() + pair.target_test.labels.tolist())
        == [0] * 4 + [1] * 4 + [2] * 4
    )


def test_class_mismatch_through_the_cli_is_one_line_and_starts_nothing(tmp_path, write_space):
    _folder(tmp_path / "a")
    _folder(tmp_path / "b", classes=("cat", "dog", "owl"))
    space = write_space(
        f"method: dann\ndata: {{source: 'folder:{tmp_path / 'a'}', "
        f"target: 'folder:{tmp_path / 'b'}'}}\n"
    )
    lines = tune_refused(space, tmp_path / "results")
    assert len(lines) == 2  # "preparing data ..." and the error line
    assert lines[-1].startswith(f"raydm: error: {space}: data.source folder:")
    assert "only in target: ['owl']" in lines[-1]


def test_class_mismatch_names_both_domains_and_the_classes(tmp_path):
    _folder(tmp_path / "a")
    _folder(tmp_path / "b", classes=("cat", "dog", "owl"))
    config = DataConfig(source=f"folder:{tmp_path / 'a'}", target=f"folder:{tmp_path / 'b'}")
    with pytest.raises(ValueError) as caught:
        load_domain_pair(config)
    message = str(caught.value)
    assert f"folder:{tmp_path / 'a'}" in message and f"folder:{tmp_path / 'b'}" in message
    assert "only in source: ['fox']" in message and "only in target: ['owl']" in message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root, "does not exist"),
        (lambda root: (root.mkdir(), root)[1], "has no class sub-folders"),
    ],
)
def test_missing_folder_is_a_one_line_error_naming_file_and_key(
    tmp_path, write_space, make, expected
):
    path = make(tmp_path / "nowhere")
    space = write_space(
        f"method: source_only\ndata: {{source: 'folder:{path}', target: digits_handwritten}}\n"
    )
    load_config(space)  # the name is valid; whether the folder exists is the loader's question
    result = CliRunner().invoke(main, ["train", "--config", str(space)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f"raydm: error: {space}: data.source: folder {path} {expected}"
        + (" (expected PATH/<class>/<image>)" if "sub-folders" in expected else "")
    ]


def test_corrupt_image_and_bad_list_line_are_clear_errors(tmp_path):
    _folder(tmp_path / "ok")
    (tmp_path / "ok" / "cat" / "broken.png").write_bytes(b"not a png")
    config = DataConfig(source=f"folder:{tmp_path / 'ok'}", target=f"folder:{tmp_path / 'ok'}")
    with pytest.raises(ValueError, match="broken.png cannot be read"):
        load_domain_pair(config)
    listing = tmp_path / "list.txt"
    listing.write_text("a.png 0\nno-label-here\n")
    config = DataConfig(source=f"list:{listing}", target=f"list:{listing}")
    with pytest.raises(ValueError, match="list.txt line 2: expected 'relative/path label'"):
        load_domain_pair(config)
    listing.write_text("missing.png 0\n")
    with pytest.raises(ValueError, match="missing.png does not exist"):
        load_domain_pair(config)


def test_raydm_train_runs_on_two_image_folders(tmp_path, write_space):
    _folder(tmp_path / "src", per_class=8)
    _folder(tmp_path / "tgt", per_class=8)
    space = write_space(
        f"""
method: dann
data: {{source: 'folder:{tmp_path / "src"}', target: 'folder:{tmp_path / "tgt"}', image_size: 32}}
model: {{backbone: lenet, backbone_args: {{batch_norm: true}}}}
train: {{epochs: 2, batch_size: 8, iters_per_epoch: 3}}
"""
    )
    result = CliRunner().invoke(main, ["train", "--config", str(space)])
    assert result.exit_code == 0, result.output
    assert "epoch 2/2" in result.output and "oracle/target_acc" in result.output


@pytest.mark.ray
def test_search_streaming_two_image_folders_end_to_end(tmp_path, write_space, ray_session):
    _folder(tmp_path / "src", per_class=8)
    _folder(tmp_path / "tgt", per_class=8)
    space = write_space(
        f"""
method: dann
data: {{source: 'folder:{tmp_path / "src"}', target: 'folder:{tmp_path / "tgt"}', storage: stream}}
model: {{backbone: lenet}}
train: {{epochs: 2, batch_size: 8, iters_per_epoch: 2}}
search: {{num_samples: 2, scheduler: {{type: fifo}}}}
params: {{train.lr: {{loguniform: [1.0e-3, 1.0e-1]}}}}
"""
    )
    storage = tmp_path / "results"
    tune_ok(space, "folders", storage)
    rows = (storage / "folders" / "results.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",completed," in row for row in rows[1:])
    assert (
        load_config(storage / "folders" / "best.yaml").data.source == f"folder:{tmp_path / 'src'}"
    )


def test_hidden_entries_are_skipped_and_linked_folders_followed(tmp_path):
    root = _folder(tmp_path / "d", per_class=2)
    (root / ".ipynb_checkpoints").mkdir()  # would be a class the other domain lacks
    (root / "cat" / "._img 0.png").write_bytes(b"a Mac resource fork, no image")
    _image(root / "cat" / ".thumbnails" / "img 0.png", 0)  # a copy: it could reach two splits
    _image(tmp_path / "more" / "extra.png", 7)
    (root / "dog" / "more").symlink_to(tmp_path / "more", target_is_directory=True)
    (root / "dog" / "more" / "loop").symlink_to(root / "dog", target_is_directory=True)
    samples = find_domain(f"folder:{root}").build(DataConfig())
    assert samples.class_names == CLASSES
    names = sorted(str(path).removeprefix(f"{root}/") for path in samples.train.paths)
    assert names == [
        "cat/img 0.png", "cat/img 1.png",
        "dog/img 0.png", "dog/img 1.png", "dog/more/extra.png",
        "fox/img 0.png", "fox/img 1.png",
    ]  # fmt: skip


def test_a_16_bit_grey_image_is_scaled_to_8_bits_not_clipped(tmp_path):
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    decoded = decode_image(str(tmp_path / "deep.png"), 16, 1)[0, 0]
    assert decoded.tolist() == np.round(ramp[0] / 257).astype(int).tolist()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cat/img 0.png 0\ncat/img 0.png 0\n", "line 2: cat/img 0.png is listed again"),
        ("cat/img 0.png ²\n", "line 1: expected 'relative/path label'"),
        ("caf\xe9/a.png 0\n", "is not UTF-8 text"),
    ],
)
def test_a_bad_image_list_is_refused_naming_its_line(tmp_path, text, expected):
    _folder(tmp_path, per_class=2)
    listing = tmp_path / "list.txt"
    listing.write_bytes(text.encode("latin-1" if "\xe9" in text else "utf-8"))
    with pytest.raises(ValueError, match=expected):
        find_domain(f"list:{listing}").build(DataConfig())


def test_an_image_list_with_a_byte_order_mark_reads_its_first_path(tmp_path):
    _folder(tmp_path, per_class=2)
    listing = tmp_path / "list.txt"
    listing.write_text("\ufeffcat/img 0.png 0\ndog/img 0.png 1\n", encoding="utf-8")
    samples = find_domain(f"list:{listing}").build(DataConfig())
    assert [str(p) for p in samples.train.paths][0] == str(tmp_path / "cat" / "img 0.png")


def test_a_folder_and_a_list_of_the_same_numbered_classes_in_another_order_say_so(tmp_path):
    classes = tuple(str(k) for k in range(1, 12))  # folders sort 1, 10, 11, 2, ...
    root = tmp_path / "d"
    for k in classes:
        _image(root / k / "img 0.png", 20 * int(k))
    listing = tmp_path / "d" / "list.txt"
    listing.write_text("".join(f"{k}/img 0.png {k}\n" for k in classes))
    config = DataConfig(source=f"folder:{root}", target=f"list:{listing}")
    with pytest.raises(ValueError, match="have the same classes in another order"):
        load_domain_pair(config)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_truncated_streamed_image_is_a_one_line_data_error_when_a_batch_reaches_it(
    tmp_path, workers
):
    from raydm.data.pair import DataError
    from raydm.data.pipeline import Loader, evaluation_batches

    root = _folder(tmp_path / "d", per_class=2, fmt="jpg")
    broken = root / "dog" / "img 1.jpg"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(broken, quality=95)
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])  # header, half the data
    files = find_domain(f"folder:{root}").build(DataConfig()).train
    check_readable(files)  # the streamed check reads headers only: it passes
    with pytest.raises(DataError) as caught:
        list(evaluation_batches(files, 2, Loader(16, 3, workers, False)))
    assert str(caught.value).startswith(f"data: image {broken} cannot be read: ")
    assert "\n" not in str(caught.value)
