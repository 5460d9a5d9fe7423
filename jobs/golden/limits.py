"""How much work one video may be: checked while it is probed, before any frame is scored (the
service's per-analysis limits). Frames are priced with the planner's cost model: a frame costs
its pixels plus a fixed per-frame overhead (analysis at 640 px, bookkeeping) expressed in
pixels, so 100,000 frames of 16x16 count as the work they are, not as 26 megapixels."""

from __future__ import annotations

from dataclasses import dataclass

from actors.errors import FramesiftError
from jobs.golden.planner import CostModel

_COST = CostModel()
# One frame's fixed work, in pixels of decoding that cost as much (about 1.44 Mpx).
FRAME_OVERHEAD_PIXELS = int(_COST.analysis_s_per_frame / _COST.decode_s_per_mpx * 1e6)


class VideoTooLargeError(FramesiftError):
    """The video is more work than one analysis may take (frames, pixels x frames)."""

    code = "analysis_too_large"


@dataclass(frozen=True)
class WorkLimits:
    """Most frames, and most pixel-frames of work, one video may have (0: no limit). A frame's
    work is its width x height plus ``FRAME_OVERHEAD_PIXELS``. The setting names go into the
    error so the operator knows what to raise. An ``actors.video_limits.FrameBudget``: ``probe``
    refuses from the container's frame count, or as soon as it has counted too many."""

    max_frames: int = 0
    max_pixel_frames: int = 0
    frames_setting: str = "FRAMESIFT_MAX_ANALYSIS_FRAMES"
    pixel_frames_setting: str = "FRAMESIFT_MAX_ANALYSIS_PIXEL_FRAMES"

    @staticmethod
    def frame_work(width: int, height: int) -> int:
        """Pixel-frames one frame of that size costs (its pixels plus the per-frame work)."""
        return width * height + FRAME_OVERHEAD_PIXELS

    def most_frames(self, width: int, height: int) -> int:
        """The most frames of ``width`` x ``height`` allowed (0: no bound)."""
        bounds = [b for b in (self.max_frames,
                              self.max_pixel_frames // self.frame_work(width, height)
                              if self.max_pixel_frames else 0) if b]
        return min(bounds) if bounds else 0

    def check(self, name: str, width: int, height: int, frame_count: int) -> None:
        """Raise ``VideoTooLargeError`` when ``frame_count`` frames of that size are over the
        limits (0 x 0: the size is not known yet, each frame costs its overhead only)."""
        work = self.frame_work(width, height) * frame_count
        if self.max_frames and frame_count > self.max_frames:
            raise VideoTooLargeError(
                f"{name} has {frame_count} frames; one analysis takes at most {self.max_frames} "
                f"({self.frames_setting}). Send a shorter video or a cut of it.")
        if self.max_pixel_frames and work > self.max_pixel_frames:
            size = f"{width}x{height} with " if width and height else ""
            raise VideoTooLargeError(
                f"{name} is {size}{frame_count} frames ({work:.3g} pixel-frames of work: each "
                f"frame's pixels plus {FRAME_OVERHEAD_PIXELS:.3g} for its per-frame analysis); "
                f"one analysis takes at most {self.max_pixel_frames:.3g} "
                f"({self.pixel_frames_setting}). Send it at a lower resolution or shorter.")
