"""Synthetic scan videos with known truth.

Two scenarios, both filmed by a virtual camera over a photo-like texture:

* ``make_sample_video`` (scenario ``windows``): a textured "card" with a specular highlight.
  The video is a sequence of windows: ``sharp_still`` (camera still, in focus), ``blurred``
  (still, out of focus), ``shaking`` (in focus, camera jitters several pixels every frame) and
  ``pan`` (camera slides). Between windows the camera re-frames, so the first frame of every
  window moves.
* ``make_hold_video`` (scenario ``holds``, ``actors.synthetic_holds``): a hand-held scan of
  steady holds on distinct views. The truth says, per frame, its kind, hold and whether the
  camera is still, and per hold its frames, view and sharpness class.

The truth records (``SampleTruth`` and its parts) and the H.264 writer are here, shared by
every scenario.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

WINDOW_KINDS = ("sharp_still", "blurred", "shaking", "pan")


@dataclass(frozen=True)
class Window:
    kind: str
    start: int  # first frame index
    stop: int  # one past the last frame index


@dataclass(frozen=True)
class HoldTruth:
    """One steady hold of a ``holds`` video: frames ``[start, stop)``, all at one camera pose.

    ``focus``: ``sharp`` (in focus throughout), ``pull_in`` (starts blurred, focus arrives),
    ``pull_out`` (focus leaves before the end) or ``soft`` (never in focus).
    ``sharpness_class``: ``sharp`` when the hold reaches focus, else ``soft``.
    """

    id: int
    start: int
    stop: int
    view: int  # index of the view (several holds may share one only if asked)
    center: tuple[float, float]  # view centre on the texture, in texture pixels
    zoom: float
    angle_deg: float
    focus: str
    sharpness_class: str

    @property
    def frames(self) -> range:
        return range(self.start, self.stop)


@dataclass(frozen=True)
class FrameTruth:
    """Per-frame truth of a ``holds`` video. ``still``: the camera did not move since the
    previous frame (every hold frame but the hold's first). ``blur``: focus blur sigma (px)."""

    kind: str  # move | shake | hold
    hold: int  # hold id, -1 outside holds
    still: bool
    blur: float
    dip: bool = False  # a shake frame whose motion dips below 1 px


@dataclass
class SampleTruth:
    width: int
    height: int
    frame_count: int
    fps: float
    variable_fps: bool
    bframes: int
    gop: int
    seed: int
    windows: list[Window] = field(default_factory=list)
    scenario: str = "windows"  # "windows" (make_sample_video) or "holds" (make_hold_video)
    holds: list[HoldTruth] = field(default_factory=list)
    frames: list[FrameTruth] = field(default_factory=list)

    def sharp_still_frames(self) -> set[int]:
        """Frames that are sharp and still. The camera re-frames between windows, so the first
        frame of every window but the first moves against its predecessor: excluded. In a
        ``holds`` video: still hold frames without focus blur."""
        if self.scenario == "holds":
            return {i for i, f in enumerate(self.frames) if f.still and f.blur == 0.0}
        return {i for w in self.windows if w.kind == "sharp_still"
                for i in range(w.start + (1 if w.start else 0), w.stop)}

    def hold_of(self, frame_index: int) -> int:
        """Id of the true hold holding ``frame_index``, or -1."""
        return self.frames[frame_index].hold if self.scenario == "holds" else -1

    def frames_of(self, kind: str) -> set[int]:
        return {i for w in self.windows if w.kind == kind for i in range(w.start, w.stop)}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "SampleTruth":
        data = json.loads(text)
        data["windows"] = [Window(**w) for w in data["windows"]]
        data["holds"] = [HoldTruth(**{**h, "center": tuple(h["center"])})
                         for h in data.get("holds", [])]
        data["frames"] = [FrameTruth(**f) for f in data.get("frames", [])]
        return cls(**data)


def truth_path(video_path: str | Path) -> Path:
    return Path(str(video_path) + ".truth.json")


def _plan_windows(rng: np.random.Generator, frame_count: int, fps: float) -> list[Window]:
    """Random window sequence that always holds several sharp+still windows."""
    windows: list[Window] = []
    pos = 0
    order = ["sharp_still", "shaking", "sharp_still", "blurred", "sharp_still", "pan"]
    k = 0
    while pos < frame_count:
        kind = order[k % len(order)] if k < len(order) else str(rng.choice(WINDOW_KINDS))
        seconds = rng.uniform(0.9, 1.6) if kind == "sharp_still" else rng.uniform(0.5, 1.2)
        length = max(4, int(round(seconds * fps)))
        stop = min(frame_count, pos + length)
        if frame_count - stop < 4:  # do not leave a sliver at the end
            stop = frame_count
        windows.append(Window(kind, pos, stop))
        pos = stop
        k += 1
    return windows


def _world(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, int]:
    """A textured card with a glint on a smooth background, larger than the frame."""
    margin = max(32, width // 8)
    wh, ww = height + 2 * margin, width + 2 * margin
    yy, xx = np.mgrid[0:wh, 0:ww].astype(np.float32)
    background = np.stack([60 + 40 * xx / ww, 70 + 30 * yy / wh, 90 + 20 * (xx + yy) / (ww + wh)], -1)
    world = background.astype(np.uint8)
    ch, cw = int(height * 0.7), int(width * 0.55)
    y0, x0 = (wh - ch) // 2, (ww - cw) // 2
    cell = max(4, width // 160)
    coarse = rng.integers(30, 220, size=(ch // cell + 1, cw // cell + 1, 3), dtype=np.uint8)
    card = cv2.resize(coarse, (cw, ch), interpolation=cv2.INTER_NEAREST)
    fine = rng.integers(-40, 40, size=(ch, cw, 1), dtype=np.int16)
    card = np.clip(card.astype(np.int16) + fine, 0, 255).astype(np.uint8)
    for _ in range(12):  # print-like dark strokes
        p1 = (int(rng.integers(0, cw)), int(rng.integers(0, ch)))
        p2 = (int(rng.integers(0, cw)), int(rng.integers(0, ch)))
        cv2.line(card, p1, p2, (15, 15, 15), max(1, width // 400), cv2.LINE_AA)
    cv2.rectangle(card, (0, 0), (cw - 1, ch - 1), (240, 240, 240), max(2, width // 200))
    gx, gy = int(cw * rng.uniform(0.25, 0.75)), int(ch * rng.uniform(0.25, 0.75))
    cv2.ellipse(card, (gx, gy), (max(4, cw // 14), max(3, ch // 22)), float(rng.uniform(0, 180)),
                0, 360, (252, 252, 252), -1, cv2.LINE_AA)
    world[y0:y0 + ch, x0:x0 + cw] = card
    return world, margin


def _render(world: np.ndarray, margin: int, width: int, height: int, dx: float, dy: float,
            blur_sigma: float) -> np.ndarray:
    m = np.array([[1, 0, -(margin + dx)], [0, 1, -(margin + dy)]], np.float32)
    frame = cv2.warpAffine(world, m, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    if blur_sigma > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), blur_sigma)
    return frame


def h264_stream(out: "av.container.OutputContainer", width: int, height: int, fps: int,
                time_base: Fraction, gop: int, bframes: int, crf: int = 18) -> "av.VideoStream":
    """The libx264 stream every generator writes (yuv420p, ``veryfast``)."""
    stream = out.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = time_base
    stream.codec_context.time_base = time_base
    stream.codec_context.gop_size = gop
    stream.options = {"bf": str(bframes), "crf": str(crf), "preset": "veryfast"}
    return stream


def make_sample_video(path: str | Path, *, seconds: float = 10.0, size: tuple[int, int] = (1280, 720),
                      fps: int = 30, seed: int = 0, bframes: int = 2, gop: int = 60,
                      variable_fps: bool = False) -> SampleTruth:
    """Write an H.264 MP4 scan video and ``<path>.truth.json``; return the truth."""
    width, height = size
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"size must be even and at least 64x64, got {width}x{height}")
    if seconds <= 0 or fps <= 0:
        raise ValueError("seconds and fps must be positive")
    rng = np.random.default_rng(seed)
    frame_count = max(8, int(round(seconds * fps)))
    windows = _plan_windows(rng, frame_count, fps)
    world, margin = _world(rng, width, height)
    amp = max(3.0, width / 200)  # shake amplitude in pixels: well above the 1 px stillness bar
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, 1000) if variable_fps else Fraction(1, fps)
    with av.open(str(path), mode="w") as out:
        stream = h264_stream(out, width, height, fps, tb, gop, bframes)
        pts = 0
        base = (0.0, 0.0)
        for w_i, window in enumerate(windows):
            jump = rng.uniform(-1, 1, size=2) * margin * 0.5
            base = (float(np.clip(jump[0], -margin * 0.8, margin * 0.8)),
                    float(np.clip(jump[1], -margin * 0.8, margin * 0.8)))
            if w_i and abs(base[0]) + abs(base[1]) < 12:
                base = (base[0] + 12, base[1])
            sigma = float(rng.uniform(3.0, 5.0)) * width / 1280 + 1.5 if window.kind == "blurred" else 0.0
            for j in range(window.start, window.stop):
                dx, dy = base
                t = j - window.start
                if window.kind == "shaking":
                    sign = 1 if t % 2 else -1
                    dx += sign * amp + rng.uniform(-1, 1)
                    dy += -sign * amp * 0.6 + rng.uniform(-1, 1)
                elif window.kind == "pan":
                    dx += t * amp
                img = _render(world, margin, width, height, dx, dy, sigma)
                frame = av.VideoFrame.from_ndarray(img, format="bgr24")
                frame.pts = pts
                frame.time_base = tb
                pts += int(rng.integers(20, 50)) if variable_fps else 1
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    truth = SampleTruth(width=width, height=height, frame_count=frame_count, fps=float(fps),
                        variable_fps=variable_fps, bframes=bframes, gop=gop, seed=seed,
                        windows=windows)
    truth_path(path).write_text(truth.to_json())
    return truth
