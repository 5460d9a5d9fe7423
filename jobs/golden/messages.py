r"""The typed messages between the golden stages, and the one wire format they travel in.

::

  VideoInput --VideoStage--> PlannedVideo + ChunkTask...   (a video split into chunks)
                         \-> VideoDone | VideoFailed        (a whole video, fused fast path)
  ChunkTask  --ScoreStage--> ChunkScores | VideoFailed
  VideoScores (all of a video's ChunkScores) --FinishStage--> VideoDone | VideoFailed

Between Ray Data operators each message is one row of ``WIRE_SCHEMA``: the video's id and the
message itself, pickled (the way NeMo Curator's adapter carries a whole task in one column).
Every field of every message travels, so adding a field to a message or to ``FrameScore`` is
an edit of that dataclass alone.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Iterable, Union

import pyarrow as pa

from actors.records import FrameIndex, FrameScore, VideoChunk, VideoSummary
from jobs.golden.planner import ChunkPlan


@dataclass(frozen=True)
class VideoInput:
    """One video of a run: what to read (a path, URL or signed object URL), what to call it,
    and its position in the run."""

    scan_id: str
    url: str
    name: str
    item_type: str | None
    seq: int


@dataclass(frozen=True)
class PlannedVideo:
    """A probed and planned video: what the finish step and the progress hooks need.
    ``identity`` (size, ETag) is what every later reader of the object insists on."""

    input: VideoInput
    summary: VideoSummary
    plan: ChunkPlan
    identity: tuple[int, str | None] | None
    probe_s: float

    @property
    def n_chunks(self) -> int:
        return len(self.plan.chunks)


@dataclass(frozen=True)
class ChunkTask:
    """Score chunk ``number`` of a planned video."""

    video: PlannedVideo
    number: int
    chunk: VideoChunk


@dataclass(frozen=True)
class ChunkScores:
    """The scores of one chunk, the wall-clock span and CPU seconds it took. Chunk 0 also
    carries the video's frame index, for the finish step."""

    video: PlannedVideo
    number: int
    scores: tuple[FrameScore, ...]
    t_start: float
    t_end: float
    cpu_s: float
    index: FrameIndex | None = None


@dataclass(frozen=True)
class VideoScores:
    """Every chunk's scores of one video, in chunk order: ready to finish."""

    video: PlannedVideo
    parts: tuple[ChunkScores, ...]

    @property
    def index(self) -> FrameIndex:
        index = self.parts[0].index
        if index is None:
            raise RuntimeError(f"{self.video.input.name}: chunk 0's scores lost the frame index")
        return index

    def scores(self) -> list[FrameScore]:
        """All frame scores in frame order."""
        return sorted((s for part in self.parts for s in part.scores),
                      key=lambda s: s.frame_index)


@dataclass(frozen=True)
class VideoDone:
    """A stored result. ``manifest`` is the manifest's JSON; ``frames`` the frames scored and
    ``worker_s`` the worker seconds it took (for a batch summary)."""

    input: VideoInput
    video: PlannedVideo
    location: str
    manifest: str
    frames: int
    worker_s: float


@dataclass(frozen=True)
class VideoFailed:
    """A video that failed: ``video`` when it got as far as its plan, ``chunk`` when scoring
    one chunk of it failed."""

    input: VideoInput
    error: str
    error_code: str
    video: PlannedVideo | None = None
    chunk: int | None = None


Message = Union[PlannedVideo, ChunkTask, ChunkScores, VideoDone, VideoFailed]

WIRE_SCHEMA = pa.schema([("video_id", pa.string()), ("message", pa.binary())])


def scan_of(message: Message) -> str:
    """The scan id a message belongs to."""
    if isinstance(message, (VideoDone, VideoFailed)):
        return message.input.scan_id
    if isinstance(message, PlannedVideo):
        return message.input.scan_id
    return message.video.input.scan_id


def to_table(messages: Iterable[Message | VideoInput]) -> pa.Table:
    """Messages as rows of ``WIRE_SCHEMA``."""
    items = list(messages)
    return pa.table({"video_id": [m.scan_id if isinstance(m, VideoInput) else scan_of(m)
                                  for m in items],
                     "message": [pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL)
                                 for m in items]}, schema=WIRE_SCHEMA)


def from_table(table: pa.Table) -> list[Message | VideoInput]:
    """The messages of a ``WIRE_SCHEMA`` table, in row order."""
    return [pickle.loads(blob) for blob in table.column("message").to_pylist()]
