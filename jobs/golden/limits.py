"""How much work one video may be: checked on the worker right after the probe, before any
frame is decoded (the service's per-analysis limits)."""

from __future__ import annotations

from dataclasses import dataclass

from actors.errors import FramesiftError


class VideoTooLargeError(FramesiftError):
    """The video is more work than one analysis may take (frames, pixels x frames)."""

    code = "analysis_too_large"


@dataclass(frozen=True)
class WorkLimits:
    """Most frames, and most pixels x frames, one video may have (0: no limit). The setting
    names go into the error so the operator knows what to raise."""

    max_frames: int = 0
    max_pixel_frames: int = 0
    frames_setting: str = "FRAMESIFT_MAX_ANALYSIS_FRAMES"
    pixel_frames_setting: str = "FRAMESIFT_MAX_ANALYSIS_PIXEL_FRAMES"

    def check(self, name: str, width: int, height: int, frame_count: int) -> None:
        pixel_frames = width * height * frame_count
        if self.max_frames and frame_count > self.max_frames:
            raise VideoTooLargeError(
                f"{name} has {frame_count} frames; one analysis takes at most {self.max_frames} "
                f"({self.frames_setting}). Send a shorter video or a cut of it.")
        if self.max_pixel_frames and pixel_frames > self.max_pixel_frames:
            raise VideoTooLargeError(
                f"{name} is {width}x{height} with {frame_count} frames ({pixel_frames:.3g} "
                f"pixels to decode); one analysis takes at most {self.max_pixel_frames:.3g} "
                f"({self.pixel_frames_setting}). Send it at a lower resolution or shorter.")
