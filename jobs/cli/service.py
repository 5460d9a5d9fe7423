"""``framesift serve``: the HTTP API on a local Ray (serve/standalone.py does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from jobs.cli.common import AddressOption, NumCpusOption, OutOption, err, fail


def serve_command(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    state_dir: Annotated[Optional[Path], typer.Option(help="analysis records [state]")] = None,
    out_dir: OutOption = None,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
) -> None:
    """Start the HTTP API (Ray Serve) and block; Ctrl-C stops it."""
    from pydantic import ValidationError

    from serve.standalone import serve_locally, settings_overrides
    from serve.security import InsecureBindError
    from serve.tenants import ApiKeyConfigError

    try:
        serve_locally(host=host, port=port, settings=settings_overrides(state_dir, out_dir),
                      address=address, num_cpus=num_cpus,
                      warn=lambda m: err.print(f"warning: {m}", highlight=False, soft_wrap=True),
                      ready=lambda m: err.print(m, highlight=False))
    except (InsecureBindError, ApiKeyConfigError, ValidationError) as exc:
        fail(str(exc))
