"""A frame is what the decoder delivers (actors/video.py): streams whose container listing
disagrees with the decoder (wrong composition offsets, repeated timestamps, frames never
delivered, empty packets, raw elementary streams), each made here from a clean encode."""

from __future__ import annotations

import random
import struct
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np

from actors.records import FrameIndex, FrameRange
from actors.media_source import video_composition_offsets
from actors.video import probe
from actors.video_decode import iter_frames, read_frames
from media_fixtures import random_video


def _gray(frame: av.VideoFrame) -> np.ndarray:
    return frame.to_ndarray(format="gray")


def _ffmpeg_frames(path: Path) -> list[np.ndarray]:
    """What FFmpeg's own command-line decode delivers (every frame, as decoded, grey)."""
    import subprocess

    import imageio_ffmpeg

    with av.open(str(path)) as c:
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    raw = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
                          "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return [np.frombuffer(raw[i * w * h:(i + 1) * w * h], np.uint8).reshape(h, w)
            for i in range(len(raw) // (w * h))]


def _remux(src: Path, dst: Path, fmt: str,
           edit: Callable[[int, av.Packet], bytes | None] | None = None) -> None:
    """Copy the video packets of ``src`` into ``dst``; ``edit(i, packet)`` may change a
    packet's timestamps in place or return new bytes for it."""
    with av.open(str(src)) as i, av.open(str(dst), "w", format=fmt) as o:
        si = i.streams.video[0]
        so = o.add_stream_from_template(si)
        n = 0
        for packet in i.demux(si):
            if packet.size == 0:
                continue
            data = edit(n, packet) if edit else None
            if data is not None:
                new = av.Packet(data)
                new.pts, new.dts, new.time_base = packet.pts, packet.dts, packet.time_base
                new.is_keyframe = packet.is_keyframe
                packet = new
            packet.stream = so
            o.mux(packet)
            n += 1


def _exact_everywhere(path: Path, expected: list[np.ndarray]) -> None:
    """The whole video and ranges from anywhere (with their predecessor) give ``expected``."""
    info = probe(path)
    whole = {i: _gray(f) for i, f in iter_frames(str(path), FrameRange(0, len(info.index)),
                                                  info.index)}
    assert len(whole) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip((whole[i] for i in sorted(whole)), expected))
    delivered = sorted(whole)
    rng = random.Random(3)
    for _ in range(8):
        a = rng.randrange(len(info.index))
        b = min(len(info.index), a + rng.randrange(1, 30))
        got = list(iter_frames(str(path), FrameRange(a, b), info.index, predecessor=True))
        before = [i for i in delivered if i < a]
        assert [i for i, _ in got] == before[-1:] + [i for i in delivered if a <= i < b]
        assert all(np.array_equal(_gray(f), whole[i]) for i, f in got)
    picks = rng.sample(delivered, 3)
    frames = read_frames(str(path), picks, info.index)
    assert sorted(frames) == sorted(picks)


def test_composition_offsets_that_disagree_with_the_pictures(videos, tmp_path):
    """An H.264 stream with B-frames whose container says pts == dts (as broken muxers and
    box.mp4 do): the decoder shows the pictures in their real order, and so does framesift."""
    src, _ = videos.get(seconds=3, size=(320, 180), seed=4, bframes=3, gop=30)
    bad = tmp_path / "no-ctts.mkv"

    def flat(i: int, packet: av.Packet) -> None:
        packet.pts = packet.dts + 2 * 512 if packet.dts is not None else None  # keep pts >= dts

    _remux(src, bad, "matroska", flat)
    info = probe(bad)
    assert info.index.keys is not None  # listed order refused: indexed by decoding
    with av.open(str(src)) as c:
        original = [_gray(f) for f in c.decode(video=0)]
    assert len(info.index) == len(original)
    _exact_everywhere(bad, original)
    assert all(np.array_equal(a, b) for a, b in zip(_ffmpeg_frames(bad), original))


def test_repeated_timestamps(videos, tmp_path):
    """Every third packet repeats the timestamp of the one before: no frame is lost."""
    src, _ = videos.get(seconds=3, size=(320, 180), seed=5, bframes=0, gop=30)
    dup = tmp_path / "dup.mkv"
    last: list[int] = []

    def repeat(i: int, packet: av.Packet) -> None:
        if i % 3 == 2 and last:
            packet.pts = packet.dts = last[-1]
        last.append(packet.pts)

    _remux(src, dup, "matroska", repeat)
    info = probe(dup)
    assert info.frame_count == 90 and info.index.keys is not None
    with av.open(str(src)) as c:
        original = [_gray(f) for f in c.decode(video=0)]
    _exact_everywhere(dup, original)


