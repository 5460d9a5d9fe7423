"""Typed records exchanged between units. They validate themselves on construction."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any, Iterator, Sequence

import numpy as np


@dataclass(frozen=True, slots=True)
class FrameRange:
    """Half-open range of frame indices ``[start, stop)``, behaving like ``range``."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.stop, int)):
            raise TypeError(f"FrameRange bounds must be ints, got {self.start!r}, {self.stop!r}")
        if self.start < 0 or self.stop < self.start:
            raise ValueError(f"FrameRange needs 0 <= start <= stop, got [{self.start}, {self.stop})")

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.stop))

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.start <= index < self.stop

    def with_predecessor(self) -> "FrameRange":
        """The range extended one frame back (for flow continuity), clamped at frame 0."""
        return FrameRange(max(0, self.start - 1), self.stop)


@dataclass(frozen=True)
class FrameIndex:
    """The frames of a stream: frame ``i`` is the i-th frame the decoder delivers.

    ``pts`` holds each frame's presentation time (in ``time_base``, strictly increasing) and
    ``keyframes`` the frames a decode can start from. Built from the container's listing when
    the decoder delivers its frames in the listed order (the usual case: no decoding needed);
    built from a sequential decode when it does not (packed B-frames, broken composition
    offsets, repeated timestamps): then ``keys`` holds the timestamp the decoder gives each
    frame (``av.VideoFrame.pts``, in the stream's time base), in delivery order, while ``pts``
    stays increasing. ``keys`` is None when it equals ``pts``.

    A *gap* is a frame the container lists but the decoder never delivers (a discarded last
    sample, a broken slice): ``gaps`` holds the ones known in advance (a decoded index); a
    listed index learns its gaps while decoding (``actors.video_decode.iter_frames`` skips them).
    """

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction
    keys: tuple[int, ...] | None = None
    gaps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if any(b <= a for a, b in zip(self.pts, self.pts[1:])):
            raise ValueError("FrameIndex.pts must be strictly increasing")
        if self.keys is not None and len(self.keys) != len(self.pts):
            raise ValueError(f"FrameIndex.keys has {len(self.keys)} entries for "
                             f"{len(self.pts)} frames")
        if any(not 0 <= g < len(self.pts) for g in self.gaps):
            raise ValueError("FrameIndex.gaps must be frame positions")
        if not self.keyframes or self.keyframes[0] != 0:
            object.__setattr__(self, "keyframes", (0, *[k for k in self.keyframes if k != 0]))

    def __len__(self) -> int:
        return len(self.pts)

    def time_s(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    def keyframe_at_or_before(self, index: int) -> int:
        return self.keyframes[bisect.bisect_right(self.keyframes, index) - 1]

    def key(self, index: int) -> int:
        """The timestamp the decoder gives frame ``index`` (what seeks and lookups use)."""
        return self.pts[index] if self.keys is None else self.keys[index]

    def positions_of(self, key: int) -> Sequence[int]:
        """The frames the decoder gives timestamp ``key`` (in order; usually one)."""
        if self.keys is None:
            i = bisect.bisect_left(self.pts, key)
            return (i,) if i < len(self.pts) and self.pts[i] == key else ()
        table = self.__dict__.get("_key_table")
        if table is None:
            table = {}
            for i, k in enumerate(self.keys):
                table.setdefault(k, []).append(i)
            object.__setattr__(self, "_key_table", table)
        return table.get(key, ())

    def position_of(self, key: int, after: int = -1) -> int | None:
        """The first frame after frame ``after`` that the decoder gives timestamp ``key``."""
        found = self.positions_of(key)
        i = bisect.bisect_right(found, after)
        return found[i] if i < len(found) else None

    def to_columns(self) -> dict[str, Any]:
        """Plain, Arrow-friendly fields (for Ray Data rows)."""
        return {"pts": list(self.pts), "keyframes": list(self.keyframes),
                "tb_num": self.time_base.numerator, "tb_den": self.time_base.denominator,
                "keys": [] if self.keys is None else list(self.keys), "gaps": list(self.gaps)}

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> "FrameIndex":
        keys = row.get("keys")
        gaps = row.get("gaps")
        return cls(tuple(int(p) for p in row["pts"]), tuple(int(k) for k in row["keyframes"]),
                   Fraction(int(row["tb_num"]), int(row["tb_den"])),
                   tuple(int(k) for k in keys) if keys is not None and len(keys) else None,
                   tuple(int(g) for g in gaps) if gaps is not None else ())


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a Ray Data batch given as columns."""
    n = len(next(iter(batch.values()))) if batch else 0
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


@dataclass(frozen=True)
class VideoSummary:
    """What ``probe`` learns about a video, as a result records it (no frame index)."""

    path: str
    frame_count: int
    avg_fps: float
    variable_fps: bool
    width: int
    height: int
    duration_s: float
    codec: str
    rotation: int

    def summary(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(VideoSummary)}

    def public(self) -> dict[str, Any]:
        """The facts without the file path (the service never shows its own paths)."""
        return {k: v for k, v in self.summary().items() if k != "path"}


@dataclass(frozen=True)
class VideoInfo(VideoSummary):
    """The summary plus the frame index that exact decoding needs."""

    index: FrameIndex = field(repr=False, compare=False)

    def without_index(self) -> VideoSummary:
        return VideoSummary(**self.summary())


@dataclass(frozen=True)
class VideoChunk:
    """One unit of per-frame work: frames ``frames`` of one video (every ``stride``-th index),
    with what a worker needs to decode them exactly and upright."""

    video_id: str
    path: str
    frames: FrameRange
    index: FrameIndex = field(repr=False)
    width: int
    height: int
    rotation: int = 0
    stride: int = 1

    @classmethod
    def of(cls, video_id: str, info: VideoInfo, frames: FrameRange, stride: int = 1) -> "VideoChunk":
        return cls(video_id, info.path, frames, info.index, info.width, info.height,
                   info.rotation, stride)

    @classmethod
    def split(cls, video_id: str, info: VideoInfo, chunk_frames: int,
              stride: int = 1) -> list["VideoChunk"]:
        """Consecutive chunks of ``chunk_frames`` frames covering the whole video."""
        n, step = info.frame_count, max(1, chunk_frames)
        return [cls.of(video_id, info, FrameRange(s, min(n, s + step)), stride)
                for s in range(0, n, step)]

    def wanted(self) -> list[int]:
        """The frame indices this chunk processes (every ``stride``-th)."""
        return [i for i in self.frames if i % self.stride == 0]

    def to_row(self) -> dict[str, Any]:
        """Arrow-friendly row (plain columns) for Ray Data."""
        return {"video_id": self.video_id, "path": self.path, "start": self.frames.start,
                "stop": self.frames.stop, "width": self.width, "height": self.height,
                "rotation": self.rotation, "stride": self.stride, **self.index.to_columns()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "VideoChunk":
        return cls(str(row["video_id"]), str(row["path"]),
                   FrameRange(int(row["start"]), int(row["stop"])), FrameIndex.from_columns(row),
                   int(row["width"]), int(row["height"]), int(row["rotation"]), int(row["stride"]))

    @classmethod
    def from_batch(cls, batch: dict[str, Any]) -> list["VideoChunk"]:
        """The chunks of a Ray Data batch given as columns."""
        return [cls.from_row(row) for row in batch_rows(batch)]


@dataclass(frozen=True, slots=True)
class FrameScore:
    """Metrics of one frame. Motion is in source pixels per frame.

    ``thumb`` is a tiny grayscale signature of the frame (``actors.scoring.thumbnail``: 16x16
    block means, 256 bytes) that lets the reducer tell near-duplicate picks apart without
    pixels; empty when unknown.
    """

    frame_index: int
    pts: int
    time_s: float
    sharpness: float
    motion: float
    thumb: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class GlintMetrics:
    """Specular highlights: bright, unsaturated pixels."""

    share: float  # fraction of pixels that are specular highlights
    blob_count: int
    largest_blob_area_px: int
    largest_blob_share: float
    largest_blob_center: tuple[float, float] | None  # (x, y), normalised to 0..1
    largest_blob_bbox: tuple[int, int, int, int] | None  # x, y, w, h in pixels


@dataclass(frozen=True)
class GoldenFrame:
    """A picked frame with everything known about it and where it was stored."""

    rank: int
    frame_index: int
    time_s: float
    sharpness: float
    motion: float
    still: bool
    width: int
    height: int
    glint: GlintMetrics
    key: str
    uri: str
    hold: int = -1  # the steady hold it was picked from (``selection.holds``), -1 = none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Detections:
    """The objects found in one image, as columns (boxes in source pixels ``x1, y1, x2, y2``).

    Validated on construction: N x 4 boxes with ``x2 >= x1`` and ``y2 >= y1``, confidences in
    [0, 1], one class id and name per box. Converted from ultralytics at the boundary
    (``from_ultralytics``); the API, ``detect-video`` and the cropper read these columns.
    """

    xyxy: np.ndarray  # (N, 4) float64
    confidence: np.ndarray  # (N,) float64
    class_id: np.ndarray  # (N,) int64
    class_name: np.ndarray  # (N,) object (str)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        conf = np.asarray(self.confidence, dtype=np.float64).reshape(-1)
        ids = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        names = np.asarray(self.class_name, dtype=object).reshape(-1)
        if not len(xyxy) == len(conf) == len(ids) == len(names):
            raise ValueError(f"Detections columns differ in length: {len(xyxy)} boxes, "
                             f"{len(conf)} confidences, {len(ids)} class ids, {len(names)} names")
        bad = (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
        if bad.any():
            raise ValueError(f"Detections boxes must have x2 >= x1 and y2 >= y1, got "
                             f"{xyxy[bad][0].tolist()}")
        if ((conf < 0) | (conf > 1)).any():
            raise ValueError(f"Detections confidences must be in [0, 1], got "
                             f"{conf[(conf < 0) | (conf > 1)][0]}")
        for name, value in (("xyxy", xyxy), ("confidence", conf), ("class_id", ids),
                            ("class_name", names)):
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, object))

    @classmethod
    def from_ultralytics(cls, result: Any) -> "Detections":
        """Convert one ultralytics ``Results`` (boxes on the original image)."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return cls.empty()
        ids = boxes.cls.detach().cpu().numpy().astype(np.int64)
        names = result.names
        return cls(boxes.xyxy.detach().cpu().double().numpy(),
                   np.clip(boxes.conf.detach().cpu().double().numpy(), 0.0, 1.0), ids,
                   np.array([str(names.get(int(k), int(k))) for k in ids], dtype=object))

    @classmethod
    def concat(cls, parts: Sequence["Detections"]) -> "Detections":
        """All detections of ``parts`` in one record, in order."""
        if not parts:
            return cls.empty()
        return cls(np.concatenate([p.xyxy for p in parts]),
                   np.concatenate([p.confidence for p in parts]),
                   np.concatenate([p.class_id for p in parts]),
                   np.concatenate([p.class_name for p in parts]))

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, which: Any) -> "Detections":
        """The detections selected by a boolean mask, an index array or a slice."""
        if isinstance(which, (int, np.integer)):
            which = [int(which)]
        return Detections(self.xyxy[which], self.confidence[which], self.class_id[which],
                          self.class_name[which])

    def filter(self, conf: float | None = None, classes: Sequence[int] | None = None) -> "Detections":
        """The detections at or above ``conf`` and in ``classes`` (None: all)."""
        keep = np.ones(len(self), dtype=bool)
        if conf is not None:
            keep &= self.confidence >= conf
        if classes is not None:
            keep &= np.isin(self.class_id, np.asarray(list(classes), dtype=np.int64))
        return self[keep]

    def to_list(self) -> list[dict[str, Any]]:
        """The API's JSON: one ``{box, confidence, class_id, class_name}`` per detection."""
        return [{"box": [round(float(v), 2) for v in box], "confidence": round(float(c), 5),
                 "class_id": int(k), "class_name": str(n)}
                for box, c, k, n in zip(self.xyxy, self.confidence, self.class_id,
                                        self.class_name)]

    def columns(self) -> dict[str, np.ndarray]:
        """Arrow/Ray Data friendly columns: ``x1, y1, x2, y2, confidence, class_id, class_name``."""
        return {"x1": self.xyxy[:, 0], "y1": self.xyxy[:, 1], "x2": self.xyxy[:, 2],
                "y2": self.xyxy[:, 3], "confidence": self.confidence, "class_id": self.class_id,
                "class_name": self.class_name}
