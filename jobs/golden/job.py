"""The golden-frame job: probe -> plan -> score (Ray Data) -> select -> extract -> store.

``python -m jobs.golden`` (the ``ray job submit`` entrypoint) runs it from the command line.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Callable, Sequence

import pyarrow as pa

from actors.cropper import encode_image
from actors.errors import FramesiftError, VideoError
from actors.glint import glint_metrics
from actors.records import FrameScore, GoldenFrame, VideoChunk, VideoInfo
from actors.video import probe, read_frames
from jobs.golden.manifest import GoldenManifest, GoldenResult, SelectionSummary
from jobs.golden.params import GoldenParams
from jobs.golden.planner import ChunkPlan, plan_chunks
from jobs.golden.reducer import Selection, select_golden
from jobs.golden.scoring import (ProgressFn, VideoScores, chunk_tasks, score_distributed,
                                 score_sequential)
from jobs.stores.base import Store, validate_scan_id

__all__ = ["GoldenParams", "GoldenResult", "Hooks", "VideoJob", "finish_video", "run_golden"]


@dataclass(frozen=True)
class VideoJob:
    path: str
    scan_id: str
    item_type: str | None = None

    def __post_init__(self) -> None:
        validate_scan_id(self.scan_id)


@dataclass
class Hooks:
    """Callbacks for progress reporting (CLI bar, service events)."""

    on_planned: Callable[[str, VideoInfo, ChunkPlan], None] | None = None
    on_frames: ProgressFn | None = None
    on_pick: Callable[[str, GoldenFrame], None] | None = None


@dataclass
class _Planned:
    job: VideoJob
    info: VideoInfo
    plan: ChunkPlan


def _version() -> str:
    try:
        return metadata.version("framesift")
    except metadata.PackageNotFoundError:
        return "0+unknown"


_IMAGE_TYPES = {"png": ("png", "image/png"), "jpeg": ("jpg", "image/jpeg")}


def scores_table(scores: Sequence[FrameScore], selection: Selection) -> pa.Table:
    """``scores.parquet``: every frame's metrics with the selection's view of it: ``still``
    (windowed, see jobs/golden/reducer.py), ``hold`` (hold id, -1 = none) and ``picked``."""
    picked = {p.score.frame_index for p in selection.picks}
    hold_of = {i: h.id for h in selection.holds for i in range(h.start, h.stop)}
    return pa.table({
        "frame_index": [s.frame_index for s in scores],
        "pts": [s.pts for s in scores],
        "time_s": [s.time_s for s in scores],
        "sharpness": [s.sharpness for s in scores],
        "motion": [s.motion for s in scores],
        "still": [s.frame_index in selection.still_indices for s in scores],
        "hold": pa.array([hold_of.get(s.frame_index, -1) for s in scores], pa.int32()),
        "picked": [s.frame_index in picked for s in scores],
    })


def finish_video(job: VideoJob, info: VideoInfo, plan: ChunkPlan, scores: Sequence[FrameScore],
                 params: GoldenParams, store: Store, timings: dict[str, float],
                 hooks: Hooks | None = None) -> GoldenResult:
    """Select, extract only the picks, analyse glint, store; manifest written last."""
    t0 = time.perf_counter()
    selection = select_golden(scores, top_k=params.top_k, min_gap_s=params.min_gap_s,
                              motion_max=params.motion_max, still_window_s=params.still_window_s,
                              min_hold_s=params.min_hold_s, edge_margin_s=params.edge_margin_s,
                              hold_sharpness_ratio=params.hold_sharpness_ratio,
                              dup_max_diff=params.dup_max_diff)
    t1 = time.perf_counter()
    pixels = read_frames(info.path, [p.score.frame_index for p in selection.picks], info.index,
                         info.rotation)
    t2 = time.perf_counter()
    ext, ctype = _IMAGE_TYPES[params.image_format]
    golden: list[GoldenFrame] = []
    with store.open(job.scan_id) as session:
        for rank, pick in enumerate(selection.picks, start=1):
            s = pick.score
            bgr = pixels[s.frame_index]
            data = encode_image(bgr, params.image_format, params.jpeg_quality)
            key, uri = session.put_image(s.frame_index, data, ext, ctype)
            frame = GoldenFrame(rank=rank, frame_index=s.frame_index, time_s=s.time_s,
                                sharpness=s.sharpness, motion=s.motion, still=pick.still,
                                width=bgr.shape[1], height=bgr.shape[0],
                                glint=glint_metrics(bgr, params.glint), key=key, uri=uri,
                                hold=pick.hold)
            golden.append(frame)
            if hooks and hooks.on_pick:
                hooks.on_pick(job.scan_id, frame)
        scores_key = session.put_scores(scores_table(scores, selection))
        timings = {**timings, "select_s": t1 - t0, "extract_s": t2 - t1,
                   "store_s": time.perf_counter() - t2}
        timings["total_s"] = sum(timings.values())
        manifest = GoldenManifest(
            framesift_version=_version(), scan_id=job.scan_id, item_type=job.item_type,
            created_at=datetime.now(timezone.utc).isoformat(), video=info.without_index(),
            parameters=params.recorded(), plan=plan,
            selection=SelectionSummary(still_frames=selection.still_frames,
                                       relaxed=selection.relaxed,
                                       motion_max_used=selection.motion_max_used,
                                       picked=len(golden), notes=list(selection.notes),
                                       holds=list(selection.holds)),
            timings_s={k: round(v, 4) for k, v in timings.items()},
            golden_frames=golden, scores_key=scores_key, store=store.name)
        location = session.commit(manifest)
    return GoldenResult(job.scan_id, info.path, "succeeded", manifest=manifest, location=location)


def _check_unique(jobs: Sequence[VideoJob]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.scan_id in seen:
            raise ValueError(f"scan id {job.scan_id!r} appears twice in one run")
        seen.add(job.scan_id)


def _plan_all(jobs: Sequence[VideoJob], params: GoldenParams, cpus: int, hooks: Hooks,
              results: dict[str, GoldenResult]) -> tuple[dict[str, _Planned], list[VideoChunk]]:
    """Probe and plan every video; a video that cannot be probed becomes a failed result."""
    planned: dict[str, _Planned] = {}
    tasks: list[VideoChunk] = []
    for job in jobs:
        try:
            info = probe(job.path)
        except VideoError as exc:
            results[job.scan_id] = GoldenResult.failed(job.scan_id, job.path, exc)
            continue
        plan = plan_chunks(info.frame_count, info.width, info.height, cpus=cpus, index=info.index,
                           min_frames_per_chunk=params.min_frames_per_chunk,
                           max_workers=params.max_workers, workers=params.workers)
        planned[job.scan_id] = _Planned(job, info, plan)
        tasks.extend(chunk_tasks(job.scan_id, info, plan.chunks))
        if hooks.on_planned:
            hooks.on_planned(job.scan_id, info, plan)
    return planned, tasks


def run_golden(jobs: Sequence[VideoJob], params: GoldenParams, store: Store, *,
               distributed: bool = True, address: str | None = None,
               num_cpus: int | None = None, hooks: Hooks | None = None,
               plan_cpus: int | None = None) -> list[GoldenResult]:
    """Run the golden-frame job over many videos sharing one scoring pipeline.

    A bad video becomes a failed result; the other videos go on. ``distributed=False`` runs
    the same algorithm in this process (the sequential reference). ``plan_cpus`` plans chunks
    and parallelism for that many CPUs instead of the cluster's CPUs now: on an autoscaling
    cluster, the CPUs it may scale to (the extra demand is what makes workers start).
    """
    hooks = hooks or Hooks()
    _check_unique(jobs)
    t_start = time.perf_counter()
    cpus = 1
    if distributed:
        from jobs.runtime import ensure_ray

        cluster_cpus = ensure_ray(address, num_cpus)
        cpus = plan_cpus or cluster_cpus
    results: dict[str, GoldenResult] = {}
    t_probe = time.perf_counter()
    planned, tasks = _plan_all(jobs, params, cpus, hooks, results)
    t_score = time.perf_counter()
    scored: dict[str, VideoScores] = {}
    if tasks and distributed:
        scored = score_distributed(tasks, params.scorer, actors=params.actors,
                                   concurrency=max(1, min(cpus, len(tasks))),
                                   on_progress=hooks.on_frames)
    elif tasks:
        scored = score_sequential(tasks, params.scorer, on_progress=hooks.on_frames)
    timings = {"probe_s": t_score - t_probe, "score_s": time.perf_counter() - t_score,
               "startup_s": t_probe - t_start}
    for scan_id, p in planned.items():
        entry = scored[scan_id]
        if entry.error:
            results[scan_id] = GoldenResult.failed(scan_id, p.job.path, entry.error,
                                                   entry.error_code or "video_error")
            continue
        try:
            results[scan_id] = finish_video(p.job, p.info, p.plan, entry.scores, params, store,
                                            timings, hooks)
        except FramesiftError as exc:
            results[scan_id] = GoldenResult.failed(scan_id, p.job.path, exc)
    return [results[j.scan_id] for j in jobs]
