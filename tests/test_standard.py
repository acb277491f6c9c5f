"""The standard benchmarks, read from miniature copies in their published on-disk formats."""

import bz2
import struct

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from raydm.config import ConfigError, load_config
from raydm.data import standard
from raydm.data.pair import DataError, load_domain_pair
from raydm.sections import DataConfig
from tests.conftest import SPACES


def _write_idx(path, array: np.ndarray, magic: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _mnist(root, n_train=30, n_test=10):
    raw = root / "mnist" / "MNIST" / "raw"
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        images[:, :, :] = (labels * 20)[:, None, None]  # intensity encodes the label
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images, 0x803)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, 0x801)


def _usps(root, n=20):
    (root / "usps").mkdir(parents=True, exist_ok=True)
    for name in ("usps.bz2", "usps.t.bz2"):
        lines = []
        for i in range(n):
            label = i % 10
            value = -1 + 2 * label / 9  # [-1, 1], as the libsvm files hold
            lines.append(f"{label + 1} " + " ".join(f"{k}:{value:.6f}" for k in range(1, 257)))
        (root / "usps" / name).write_bytes(bz2.compress("\n".join(lines).encode()))


def _svhn(root, n=20):
    (root / "svhn").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        digits = np.arange(n) % 10
        images = np.zeros((32, 32, 3, n), dtype=np.uint8)
        images[:, :, 0, :] = digits * 25
        savemat(
            root / "svhn" / f"{split}_32x32.mat",
            {"X": images, "y": np.where(digits == 0, 10, digits)[:, None]},
        )


def test_mnist_idx_files_give_train_and_test_with_labels(tmp_path):
    _mnist(tmp_path)
    samples = standard.build_mnist(DataConfig(root=str(tmp_path), image_size=32))
    assert samples.train.inputs.shape == (30, 1, 32, 32) and len(samples.test) == 10
    assert torch.equal(samples.train.labels, torch.arange(30) % 10)
    assert torch.equal(samples.train.inputs[:, 0, 16, 16].long(), (torch.arange(30) % 10) * 20)


def test_usps_libsvm_bz2_is_read_with_labels_shifted_to_zero(tmp_path):
    _usps(tmp_path)
    samples = standard.build_usps(DataConfig(root=str(tmp_path), image_size=16))
    assert samples.train.inputs.shape == (20, 1, 16, 16)
    assert torch.equal(samples.train.labels, torch.arange(20) % 10)
    assert samples.train.inputs[0].max() == 0 and samples.train.inputs[9].min() == 255


def test_svhn_mat_maps_label_10_to_0_and_converts_to_grey(tmp_path):
    _svhn(tmp_path)
    rgb = standard.build_svhn(DataConfig(root=str(tmp_path), image_channels=3))
    assert rgb.train.inputs.shape == (20, 3, 32, 32)
    assert torch.equal(rgb.train.labels, torch.arange(20) % 10)
    assert torch.equal(rgb.train.inputs[:, 0, 0, 0].long(), (torch.arange(20) % 10) * 25)
    grey = standard.build_svhn(DataConfig(root=str(tmp_path), image_channels=1))
    assert grey.train.inputs.shape == (20, 1, 32, 32)
    assert grey.train.inputs[1, 0, 0, 0] == round(0.299 * 25)


def test_mnist_to_usps_pair_uses_the_official_test_splits(tmp_path):
    _mnist(tmp_path)
    _usps(tmp_path)
    pair = load_domain_pair(DataConfig(root=str(tmp_path), source="mnist", target="usps"))
    assert len(pair.source_train) + len(pair.source_val) == 30
    assert len(pair.target_train) == 20 and len(pair.target_test) == 20
    assert pair.input_shape == (1, 32, 32)


def _office_tree(root, domain, classes=("back_pack", "bike")):
    for index, name in enumerate(classes):
        for i in range(3):
            path = root / "office31" / domain / "images" / name / f"frame_{i:04d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (40, 30), (100 * index, 50, 50)).save(path)


def test_office31_domains_load_from_the_published_tree(tmp_path):
    _office_tree(tmp_path, "amazon")
    _office_tree(tmp_path, "webcam")
    config = DataConfig(
        root=str(tmp_path), source="office31:amazon", target="office31:webcam", image_channels=3
    )
    pair = load_domain_pair(config)
    assert pair.class_names == ("back_pack", "bike")
    assert pair.input_shape == (3, 32, 32)


def test_visda_split_loads_from_its_image_list(tmp_path):
    split = tmp_path / "visda" / "validation"
    lines = []
    for label in range(3):
        for i in range(2):
            relative = f"class_{label}/{i}.jpg"
            (split / relative).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (80 * label, 0, 0)).save(split / relative)
            lines.append(f"{relative} {label}")
    (split / "image_list.txt").write_text("\n".join(lines))
    config = DataConfig(root=str(tmp_path), source="visda:validation", target="visda:validation")
    pair = load_domain_pair(config)
    assert pair.class_names == ("0", "1", "2")


def test_missing_benchmark_folder_says_where_and_in_which_layout(tmp_path, write_space):
    space = write_space(
        f"method: source_only\ndata: {{root: {tmp_path}, source: 'office31:amazon', "
        "target: 'office31:webcam'}\n"
    )
    with pytest.raises(DataError) as caught:
        load_domain_pair(load_config(space).data)
    message = str(caught.value)
    assert "data.source: office31:amazon is not under" in message
    assert f"{tmp_path}/office31/amazon/images/<class>/<image>.jpg" in message
    with pytest.raises(ConfigError, match="office31 has domains amazon, dslr, webcam"):
        load_config(space, ["data.source=office31:Amazon"])


