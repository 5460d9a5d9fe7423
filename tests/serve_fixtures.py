"""The HTTP API served for tests: Ray Serve in the session's private Ray, on a free loopback
port, and the helpers that talk to it (shared by the API, console and browser tests).

Import the fixture into a test module (``from serve_fixtures import api``): it is module-scoped,
so each module gets its own applications, shut down at the module's end.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from httpx_sse import connect_sse

SECRET_KEY = "fs-test-key-9c1f7e"
LIMIT_KEYS = ("fs-limits-key-a-31c7", "fs-limits-key-b-8e02")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def api(ray_cluster, tmp_path_factory):
    """The application at /, a keyed copy at /secure, a tiny-queue copy at /tiny and a keyed
    copy with tight analysis limits at /limits."""
    from ray import serve

    from serve.app import AnalysisCoordinator, Ingress, build_app

    state = tmp_path_factory.mktemp("state")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = {"state_dir": str(state / "main"), "out_dir": str(state / "out"),
                "url_allowlist": "127.0.0.1:*", "max_image_bytes": 3_000_000,
                "max_images_per_request": 12, "max_upload_bytes": 30_000_000,
                "max_image_pixels": 40_000_000}
    serve.run(build_app({"settings": settings}), name="framesift", route_prefix="/")
    keys = state / "api-keys"
    keys.write_text(f"other-key\n{SECRET_KEY}\n")  # like a mounted secret: never in a config
    secure = {**settings, "state_dir": str(state / "secure"), "api_keys_file": str(keys)}
    serve.run(Ingress.bind(AnalysisCoordinator.bind(secure), secure), name="secure",
              route_prefix="/secure")
    tiny = {**settings, "state_dir": str(state / "tiny")}
    small_queue = Ingress.options(max_ongoing_requests=1, max_queued_requests=1)
    serve.run(small_queue.bind(AnalysisCoordinator.bind(tiny), tiny), name="tiny",
              route_prefix="/tiny")
    limit_keys = state / "limit-keys"
    limit_keys.write_text("\n".join(LIMIT_KEYS) + "\n")
    limits = {**settings, "state_dir": str(state / "limits"), "api_keys_file": str(limit_keys),
              "max_queued_analyses": 2, "max_active_analyses_per_key": 2,
              "max_analysis_frames": 300, "max_analysis_s": 8, "upload_orphan_grace_s": 2}
    serve.run(Ingress.bind(AnalysisCoordinator.bind(limits), limits), name="limits",
              route_prefix="/limits")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        yield {"client": client, "port": port, "out": state / "out", "state": state}
    serve.shutdown()


def wait_for_status(client: httpx.Client, analysis_id: str, statuses=("succeeded", "failed", "cancelled"),
          timeout: float = 180, prefix: str = "", headers: dict | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = client.get(f"{prefix}/v1/analyses/{analysis_id}", headers=headers)
            if r.status_code == 200 and r.json()["status"] in statuses:
                return r.json()
        except httpx.TransportError:
            pass  # a replica restarting
        time.sleep(0.25)
    raise AssertionError(f"analysis {analysis_id} not in {statuses} after {timeout} s")


def sse_events(client: httpx.Client, url: str, limit: int = 2000) -> list:
    out = []
    with connect_sse(client, "GET", url) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for sse in source.iter_sse():
            out.append((sse.event, sse.json()))
            if sse.event in ("done", "error") or len(out) >= limit:
                break
    return out


def upload_video(client: httpx.Client, path: Path, scan_id: str, prefix: str = "",
                 headers: dict | None = None, **fields) -> httpx.Response:
    with path.open("rb") as fh:
        return client.post(f"{prefix}/v1/analyses", files={"video": (path.name, fh, "video/mp4")},
                           data={"scan_id": scan_id, **{k: str(v) for k, v in fields.items()}},
                           headers=headers)


def png_bytes(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    ok, buf = cv2.imencode(".png", rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    return buf.tobytes()


def jpeg_bytes(w: int, h: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (0, 0), 2)
    cv2.circle(img, (w // 3, h // 3), max(3, w // 20), (255, 255, 255), -1)
    return cv2.imencode(".jpg", img)[1].tobytes()


def stored_text(db) -> bytes:
    """Everything the database holds about the analyses (records and events), as bytes."""
    if db.backend == "sqlite":
        return b"".join(p.read_bytes() for p in db.path.parent.glob(db.path.name + "*"))
    with db._tx() as q:
        rows = q("SELECT row_to_json(a)::text AS t FROM framesift_service.analyses a UNION ALL "
                 "SELECT row_to_json(e)::text FROM framesift_service.events e")
    return "\n".join(r["t"] for r in rows).encode()
