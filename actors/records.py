"""Typed records exchanged between units. They validate themselves on construction."""

from __future__ import annotations

import bisect
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from typing import Any, Iterator


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
    """Presentation-order pts of every frame of a stream, and which frames are keyframes.

    Built by demuxing (no decoding). Frame ``i`` is the i-th frame in presentation order;
    this is what makes exact seeks possible with B-frames and variable frame rate.
    """

    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction

    def __post_init__(self) -> None:
        if any(b <= a for a, b in zip(self.pts, self.pts[1:])):
            raise ValueError("FrameIndex.pts must be strictly increasing")
        if not self.keyframes or self.keyframes[0] != 0:
            object.__setattr__(self, "keyframes", (0, *[k for k in self.keyframes if k != 0]))

    def __len__(self) -> int:
        return len(self.pts)

    def time_s(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``."""
        return float((self.pts[index] - self.pts[0]) * self.time_base)

    def keyframe_at_or_before(self, index: int) -> int:
        return self.keyframes[bisect.bisect_right(self.keyframes, index) - 1]

    def position_of(self, pts: int) -> int | None:
        i = bisect.bisect_left(self.pts, pts)
        return i if i < len(self.pts) and self.pts[i] == pts else None

    def to_columns(self) -> dict[str, Any]:
        """Plain, Arrow-friendly fields (for Ray Data rows)."""
        return {"pts": list(self.pts), "keyframes": list(self.keyframes),
                "tb_num": self.time_base.numerator, "tb_den": self.time_base.denominator}

    @classmethod
    def from_columns(cls, row: dict[str, Any]) -> "FrameIndex":
        return cls(tuple(int(p) for p in row["pts"]), tuple(int(k) for k in row["keyframes"]),
                   Fraction(int(row["tb_num"]), int(row["tb_den"])))


def batch_rows(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a Ray Data batch given as columns."""
    n = len(next(iter(batch.values()))) if batch else 0
    return [{k: v[i] for k, v in batch.items()} for i in range(n)]


@dataclass(frozen=True)
class VideoInfo:
    """What ``probe`` learns about a video. ``index`` is kept out of ``summary()``."""

    path: str
    frame_count: int
    avg_fps: float
    variable_fps: bool
    width: int
    height: int
    duration_s: float
    codec: str
    rotation: int
    index: FrameIndex = field(repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("index")
        return data


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


@dataclass(frozen=True, slots=True)
class Detection:
    """One detected object: box in source pixels (x1, y1, x2, y2), confidence, class."""

    x1: float
    y1: float
    x2: float
    y2: float
    confidence: float
    class_id: int
    class_name: str

    def __post_init__(self) -> None:
        if not (self.x2 >= self.x1 and self.y2 >= self.y1):
            raise ValueError(f"Detection box must have x2 >= x1 and y2 >= y1, got "
                             f"{(self.x1, self.y1, self.x2, self.y2)}")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"Detection confidence must be in [0, 1], got {self.confidence}")

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, Any]:
        return {"box": [round(v, 2) for v in self.xyxy], "confidence": round(self.confidence, 5),
                "class_id": self.class_id, "class_name": self.class_name}

    @classmethod
    def from_ultralytics(cls, result: Any) -> list["Detection"]:
        """Convert one ultralytics ``Results`` (boxes on the original image) at the boundary."""
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return []
        xyxy = boxes.xyxy.detach().cpu().float().numpy()
        conf = boxes.conf.detach().cpu().float().numpy()
        cls_ = boxes.cls.detach().cpu().numpy().astype(int)
        names = result.names
        return [cls(float(b[0]), float(b[1]), float(b[2]), float(b[3]),
                    min(1.0, max(0.0, float(c))), int(k), str(names.get(int(k), int(k))))
                for b, c, k in zip(xyxy, conf, cls_)]
