"""Probe a video: describe it and index its frames with PyAV.

A frame is what the decoder delivers: frame ``i`` is the i-th frame a plain sequential decode
gives (FFmpeg's output order). ``probe`` builds a ``FrameIndex`` (time of every frame, keyframe
positions) from the container's listing, without decoding, when the first frames the decoder
delivers agree with that listing; when they do not (MPEG-4 Part 2 with packed B-frames, an
H.264 stream whose composition offsets disagree with its pictures, repeated timestamps), from
one sequential decode. The index is what ``actors.video_decode`` decodes exact ranges by; a
listed frame the decoder never delivers is a *gap*: skipped, never a failure. Opening a video
(the container allow-list) is ``actors.video_open``; the frame-size limits
``actors.video_limits``.
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from typing import Any, BinaryIO

import av
import numpy as np

from actors.errors import CorruptVideoError, EmptyVideoError
from actors.media_source import mp4_moov, video_composition_offsets
from actors.mp4_tables import moov_tracks
from actors.records import FrameIndex, VideoInfo
from actors.video_decode import (decode_errors, decode_quietly, delivered_frames, frame_key,
                                 open_decoder)
from actors.video_limits import DimensionLimits, FrameBudget, sized
from actors.video_open import ELEMENTARY_STREAMS, Source, open_with_file, source_name, video_stream

# Frame-rate spread above which a stream counts as variable frame rate.
_VFR_TOLERANCE = 0.02
# The probe decodes this many frames to check the container's listing against what the decoder
# delivers (reordering shows within the first frames that have B-frames).
CHECKED_FRAMES = 24
# The frame sizes ``probe`` accepts unless told otherwise (frozen: one shared default).
_DEFAULT_LIMITS = DimensionLimits()


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
    with decode_errors(path, stream):
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
                first.extend(sized(decode_quietly(stream, packet), path, size))
        if len(first) < CHECKED_FRAMES and pts_keys:
            first.extend(sized(decode_quietly(stream, None), path, size))
    return pts_keys, first[:CHECKED_FRAMES]


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
    with decode_errors(path, stream):
        for packet in container.demux(stream):
            if packet.size:
                first.extend(sized(decode_quietly(stream, packet), path, size))
            if len(first) >= CHECKED_FRAMES:
                break
        else:
            first.extend(sized(decode_quietly(stream, None), path, size))
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


def probe(source: Source, limits: DimensionLimits = _DEFAULT_LIMITS,
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
    with open_with_file(source, lambda fh: check_index(fh, path, budget)) as (container, fh):
        stream = video_stream(container, path)
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
        with open_decoder(source, path, 1) as (container, stream):
            with decode_errors(path, stream):
                delivered = [(frame_key(frame, path), bool(frame.key_frame))
                             for frame in delivered_frames(container, stream, path, size)]
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
