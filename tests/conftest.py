import os
from pathlib import Path

# Keep every Ray process of the tests on loopback. Ray reads this when it is first imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import pytest
import ray
import torch

from raydm.backbones import BACKBONES
from raydm.data.pipeline import Transform

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


def moons_dann(data_root, rest: str) -> str:
    """A DANN search space on the two-moons pair (an MLP: seconds per trial); ``rest`` gives
    its train, search and params sections."""
    head = (
        "method: dann\n"
        f"data: {{source: moons, target: moons_rotated, root: {data_root}}}\n"
        "model: {backbone: mlp}\n"
    )
    return head + rest.lstrip("\n")


def model_inputs(config, raw: torch.Tensor) -> torch.Tensor:
    """Stored samples as the backbone of ``config`` receives them in evaluation."""
    image_input = BACKBONES.get(config.model.backbone).image_input
    return Transform(config.data, image_input, torch.device("cpu"), seed=0).evaluation(raw)


def learned(metrics: dict[str, float]) -> dict[str, float]:
    """``metrics`` without the wall-clock timings and GPU memory, which no two runs share."""
    return {
        name: value for name, value in metrics.items() if not name.startswith(("time/", "gpu/"))
    }


def tune_ok(space, name: str, storage) -> str:
    """Run `raydm tune` on ``space`` into ``storage``/``name``, as a user would; its output."""
    from click.testing import CliRunner

    from raydm.cli import main

    command = ["tune", "--space", str(space), "--name", name, "--storage-path", str(storage)]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    return result.output


def tune_refused(space, storage) -> list[str]:
    """Run `raydm tune` on ``space`` as a user would, expecting a user error that stops it
    before Ray starts or anything is written under ``storage``; its output's lines."""
    from click.testing import CliRunner

    from raydm.cli import main

    result = CliRunner().invoke(
        main, ["tune", "--space", str(space), "--storage-path", str(storage)]
    )
    assert result.exit_code == 2, result.output
    assert not ray.is_initialized() and not storage.exists()
    return result.output.splitlines()


@pytest.fixture
def data_root(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def write_space(tmp_path):
    """Write a search-space YAML file from text and return its path."""

    def write(text: str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture
def keep_torch_threads():
    """Give torch back the thread count it had, for a test whose code sets its own."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def ray_session():
    """A local Ray on loopback with this machine's 2 cores, shut down after the test."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
