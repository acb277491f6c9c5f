"""What each entry point loads: the Ray worker and the cheap commands stay light."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # a fresh interpreter per check


def test_the_ray_worker_imports_no_reporting_code():
    # What a trial's process loads: no report, plots or selection (Ray Tune itself brings
    # pandas, so pandas is not checked).
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, raydm.trainable; print(' '.join(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for heavy in ("matplotlib", "raydm.report", "raydm.results", "raydm.selection"):
        assert heavy not in loaded, heavy
