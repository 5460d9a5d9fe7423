"""A video's last step, wherever it runs: select, extract the picks (and the candidate pool),
glint, store.

``finish_video`` runs on a Ray worker as soon as a video's scores are all in (in the task that
scored a whole-video unit, or in a task of its own for a chunked video), or in process for the
sequential reference. The store session commits the manifest last, so a result is complete or
absent.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from importlib import metadata
from typing import Any, Callable, Mapping, Sequence

import pyarrow as pa

from actors.records import FrameIndex, FrameScore, GoldenFrame, VideoInfo, VideoSummary
from actors.video_decode import each_frame, to_display_bgr
from actors.video_open import Source
from jobs.golden.candidates import Candidate, candidate_frames, extract_frame
from jobs.golden.manifest import GoldenManifest, GoldenResult, SelectionSummary
from jobs.golden.params import GoldenParams
from jobs.golden.planner import BatchPlan, ChunkPlan
from jobs.golden.reducer import Pick, PreparedScores, Selection, select_with
from jobs.stores.base import Store, validate_scan_id

ProgressFn = Callable[[str, int], None]  # (video_id, frames just scored)

__all__ = ["GAPS_META", "IMAGE_TYPES", "INDEX_META", "Hooks", "ProgressFn", "VideoJob",
           "WALL_TIMINGS", "finish_video", "framesift_version", "scores_table",
           "selection_notes"]


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


@functools.cache
def framesift_version() -> str:
    """What a manifest records as its writer's version (read once per process)."""
    try:
        return metadata.version("framesift")
    except metadata.PackageNotFoundError:
        return "0+unknown"


IMAGE_TYPES = {"png": ("png", "image/png"), "jpeg": ("jpg", "image/jpeg")}  # -> (ext, type)


def gap_note(gaps: Sequence[int], listed: int) -> str:
    """The selection note for frames the decoder never delivered."""
    shown = ", ".join(str(i) for i in gaps[:8]) + (", ..." if len(gaps) > 8 else "")
    return (f"{len(gaps)} of {listed} listed frame(s) never decoded (frame {shown}): the "
            f"decoder delivered no picture for them, so they have no score")


def selection_notes(selection: Selection, gaps: Sequence[int], listed: int) -> list[str]:
    """The manifest's selection notes: the reducer's, then the note on undecoded frames."""
    return list(selection.notes) + ([gap_note(gaps, listed)] if gaps else [])


# Schema metadata of scores.parquet: the frames never delivered, and (since re-picks) the
# video's frame index, so the picks of a re-pick are decoded without probing the video again.
GAPS_META, INDEX_META = "framesift.gaps", "framesift.index"


def scores_table(scores: Sequence[FrameScore], selection: Selection,
                 gaps: Sequence[int] = (), index: FrameIndex | None = None) -> pa.Table:
    """``scores.parquet``: every delivered frame's metrics (every ``FrameScore`` field, the
    near-duplicate ``thumb`` included: the stored scores suffice for a selection, see
    jobs/golden/repick.py) with the selection's view of it: ``still`` (windowed, see
    jobs/golden/reducer.py), ``hold`` (hold id, -1 = none) and ``picked``. The frames listed
    but never delivered are in the schema metadata (``framesift.gaps``, a JSON list of frame
    indices), and so is ``index`` (``framesift.index``: ``FrameIndex.to_columns`` as JSON)."""
    columns: dict[str, Any] = {f.name: [getattr(s, f.name) for s in scores]
                               for f in fields(FrameScore)}
    columns["thumb"] = pa.array(columns["thumb"], pa.binary())
    table = pa.table({**columns,
                      **selection_columns([s.frame_index for s in scores], selection)})
    meta = {GAPS_META: json.dumps(list(gaps))}
    if index is not None:
        meta[INDEX_META] = json.dumps(index.to_columns())
    return table.replace_schema_metadata(meta)


def selection_columns(frames: Sequence[int], selection: Selection) -> dict[str, pa.Array]:
    """The selection's view of the ``frames`` in ``scores.parquet``: ``still``, ``hold``,
    ``picked``."""
    picked = {p.score.frame_index for p in selection.picks}
    hold_of = {i: h.id for h in selection.holds for i in range(h.start, h.stop)}
    return {"still": pa.array([i in selection.still_indices for i in frames], pa.bool_()),
            "hold": pa.array([hold_of.get(i, -1) for i in frames], pa.int32()),
            "picked": pa.array([i in picked for i in frames], pa.bool_())}


def reselected_table(table: pa.Table, selection: Selection) -> pa.Table:
    """A stored ``scores.parquet`` table with another selection's view (``selection_columns``);
    the metrics and the metadata as they were."""
    frames = table.column("frame_index").to_pylist()
    for name, column in selection_columns(frames, selection).items():
        at = table.schema.get_field_index(name)
        table = (table.set_column(at, name, column) if at >= 0 else
                 table.append_column(name, column))
    return table


# Timings that add up to a video's work (score_cpu_s is the chunks' CPU, alongside score_s).
WALL_TIMINGS = ("probe_s", "score_s", "select_s", "extract_s", "store_s")


def golden_frame(rank: int, pick: Pick, frame: Candidate, key: str, uri: str) -> GoldenFrame:
    """A pick as stored: its metrics, and the size and glint analysis of its extracted frame."""
    s = pick.score
    return GoldenFrame(rank=rank, frame_index=s.frame_index, time_s=s.time_s,
                       sharpness=s.sharpness, motion=s.motion, still=pick.still,
                       width=frame.width, height=frame.height, glint=frame.glint, key=key,
                       uri=uri, hold=pick.hold)


