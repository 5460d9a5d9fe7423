"""Detect throughput and p50/p99 latency over HTTP at concurrency 1, 8, 32, batching on vs off.

Random-weight YOLOv8n (3 classes) at 320 px on a private local Ray; one Detector replica.
Batching off = max_batch_size 1 (retuned live through ``reconfigure``, the same replica).
Each (mode, concurrency) cell runs ``--rounds`` times, interleaved with the other mode, and
reports the median throughput (this VM's speed drifts between minutes) and the pooled
latencies. ``model_only`` times the Detector unit alone at batch 1 and batch 16: the ceiling
of what batching can give before HTTP and Serve's per-request work; ``cpu_ms_per_request_c8``
says where the CPU goes per request (by process, median of the rounds) at concurrency 8.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _service import emit, running_service  # noqa: E402

MODES = {"batched": {"max_batch_size": 16, "batch_wait_timeout_s": 0.02},
         "unbatched": {"max_batch_size": 1, "batch_wait_timeout_s": 0.0}}
IMGSZ = 320


def _images(n: int = 8) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [cv2.imencode(".jpg", cv2.resize(rng.integers(0, 255, (60, 80, 3), np.uint8),
                                            (640, 480)))[1].tobytes() for _ in range(n)]


def _role(proc: psutil.Process) -> str:
    if proc.pid == os.getpid():
        return "load_generator"
    cmd = " ".join(proc.info["cmdline"] or [])
    for key, role in (("Detector", "detector_replica"), ("Ingress", "ingress_replica"),
                      ("ProxyActor", "http_proxy")):
        if key in cmd:
            return role
    return "ray_and_other"


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by every process on the machine, with its role."""
    out = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            out[proc.pid] = (_role(proc), sum(proc.cpu_times()[:2]))
        except psutil.Error:
            continue
    return out


def cpu_by_role(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                requests: int) -> dict[str, float]:
    used: dict[str, float] = {}
    for pid, (role, cpu) in after.items():
        used[role] = used.get(role, 0.0) + cpu - before.get(pid, (role, 0.0))[1]
    out = {k: round(1000 * v / requests, 1) for k, v in sorted(used.items()) if v > 0}
    out["total"] = round(sum(out.values()), 1)
    return out


def model_only(weights: Path, images: list[bytes], device: str,
               seconds: float = 4.0) -> dict[str, float]:
    """ms per image of the Detector unit at batch 1 and 16 (decoded frames, 1 torch thread)."""
    from actors.detector import Detector, DetectorConfig

    unit = Detector(DetectorConfig(weights=str(weights), imgsz=IMGSZ, device=device, cpus=1))
    unit.setup()
    frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in images] * 2
    out = {}
    for bs in (1, 16):
        unit.detect(frames[:bs])
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            unit.detect(frames[:bs])
            n += bs
        out[f"batch{bs}_ms_per_image"] = round(1000 * (time.perf_counter() - t0) / n, 2)
    out["batch16_speedup"] = round(out["batch1_ms_per_image"] / out["batch16_ms_per_image"], 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--detector-cpus", type=float, default=1.0,
                        help="CPUs (and torch threads) of the Detector replica")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the private Ray")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    from model_fixtures import make_yolo_pt
    from ray import serve

    weights = make_yolo_pt(Path(tempfile.mkdtemp(prefix="fs-bench-")))
    images = _images()
    ceiling = model_only(weights, images, args.device)
    cells: dict[tuple[str, int], dict[str, list[float]]] = {}
    batch_sizes: dict[str, int] = {}
    cpu: dict[str, dict[str, list[float]]] = {}  # per mode and role, one value per round
    replicas = 0
    with running_service(num_cpus=args.cpus, yolo_weights=str(weights), yolo_imgsz=IMGSZ,
                         model_device=args.device, detector_num_gpus=0 if args.device == "cpu"
                         else 1, detector_num_cpus=args.detector_cpus,
                         detector_max_replicas=1) as (url, _):
        handle = serve.get_deployment_handle("Detector", app_name="framesift")
        with httpx.Client(base_url=url, timeout=300) as client:
            def one(i: int) -> float:
                t0 = time.perf_counter()
                r = client.post("/v1/detect", content=images[i % len(images)],
                                headers={"content-type": "image/jpeg"})
                r.raise_for_status()
                return time.perf_counter() - t0

            for i in range(8):
                one(i)  # warm-up
            for _ in range(args.rounds):
                for mode, cfg in MODES.items():
                    handle.reconfigure.remote(cfg).result()
                    for conc in (1, 8, 32):
                        n = max(32, conc * 8)
                        cpu0, t0 = cpu_seconds(), time.perf_counter()
                        with ThreadPoolExecutor(conc) as pool:
                            lat = list(pool.map(one, range(n)))
                        cell = cells.setdefault((mode, conc), {"rps": [], "lat": []})
                        cell["rps"].append(n / (time.perf_counter() - t0))
                        cell["lat"].extend(lat)
                        if conc == 8:
                            for role, ms in cpu_by_role(cpu0, cpu_seconds(), n).items():
                                cpu.setdefault(mode, {}).setdefault(role, []).append(ms)
            batch_sizes = {str(k): v for k, v in
                           sorted(handle.info.remote().result()["batch_sizes"].items())}
            replicas = serve.status().applications["framesift"].deployments["Detector"] \
                .replica_states.get("RUNNING", 0)
    results: dict[str, dict] = {}
    for (mode, conc), cell in cells.items():
        lat = sorted(cell["lat"])
        results.setdefault(mode, {})[f"c{conc}"] = {
            "requests": len(lat), "throughput_rps": round(statistics.median(cell["rps"]), 2),
            "throughput_rps_rounds": [round(x, 2) for x in cell["rps"]],
            "p50_ms": round(1000 * lat[len(lat) // 2], 1),
            "p99_ms": round(1000 * lat[min(len(lat) - 1, int(0.99 * len(lat)))], 1)}
    b, u = results["batched"], results["unbatched"]
    ratio = {f"c{c}": round(b[f"c{c}"]["throughput_rps"] / u[f"c{c}"]["throughput_rps"], 2)
             for c in (1, 8, 32)}
    emit({"model": "yolov8n random weights, 3 classes", "imgsz": IMGSZ,
          "image": "640x480 JPEG", "device": args.device, "machine_cpus": os.cpu_count(),
          "ray_cpus": args.cpus,
          "replicas": replicas,
          "detector_cpus": args.detector_cpus,
          "rounds": args.rounds, "model_only": ceiling, "results": results,
          "batch_sizes_seen": batch_sizes, "cpu_ms_per_request_c8": {
              mode: {role: round(statistics.median(v), 1) for role, v in roles.items()}
              for mode, roles in cpu.items()},
          "batched_over_unbatched": ratio,
          "target_batched_ge_1.5x_unbatched_c8": ratio["c8"] >= 1.5}, args.out)


if __name__ == "__main__":
    main()