def test_missing_download_fails_fast_with_where_to_put_the_files(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    original = MNIST.__init__

    def offline(self, root, train=True, download=False, **kwargs):
        if download:  # what an unreachable host gives, without touching the network
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")
        original(self, root, train=train, download=False, **kwargs)

    monkeypatch.setattr(MNIST, "__init__", offline)
    config = DataConfig(root=str(tmp_path), source="mnist", target="digits_handwritten")
    with pytest.raises(DataError) as caught:
        load_domain_pair(config)
    assert "MNIST is not under" in str(caught.value)
    assert "MNIST/raw/*-idx?-ubyte" in str(caught.value)


def test_corrupt_usps_file_is_a_clear_error(tmp_path):
    (tmp_path / "usps").mkdir()
    for name in ("usps.bz2", "usps.t.bz2"):
        (tmp_path / "usps" / name).write_bytes(b"not bz2")
    with pytest.raises(ValueError, match="usps.bz2 is not a bz2-compressed libsvm file"):
        standard.build_usps(DataConfig(root=str(tmp_path)))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_mnist_files_are_named_not_blamed_on_a_download(tmp_path, damage, monkeypatch):
    from torchvision.datasets import MNIST

    _mnist(tmp_path)
    images = tmp_path / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes(bytes(range(256)) * 8 if damage == "garbage" else data[: len(data) // 2])
    original = MNIST.__init__

    def no_download(self, root, train=True, download=False, **kwargs):
        assert not download, "the files are there: nothing to download"
        original(self, root, train=train, download=False, **kwargs)

    monkeypatch.setattr(MNIST, "__init__", no_download)
    with pytest.raises(ValueError) as caught:
        standard.build_mnist(DataConfig(root=str(tmp_path)))
    message = str(caught.value)
    assert message.startswith(f"MNIST files under {tmp_path / 'mnist'} cannot be read (")
    assert "\n" not in message


def test_a_usps_line_out_of_range_and_an_svhn_file_without_digits_are_named(tmp_path):
    (tmp_path / "usps").mkdir()
    for name in ("usps.bz2", "usps.t.bz2"):
        (tmp_path / "usps" / name).write_bytes(bz2.compress(b"1 1:0.5\n2 300:0.5\n"))
    with pytest.raises(ValueError, match=r"usps.bz2 line 2: not a USPS libsvm line \(feature 300"):
        standard.build_usps(DataConfig(root=str(tmp_path)))
    (tmp_path / "svhn").mkdir()
    savemat(tmp_path / "svhn" / "train_32x32.mat", {"images": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="train_32x32.mat is not SVHN's cropped digits"):
        standard.read_svhn(tmp_path / "svhn" / "train_32x32.mat")


def _mnistm(root, n_train=20, n_test=10):
    folder = root / "mnist_m"
    for split, n in (("train", n_train), ("test", n_test)):
        (folder / f"mnist_m_{split}").mkdir(parents=True)
        lines = []
        for i in range(n):
            name = f"{i:08d}.png"
            Image.new("RGB", (28, 28), (20 * (i % 10), 100, 0)).save(
                folder / f"mnist_m_{split}" / name
            )
            lines.append(f"{name} {i % 10}")
        (folder / f"mnist_m_{split}_labels.txt").write_text("\n".join(lines) + "\n")


def test_mnistm_loads_from_its_unpacked_archive(tmp_path):
    _mnistm(tmp_path)
    _mnist(tmp_path)
    config = DataConfig(root=str(tmp_path), source="mnist", target="mnistm", image_channels=3)
    samples = standard.build_mnistm(config)
    assert samples.class_names == standard.DIGITS
    assert (len(samples.train), len(samples.test)) == (20, 10)
    pair = load_domain_pair(config)
    assert len(pair.target_train) == 20 and len(pair.target_test) == 10  # the official test split
    images, labels = pair.target_train.inputs, pair.target_train.labels
    assert images.shape[1:] == (3, 32, 32)
    assert torch.equal(((images[:, 0, 16, 16].float() / 20).round().long()), labels)


def test_missing_mnistm_says_where_to_unpack_it(tmp_path):
    config = DataConfig(root=str(tmp_path), source="mnistm", target="digits_handwritten")
    with pytest.raises(DataError) as caught:
        load_domain_pair(config)
    message = str(caught.value)
    assert message.startswith(f"data.source: MNIST-M is not under {tmp_path}")
    assert f"{tmp_path}/mnist_m/mnist_m_train_labels.txt" in message


def test_list_paths_may_start_at_the_data_root(tmp_path):
    """TLlib-style lists name images from the dataset's top (amazon/images/...)."""
    _office_tree(tmp_path, "amazon")
    listing = tmp_path / "lists" / "amazon.txt"
    listing.parent.mkdir()
    listing.write_text(
        "".join(
            f"office31/amazon/images/{name}/frame_{i:04d}.jpg {label}\n"
            for label, name in enumerate(("back_pack", "bike"))
            for i in range(3)
        )
    )
    config = DataConfig(root=str(tmp_path), source=f"list:{listing}", target=f"list:{listing}")
    pair = load_domain_pair(config)
    assert len(pair.source_train) + len(pair.source_val) == 6


def test_relative_folder_domains_are_saved_as_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = DataConfig(root="data", source="folder:photos/src", target="list:~/lists/t.txt")
    assert config.source == f"folder:{tmp_path / 'photos' / 'src'}"
    assert config.target.startswith("list:/") and config.target.endswith("/lists/t.txt")
    assert config.root == str(tmp_path / "data")


@pytest.mark.parametrize("space", sorted(SPACES.glob("*.yaml")), ids=lambda path: path.name)
def test_every_shipped_search_space_validates(space):
    config = load_config(space)
    assert config.params, "a shipped search space searches something"
    assert not config.search.metric.startswith("oracle/")  # label-free by default
