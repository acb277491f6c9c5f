"""From stored samples to model-ready batches, the same way for every method and backbone.

Training batches are drawn by a seeded ``BatchStream``. In-memory uint8 tensors are indexed
directly (no per-sample Python); image files streamed from disk are decoded and resized by
DataLoader workers. Either way the crop, flip and normalisation the backbone asks for then run
on the whole batch on the training device.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch

from raydm.data import files
from raydm.data.samples import ImageFiles, LabelledSet

if TYPE_CHECKING:
    from raydm.backbones import ImageInput
    from raydm.sections import DataConfig


class BatchStream:
    """Endless shuffled index batches from a seeded generator (the last partial batch of each
    pass is dropped, then a fresh permutation starts).

    A DataLoader draws batches ahead of the ones training has consumed; those are kept in
    ``ahead`` and saved with the generator, so a resumed trial sees exactly the batches the
    uninterrupted one would have.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size = size
        self.batch_size = min(batch_size, size)
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.randperm(size, generator=self.generator)
        self.position = 0
        self.ahead: deque[torch.Tensor] = deque()  # drawn, not yet consumed
        self.replay: deque[torch.Tensor] = deque()  # drawn before a resume, to come first

    def draws(self) -> Iterator[torch.Tensor]:
        """Index batches in order, forever; what a DataLoader's batch sampler iterates."""
        while True:
            index = self.replay.popleft() if self.replay else self._draw()
            self.ahead.append(index)
            yield index

    def consumed(self) -> torch.Tensor:
        """Mark the oldest drawn batch as trained on; returns its indices."""
        return self.ahead.popleft()

    def _draw(self) -> torch.Tensor:
        if self.position + self.batch_size > self.size:
            self.order = torch.randperm(self.size, generator=self.generator)
            self.position = 0
        index = self.order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return index

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "order": self.order,
            "position": self.position,
            "ahead": [*self.ahead, *self.replay],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        self.order = state["order"]
        self.position = state["position"]
        self.ahead.clear()
        self.replay = deque(state["ahead"])


