"""Probe a video and decode exact frame ranges with PyAV.

Frame ``i`` is the i-th frame in presentation order. ``probe`` builds a ``FrameIndex`` (pts of
every frame, keyframe positions) by demuxing once without decoding; ``iter_frames`` seeks to the
keyframe at or before the range start, decodes forward and drops frames before the target,
keyed on pts, so it holds for B-frames and variable frame rate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import av.error
import numpy as np

from actors.errors import (
    AbsurdDimensionsError,
    ContainerNotAllowedError,
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoNotFoundError,
)
from actors.records import FrameIndex, FrameRange, VideoInfo

# Frame-rate spread above which a stream counts as variable frame rate.
_VFR_TOLERANCE = 0.02


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


# The only demuxers that may open an input. FFmpeg picks a demuxer from the file's content and
# name, and some demuxers read *other* files or URLs named inside the input: an HLS playlist
# (hls) or a DASH manifest (dash) lists segments, concat/ffconcat lists files, image2 opens a
# numbered sequence, and so on. An uploaded playlist naming file:///some/private.ts would be
# analysed as that private file. None of the demuxers below opens anything but the input (the
# mov demuxer follows external data references only with ``enable_drefs``, off by default).
ALLOWED_CONTAINERS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf",
                      "ogg")
# FFmpeg options that enforce it: the demuxer must be on the list (checked before the demuxer
# reads its header), and the input is read through the local file protocol only.
CONTAINER_OPTIONS = {"format_whitelist": ",".join(ALLOWED_CONTAINERS),
                     "protocol_whitelist": "file"}


def ffmpeg_input_url(path: str | os.PathLike[str]) -> str:
    """``path`` as an FFmpeg URL that can only mean that local file (a name such as
    ``concat:a|b`` or ``subfile:...`` would otherwise select a protocol)."""
    return "file:" + os.path.abspath(str(path))


def open_container(path: str | os.PathLike[str]) -> av.container.InputContainer:
    """Open a local media file with the container allow-list (no checks of its own beyond it;
    ``_open`` adds the typed errors). Raises ``av.error.ArgumentError`` for a container that
    is not allowed."""
    return av.open(ffmpeg_input_url(path), mode="r", container_options=dict(CONTAINER_OPTIONS))


def container_format(path: str | os.PathLike[str]) -> str:
    """The demuxer's short name (``mov``, ``matroska``, ...) of an allowed local video, to
    force the same demuxer elsewhere (the ffmpeg binary's ``-f``)."""
    with _open(str(path)) as container:
        return container.format.name.split(",")[0]


def _open(path: str) -> av.container.InputContainer:
    p = Path(path)
    if not p.exists():
        raise VideoNotFoundError(path)
    if not p.is_file():
        raise NotAVideoError(path, "it is a directory" if p.is_dir() else "not a regular file")
    try:
        return open_container(p)
    except av.error.EOFError as exc:
        raise CorruptVideoError(path, "the file ends before its stream headers") from exc
    except av.error.InvalidDataError as exc:
        if b"moov" in _tail_hint(p):  # an MP4 whose index never got written: cut short
            raise CorruptVideoError(path, "MP4 index (moov atom) missing") from exc
        raise NotAVideoError(path, str(exc.strerror or exc)) from exc
    except av.error.ArgumentError as exc:  # FFmpeg recognised a format not on the allow-list
        raise ContainerNotAllowedError(path, ALLOWED_CONTAINERS) from exc
    except av.error.FFmpegError as exc:
        raise NotAVideoError(path, str(exc)) from exc


def _tail_hint(p: Path) -> bytes:
    """Return b'moov' when the file starts like an MP4/MOV (ftyp box) but has no moov box."""
    with p.open("rb") as fh:
        head = fh.read(16)
        if head[4:8] != b"ftyp":
            return b""
        fh.seek(0)
        data = fh.read(64 * 1024 * 1024)
    return b"" if b"moov" in data else b"moov"


def _video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    streams = container.streams.video
    if not container.streams:
        raise EmptyVideoError(path)
    if not streams:
        found = ", ".join(sorted({s.type for s in container.streams}))
        raise NoVideoStreamError(path, found)
    stream = streams[0]
    codec = stream.codec_context
    if codec is None or codec.name in (None, "", "none"):
        raise UnsupportedCodecError(path, getattr(stream, "codec_tag", "unknown") or "unknown")
    return stream


def _display_rotation(frame: av.VideoFrame) -> int:
    """Clockwise degrees to rotate the coded frame for display (0, 90, 180 or 270)."""
    angle = int(round(getattr(frame, "rotation", 0) or 0))
    return (-angle) % 360 // 90 * 90


def _demux_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                 path: str) -> tuple[list[tuple[int, bool]], av.VideoFrame | None]:
    """(pts, is keyframe) of every packet in decode order, and the first decoded frame."""
    pts_keys: list[tuple[int, bool]] = []
    first_frame: av.VideoFrame | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise CorruptVideoError(path, f"packet {len(pts_keys)} has no timestamp")
            pts_keys.append((ts, bool(packet.is_keyframe)))
            if first_frame is None:
                for frame in packet.decode():
                    first_frame = frame
                    break
        if first_frame is None and pts_keys:
            for frame in stream.codec_context.decode(None):
                first_frame = frame
                break
    except av.error.DecoderNotFoundError as exc:
        raise UnsupportedCodecError(path, stream.codec_context.name) from exc
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, str(exc)) from exc
    return pts_keys, first_frame


