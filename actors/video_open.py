"""Open a video for PyAV: a local path or a ``MediaSource`` (``actors.media_source``), through
the container allow-list, with typed errors for what is not a readable video, and its video
stream.

FFmpeg picks a demuxer from the file's content and name; only those on ``ALLOWED_CONTAINERS``
may open an input (``CONTAINER_OPTIONS``), and a local file is read through FFmpeg's ``file``
protocol only (``ffmpeg_input_url``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Union, cast

import av
import av.error

from actors.errors import (
    ContainerNotAllowedError,
    CorruptVideoError,
    EmptyVideoError,
    NotAVideoError,
    NoVideoStreamError,
    UnsupportedCodecError,
    VideoError,
    VideoNotFoundError,
)
from actors.media_source import MediaSource, mp4_lacks_index

# A video: a local path, or a source read through a file object (``actors.media_source``).
Source = Union[str, "os.PathLike[str]", MediaSource]


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
    ``open_video`` adds the typed errors). Raises ``av.error.ArgumentError`` for a container that
    is not allowed."""
    return av.open(ffmpeg_input_url(path), mode="r", container_options=dict(CONTAINER_OPTIONS))


def container_format(path: str | os.PathLike[str]) -> str:
    """The demuxer's short name (``mov``, ``matroska``, ...) of an allowed local video, to
    force the same demuxer elsewhere (the ffmpeg binary's ``-f``)."""
    with open_video(str(path)) as container:
        return container.format.name.split(",")[0]


def open_video(source: Source):
    """Open a video for reading (a path or a ``MediaSource``): a context manager giving the
    input container, or the typed error of what is not an allowed, readable video."""
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
def open_with_file(source: Source, check: Callable[[BinaryIO], None] | None = None,
                    ) -> Iterator[tuple[av.container.InputContainer, Any]]:
    """The container, and the file object under it for a ``MediaSource`` (None for a path).
    ``check(fh)``: called on the file before FFmpeg opens it (it raises to refuse it)."""
    if _is_path(source):
        if check is not None and os.path.isfile(str(source)):
            with open(str(source), "rb") as fh:
                check(fh)
        with open_video(source) as container:
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


def video_stream(container: av.container.InputContainer, path: str) -> av.video.stream.VideoStream:
    """The container's first video stream, or the typed error of a file without a decodable one."""
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
