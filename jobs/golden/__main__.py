"""``python -m jobs.golden VIDEO... [options]``: the ``framesift golden`` command alone, the
entrypoint for ``ray job submit`` (the job joins the cluster it was submitted to)."""

from jobs.cli.golden import golden_entrypoint

golden_entrypoint()
