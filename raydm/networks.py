"""The feature extractors' networks, built through ``raydm.backbones``, and their pretrained
weights."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raydm import downloads
from raydm.backbones import BackboneArgs, DTNArgs, LeNetArgs, MLPArgs, ResNetArgs


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
