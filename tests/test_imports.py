"""What each entry point loads: the Ray worker and the cheap commands stay light."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter per check


def test_the_ray_worker_imports_no_reporting_code():
    # What a trial's process loads: no report, plots or selection (Ray Tune itself brings
    # pandas, so pandas is not checked).
    loaded = _loaded_by("raydm.trainable")
    for heavy in ("matplotlib", "raydm.report", "raydm.results", "raydm.selection"):
        assert heavy not in loaded, heavy


def _loaded_by(module: str) -> list[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()


def test_the_data_package_does_not_import_the_config_that_validates_its_names():
    # config imports data's domain look-up; data names DataConfig for type hints only.
    assert "raydm.config" not in _loaded_by("raydm.data")
