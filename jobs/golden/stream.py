"""One streaming pipeline from inputs to stored results, per video as each one finishes.

On Ray Data (``preserve_order`` off, and a block size of one byte for this dataset, so every
row a task makes leaves as its own block the moment it is made)::

  from_items: one row per video (scan id, what to read, what to call it)       driver
    -> VideoStage   open the source, probe, plan with the BatchPlan; a video planned as one
                    chunk is scored and finished right there (select, extract the picks from
                    the frames it kept, glint, store, manifest last); a longer one leaves as
                    a ``planned`` row and one row per chunk. Many short videos go a few to a
                    task; each one's result still leaves as soon as it is stored
    -> ChunkStage   (few videos: chunks within each) score one chunk; other rows pass through
    -> iter_batches progress and results; a chunked video's scores wait here until its last
                    chunk is in, then ``finish_video`` runs as a Ray task (at most
                    ``max_finishing`` at once, harvested with ``ray.wait(timeout=0)``)

With many videos (whole-video units) there is no chunk stage: a video long enough to be split
anyway is rare there, and its chunks are scored by Ray tasks the driver submits, so a finished
video's row never waits behind a chunk stage's slot.

Everything that reads a video runs on a worker: inputs are local paths every node sees,
http(s) URLs, s3:// or gs:// objects, or Supabase objects signed here (``jobs.sources``). The
driver holds the input rows, the scores of chunked videos still in flight and nothing per
finished video but what it hands to the caller. A video that fails (cannot be read, is not a
video, disappears mid-run, cannot be stored) becomes its own failed result; the others go on.
Killing the driver kills its tasks; committed results stay, so a rerun with resume finishes
the rest.

``distributed=False`` runs the same stages, in the same order of operations, in this process
(the sequential reference the distributed results are compared to, bit for bit).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Sequence

import pyarrow as pa

from actors.errors import CorruptVideoError, FramesiftError
from actors.records import FrameIndex, FrameScore, VideoChunk, VideoInfo, VideoSummary
from actors.scoring import ChunkScorer, ScorerConfig
from actors.video import probe
from jobs.golden.finish import WALL_TIMINGS, Hooks, VideoJob, finish_video
from jobs.golden.limits import WorkLimits
from jobs.golden.manifest import GoldenManifest, GoldenResult
from jobs.golden.params import GoldenParams
from jobs.golden.planner import BatchPlan, ChunkPlan, plan_batch
from jobs.sources import (InvalidSourceError, SourceOptions, check_input, display_name,
                          open_source, scheme_of, source_identity)
from jobs.stores.base import Store

log = logging.getLogger(__name__)

# Ray resources of the finish tasks of chunked videos (a one-chunk video is finished in the
# task that scored it).
FINISH_CPUS = 1.0
# A whole-video unit keeps its decoded frames (YUV 4:2:0, 1.5 bytes per pixel) when they fit in
# this much memory, so its picks are not decoded a second time: on short videos that second
# decode (from each pick's keyframe) cost about a fifth of the scoring.
PICK_CACHE_BYTES = 256 * 1024 * 1024
# Whole-video units: at most this many videos in one video-stage task, and at least this many
# tasks per CPU (bench/batch.py).
MAX_VIDEOS_PER_TASK = 4
VIDEO_TASKS_PER_CPU = 6

_STR, _INT, _FLOAT = pa.string(), pa.int64(), pa.float64()
# Every row between the stages: a chunk to score (``VideoChunk`` columns), its scores
# (``frame_*`` columns), a finished video (``result``), a failure (``error``), or the notice
# that a chunked video was planned. One schema for all, so any mix fits in one block.
ROW_SCHEMA = pa.schema([
    ("kind", _STR), ("video_id", _STR), ("path", _STR), ("url", _STR), ("start", _INT),
    ("stop", _INT), ("width", _INT), ("height", _INT), ("rotation", _INT), ("stride", _INT),
    ("pts", pa.list_(_INT)), ("keyframes", pa.list_(_INT)), ("tb_num", _INT), ("tb_den", _INT),
    ("keys", pa.list_(_INT)), ("gaps", pa.list_(_INT)), ("chunk", _INT), ("n_chunks", _INT),
    ("frame_index", pa.list_(_INT)), ("frame_pts", pa.list_(_INT)),
    ("frame_time_s", pa.list_(_FLOAT)), ("frame_sharpness", pa.list_(_FLOAT)),
    ("frame_motion", pa.list_(_FLOAT)), ("frame_thumb", pa.list_(pa.binary())),
    ("t_start", _FLOAT), ("t_end", _FLOAT),
    ("seconds", _FLOAT), ("meta", _STR), ("result", _STR), ("error", _STR), ("error_code", _STR),
])
_SCORE_FIELDS = ("frame_index", "frame_pts", "frame_time_s", "frame_sharpness", "frame_motion",
                 "frame_thumb")
# The video's frame index (``FrameIndex.to_columns``): every chunk row carries it to its
# scorer; of the scored rows only chunk 0's keeps it, for the finish step.
_INDEX_FIELDS = ("pts", "keyframes", "tb_num", "tb_den", "keys", "gaps")
_EMPTY_ROW: dict[str, Any] = {
    "kind": "", "video_id": "", "path": "", "url": "", "start": 0, "stop": 0, "width": 0,
    "height": 0, "rotation": 0, "stride": 1, "pts": [], "keyframes": [], "tb_num": 1,
    "tb_den": 1, "keys": [], "gaps": [], "chunk": 0, "n_chunks": 0, **{f: [] for f in _SCORE_FIELDS}, "t_start": 0.0,
    "t_end": 0.0, "seconds": 0.0, "meta": "", "result": "", "error": "", "error_code": ""}


@dataclass(frozen=True)
class StageConfig:
    """What every stage needs on a worker (shipped once per operator)."""

    params: GoldenParams
    sources: SourceOptions
    batch: BatchPlan
    store: Store
    limits: WorkLimits = WorkLimits()


@dataclass
class VideoOutcome:
    """A finished video as the stream yields it: the result, and what a batch summary needs
    without keeping the manifest (frames scored, worker seconds spent, manifest position)."""

    result: GoldenResult
    seq: int
    frames: int = 0
    worker_s: float = 0.0


# -- worker side -------------------------------------------------------------------------------

def _error_code(exc: BaseException) -> str:
    return getattr(exc, "code", "internal_error") if isinstance(exc, FramesiftError) else "internal_error"


def _error_text(exc: BaseException) -> str:
    return str(exc) if isinstance(exc, FramesiftError) else f"{type(exc).__name__}: {exc}"


def video_rows(row: dict[str, Any], config: StageConfig,
               scorer: ChunkScorer) -> Iterator[dict[str, Any]]:
    """Probe and plan one video: a ``planned`` row as soon as it is planned (its frame count
    is the progress total), then, planned as one chunk, its ``done`` or ``error`` row (scored
    and finished here); planned as several, one row per chunk."""
    t0 = time.perf_counter()
    meta: dict[str, Any] = {"scan_id": row["scan_id"], "item_type": row["item_type"],
                            "seq": row["seq"], "name": row["name"]}
    base = {**_EMPTY_ROW, "video_id": row["scan_id"], "path": row["name"], "url": row["url"]}
    try:
        source = open_source(row["url"], row["name"], config.sources)
        info = probe(source, budget=config.limits)  # refused from the header when it can be
        config.limits.check(row["name"], info.width, info.height, info.frame_count)
        params = config.params
        plan = config.batch.plan_video(info.frame_count, info.width, info.height,
                                       index=info.index,
                                       min_frames_per_chunk=params.min_frames_per_chunk,
                                       max_workers=params.max_workers)
    except Exception as exc:  # noqa: BLE001 - a bad video is data, never the batch's crash
        if not isinstance(exc, FramesiftError):
            log.exception("probing %s failed", row["name"])
        yield {**base, "kind": "error", "meta": json.dumps(meta), "error": _error_text(exc),
               "error_code": _error_code(exc)}
        return
    meta.update(info=info.summary(), identity=source_identity(source), plan=plan.to_dict(),
                probe_s=time.perf_counter() - t0)
    meta_json = json.dumps(meta)
    n = len(plan.chunks)
    chunks = [{**base, **VideoChunk.of(row["scan_id"], info, frames).to_row(), "kind": "chunk",
               "chunk": i, "n_chunks": n, "meta": meta_json}
              for i, frames in enumerate(plan.chunks)]
    yield {**base, "kind": "planned", "n_chunks": n, "meta": meta_json}
    if n == 1:
        yield score_row(chunks[0], config, scorer, source)
    else:
        yield from chunks


def _identity(meta: str | dict[str, Any]) -> tuple[int, str | None] | None:
    """What the probe saw of the object (size, ETag): readers of the chunks insist on it."""
    found = (json.loads(meta) if isinstance(meta, str) else meta).get("identity")
    return (int(found[0]), found[1]) if found else None


def _score_columns(scores: Sequence[FrameScore]) -> dict[str, list[Any]]:
    return {"frame_index": [s.frame_index for s in scores],
            "frame_pts": [s.pts for s in scores],
            "frame_time_s": [s.time_s for s in scores],
            "frame_sharpness": [s.sharpness for s in scores],
            "frame_motion": [s.motion for s in scores],
            "frame_thumb": [s.thumb for s in scores]}


def _frame_scores(parts: Sequence[dict[str, Any]]) -> list[FrameScore]:
    """The FrameScores of a video's scored chunks, in frame order (the inverse of
    ``_score_columns``)."""
    scores = [FrameScore(int(i), int(p), float(t), float(s), float(m), bytes(th))
              for part in parts
              for i, p, t, s, m, th in zip(*(part[f] for f in _SCORE_FIELDS))]
    scores.sort(key=lambda s: s.frame_index)
    return scores


def score_row(row: dict[str, Any], config: StageConfig, scorer: ChunkScorer,
              source: Any = None) -> dict[str, Any]:
    """Score one chunk row (other rows pass through); finish a one-chunk video here, from the
    frames the scorer kept when they fit in ``PICK_CACHE_BYTES``."""
    if row["kind"] != "chunk":
        return row
    out = dict(row) if row["chunk"] == 0 else {**row, "pts": [], "keyframes": [], "keys": [],
                                               "gaps": []}
    t_start, p0 = time.time(), time.process_time()
    decoded: dict[int, Any] = {}
    whole = row["n_chunks"] == 1
    keep = (decoded.__setitem__ if whole and (row["stop"] - row["start"]) * row["width"]
            * row["height"] * 1.5 <= PICK_CACHE_BYTES else None)
    try:
        if source is None:
            source = open_source(row["url"], row["path"], config.sources, _identity(row["meta"]))
        _, outcome = scorer.score_or_error(VideoChunk.from_row(row), source, keep)
    except Exception as exc:  # noqa: BLE001
        outcome = exc
    out.update(t_start=t_start, t_end=time.time(), seconds=time.process_time() - p0)
    if isinstance(outcome, BaseException):
        if not isinstance(outcome, FramesiftError):
            log.error("scoring %s failed: %s", row["path"], _error_text(outcome))
        out.update(kind="error", error=_error_text(outcome), error_code=_error_code(outcome))
        return out
    out.update(kind="scores", **_score_columns(outcome))
    if whole:  # a whole-video unit: finished by the task that scored it
        result = finish_scored(row["meta"], row["url"], [out], config, source, decoded)
        decoded.clear()
        out.update({f: [] for f in _SCORE_FIELDS}, pts=[], keyframes=[], keys=[], gaps=[])
        out.update(kind="done", result=json.dumps(result))
    return out


def finish_scored(meta_json: str, url: str, parts: Sequence[dict[str, Any]],
                  config: StageConfig, source: Any = None,
                  decoded: dict[int, Any] | None = None) -> dict[str, Any]:
    """``finish_video`` on the scores of all of a video's chunks (``decoded``: frames the
    scorer kept); the outcome as plain data."""
    meta = json.loads(meta_json)
    scores = _frame_scores(parts)
    summary = meta["info"]
    try:
        index = FrameIndex.from_columns(parts[0])
        positions = [s.frame_index for s in scores]
        if len(set(positions)) != len(positions) or not set(positions) <= set(range(len(index))):
            raise RuntimeError(f"expected each of frames 0..{len(index) - 1} at most once; got "
                               f"{len(scores)} scores")
        if not scores:
            raise CorruptVideoError(meta["name"], f"none of its {len(index)} listed frames "
                                                  "decodes")
        info = VideoInfo(**summary, index=index)
        timings = {"probe_s": meta["probe_s"],
                   "score_s": max(p["t_end"] for p in parts) - min(p["t_start"] for p in parts),
                   "score_cpu_s": sum(p["seconds"] for p in parts)}
        job = VideoJob(meta["name"], meta["scan_id"], meta["item_type"])
        if source is None:
            source = open_source(url, meta["name"], config.sources, _identity(meta))
        result = finish_video(job, info, ChunkPlan.from_dict(meta["plan"]), scores,
                              config.params, config.store, timings, source=source,
                              decoded=decoded)
    except Exception as exc:  # noqa: BLE001
        if not isinstance(exc, FramesiftError):
            log.exception("finishing %s failed", meta["name"])
        return {"status": "failed", "error": _error_text(exc), "error_code": _error_code(exc)}
    assert result.manifest is not None
    t = result.manifest.timings_s
    worker_s = sum(t.get(k, 0.0) for k in WALL_TIMINGS if k != "score_s") + t.get("score_cpu_s", 0.0)
    return {"status": "succeeded", "location": result.location, "frames": summary["frame_count"],
            "worker_s": worker_s, "manifest": result.manifest.to_json()}


class _ScoringStage:
    def __init__(self, config: StageConfig) -> None:
        self.config = config
        self.scorer: ChunkScorer | None = None

    def setup(self) -> None:
        self.scorer = ChunkScorer(self.config.params.scorer)
        self.scorer.setup()

    def _scorer(self) -> ChunkScorer:
        if self.scorer is None:
            self.setup()
        assert self.scorer is not None
        return self.scorer


class VideoStage(_ScoringStage):
    """Ray Data unit: probe and plan each input video; score and finish the one-chunk ones.
    A generator: each row leaves as soon as it is made (a video's result the moment it is
    stored, even from a task given several videos)."""

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        scorer = self._scorer()
        for row in batch.to_pylist():  # one video, or a few in a batch of many short ones
            for out in video_rows(row, self.config, scorer):
                yield pa.Table.from_pylist([out], schema=ROW_SCHEMA)


class ChunkStage(_ScoringStage):
    """Ray Data unit: score chunk rows; other rows pass through."""

    def __call__(self, batch: pa.Table) -> pa.Table:
        scorer = self._scorer()
        rows = [score_row(row, self.config, scorer) for row in batch.to_pylist()]
        return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def _finish_task(config: StageConfig, meta_json: str, url: str,
                 parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Ray task body: finish a chunked video whose scores are all in."""
    return finish_scored(meta_json, url, parts, config)


