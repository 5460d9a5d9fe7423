"""HTTP service benchmark: batch image analysis at concurrency 1 vs the default, and a golden
analysis over HTTP vs the same job run directly (what the CLI runs) on the same warm cluster;
the overhead is reported against the CLI's end-to-end time and against the warm direct run.

Prints one JSON object.  python bench/serve_batch.py [--images 40] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _service import ROOT, emit, running_service

import cv2  # noqa: E402
import httpx  # noqa: E402
import numpy as np  # noqa: E402
from httpx_sse import connect_sse  # noqa: E402


def make_images(n: int) -> list[tuple[str, tuple[str, bytes, str]]]:
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        # a 12 MP phone photo: the size people upload
        img = cv2.resize(rng.integers(0, 255, (750, 1000, 3), dtype=np.uint8), (4000, 3000),
                         interpolation=cv2.INTER_CUBIC)
        cv2.circle(img, (1200 + i * 20, 900), 120, (255, 255, 255), -1)
        files.append(("images", (f"img{i:02d}.jpg", cv2.imencode(".jpg", img)[1].tobytes(),
                                 "image/jpeg")))
    return files


def batch(client: httpx.Client, files, concurrency: int | None) -> dict:
    params = {"concurrency": concurrency} if concurrency else {}
    t = time.perf_counter()
    summary, results = None, 0
    with connect_sse(client, "POST", "/v1/images/analyze", files=files, params=params) as src:
        for sse in src.iter_sse():
            if sse.event == "result":
                results += 1
            elif sse.event == "summary":
                summary = sse.json()
    wall = time.perf_counter() - t
    return {"wall_s": round(wall, 3), "images_per_s": round(results / wall, 2),
            "analyzed": results, "server_summary": summary}


def golden_over_http(client: httpx.Client, video: Path, scan_id: str) -> float:
    t = time.perf_counter()
    with video.open("rb") as fh:
        r = client.post("/v1/analyses", files={"video": (video.name, fh, "video/mp4")},
                        data={"scan_id": scan_id})
    r.raise_for_status()
    with connect_sse(client, "GET", f"/v1/analyses/{r.json()['id']}/events") as src:
        for sse in src.iter_sse():
            if sse.event in ("done", "error"):
                assert sse.event == "done", sse.data
                break
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--out")
    args = ap.parse_args()
    from actors.synthetic import make_sample_video
    from jobs.golden.job import GoldenParams, VideoJob, run_golden
    from jobs.stores.local import LocalStore

    files = make_images(args.images)
    result: dict = {"machine": {"cpus": os.cpu_count()}, "images": args.images}
    with running_service() as (base, work):
        video = work / "bench720.mp4"
        make_sample_video(video, seconds=20, size=(1280, 720), seed=1)
        with httpx.Client(base_url=base, timeout=600) as client:
            batch(client, files[:4], None)  # warm the workers
            one = batch(client, files, 1)
            default = batch(client, files, None)
            result["batch"] = {"concurrency_1": one, "concurrency_default": default,
                               "speedup": round(one["wall_s"] / default["wall_s"], 2)}
            golden_over_http(client, video, "warm-up")
            direct, http = [], []
            for i in range(3):  # interleaved, best of 3
                t = time.perf_counter()
                [r] = run_golden([VideoJob(str(video), f"direct-{i}")], GoldenParams(),
                                 LocalStore(work / "direct"))
                assert r.ok
                direct.append(time.perf_counter() - t)
                http.append(golden_over_http(client, video, f"http-{i}"))
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "jobs.cli", "golden", str(video), "--no-progress",
                        "--out", str(work / "cli"), "--scan-id", "cli"], cwd=ROOT, check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        cli_cold = time.perf_counter() - t
    overhead = min(http) - min(direct)
    result["golden_720p_600_frames"] = {
        "direct_run_golden_s": round(min(direct), 3),
        "http_analysis_s": round(min(http), 3),
        "http_overhead_s": round(overhead, 3),
        "http_overhead_fraction_of_cli_time": round(overhead / cli_cold, 3),
        "http_overhead_fraction_of_warm_direct_run": round(overhead / min(direct), 3),
        "cli_cold_s_ray_startup_included": round(cli_cold, 2),
        "direct_runs_s": [round(x, 3) for x in direct],
        "http_runs_s": [round(x, 3) for x in http],
    }
    result["targets"] = {"batch_speedup_ge_1.7": result["batch"]["speedup"] >= 1.7,
                         "http_overhead_lt_10pct_of_cli_time":
                             result["golden_720p_600_frames"]["http_overhead_fraction_of_cli_time"]
                             < 0.10}
    emit(result, args.out)


if __name__ == "__main__":
    main()
