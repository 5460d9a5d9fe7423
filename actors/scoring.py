"""Per-frame sharpness and motion.

* sharpness: variance of the Laplacian (CV_64F) of the grayscale (luma) frame resized so its
  longer side is ``analysis_long_side`` pixels (640 by default). A fixed analysis size makes
  scores comparable across source resolutions.
* motion: how fast the fastest-moving tenth of the picture moves between a frame and the frame
  delivered before it, in source pixels (``motion_of``): dense optical flow at the analysis
  size, averaged over 16x16-pixel blocks, where a block counts as moving only when its flow
  explains its change (the previous frame warped by the flow matches the frame much better
  than unwarped). What a person calls still stays still on real cameras: sensor noise on a
  wall or a dark background changes pixels but no warp explains it; exposure flicker is
  matched away (a grey-level gain) before the flow; a small subject crossing a tripod shot
  moves less than a tenth of the picture; a focus pull changes sharpness, not flow. An item
  moved by hand (a larger share of the picture) and hand-held shake move. The video's first
  delivered frame has no predecessor: it gets the motion of the second (the flow between them
  describes both), or 0.0 in a one-frame video.
* thumb: 16x16 block means of the analysis-size grayscale frame (256 bytes), the signature the
  reducer compares to avoid near-duplicate picks. Integer arithmetic: exact in every process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal

import cv2
import numpy as np

from actors.memory import keep_large_allocations_on_heap
from actors.records import FrameRange, FrameScore, VideoChunk
from actors.video_decode import iter_frames, luma
from actors.video_open import Source

FlowMethod = Literal["dis", "farneback"]
DisPreset = Literal["ultrafast", "fast", "medium"]

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def laplacian_variance(gray: np.ndarray) -> float:
    """Sharpness: variance of the 64-bit Laplacian of a grayscale image."""
    _, std = cv2.meanStdDev(cv2.Laplacian(gray, cv2.CV_64F))
    return float(std[0, 0]) ** 2


def flow_magnitude(flow: np.ndarray) -> float:
    """Mean length of the flow vectors of an (H, W, 2) flow field.

    Computed in float64 with plain IEEE operations (sqrt is exactly rounded): OpenCV's SIMD
    ``magnitude`` gives results that depend on buffer alignment, which would break the
    bit-identical distributed == sequential guarantee.
    """
    x = flow[..., 0].astype(np.float64)  # in place from here: the same operations, in the same
    y = flow[..., 1].astype(np.float64)  # order, as sqrt(x*x + y*y), without five temporaries
    x *= x
    y *= y
    x += y
    np.sqrt(x, out=x)
    return float(np.mean(x))


# The motion measure (``motion_of``): block side (analysis pixels), the share of the picture
# that may move while the frame still counts as still, and how much of a block's change its
# flow must explain for the block to count as moving.
MOTION_BLOCK = 16
CHECK_SCALE = 4  # the warp check's resolution: 1/4 of the analysis size, every 4th vector
MOVING_SHARE = 0.1
EXPLAINED_SHARE = 0.3
CHANGE_OVER_QUIET = 3.0


def brightness(gray: np.ndarray) -> int:
    """The sum of a grey frame's levels (exact: integer sums, whatever the summation order)."""
    return int(cv2.sumElems(gray)[0])


def gain_matched(gray: np.ndarray, reference: int) -> np.ndarray:
    """``gray`` with its grey levels scaled to the total ``brightness`` of the previous frame
    (exposure flicker), through an exact 256-entry lookup table."""
    total = brightness(gray)
    if total <= 0 or total == reference:
        return gray
    lut = np.clip(np.rint(np.arange(256) * (reference / total)), 0, 255).astype(np.uint8)
    return cv2.LUT(gray, lut)


