"""The frame sizes and counts a video may have: ``DimensionLimits`` (the header's size, checked
by ``probe``), ``FrameBudget`` (how many frames one analysis may decode) and
``check_frame_size`` (each decoded frame against the header's size)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import av

from actors.errors import AbsurdDimensionsError


@dataclass(frozen=True)
class DimensionLimits:
    """Frame sizes we accept: anything else is a broken or hostile file."""

    min_side: int = 16
    max_side: int = 16384
    max_pixels: int = 8192 * 8192

    def check(self, path: str, width: int, height: int) -> None:
        if (min(width, height) < self.min_side or max(width, height) > self.max_side
                or width * height > self.max_pixels):
            raise AbsurdDimensionsError(
                path, width, height,
                f"each side {self.min_side}..{self.max_side} px, at most {self.max_pixels} pixels")


class FrameBudget(Protocol):
    """How many frames of a size one analysis may decode (``jobs.golden.limits.WorkLimits``):
    ``probe`` refuses a video over it from the container's own count when it gives one, and
    stops counting packets once past it, instead of indexing the whole video first."""

    def most_frames(self, width: int, height: int) -> int:
        """The most frames of ``width`` x ``height`` allowed (0: no bound; 0 x 0: a size not
        known yet, each frame priced at its per-frame work only)."""

    def check(self, name: str, width: int, height: int, frame_count: int) -> None:
        """Raise the typed error that refuses ``frame_count`` frames of that size."""


def check_frame_size(path: str, frame: av.VideoFrame, size: tuple[int, int]) -> None:
    """A decoded frame must fit the size the probe priced (the header's): a frame larger than
    that (an MJPEG AVI whose header says 320x240 but whose frames are 12000x12000) fails the
    video with ``AbsurdDimensionsError``, before it is converted or kept."""
    width, height = size
    if frame.width > width or frame.height > height:
        raise AbsurdDimensionsError(
            path, frame.width, frame.height,
            f"the video's header gives {width}x{height}; a frame may not be larger")


def sized(frames: list[av.VideoFrame], path: str, size: tuple[int, int]) -> list[av.VideoFrame]:
    """``frames``, each checked with ``check_frame_size``."""
    for frame in frames:
        check_frame_size(path, frame, size)
    return frames
