"""Batches as the backbone sees them: crops, flips, normalisation, and streamed image files."""

import copy

import pytest
import torch

from raydm import engine
from raydm.backbones import IMAGENET_INPUT
from raydm.config import load_config
from raydm.data.pair import load_domain_pair
from raydm.data.pipeline import BatchStream, Transform
from raydm.data.samples import ImageFiles, LabelledSet
from raydm.sections import DataConfig
from tests.conftest import learned
from tests.test_files import _folder

CPU = torch.device("cpu")


def _grid_images(count: int, side: int = 12) -> torch.Tensor:
    """Images whose pixel value says where it sits: 12 * row + column."""
    grid = (torch.arange(side)[:, None] * side + torch.arange(side)).to(torch.uint8)
    return grid.expand(count, 1, side, side).clone()


def _pixels(normalised: torch.Tensor) -> torch.Tensor:
    """Back from [-1, 1] (mean 0.5, std 0.5) to pixel values."""
    return ((normalised + 1) * 127.5).round().to(torch.uint8)


def test_training_crops_are_windows_of_the_image_and_flips_are_mirrors():
    data = DataConfig(crop_size=8, flip=True, image_size=12)
    transform = Transform(data, None, CPU, seed=0)
    images = _grid_images(200)
    out = _pixels(transform.train(images))
    assert out.shape == (200, 1, 8, 8)
    assert out.is_contiguous(memory_format=torch.channels_last)
    tops, lefts, flips = set(), set(), 0
    for crop in out[:, 0]:
        flipped = crop[0, 0] > crop[0, -1]
        crop = crop.flip(1) if flipped else crop
        top, left = divmod(int(crop[0, 0]), 12)
        assert torch.equal(crop, images[0, 0, top : top + 8, left : left + 8])
        tops.add(top), lefts.add(left)
        flips += int(flipped)
    assert tops == lefts == {0, 1, 2, 3, 4}  # every offset the 12 -> 8 crop allows
    assert 70 < flips < 130  # about half, for 200 images


def test_evaluation_takes_the_centre_crop_and_never_flips():
    transform = Transform(DataConfig(crop_size=8, flip=True, image_size=12), None, CPU, seed=0)
    images = _grid_images(3)
    out = _pixels(transform.evaluation(images))
    assert torch.equal(out, images[:, :, 2:10, 2:10])


def test_imagenet_normalisation_by_hand():
    data = DataConfig(image_channels=3, image_size=8)
    transform = Transform(data, IMAGENET_INPUT, CPU, seed=0)
    images = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
    images[:, 0] = 255
    out = transform.evaluation(images)
    assert out[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229, rel=1e-6)
    assert out[0, 1, 0, 0].item() == pytest.approx(-0.456 / 0.224, rel=1e-6)
    # Digits keep the [-1, 1] range of the DANN/CGDM code.
    plain = Transform(DataConfig(), None, CPU, seed=0).evaluation(images[:, :1])
    assert plain.min().item() == 1.0


def test_a_resumed_stream_repeats_the_batches_a_loader_had_drawn_ahead():
    stream = BatchStream(size=10, batch_size=3, seed=0)
    draws = stream.draws()
    drawn = [next(draws) for _ in range(5)]  # a loader prefetching: 5 drawn
    assert torch.equal(stream.consumed(), drawn[0])  # 1 trained on
    saved = copy.deepcopy(stream.state_dict())
    expected = drawn[1:] + [next(draws) for _ in range(4)]

    resumed = BatchStream(size=10, batch_size=3, seed=123)
    resumed.load_state_dict(saved)
    again = resumed.draws()
    got = [next(again) for _ in range(8)]
    assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))
    # Passes drop the last partial batch: every batch holds 3 distinct indices of 0..9.
    assert all(len(set(batch.tolist())) == 3 for batch in got)


def _folders_space(tmp_path, write_space, storage: str) -> str:
    _folder(tmp_path / "src", per_class=8)
    _folder(tmp_path / "tgt", per_class=8)
    return write_space(
        f"""
method: dann
data: {{source: 'folder:{tmp_path / "src"}', target: 'folder:{tmp_path / "tgt"}',
       image_size: 20, crop_size: 16, flip: true, image_channels: 3, storage: {storage}}}
model: {{backbone: lenet}}
train: {{epochs: 3, batch_size: 4, iters_per_epoch: 3, eval_batch_size: 5}}
""",
        name=f"{storage}.yaml",
    )


def test_streamed_files_train_exactly_as_decoded_ones_and_resume_exactly(tmp_path, write_space):
    streamed = load_config(_folders_space(tmp_path, write_space, "stream"))
    in_memory = streamed.model_copy(
        update={"data": streamed.data.model_copy(update={"storage": "memory"})}
    )
    stream_data, memory_data = load_domain_pair(streamed.data), load_domain_pair(in_memory.data)
    assert isinstance(stream_data.source_train, ImageFiles) and stream_data.streamed
    assert isinstance(memory_data.source_train, LabelledSet) and not memory_data.streamed
    assert memory_data.source_train.inputs.shape[1:] == (3, 20, 20)
    assert stream_data.input_shape == memory_data.input_shape == (3, 20, 20)

    torch.set_num_threads(1)
    states = {}

    def keep(epoch, metrics, state):
        states[epoch] = copy.deepcopy(state)

    from_memory = engine.fit(in_memory, memory_data)
    from_disk = engine.fit(streamed, stream_data, on_epoch=keep)  # one DataLoader worker
    assert learned(from_disk) == learned(from_memory)
    # The loader had drawn batches ahead when epoch 1 was saved; a resume replays them.
    assert states[1]["source_stream"]["ahead"]
    assert learned(engine.fit(streamed, stream_data, resume_from=states[1])) == learned(from_disk)


def test_auto_storage_streams_what_exceeds_the_memory_budget(tmp_path, write_space):
    config = load_config(_folders_space(tmp_path, write_space, "auto"))
    assert isinstance(load_domain_pair(config.data).target_train, LabelledSet)
    # 48 images of 3x20x20 bytes are about 56 KB.
    tight = config.data.model_copy(update={"memory_budget_mb": 0.05})
    assert isinstance(load_domain_pair(tight).target_train, ImageFiles)


def test_a_bad_file_is_found_before_streaming_starts(tmp_path, write_space):
    config = load_config(_folders_space(tmp_path, write_space, "stream"))
    (tmp_path / "tgt" / "dog" / "img 3.png").write_bytes(b"truncated")
    with pytest.raises(ValueError, match=r"data.target: image .*img 3.png cannot be read") as e:
        load_domain_pair(config.data)
    assert str(e.value).endswith("img 3.png cannot be read: not an image format PIL knows")
