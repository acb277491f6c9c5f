import dataclasses
import math

import numpy as np
import pytest
import torch

from raydm.data import DOMAINS
from raydm.data.digits import build_handwritten, digit_fonts, render_printed_digits
from raydm.data.moons import CENTRE, rotate
from raydm.data.pair import load_domain_pair, random_split, stratified_split
from raydm.sections import DataConfig


def test_moons_are_deterministic_and_the_target_is_the_rotated_draw(data_root):
    config = DataConfig(source="moons", target="moons_rotated", root=data_root)
    first, again = load_domain_pair(config), load_domain_pair(config)
    assert torch.equal(first.source_train.inputs, again.source_train.inputs)
    source = DOMAINS.get("moons").build(config).train
    assert len(source) == 300  # 150 points per class, as in the JMLR toy
    assert torch.equal(source.labels.bincount(), torch.tensor([150, 150]))
    unturned = DOMAINS.get("moons_rotated").build(config.model_copy(update={"moons_rotation": 0.0}))
    turned = DOMAINS.get("moons_rotated").build(config)
    expected = rotate(unturned.train.inputs.numpy().astype(np.float64), 35.0)
    assert np.allclose(turned.train.inputs.numpy(), expected, atol=1e-5)
    assert not np.allclose(turned.train.inputs.numpy(), unturned.train.inputs.numpy(), atol=0.05)
    # A fresh labelled sample serves as the oracle test split.
    assert not torch.equal(turned.test.inputs, turned.train.inputs)


def test_rotation_turns_points_about_the_centre():
    points = CENTRE + np.array([[1.0, 0.0], [0.0, 1.0]])
    cos, sin = math.cos(math.radians(35)), math.sin(math.radians(35))
    assert np.allclose(rotate(points, 35.0), CENTRE + np.array([[cos, sin], [-sin, cos]]))
    assert np.allclose(rotate(CENTRE[None], 35.0), CENTRE[None])


def test_splits_are_stratified_disjoint_and_seeded():
    labels = torch.arange(10).repeat_interleave(20)
    kept, held = stratified_split(labels, 0.25, seed=3)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0
    assert len(kept) + len(held) == 200
    assert torch.equal(labels[held].bincount(), torch.full((10,), 5))
    assert torch.equal(stratified_split(labels, 0.25, seed=3)[1], held)
    assert not torch.equal(stratified_split(labels, 0.25, seed=4)[1], held)


def test_the_target_split_is_blind_to_the_target_labels(data_root, monkeypatch):
    # The same target samples with their labels scrambled must be split the same way
    # (scikit-learn's handwritten digits have no test split of their own).
    import raydm.data

    config = DataConfig(root=data_root, printed_per_class=10)
    plain = load_domain_pair(config)
    find_domain = raydm.data.find_domain

    def scrambled(name):
        entry = find_domain(name)
        if name != config.target:
            return entry

        class Scrambled:
            kind = entry.kind

            def build(self, cfg):
                built = entry.build(cfg)
                train = dataclasses.replace(built.train, labels=built.train.labels.flip(0))
                return dataclasses.replace(built, train=train)

        return Scrambled()

    monkeypatch.setattr(raydm.data, "find_domain", scrambled)
    again = load_domain_pair(config)
    assert torch.equal(again.target_test.inputs, plain.target_test.inputs)
    assert torch.equal(again.target_train.inputs, plain.target_train.inputs)
    kept, held = random_split(1797, 0.3, seed=5)
    assert len(set(kept.tolist()) & set(held.tolist())) == 0 and len(held) == round(0.3 * 1797)


def test_digit_pair_shapes_labels_and_splits(data_root):
    config = DataConfig(root=data_root, printed_per_class=10)
    pair = load_domain_pair(config)
    assert pair.class_names == tuple("0123456789")
    assert pair.input_shape == (1, 32, 32)
    assert pair.source_train.inputs.dtype == torch.uint8
    assert len(pair.source_train) == 80 and len(pair.source_val) == 20
    assert torch.equal(pair.source_val.labels.bincount(), torch.full((10,), 2))
    # scikit-learn ships 1,797 handwritten digits; 30% are kept labelled for the oracle.
    assert len(pair.target_train) + len(pair.target_test) == 1797
    assert len(pair.target_test) == pytest.approx(0.3 * 1797, abs=10)


def test_printed_digits_are_deterministic_cached_and_varied(data_root):
    images, labels = render_printed_digits(6, seed=0)
    again, _ = render_printed_digits(6, seed=0)
    assert torch.equal(images, again)
    assert torch.equal(labels, torch.arange(10).repeat_interleave(6))
    assert not torch.equal(render_printed_digits(6, seed=1)[0], images)
    assert images.float().std() > 20  # not blank
    config = DataConfig(root=data_root, printed_per_class=10)
    first = DOMAINS.get("digits_printed").build(config).train
    assert list((config.root_path / "digits_printed").glob("*.pt"))
    assert torch.equal(DOMAINS.get("digits_printed").build(config).train.inputs, first.inputs)


def test_fonts_exclude_symbol_encodings():
    names = [font.rsplit("/", 1)[-1] for font in digit_fonts()]
    assert "cmsy10.ttf" not in names and "cmex10.ttf" not in names
    assert "DejaVuSans.ttf" in names


def test_handwritten_digits_are_upsampled_real_digits():
    samples = build_handwritten(DataConfig())
    assert samples.train.inputs.shape == (1797, 1, 32, 32)
    assert samples.train.labels.bincount().min() >= 170


def test_different_class_sets_are_a_clear_error(data_root):
    config = DataConfig(source="moons", target="digits_handwritten", root=data_root)
    with pytest.raises(ValueError, match="only in source: \\['lower', 'upper'\\]"):
        load_domain_pair(config)


SPRUNG = []


def _spring():
    SPRUNG.append(True)
    return "code ran"


class _Trap:
    """Unpickling this calls _spring: what a tampered cache file could do."""

    def __reduce__(self):
        return (_spring, ())


def test_a_cache_file_is_read_as_tensors_only_and_never_runs_code(tmp_path):
    from raydm.data.samples import cached

    path = tmp_path / "cache.pt"
    torch.save({"inputs": _Trap()}, path)
    built = cached(path, lambda: {"inputs": torch.ones(2)}, "a test set")
    assert SPRUNG == []  # refused as unreadable, then built afresh
    assert torch.equal(built["inputs"], torch.ones(2))
    assert torch.equal(torch.load(path, weights_only=True)["inputs"], torch.ones(2))
