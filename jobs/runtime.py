"""Connect to Ray, and the one place that reads the cluster's resources.

Either a given cluster address, or a private local Ray started on demand.
"""

from __future__ import annotations

import logging

import ray
from ray.data import DataContext

log = logging.getLogger(__name__)


def ensure_ray(address: str | None = None, num_cpus: int | None = None, quiet: bool = True,
               temp_dir: str | None = None) -> int:
    """Initialise Ray once per process and return the cluster's CPU count.

    Without ``address`` a private local cluster is started (``address="local"``), so a stale
    ``/tmp/ray/ray_current_cluster`` never makes us join someone else's cluster.
    """
    if not ray.is_initialized():
        level = logging.ERROR if quiet else logging.INFO
        if quiet:  # keep the CLI's output to the progress bar and the result
            for name in ("ray", "ray.data", "ray.serve"):
                logging.getLogger(name).setLevel(logging.ERROR)
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=level)
        else:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                     log_to_driver=False, logging_level=level, _temp_dir=temp_dir)
    configure_data_context()
    return cluster_cpus()


def cluster_cpus() -> int:
    """CPUs of the connected cluster now (at least 1)."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def free_resources() -> tuple[int, int]:
    """(free GPUs, free CPUs) of the connected cluster now."""
    avail = ray.available_resources()
    return int(avail.get("GPU", 0)), int(avail.get("CPU", 0))


def configure_data_context() -> None:
    """Ray Data settings for our pipelines, in whatever process drives them (CLI, actor)."""
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False  # framesift draws its own frames/fps/ETA bar
    ctx.print_on_execution_start = False
    # Per-operator resource reservation holds half the CPUs back for about a second
    # before a single map operator may use them all; our pipelines are one map stage,
    # so it only delays the second worker (measured: bench/golden.py).
    ctx.op_resource_reservation_enabled = False