class TrainBatches:
    """Raw training batches (inputs, labels, indices) of one domain part."""

    def __init__(
        self, part: LabelledSet | ImageFiles, batch_size: int, seed: int, loader: Loader
    ) -> None:
        self.part = part
        self.stream = BatchStream(len(part), batch_size, seed)
        self.loader = loader
        self._batches: Iterator | None = None

    def next(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._batches is None:
            if isinstance(self.part, LabelledSet):
                self._batches = (
                    (self.part.inputs[index], self.part.labels[index], index)
                    for index in self.stream.draws()
                )
            else:
                self._batches = _decoded(self.loader.stream(self.part, self.stream.draws()))
        batch = next(self._batches)
        self.stream.consumed()
        return batch

    def close(self) -> None:
        """Stop the DataLoader workers (they would otherwise live as long as the trial)."""
        self._batches = None


class Loader:
    """Decodes image files with DataLoader workers; ``workers`` comes from the trial's CPUs."""

    def __init__(self, size: int, channels: int, workers: int, pin_memory: bool) -> None:
        self.size, self.channels = size, channels
        self.workers, self.pin_memory = workers, pin_memory

    def stream(self, part: ImageFiles, index_batches: Iterator[torch.Tensor]):
        return torch.utils.data.DataLoader(
            _FileDataset(part, self.size, self.channels),
            batch_sampler=_IndexBatches(index_batches),
            num_workers=self.workers,
            pin_memory=self.pin_memory,
        )

    def in_order(self, part: ImageFiles, batch_size: int):
        return torch.utils.data.DataLoader(
            _FileDataset(part, self.size, self.channels),
            batch_size=batch_size,
            num_workers=self.workers,
            pin_memory=self.pin_memory,
        )


class Transform:
    """The backbone's view of an image batch: crop (random in training, centred otherwise),
    horizontal flip in training, then (x / 255 - mean) / std in channels-last layout, which
    oneDNN and cuDNN convolve faster. Points pass through as floats."""

    def __init__(
        self, data: DataConfig, image_input: ImageInput | None, device: torch.device, seed: int
    ) -> None:
        self.device = device
        self.crop = data.crop_size
        self.flip = data.flip
        self.generator = torch.Generator().manual_seed(seed)
        mean, std = (image_input.mean, image_input.std) if image_input else ((0.5,), (0.5,))
        self.mean = _per_channel(mean, data.image_channels, device)
        self.std = _per_channel(std, data.image_channels, device)

    def train(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.device, non_blocking=True)
        if inputs.dtype != torch.uint8:
            return inputs.float()
        count, _, height, width = inputs.shape
        if self.crop is not None and (self.crop < height or self.crop < width):
            top = torch.randint(0, height - self.crop + 1, (count,), generator=self.generator)
            left = torch.randint(0, width - self.crop + 1, (count,), generator=self.generator)
            span = torch.arange(self.crop)
            rows = (top[:, None] + span).to(self.device)
            cols = (left[:, None] + span).to(self.device)
            every = torch.arange(count, device=self.device)
            # Gathers count x crop x crop x C: already the channels-last layout once permuted.
            inputs = inputs[every[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            inputs = inputs.permute(0, 3, 1, 2)
        if self.flip:
            flipped = torch.rand(count, generator=self.generator) < 0.5
            flipped = flipped.to(self.device).view(-1, 1, 1, 1)
            inputs = torch.where(flipped, inputs.flip(3), inputs)
        return self._normalise(inputs)

    def evaluation(self, inputs: torch.Tensor) -> torch.Tensor:
        inputs = inputs.to(self.device, non_blocking=True)
        if inputs.dtype != torch.uint8:
            return inputs.float()
        height, width = inputs.shape[2:]
        if self.crop is not None and (self.crop < height or self.crop < width):
            top, left = (height - self.crop) // 2, (width - self.crop) // 2
            inputs = inputs[:, :, top : top + self.crop, left : left + self.crop]
        return self._normalise(inputs)

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        images = images.contiguous(memory_format=torch.channels_last).float()
        return images.div_(255.0).sub_(self.mean).div_(self.std)


def model_input_shape(input_shape: tuple[int, ...], config: DataConfig) -> tuple[int, ...]:
    """The shape of one sample as the backbone receives it (after any crop), from its shape
    as stored."""
    if len(input_shape) != 3 or config.crop_size is None:
        return tuple(input_shape)
    return (input_shape[0], config.crop_size, config.crop_size)


def evaluation_batches(
    part: LabelledSet | ImageFiles, batch_size: int, loader: Loader
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(raw inputs, labels) over ``part`` in order."""
    if isinstance(part, LabelledSet):
        for start in range(0, len(part), batch_size):
            yield part.inputs[start : start + batch_size], part.labels[start : start + batch_size]
        return
    for images, labels, _ in _decoded(loader.in_order(part, batch_size)):
        yield images, labels


def _decoded(batches: Iterable) -> Iterator:
    """``batches`` of a DataLoader over image files; a file that cannot be decoded (streamed
    files are checked by their headers only, before training) is a one-line DataError."""
    from raydm.data.pair import DataError
    from raydm.results import error_reason  # pandas, on this failure path only

    try:
        yield from batches
    except files.UnreadableImage as err:
        # From a DataLoader worker, torch puts the worker's traceback before the message.
        message = error_reason(err).removeprefix(f"{files.__name__}.UnreadableImage: ")
        raise DataError(f"data: {message}") from None


class _FileDataset(torch.utils.data.Dataset):
    def __init__(self, part: ImageFiles, size: int, channels: int) -> None:
        self.part, self.size, self.channels = part, size, channels

    def __len__(self) -> int:
        return len(self.part)

    def __getitem__(self, index: int):
        image = files.decode_image(str(self.part.paths[index]), self.size, self.channels)
        return image, self.part.labels[index], index


class _IndexBatches:
    def __init__(self, batches: Iterator[torch.Tensor]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        for index in self.batches:
            yield index.tolist()


def _per_channel(values: tuple[float, ...], channels: int, device: torch.device) -> torch.Tensor:
    if len(values) not in (1, channels):
        values = (sum(values) / len(values),)  # e.g. ImageNet statistics on grey images
    return torch.tensor(values, device=device).view(1, -1, 1, 1)
