"""A video's last step, wherever it runs: select, extract the picks, glint, store.

``finish_video`` runs on a Ray worker as soon as a video's scores are all in (in the task that
scored a whole-video unit, or in a task of its own for a chunked video), or in process for the
sequential reference. The store session commits the manifest last, so a result is complete or
absent.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from actors.cropper import encode_image
from actors.glint import glint_metrics
from actors.records import FrameScore, GoldenFrame, VideoInfo, VideoSummary
from actors.video_decode import read_frames, to_display_bgr
from actors.video_open import Source
from jobs.golden.manifest import GoldenManifest, GoldenResult, SelectionSummary
from jobs.golden.params import GoldenParams
from jobs.golden.planner import BatchPlan, ChunkPlan
from jobs.golden.reducer import Selection, select_golden
from jobs.stores.base import Store, validate_scan_id

ProgressFn = Callable[[str, int], None]  # (video_id, frames just scored)

__all__ = ["Hooks", "ProgressFn", "VideoJob", "WALL_TIMINGS", "finish_video", "scores_table"]


@dataclass(frozen=True)
class VideoJob:
    path: str
    scan_id: str
    item_type: str | None = None

    def __post_init__(self) -> None:
        validate_scan_id(self.scan_id)


@dataclass
class Hooks:
    """Callbacks for progress reporting (CLI bar, service events), called on the driver.

    ``on_batch``: the batch plan, before any video; ``on_planned``: a video was probed and
    planned; ``on_frames``: frames of a video were scored; ``on_pick``: a golden frame was
    stored; ``on_result``: a video finished (succeeded or failed), in completion order.
    """

    on_planned: Callable[[str, VideoSummary, ChunkPlan], None] | None = None
    on_frames: ProgressFn | None = None
    on_pick: Callable[[str, GoldenFrame], None] | None = None
    on_batch: Callable[[BatchPlan], None] | None = None
    on_result: Callable[[GoldenResult], None] | None = None


def _version() -> str:
    try:
        return metadata.version("framesift")
    except metadata.PackageNotFoundError:
        return "0+unknown"


_IMAGE_TYPES = {"png": ("png", "image/png"), "jpeg": ("jpg", "image/jpeg")}


def gap_note(gaps: Sequence[int], listed: int) -> str:
    """The selection note for frames the decoder never delivered."""
    shown = ", ".join(str(i) for i in gaps[:8]) + (", ..." if len(gaps) > 8 else "")
    return (f"{len(gaps)} of {listed} listed frame(s) never decoded (frame {shown}): the "
            f"decoder delivered no picture for them, so they have no score")


def scores_table(scores: Sequence[FrameScore], selection: Selection,
                 gaps: Sequence[int] = ()) -> pa.Table:
    """``scores.parquet``: every delivered frame's metrics with the selection's view of it:
    ``still`` (windowed, see jobs/golden/reducer.py), ``hold`` (hold id, -1 = none) and
    ``picked``. The frames listed but never delivered are in the schema metadata
    (``framesift.gaps``, a JSON list of frame indices)."""
    picked = {p.score.frame_index for p in selection.picks}
    hold_of = {i: h.id for h in selection.holds for i in range(h.start, h.stop)}
    table = pa.table({
        "frame_index": [s.frame_index for s in scores],
        "pts": [s.pts for s in scores],
        "time_s": [s.time_s for s in scores],
        "sharpness": [s.sharpness for s in scores],
        "motion": [s.motion for s in scores],
        "still": [s.frame_index in selection.still_indices for s in scores],
        "hold": pa.array([hold_of.get(s.frame_index, -1) for s in scores], pa.int32()),
        "picked": [s.frame_index in picked for s in scores],
    })
    return table.replace_schema_metadata({"framesift.gaps": json.dumps(list(gaps))})


# Timings that add up to a video's work (score_cpu_s is the chunks' CPU, alongside score_s).
WALL_TIMINGS = ("probe_s", "score_s", "select_s", "extract_s", "store_s")


def finish_video(job: VideoJob, info: VideoInfo, plan: ChunkPlan, scores: Sequence[FrameScore],
                 params: GoldenParams, store: Store, timings: dict[str, float],
                 hooks: Hooks | None = None, source: Source | None = None,
                 decoded: Mapping[int, Any] | None = None) -> GoldenResult:
    """Select, extract only the picks, analyse glint, store; manifest written last.

    ``source`` reads the video for the extraction when it is not the local file ``info.path``;
    ``decoded`` holds frames the scorer already decoded (``av.VideoFrame`` by index): picks
    found there are not decoded a second time.
    """
    t0 = time.perf_counter()
    selection = select_golden(scores, top_k=params.top_k, min_gap_s=params.min_gap_s,
                              motion_max=params.motion_max, still_window_s=params.still_window_s,
                              min_hold_s=params.min_hold_s, edge_margin_s=params.edge_margin_s,
                              hold_sharpness_ratio=params.hold_sharpness_ratio,
                              dup_max_diff=params.dup_max_diff)
    scored = {s.frame_index for s in scores}
    gaps = [i for i in range(len(info.index)) if i not in scored]
    notes = list(selection.notes) + ([gap_note(gaps, len(info.index))] if gaps else [])
    t1 = time.perf_counter()
    wanted = [p.score.frame_index for p in selection.picks]
    decoded = decoded or {}
    size = (info.width, info.height)  # picks at the size the probe saw
    pixels = {i: to_display_bgr(decoded[i], info.rotation, size) for i in wanted if i in decoded}
    missing = [i for i in wanted if i not in pixels]
    if missing:
        pixels.update(read_frames(source or info.path, missing, info.index, info.rotation))
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
        scores_key = session.put_scores(scores_table(scores, selection, gaps))
        timings = {**timings, "select_s": t1 - t0, "extract_s": t2 - t1,
                   "store_s": time.perf_counter() - t2}
        timings["total_s"] = sum(v for k, v in timings.items() if k in WALL_TIMINGS)
        manifest = GoldenManifest(
            framesift_version=_version(), scan_id=job.scan_id, item_type=job.item_type,
            created_at=datetime.now(timezone.utc).isoformat(), video=info.without_index(),
            parameters=params.recorded(), plan=plan,
            selection=SelectionSummary(still_frames=selection.still_frames,
                                       relaxed=selection.relaxed,
                                       motion_max_used=selection.motion_max_used,
                                       picked=len(golden), notes=notes,
                                       holds=list(selection.holds)),
            timings_s={k: round(v, 4) for k, v in timings.items()},
            golden_frames=golden, scores_key=scores_key, store=store.name, gaps=gaps)
        location = session.commit(manifest)
    return GoldenResult(job.scan_id, info.path, "succeeded", manifest=manifest, location=location)
