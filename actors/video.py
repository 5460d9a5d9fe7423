"""Probe a video and decode exact frame ranges with PyAV.

A frame is what the decoder delivers: frame ``i`` is the i-th frame a plain sequential decode
gives (FFmpeg's output order). ``probe`` builds a ``FrameIndex`` (time of every frame, keyframe
positions) from the container's listing, without decoding, when the first frames the decoder
delivers agree with that listing; when they do not (MPEG-4 Part 2 with packed B-frames, an
H.264 stream whose composition offsets disagree with its pictures, repeated timestamps), from
one sequential decode. ``iter_frames`` seeks to the keyframe at or before a range, decodes
forward and places every delivered frame by the timestamp the decoder gives it, so ranges
decoded anywhere give the frames of the sequential decode, B-frames and variable frame rate
included. A listed frame the decoder never delivers is a *gap*: skipped, never a failure.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from collections import Counter
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Protocol, Union, cast

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
from actors.mp4_tables import moov_tracks
from actors.records import FrameIndex, FrameRange, VideoInfo
from actors.media_source import MediaSource, mp4_lacks_index, mp4_moov, video_composition_offsets

# A video: a local path, or a source read through a file object (``actors.media_source``).
Source = Union[str, "os.PathLike[str]", MediaSource]

# Frame-rate spread above which a stream counts as variable frame rate.
_VFR_TOLERANCE = 0.02
# The probe decodes this many frames to check the container's listing against what the decoder
# delivers (reordering shows within the first frames that have B-frames).
CHECKED_FRAMES = 24


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


def _sized(frames: list[av.VideoFrame], path: str, size: tuple[int, int]) -> list[av.VideoFrame]:
    for frame in frames:
        check_frame_size(path, frame, size)
    return frames


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
CONTAINERS = ("mov", "mp4", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf", "ogg")
# Raw elementary streams: no container at all, the demuxer only cuts its input into frames, so
# it cannot name another file. Old archives and camera dumps come this way: a ``.mpg``/``.m1v``
# that is bare MPEG-1/2 video (mpegvideo), bare MPEG-4 Part 2 (m4v), H.261/H.263/H.264/HEVC
# Annex B streams, VP8/VP9/AV1 in IVF, AV1 OBU streams, DV from tape camcorders and YUV4MPEG.
ELEMENTARY_STREAMS = ("mpegvideo", "m4v", "h261", "h263", "h264", "hevc", "ivf", "obu", "dv",
                      "yuv4mpegpipe")
ALLOWED_CONTAINERS = CONTAINERS + ELEMENTARY_STREAMS
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
def _open_with_file(source: Source, check: Callable[[BinaryIO], None] | None = None,
                    ) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """The container, and the file object under it for a ``MediaSource`` (None for a path).
    ``check(fh)``: called on the file before FFmpeg opens it (it raises to refuse it)."""
    if _is_path(source):
        if check is not None and os.path.isfile(str(source)):
            with open(str(source), "rb") as fh:
                check(fh)
        with _open(source) as container:
            yield container, None
    else:
        with _open_source_file(source, check) as opened:  # type: ignore[arg-type]
            yield opened


@contextlib.contextmanager
def _open_source_file(source: MediaSource, check: Callable[[BinaryIO], None] | None = None,
                      ) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """``av.open`` on the source's file object (``check(fh)`` first, when given). When the
    source failed (gone, timed out, lied about a range), that error is what the caller sees,
    not the truncated stream FFmpeg read after it."""
    name = source.name
    fh = cast(BinaryIO, source.open())  # a seekable file object: what PyAV and our box readers read
    try:
        if check is not None:
            check(fh)
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
                 path: str, size: tuple[int, int], budget: FrameBudget | None = None,
                 ) -> tuple[list[tuple[int, bool]], list[av.VideoFrame]]:
    """(pts, is keyframe) of every packet in decode order, and the first frames the decoder
    delivers (``CHECKED_FRAMES``), decoded in the same pass. Stops as soon as the packets are
    more than ``budget`` allows (its error), and at the first frame larger than ``size``."""
    pts_keys: list[tuple[int, bool]] = []
    first: list[av.VideoFrame] = []
    most = budget.most_frames(*size) if budget is not None else 0
    with _decode_errors(path, stream):
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is None:
                raise CorruptVideoError(path, f"packet {len(pts_keys)} has no timestamp")
            pts_keys.append((ts, bool(packet.is_keyframe)))
            if most and len(pts_keys) > most:
                assert budget is not None
                budget.check(path, size[0], size[1], len(pts_keys))
            if len(first) < CHECKED_FRAMES:
                first.extend(_sized(_decode_quietly(stream, packet), path, size))
        if len(first) < CHECKED_FRAMES and pts_keys:
            first.extend(_sized(_decode_quietly(stream, None), path, size))
    return pts_keys, first[:CHECKED_FRAMES]


def _decode_quietly(stream: av.video.stream.VideoStream, packet: Any) -> list[av.VideoFrame]:
    """The frames one packet (None: the flush) gives; a packet the decoder rejects gives none
    (a broken slice: FFmpeg goes on with the next one, and so does a sequential decode)."""
    try:
        return list(stream.codec_context.decode(packet))
    except av.error.InvalidDataError:
        return []


@contextlib.contextmanager
def _decode_errors(path: str, stream: av.video.stream.VideoStream) -> Iterator[None]:
    """FFmpeg's errors while demuxing or decoding, as the typed errors of a bad video."""
    try:
        yield
    except av.error.DecoderNotFoundError as exc:
        raise UnsupportedCodecError(path, stream.codec_context.name) from exc
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, str(exc)) from exc