_WORKER_SCORERS: dict[ScorerConfig, ChunkScorer] = {}  # a worker's scorers, for chunk tasks


def _score_task(config: StageConfig, row: dict[str, Any]) -> dict[str, Any]:
    """Ray task body: score one chunk of a long video in a batch of whole videos."""
    scorer = _WORKER_SCORERS.get(config.params.scorer)
    if scorer is None:
        scorer = _WORKER_SCORERS[config.params.scorer] = ChunkScorer(config.params.scorer)
        scorer.setup()
    return score_row(row, config, scorer)


# -- driver side -------------------------------------------------------------------------------

@dataclass
class _Partial:
    """A chunked video in flight: its scored chunks so far. It is dropped once its rows (the
    ``planned`` row and one per chunk, in any order) have all arrived."""

    n_chunks: int
    meta: str
    url: str
    parts: dict[int, dict[str, Any]] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # chunk numbers; -1 for the planned row
    planned: bool = False
    failed: bool = False

    @property
    def complete(self) -> bool:
        return len(self.seen) == self.n_chunks + 1


class Collector:
    """Turns the stream's rows into progress, finish steps and results (driver state: the
    chunked videos in flight, the finish steps running, and the positions of the finished
    videos, so a row repeated by a retried task is not counted twice)."""

    def __init__(self, config: StageConfig, hooks: Hooks, *, keep_manifests: bool,
                 finisher: "_Finisher") -> None:
        self.config = config
        self.hooks = hooks
        self.keep_manifests = keep_manifests or hooks.on_pick is not None
        self.finisher = finisher
        self.partial: dict[str, _Partial] = {}
        self.finished: set[int] = set()
        self.announced: set[int] = set()  # videos whose plan went to ``on_planned``
        self.ready: deque[VideoOutcome] = deque()

    def take(self, row: dict[str, Any]) -> None:
        kind, scan = row["kind"], row["video_id"]
        if scan not in self.partial and json.loads(row["meta"])["seq"] in self.finished:
            return  # a finished video's row, again (a retried task)
        if kind == "planned":
            if row["n_chunks"] <= 1:  # a whole-video unit: its result comes in one row
                self._on_planned(json.loads(row["meta"]))
                return
            partial = self._partial(row)
            partial.seen.add(-1)
            self._planned(partial)
            if partial.complete:
                del self.partial[scan]
            return
        if kind == "done":
            meta = json.loads(row["meta"])
            self._on_planned(meta)
            result = json.loads(row["result"])
            if result["status"] == "succeeded" and self.hooks.on_frames:
                self.hooks.on_frames(scan, result["frames"])
            self.emit(meta, result)
            return
        if row["n_chunks"] <= 1:  # a probe error, or the error of a one-chunk video
            meta = json.loads(row["meta"])
            self._on_planned(meta)
            self.emit(meta, {"status": "failed", "error": row["error"],
                             "error_code": row["error_code"]})
            return
        partial = self._partial(row)
        partial.seen.add(row["chunk"])
        if not partial.failed:
            if kind == "error":
                partial.failed = True
                partial.parts.clear()
                self.emit(json.loads(partial.meta), {"status": "failed", "error": row["error"],
                                                     "error_code": row["error_code"]})
            else:
                self._planned(partial)
                partial.parts[row["chunk"]] = {k: row[k] for k in (*_SCORE_FIELDS, *_INDEX_FIELDS,
                                                                   "t_start", "t_end", "seconds")}
                if self.hooks.on_frames:
                    self.hooks.on_frames(scan, len(row["frame_index"]))
                if len(partial.parts) == partial.n_chunks:
                    self.finisher.submit(self, partial.meta, partial.url,
                                         [partial.parts[i] for i in sorted(partial.parts)])
        if partial.complete:
            del self.partial[scan]

    def _partial(self, row: dict[str, Any]) -> _Partial:
        entry = self.partial.get(row["video_id"])
        if entry is None:
            entry = self.partial[row["video_id"]] = _Partial(row["n_chunks"], row["meta"],
                                                            row["url"])
        return entry

    def _planned(self, partial: _Partial) -> None:
        if not partial.planned:
            partial.planned = True
            self._on_planned(json.loads(partial.meta))

    def _on_planned(self, meta: dict[str, Any]) -> None:
        if meta["seq"] in self.announced:
            return
        self.announced.add(meta["seq"])
        if self.hooks.on_planned and "plan" in meta:
            self.hooks.on_planned(meta["scan_id"], VideoSummary(**meta["info"]),
                                  ChunkPlan.from_dict(meta["plan"]))

    def emit(self, meta: dict[str, Any], outcome: dict[str, Any]) -> None:
        """A video's result: to the hooks now, to the stream's consumer next (once)."""
        scan, name = meta["scan_id"], meta["name"]
        if meta["seq"] in self.finished:
            return
        self.finished.add(meta["seq"])
        if outcome["status"] == "succeeded":
            manifest = (GoldenManifest.from_json(outcome["manifest"]) if self.keep_manifests
                        else None)
            result = GoldenResult(scan, name, "succeeded", manifest=manifest,
                                  location=outcome["location"])
            if manifest is not None and self.hooks.on_pick:
                for frame in manifest.golden_frames:
                    self.hooks.on_pick(scan, frame)
            done = VideoOutcome(result, meta["seq"], outcome["frames"], outcome["worker_s"])
        else:
            result = GoldenResult(scan, name, "failed", error=outcome["error"],
                                  error_code=outcome["error_code"] or "video_error")
            done = VideoOutcome(result, meta["seq"])
        if self.hooks.on_result:
            self.hooks.on_result(result)
        self.ready.append(done)

    def drain(self) -> Iterator[VideoOutcome]:
        while self.ready:
            yield self.ready.popleft()


