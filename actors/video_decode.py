"""Decode exact frame ranges of a probed video (``actors.video.probe`` gives the index).

``iter_frames`` seeks to the keyframe at or before a range, decodes forward and places every
delivered frame by the timestamp the decoder gives it, so ranges decoded anywhere give the
frames of the sequential decode, B-frames and variable frame rate included. A listed frame the
decoder never delivers is a *gap*: skipped, never a failure. ``read_frames`` decodes only the
picked frames (upright BGR, ``to_display_bgr``); ``luma`` is a frame's grayscale plane.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import av
import av.error
import numpy as np

from actors.errors import CorruptVideoError, UnsupportedCodecError
from actors.records import FrameIndex, FrameRange
from actors.video_limits import sized
from actors.video_open import Source, open_video, source_name, video_stream


def decode_quietly(stream: av.video.stream.VideoStream, packet: Any) -> list[av.VideoFrame]:
    """The frames one packet (None: the flush) gives; a packet the decoder rejects gives none
    (a broken slice: FFmpeg goes on with the next one, and so does a sequential decode)."""
    try:
        return list(stream.codec_context.decode(packet))
    except av.error.InvalidDataError:
        return []


@contextlib.contextmanager
def decode_errors(path: str, stream: av.video.stream.VideoStream) -> Iterator[None]:
    """FFmpeg's errors while demuxing or decoding, as the typed errors of a bad video."""
    try:
        yield
    except av.error.DecoderNotFoundError as exc:
        raise UnsupportedCodecError(path, stream.codec_context.name) from exc
    except av.error.FFmpegError as exc:
        raise CorruptVideoError(path, str(exc)) from exc


def frame_key(frame: av.VideoFrame, path: str) -> int:
    """The timestamp the decoder gives a frame (its pts; its dts when it has none)."""
    key = frame.pts if frame.pts is not None else frame.dts
    if key is None:
        raise CorruptVideoError(path, "the decoder delivered a frame without a timestamp")
    return int(key)


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
    with open_decoder(path, name, threads) as (container, stream):
        yield from _decode_range(container, stream, name, frames, index, fresh=True,
                                 predecessor=predecessor, size=_header_size(stream))


@contextlib.contextmanager
def open_decoder(path: Source, name: str, threads: int
             ) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """The opened video and its video stream, decoding on ``threads`` threads."""
    with open_video(path) as container:
        stream = video_stream(container, name)
        stream.thread_type = "AUTO" if threads > 1 else "SLICE"
        stream.codec_context.thread_count = max(1, threads)
        yield container, stream


def _header_size(stream: av.video.stream.VideoStream) -> tuple[int, int]:
    """The frame size the container's header gives (what the probe saw and priced): read
    before anything is decoded, since the decoder's context follows the frames after."""
    return stream.codec_context.width, stream.codec_context.height


def delivered_frames(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
               path: str, size: tuple[int, int]) -> Iterator[av.VideoFrame]:
    """Every frame the decoder delivers from here on, flushed at the end of the stream, each
    checked against ``size`` (``check_frame_size``). Empty packets are skipped (Theora and AVI
    mark a dropped or repeated frame with one; given to the decoder, it would read as the end
    of the stream), as the listing skips them."""
    for packet in container.demux(stream):
        if packet.size:
            yield from sized(decode_quietly(stream, packet), path, size)
    yield from sized(decode_quietly(stream, None), path, size)


def _prime(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> None:
    """Feed the stream's first packet to a new decoder before it seeks: some streams carry
    parameter sets (H.264 SPS/PPS) in their first packet only, and a later keyframe decodes
    to garbage without them (seen on real phone clips)."""
    for packet in container.demux(stream):
        if packet.size:
            decode_quietly(stream, packet)
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
        for frame in delivered_frames(container, stream, path, size):
            key = frame_key(frame, path)
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
    return dict(each_frame(path, wanted, index, rotation, threads))


def each_frame(path: Source, wanted: list[int], index: FrameIndex, rotation: int = 0,
               threads: int = 1) -> Iterator[tuple[int, np.ndarray]]:
    """``read_frames`` one frame at a time, in frame order: ``(frame_index, bgr)`` (a caller
    that keeps what it needs of each holds one full-resolution picture at a time)."""
    keep = set(wanted)
    if not keep:
        return
    if max(keep) >= len(index) or min(keep) < 0:
        raise ValueError(f"frames {sorted(keep)} are not all in a {len(index)}-frame video")
    name = source_name(path)
    with open_decoder(path, name, threads) as (container, stream):
        size = _header_size(stream)
        for n, frames in enumerate(pick_groups(wanted, index)):
            for i, frame in _decode_range(container, stream, name, frames, index, fresh=n == 0,
                                          size=size):
                if i in keep:
                    yield i, to_display_bgr(frame, rotation, size)
