"""Re-pick benchmark: prints one JSON object.

A store of N analysed short videos (default 200 hand-held scans with steady holds,
``actors.synthetic.make_hold_video``, 320x180: a few distinct ones copied to N files, each its
own scan) is given new selection parameters two ways, in the same process on the same threads:

* re-running: ``run_golden`` on every video again (decode and score every frame, select,
  extract, glint, store), what a changed parameter cost before re-picks;
* re-picking: ``stream_repick`` on the stored results (read ``scores.parquet``, select, keep
  the stored picks, decode only the new ones, glint, store).

The main case asks for more picks with another gap and bar (``top_k`` 5 -> 8), so most
videos need new frames decoded; the subset case (``top_k`` 3) needs none. Every re-picked result
is compared with the re-run's (selection, golden frames, images, bit for bit).

Target: re-pick throughput >= 50x re-running's, equal results.

    python bench/repick.py [--videos 200] [--distinct 8] [--size 320x180] [--threads 2]
                           [--work DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actors.synthetic_holds import make_hold_video  # noqa: E402
from _service import emit  # noqa: E402
from jobs.golden.job import GoldenParams, VideoJob, run_golden  # noqa: E402
from jobs.golden.repick import repick_params, stream_repick  # noqa: E402
from jobs.stores.local import LocalStore  # noqa: E402

BASE = GoldenParams()
MORE = {"top_k": 8, "min_gap_s": 0.3, "motion_max": 1.5}
SUBSET = {"top_k": 3}


def make_videos(work: Path, n: int, distinct: int, size: tuple[int, int]) -> list[Path]:
    made = []
    for seed in range(distinct):
        path = work / f"distinct-{seed}.mp4"
        make_hold_video(path, holds=3, size=size, seed=seed)
        made.append(path)
    videos = []
    for i in range(n):
        path = work / "videos" / f"scan-{i:04d}.mp4"
        path.parent.mkdir(exist_ok=True)
        shutil.copy(made[i % distinct], path)
        videos.append(path)
    return videos


def run(videos: list[Path], params: GoldenParams, root: Path, threads: int) -> float:
    jobs = [VideoJob(str(v), v.stem) for v in videos]
    t0 = time.perf_counter()
    results = run_golden(jobs, params, LocalStore(root), distributed=False, threads=threads)
    wall = time.perf_counter() - t0
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} video(s) failed: {bad[0].error}")
    return wall


def repick(ids: list[str], changes: dict, root: Path, threads: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    results = list(stream_repick(ids, changes, LocalStore(root), threads=threads))
    wall = time.perf_counter() - t0
    bad = [r for r in results if not r.ok]
    if bad:
        raise SystemExit(f"{len(bad)} re-pick(s) failed: {bad[0].error}")
    return wall, sum(len(r.manifest.golden_frames) for r in results if r.manifest)


def compare(ids: list[str], a: Path, b: Path) -> int:
    """Scans whose re-picked result differs from the re-run's (selection, frames, images)."""
    differ = 0
    for scan in ids:
        x, y = LocalStore(a).manifest(scan), LocalStore(b).manifest(scan)
        assert x is not None and y is not None
        frames = [[{k: v for k, v in g.to_dict().items() if k != "uri"} for g in m.golden_frames]
                  for m in (x, y)]
        images = [sorted((p.name, p.read_bytes()) for p in (root / scan).glob("*.jpg"))
                  for root in (a, b)]
        if x.selection != y.selection or frames[0] != frames[1] or images[0] != images[1] \
                or x.parameters != y.parameters:
            differ += 1
    return differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=200)
    ap.add_argument("--distinct", type=int, default=8)
    ap.add_argument("--size", default="320x180")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--work")
    ap.add_argument("--out")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    work = Path(args.work or tempfile.mkdtemp(prefix="framesift-repick-"))
    work.mkdir(parents=True, exist_ok=True)
    videos = make_videos(work, args.videos, args.distinct, size)  # type: ignore[arg-type]
    ids = [v.stem for v in videos]
    first_s = run(videos, BASE, work / "analysed", args.threads)
    frames = sum(LocalStore(work / "analysed").manifest(s).video.frame_count for s in ids)
    more = repick_params(BASE, **MORE)
    rerun_s = run(videos, more, work / "rerun", args.threads)
    shutil.copytree(work / "analysed", work / "repicked")
    repick_s, picks = repick(ids, MORE, work / "repicked", args.threads)
    shutil.copytree(work / "analysed", work / "subset")
    subset_s, _ = repick(ids, SUBSET, work / "subset", args.threads)
    stored = sum(len(LocalStore(work / "analysed").manifest(s).golden_frames) for s in ids)
    kept = sum(len({g.frame_index for g in LocalStore(work / "analysed").manifest(s).golden_frames}
                   & {g.frame_index for g in LocalStore(work / "repicked").manifest(s).golden_frames})
               for s in ids)
    differ = compare(ids, work / "repicked", work / "rerun")
    n = len(videos)
    emit({
        "benchmark": "repick",
        "videos": n, "distinct_videos": args.distinct, "size": args.size,
        "frames_per_video": round(frames / n, 1), "threads": args.threads,
        "changes": MORE, "first_analysis_s": round(first_s, 2),
        "rerun": {"wall_s": round(rerun_s, 2), "videos_per_s": round(n / rerun_s, 2)},
        "repick": {"wall_s": round(repick_s, 2), "videos_per_s": round(n / repick_s, 2),
                   "picks": picks, "picks_decoded": picks - kept,
                   "picks_kept_from_store": kept, "picks_stored_before": stored},
        "ratio_repick_vs_rerun": round(rerun_s / repick_s, 1),
        "subset_repick": {"changes": SUBSET, "wall_s": round(subset_s, 2),
                          "videos_per_s": round(n / subset_s, 2),
                          "ratio_vs_rerun": round(rerun_s / subset_s, 1)},
        "equal_to_full_run": differ == 0, "scans_differing": differ,
        "target_ratio": 50,
    }, args.out)


if __name__ == "__main__":
    main()