def _mjpeg(path: Path) -> list[np.ndarray]:
    random_video(path, "avi", "mjpeg", 24, (96, 64), rate=10, pix_fmt="yuvj420p")
    with av.open(str(path)) as c:
        return [_gray(f) for f in c.decode(video=0)]


def test_a_listed_frame_the_decoder_never_delivers_is_a_gap(tmp_path):
    clean = tmp_path / "clean.avi"
    original = _mjpeg(clean)
    broken = tmp_path / "broken.avi"
    _remux(clean, broken, "avi", lambda i, p: b"\xff\xd8" + b"\x00" * 200 if i == 7 else None)
    info = probe(broken)
    assert info.frame_count == 24  # listed
    delivered = [i for i, _ in iter_frames(str(broken), FrameRange(0, 24), info.index)]
    assert delivered == [i for i in range(24) if i != 7]
    # a range starting right after the gap gets the frame before the gap as its predecessor
    got = list(iter_frames(str(broken), FrameRange(8, 10), info.index, predecessor=True))
    assert [i for i, _ in got] == [6, 8, 9]
    assert np.array_equal(_gray(got[0][1]), original[6])
    expected = [f for i, f in enumerate(original) if i != 7]
    ffmpeg = _ffmpeg_frames(broken)
    assert len(ffmpeg) == 23 and all(np.array_equal(a, b) for a, b in zip(ffmpeg, expected))


def test_frames_listed_past_the_end_of_the_data_are_gaps(videos):
    """A listing longer than what decodes (a discarded last sample, a file cut short): the
    frames that decode come out, the rest are skipped, nothing fails."""
    path, _ = videos.get(seconds=2, size=(320, 180), seed=6)
    info = probe(path)
    step = info.index.pts[1] - info.index.pts[0]
    longer = FrameIndex(info.index.pts + tuple(info.index.pts[-1] + step * k for k in (1, 2, 3)),
                        info.index.keyframes, info.index.time_base)
    got = [i for i, _ in iter_frames(str(path), FrameRange(50, len(longer)), longer)]
    assert got == list(range(50, info.frame_count))


def test_a_raw_mpeg1_elementary_stream_opens(tmp_path):
    """A bare MPEG-1 video stream (an old .mpg: FFmpeg's mpegvideo demuxer) is a video."""
    es = random_video(tmp_path / "old.mpg", "mpeg1video", "mpeg1video", 30, (176, 144))
    info = probe(es)
    assert info.codec == "mpeg1video" and info.frame_count == 30
    _exact_everywhere(es, _ffmpeg_frames(es))


def _moov_with_ctts(entries: list[tuple[int, int]], version: int = 0) -> bytes:
    def box(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", 8 + len(payload)) + kind + payload

    hdlr = box(b"hdlr", b"\x00" * 8 + b"vide" + b"\x00" * 12)
    ctts = box(b"ctts", bytes([version, 0, 0, 0]) + struct.pack(">I", len(entries))
               + b"".join(struct.pack(">Ii", n, off) for n, off in entries))
    stbl = box(b"stbl", ctts)
    minf = box(b"minf", stbl)
    mdia = box(b"mdia", hdlr + minf)
    return box(b"moov", box(b"trak", mdia))


def test_composition_offsets_are_signed_and_bounded_by_the_sample_count():
    moov = _moov_with_ctts([(2, 1024), (1, -512)], version=0)
    assert video_composition_offsets(moov, 3) == [1024, 1024, -512]  # as FFmpeg reads them
    # a table claiming more (or fewer) samples than the track lists is refused before it is
    # expanded: 300 million claimed samples allocate nothing
    assert video_composition_offsets(_moov_with_ctts([(300_000_000, 0)]), 3) is None
    assert video_composition_offsets(moov, 4) is None


def test_a_decoded_index_round_trips_through_its_columns():
    index = FrameIndex((0, 1, 2, 3), (0, 2), Fraction(1, 25), keys=(0, 2, 1, 3), gaps=(3,))
    assert FrameIndex.from_columns(index.to_columns()) == index
    assert index.position_of(1) == 2 and index.position_of(2, after=0) == 1
    plain = FrameIndex((0, 5, 9), (0,), Fraction(1, 25))
    assert FrameIndex.from_columns(plain.to_columns()) == plain
    assert plain.position_of(5) == 1 and plain.position_of(5, after=1) is None
