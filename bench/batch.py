"""Batch benchmark: prints one JSON object.

N short videos (default 48 x 4 s at 854x480, 5,760 frames) against one video holding exactly
the same frames (the short ones remuxed end to end, no re-encode), each through the streaming
pipeline of ``framesift golden --manifest`` on a multi-node Ray cluster on this machine (a head
with no CPUs and two one-CPU workers, ``tests/system/cluster_manager.py``). Every run is a fresh
driver process that joins the cluster, as ``ray job submit`` would, so each pays its job's
worker start-up. Rounds are interleaved (single, batch from local files, from loopback HTTP with
ranges, from moto's S3 server); the best of each is reported, ratios between bests of the same
run. Walls and the time to the first result count from the driver's start, its join of the
cluster included (``join_s``; ``first_result_share_after_join`` leaves it out). Then the
driver's peak RSS for N and 10N tiny videos (64x64, 9 frames).

Targets on 2 cores: batch frames/s >= 0.95x the single video's; the first result stored within
10% of the batch's wall time; driver peak RSS at 10N <= 1.2x that at N; loopback S3/HTTP >= 0.9x
local files.

    python bench/batch.py [--videos 48] [--seconds 4] [--size 854x480] [--tiny 48]
                          [--rounds 2] [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the loopback servers the tests use
sys.path.insert(0, str(ROOT / "tests" / "system"))  # and their multi-node cluster

import av  # noqa: E402

from actors.synthetic import make_sample_video  # noqa: E402
from managed_cluster import ManagedCluster  # noqa: E402



def concat(paths: list[Path], out: Path) -> None:
    """Remux H.264 MP4s with identical settings end to end: the same frames, one video."""
    with av.open(str(paths[0])) as first, av.open(str(out), "w") as o:
        ost = o.add_stream_from_template(first.streams.video[0])
        offset = 0
        for p in paths:
            with av.open(str(p)) as c:
                last = 0
                for pkt in c.demux(c.streams.video[0]):
                    if pkt.size == 0:
                        continue
                    pkt.pts += offset
                    pkt.dts += offset
                    last = max(last, pkt.pts + (pkt.duration or 0))
                    pkt.stream = ost
                    o.mux(pkt)
                offset = last


def make_inputs(work: Path, n: int, seconds: float, size: tuple[int, int], tiny: int
                ) -> tuple[list[Path], Path, list[Path]]:
    work.mkdir(parents=True, exist_ok=True)
    short = []
    for i in range(n):
        p = work / f"short_{size[0]}x{size[1]}_{seconds}s_{i:03d}.mp4"
        if not p.exists():
            make_sample_video(p, seconds=seconds, size=size, seed=100 + i)
        short.append(p)
    single = work / f"single_{size[0]}x{size[1]}_{n}x{seconds}s.mp4"
    if not single.exists():
        concat(short, single)
    tinies = []
    for i in range(10 * tiny):
        p = work / "tiny" / f"t{i:05d}.mp4"
        if not p.exists():
            if i == 0:
                make_sample_video(p, seconds=0.3, size=(64, 64), seed=7)
            else:
                shutil.copy(tinies[0], p)
        tinies.append(p)
    return short, single, tinies


# -- child: one driver ---------------------------------------------------------------------------

def child(spec: dict) -> None:
    from jobs.golden.batch import ManifestEntry, run_batch
    from jobs.golden.finish import Hooks
    from jobs.golden.params import GoldenParams
    from jobs.runtime import ensure_ray
    from jobs.sources import SourceOptions
    from jobs.stores.local import LocalStore

    entries = [ManifestEntry(v, f"s{i:05d}") for i, v in enumerate(spec["videos"])]
    plans: list[str] = []
    sources = SourceOptions(allowlist="127.0.0.1:*", s3_endpoint=spec.get("s3"),
                            s3_region="us-east-1")
    t0 = time.perf_counter()
    ensure_ray(spec["address"])  # joining the cluster, timed apart (the batch's walls include it)
    join = time.perf_counter() - t0
    report = run_batch(entries, GoldenParams(), LocalStore(spec["out"]), resume=False,
                       sources=sources, address=spec["address"],
                       hooks=Hooks(on_batch=lambda b: plans.append(b.reason)))
    s = report.summary
    failed = [r.error for r in report.results if not r.ok][:3]
    wall = join + s.wall_s
    print(json.dumps({"wall_s": round(wall, 2), "join_s": round(join, 2),
                      "first_result_s": round(join + (s.first_result_s or 0), 2),
                      "frames": s.frames, "frames_per_s": round(s.frames / wall, 1),
                      "ok": s.ok, "failed": s.failed, "errors": failed,
                      "driver_cpu_s": round(s.driver_cpu_s, 2),
                      "worker_cpu_s": round(s.worker_cpu_s, 1),
                      "driver_peak_rss_mb": round(
                          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "plan": plans[0] if plans else None}))


def run_child(spec: dict, env: dict[str, str]) -> dict:
    out = tempfile.mkdtemp(prefix="fsbench-out-")
    try:
        res = subprocess.run([sys.executable, __file__, "--child", json.dumps({**spec, "out": out})],
                             env=env, capture_output=True, text=True, timeout=3600)
        line = next((ln for ln in res.stdout.splitlines() if ln.startswith("{")), None)
        if res.returncode != 0 or line is None:
            raise RuntimeError(f"child failed ({res.returncode}): {res.stderr[-3000:]}")
        return json.loads(line)
    finally:
        shutil.rmtree(out, ignore_errors=True)


# -- parent --------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--size", default="854x480")
    ap.add_argument("--tiny", type=int, default=48, help="N for the driver RSS runs (N and 10N)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "framesift-bench-batch"))
    ap.add_argument("--out")
    ap.add_argument("--child")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return

    from source_servers import MotoS3, RangeServer

    w, h = (int(v) for v in args.size.split("x"))
    t0 = time.perf_counter()
    short, single, tinies = make_inputs(Path(args.work), args.videos, args.seconds, (w, h), args.tiny)
    gen_s = time.perf_counter() - t0
    http = RangeServer(Path(args.work)).start()
    s3 = MotoS3().start()
    client = s3.client()
    client.create_bucket(Bucket="bench")
    for p in short:
        client.upload_file(str(p), "bench", p.name)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")},
           **MotoS3.KEYS, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT),
           "AWS_EC2_METADATA_DISABLED": "true"}
    manager = ManagedCluster("cluster_manager.py", ["2"], env, prefix="fsb-")
    try:
        address = manager.first["address"]
        configs = {
            "single": {"videos": [str(single)]},
            "batch_local": {"videos": [str(p) for p in short]},
            "batch_http": {"videos": [http.url("r", p.name) for p in short]},
            "batch_s3": {"videos": [f"s3://bench/{p.name}" for p in short], "s3": s3.endpoint},
        }
        runs: dict[str, list[dict]] = {k: [] for k in configs}
        for _ in range(args.rounds):
            for name, spec in configs.items():
                runs[name].append(run_child({**spec, "address": address}, env))
        rss = {}
        for label, count in (("N", args.tiny), ("10N", 10 * args.tiny)):
            rss[label] = run_child({"videos": [str(p) for p in tinies[:count]], "address": address}, env)
    finally:
        manager.stop()
        http.stop()
        s3.stop()

    best = {k: max(v, key=lambda r: r["frames_per_s"]) for k, v in runs.items()}
    local = best["batch_local"]
    result = {
        "machine": {"cpus": os.cpu_count(), "cluster": "head (0 CPUs) + 2 worker nodes x 1 CPU"},
        "workload": {"videos": args.videos, "seconds_each": args.seconds, "size": args.size,
                     "frames": local["frames"], "rounds": args.rounds,
                     "generate_s": round(gen_s, 1)},
        "single_video": best["single"],
        "batch_local": local,
        "batch_http": best["batch_http"],
        "batch_s3": best["batch_s3"],
        "all_runs_frames_per_s": {k: [r["frames_per_s"] for r in v] for k, v in runs.items()},
        "ratios": {
            "batch_vs_single_fps": round(local["frames_per_s"] / best["single"]["frames_per_s"], 3),
            "first_result_share_of_wall": round(local["first_result_s"] / local["wall_s"], 3),
            "first_result_share_after_join": round((local["first_result_s"] - local["join_s"])
                                                   / (local["wall_s"] - local["join_s"]), 3),
            "http_vs_local_fps": round(best["batch_http"]["frames_per_s"] / local["frames_per_s"], 3),
            "s3_vs_local_fps": round(best["batch_s3"]["frames_per_s"] / local["frames_per_s"], 3),
            "driver_rss_10N_vs_N": round(rss["10N"]["driver_peak_rss_mb"]
                                         / rss["N"]["driver_peak_rss_mb"], 3),
        },
        "driver_rss": {k: {"videos": args.tiny * (1 if k == "N" else 10),
                           "peak_rss_mb": v["driver_peak_rss_mb"], "wall_s": v["wall_s"],
                           "driver_cpu_s": v["driver_cpu_s"], "ok": v["ok"]}
                       for k, v in rss.items()},
        "targets": {"batch_vs_single_fps": ">= 0.95", "first_result_share_of_wall": "<= 0.10",
                    "driver_rss_10N_vs_N": "<= 1.2", "http_vs_local_fps": ">= 0.9",
                    "s3_vs_local_fps": ">= 0.9"},
    }
    text = json.dumps(result)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
