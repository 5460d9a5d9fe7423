"""Probe a video and decode exact frame ranges with PyAV.

Frame ``i`` is the i-th frame in presentation order. ``probe`` builds a ``FrameIndex`` (pts of
every frame, keyframe positions) by demuxing once without decoding; ``iter_frames`` seeks to the
keyframe at or before the range start, decodes forward and drops frames before the target,
keyed on pts, so it holds for B-frames and variable frame rate.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Union

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
    VideoError,
    VideoNotFoundError,
)
from actors.records import FrameIndex, FrameRange, VideoInfo
from actors.sources import MediaSource, mp4_lacks_index, mp4_moov, video_composition_offsets

# A video: a local path, or a source read through a file object (``actors.sources``).
Source = Union[str, "os.PathLike[str]", MediaSource]

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


def _is_path(source: Source) -> bool:
    # first: a pathlib.Path has a name and an open() too, so it would pass for a MediaSource
    return isinstance(source, (str, os.PathLike))


def source_name(source: Source) -> str:
    """How a video is named in errors and results (a source's name has no credentials)."""
    return str(source) if _is_path(source) else source.name  # type: ignore[union-attr]


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


def _open(source: Source):
    """Open a video for reading: a context manager giving the input container."""
    if not _is_path(source):
        return _open_source(source)  # type: ignore[arg-type]
    path = str(source)
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


@contextlib.contextmanager
def _open_source(source: MediaSource) -> Iterator[av.container.InputContainer]:
    with _open_source_file(source) as (container, _):
        yield container


@contextlib.contextmanager
def _open_with_file(source: Source) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """The container, and the file object under it for a ``MediaSource`` (None for a path)."""
    if _is_path(source):
        with _open(source) as container:
            yield container, None
    else:
        with _open_source_file(source) as opened:  # type: ignore[arg-type]
            yield opened


@contextlib.contextmanager
def _open_source_file(source: MediaSource) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """``av.open`` on the source's file object. When the source failed (gone, timed out, lied
    about a range), that error is what the caller sees, not the truncated stream FFmpeg read
    after it."""
    name = source.name
    fh = source.open()
    try:
        try:
            # the same demuxer allow-list as for files; a file object has no protocol to pick
            container = av.open(fh, mode="r", container_options={
                "format_whitelist": CONTAINER_OPTIONS["format_whitelist"]})
        except av.error.EOFError as exc:
            raise CorruptVideoError(name, "the file ends before its stream headers") from exc
        except av.error.InvalidDataError as exc:
            if mp4_lacks_index(fh):
                raise CorruptVideoError(name, "MP4 index (moov atom) missing") from exc
            raise NotAVideoError(name, str(exc.strerror or exc)) from exc
        except av.error.ArgumentError as exc:
            raise ContainerNotAllowedError(name, ALLOWED_CONTAINERS) from exc
        except av.error.FFmpegError as exc:
            raise NotAVideoError(name, str(exc)) from exc
        with container:
            yield container, fh
    except VideoError as exc:
        failure = getattr(fh, "failure", None)
        if isinstance(failure, VideoError) and failure is not exc:
            raise failure from None
        raise
    finally:
        fh.close()


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
    with _decode_errors(path, stream):
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise CorruptVideoError(path, f"packet {len(pts_keys)} has no timestamp")
            pts_keys.append((ts, bool(packet.is_keyframe)))
            if first_frame is None:
                first_frame = next(iter(packet.decode()), None)
        if first_frame is None and pts_keys:
            first_frame = _flushed_frame(stream)
    return pts_keys, first_frame


@contextlib.contextmanager
def _decode_errors(path: str, stream: av.video.stream.VideoStream) -> Iterator[None]:
    """FFmpeg's errors while demuxing or decoding, as the typed errors of a bad video."""
    try:
        yield
    except av.error.DecoderNotFoundError as exc:
        raise UnsupportedCodecError(path, stream.codec_context.name) from exc
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, str(exc)) from exc


def _flushed_frame(stream: av.video.stream.VideoStream) -> av.VideoFrame | None:
    """The first frame the decoder gives when flushed (a stream of one short GOP)."""
    return next(iter(stream.codec_context.decode(None)), None)


