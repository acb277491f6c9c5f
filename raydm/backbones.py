"""Feature extractors behind one registry.

Each entry names the input it takes (points or images), its options (a pydantic model, so a typo
in a search space fails at validation), and builds a module whose ``out_features`` is the width
of the feature vector the method's heads sit on.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from raydm import downloads
from raydm.options import Section
from raydm.registry import Registry


class BackboneArgs(Section):
    """Options of one entry: unknown keys, and booleans given for numbers, are refused."""


@dataclass(frozen=True)
class ImageInput:
    """How a backbone wants its images. ``size``, ``channels``, ``crop`` and ``flip`` are the
    defaults of the ``data.*`` keys of the same names; ``mean`` and ``std`` normalise [0, 1]
    pixels (0.5 and 0.5 give the [-1, 1] range of the digits nets)."""

    size: int
    channels: int | None  # None: either grey or RGB
    crop: int | None = None  # random crop in training, centre crop in evaluation
    flip: bool = False
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)


DIGITS_INPUT = ImageInput(size=32, channels=None)
# torchvision's ImageNet statistics and the resize-256 / crop-224 / flip recipe that the
# DANN, CDAN and CGDM ResNet experiments use.
IMAGENET_INPUT = ImageInput(
    size=256, channels=3, crop=224, flip=True, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)
)


@dataclass(frozen=True)
class Backbone:
    input_kind: Literal["points", "images"]
    Args: type[BackboneArgs]
    build: Callable[[BackboneArgs, tuple[int, ...]], nn.Module]
    description: str
    image_input: ImageInput | None = None
    min_size: int = 1  # the smallest square image side its layers can take


BACKBONES: Registry[Backbone] = Registry("backbone")


class MLPArgs(BackboneArgs):
    hidden: list[int] = Field(
        default_factory=lambda: [15], description="Hidden widths (JMLR toy: one layer of 15)."
    )
    activation: Literal["relu", "tanh", "sigmoid"] = Field("relu", description="Nonlinearity.")


class MLP(nn.Sequential):
    def __init__(self, args: MLPArgs, input_shape: tuple[int, ...]) -> None:
        activation = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[args.activation]
        layers: list[nn.Module] = [nn.Flatten()]
        width = int(torch.tensor(input_shape).prod())
        for hidden in args.hidden:
            layers += [nn.Linear(width, hidden), activation()]
            width = hidden
        super().__init__(*layers)
        self.out_features = width


def _flat_width(layers: nn.Module, input_shape: tuple[int, ...]) -> int:
    """The width of ``layers``' flattened output for one input of ``input_shape``, from a
    forward pass in evaluation mode (so batch norm's running statistics stay as they are)."""
    layers.eval()
    with torch.no_grad():
        width = layers(torch.zeros(1, *input_shape)).flatten(1).shape[1]
    layers.train()
    return width


class LeNetArgs(BackboneArgs):
    batch_norm: bool = Field(False, description="BatchNorm after each conv (CGDM's variant).")


class LeNet(nn.Sequential):
    """The digits encoder of DANN (Ganin & Lempitsky 2015): conv5x5-32, pool, conv5x5-48, pool."""

    def __init__(self, args: LeNetArgs, input_shape: tuple[int, ...]) -> None:
        channels = input_shape[0]

        # ReLU after max-pooling is the same function (max commutes with a non-decreasing map)
        # and gradient, on a quarter of the elements; it is most of an epoch's memory traffic.
        def block(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout)] if args.batch_norm else []
            return [nn.Conv2d(cin, cout, 5), *norm, nn.MaxPool2d(2), nn.ReLU(inplace=True)]

        super().__init__(*block(channels, 32), *block(32, 48), nn.Flatten())
        self.out_features = _flat_width(self, input_shape)


class DTNArgs(BackboneArgs):
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout between the dense layers.")


class DTN(nn.Sequential):
    """The SVHN network of DANN (Ganin & Lempitsky 2015): three convs, then 3072 and 2048 units."""

    def __init__(self, args: DTNArgs, input_shape: tuple[int, ...]) -> None:
        channels = input_shape[0]

        # ReLU after pooling: the same function on fewer elements, as in LeNet.
        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            pooling = [nn.MaxPool2d(3, stride=2, padding=1)] if pool else []
            return [
                nn.Conv2d(cin, cout, 5, padding=2),
                nn.BatchNorm2d(cout),
                *pooling,
                nn.ReLU(inplace=True),
            ]

        convolutions = nn.Sequential(
            *block(channels, 64, True), *block(64, 64, True), *block(64, 128, False), nn.Flatten()
        )
        super().__init__(
            *convolutions,
            nn.Linear(_flat_width(convolutions, input_shape), 3072),
            nn.ReLU(),
            nn.Dropout(args.dropout),
            nn.Linear(3072, 2048),
            nn.ReLU(),
            nn.Dropout(args.dropout),
        )
        self.out_features = 2048


class ResNetArgs(BackboneArgs):
    pretrained: bool = Field(
        True, description="Start from ImageNet weights (weights_path, else torchvision's)."
    )
    weights_path: str | None = Field(
        None, description="Local state-dict file of the ImageNet weights (torchvision's format)."
    )
    bottleneck: int = Field(
        256, ge=0, description="Width of the Linear-BN-ReLU bottleneck before the heads; 0: none."
    )


