"""The golden-frame stages: probe+plan (``VideoStage``, which also runs a whole video when it
is planned as one chunk), score a chunk (``ScoreStage``) and finish a video (``FinishStage``).

Each is a ``Stage`` over the typed messages of ``jobs.golden.messages``, plain Python that
runs wherever a runner puts it (``jobs.golden.runners``). A bad video is data: its stage
yields a ``VideoFailed`` with the error's code, and the other videos go on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterator

from actors.errors import CorruptVideoError, FramesiftError
from actors.records import VideoChunk, VideoInfo
from actors.scoring import ChunkScorer
from actors.stage import Resources, Stage
from actors.video import probe
from actors.video_open import Source
from jobs.golden.finish import WALL_TIMINGS, VideoJob, finish_video
from jobs.golden.limits import WorkLimits
from jobs.golden.messages import (ChunkScores, ChunkTask, Message, PlannedVideo, VideoDone,
                                  VideoFailed, VideoInput, VideoScores)
from jobs.golden.params import GoldenParams
from jobs.golden.planner import BatchPlan
from jobs.sources import SourceOptions, open_source, source_identity
from jobs.stores.base import Store

log = logging.getLogger(__name__)

# A whole-video unit keeps its decoded frames (YUV 4:2:0, 1.5 bytes per pixel) when they fit in
# this much memory, so its picks are not decoded a second time: on short videos that second
# decode (from each pick's keyframe) cost about a fifth of the scoring.
PICK_CACHE_BYTES = 256 * 1024 * 1024
# A video scored as one unit announces its plan (the progress total) before it is scored when
# its estimated work is at least this long; a shorter one's plan comes with its result (one
# message, not two: on a batch of tiny videos the second message per video cost about a third
# of the run, bench/batch.py).
ANNOUNCE_WORK_S = 2.0


@dataclass(frozen=True)
class GoldenConfig:
    """What every golden stage needs on a worker (shipped once per operator)."""

    params: GoldenParams
    sources: SourceOptions
    batch: BatchPlan
    store: Store
    limits: WorkLimits = WorkLimits()


def error_code(exc: BaseException) -> str:
    """A failure's code: the typed error's own, else ``internal_error``."""
    return getattr(exc, "code", "internal_error") if isinstance(exc, FramesiftError) else "internal_error"


def error_text(exc: BaseException) -> str:
    """A failure as a result shows it (the type named when it is not one of ours)."""
    return str(exc) if isinstance(exc, FramesiftError) else f"{type(exc).__name__}: {exc}"


def failed(item: VideoInput, exc: BaseException, video: PlannedVideo | None = None,
           step: str = "scoring", chunk: int | None = None) -> VideoFailed:
    """``exc`` as a video's failure; an unexpected one is logged with its traceback."""
    if not isinstance(exc, FramesiftError):
        log.error("%s %s failed: %s", step, item.name, error_text(exc), exc_info=exc)
    return VideoFailed(item, error_text(exc), error_code(exc), video, chunk)


class _ScoringStage(Stage[Any, Message]):
    """A stage that scores: holds one ``ChunkScorer`` per instance."""

    def __init__(self, config: GoldenConfig, scorer: ChunkScorer | None = None) -> None:
        """``scorer``: one already set up (a worker's, kept across tasks)."""
        self.config = config
        self.scorer = scorer
        self._set_up = scorer is not None

    @property
    def resources(self) -> Resources:
        return Resources(self.config.params.scorer.cpus)

    def setup(self) -> None:
        self.scorer = ChunkScorer(self.config.params.scorer)
        self.scorer.setup()

    def _score(self, task: ChunkTask, source: Source | None = None,
               keep: Any = None) -> ChunkScores | VideoFailed:
        """Score one chunk (opening its source unless given)."""
        self.ready()
        assert self.scorer is not None
        item = task.video.input
        t_start, p0 = time.time(), time.process_time()
        try:
            if source is None:
                source = open_source(item.url, item.name, self.config.sources,
                                     task.video.identity)
            scores = self.scorer.score(task.chunk, source, keep)
        except Exception as exc:  # noqa: BLE001 - a bad video is data, never the batch's crash
            return failed(item, exc, task.video, chunk=task.number)
        return ChunkScores(task.video, task.number, tuple(scores), t_start, time.time(),
                           time.process_time() - p0,
                           task.chunk.index if task.number == 0 else None)


