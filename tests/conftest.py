import os
from pathlib import Path

import pytest

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
