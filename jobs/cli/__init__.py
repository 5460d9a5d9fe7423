"""The ``framesift`` command line: the top floor, entry points only.

Nothing is imported here, so ``python -m jobs.golden`` (which needs one command) and
``framesift --help`` pay only for what they use.
"""


def main() -> None:
    """Console script ``framesift``."""
    from jobs.cli.commands import main as run

    run()
