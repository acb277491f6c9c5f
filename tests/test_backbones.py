"""ResNet backbones: bottleneck, pretrained weights and the image format they ask for."""

import pytest
import torch
import torchvision
from click.testing import CliRunner
from PIL import Image

from raydm.backbones import BACKBONES, ResNetArgs
from raydm.cli import main
from raydm.config import ConfigError, load_config
from raydm.data.pair import DomainPair
from raydm.data.samples import LabelledSet
from raydm.engine import build_method
from raydm.networks import WeightsError, pretrained_state

OFFICE = """
method: {method}
data: {{source: 'office31:amazon', target: 'office31:webcam'}}
model: {{backbone: resnet50, backbone_args: {{pretrained: false}}}}
train: {{backbone_lr_mult: 0.1}}
"""


@pytest.fixture(autouse=True)
def no_torch_cache(tmp_path, monkeypatch):
    """An empty torch hub cache, so no test finds weights a previous download left."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _pair(shape=(3, 40, 40), classes=4) -> DomainPair:
    part = LabelledSet(torch.zeros((8, *shape), dtype=torch.uint8), torch.arange(8) % classes)
    names = tuple(str(k) for k in range(classes))
    return DomainPair(part, part, part, part, names, shape)


def test_resnet_defaults_to_the_imagenet_recipe_unless_the_user_sets_the_format(write_space):
    config = load_config(write_space(OFFICE.format(method="dann")))
    data = config.data
    assert (data.image_size, data.crop_size, data.flip, data.image_channels) == (256, 224, True, 3)
    # Only the size set: the crop keeps ResNet's 224/256 ratio.
    small = load_config(write_space(OFFICE.format(method="dann")), ["data.image_size=64"])
    assert (small.data.image_size, small.data.crop_size) == (64, 56)
    # The digits nets keep 32x32 grey with no crop or flip.
    lenet = load_config(write_space("method: dann\n"))
    assert (lenet.data.image_size, lenet.data.crop_size, lenet.data.flip) == (32, None, False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.image_channels=1", "resnet50 takes 3-channel images, but data.image_channels is 1"),
        ("data.crop_size=300", "data.crop_size 300 is larger than data.image_size 256"),
        ("model.backbone_args.bottleneck=true", "bottleneck: expected a number, got True"),
        ("params.model.backbone={choice: [resnet50, resnet101]}", "the backbone and its weights"),
        ("params.model.backbone_args.pretrained={choice: [true, false]}", "run one search per"),
    ],
)
def test_image_format_and_backbone_errors_name_the_key(write_space, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_space(OFFICE.format(method="dann")), [override])


def test_resnet_features_go_through_a_256_bottleneck_that_learns_at_the_full_rate(write_space):
    config = load_config(write_space(OFFICE.format(method="dann")), ["data.image_size=40"])
    torch.manual_seed(0)
    method = build_method(config, _pair())
    backbone = method.backbone
    assert backbone.out_features == 256
    features = backbone(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 256) and (features >= 0).all()  # after the bottleneck's ReLU
    groups = method.optimizer.param_groups
    body = {id(p) for p in backbone.body.parameters()}
    neck = {id(p) for p in backbone.bottleneck.parameters()}
    mult = {frozenset(id(p) for p in g["params"]): g["lr_mult"] for g in groups}
    assert mult[frozenset(body)] == 0.1 and mult[frozenset(neck)] == 1.0
    assert groups[0]["lr"] == pytest.approx(config.train.lr * 0.1)


def test_cgdm_generator_optimiser_splits_body_and_bottleneck(write_space):
    config = load_config(write_space(OFFICE.format(method="cgdm")), ["data.image_size=40"])
    method = build_method(config, _pair())
    lr_mults = [g["lr_mult"] for g in method.generator_optimizer.param_groups]
    assert lr_mults == [0.1, 1.0]


def test_local_weights_file_is_loaded_into_the_body(tmp_path, write_space):
    reference = torchvision.models.resnet50(weights=None)
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    config = load_config(
        write_space(OFFICE.format(method="dann")),
        ["model.backbone_args.pretrained=true", f"model.backbone_args.weights_path={path}"],
    )
    state = pretrained_state(config.model.backbone, config.model.backbone_args)
    assert not any(key.startswith("fc.") for key in state)  # ImageNet's classifier is dropped
    method = build_method(config, _pair(), state)
    assert torch.equal(method.backbone.body.conv1.weight, reference.conv1.weight)
    assert torch.equal(
        method.backbone.body.layer4[2].bn3.running_var, reference.layer4[2].bn3.running_var
    )


def test_weights_of_another_network_are_refused(tmp_path):
    path = tmp_path / "resnet101.pth"
    torch.save(torchvision.models.resnet101(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match="do not fit resnet50: 0 missing keys .* unexpected"):
        pretrained_state("resnet50", ResNetArgs(weights_path=str(path)))
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="resnet101.pth is not a torch state dict"):
        pretrained_state("resnet50", ResNetArgs(weights_path=str(path)))


def test_pretrained_without_weights_or_network_is_an_error_not_a_random_start(
    tmp_path, write_space, monkeypatch
):
    def offline(url, *args, **kwargs):  # what an unreachable host gives, without the network
        raise OSError(f"<urlopen error [Errno -3] Temporary failure in name resolution> {url}")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    space = write_space(
        OFFICE.format(method="dann").replace("pretrained: false", "pretrained: true")
    )
    with pytest.raises(WeightsError) as caught:
        config = load_config(space)
        pretrained_state(config.model.backbone, config.model.backbone_args)
    message = str(caught.value)
    assert message.startswith("model.backbone_args.pretrained: resnet50 ImageNet weights")
    assert "resnet50-0676ba61.pth" in message and "weights_path" in message
    # Through the CLI, with the data in place: one line naming the file, exit 2, no training.
    for domain in ("amazon", "webcam"):
        for name in ("bike", "mug"):
            folder = tmp_path / "data" / "office31" / domain / "images" / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("RGB", (30, 30), (i, 0, 0)).save(folder / f"{i}.jpg")
    result = CliRunner().invoke(
        main, ["train", "--config", str(space), "--set", f"data.root={tmp_path / 'data'}"]
    )
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"raydm: error: {space}: {message}"]


def test_every_image_backbone_declares_its_input():
    for name in BACKBONES.names():
        entry = BACKBONES.get(name)
        assert (entry.image_input is None) == (entry.input_kind == "points"), name


@pytest.mark.parametrize("name", ["lenet", "dtn"])
def test_digits_nets_pool_before_relu_and_compute_the_usual_function(name):
    """conv -> BN -> pool -> ReLU must equal the textbook conv -> BN -> ReLU -> pool, gradients
    included, so the cheaper order changes no result."""
    entry = BACKBONES.get(name)
    args = entry.Args(batch_norm=True) if name == "lenet" else entry.Args(dropout=0.0)
    torch.manual_seed(0)
    net = entry.build(args, (1, 32, 32)).train()
    layers = list(net)
    textbook = []
    for index, layer in enumerate(layers):
        if isinstance(layer, torch.nn.MaxPool2d):
            assert isinstance(layers[index + 1], torch.nn.ReLU)  # the reordering is in place
            textbook += [torch.nn.ReLU(), layer]
        elif not (
            isinstance(layer, torch.nn.ReLU) and isinstance(layers[index - 1], torch.nn.MaxPool2d)
        ):
            textbook.append(layer)
    reference = torch.nn.Sequential(*textbook)
    inputs = torch.randn(6, 1, 32, 32)
    ours = net(inputs)
    ours.square().sum().backward()
    ours_grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    theirs = reference(inputs)
    theirs.square().sum().backward()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for mine, expected in zip(ours_grads, [p.grad for p in net.parameters()], strict=True):
        torch.testing.assert_close(mine, expected, rtol=0, atol=0)


CONFIG_FLOOR = 8  # data.image_size's own minimum


@pytest.mark.parametrize("name", [n for n in BACKBONES.names() if BACKBONES.get(n).image_input])
def test_every_image_backbone_builds_and_runs_at_every_size_up_to_40(name):
    # The width its heads sit on must be what a batch of that size really gives.
    entry = BACKBONES.get(name)
    args = entry.Args(pretrained=False) if name.startswith("resnet") else entry.Args()
    channels = entry.image_input.channels or 1
    sizes = range(max(entry.min_size, CONFIG_FLOOR), 41)
    network = entry.build(args, (channels, 40, 40)) if name.startswith("resnet") else None
    for size in sizes:
        net = (network or entry.build(args, (channels, size, size))).eval()
        with torch.no_grad():
            features = net(torch.zeros(2, channels, size, size))
        assert features.shape == (2, net.out_features), (name, size)


def test_an_image_below_the_backbones_minimum_is_refused_naming_the_key(write_space):
    space = write_space("method: dann\nmodel: {backbone: lenet}\n")
    assert load_config(space, ["data.image_size=16"]).data.image_size == 16
    with pytest.raises(ConfigError, match="data.image_size 15 is too small for model.backbone"):
        load_config(space, ["data.image_size=15"])
