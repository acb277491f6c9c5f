import os
from pathlib import Path

import pytest
import ray

# Keep every Ray process of the tests on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

SPACES = Path(__file__).resolve().parent.parent / "search_spaces"


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
def ray_session():
    """A local Ray on loopback with this machine's 2 cores, shut down after the test."""
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
