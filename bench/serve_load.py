"""Bounded loopback load on the HTTP service: mixed health, analysis-status and small image
requests at a fixed concurrency for a fixed time. Prints one JSON object.

    python bench/serve_load.py [--seconds 120] [--concurrency 16] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

from _service import emit, running_service

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402

KINDS = ("health", "status", "image")


def _small_jpeg() -> bytes:
    rng = np.random.default_rng(1)
    return cv2.imencode(".jpg", rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))[1].tobytes()


async def _worker(client: httpx.AsyncClient, deadline: float, analysis_id: str, image: bytes,
                  n: int, stats: dict) -> None:
    i = n
    while time.monotonic() < deadline:
        kind = KINDS[i % len(KINDS)]
        i += 1
        t = time.perf_counter()
        try:
            if kind == "health":
                r = await client.get("/healthz")
            elif kind == "status":
                r = await client.get(f"/v1/analyses/{analysis_id}")
            else:
                r = await client.post("/v1/images/analyze",
                                      files={"images": ("s.jpg", image, "image/jpeg")})
                if r.status_code == 200 and "event: summary" not in r.text:
                    r.status_code = 599  # the stream ended early
            code = r.status_code
        except httpx.HTTPError:
            code = 598  # transport error
        stats[kind]["lat"].append(time.perf_counter() - t)
        if code == 503:
            stats[kind]["shed_503"] += 1
        elif not 200 <= code < 300:
            stats[kind]["errors"] += 1


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 2) if values else None


async def run(base: str, seconds: float, concurrency: int, analysis_id: str) -> dict:
    stats = {k: {"lat": [], "errors": 0, "shed_503": 0} for k in KINDS}
    image = _small_jpeg()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        deadline = time.monotonic() + seconds
        t = time.perf_counter()
        await asyncio.gather(*(_worker(client, deadline, analysis_id, image, n, stats)
                               for n in range(concurrency)))
        wall = time.perf_counter() - t
    total = sum(len(s["lat"]) for s in stats.values())
    every = [x for s in stats.values() for x in s["lat"]]
    return {
        "seconds": round(wall, 1), "concurrency": concurrency, "requests": total,
        "throughput_rps": round(total / wall, 1),
        "p50_ms": _pct(every, 50), "p99_ms": _pct(every, 99),
        "errors": sum(s["errors"] for s in stats.values()),
        "shed_503": sum(s["shed_503"] for s in stats.values()),
        "by_kind": {k: {"requests": len(s["lat"]), "p50_ms": _pct(s["lat"], 50),
                        "p99_ms": _pct(s["lat"], 99), "errors": s["errors"],
                        "shed_503": s["shed_503"]} for k, s in stats.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--out")
    args = ap.parse_args()
    from actors.synthetic import make_sample_video

    with running_service() as (base, work):
        video = work / "small.mp4"
        make_sample_video(video, seconds=3, size=(480, 270), seed=2)
        with httpx.Client(base_url=base, timeout=120) as client, video.open("rb") as fh:
            aid = client.post("/v1/analyses", files={"video": ("v.mp4", fh, "video/mp4")},
                              data={"scan_id": "load"}).json()["id"]
        result = {"machine": {"cpus": os.cpu_count()},
                  **asyncio.run(run(base, args.seconds, args.concurrency, aid))}
    result["target_zero_errors_besides_503"] = result["errors"] == 0
    emit(result, args.out)


if __name__ == "__main__":
    main()
