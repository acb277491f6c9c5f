"""The house rules a reader relies on."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "raydm"
MAX_LINES = 400


def test_no_module_of_the_package_is_above_about_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): length
        for path in PACKAGE.rglob("*.py")
        if (length := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"split these along their seams: {long}"