class _Finisher:
    """Runs the finish step of chunked videos: in process (sequential reference)."""

    def __init__(self, config: StageConfig) -> None:
        self.config = config

    def submit(self, collector: Collector, meta: str, url: str, parts: list[dict[str, Any]]) -> None:
        collector.emit(json.loads(meta), finish_scored(meta, url, parts, self.config))

    def harvest(self, collector: Collector, block: bool = False) -> None:
        pass

    def pending(self) -> int:
        return 0


class _RayTasks(_Finisher):
    """Runs the finish step of chunked videos as Ray tasks, at most ``limit`` at once, and
    (whole-video batches) the chunks of the videos long enough to be split anyway."""

    def __init__(self, config: StageConfig, limit: int) -> None:
        import ray

        super().__init__(config)
        self.ray = ray
        self.limit = max(1, limit)
        self.config_ref = ray.put(config)
        self.finish_task = ray.remote(num_cpus=FINISH_CPUS, max_retries=3)(_finish_task)
        self.score_task = ray.remote(num_cpus=config.params.scorer.cpus,
                                     max_retries=3)(_score_task)
        self.finishing: dict[Any, str] = {}  # ObjectRef -> the video's meta JSON
        self.scoring: dict[Any, dict[str, Any]] = {}  # ObjectRef -> the chunk row

    def submit(self, collector: Collector, meta: str, url: str, parts: list[dict[str, Any]]) -> None:
        while len(self.finishing) >= self.limit:
            self.harvest(collector, block=True)
        self.finishing[self.finish_task.remote(self.config_ref, meta, url, parts)] = meta

    def score(self, row: dict[str, Any]) -> None:
        """Score a chunk row in a task; its scores come back to the collector on harvest."""
        self.scoring[self.score_task.remote(self.config_ref, row)] = row

    @property
    def backlogged(self) -> bool:
        """Chunk tasks enough to keep every CPU busy: the driver takes no more rows from the
        pipeline until one ends (a batch of long videos probes much faster than it scores,
        and the driver's state stays bounded by the videos in flight)."""
        return len(self.scoring) >= self.limit

    def harvest(self, collector: Collector, block: bool = False) -> None:
        running = [*self.finishing, *self.scoring]
        if not running:
            return
        ready, _ = self.ray.wait(running, num_returns=1 if block else len(running),
                                 timeout=None if block else 0)
        for ref in ready:
            try:
                outcome = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task died for good (retries spent)
                outcome = exc
            if ref in self.finishing:
                meta = self.finishing.pop(ref)
                if isinstance(outcome, Exception):
                    outcome = {"status": "failed", **_task_failure("the finish step", "finish",
                                                                   outcome)}
                collector.emit(json.loads(meta), outcome)
            else:
                row = self.scoring.pop(ref)
                if isinstance(outcome, Exception):
                    outcome = {**row, "kind": "error",
                               **_task_failure("scoring a chunk", "score", outcome)}
                collector.take(outcome)

    def pending(self) -> int:
        return len(self.finishing) + len(self.scoring)


