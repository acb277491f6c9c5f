"""Feature extractors behind one registry: what each takes and its options.

Each entry names the input it takes (points or images), its options (a pydantic model, so a typo
in a search space fails at validation), and the network in ``raydm.networks`` it builds, a module
whose ``out_features`` is the width of the feature vector the method's heads sit on. This module
does not import torch, so that a config validates, and ``raydm list`` answers, without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from raydm.options import Section
from raydm.registry import Registry

if TYPE_CHECKING:
    from torch import nn


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
    network: str  # the class in raydm.networks, called as network(*arguments, args, shape)
    description: str
    image_input: ImageInput | None = None
    min_size: int = 1  # the smallest square image side its layers can take
    arguments: tuple[Any, ...] = ()

    def build(self, args: BackboneArgs, input_shape: tuple[int, ...]) -> nn.Module:
        from raydm import networks

        return getattr(networks, self.network)(*self.arguments, args, input_shape)


BACKBONES: Registry[Backbone] = Registry("backbone")


class MLPArgs(BackboneArgs):
    hidden: list[int] = Field(
        default_factory=lambda: [15], description="Hidden widths (JMLR toy: one layer of 15)."
    )
    activation: Literal["relu", "tanh", "sigmoid"] = Field("relu", description="Nonlinearity.")


class LeNetArgs(BackboneArgs):
    batch_norm: bool = Field(False, description="BatchNorm after each conv (CGDM's variant).")


class DTNArgs(BackboneArgs):
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout between the dense layers.")


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


BACKBONES.register("mlp")(Backbone("points", MLPArgs, "MLP", "fully connected, for 2-d toys"))
# LeNet: two 5x5 convolutions, each followed by a 2x2 pooling, leave 1x1 of a 16x16 image.
BACKBONES.register("lenet")(
    Backbone("images", LeNetArgs, "LeNet", "DANN digits encoder", DIGITS_INPUT, min_size=16)
)
BACKBONES.register("dtn")(Backbone("images", DTNArgs, "DTN", "DANN SVHN encoder", DIGITS_INPUT))
for _depth in (50, 101):
    BACKBONES.register(f"resnet{_depth}")(
        Backbone(
            "images",
            ResNetArgs,
            "ResNet",
            f"torchvision ResNet-{_depth} + bottleneck, ImageNet weights",
            IMAGENET_INPUT,
            arguments=(_depth,),
        )
    )