def _moov_index(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                fh: Any, path: str, size: tuple[int, int],
                ) -> tuple[list[tuple[int, bool]], list[av.VideoFrame]] | None:
    """The frame index of an MP4/MOV from its ``moov`` box alone, without reading the media
    data (what ``_demux_index`` would read: the whole file, costly for a remote source).

    FFmpeg builds the per-sample index (decode timestamps, keyframe flags) from the moov when it
    opens the file; presentation timestamps add the ``ctts`` offsets parsed here. Used only when
    the two agree on the sample count and FFmpeg dropped no sample (edit lists); otherwise None
    and the caller demuxes. The first frames are still decoded (rotation, proof it decodes,
    and the check of the listing: ``CHECKED_FRAMES``).
    """
    if not {"mov", "mp4"} & set((container.format.name or "").split(",")):
        return None
    entries = stream.index_entries
    n = len(entries)
    if n == 0 or n != stream.frames or any(e.is_discard for e in entries):
        return None
    moov = mp4_moov(fh)
    offsets = video_composition_offsets(moov, n) if moov is not None else None
    if offsets is None:
        return None
    if not offsets:
        offsets = [0] * n
    if len(offsets) != n:
        return None
    pts_keys = [(e.timestamp + off, bool(e.is_keyframe)) for e, off in zip(entries, offsets)]
    first: list[av.VideoFrame] = []
    with _decode_errors(path, stream):
        for packet in container.demux(stream):
            if packet.size:
                first.extend(_sized(_decode_quietly(stream, packet), path, size))
            if len(first) >= CHECKED_FRAMES:
                break
        else:
            first.extend(_sized(_decode_quietly(stream, None), path, size))
    return pts_keys, first[:CHECKED_FRAMES]


def check_index(fh: BinaryIO, path: str, budget: FrameBudget | None = None) -> None:
    """What can be checked before FFmpeg opens a file and builds its index: an MP4/MOV's
    sample tables against the file's size (``actors.mp4_tables``), and its video track's
    sample count against ``budget`` (frames of any size cost at least their per-frame work).
    Nothing for other containers."""
    tracks = moov_tracks(fh, path)
    if budget is None or not tracks:
        return
    video = [t.samples for t in tracks if t.handler == "vide"]
    most = budget.most_frames(0, 0)
    if video and most and video[0] > most:
        budget.check(path, 0, 0, video[0])


