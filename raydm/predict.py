"""The model a search delivers: labels for images from its kept checkpoints.

``raydm predict`` reads the experiment's pick.json (the kept checkpoints, best first by the
search's label-free selector), builds the selected model, or the top ``ensemble`` of them, as it
was trained (backbone, classifier, image size, channels and normalisation from the checkpoint's
config), and labels every image of a folder, an image list or a named domain.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raydm import layout
from raydm.backbones import BACKBONES
from raydm.config import ConfigError, ExperimentConfig, load_config
from raydm.data import files, find_domain
from raydm.data.pipeline import Loader, Transform, evaluation_batches
from raydm.data.samples import ImageFiles, LabelledSet
from raydm.engine import CLASS_NAMES, INPUT_SHAPE, build_model, choose_device, place
from raydm.methods.base import Method


class PredictError(ValueError):
    """The experiment, its checkpoints or the images cannot be used; one line for the user."""


@dataclass(frozen=True)
class Candidate:
    trial_id: str
    epoch: int
    value: float  # the selector's value
    checkpoint: Path

    def describe(self) -> str:
        return f"trial {self.trial_id} epoch {self.epoch}"


def kept_candidates(experiment: Path) -> tuple[str, list[Candidate]]:
    """The search's selector and its kept checkpoints, best first (pick.json)."""
    if not experiment.is_dir():
        raise PredictError(f"{experiment}: no such experiment directory")
    path = experiment / layout.PICK_FILE
    if not path.is_file():
        raise PredictError(
            f"{experiment}: no selected model ({layout.PICK_FILE} is missing: the search ended "
            "before its final pick, or ran with a raydm that kept no checkpoints)"
        )
    try:
        chosen = json.loads(path.read_text())
        ranking = [
            Candidate(
                str(row[layout.TRIAL_ID]),
                int(row["epoch"]),
                float(row["value"]),
                experiment / row[layout.CHECKPOINT],
            )
            for row in chosen["ranking"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise PredictError(f"{path}: not a pick file raydm wrote ({err})") from None
    if not ranking:
        raise PredictError(f"{path}: lists no kept checkpoint: the search kept none")
    return str(chosen["selector"]), ranking


def choose(
    candidates: list[Candidate], trial: str | None, epoch: int | None, ensemble: int
) -> list[Candidate]:
    """The selected candidate, the top ``ensemble``, or the one ``trial`` (and ``epoch``)
    names."""
    if epoch is not None and trial is None:
        raise PredictError("--epoch needs --trial: the trial whose epoch it is")
    if trial is not None and ensemble > 1:
        raise PredictError("--ensemble takes the top kept checkpoints; --trial names one: give one")
    if trial is None:
        return candidates[:ensemble]
    matches = [c for c in candidates if c.trial_id == trial and epoch in (None, c.epoch)]
    if not matches:
        kept = ", ".join(c.describe() for c in candidates) or "none"
        wanted = f"trial {trial}" + (f" epoch {epoch}" if epoch is not None else "")
        raise PredictError(f"{wanted} has no kept checkpoint; kept: {kept}")
    return matches[:1]


@dataclass
class Model:
    """One kept checkpoint's network, in evaluation mode, with the preprocessing it was
    trained with."""

    method: Method
    transform: Transform
    config: ExperimentConfig
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]

    @torch.no_grad()
    def probabilities(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.method.predict(self.transform.evaluation(inputs))
        return torch.softmax(logits.float(), dim=1).cpu()


def load_model(checkpoint: Path, device: torch.device) -> Model:
    state_file = checkpoint / layout.STATE_FILE
    if not state_file.is_file():
        raise PredictError(f"{checkpoint}: no kept checkpoint there (was it deleted?)")
    try:
        state = torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a damaged file
        message = f"{state_file}: not a checkpoint raydm wrote ({_first_line(err)})"
        raise PredictError(message) from None
    if not isinstance(state, dict) or "model" not in state:
        raise PredictError(f"{state_file}: not a checkpoint raydm wrote (no model weights)")
    if CLASS_NAMES not in state or INPUT_SHAPE not in state:
        raise PredictError(
            f"{checkpoint}: written by a raydm that did not record the classes; run the "
            "search again"
        )
    try:
        config = load_config(checkpoint / layout.CONFIG_FILE)
    except ConfigError as err:
        raise PredictError(str(err)) from None
    class_names, input_shape = tuple(state[CLASS_NAMES]), tuple(state[INPUT_SHAPE])
    try:
        model = model_from_state(config, state["model"], class_names, input_shape, device)
        # One blank input through it: a config.yaml that no longer matches the weights or the
        # input fails here, in one line, not in the middle of the user's images.
        model.probabilities(_blank_input(config, input_shape))
    except (RuntimeError, ValueError) as err:
        raise PredictError(
            f"{checkpoint}: its weights do not fit the network of its {layout.CONFIG_FILE} "
            f"({_first_line(err)})"
        ) from None
    return model


def _blank_input(config: ExperimentConfig, input_shape: tuple[int, ...]) -> torch.Tensor:
    """One all-zero input as ``predict`` hands the model one: images decoded at the config's
    size, points as stored."""
    if len(input_shape) != 3:
        return torch.zeros((1, *input_shape))
    size = config.data.image_size
    return torch.zeros((1, config.data.image_channels, size, size), dtype=torch.uint8)


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def model_from_state(
    config: ExperimentConfig,
    weights: dict[str, torch.Tensor],
    class_names: tuple[str, ...],
    input_shape: tuple[int, ...],
    device: torch.device,
) -> Model:
    """The network of ``config`` holding ``weights``, ready to predict on ``device``."""
    method = build_model(config, len(class_names), input_shape)
    method.load_state_dict(weights)
    method = place(method, device, len(input_shape) == 3).eval()
    image_input = BACKBONES.get(config.model.backbone).image_input
    transform = Transform(config.data, image_input, device, seed=0)  # no randomness in eval
    return Model(method, transform, config, class_names, input_shape)


@dataclass(frozen=True)
class Images:
    """What ``--images`` names: one name per sample, and the samples."""

    names: list[str]
    part: LabelledSet | ImageFiles
    class_names: tuple[str, ...] | None  # when the images come with classes of their own


def read_images(spec: str, model: Model) -> Images:
    """``folder:DIR`` (images at any depth), ``list:FILE`` (an image list, as for training)
    or a named domain (all of its samples)."""
    prefix, sep, location = spec.partition(":")
    data = model.config.data
    try:
        if sep and prefix == "folder":
            return _folder_images(Path(location).expanduser())
        if sep and prefix == "list":
            samples = files.build_list(Path(location).expanduser(), data)
            # A list's labels may be placeholders (unlabelled images): not checked.
            return Images(list(samples.train.paths), samples.train, None)
        samples = find_domain(spec).build(data)
    except ValueError as err:
        raise PredictError(f"--images {spec}: {err}") from None
    parts = [("train", samples.train)] + ([("test", samples.test)] if samples.test else [])
    names = [f"{spec}/{split}/{i}" for split, part in parts for i in range(len(part))]
    if isinstance(samples.train, ImageFiles):
        paths = np.concatenate([part.paths for _, part in parts])
        labels = torch.cat([part.labels for _, part in parts])
        return Images(list(paths), ImageFiles(paths, labels), samples.class_names)
    inputs = torch.cat([part.inputs for _, part in parts])
    labels = torch.cat([part.labels for _, part in parts])
    return Images(names, LabelledSet(inputs, labels), samples.class_names)


def _folder_images(folder: Path) -> Images:
    if not folder.is_dir():
        raise ValueError(f"folder {folder} does not exist")
    paths = [str(path) for path in files.image_files(folder)]
    if not paths:
        raise ValueError(
            f"folder {folder} holds no images ({', '.join(sorted(files.IMAGE_SUFFIXES))})"
        )
    unlabelled = torch.full((len(paths),), -1, dtype=torch.long)
    return Images(paths, ImageFiles(np.array(paths), unlabelled), None)


def predict(
    models: list[Model],
    images: Images,
    batch_size: int,
    on_batch: Callable[[int], None] = lambda count: None,
) -> torch.Tensor:
    """The mean softmax of ``models`` on every image, in order (N x classes); ``on_batch``
    hears how many images each batch held."""
    first = models[0]
    for model in models[1:]:
        if model.class_names != first.class_names:
            raise PredictError(
                "the ensemble's models predict different classes: "
                f"{list(first.class_names)} and {list(model.class_names)}"
            )
    if images.class_names is not None and images.class_names != first.class_names:
        raise PredictError(
            f"the images' domain has the classes {', '.join(images.class_names)}, but the "
            f"model predicts {', '.join(first.class_names)}"
        )
    takes_images = len(first.input_shape) == 3
    if isinstance(images.part, LabelledSet):
        given = tuple(images.part.inputs.shape[1:])
        if takes_images != (len(given) == 3) or (not takes_images and given != first.input_shape):
            raise PredictError(
                f"the model takes {_kind(first.input_shape)}, but the images given are "
                f"{_kind(given)}"
            )
    elif not takes_images:
        raise PredictError(f"the model takes {_kind(first.input_shape)}, not image files")
    data = first.config.data
    loader = Loader(data.image_size, data.image_channels, 0, False)
    batches = evaluation_batches(images.part, batch_size, loader)
    out = []
    try:
        for inputs, _ in batches:
            out.append(torch.stack([model.probabilities(inputs) for model in models]).mean(0))
            on_batch(len(inputs))
    except ValueError as err:  # an image that cannot be read, named
        raise PredictError(str(err)) from None
    return torch.cat(out)


def _kind(shape: tuple[int, ...]) -> str:
    return "images" if len(shape) == 3 else f"points of {shape[0]} values"


def write_predictions(
    path: Path,
    names: list[str],
    probabilities: torch.Tensor,
    class_names: tuple[str, ...],
    with_probabilities: bool,
) -> None:
    """One row per image: its name, the predicted class, its probability, and with
    ``with_probabilities`` one column per class. Written whole or not at all."""
    confidence, predicted = probabilities.max(1)
    header = ["path", "prediction", "confidence"]
    if with_probabilities:
        header += [f"p_{name}" for name in class_names]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as err:
        raise PredictError(f"{path}: cannot write ({err.strerror})") from None
    try:
        with os.fdopen(handle, "w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            for i, name in enumerate(names):
                row = [name, class_names[predicted[i]], f"{confidence[i]:.6f}"]
                if with_probabilities:
                    row += [f"{p:.6f}" for p in probabilities[i].tolist()]
                writer.writerow(row)
        os.replace(temporary, path)
    except OSError as err:  # a full disk, say: nothing half-written is left
        Path(temporary).unlink(missing_ok=True)
        raise PredictError(f"{path}: cannot write ({err.strerror})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def device() -> torch.device:
    return choose_device(wants_gpu=True)
