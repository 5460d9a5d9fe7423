"""``python -m jobs.cli``: the ``framesift`` command line."""

from jobs.cli.commands import main

main()