def probe(source: Source, limits: DimensionLimits = DimensionLimits(),
          budget: FrameBudget | None = None) -> VideoInfo:
    """Describe a video and index its frames. Raises a ``VideoError`` subclass on bad input,
    and ``budget``'s error for a video over it.

    The index comes from the container's listing (no decoding) when the first frames the
    decoder delivers (``CHECKED_FRAMES``) agree with it; otherwise (packed B-frames, broken
    composition offsets, repeated timestamps) from one sequential decode of the whole stream.
    Either way frame ``i`` is the i-th frame a sequential decode delivers (``FrameIndex``).
    Before FFmpeg opens the file its MP4 index is checked against the file (``check_index``);
    a frame count the container gives is checked against ``budget`` before the index is
    built, and every frame decoded here against the header's size (``check_frame_size``).
    """
    path = source_name(source)
    with _open_with_file(source, lambda fh: check_index(fh, path, budget)) as (container, fh):
        stream = _video_stream(container, path)
        ctx = stream.codec_context
        limits.check(path, ctx.width, ctx.height)
        size = (ctx.width, ctx.height)
        if budget is not None and stream.frames > 0:  # the container says how many
            budget.check(path, ctx.width, ctx.height, stream.frames)
        codec_name = ctx.name
        demuxer = (container.format.name or "").split(",")[0]
        time_base = Fraction(stream.time_base or Fraction(1, 90000))
        average_rate = float(stream.average_rate or 0.0)
        indexed = _moov_index(container, stream, fh, path, size) if fh is not None else None
        listed, first = indexed or _demux_index(container, stream, path, size, budget)
    if not listed:
        raise EmptyVideoError(path)
    if not first:
        raise CorruptVideoError(path, f"{len(listed)} packets but no decodable frame")
    listed.sort()
    if _listing_holds(listed, first):
        index = FrameIndex(pts=tuple(p for p, _ in listed),
                           keyframes=tuple(i for i, (_, key) in enumerate(listed) if key),
                           time_base=time_base)
    else:
        with _decoder(source, path, 1) as (container, stream):
            with _decode_errors(path, stream):
                delivered = [(_frame_key(frame, path), bool(frame.key_frame))
                             for frame in _delivered(container, stream, path, size)]
        index = decoded_index(listed, delivered, time_base)
    if demuxer in ELEMENTARY_STREAMS:
        # no container, no timestamps: after a seek the demuxer guesses them from the byte
        # position, so every decode starts at the first frame
        index = replace(index, keyframes=(0,))
    n = len(index)
    deltas = np.diff(np.asarray(index.pts, dtype=np.int64)) if n > 1 else np.zeros(0)
    if n > 1:
        span_s = index.time_s(n - 1)
        avg_fps = (n - 1) / span_s if span_s > 0 else average_rate
        variable = bool(deltas.max() > deltas.min() * (1 + _VFR_TOLERANCE) + 1)
        mean_delta = float(deltas.mean() * index.time_base)
    else:
        avg_fps = average_rate
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
        rotation=_display_rotation(first[0]),
        index=index,
    )


def _frame_key(frame: av.VideoFrame, path: str) -> int:
    """The timestamp the decoder gives a frame (its pts; its dts when it has none)."""
    key = frame.pts if frame.pts is not None else frame.dts
    if key is None:
        raise CorruptVideoError(path, "the decoder delivered a frame without a timestamp")
    return int(key)


def _listing_holds(listed: list[tuple[int, bool]], first: list[av.VideoFrame]) -> bool:
    """Whether the sorted listing describes what the decoder delivers: unique timestamps, and
    the first delivered frames in listed order (frames it skips are gaps)."""
    pts = [p for p, _ in listed]
    if any(b <= a for a, b in zip(pts, pts[1:])):
        return False
    last = -1
    for frame in first:
        key = frame.pts if frame.pts is not None else frame.dts
        i = bisect.bisect_left(pts, key) if key is not None else len(pts)
        if i >= len(pts) or pts[i] != key or i <= last:
            return False
        last = i
    return True


