"""``python -m jobs.cli``: the ``framesift`` command line."""

from jobs.cli.app import main

main()
