"""How long the cheap commands take, and what they import.

    python benchmarks/command_time.py --repeats 5 [--repo OTHER_CHECKOUT]

Each command runs as a user's shell runs it, in a fresh interpreter, ``--repeats`` times, in
this checkout or ``--repo`` (an older one, to compare); the table gives the median wall time
and, from one more run under ``python -X importtime``, the time its imports took and whether
torch, scikit-learn, Ray or Optuna were loaded.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {
    "raydm --help": ["--help"],
    "raydm list methods": ["list", "methods"],
    "raydm list domains": ["list", "domains"],
    "raydm tune --dry-run": ["tune", "--space", "search_spaces/dann.yaml", "--dry-run"],
    "a config error": ["tune", "--space", "search_spaces/dann.yaml", "--set", "train.epochs=0"],
    # A missing folder: found before Ray starts (the images decode beside Ray, not this).
    "a data error": [
        "tune",
        "--space",
        "search_spaces/dann.yaml",
        "--set",
        "data.source=folder:/no",
    ],
}
WATCHED = ("torch", "sklearn", "ray", "optuna")


def run(repo: Path, arguments: list[str], *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, *flags, "-m", "raydm", *arguments]
    return subprocess.run(command, capture_output=True, text=True, cwd=repo)


def imports(repo: Path, arguments: list[str]) -> tuple[float, set[str]]:
    """The seconds the command's imports took (the cumulative times of those made at the top
    level, not inside another) and every module it imported, from -X importtime."""
    seconds, modules = 0.0, set()
    for line in run(repo, arguments, "-X", "importtime").stderr.splitlines():
        parts = line.split("|")
        if not line.startswith("import time:") or len(parts) != 3:
            continue
        cumulative, name = parts[1].strip(), parts[2]
        if not cumulative.isdigit():
            continue
        modules.add(name.strip())
        if name.startswith(" ") and not name.startswith("  "):
            seconds += int(cumulative) / 1e6
    return seconds, modules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=ROOT)
    args = parser.parse_args()
    print("| command | wall s (median) | imports s | loads |")
    print("|---|---|---|---|")
    for label, arguments in COMMANDS.items():
        walls = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            run(args.repo, arguments)
            walls.append(time.perf_counter() - started)
        seconds, modules = imports(args.repo, arguments)
        watched = ", ".join(name for name in WATCHED if name in modules) or "none of them"
        print(f"| `{label}` | {statistics.median(walls):.2f} | {seconds:.2f} | {watched} |")


if __name__ == "__main__":
    main()
