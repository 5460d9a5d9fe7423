"""Synthetic scenario ``holds`` (``make_hold_video``): a hand-held scan with known truth.

The camera moves between steady *holds* on visually distinct views (other parts of a large
photo-like texture, other zoom and rotation); some holds are approached with hand-held shake
whose speed dips below 1 px for one or two frames; some holds have a focus pull (blur ramping
in or out) and ``soft`` holds never reach focus. The texture, view and blur helpers here are
shared with ``actors.synthetic_camera``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from actors.synthetic import FrameTruth, HoldTruth, SampleTruth, Window, h264_stream, truth_path


# --- scenario "holds": hand-held scan with steady holds on distinct views ---------------------

FOCUS_KINDS = ("sharp", "pull_in", "pull_out", "soft")


def noise_layer(rng: np.random.Generator, shape: tuple[int, int], cell: float, channels: int) -> np.ndarray:
    h, w = shape
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    grid = rng.standard_normal((gh, gw, channels)).astype(np.float32)
    layer = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return layer.reshape(h, w, channels)


def photo_texture(rng: np.random.Generator, side: int, frame_width: int) -> np.ndarray:
    """A large photo-like BGR texture: multi-scale coloured noise (light and shade, surfaces,
    grain), hard-edged objects, print strokes, text and a few specular glints."""
    shape = (side, side)
    img = np.full((side, side, 3), 118.0, np.float32)
    for rel, lum, chroma in ((0.9, 38, 22), (0.3, 28, 16), (0.09, 20, 9), (0.025, 12, 4)):
        cell = max(2.0, rel * frame_width)
        img += lum * noise_layer(rng, shape, cell, 1) + chroma * noise_layer(rng, shape, cell, 3)
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


def pick_views(rng: np.random.Generator, n: int, side: int, width: int, height: int
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


def camera_transform(centre: tuple[float, float], zoom: float, angle_deg: float, width: int, height: int,
            dx: float, dy: float) -> np.ndarray:
    """Affine map texture -> frame: the view centre lands at the frame centre + (dx, dy)."""
    m = cv2.getRotationMatrix2D(centre, angle_deg, zoom)
    m[0, 2] += width / 2 + dx - centre[0]
    m[1, 2] += height / 2 + dy - centre[1]
    return m


def motion_blur(img: np.ndarray, vx: float, vy: float, exposure: float = 0.5) -> np.ndarray:
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
    texture = photo_texture(rng, side, width)
    views = pick_views(rng, n, side, width, height)
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
                m = camera_transform(centre, z0 + t * (z1 - z0), a0 + t * (a1 - a0), width, height, 0, 0)
                blur = 0.0
            else:
                centre, zoom, angle = views[pose.view]
                m = camera_transform(centre, zoom, angle, width, height, pose.dx, pose.dy)
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
            img = motion_blur(img, vx, vy)
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