def _task_failure(step: str, kind: str, exc: Exception) -> dict[str, str]:
    """The error of a task whose retries are spent, as a result's ``error`` fields."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    return {"error": f"{step} failed: {type(exc).__name__}: {first}", "error_code": f"{kind}_failed"}


def _check_unique(jobs: Sequence[VideoJob]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.scan_id in seen:
            raise ValueError(f"scan id {job.scan_id!r} appears twice in one run")
        seen.add(job.scan_id)


def _input_rows(jobs: Sequence[VideoJob], sources: SourceOptions,
                ) -> tuple[list[dict[str, Any]], list[tuple[int, VideoJob, Exception]]]:
    """One row per readable input (Supabase objects signed now); the others fail at once."""
    rows: list[dict[str, Any]] = []
    failed: list[tuple[int, VideoJob, Exception]] = []
    valid: list[tuple[int, VideoJob]] = []
    for seq, job in enumerate(jobs):
        try:
            check_input(job.path)
        except InvalidSourceError as exc:
            failed.append((seq, job, exc))
            continue
        valid.append((seq, job))
    signed: dict[str, Any] = {}
    supabase = [job.path for _, job in valid if scheme_of(job.path) == "supabase"]
    if supabase:
        from jobs.sources.supabase import sign_inputs

        signed = sign_inputs(supabase, sources.signed_url_expiry_s)
    for seq, job in valid:
        url = signed.get(job.path, job.path)
        if isinstance(url, Exception):
            failed.append((seq, job, url))
            continue
        rows.append({"scan_id": job.scan_id, "url": url, "name": display_name(job.path),
                     "item_type": job.item_type, "seq": seq})
    return rows, failed


def stream_golden(jobs: Sequence[VideoJob], params: GoldenParams, store: Store, *,
                  distributed: bool = True, address: str | None = None,
                  num_cpus: int | None = None, plan_cpus: int | None = None,
                  hooks: Hooks | None = None, sources: SourceOptions | None = None,
                  max_finishing: int | None = None, keep_manifests: bool = True,
                  limits: WorkLimits | None = None,
                  threads: int = 1) -> Iterator[VideoOutcome]:
    """Run the golden-frame job over ``jobs``; yield each video's outcome as it finishes.

    ``distributed=False`` runs the stages in this process, on ``threads`` threads (chunks
    planned for that many CPUs); 1 is the sequential reference.

    ``plan_cpus``: plan for that many CPUs instead of the cluster's now (an autoscaling
    cluster: what it may scale to). ``keep_manifests=False`` drops each manifest once its
    result is yielded (a large batch: the store has them). ``max_finishing``: most chunked
    videos finishing at once (default 2 x the CPUs planned for).
    """
    hooks = hooks or Hooks()
    sources = sources or SourceOptions()
    _check_unique(jobs)
    if not jobs:
        return
    cpus = max(1, threads)
    if distributed:
        from jobs.runtime import ensure_ray

        cluster_cpus = ensure_ray(address, num_cpus)
        cpus = plan_cpus or cluster_cpus
    batch = plan_batch(len(jobs), cpus, workers=params.workers)
    if hooks.on_batch:
        hooks.on_batch(batch)
    rows, failed = _input_rows(jobs, sources)
    config = StageConfig(params, sources, batch, store, limits=limits or WorkLimits())
    finisher = (_RayTasks(config, max_finishing or 2 * cpus) if distributed
                else _Finisher(config))
    collector = Collector(config, hooks, keep_manifests=keep_manifests, finisher=finisher)
    for seq, job, exc in failed:
        collector.emit({"scan_id": job.scan_id, "name": display_name(job.path), "seq": seq},
                       {"status": "failed", "error": _error_text(exc),
                        "error_code": _error_code(exc)})
    yield from collector.drain()
    if not rows:
        return
    if distributed:
        yield from _run_distributed(rows, config, collector, finisher, cpus)
    else:
        yield from _run_in_process(rows, config, collector, threads)


def _run_in_process(rows: list[dict[str, Any]], config: StageConfig, collector: Collector,
                    threads: int = 1) -> Iterator[VideoOutcome]:
    """The pipeline's stages in this process: one after another (``threads=1``, the
    sequential reference), or on a pool of threads, each with its own scorer (decode, resize,
    Laplacian and flow release the GIL). Results are the same either way."""
    if threads <= 1:
        scorer = ChunkScorer(config.params.scorer)
        scorer.setup()
        for row in rows:
            for out in video_rows(row, config, scorer):
                collector.take(score_row(out, config, scorer))
                yield from collector.drain()
        return
    from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

    local = threading.local()
    scorer_config = replace(config.params.scorer, cpus=1)  # OpenCV's own threads: one each

    def scorer() -> ChunkScorer:
        if getattr(local, "scorer", None) is None:
            local.scorer = ChunkScorer(scorer_config)
            local.scorer.setup()
        return local.scorer

    def probe_video(row: dict[str, Any]) -> list[dict[str, Any]]:
        return list(video_rows(row, config, scorer()))

    def score_chunk(row: dict[str, Any]) -> list[dict[str, Any]]:
        return [score_row(row, config, scorer())]

    todo = iter(rows)
    pending: set[Future] = set()
    with ThreadPoolExecutor(threads, thread_name_prefix="score") as pool:
        while True:
            while len(pending) < 2 * threads:  # bounded: a batch is not all queued at once
                row = next(todo, None)
                if row is None:
                    break
                pending.add(pool.submit(probe_video, row))
            if not pending:
                break
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                for out in future.result():
                    if out["kind"] == "chunk":
                        pending.add(pool.submit(score_chunk, out))
                    else:
                        collector.take(out)
            yield from collector.drain()


def _run_distributed(rows: list[dict[str, Any]], config: StageConfig, collector: Collector,
                     finisher: _RayTasks, cpus: int) -> Iterator[VideoOutcome]:
    import queue

    import ray.data

    from jobs.units import map_unit, run_unit_once

    whole = config.batch.mode == "whole"
    # Many short videos: a few per task (Ray Data's per-task cost, paid once per group), still
    # at least VIDEO_TASKS_PER_CPU tasks per CPU so the last ones leave no CPU idle for long.
    per_task = (max(1, min(MAX_VIDEOS_PER_TASK, len(rows) // (cpus * VIDEO_TASKS_PER_CPU)))
                if whole else 1)
    ds = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // per_task))
    # The video stage runs with Ray Data's default task resources (one CPU: it scores the
    # one-chunk videos). Every task does a video's work, so it never runs far ahead of the
    # scoring (probes of many videos first would delay every result).
    ds = ds.map_batches(run_unit_once, fn_kwargs={"unit_cls": VideoStage, "config": config},
                        batch_size=per_task, batch_format="pyarrow", zero_copy_batch=True)
    if not whole:
        ds = map_unit(ds, ChunkStage, config, actors=config.params.actors, concurrency=cpus,
                      num_cpus=config.params.scorer.cpus, batch_format="pyarrow")
    # Rows are a few hundred bytes (a chunk's scores a few KiB): with a target block size of
    # one byte every row a task yields is its own block, sent on at once (a finished video
    # does not wait for the rest of its task's videos; a video's chunks spread over the
    # workers), where Ray Data would otherwise gather a task's rows into one block.
    ds.context.target_max_block_size = 1

    # Ray Data's iterator blocks, so a thread pumps its batches to this loop, which also
    # harvests the finish (and chunk) tasks as they come.
    batches: queue.Queue[Any] = queue.Queue(maxsize=16)
    stop = threading.Event()
    end = object()

    def pump() -> None:
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                         prefetch_batches=1):
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            batches.put(end)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the driver loop
            batches.put(exc)

    thread = threading.Thread(target=pump, name="golden-stream", daemon=True)
    thread.start()
    try:
        while True:
            if finisher.backlogged:
                finisher.harvest(collector, block=True)
                yield from collector.drain()
                continue
            # tasks running: look at them often; otherwise the next batch is all there is
            try:
                item = batches.get(timeout=0.05 if finisher.pending() else 1.0)
            except queue.Empty:
                item = None
            if item is end:
                break
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                for row in item.to_pylist():
                    if row["kind"] == "chunk":  # a long video in a batch of whole videos
                        finisher.score(row)
                    else:
                        collector.take(row)
            finisher.harvest(collector)
            yield from collector.drain()
        while finisher.pending():
            finisher.harvest(collector, block=True)
            yield from collector.drain()
    finally:
        stop.set()


def run_golden(jobs: Sequence[VideoJob], params: GoldenParams, store: Store, *,
               distributed: bool = True, address: str | None = None,
               num_cpus: int | None = None, hooks: Hooks | None = None,
               plan_cpus: int | None = None, sources: SourceOptions | None = None,
               limits: WorkLimits | None = None, threads: int = 1) -> list[GoldenResult]:
    """``stream_golden`` collected: every video's result, in the order of ``jobs``."""
    results: dict[int, GoldenResult] = {}
    for outcome in stream_golden(jobs, params, store, distributed=distributed, address=address,
                                 num_cpus=num_cpus, plan_cpus=plan_cpus, hooks=hooks,
                                 sources=sources, limits=limits, threads=threads):
        results[outcome.seq] = outcome.result
    return [results[i] for i in range(len(jobs))]


__all__ = ["ChunkStage", "Collector", "StageConfig", "VideoOutcome", "VideoStage",
           "finish_scored", "run_golden", "score_row", "stream_golden", "video_rows"]
