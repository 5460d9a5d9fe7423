"""Synthetic video of *real camera conditions*, with honest per-frame truth (scenario ``camera``).

``make_camera_video`` writes one H.264 MP4 (yuv420p, B-frames) made of seven segments of
``segment_s`` seconds each, in this order:

1. ``tripod_flat_noise`` (still): locked-off tripod on a dim, low-texture wall (soft gradient, lens
   vignette, a few faint features) with strong temporal sensor noise. The noise is drawn on a grid
   of 2-3 px cells (as demosaicing and phone denoisers leave it) and encoded at ``crf`` 20, so
   x264 keeps it (per-pixel Gaussian noise is wiped from static areas at ordinary CRFs).
2. ``tripod_small_subject`` (still): the same wall and noise, the tripod slightly re-framed, a
   small ball (2.5-3.5 % of the frame) sliding 2-4 px per frame. A person calls this still.
3. ``flicker`` (still): static photo-like scene, exposure gain modulated frame to frame by 8-12 %
   (mains light at 100 Hz, or 120 Hz when 100 Hz does not beat with the frame rate, sampled at
   the frame rate), mild noise.
4. ``hand_moved_item`` (not still): a textured card (about 25 % of the frame) moved by hand over
   a flat-ish wall: 2-6 px per frame, jitter, slight rotation; the camera does not move.
5. ``handheld_shake`` (not still): the whole view jitters several px every frame (like the
   ``shaking`` window of ``make_sample_video``), with motion blur.
6. ``focus_pull`` (still): static scene, focus blur sigma rising from 0 to 3 px and back.
7. ``tripod_textured`` (still): static photo-like scene with mild noise.

Between segments the camera re-frames: the first frame of every segment but the first is a
*cut* (``cut=True``, ``still=False``; its motion fields are -1, meaning "not a motion, the view
changed"). Frame 0 has no predecessor: ``still`` is its segment's, ``cut`` is False.

Per-frame truth (``CameraFrameTruth``): ``segment``; ``still`` (what a person means: nothing but
a small subject moves); ``blur`` (focus blur sigma, px); ``flicker_gain`` (exposure gain, 1.0
outside ``flicker``; x264 at CRF 20 renders the swing a few % short); ``noise`` (planned luma
sensor-noise std before encoding, grey levels; about 85 % of it survives in flat areas);
``camera_motion`` (px the background moved since the previous frame); ``subject_motion`` (px the
moving subject's farthest-moving point moved since the previous frame); ``subject_area``
(fraction of the frame the moving subject covers); ``subject_box`` (its box x0, y0, x1, y1 in
frame px, or None); ``cut``. Noise and flicker never count as motion. The truth is written to
``<video>.truth.json`` and is the same for the same arguments.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from actors.synthetic import h264_stream, truth_path
from actors.synthetic_holds import (camera_transform, motion_blur, noise_layer, photo_texture,
                                    pick_views)

CAMERA_SEGMENTS = ("tripod_flat_noise", "tripod_small_subject", "flicker", "hand_moved_item",
                   "handheld_shake", "focus_pull", "tripod_textured")
STILL_SEGMENTS = frozenset({"tripod_flat_noise", "tripod_small_subject", "flicker", "focus_pull",
                            "tripod_textured"})
DARK_NOISE = 5.0  # luma noise std (grey levels) of the dim tripod segments, before encoding
MILD_NOISE = 2.5  # luma noise std of the other segments
FOCUS_PEAK = 3.0  # focus-pull blur sigma at its peak (px)


@dataclass(frozen=True)
class CameraFrameTruth:
    segment: str
    still: bool
    blur: float
    flicker_gain: float
    noise: float = 0.0
    camera_motion: float = 0.0
    subject_motion: float = 0.0
    subject_area: float = 0.0
    subject_box: tuple[float, float, float, float] | None = None
    cut: bool = False


@dataclass
class CameraTruth:
    width: int
    height: int
    fps: float
    frame_count: int
    segments: list[tuple[str, int, int]] = field(default_factory=list)  # (name, start, stop)
    frames: list[CameraFrameTruth] = field(default_factory=list)
    seed: int = 0
    bframes: int = 2
    gop: int = 60
    crf: int = 20
    scenario: str = "camera"

    def segment(self, name: str) -> range:
        """Frames of the segment ``name``."""
        for seg, start, stop in self.segments:
            if seg == name:
                return range(start, stop)
        raise KeyError(f"no segment {name!r}; segments are {[s for s, _, _ in self.segments]}")

    def still_frames(self) -> set[int]:
        return {i for i, f in enumerate(self.frames) if f.still}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "CameraTruth":
        data = json.loads(text)
        data["segments"] = [(str(n), int(a), int(b)) for n, a, b in data["segments"]]
        data["frames"] = [CameraFrameTruth(**{**f, "subject_box": None if f.get("subject_box") is None
                                              else tuple(f["subject_box"])}) for f in data["frames"]]
        return cls(**data)


# --- scenes ------------------------------------------------------------------------------------

def _wall(rng: np.random.Generator, width: int, height: int, margin: int, level: float) -> np.ndarray:
    """A flat painted wall (float32 BGR, frame + margin on each side): soft gradient, faint
    large-scale shading and a few faint features (switch plate, stain, frame edge)."""
    wh, ww = height + 2 * margin, width + 2 * margin
    yy, xx = np.mgrid[0:wh, 0:ww].astype(np.float32)
    lum = level * (0.85 + 0.25 * xx / ww + 0.1 * yy / wh)
    wall = np.stack([lum * 1.04, lum, lum * 0.95], -1) + 3 * noise_layer(rng, (wh, ww), 0.4 * width, 1)
    d = level * 0.12  # feature contrast: faint
    x, y = int(rng.uniform(0.25, 0.75) * ww), int(rng.uniform(0.3, 0.7) * wh)
    s = max(6, width // 30)
    cv2.rectangle(wall, (x, y), (x + s, y + int(1.5 * s)), (level + d,) * 3, -1)  # switch plate
    cv2.ellipse(wall, (int(rng.uniform(0.1, 0.9) * ww), int(rng.uniform(0.1, 0.9) * wh)),
                (3 * s, 2 * s), float(rng.uniform(0, 180)), 0, 360, (level - d,) * 3, -1)  # stain
    fx = int(rng.uniform(0.05, 0.3) * ww)
    cv2.line(wall, (fx, 0), (fx + s, wh), (level + d,) * 3, max(1, width // 320))  # frame edge
    return cv2.GaussianBlur(wall, (0, 0), max(1.0, width / 640))


def _vignette(width: int, height: int, strength: float = 0.35) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2
    return (1 - strength * r2 / 2)[..., None]


def _ball(radius: float) -> tuple[np.ndarray, np.ndarray]:
    """A shaded orange ball with a seam: (premultiplied BGR float32, alpha) sprites."""
    n = int(np.ceil(radius)) * 2 + 4
    c = n / 2
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) + 0.5
    alpha = np.zeros((n, n), np.float32)
    cv2.circle(alpha, (int(c * 16), int(c * 16)), int(radius * 16), 1.0, -1, cv2.LINE_AA, 4)
    light = 1.15 - 0.55 * np.hypot(xx - c + 0.35 * radius, yy - c + 0.35 * radius) / (2 * radius)
    colour = np.stack([40 * light, 130 * light, 230 * light], -1)
    cv2.ellipse(colour, (int(c), int(c)), (int(radius * 0.8), int(radius * 0.35)), 30, 0, 360,
                (200, 220, 235), max(1, int(radius / 10)), cv2.LINE_AA)
    return colour * alpha[..., None], alpha


def _card(texture: np.ndarray, view: tuple, cw: int, ch: int) -> tuple[np.ndarray, np.ndarray]:
    """A printed card cut from the texture, with a light border: (premultiplied BGR, alpha)."""
    centre, zoom, angle = view
    img = cv2.warpAffine(texture, camera_transform(centre, zoom, angle, cw, ch, 0, 0), (cw, ch),
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    cv2.rectangle(img, (0, 0), (cw - 1, ch - 1), (235, 235, 235), max(2, cw // 40))
    pad = 2
    colour = cv2.copyMakeBorder(img.astype(np.float32), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    alpha = cv2.copyMakeBorder(np.ones((ch, cw), np.float32), pad, pad, pad, pad, cv2.BORDER_CONSTANT,
                               value=0)
    return colour, alpha


def _place(sprite: tuple[np.ndarray, np.ndarray], cx: float, cy: float, angle: float,
           width: int, height: int, vx: float, vy: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Warp a sprite so its centre lands at (cx, cy), rotated by ``angle`` degrees, with motion
    blur for velocity (vx, vy): (premultiplied colour, alpha, 2x3 map)."""
    colour, alpha = sprite
    sh, sw = alpha.shape
    m = cv2.getRotationMatrix2D((sw / 2, sh / 2), angle, 1.0)
    m[0, 2] += cx - sw / 2
    m[1, 2] += cy - sh / 2
    col = cv2.warpAffine(colour, m, (width, height), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    a = cv2.warpAffine(alpha, m, (width, height), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return motion_blur(col, vx, vy), motion_blur(a, vx, vy), m


def _corners(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    h, w = shape
    pts = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)
    return pts @ m.T


class _Sensor:
    """Temporal sensor noise on a grid of ``cell`` px (luma) and ``2 * cell`` px (chroma)."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, scale: float) -> None:
        self.rng, self.shape, self.scale = rng, (height, width), scale
        self.cell = max(2, int(round(width / 480)))
        self.gain: dict[tuple[int, int], float] = {}

    def _layer(self, cell: int, channels: int) -> np.ndarray:
        h, w = self.shape
        grid = self.rng.standard_normal((h // cell + 2, w // cell + 2, channels)).astype(np.float32)
        ox, oy = (int(v) for v in self.rng.integers(0, cell, 2))  # the grid does not sit still
        big = cv2.resize(grid, ((w // cell + 2) * cell, (h // cell + 2) * cell),
                         interpolation=cv2.INTER_LINEAR)
        layer = big.reshape(big.shape[0], big.shape[1], channels)[oy:oy + h, ox:ox + w]
        if (cell, channels) not in self.gain:  # interpolation lowers the std: measured once
            self.gain[(cell, channels)] = 1.0 / max(1e-6, float(layer.std()))
        return layer * self.gain[(cell, channels)]

    def __call__(self, img: np.ndarray, sigma: float) -> np.ndarray:
        sigma *= self.scale
        if sigma > 0:
            img = img + sigma * self._layer(self.cell, 1)
            img += 0.4 * sigma * self._layer(2 * self.cell, 3)
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _flicker_gains(rng: np.random.Generator, count: int, fps: int) -> list[float]:
    """Exposure gain per frame: mains light (100 Hz, else 120 Hz) sampled at the frame rate."""
    step = next((f / fps % 1.0 for f in (100.0, 120.0) if 0.05 < f / fps % 1.0 < 0.95), 1 / 3)
    amp, phase = float(rng.uniform(0.08, 0.12)), float(rng.uniform(0, 2 * np.pi))
    return [round(1 + amp * float(np.cos(2 * np.pi * step * j + phase)), 5) for j in range(count)]


# --- the video ---------------------------------------------------------------------------------

def make_camera_video(path: str | Path, *, size: tuple[int, int] = (1280, 720), fps: int = 30,
                      seed: int = 0, bframes: int = 2, gop: int = 60, crf: int = 20,
                      segment_s: float = 1.8, noise_scale: float = 1.0) -> CameraTruth:
    """Write an H.264 MP4 of the seven camera-condition segments (see the module docstring), each
    ``segment_s`` seconds, and ``<path>.truth.json``; return the truth. ``noise_scale`` scales the
    sensor noise (0: a clean video, for comparison); ``crf`` is x264's quality (20 keeps the noise,
    as phones' bitrates do)."""
    width, height = size
    if width % 2 or height % 2 or width < 64 or height < 64:
        raise ValueError(f"size must be even and at least 64x64, got {width}x{height}")
    if fps <= 0 or segment_s <= 0 or noise_scale < 0:
        raise ValueError("fps and segment_s must be positive, noise_scale >= 0")
    seg_len = int(round(segment_s * fps))
    if seg_len < 6:
        raise ValueError(f"segment_s * fps must give at least 6 frames, got {seg_len}")
    rng = np.random.default_rng(seed)
    sensor = _Sensor(np.random.default_rng(seed + 7919), width, height, noise_scale)
    margin = max(16, width // 10)
    side = int(max(width, height) * 2.6) // 2 * 2
    texture = photo_texture(rng, side, width)
    views = pick_views(rng, 5, side, width, height)
    vignette = _vignette(width, height)
    dark = _wall(rng, width, height, margin, float(rng.uniform(40, 52)))
    bright = _wall(rng, width, height, margin, float(rng.uniform(125, 150)))
    area = width * height

    def crop(world: np.ndarray, dx: int, dy: int) -> np.ndarray:
        return world[margin + dy:margin + dy + height, margin + dx:margin + dx + width]

    def view(k: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
        centre, zoom, angle = views[k]
        return cv2.warpAffine(texture,
                              camera_transform(centre, zoom, angle, width, height, dx, dy),
                              (width, height),
                              flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tb = Fraction(1, fps)
    frames: list[CameraFrameTruth] = []
    with av.open(str(path), mode="w") as out:
        stream = h264_stream(out, width, height, fps, tb, gop, bframes, crf)

        def add(seg: str, j: int, img: np.ndarray, noise: float, *, blur: float = 0.0, gain: float = 1.0,
                camera: float = 0.0, subject: float = 0.0, alpha: np.ndarray | None = None,
                box: tuple[float, float, float, float] | None = None) -> None:
            """Add sensor noise to the scene ``img`` (float BGR), encode it, record its truth."""
            frame = av.VideoFrame.from_ndarray(sensor(img, noise), format="bgr24")
            frame.pts = len(frames)
            frame.time_base = tb
            for packet in stream.encode(frame):
                out.mux(packet)
            cut = j == 0 and bool(frames)
            if box is not None:
                box = (max(0.0, box[0]), max(0.0, box[1]),
                       min(float(width), box[2]), min(float(height), box[3]))
            frames.append(CameraFrameTruth(
                seg, (seg in STILL_SEGMENTS) and not cut, round(blur, 4), gain, round(noise * noise_scale, 4),
                -1.0 if cut else round(camera, 4), -1.0 if cut else round(subject, 4),
                0.0 if alpha is None else round(float(alpha.sum()) / area, 5),
                None if box is None else (round(box[0], 2), round(box[1], 2), round(box[2], 2),
                                          round(box[3], 2)), cut))

        # 1 and 2: a dim wall on a tripod (re-framed by >= 12 px between them), dark-scene noise
        wall1 = crop(dark, 0, 0) * vignette
        for j in range(seg_len):
            add("tripod_flat_noise", j, wall1, DARK_NOISE)
        shift = np.clip(rng.integers(12, margin // 2 + 13, size=2) * rng.choice([-1, 1], size=2),
                        -margin, margin)
        wall2 = crop(dark, int(shift[0]), int(shift[1])) * vignette
        radius = float(np.sqrt(rng.uniform(0.025, 0.035) * area / np.pi))
        ball = _ball(radius)
        x = float(rng.uniform(radius + 2, width - radius - 2))
        y = float(rng.uniform(radius + 2, height - radius - 2))
        heading, speed = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(2.0, 4.0))
        for j in range(seg_len):
            vx = vy = 0.0
            if j:
                heading += float(rng.normal(0, 0.08))
                vx, vy = speed * float(np.cos(heading)), speed * float(np.sin(heading))
                if not radius + 1 < x + vx < width - radius - 1:  # bounce off the frame edges
                    vx, heading = -vx, float(np.pi - heading)
                if not radius + 1 < y + vy < height - radius - 1:
                    vy, heading = -vy, -heading
            x, y = x + vx, y + vy
            col, a, _ = _place(ball, x, y, 0.0, width, height, vx, vy)
            add("tripod_small_subject", j, wall2 * (1 - a[..., None]) + col, DARK_NOISE,
                subject=float(np.hypot(vx, vy)), alpha=a,
                box=(x - radius, y - radius, x + radius, y + radius))

        # 3: exposure flicker on a static textured scene
        scene = view(0).astype(np.float32)
        for j, gain in enumerate(_flicker_gains(rng, seg_len, fps)):
            add("flicker", j, scene * gain, MILD_NOISE, gain=gain)

        # 4: a card moved by hand over a flat-ish wall; the camera does not move
        ch = int(np.sqrt(0.25 * area / 1.4))
        cw = min(int(ch * 1.4), width - 8)
        card = _card(texture, views[4], cw, ch)
        wall4 = crop(bright, 0, 0)
        home = np.array([width / 2, height / 2])
        slack = 0.5 * ch * np.sin(np.radians(4)) + 6  # room for the rotation
        rx = max(4.0, min(0.12 * width, (width - cw) / 2 - slack))
        ry = max(4.0, (height - ch) / 2 - slack)
        pos, angle, prev_corners = home.copy(), 0.0, None
        heading = float(rng.uniform(0, 2 * np.pi))
        for j in range(seg_len):
            v = np.zeros(2)
            if j:
                off = pos - home
                if abs(off[0]) > rx or abs(off[1]) > ry:  # the hand brings it back
                    heading = float(np.arctan2(-off[1], -off[0]) + rng.normal(0, 0.3))
                else:
                    heading += float(rng.normal(0, 0.35))
                v = (rng.uniform(2.0, 5.5) * np.array([np.cos(heading), np.sin(heading)])
                     + rng.uniform(-0.5, 0.5, 2))  # hand jitter
                angle = float(np.clip(angle + rng.normal(0, 0.3), -4, 4))
            pos = pos + v
            col, a, m = _place(card, float(pos[0]), float(pos[1]), angle, width, height,
                               float(v[0]), float(v[1]))
            corners = _corners(m, card[1].shape)
            moved = 0.0 if prev_corners is None else float(np.hypot(*(corners - prev_corners).T).max())
            prev_corners = corners
            add("hand_moved_item", j, wall4 * (1 - a[..., None]) + col, MILD_NOISE, subject=moved, alpha=a,
                box=(float(corners[:, 0].min()), float(corners[:, 1].min()),
                     float(corners[:, 0].max()), float(corners[:, 1].max())))

        # 5: hand-held shake of the whole view (as the ``shaking`` window of make_sample_video)
        amp = max(3.0, width / 200)
        prev = None
        for j in range(seg_len):
            sign = 1 if j % 2 else -1
            d = np.array([sign * amp + rng.uniform(-1, 1), -sign * amp * 0.6 + rng.uniform(-1, 1)])
            v = np.zeros(2) if prev is None else d - prev
            prev = d
            img = motion_blur(view(1, float(d[0]), float(d[1])), float(v[0]), float(v[1]))
            add("handheld_shake", j, img.astype(np.float32), MILD_NOISE, camera=float(np.hypot(*v)))

        # 6: focus pull 0 -> FOCUS_PEAK -> 0 on a static scene
        scene = view(2).astype(np.float32)
        for j in range(seg_len):
            blur = round(FOCUS_PEAK * float(np.sin(np.pi * j / (seg_len - 1))) ** 2, 4)
            add("focus_pull", j, cv2.GaussianBlur(scene, (0, 0), blur) if blur > 0.05 else scene,
                MILD_NOISE, blur=blur if blur > 0.05 else 0.0)

        # 7: a plain static textured scene
        scene = view(3).astype(np.float32)
        for j in range(seg_len):
            add("tripod_textured", j, scene, MILD_NOISE)

        for packet in stream.encode(None):
            out.mux(packet)
    segments = [(name, k * seg_len, (k + 1) * seg_len) for k, name in enumerate(CAMERA_SEGMENTS)]
    truth = CameraTruth(width=width, height=height, fps=float(fps), frame_count=len(frames),
                        segments=segments, frames=frames, seed=seed, bframes=bframes, gop=gop, crf=crf)
    truth_path(path).write_text(truth.to_json())
    return truth