def decoded_index(listed: list[tuple[int, bool]], delivered: list[tuple[int, bool]],
                  time_base: Fraction) -> FrameIndex:
    """The index of what a sequential decode delivered: ``delivered`` holds (timestamp the
    decoder gave, keyframe) of each frame in delivery order, ``listed`` (timestamp, keyframe)
    of each packet the container lists.

    Frame ``i`` is the i-th delivered frame, except that each listed timestamp never delivered
    (a gap) takes the place its time gives it among the others. Presentation times are the
    sorted timestamps (listed and delivered): the decoder's order with the container's clock.
    Repeated timestamps are spread evenly over their span, on a finer time base.
    """
    if not delivered:
        raise ValueError("no frame was delivered")
    wanted = Counter(p for p, _ in listed)
    got = Counter(k for k, _ in delivered)
    missing = sorted((wanted - got).elements())
    slots = sorted([(k, False) for k in got.elements()] + [(m, True) for m in missing])
    gaps = tuple(i for i, (_, gap) in enumerate(slots) if gap)
    keys: list[int] = [t for t, _ in slots]
    keyframes: list[int] = []
    frames = iter(delivered)
    for i, (_, gap) in enumerate(slots):
        if not gap:
            keys[i], is_key = next(frames)
            if is_key:
                keyframes.append(i)
    times = [t for t, _ in slots]
    if any(b <= a for a, b in zip(times, times[1:])):
        times, time_base = _spread(times, time_base)
    return FrameIndex(pts=tuple(times), keyframes=tuple(keyframes), time_base=time_base,
                      keys=tuple(keys), gaps=gaps)