def probe(path: str | os.PathLike[str], limits: DimensionLimits = DimensionLimits()) -> VideoInfo:
    """Describe a video and index its frames. Raises a ``VideoError`` subclass on bad input."""
    path = str(path)
    with _open(path) as container:
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        limits.check(path, ctx.width, ctx.height)
        codec_name = ctx.name
        time_base = stream.time_base or Fraction(1, 90000)
        pts_keys, first_frame = _demux_index(container, stream, path)
    if not pts_keys:
        raise EmptyVideoError(path)
    if first_frame is None:
        raise CorruptVideoError(path, f"{len(pts_keys)} packets but no decodable frame")
    pts_keys.sort()
    pts = tuple(p for p, _ in pts_keys)
    if len(set(pts)) != len(pts):
        raise CorruptVideoError(path, "duplicate frame timestamps")
    keyframes = tuple(i for i, (_, key) in enumerate(pts_keys) if key)
    index = FrameIndex(pts=pts, keyframes=keyframes, time_base=Fraction(time_base))
    n = len(pts)
    deltas = np.diff(np.asarray(pts, dtype=np.int64)) if n > 1 else np.zeros(0)
    if n > 1:
        span_s = index.time_s(n - 1)
        avg_fps = (n - 1) / span_s if span_s > 0 else float(stream.average_rate or 0)
        variable = bool(deltas.max() > deltas.min() * (1 + _VFR_TOLERANCE) + 1)
        mean_delta = float(deltas.mean() * time_base)
    else:
        avg_fps = float(stream.average_rate or 0.0)
        variable = False
        mean_delta = 1.0 / avg_fps if avg_fps else 0.0
    return VideoInfo(
        path=path,
        frame_count=n,
        avg_fps=round(avg_fps, 6),
        variable_fps=variable,
        width=ctx.width,
        height=ctx.height,
        duration_s=round(index.time_s(n - 1) + mean_delta, 6),
        codec=codec_name,
        rotation=_display_rotation(first_frame),
        index=index,
    )


def iter_frames(path: str, frames: FrameRange, index: FrameIndex, *,
                threads: int = 1) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(frame_index, frame)`` for every frame in ``frames``, exactly and in order.

    Decodes from the keyframe at or before ``frames.start``; frames before the target are
    dropped by pts. Raises ``CorruptVideoError`` when the stream does not deliver the frames
    the index promised.
    """
    if len(frames) == 0:
        return
    if frames.stop > len(index):
        raise ValueError(f"{frames} is past the end of a {len(index)}-frame video")
    with _open(path) as container:
        stream = _video_stream(container, path)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = max(1, threads)
        keyframe = index.keyframe_at_or_before(frames.start)
        for attempt in range(2):
            seek_from = keyframe if attempt == 0 else 0
            if seek_from > 0:
                container.seek(index.pts[seek_from], stream=stream, backward=True, any_frame=False)
            elif attempt:
                container.seek(index.pts[0], stream=stream, backward=True, any_frame=False)
            expected = frames.start
            target_pts = index.pts[frames.start]
            overshot = False
            try:
                for frame in container.decode(stream):
                    if frame.pts is None:
                        raise CorruptVideoError(path, f"decoded frame near {expected} has no pts")
                    if frame.pts < target_pts:
                        continue
                    position = index.position_of(frame.pts)
                    if position != expected:
                        if expected == frames.start and attempt == 0:
                            overshot = True  # the seek landed past the target: decode from 0
                            break
                        raise CorruptVideoError(
                            path, f"expected frame {expected} (pts {index.pts[expected]}), "
                                  f"decoder gave pts {frame.pts}")
                    yield expected, frame
                    expected += 1
                    if expected == frames.stop:
                        return
            except av.error.FFmpegError as exc:
                raise CorruptVideoError(path, f"decoding failed near frame {expected}: {exc}") from exc
            if not overshot:
                raise CorruptVideoError(
                    path, f"stream ended at frame {expected}, index promised {len(index)} frames")
            if stream.codec_context.is_open:
                stream.codec_context.flush_buffers()


def luma(frame: av.VideoFrame) -> np.ndarray:
    """8-bit grayscale (the luma plane) of a frame, without a colour conversion when possible."""
    fmt = frame.format.name
    if fmt in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12",
               "gray"):
        plane = frame.planes[0]
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return buf[:, : plane.width]
    return frame.to_ndarray(format="gray")


def to_display_bgr(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """Full-resolution BGR pixels, rotated upright for display."""
    bgr = frame.to_ndarray(format="bgr24")
    return np.ascontiguousarray(np.rot90(bgr, k=-(rotation // 90))) if rotation else bgr


def read_frames(path: str, wanted: list[int], index: FrameIndex, rotation: int = 0,
                threads: int = 1) -> dict[int, np.ndarray]:
    """Decode only the ``wanted`` frames at full resolution (upright BGR)."""
    out: dict[int, np.ndarray] = {}
    for target in sorted(set(wanted)):
        for i, frame in iter_frames(path, FrameRange(target, target + 1), index, threads=threads):
            out[i] = to_display_bgr(frame, rotation)
    return out
