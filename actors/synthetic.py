"""Synthetic scan videos with known truth.

Two scenarios, both filmed by a virtual camera over a photo-like texture:

* ``make_sample_video`` (scenario ``windows``): a textured "card" with a specular highlight.
  The video is a sequence of windows: ``sharp_still`` (camera still, in focus), ``blurred``
  (still, out of focus), ``shaking`` (in focus, camera jitters several pixels every frame) and
  ``pan`` (camera slides). Between windows the camera re-frames, so the first frame of every
  window moves.
* ``make_hold_video`` (scenario ``holds``): a hand-held scan. The camera moves between steady
  *holds* on visually distinct views (other parts of a large texture, other zoom and
  rotation); some holds are approached with hand-held shake whose speed dips below 1 px for one
  or two frames; some holds have a focus pull (blur ramping in or out) and ``soft`` holds never
  reach focus. The truth says, per frame, its kind, hold and whether the camera is still, and
  per hold its frames, view and sharpness class.
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


# --- scenario "holds": hand-held scan with steady holds on distinct views ---------------------

FOCUS_KINDS = ("sharp", "pull_in", "pull_out", "soft")


def _noise_layer(rng: np.random.Generator, shape: tuple[int, int], cell: float, channels: int) -> np.ndarray:
    h, w = shape
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw, channels)).astype(np.float32)
    layer = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return layer.reshape(h, w, channels)


def _photo_texture(rng: np.random.Generator, side: int, frame_width: int) -> np.ndarray:
    """A large photo-like BGR texture: multi-scale coloured noise (light and shade, surfaces,
    grain), hard-edged objects, print strokes, text and a few specular glints."""
    shape = (side, side)
    img = np.full((side, side, 3), 118.0, np.float32)
    for rel, lum, chroma in ((0.9, 38, 22), (0.3, 28, 16), (0.09, 20, 9), (0.025, 12, 4)):
        cell = max(2.0, rel * frame_width)
        img += lum * _noise_layer(rng, shape, cell, 1) + chroma * _noise_layer(rng, shape, cell, 3)
    img += 7 * rng.standard_normal((side, side, 1)).astype(np.float32)  # fine grain (sharpness)
    img = np.clip(img, 0, 255).astype(np.uint8)
    unit = max(1, frame_width // 160)
    for _ in range(int(side * side / frame_width ** 2 * 6)):  # objects with hard edges
        colour = tuple(int(c) for c in rng.integers(20, 235, 3))
        x, y = int(rng.integers(0, side)), int(rng.integers(0, side))
        a, b = (int(v) for v in rng.integers(frame_width // 40, frame_width // 7, 2))
        if rng.random() < 0.5:
            cv2.rectangle(img, (x, y), (x + a, y + b), colour, -1 if rng.random() < 0.6 else 2 * unit)
        else:
            cv2.ellipse(img, (x, y), (a, b), float(rng.uniform(0, 180)), 0, 360, colour,
                        -1 if rng.random() < 0.6 else 2 * unit, cv2.LINE_AA)
    for _ in range(int(side * side / frame_width ** 2 * 10)):  # print-like strokes
        p1 = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        p2 = (p1[0] + int(rng.integers(-frame_width // 4, frame_width // 4)),
              p1[1] + int(rng.integers(-frame_width // 4, frame_width // 4)))
        cv2.line(img, p1, p2, (15, 15, 15), unit, cv2.LINE_AA)
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"
    for _ in range(int(side * side / frame_width ** 2 * 8)):  # label text
        text = "".join(str(rng.choice(list(letters))) for _ in range(int(rng.integers(3, 9))))
        org = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        shade = int(rng.integers(0, 60)) if rng.random() < 0.7 else int(rng.integers(200, 255))
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, frame_width / 900 * rng.uniform(0.6, 1.6),
                    (shade, shade, shade), max(1, unit), cv2.LINE_AA)
    for _ in range(int(side * side / frame_width ** 2 * 1.5)):  # specular glints
        c = (int(rng.integers(0, side)), int(rng.integers(0, side)))
        cv2.ellipse(img, c, (int(rng.integers(3, 4 + frame_width // 40)),
                             int(rng.integers(2, 3 + frame_width // 70))),
                    float(rng.uniform(0, 180)), 0, 360, (252, 252, 252), -1, cv2.LINE_AA)
    return img


def _pick_views(rng: np.random.Generator, n: int, side: int, width: int, height: int
                ) -> list[tuple[tuple[float, float], float, float]]:
    """``n`` views (centre, zoom, angle) far enough apart to look different."""
    views: list[tuple[tuple[float, float], float, float]] = []
    half_diag = 0.5 * float(np.hypot(width, height))
    min_dist = 0.55 * width
    tries = 0
    while len(views) < n:
        zoom = float(rng.uniform(0.85, 1.25))
        reach = half_diag / zoom + 2
        lo, hi = reach, side - reach
        centre = (float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi)))
        angle = float(rng.uniform(-25, 25))
        tries += 1
        if tries > 2000:  # crowded: accept closer views (they still differ in zoom and angle)
            min_dist *= 0.8
            tries = 0
        if all(np.hypot(centre[0] - c[0], centre[1] - c[1]) >= min_dist for c, _, _ in views):
            views.append((centre, zoom, angle))
    return views


def _camera(centre: tuple[float, float], zoom: float, angle_deg: float, width: int, height: int,
            dx: float, dy: float) -> np.ndarray:
    """Affine map texture -> frame: the view centre lands at the frame centre + (dx, dy)."""
    m = cv2.getRotationMatrix2D(centre, angle_deg, zoom)
    m[0, 2] += width / 2 + dx - centre[0]
    m[1, 2] += height / 2 + dy - centre[1]
    return m


def _motion_blur(img: np.ndarray, vx: float, vy: float, exposure: float = 0.5) -> np.ndarray:
    length = float(np.hypot(vx, vy)) * exposure
    if length < 1.0:
        return img
    n = int(min(41, np.ceil(length))) | 1
    kernel = np.zeros((n, n), np.float32)
    c = n // 2
    ux, uy = vx / np.hypot(vx, vy), vy / np.hypot(vx, vy)
    for t in np.linspace(-length / 2, length / 2, 4 * n):
        kernel[int(round(c + t * uy)) % n, int(round(c + t * ux)) % n] = 1.0
    return cv2.filter2D(img, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REFLECT)


@dataclass(frozen=True)
class _Pose:
    """Camera of one frame: at ``view`` offset by (dx, dy) frame px, or, during a move, part
    way (``mix``) from ``view`` to ``to_view``."""

    view: int
    dx: float = 0.0
    dy: float = 0.0
    blur: float = 0.0  # focus blur sigma (px)
    vx: float = 0.0  # shake speed in frame px per frame (for motion blur)
    vy: float = 0.0
    to_view: int = -1
    mix: float = 0.0


def make_hold_video(path: str | Path, *, holds: int = 5, soft_holds: int = 0,
                    size: tuple[int, int] = (480, 270), fps: int = 30, seed: int = 0,
                    hold_s: tuple[float, float] = (1.0, 1.8), shake_share: float = 0.6,
                    focus_pull_share: float = 0.4, bframes: int = 2, gop: int = 60
                    ) -> SampleTruth:
    """Write an H.264 MP4 of a hand-held scan with ``holds`` sharp holds (plus ``soft_holds``
    that never reach focus) on distinct views, and ``<path>.truth.json``; return the truth.

    The duration follows from the layout: per hold a move (0.3-0.45 s) from the previous view,
    for about ``shake_share`` of the holds a hand-held shake (0.5-0.9 s, 1.8-3.5 px per frame,
    more above 480 px wide, dipping below 0.5 px for one or two frames), then the hold
    (``hold_s`` seconds);
    a final move ends the video. About ``focus_pull_share`` of the sharp holds have a focus pull
    (blur ramps out -> in at the start, or in -> out at the end, over 0.25-0.45 s; every ramp
    frame is visibly blurred, 0.5 px or more, so ``blur == 0`` in the truth means in focus).
    """
    width, height = size
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"size must be even and at least 64x64, got {width}x{height}")
    if holds < 1 or soft_holds < 0 or fps <= 0:
        raise ValueError("holds must be >= 1, soft_holds >= 0 and fps positive")
    if not 0 < hold_s[0] <= hold_s[1]:
        raise ValueError(f"hold_s must be (low, high) seconds with 0 < low <= high, got {hold_s}")
    rng = np.random.default_rng(seed)
    n = holds + soft_holds
    scale = width / 480  # blur scales with the frame
    shake_scale = max(1.0, scale)  # shake speeds in source px: never below the 1 px bar
    side = int(width * 3.4) // 2 * 2
    texture = _photo_texture(rng, side, width)
    views = _pick_views(rng, n, side, width, height)
    focus_of = ["soft"] * soft_holds + [
        str(rng.choice(["pull_in", "pull_out"])) if rng.random() < focus_pull_share else "sharp"
        for _ in range(holds)]
    rng.shuffle(focus_of)
    shaken = set(int(i) for i in rng.choice(n, size=max(1, int(round(n * shake_share))), replace=False))

    poses: list[_Pose] = []
    frames: list[FrameTruth] = []
    windows: list[Window] = []
    hold_truth: list[HoldTruth] = []

    def seg(kind: str, length: int) -> None:
        windows.append(Window(kind, len(poses) - length, len(poses)))

    def move(src: int, dst: int, seconds: float) -> None:
        """Smooth, fast re-framing from view ``src`` to ``dst`` (rendered by interpolation)."""
        count = max(4, int(round(seconds * fps)))
        for j in range(1, count + 1):
            a = j / (count + 1)
            a = a * a * (3 - 2 * a)
            poses.append(_Pose(src, to_view=dst, mix=a))
            frames.append(FrameTruth("move", -1, False, 0.0))
        seg("move", count)

    prev_view = -1
    for h in range(n):
        move(prev_view if prev_view >= 0 else (h + 1) % n if n > 1 else h, h,
             float(rng.uniform(0.3, 0.45)))
        dx = dy = 0.0
        if h in shaken:
            count = max(8, int(round(rng.uniform(0.5, 0.9) * fps)))
            dips: set[int] = set()
            for _ in range(int(rng.integers(1, 3))):
                at = int(rng.integers(3, count - 3))
                dips.update(range(at, at + int(rng.integers(1, 3))))
            heading = float(rng.uniform(0, 2 * np.pi))
            for j in range(count):
                if np.hypot(dx, dy) > 6 * shake_scale:
                    heading = float(np.arctan2(-dy, -dx) + rng.normal(0, 0.4))
                else:
                    heading += float(rng.normal(0, 0.7))
                speed = rng.uniform(0.1, 0.45) if j in dips else rng.uniform(1.8, 3.5) * shake_scale
                vx, vy = speed * np.cos(heading), speed * np.sin(heading)
                dx, dy = dx + vx, dy + vy
                poses.append(_Pose(h, dx, dy, 0.0, vx, vy))
                frames.append(FrameTruth("shake", -1, False, 0.0, dip=j in dips))
            seg("shake", count)
            step = rng.uniform(1.8, 3.0) * shake_scale  # the hand settles: a last move into the hold
            dx, dy = dx + step * np.cos(heading), dy + step * np.sin(heading)
        count = max(4, int(round(rng.uniform(*hold_s) * fps)))
        focus = focus_of[h]
        ramp = max(3, int(round(rng.uniform(0.25, 0.45) * fps)))
        top_blur = float(rng.uniform(2.5, 4.0)) * scale
        soft_blur = float(rng.uniform(2.0, 3.0)) * scale
        start = len(poses)
        for j in range(count):
            if focus == "soft":
                blur = soft_blur
            elif focus == "pull_in" and j < ramp:  # from top_blur down to a visible 0.5 px
                blur = 0.5 + (top_blur - 0.5) * (ramp - 1 - j) / (ramp - 1)
            elif focus == "pull_out" and j >= count - ramp:  # from 0.5 px up to top_blur
                blur = 0.5 + (top_blur - 0.5) * (j - (count - ramp)) / (ramp - 1)
            else:
                blur = 0.0
            poses.append(_Pose(h, dx, dy, blur))
            frames.append(FrameTruth("hold", h, j > 0, round(blur, 4)))
        seg("hold", count)
        centre, zoom, angle = views[h]
        hold_truth.append(HoldTruth(h, start, start + count, h, centre, zoom, angle, focus,
                                    "soft" if focus == "soft" else "sharp"))
        prev_view = h
    move(prev_view, (prev_view + 1) % n if n > 1 else prev_view, 0.3)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    noise_rng = np.random.default_rng(seed + 7919)  # sensor grain: a bank of frames, rolled
    grain_bank = [np.round(noise_rng.normal(0, 1.5, (height, width, 3))).astype(np.int16)
                  for _ in range(4)]
    tb = Fraction(1, fps)
    with av.open(str(path), mode="w") as out:
        stream = h264_stream(out, width, height, fps, tb, gop, bframes)
        prev_m: np.ndarray | None = None
        for i, pose in enumerate(poses):
            if pose.to_view >= 0:  # a move: part way between two views
                (c0, z0, a0), (c1, z1, a1), t = views[pose.view], views[pose.to_view], pose.mix
                centre = (c0[0] + t * (c1[0] - c0[0]), c0[1] + t * (c1[1] - c0[1]))
                m = _camera(centre, z0 + t * (z1 - z0), a0 + t * (a1 - a0), width, height, 0, 0)
                blur = 0.0
            else:
                centre, zoom, angle = views[pose.view]
                m = _camera(centre, zoom, angle, width, height, pose.dx, pose.dy)
                blur = pose.blur
            img = cv2.warpAffine(texture, m, (width, height), flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_REFLECT)
            vx, vy = pose.vx, pose.vy
            if pose.to_view >= 0 and prev_m is not None:  # speed of the frame centre
                cx, cy = width / 2, height / 2
                inv = cv2.invertAffineTransform(m)
                src = inv @ np.array([cx, cy, 1.0])
                before = prev_m @ np.array([src[0], src[1], 1.0])
                vx, vy = float(cx - before[0]), float(cy - before[1])
            img = _motion_blur(img, vx, vy)
            if blur > 0:
                img = cv2.GaussianBlur(img, (0, 0), blur)
            grain = np.roll(grain_bank[i % len(grain_bank)],
                            (int(noise_rng.integers(height)), int(noise_rng.integers(width))), (0, 1))
            img = np.clip(img.astype(np.int16) + grain, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="bgr24")
            frame.pts = i
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
            prev_m = m
        for packet in stream.encode(None):
            out.mux(packet)
    truth = SampleTruth(width=width, height=height, frame_count=len(poses), fps=float(fps),
                        variable_fps=False, bframes=bframes, gop=gop, seed=seed,
                        windows=windows, scenario="holds", holds=hold_truth, frames=frames)
    truth_path(path).write_text(truth.to_json())
    return truth