def _spread(times: list[int], time_base: Fraction) -> tuple[list[int], Fraction]:
    """Strictly increasing times evenly over the span of ``times`` (repeated timestamps), on a
    time base fine enough for each step to be at least one unit."""
    n, first, span = len(times), times[0], times[-1] - times[0]
    if span <= 0:  # all equal: one unit apart on the stream's time base
        return [first + i for i in range(n)], time_base
    scale = max(1, -(-(n - 1) // span))
    return ([first * scale + (i * span * scale) // (n - 1) for i in range(n)],
            time_base / scale)


def iter_frames(path: Source, frames: FrameRange, index: FrameIndex, *, threads: int = 1,
                predecessor: bool = False) -> Iterator[tuple[int, av.VideoFrame]]:
    """Yield ``(frame_index, frame)`` for every frame of ``frames`` the decoder delivers,
    exactly and in order; frames it never delivers (gaps) are skipped.

    Decodes from the keyframe at or before ``frames.start``; frames before the target are
    dropped. ``predecessor``: first yield the last frame delivered before ``frames.start``, if
    any (none: ``frames.start`` is at or before the video's first delivered frame). Raises
    ``CorruptVideoError`` when the decoder delivers frames the index does not describe.
    """
    if len(frames) == 0:
        return
    if frames.stop > len(index):
        raise ValueError(f"{frames} is past the end of a {len(index)}-frame video")
    name = source_name(path)
    with _decoder(path, name, threads) as (container, stream):
        yield from _decode_range(container, stream, name, frames, index, fresh=True,
                                 predecessor=predecessor, size=_header_size(stream))


@contextlib.contextmanager
def _decoder(path: Source, name: str, threads: int
             ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The opened video and its video stream, decoding on ``threads`` threads."""
    with _open(path) as container:
        stream = _video_stream(container, name)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = max(1, threads)
        yield container, stream


def _header_size(stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """The frame size the container's header gives (what the probe saw and priced): read
    before anything is decoded, since the decoder's context follows the frames after."""
    return stream.codec_context.width, stream.codec_context.height


def _delivered(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
               path: str, size: tuple[int, int]) -> Iterator[av.VideoFrame]:
    """Every frame the decoder delivers from here on, flushed at the end of the stream, each
    checked against ``size`` (``check_frame_size``). Empty packets are skipped (Theora and AVI
    mark a dropped or repeated frame with one; given to the decoder, it would read as the end
    of the stream), as the listing skips them."""
    for packet in container.demux(stream):
        if packet.size:
            yield from _sized(_decode_quietly(stream, packet), path, size)
    yield from _sized(_decode_quietly(stream, None), path, size)


def _prime(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Feed the stream's first packet to a new decoder before it seeks: some streams carry
    parameter sets (H.264 SPS/PPS) in their first packet only, and a later keyframe decodes
    to garbage without them (seen on real phone clips)."""
    for packet in container.demux(stream):
        if packet.size:
            _decode_quietly(stream, packet)
            return


class _Restart(Exception):
    """Decode again from an earlier keyframe (raised before anything was yielded)."""

    def __init__(self, keyframe: int) -> None:
        self.keyframe = keyframe


def _decode_range(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                  path: str, frames: FrameRange, index: FrameIndex, *, fresh: bool,
                  size: tuple[int, int], predecessor: bool = False,
                  ) -> Iterator[tuple[int, av.VideoFrame]]:
    """The delivered frames of ``frames`` from an open container (``fresh``: nothing decoded
    yet, so a range starting in the first GOP needs no seek); see ``iter_frames``."""
    keyframe = index.keyframe_at_or_before(max(0, frames.start - predecessor))
    seek = keyframe > 0 or not fresh
    if fresh and seek:
        _prime(container, stream)
    while True:
        if seek:
            container.seek(index.key(keyframe), stream=stream, backward=True, any_frame=False)
        try:
            yield from _walk(container, stream, path, frames, index, keyframe, predecessor, size)
            return
        except _Restart as again:
            keyframe, seek = again.keyframe, True
            if stream.codec_context.is_open:
                stream.codec_context.flush_buffers()


def _walk(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
          path: str, frames: FrameRange, index: FrameIndex, keyframe: int,
          predecessor: bool, size: tuple[int, int]) -> Iterator[tuple[int, av.VideoFrame]]:
    """Map each delivered frame to its place in ``index`` (decoding from ``keyframe``) and
    yield those of ``frames``. Frames the decoder skips are gaps; on a decoded index they must
    be the known ones."""
    known_gaps = frozenset(index.gaps) if index.keys is not None else None
    last, held, started = -1, None, False
    try:
        for frame in _delivered(container, stream, path, size):
            key = _frame_key(frame, path)
            if last < 0:  # the first frame after the seek: where it landed
                found = index.positions_of(key)
                pos = max((i for i in found if i <= keyframe), default=None)
                if pos is None:
                    if keyframe > 0:  # the seek landed past the target, or somewhere its
                        raise _Restart(0)  # timestamps are guessed (raw streams): from 0
                    pos = found[0] if found else None
            else:
                pos = index.position_of(key, after=last)
            if pos is None:
                raise CorruptVideoError(
                    path, f"the decoder delivered a frame (timestamp {key}) out of the index's "
                          f"order after frame {last}")
            _check_skipped(path, known_gaps, range(max(last + 1, frames.start - predecessor), pos))
            last = pos
            if pos < frames.start:
                held = (pos, frame)
                continue
            if pos >= frames.stop:
                return
            if not started:
                started = True
                if predecessor:
                    if held is not None:
                        yield held
                    elif keyframe > 0:  # the frames before the range were all gaps: look further back
                        raise _Restart(index.keyframe_at_or_before(keyframe - 1))
            yield pos, frame
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, f"decoding failed after frame {last}: {exc}") from exc
    _check_skipped(path, known_gaps, range(max(last + 1, frames.start), frames.stop))


def _check_skipped(path: str, known_gaps: frozenset[int] | None, skipped: range) -> None:
    """Frames of a decoded index the decoder skipped must be its known gaps (else this decode
    differs from the sequential one the index was built from)."""
    if known_gaps is None:
        return
    unknown = [i for i in skipped if i not in known_gaps]
    if unknown:
        raise CorruptVideoError(path, f"the decoder skipped frame {unknown[0]}, which a "
                                      "sequential decode delivers")


def luma(frame: av.VideoFrame) -> np.ndarray:
    """8-bit grayscale (the luma plane) of a frame, without a colour conversion when possible."""
    fmt = frame.format.name
    if fmt in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12",
               "gray"):
        plane = frame.planes[0]
        buf = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        return buf[:, : plane.width]
    return frame.to_ndarray(format="gray")


def to_display_bgr(frame: av.VideoFrame, rotation: int,
                   size: tuple[int, int] | None = None) -> np.ndarray:
    """Full-resolution BGR pixels, rotated upright for display; at ``size`` (the header's
    width, height: what the probe saw) when given and the frame differs from it."""
    if size is not None and (frame.width, frame.height) != tuple(size):
        bgr = frame.to_ndarray(format="bgr24", width=size[0], height=size[1])
    else:
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
        size = _header_size(stream)
        for n, frames in enumerate(pick_groups(wanted, index)):
            for i, frame in _decode_range(container, stream, name, frames, index, fresh=n == 0,
                                          size=size):
                if i in keep:
                    out[i] = to_display_bgr(frame, rotation, size)
    return out