def _block_sums(values: np.ndarray, block: int) -> np.ndarray:
    """Sums over ``block`` x ``block`` tiles of an (H, W[, C]) array whose sides are multiples
    of ``block``: row sums first, then column sums, each an element-wise addition in a fixed
    order (the same bits in every process)."""
    h, w = values.shape[:2]
    rows = values.reshape(h // block, block, w, *values.shape[2:]).sum(axis=1, dtype=np.float32)
    return rows.reshape(h // block, w // block, block, *values.shape[2:]).sum(axis=2)


@functools.lru_cache(maxsize=8)
def _pixel_grid(width: int, height: int) -> np.ndarray:
    """(height, width, 2) float32 pixel coordinates (x, y), read-only."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    grid = np.dstack([xs, ys])
    grid.setflags(write=False)
    return grid


def moving_block_speeds(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray,
                        block: int = MOTION_BLOCK) -> np.ndarray:
    """Per block of the picture (``block`` x ``block`` analysis pixels), the length of its mean
    flow vector where the block moves, else 0. Checked at ``1 / CHECK_SCALE`` of the size, on
    every ``CHECK_SCALE``-th flow vector: a block moves when its flow explains its change
    (warping ``cur`` back by the flow leaves at most ``1 - EXPLAINED_SHARE`` of its absolute
    difference to ``prev``, and removes more than the typical block's residual), or when it
    changed ``CHANGE_OVER_QUIET`` times more than the quietest tenth of the blocks. Noise moves
    pixels, but no warp explains it and it changes every block alike."""
    h, w = (prev.shape[0] // block) * block, (prev.shape[1] // block) * block
    small, cell = (w // CHECK_SCALE, h // CHECK_SCALE), block // CHECK_SCALE
    step = cv2.resize(flow[:h, :w], small, interpolation=cv2.INTER_NEAREST)  # a sample of it
    mean = _block_sums(step, cell) / np.float32(cell * cell)
    speeds = np.sqrt(mean[..., 0] * mean[..., 0] + mean[..., 1] * mean[..., 1])
    p = cv2.resize(prev[:h, :w], small, interpolation=cv2.INTER_AREA)
    c = cv2.resize(cur[:h, :w], small, interpolation=cv2.INTER_AREA)
    where = step * np.float32(1.0 / CHECK_SCALE)
    where += _pixel_grid(*small)
    warped = cv2.remap(c, where, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    before = _block_sums(cv2.absdiff(p, c), cell)
    after = _block_sums(cv2.absdiff(p, warped), cell)
    explained = (after <= np.float32(1.0 - EXPLAINED_SHARE) * before) \
        & (before - after > np.median(after))
    changed = before > np.float32(CHANGE_OVER_QUIET) * np.quantile(before, 0.1)
    return np.where(explained | changed, speeds, np.float32(0.0))


def motion_of(prev: np.ndarray, cur: np.ndarray, flow: np.ndarray,
              block: int = MOTION_BLOCK, moving_share: float = MOVING_SHARE) -> float:
    """Motion of ``cur`` against ``prev`` (grayscale, analysis size; ``flow`` from prev to
    cur) in analysis pixels: the speed that only ``moving_share`` of the picture's blocks
    exceed (``moving_block_speeds``). A picture too small for one block: the mean flow."""
    if min(prev.shape[:2]) < block:
        return flow_magnitude(flow)
    speeds = np.sort(moving_block_speeds(prev, cur, flow, block).ravel())
    return float(speeds[min(len(speeds) - 1, int((1.0 - moving_share) * len(speeds)))])


THUMB_SIDE = 16


def thumbnail(gray: np.ndarray, side: int = THUMB_SIDE) -> bytes:
    """Near-duplicate signature: ``side`` x ``side`` block means of a grayscale image, rounded
    to uint8, row-major bytes. Exact integer sums, so every process gets the same bytes."""
    if gray.shape[0] < side or gray.shape[1] < side:
        gray = cv2.resize(gray, (max(side, gray.shape[1]), max(side, gray.shape[0])),
                          interpolation=cv2.INTER_NEAREST)
    h, w = gray.shape
    ys = np.arange(side) * h // side
    xs = np.arange(side) * w // side
    # exact integer block sums (uint32 holds 255 x any block of a <= 4096 px analysis frame)
    sums = np.add.reduceat(np.add.reduceat(gray, ys, axis=0, dtype=np.uint32), xs, axis=1,
                           dtype=np.uint32).astype(np.int64)
    counts = np.outer(np.diff(np.append(ys, h)), np.diff(np.append(xs, w)))
    return ((2 * sums + counts) // (2 * counts)).astype(np.uint8).tobytes()


def analysis_size(width: int, height: int, long_side: int = 640) -> tuple[int, int]:
    """(w, h) with the longer side equal to ``long_side``, aspect kept, both even."""
    scale = long_side / max(width, height)
    w = max(2, int(round(width * scale / 2)) * 2)
    h = max(2, int(round(height * scale / 2)) * 2)
    return w, h


class FlowEstimator:
    """Dense optical flow between two grayscale frames: DIS (default) or Farneback."""

    def __init__(self, method: FlowMethod = "dis", dis_preset: DisPreset = "ultrafast") -> None:
        if method == "dis":
            if dis_preset not in _DIS_PRESETS:
                raise ValueError(f"dis_preset must be one of {sorted(_DIS_PRESETS)}, got {dis_preset!r}")
            self._dis = cv2.DISOpticalFlow.create(_DIS_PRESETS[dis_preset])
        elif method != "farneback":
            raise ValueError(f"flow method must be 'dis' or 'farneback', got {method!r}")
        self.method = method

    def __call__(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        if self.method == "dis":
            return self._dis.calc(prev, cur, None)  # type: ignore[call-overload]  # no flow: a new one
        return cv2.calcOpticalFlowFarneback(prev, cur, None, 0.5, 3, 15, 3, 5, 1.2, 0)


class FrameMeasure:
    """The metrics of consecutive delivered frames of one video: holds the previous frame at
    the analysis size (the flow's reference) and the last frame's sharpness, motion, thumb."""

    def __init__(self, flow: FlowEstimator, width: int, height: int, long_side: int) -> None:
        self.flow = flow
        self.size = analysis_size(width, height, long_side)
        self.to_source_px = max(width, height) / max(self.size)
        self.prev: np.ndarray | None = None
        self.prev_brightness = 0
        self.sharpness = self.motion = float("nan")
        self.thumb = b""

    def take(self, frame: Any, full: bool = True) -> None:
        """Measure the next delivered frame (``full=False``: its motion only). Motion is NaN
        for the first frame taken (no reference)."""
        gray = cv2.resize(luma(frame), self.size, interpolation=cv2.INTER_AREA)
        if self.prev is None:
            self.motion = float("nan")
        else:
            matched = gain_matched(gray, self.prev_brightness)
            self.motion = motion_of(self.prev, matched, self.flow(self.prev, matched)) \
                * self.to_source_px
        if full:
            self.sharpness = laplacian_variance(gray)
            self.thumb = thumbnail(gray)
        self.prev = gray
        self.prev_brightness = brightness(gray)


@dataclass(frozen=True)
class ScorerConfig:
    """Settings of the chunk scorer. ``cpus`` is what the unit asks of its worker."""

    analysis_long_side: int = 640
    flow: FlowMethod = "dis"
    dis_preset: DisPreset = "ultrafast"
    cpus: float = 1.0
    decode_threads: int = 1


class ChunkScorer:
    """Scores the frames of a chunk. Holds at most two analysis-size frames at a time."""

    def __init__(self, config: ScorerConfig = ScorerConfig()) -> None:
        self.config = config
        self._flow: FlowEstimator | None = None

    def setup(self) -> None:
        cv2.setNumThreads(max(1, int(self.config.cpus)))
        keep_large_allocations_on_heap()
        self._flow = FlowEstimator(self.config.flow, self.config.dis_preset)

    def score(self, task: VideoChunk, source: Source | None = None,
              keep: Callable[[int, Any], None] | None = None) -> list[FrameScore]:
        """Score the delivered frames of ``task.frames``, each against the frame delivered
        before it (decoded too, not scored); the video's first delivered frame: see module doc.
        Frames the decoder never delivers (gaps) get no score.

        ``source`` reads the video when it is not a local file at ``task.path`` (a URL or an
        object: ``actors.media_source``). ``keep(i, frame)`` is given every scored frame
        (``av.VideoFrame``), for a caller that wants some of them later."""
        if self._flow is None:
            self.setup()
        index = task.index
        scores: list[FrameScore] = []
        measure = self._measure(task)
        first_of_video = True
        for i, frame in iter_frames(source or task.path, task.frames, index, predecessor=True,
                                    threads=self.config.decode_threads):
            if i < task.frames.start:
                measure.take(frame, full=False)  # the predecessor: decoded for the flow only
                first_of_video = False
                continue
            measure.take(frame)
            scores.append(FrameScore(i, index.pts[i], index.time_s(i), measure.sharpness,
                                     measure.motion, measure.thumb))
            if keep is not None:
                keep(i, frame)
        if scores and first_of_video:
            first = scores[0]
            motion0 = scores[1].motion if len(scores) > 1 else self._motion_after(task, source)
            scores[0] = replace(first, motion=motion0)
        return scores

    def _measure(self, task: VideoChunk) -> "FrameMeasure":
        assert self._flow is not None
        return FrameMeasure(self._flow, task.width, task.height, self.config.analysis_long_side)

    def _motion_after(self, task: VideoChunk, source: Source | None) -> float:
        """Motion of the frame delivered after a chunk's only frame (the video's first):
        0.0 when there is none (a one-frame video)."""
        rest = FrameRange(task.frames.stop, len(task.index))
        if not len(rest):
            return 0.0
        measure = self._measure(task)
        for i, frame in iter_frames(source or task.path, rest, task.index, predecessor=True,
                                    threads=self.config.decode_threads):
            measure.take(frame, full=False)
            if i >= rest.start:
                return measure.motion
        return 0.0
