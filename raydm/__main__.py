"""The ``raydm`` command (and ``python -m raydm``): the CLI, then after a search a quick exit."""

import sys

from raydm.cli import main


def run() -> None:
    try:
        main()
    except SystemExit as done:
        if "ray" in sys.modules:  # only a search imports Ray
            from raydm.cluster import exit_now

            exit_now(done.code)
        raise


if __name__ == "__main__":
    run()