def _moov_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                fh: Any, path: str) -> tuple[list[tuple[int, bool]], av.VideoFrame | None] | None:
    """The frame index of an MP4/MOV from its ``moov`` box alone, without reading the media
    data (what ``_demux_index`` would read: the whole file, costly for a remote source).

    FFmpeg builds the per-sample index (decode timestamps, keyframe flags) from the moov when it
    opens the file; presentation timestamps add the ``ctts`` offsets parsed here. Used only when
    the two agree on the sample count and FFmpeg dropped no sample (edit lists); otherwise None
    and the caller demuxes. The first frame is still decoded (rotation, and proof it decodes).
    """
    if not {"mov", "mp4"} & set((container.format.name or "").split(",")):
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or n != stream.frames or any(e.is_discard for e in entries):
        return None
    moov = mp4_moov(fh)
    offsets = video_composition_offsets(moov) if moov is not None else None
    if offsets is None:
        return None
    if not offsets:
        offsets = [0] * n
    if len(offsets) != n:
        return None
    pts_keys = [(e.timestamp + off, bool(e.is_keyframe)) for e, off in zip(entries, offsets)]
    first_frame: av.VideoFrame | None = None
    with _decode_errors(path, stream):
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            first_frame = next(iter(packet.decode()), None)
            if first_frame is not None:
                break
        else:
            first_frame = _flushed_frame(stream)
    return pts_keys, first_frame


def probe(source: Source, limits: DimensionLimits = DimensionLimits()) -> VideoInfo:
    """Describe a video and index its frames. Raises a ``VideoError`` subclass on bad input."""
    path = source_name(source)
    with _open_with_file(source) as (container, fh):
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        limits.check(path, ctx.width, ctx.height)
        codec_name = ctx.name
        time_base = stream.time_base or Fraction(1, 90000)
        indexed = _moov_index(container, stream, fh, path) if fh is not None else None
        pts_keys, first_frame = indexed or _demux_index(container, stream, path)
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


def iter_frames(path: Source, frames: FrameRange, index: FrameIndex, *,
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
    name = source_name(path)
    with _decoder(path, name, threads) as (container, stream):
        yield from _decode_range(container, stream, name, frames, index, fresh=True)


@contextlib.contextmanager
def _decoder(path: Source, name: str, threads: int
             ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The opened video and its video stream, decoding on ``threads`` threads."""
    with _open(path) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = max(1, threads)
        yield container, stream


def _decode_range(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  path: str, frames: FrameRange, index: FrameIndex, *,
                  fresh: bool) -> Iterator[tuple[int, av.VideoFrame]]:
    """The frames of ``frames`` from an open container (``fresh``: nothing decoded yet, so a
    range starting in the first GOP needs no seek)."""
    keyframe = index.keyframe_at_or_before(frames.start)
    for attempt in range(2):
        seek_from = keyframe if attempt == 0 else 0
        if seek_from > 0 or attempt or not fresh:
            container.seek(index.pts[seek_from], stream=stream, backward=True, any_frame=False)
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


def pick_groups(wanted: list[int], index: FrameIndex) -> list[FrameRange]:
    """Ranges that decode every wanted frame once: a frame whose keyframe comes at or before
    the previous wanted frame is reached by decoding on from there instead of seeking back."""
    groups: list[list[int]] = []
    for target in sorted(set(wanted)):
        if groups and index.keyframe_at_or_before(target) <= groups[-1][-1]:
            groups[-1].append(target)
        else:
            groups.append([target])
    return [FrameRange(g[0], g[-1] + 1) for g in groups]


def read_frames(path: Source, wanted: list[int], index: FrameIndex, rotation: int = 0,
                threads: int = 1) -> dict[int, np.ndarray]:
    """Decode only the ``wanted`` frames at full resolution (upright BGR), opening the video
    once; frames in between are decoded, not converted."""
    out: dict[int, np.ndarray] = {}
    keep = set(wanted)
    if not keep:
        return out
    if max(keep) >= len(index) or min(keep) < 0:
        raise ValueError(f"frames {sorted(keep)} are not all in a {len(index)}-frame video")
    name = source_name(path)
    with _decoder(path, name, threads) as (container, stream):
        for n, frames in enumerate(pick_groups(wanted, index)):
            for i, frame in _decode_range(container, stream, name, frames, index, fresh=n == 0):
                if i in keep:
                    out[i] = to_display_bgr(frame, rotation)
    return out