def result_manifest(scan_id: str, item_type: str | None, video: VideoSummary,
                    params: GoldenParams, plan: ChunkPlan, selection: Selection,
                    notes: list[str], golden: list[GoldenFrame], timings: dict[str, float],
                    scores_key: str, store: Store, gaps: Sequence[int],
                    candidates_key: str | None) -> GoldenManifest:
    """The manifest of a result (a full run's or a re-pick's), its total time summed."""
    timings = {**timings, "total_s": sum(v for k, v in timings.items() if k in WALL_TIMINGS)}
    return GoldenManifest(
        framesift_version=framesift_version(), scan_id=scan_id, item_type=item_type,
        created_at=datetime.now(timezone.utc).isoformat(), video=video,
        parameters=params.recorded(), plan=plan,
        selection=SelectionSummary(still_frames=selection.still_frames,
                                   relaxed=selection.relaxed,
                                   motion_max_used=selection.motion_max_used,
                                   picked=len(golden), notes=notes, holds=list(selection.holds)),
        timings_s={k: round(v, 4) for k, v in timings.items()},
        golden_frames=golden, scores_key=scores_key, store=store.name, gaps=list(gaps),
        candidates_key=candidates_key)


# Frames converted, encoded and glint-analysed side by side when a video finishes (OpenCV and
# PyAV's conversion release the GIL): on an otherwise idle machine (one video on a laptop) the
# candidate pool costs less wall time; on a busy one it changes nothing.
EXTRACT_THREADS = 4


def extract_frames(params: GoldenParams, wanted: Sequence[int], source: Source,
                   index: FrameIndex, rotation: int, size: tuple[int, int] | None = None,
                   decoded: Mapping[int, Any] | None = None) -> dict[int, Candidate]:
    """The ``wanted`` frames extracted (``extract_frame``): from the scorer's ``decoded``
    frames (``av.VideoFrame`` by index, converted at ``size``, the probe's) when they are
    there, the others decoded from ``source`` (one walk; a few pictures waiting for
    extraction at most)."""
    decoded = decoded or {}
    threads = max(1, min(EXTRACT_THREADS, len(os.sched_getaffinity(0)), len(wanted)))

    def from_decoded(i: int) -> Candidate:
        return extract_frame(i, to_display_bgr(decoded[i], rotation, size), params)

    with ThreadPoolExecutor(threads, thread_name_prefix="extract") as pool:
        done = {i: pool.submit(from_decoded, i) for i in wanted if i in decoded}
        missing = [i for i in wanted if i not in done]
        waiting: deque[Future[Candidate]] = deque()
        for i, bgr in each_frame(source, missing, index, rotation):
            if len(waiting) >= 2 * threads:  # bounded: a 4K picture is 25 MB
                waiting.popleft().result()
            done[i] = pool.submit(extract_frame, i, bgr, params)
            waiting.append(done[i])
        return {i: done[i].result() for i in wanted}


def finish_video(job: VideoJob, info: VideoInfo, plan: ChunkPlan, scores: Sequence[FrameScore],
                 params: GoldenParams, store: Store, timings: dict[str, float],
                 hooks: Hooks | None = None, source: Source | None = None,
                 decoded: Mapping[int, Any] | None = None) -> GoldenResult:
    """Select, extract only the picks and the candidate pool (jobs/golden/candidates.py),
    analyse glint, store; manifest written last.

    ``source`` reads the video for the extraction when it is not the local file ``info.path``;
    ``decoded`` holds frames the scorer already decoded (``av.VideoFrame`` by index): frames
    found there are not decoded a second time.
    """
    t0 = time.perf_counter()
    prepared = PreparedScores(scores, params.still_window_s)
    selection = select_with(scores, params, prepared)
    scored = {s.frame_index for s in scores}
    gaps = [i for i in range(len(info.index)) if i not in scored]
    notes = selection_notes(selection, gaps, len(info.index))
    wanted = [p.score.frame_index for p in selection.picks]
    pool = candidate_frames(scores, params, wanted, prepared)
    t1 = time.perf_counter()
    frames = extract_frames(params, wanted + pool, source or info.path, info.index,
                            info.rotation, (info.width, info.height), decoded)
    t2 = time.perf_counter()
    ext, ctype = IMAGE_TYPES[params.image_format]
    golden: list[GoldenFrame] = []
    with store.open(job.scan_id) as session:
        for rank, pick in enumerate(selection.picks, start=1):
            extracted = frames[pick.score.frame_index]
            assert extracted.image is not None  # extracted here: never a pool file
            key, uri = session.put_image(pick.score.frame_index, extracted.image, ext, ctype)
            frame = golden_frame(rank, pick, extracted, key, uri)
            golden.append(frame)
            if hooks and hooks.on_pick:
                hooks.on_pick(job.scan_id, frame)
        scores_key = session.put_scores(scores_table(scores, selection, gaps, info.index))
        candidates_key = (session.put_candidates(list(frames.values()), ext, ctype)
                          if params.candidates > 0 else None)
        timings = {**timings, "select_s": t1 - t0, "extract_s": t2 - t1,
                   "store_s": time.perf_counter() - t2}
        manifest = result_manifest(job.scan_id, job.item_type, info.without_index(), params,
                                   plan, selection, notes, golden, timings, scores_key, store,
                                   gaps, candidates_key)
        location = session.commit(manifest)
    return GoldenResult(job.scan_id, info.path, "succeeded", manifest=manifest, location=location)
