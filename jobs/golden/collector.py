"""The driver's side of a golden run: turns the stages' messages into progress hooks, finish
requests and results, each video's result once.

It holds the chunked videos in flight (their scores so far), and the positions of the
finished videos, so a message repeated by a retried task is not counted twice.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

from jobs.golden.finish import Hooks
from jobs.golden.manifest import GoldenManifest, GoldenResult
from jobs.golden.messages import (ChunkScores, Message, PlannedVideo, VideoDone, VideoFailed,
                                  VideoInput, VideoScores)


@dataclass
class VideoOutcome:
    """A finished video as the stream yields it: the result, and what a batch summary needs
    without keeping the manifest (frames scored, worker seconds spent, manifest position)."""

    result: GoldenResult
    seq: int
    frames: int = 0
    worker_s: float = 0.0


@dataclass
class _Partial:
    """A chunked video in flight: its scored chunks so far. Dropped once its messages (the
    plan and one per chunk, in any order) have all arrived."""

    video: PlannedVideo
    parts: dict[int, ChunkScores] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # chunk numbers; -1 for the plan
    failed: bool = False

    @property
    def complete(self) -> bool:
        return len(self.seen) == self.video.n_chunks + 1


class Collector:
    """Takes every message a run's stages yield (``take``), returns the videos whose scores
    are all in (to finish), and queues each video's outcome once (``drain``)."""

    def __init__(self, hooks: Hooks, *, keep_manifests: bool) -> None:
        self.hooks = hooks
        self.keep_manifests = keep_manifests or hooks.on_pick is not None
        self.partial: dict[str, _Partial] = {}
        self.planned: set[int] = set()
        self.finished: set[int] = set()
        self.ready: deque[VideoOutcome] = deque()

    def take(self, message: Message) -> VideoScores | None:
        """One message; a video whose chunks are now all scored, to be finished."""
        if isinstance(message, (VideoDone, VideoFailed)):
            if message.video is not None:
                self._on_planned(message.video)
            if isinstance(message, VideoFailed) and message.chunk is not None \
                    and message.video is not None and message.video.n_chunks > 1:
                self._chunk_failed(message)
                return None
            self.emit(message)
            return None
        if not isinstance(message, (ChunkScores, PlannedVideo)):
            raise TypeError(f"the collector takes no {type(message).__name__}")
        video = message.video if isinstance(message, ChunkScores) else message
        if video.input.seq in self.finished and video.input.scan_id not in self.partial:
            return None  # a finished video's message, again (a retried task)
        self._on_planned(video)
        if isinstance(message, PlannedVideo) and video.n_chunks <= 1:
            return None  # a whole-video unit: its result comes in one message
        partial = self.partial.setdefault(video.input.scan_id, _Partial(video))
        ready = None
        if isinstance(message, PlannedVideo):
            partial.seen.add(-1)
        else:  # ChunkScores
            partial.seen.add(message.number)
            if not partial.failed and message.number not in partial.parts:
                partial.parts[message.number] = message
                if self.hooks.on_frames:
                    self.hooks.on_frames(video.input.scan_id, len(message.scores))
                if len(partial.parts) == video.n_chunks:
                    ready = VideoScores(video, tuple(partial.parts[i]
                                                     for i in sorted(partial.parts)))
        if partial.complete:
            del self.partial[video.input.scan_id]
        return ready

    def _chunk_failed(self, message: VideoFailed) -> None:
        """A chunk of a chunked video failed: the video fails (once), its scores are dropped."""
        assert message.video is not None and message.chunk is not None
        if message.input.seq in self.finished and message.input.scan_id not in self.partial:
            return  # a finished video's failure, again (a retried task): no state for it
        partial = self.partial.setdefault(message.input.scan_id, _Partial(message.video))
        if not partial.failed and message.input.seq not in self.finished:
            partial.failed = True
            partial.parts.clear()
            self.emit(message)
        partial.seen.add(message.chunk)
        if partial.complete:
            del self.partial[message.input.scan_id]

    def _on_planned(self, video: PlannedVideo) -> None:
        if video.input.seq not in self.planned:
            self.planned.add(video.input.seq)
            if self.hooks.on_planned:
                self.hooks.on_planned(video.input.scan_id, video.summary, video.plan)

    def emit(self, message: VideoDone | VideoFailed) -> None:
        """A video's result: to the hooks now, to the stream's consumer next (once)."""
        item = message.input
        if item.seq in self.finished:
            return
        self.finished.add(item.seq)
        if isinstance(message, VideoDone):
            manifest = (GoldenManifest.from_json(message.manifest) if self.keep_manifests
                        else None)
            result = GoldenResult(item.scan_id, item.name, "succeeded", manifest=manifest,
                                  location=message.location)
            if message.video.n_chunks == 1 and self.hooks.on_frames:
                self.hooks.on_frames(item.scan_id, message.frames)
            if manifest is not None and self.hooks.on_pick:
                for frame in manifest.golden_frames:
                    self.hooks.on_pick(item.scan_id, frame)
            done = VideoOutcome(result, item.seq, message.frames, message.worker_s)
        else:
            result = GoldenResult(item.scan_id, item.name, "failed", error=message.error,
                                  error_code=message.error_code or "video_error")
            done = VideoOutcome(result, item.seq)
        if self.hooks.on_result:
            self.hooks.on_result(result)
        self.ready.append(done)

    def fail_input(self, item: VideoInput, error: str, code: str) -> None:
        """A video that failed before any stage saw it (an unreadable input)."""
        self.emit(VideoFailed(item, error, code))

    def drain(self) -> Iterator[VideoOutcome]:
        while self.ready:
            yield self.ready.popleft()
