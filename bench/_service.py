"""Start the HTTP service on a private local Ray for a benchmark (loopback only)."""

from __future__ import annotations

import contextlib
import socket
import sys
import tempfile
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_service(num_cpus: int | None = None, **settings: object) -> Iterator[tuple[str, Path]]:
    """Yield (base URL, work dir) of a freshly deployed framesift application."""
    from ray import serve

    from jobs.runtime import ensure_ray
    from serve.app import build_app

    work = Path(tempfile.mkdtemp(prefix="fsbench-serve-"))
    ensure_ray(num_cpus=num_cpus)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"settings": {"state_dir": str(work / "state"),
                                      "out_dir": str(work / "out"), **settings}}),
              name="framesift", route_prefix="/")
    try:
        yield f"http://127.0.0.1:{port}", work
    finally:
        import ray

        ray.shutdown()  # the private cluster goes, Serve with it


def emit(result: dict, out: str | None) -> None:
    """Print the benchmark's one JSON object (and write it to ``out`` when given)."""
    import json

    text = json.dumps(result, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
