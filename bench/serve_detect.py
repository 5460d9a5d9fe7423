"""Detect throughput and p50/p99 latency over HTTP at concurrency 1, 8, 32, batching on vs off.

Random-weight YOLOv8n (3 classes) at 320 px on a private local Ray; one Detector replica.
Batching off = max_batch_size 1 (retuned live through reconfigure). Prints one JSON object.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from model_fixtures import make_yolo_pt
    from ray import serve

    from jobs.runtime import ensure_ray
    from serve.app import build_app

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-"))
    weights = make_yolo_pt(tmp)
    ensure_ray(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="fsray-bench-", dir="/tmp"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"settings": {"state_dir": str(tmp / "state"), "out_dir": str(tmp / "out"),
                                      "yolo_weights": str(weights), "yolo_imgsz": 320,
                                      "model_device": "cpu", "detect_batch_size": 16,
                                      "detect_batch_wait_s": 0.02}}),
              name="bench", route_prefix="/")
    handle = serve.get_deployment_handle("Detector", app_name="bench")
    rng = np.random.default_rng(0)
    images = [cv2.imencode(".jpg", cv2.resize(rng.integers(0, 255, (60, 80, 3), np.uint8),
                                              (640, 480)))[1].tobytes() for _ in range(8)]
    results: dict[str, dict] = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
        def one(i: int) -> float:
            t0 = time.perf_counter()
            r = client.post("/v1/detect", content=images[i % len(images)],
                            headers={"content-type": "image/jpeg"})
            r.raise_for_status()
            return time.perf_counter() - t0

        for _ in range(4):
            one(0)  # warm-up
        for mode, cfg in (("batched", {"max_batch_size": 16, "batch_wait_timeout_s": 0.02}),
                          ("unbatched", {"max_batch_size": 1, "batch_wait_timeout_s": 0.0})):
            handle.reconfigure.remote(cfg).result()
            for conc in (1, 8, 32):
                n = max(16, conc * 4)
                t0 = time.perf_counter()
                with ThreadPoolExecutor(conc) as pool:
                    lat = sorted(pool.map(one, range(n)))
                wall = time.perf_counter() - t0
                results.setdefault(mode, {})[f"c{conc}"] = {
                    "requests": n, "throughput_rps": round(n / wall, 2),
                    "p50_ms": round(1000 * lat[len(lat) // 2], 1),
                    "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)}
    serve.shutdown()
    b, u = results["batched"], results["unbatched"]
    print(json.dumps({"model": "yolov8n random weights, 3 classes", "imgsz": 320,
                      "image": "640x480 JPEG", "device": "cpu", "replicas": 1,
                      "results": results,
                      "batched_over_unbatched_c8": round(b["c8"]["throughput_rps"]
                                                         / u["c8"]["throughput_rps"], 2),
                      "batched_over_unbatched_c32": round(b["c32"]["throughput_rps"]
                                                          / u["c32"]["throughput_rps"], 2)},
                     indent=2))


if __name__ == "__main__":
    main()