class ResNet(nn.Module):
    """A torchvision ResNet without its classifier, then a bottleneck (Linear, BN, ReLU) as in
    the DANN/CDAN/CGDM ResNet experiments: the heads sit on ``bottleneck`` features."""

    def __init__(self, depth: int, args: ResNetArgs, input_shape: tuple[int, ...]) -> None:
        import torchvision

        super().__init__()
        self.body = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        width = self.body.fc.in_features
        self.body.fc = nn.Identity()
        if args.bottleneck:
            self.bottleneck = nn.Sequential(
                nn.Linear(width, args.bottleneck), nn.BatchNorm1d(args.bottleneck), nn.ReLU()
            )
            width = args.bottleneck
        else:
            self.bottleneck = nn.Identity()
        self.out_features = width

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(self.body(images))


class WeightsError(ValueError):
    """Pretrained weights cannot be had; the message is one line for the user."""


def pretrained_state(backbone: str, args: BackboneArgs) -> dict[str, torch.Tensor] | None:
    """The ImageNet weights a backbone starts from, or None if it starts at random.

    Loaded once by the driver and shipped to the trials with the data, so workers need neither
    the file nor the network. A missing file or a failed download is a WeightsError, never a
    silent random start.
    """
    if not getattr(args, "pretrained", False):
        return None
    depth = int(backbone.removeprefix("resnet"))
    if args.weights_path:
        path = Path(args.weights_path).expanduser()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise WeightsError(f"model.backbone_args.weights_path: {path} does not exist") from None
        except Exception as err:  # noqa: BLE001 - unpickling errors come in many types
            raise WeightsError(
                f"model.backbone_args.weights_path: {path} is not a torch state dict: "
                f"{str(err).splitlines()[0]}"
            ) from None
        where = f"model.backbone_args.weights_path {path}"
    else:
        state, where = _torchvision_weights(depth), f"torchvision's {backbone} weights"
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # ImageNet's head
    # Tried on a fresh network now, so that a wrong file fails here and not in every trial.
    body = ResNet(depth, ResNetArgs(pretrained=False, bottleneck=0), (3, 224, 224)).body
    expected = set(body.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise WeightsError(
            f"{where} do not fit {backbone}: {len(missing)} missing keys {missing[:3]}, "
            f"{len(unexpected)} unexpected keys {unexpected[:3]}"
        )
    try:
        body.load_state_dict(state)
    except RuntimeError as err:
        raise WeightsError(f"{where} do not fit {backbone}: {_first_mismatch(err)}") from None
    return state


def _first_mismatch(err: RuntimeError) -> str:
    lines = [line.strip() for line in str(err).splitlines() if "size mismatch" in line]
    return lines[0] if lines else str(err).splitlines()[0]


def load_pretrained(module: nn.Module, state: dict[str, torch.Tensor] | None) -> None:
    if state is not None:
        module.body.load_state_dict(state)


def parameter_groups(module: nn.Module, lr_mult: float) -> list[dict]:
    """The backbone's optimiser groups: its body at ``lr_mult`` (0.1 for pretrained weights, as
    in DANN's ResNet runs); a bottleneck on top starts from scratch and learns at the full rate."""
    bottleneck = getattr(module, "bottleneck", None)
    if bottleneck is None:
        return [{"params": list(module.parameters()), "lr_mult": lr_mult}]
    return [
        {"params": list(module.body.parameters()), "lr_mult": lr_mult},
        {"params": list(bottleneck.parameters()), "lr_mult": 1.0},
    ]


def _torchvision_weights(depth: int) -> dict[str, torch.Tensor]:
    import torchvision

    # IMAGENET1K_V1: the weights the published UDA ResNet results were obtained with.
    weights = torchvision.models.get_weight(f"ResNet{depth}_Weights.IMAGENET1K_V1")
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    try:
        with downloads.bounded_wait():
            return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as err:  # noqa: BLE001 - any network or file failure means the same
        raise WeightsError(
            f"model.backbone_args.pretrained: resnet{depth} ImageNet weights are not in {cache} "
            f"and could not be downloaded ({type(err).__name__}); download {weights.url} into "
            "that folder, or set model.backbone_args.weights_path to a local copy"
        ) from None


BACKBONES.register("mlp")(Backbone("points", MLPArgs, MLP, "fully connected, for 2-d toys"))
# LeNet: two 5x5 convolutions, each followed by a 2x2 pooling, leave 1x1 of a 16x16 image.
BACKBONES.register("lenet")(
    Backbone("images", LeNetArgs, LeNet, "DANN digits encoder", DIGITS_INPUT, min_size=16)
)
BACKBONES.register("dtn")(Backbone("images", DTNArgs, DTN, "DANN SVHN encoder", DIGITS_INPUT))
for _depth in (50, 101):
    BACKBONES.register(f"resnet{_depth}")(
        Backbone(
            "images",
            ResNetArgs,
            functools.partial(ResNet, _depth),
            f"torchvision ResNet-{_depth} + bottleneck, ImageNet weights",
            IMAGENET_INPUT,
        )
    )
