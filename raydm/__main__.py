"""The ``raydm`` command (and ``python -m raydm``): the CLI, then after a search a quick exit."""

import sys

from raydm.cli import main


def run() -> None:
    try:
        main()
    except SystemExit as done:
        # Only a search imports Ray; a message code (sys.exit("...")) takes the usual exit.
        if "ray" in sys.modules and isinstance(done.code, int | None):
            from raydm.cluster import exit_now

            exit_now(done.code)  # returns unless Ray is running
        raise


if __name__ == "__main__":
    run()
