"""The golden-frame job: probe -> plan -> score (Ray Data) -> select -> extract -> store.

Also the ``ray job submit`` entrypoint: ``python -m jobs.golden VIDEO... [options]``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Sequence

import cv2
import pyarrow as pa

from actors.errors import FramesiftError, VideoError
from actors.glint import GlintConfig, glint_metrics
from actors.records import FrameScore, GoldenFrame, VideoInfo
from actors.scoring import ScorerConfig
from actors.video import probe, read_frames
from jobs.planner import ChunkPlan, plan_chunks
from jobs.reducer import Selection, select_golden
from jobs.scoring_pipeline import (ProgressFn, VideoScores, chunk_tasks, score_distributed,
                                   score_sequential)
from jobs.settings import Settings
from jobs.store import Store, validate_scan_id


@dataclass(frozen=True)
class GoldenParams:
    """Everything that decides a golden-frame result (recorded in the manifest)."""

    top_k: int = 5
    min_gap_s: float = 0.5
    motion_max: float = 1.0
    still_window_s: float = 0.2
    min_hold_s: float = 0.5
    edge_margin_s: float = 0.1
    hold_sharpness_ratio: float = 0.3
    dup_max_diff: float = 2.0
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    workers: int | None = None  # None = let the planner decide
    max_workers: int = 16
    min_frames_per_chunk: int = 30
    actors: bool = False
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    glint: GlintConfig = field(default_factory=GlintConfig)

    @classmethod
    def from_settings(cls, s: Settings) -> "GoldenParams":
        return cls(top_k=s.top_k, min_gap_s=s.min_gap_s, motion_max=s.motion_max,
                   still_window_s=s.still_window_s, min_hold_s=s.min_hold_s,
                   edge_margin_s=s.edge_margin_s, hold_sharpness_ratio=s.hold_sharpness_ratio,
                   dup_max_diff=s.dup_max_diff, image_format=s.image_format, jpeg_quality=s.jpeg_quality,
                   workers=None if s.workers == "auto" else int(s.workers),
                   max_workers=s.max_workers, min_frames_per_chunk=s.min_frames_per_chunk,
                   actors=s.executor == "actors",
                   scorer=ScorerConfig(analysis_long_side=s.analysis_long_side, flow=s.flow,
                                       dis_preset=s.dis_preset))


@dataclass(frozen=True)
class VideoJob:
    path: str
    scan_id: str
    item_type: str | None = None

    def __post_init__(self) -> None:
        validate_scan_id(self.scan_id)


@dataclass
class GoldenResult:
    scan_id: str
    path: str
    status: str  # "succeeded" or "failed"
    manifest: dict[str, Any] | None = None
    location: str | None = None
    error: str | None = None
    error_code: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


@dataclass
class Hooks:
    """Callbacks for progress reporting (CLI bar, service events)."""

    on_planned: Callable[[str, VideoInfo, ChunkPlan], None] | None = None
    on_frames: ProgressFn | None = None
    on_pick: Callable[[str, GoldenFrame], None] | None = None


def _version() -> str:
    try:
        return metadata.version("framesift")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _encode(bgr: Any, params: GoldenParams) -> tuple[bytes, str, str]:
    if params.image_format == "png":
        ok, buf = cv2.imencode(".png", bgr)
        ext, ctype = "png", "image/png"
    else:
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, params.jpeg_quality])
        ext, ctype = "jpg", "image/jpeg"
    if not ok:
        raise RuntimeError(f"could not encode a {ext} image")
    return buf.tobytes(), ext, ctype


def scores_table(scores: Sequence[FrameScore], selection: Selection) -> pa.Table:
    """Per-frame metrics with the selection's view of each frame: ``still`` (windowed, see
    jobs/reducer.py), ``hold`` (hold id, -1 = none) and ``picked``."""
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
    golden: list[GoldenFrame] = []
    with store.open(job.scan_id) as session:
        for rank, pick in enumerate(selection.picks, start=1):
            s = pick.score
            bgr = pixels[s.frame_index]
            data, ext, ctype = _encode(bgr, params)
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
        t3 = time.perf_counter()
        timings = {**timings, "select_s": t1 - t0, "extract_s": t2 - t1, "store_s": t3 - t2}
        timings["total_s"] = sum(timings.values())
        manifest = {
            "framesift_version": _version(),
            "scan_id": job.scan_id,
            "item_type": job.item_type,
            "status": "succeeded",
            "created_at": datetime.now(timezone.utc).isoformat(),
            "video": info.summary(),
            "parameters": {k: v for k, v in asdict(params).items()},
            "plan": plan.to_dict(),
            "selection": {"still_frames": selection.still_frames, "relaxed": selection.relaxed,
                          "motion_max_used": selection.motion_max_used,
                          "picked": len(golden), "notes": list(selection.notes),
                          "holds": [h.to_dict() for h in selection.holds]},
            "timings_s": {k: round(v, 4) for k, v in timings.items()},
            "golden_frames": [g.to_dict() for g in golden],
            "scores_key": scores_key,
            "store": store.name,
        }
        location = session.commit(manifest)
    return GoldenResult(job.scan_id, info.path, "succeeded", manifest=manifest, location=location)


def _failed(job: VideoJob, exc: BaseException | str) -> GoldenResult:
    code = getattr(exc, "code", "job_failed")
    return GoldenResult(job.scan_id, job.path, "failed", error=str(exc), error_code=code)


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
    seen: set[str] = set()
    for job in jobs:
        if job.scan_id in seen:
            raise ValueError(f"scan id {job.scan_id!r} appears twice in one run")
        seen.add(job.scan_id)
    t_start = time.perf_counter()
    if distributed:
        from jobs.runtime import ensure_ray

        cpus = ensure_ray(address, num_cpus)
        cpus = plan_cpus or cpus
    else:
        cpus = 1
    results: dict[str, GoldenResult] = {}
    planned: dict[str, tuple[VideoJob, VideoInfo, ChunkPlan]] = {}
    tasks = []
    t_probe = time.perf_counter()
    for job in jobs:
        try:
            info = probe(job.path)
        except VideoError as exc:
            results[job.scan_id] = _failed(job, exc)
            continue
        plan = plan_chunks(info.frame_count, info.width, info.height, cpus=cpus, index=info.index,
                           min_frames_per_chunk=params.min_frames_per_chunk,
                           max_workers=params.max_workers, workers=params.workers)
        planned[job.scan_id] = (job, info, plan)
        tasks.extend(chunk_tasks(job.scan_id, info, plan.chunks))
        if hooks.on_planned:
            hooks.on_planned(job.scan_id, info, plan)
    probe_s = time.perf_counter() - t_probe
    t_score = time.perf_counter()
    scored: dict[str, VideoScores] = {}
    if tasks:
        if distributed:
            concurrency = max(1, min(cpus, len(tasks)))
            scored = score_distributed(tasks, params.scorer, actors=params.actors,
                                       concurrency=concurrency, on_progress=hooks.on_frames)
        else:
            scored = score_sequential(tasks, params.scorer, on_progress=hooks.on_frames)
    score_s = time.perf_counter() - t_score
    for scan_id, (job, info, plan) in planned.items():
        entry = scored[scan_id]
        if entry.error:
            results[scan_id] = GoldenResult(scan_id, job.path, "failed", error=entry.error,
                                            error_code=entry.error_code or "video_error")
            continue
        timings = {"probe_s": probe_s, "score_s": score_s,
                   "startup_s": t_probe - t_start}
        try:
            results[scan_id] = finish_video(job, info, plan, entry.scores, params, store,
                                            timings, hooks)
        except FramesiftError as exc:
            results[scan_id] = _failed(job, exc)
    return [results[j.scan_id] for j in jobs]


if __name__ == "__main__":
    from jobs.cli import golden_entrypoint

    golden_entrypoint()