class VideoStage(_ScoringStage):
    """Probe and plan one video: its ``PlannedVideo`` as soon as it is planned (for a one-chunk
    video only when its work is at least ``ANNOUNCE_WORK_S``), then, planned as one chunk,
    its ``VideoDone`` or ``VideoFailed`` (scored and finished right here, from the frames kept
    while scoring when they fit in ``PICK_CACHE_BYTES``); planned as several, one
    ``ChunkTask`` per chunk."""

    name = "video"

    def process(self, item: VideoInput) -> Iterator[Message]:
        t0 = time.perf_counter()
        try:
            source = open_source(item.url, item.name, self.config.sources)
            info = probe(source, budget=self.config.limits)  # refused from the header if it can be
            self.config.limits.check(item.name, info.width, info.height, info.frame_count)
            params = self.config.params
            plan = self.config.batch.plan_video(info.frame_count, info.width, info.height,
                                                index=info.index,
                                                min_frames_per_chunk=params.min_frames_per_chunk,
                                                max_workers=params.max_workers)
        except Exception as exc:  # noqa: BLE001
            yield failed(item, exc, step="probing")
            return
        video = PlannedVideo(item, info.without_index(), plan, source_identity(source),
                             time.perf_counter() - t0)
        tasks = [ChunkTask(video, i, VideoChunk.of(item.scan_id, info, frames))
                 for i, frames in enumerate(plan.chunks)]
        if len(tasks) > 1 or plan.est_work_s >= ANNOUNCE_WORK_S:
            yield video  # at once: its frame count is the progress total
        if len(tasks) > 1:
            yield from tasks
            return
        decoded: dict[int, Any] = {}
        task = tasks[0]
        fits = len(task.chunk.frames) * info.width * info.height * 1.5 <= PICK_CACHE_BYTES
        scored = self._score(task, source, decoded.__setitem__ if fits else None)
        if isinstance(scored, VideoFailed):
            yield scored
            return
        yield finish(VideoScores(video, (scored,)), self.config, source, decoded)
        decoded.clear()


class ScoreStage(_ScoringStage):
    """Score a ``ChunkTask``; every other message passes through (a Ray Data operator sees
    the whole stream)."""

    name = "score"

    def process(self, item: Message) -> Iterator[Message]:
        yield self._score(item) if isinstance(item, ChunkTask) else item


class FinishStage(Stage[VideoScores, Message]):
    """Finish a video whose chunks are all scored."""

    name = "finish"

    def __init__(self, config: GoldenConfig) -> None:
        self.config = config

    def process(self, item: VideoScores) -> Iterator[Message]:
        yield finish(item, self.config)


def finish(scored: VideoScores, config: GoldenConfig, source: Source | None = None,
           decoded: dict[int, Any] | None = None) -> VideoDone | VideoFailed:
    """``finish_video`` on a video's scores (``decoded``: frames the scorer kept)."""
    video, item = scored.video, scored.video.input
    scores = scored.scores()
    try:
        index = scored.index
        positions = [s.frame_index for s in scores]
        if len(set(positions)) != len(positions) or not set(positions) <= set(range(len(index))):
            raise RuntimeError(f"expected each of frames 0..{len(index) - 1} at most once; got "
                               f"{len(scores)} scores")
        if not scores:
            raise CorruptVideoError(item.name, f"none of its {len(index)} listed frames decodes")
        parts = scored.parts
        timings = {"probe_s": video.probe_s,
                   "score_s": max(p.t_end for p in parts) - min(p.t_start for p in parts),
                   "score_cpu_s": sum(p.cpu_s for p in parts)}
        if source is None:
            source = open_source(item.url, item.name, config.sources, video.identity)
        result = finish_video(VideoJob(item.name, item.scan_id, item.item_type),
                              VideoInfo(**video.summary.summary(), index=index), video.plan,
                              scores, config.params, config.store, timings, source=source,
                              decoded=decoded)
    except Exception as exc:  # noqa: BLE001
        return failed(item, exc, video, step="finishing")
    manifest = result.manifest
    assert manifest is not None
    t = manifest.timings_s
    worker_s = (sum(t.get(k, 0.0) for k in WALL_TIMINGS if k != "score_s")
                + t.get("score_cpu_s", 0.0))
    return VideoDone(item, video, result.location or "", manifest.to_json(),
                     video.summary.frame_count, worker_s)
