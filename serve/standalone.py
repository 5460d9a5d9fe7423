"""What ``framesift serve`` runs: the application on a local Ray (private, or a given address),
bound to one host and port, until interrupted."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from serve.settings import ServiceSettings


def serve_locally(*, host: str, port: int, settings: dict[str, str], address: str | None,
                  num_cpus: int | None, warn: Callable[[str], None],
                  ready: Callable[[str], None]) -> None:
    """Start Ray (or join ``address``), deploy the app on ``host:port`` and block until Ctrl-C.

    Raises ``InsecureBindError`` (no API keys and a non-loopback host) or a pydantic
    ``ValidationError`` (bad settings) before anything starts.
    """
    from ray import serve as ray_serve

    from jobs.runtime import cluster_cpus, ensure_ray
    from serve.app import build_app
    from serve.http_guard import CALLBACK_ENV, enable_for_local_ray
    from serve.model_deployments import cpu_headroom_warning
    from serve.security import check_bind

    service = ServiceSettings(**settings)
    check_bind(host, service.api_key_list())
    if address or service.ray_address:
        warn(f"joining a running Ray: its HTTP proxy bounds header sizes and read times only if "
             f"its nodes were started with {CALLBACK_ENV}=serve.http_guard.proxy_middlewares")
    else:
        enable_for_local_ray()  # the private Ray's proxy inherits it (serve/http_guard.py)
    ensure_ray(address, num_cpus)
    if not (address or service.ray_address):  # a cluster may scale: no warning there
        warning = cpu_headroom_warning(service, cluster_cpus())
        if warning:
            warn(warning)
    ray_serve.start(http_options={"host": host, "port": port})
    ray_serve.run(build_app({"settings": settings}), name="framesift", route_prefix="/")
    ready(f"framesift API on http://{host}:{port} (docs: /docs); Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_serve.shutdown()


def settings_overrides(state_dir: Path | None, out_dir: Path | None) -> dict[str, str]:
    """The service settings given as flags (state and result folders)."""
    return {k: str(v) for k, v in (("state_dir", state_dir), ("out_dir", out_dir)) if v}
