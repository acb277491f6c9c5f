"""Feature extractors behind one registry.

Each entry names the input it takes (points or images), its options (a pydantic model, so a typo
in a search space fails at validation), and builds a module whose ``out_features`` is the width
of the feature vector the method's heads sit on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from raydm.registry import Registry


class BackboneArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Backbone:
    input_kind: Literal["points", "images"]
    Args: type[BackboneArgs]
    build: Callable[[BackboneArgs, tuple[int, ...]], nn.Module]
    description: str


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


class LeNetArgs(BackboneArgs):
    batch_norm: bool = Field(False, description="BatchNorm after each conv (CGDM's variant).")


class LeNet(nn.Sequential):
    """The digits encoder of DANN (Ganin & Lempitsky 2015): conv5x5-32, pool, conv5x5-48, pool."""

    def __init__(self, args: LeNetArgs, input_shape: tuple[int, ...]) -> None:
        channels, height, width = input_shape

        def block(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout)] if args.batch_norm else []
            return [nn.Conv2d(cin, cout, 5), *norm, nn.ReLU(), nn.MaxPool2d(2)]

        super().__init__(*block(channels, 32), *block(32, 48), nn.Flatten())
        self.out_features = 48 * ((height - 4) // 2 - 4) // 2 * ((width - 4) // 2 - 4) // 2


class DTNArgs(BackboneArgs):
    dropout: float = Field(0.5, ge=0, lt=1, description="Dropout between the dense layers.")


class DTN(nn.Sequential):
    """The SVHN network of DANN (Ganin & Lempitsky 2015): three convs, then 3072 and 2048 units."""

    def __init__(self, args: DTNArgs, input_shape: tuple[int, ...]) -> None:
        channels, height, width = input_shape

        def block(cin: int, cout: int, pool: bool) -> list[nn.Module]:
            layers = [nn.Conv2d(cin, cout, 5, padding=2), nn.BatchNorm2d(cout), nn.ReLU()]
            return layers + ([nn.MaxPool2d(3, stride=2, padding=1)] if pool else [])

        super().__init__(
            *block(channels, 64, True),
            *block(64, 64, True),
            *block(64, 128, False),
            nn.Flatten(),
            nn.Linear(128 * ((height + 3) // 4) * ((width + 3) // 4), 3072),
            nn.ReLU(),
            nn.Dropout(args.dropout),
            nn.Linear(3072, 2048),
            nn.ReLU(),
            nn.Dropout(args.dropout),
        )
        self.out_features = 2048


BACKBONES.register("mlp")(Backbone("points", MLPArgs, MLP, "fully connected, for 2-d toys"))
BACKBONES.register("lenet")(Backbone("images", LeNetArgs, LeNet, "DANN digits encoder"))
BACKBONES.register("dtn")(Backbone("images", DTNArgs, DTN, "DANN SVHN encoder"))
