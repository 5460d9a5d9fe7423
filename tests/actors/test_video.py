"""Probe and exact range decoding (actors/video.py, actors/video_decode.py)."""

from __future__ import annotations

import random
from pathlib import Path

import av
import numpy as np
import pytest

from actors.errors import (AbsurdDimensionsError, ContainerNotAllowedError, CorruptVideoError,
                           EmptyVideoError, NotAVideoError, NoVideoStreamError,
                           UnsupportedCodecError, VideoNotFoundError)
from actors.records import FrameRange
from actors.video import probe
from actors.video_decode import iter_frames, read_frames
from actors.video_limits import DimensionLimits
from media_fixtures import hls_playlist, mpegts_copy


def _sequential(path: Path, info) -> dict[int, np.ndarray]:
    return {i: f.to_ndarray(format="bgr24")
            for i, f in iter_frames(str(path), FrameRange(0, info.frame_count), info.index)}


def _plain_decode(path: Path) -> list[np.ndarray]:
    """Frames as a plain PyAV loop gives them (no seeking, no index)."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def test_probe_reports_the_stream(videos):
    path, truth = videos.get(seconds=4, size=(480, 270), fps=30)
    info = probe(path)
    assert info.frame_count == truth.frame_count == 120
    assert (info.width, info.height) == (480, 270)
    assert info.codec == "h264"
    assert info.avg_fps == pytest.approx(30.0)
    assert not info.variable_fps
    assert info.duration_s == pytest.approx(4.0, abs=0.05)
    assert info.rotation == 0
    assert info.index.keyframes[0] == 0


def test_probe_detects_variable_frame_rate(videos):
    path, truth = videos.get(seconds=4, vfr=True)
    info = probe(path)
    assert info.variable_fps
    assert info.frame_count == truth.frame_count
    deltas = {b - a for a, b in zip(info.index.pts, info.index.pts[1:])}
    assert len(deltas) > 5  # frame durations really vary


@pytest.mark.parametrize("kind", ["bframes", "vfr", "short_gop"])
def test_overlapping_ranges_are_byte_identical_to_one_sequential_decode(videos, kind):
    path, _ = {"bframes": lambda: videos.get(seconds=5, bframes=3, gop=48),
               "vfr": lambda: videos.get(seconds=4, vfr=True, bframes=2),
               "short_gop": lambda: videos.get(seconds=4, bframes=0, gop=12)}[kind]()
    info = probe(path)
    seq = _sequential(path, info)
    plain = _plain_decode(path)
    assert len(seq) == len(plain) == info.frame_count
    assert all(np.array_equal(seq[i], plain[i]) for i in range(info.frame_count))
    rng = random.Random(7)
    n = info.frame_count
    ranges = [(0, 1), (n - 1, n), (1, 40), (39, 90), (n // 2, n)]
    ranges += [(a, min(n, a + rng.randint(1, 30))) for a in rng.sample(range(n), 12)]
    for a, b in ranges:
        got = list(iter_frames(str(path), FrameRange(a, b), info.index))
        assert [i for i, _ in got] == list(range(a, b))
        for i, frame in got:
            assert np.array_equal(frame.to_ndarray(format="bgr24"), seq[i]), (kind, a, b, i)


def test_read_frames_returns_exactly_the_wanted_frames(videos):
    path, _ = videos.get(seconds=4)
    info = probe(path)
    seq = _sequential(path, info)
    got = read_frames(str(path), [77, 3, 77, 110], info.index)
    assert sorted(got) == [3, 77, 110]
    assert all(np.array_equal(got[i], seq[i]) for i in got)


def test_range_past_the_end_is_refused(videos):
    path, _ = videos.get(seconds=4)
    info = probe(path)
    with pytest.raises(ValueError, match="past the end"):
        list(iter_frames(str(path), FrameRange(0, info.frame_count + 1), info.index))


# ---- bad input: each gives its own typed error with an actionable message -------------------

def test_missing_file(tmp_path):
    with pytest.raises(VideoNotFoundError, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 100)
    with pytest.raises(NotAVideoError, match="Expected a video file"):
        probe(p)
    with pytest.raises(NotAVideoError, match="directory"):
        probe(tmp_path)


def test_audio_only(tmp_path):
    p = tmp_path / "voice.m4a"
    with av.open(str(p), "w") as out:
        s = out.add_stream("aac", rate=16000)
        for i in range(20):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp",
                                               layout="mono")
            frame.sample_rate = 16000
            frame.pts = i * 1024
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)
    with pytest.raises(NoVideoStreamError, match="found: audio"):
        probe(p)


def test_zero_frames(tmp_path):
    p = tmp_path / "empty.avi"
    with av.open(str(p), "w") as out:
        s = out.add_stream("mjpeg", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuvj420p"
        out.start_encoding()  # header with a video stream, then no packets at all
    with pytest.raises(EmptyVideoError, match="zero frames"):
        probe(p)


def _mjpeg_avi(path: Path, size: int = 64, frames: int = 5) -> None:
    with av.open(str(path), "w", format="avi") as out:
        s = out.add_stream("mjpeg", rate=10)
        s.width = s.height = size
        s.pix_fmt = "yuvj420p"
        for i in range(frames):
            img = np.full((size, size, 3), i * 20, np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(pkt)
        for pkt in s.encode(None):
            out.mux(pkt)


def test_unsupported_codec(tmp_path):
    p = tmp_path / "odd.avi"
    _mjpeg_avi(p)
    data = p.read_bytes()
    assert data.count(b"MJPG") >= 1
    p.write_bytes(data.replace(b"MJPG", b"QQQQ").replace(b"mjpg", b"qqqq"))
    with pytest.raises(UnsupportedCodecError, match="Transcode"):
        probe(p)


def test_truncated_mp4(videos, tmp_path):
    path, _ = videos.get(seconds=4)
    cut = tmp_path / "cut.mp4"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptVideoError, match="truncated or corrupt"):
        probe(cut)


def test_an_index_that_does_not_describe_the_stream_fails_loudly(videos, tmp_path):
    """Decoding a remuxed, shortened copy with the original's index (other timestamps): the
    decoder delivers frames the index does not know, which is corrupt, never silently wrong.
    (Frames an index lists past what decodes are gaps: tests/actors/test_decoder_order.py.)"""
    path, _ = videos.get(seconds=4)
    info = probe(path)
    broken = tmp_path / "broken.mkv"
    with av.open(str(path)) as src, av.open(str(broken), "w") as dst:
        s_in = src.streams.video[0]
        s_out = dst.add_stream_from_template(s_in)
        for i, pkt in enumerate(src.demux(s_in)):
            if pkt.size and i < 80:
                pkt.stream = s_out
                dst.mux(pkt)
    short = probe(broken)
    assert short.frame_count < info.frame_count
    with pytest.raises(CorruptVideoError):
        list(iter_frames(str(broken), FrameRange(0, short.frame_count), info.index))


def test_absurd_dimensions(tmp_path):
    p = tmp_path / "tiny.avi"
    _mjpeg_avi(p, size=8)
    with pytest.raises(AbsurdDimensionsError, match="8x8"):
        probe(p)
    with pytest.raises(AbsurdDimensionsError, match="outside the supported range"):
        DimensionLimits().check("x", 40000, 20000)
    DimensionLimits().check("x", 3840, 2160)


# ---- inputs that would make FFmpeg read other files -----------------------------------------

def test_a_playlist_naming_a_private_file_is_refused(videos, tmp_path):
    """An uploaded HLS playlist listing file:///... would be analysed as that file: the
    container allow-list refuses the playlist before FFmpeg reads what it names."""
    src, _ = videos.get(seconds=1, size=(320, 180), seed=5)
    secret = mpegts_copy(src, tmp_path / "private" / "secret.ts")
    info = probe(secret)  # the private file itself is a readable video (MPEG-TS is allowed)
    playlist = tmp_path / "upload.m3u8"
    playlist.write_text(hls_playlist(f"file://{secret}"))
    with pytest.raises(ContainerNotAllowedError, match="container format not allowed") as err:
        probe(playlist)
    assert err.value.code == "container_not_allowed" and isinstance(err.value, NotAVideoError)
    with pytest.raises(ContainerNotAllowedError):
        list(iter_frames(str(playlist), FrameRange(0, 1), info.index))
    listed = tmp_path / "private" / "list.ffconcat"  # a concat list next to its target
    listed.write_text("ffconcat version 1.0\nfile secret.ts\n")
    with pytest.raises(ContainerNotAllowedError):
        probe(listed)


def test_a_file_name_that_looks_like_a_protocol_is_that_file(videos, tmp_path, monkeypatch):
    src, _ = videos.get(seconds=1, size=(320, 180), seed=5)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.mp4").write_bytes(src.read_bytes())
    (tmp_path / "concat:a.mp4").write_text("not a video\n" * 50)  # FFmpeg's concat protocol
    assert probe("a.mp4").frame_count == 30
    with pytest.raises(NotAVideoError):
        probe("concat:a.mp4")
