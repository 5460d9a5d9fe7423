"""Media bombs bounded by what the file can hold (issue 21): sample counts an MP4 claims are
checked against its boxes and its size before FFmpeg builds an index from them, a frame count
over the work budget is refused from the container's count or as soon as counting passes it,
and every decoded frame is checked against the size its header gives."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from actors.errors import AbsurdDimensionsError
from actors.mp4_tables import ImplausibleSampleCountError, moov_tracks
from actors.records import FrameRange
from actors.video import probe
from actors.video_decode import iter_frames, read_frames
from jobs.golden.limits import VideoTooLargeError, WorkLimits
from media_fixtures import random_video

BOMB = 85_000_000


def _box(data: bytearray, kind: bytes) -> int:
    """Offset of the (first) box of type ``kind`` (its size field)."""
    at = data.find(kind)
    assert at >= 4, kind
    return at - 4


def _bomb(src: Path, dst: Path) -> Path:
    """``src`` with its sample tables claiming ``BOMB`` samples: one constant sample size in
    ``stsz``, one run of ``BOMB`` in ``stts`` and ``BOMB`` samples per chunk in ``stsc`` (the
    file is no larger)."""
    data = bytearray(src.read_bytes())
    stsz = _box(data, b"stsz")
    struct.pack_into(">II", data, stsz + 12, 1, BOMB)  # sample_size 1, sample_count
    stts = _box(data, b"stts")
    struct.pack_into(">II", data, stts + 12, 1, BOMB)  # one entry: BOMB samples
    stsc = _box(data, b"stsc")
    struct.pack_into(">I", data, stsc + 12, 1)  # one entry ...
    struct.pack_into(">I", data, stsc + 20, BOMB)  # ... of BOMB samples per chunk
    dst.write_bytes(bytes(data))
    return dst


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> Path:
    return random_video(tmp_path_factory.mktemp("bombs") / "small.mp4", "mp4", "mpeg4", 60,
                        (64, 48))


def test_claimed_sample_counts_larger_than_the_file_are_refused_before_ffmpeg_opens_it(
        small_mp4, tmp_path, monkeypatch):
    assert [t.samples for t in moov_tracks(small_mp4.open("rb"), "v") if t.handler == "vide"] \
        == [60]
    bomb = _bomb(small_mp4, tmp_path / "bomb.mp4")
    assert bomb.stat().st_size < 64 * 1024
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    with pytest.raises(ImplausibleSampleCountError) as refused:
        probe(bomb)
    # nothing was expanded: FFmpeg never saw the file (it would index 85,000,000 samples)
    assert opened == []
    assert refused.value.code == "implausible_sample_count"
    assert f"{BOMB}" in str(refused.value) and "bomb.mp4" in str(refused.value)
    # each table alone is enough
    for kind, at, value in ((b"stts", 12, (1, BOMB)), (b"stsc", 20, (BOMB,))):
        data = bytearray(small_mp4.read_bytes())
        off = _box(data, kind)
        struct.pack_into(">" + "I" * len(value), data, off + at, *value)
        (tmp_path / "one.mp4").write_bytes(bytes(data))
        with pytest.raises(ImplausibleSampleCountError, match=kind.decode()):
            probe(tmp_path / "one.mp4")
    assert probe(small_mp4).frame_count == 60  # the honest file still opens


def test_a_table_listing_more_entries_than_its_box_holds_is_refused(small_mp4, tmp_path):
    data = bytearray(small_mp4.read_bytes())
    stsz = _box(data, b"stsz")
    struct.pack_into(">I", data, stsz + 16, 2**30)  # listed sizes: 2**30 of them, 240 bytes
    (tmp_path / "stsz.mp4").write_bytes(bytes(data))
    with pytest.raises(ImplausibleSampleCountError, match="stsz"):
        probe(tmp_path / "stsz.mp4")


def test_a_frame_count_over_the_budget_is_refused_from_the_index_without_a_demux(
        small_mp4, tmp_path, monkeypatch):
    budget = WorkLimits(max_frames=50)
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    with pytest.raises(VideoTooLargeError, match="60 frames"):
        probe(small_mp4, budget=budget)
    assert opened == []  # the moov box said it: refused before FFmpeg built its index
    monkeypatch.undo()
    avi = random_video(tmp_path / "v.avi", "avi", "mpeg4", 60, (64, 48))
    with pytest.raises(VideoTooLargeError, match="60 frames"):  # the AVI header's count
        probe(avi, budget=budget)
    # Matroska gives no count: the probe stops counting at the first packet past the budget
    mkv = random_video(tmp_path / "v.mkv", "matroska", "mpeg4", 60, (64, 48))
    with pytest.raises(VideoTooLargeError, match="51 frames"):
        probe(mkv, budget=budget)
    assert probe(mkv, budget=WorkLimits(max_frames=60)).frame_count == 60


def test_per_frame_work_prices_many_tiny_frames_like_the_work_they_are():
    limits = WorkLimits(max_frames=108_000, max_pixel_frames=100_000_000_000)
    # 16 minutes of 1080p30 still fits, as before the per-frame price
    limits.check("hd", 1920, 1080, 28_000)
    # 100,000 frames of 16x16 are 25.6 Mpx of pixels, but 100,000 frames of analysis
    with pytest.raises(VideoTooLargeError, match="per-frame"):
        limits.check("tiny", 16, 16, 100_000)
    assert 60_000 < limits.most_frames(16, 16) < 100_000


def _mjpeg_avi(path: Path, sizes: list[tuple[int, int]], header: tuple[int, int]) -> Path:
    """An MJPEG AVI whose header says ``header`` but whose frames have ``sizes``."""
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mjpeg", rate=25)
        stream.width, stream.height = header
        stream.pix_fmt = "yuvj420p"
        encoders: dict[tuple[int, int], av.CodecContext] = {}
        for i, (w, h) in enumerate(sizes):
            enc = encoders.get((w, h))
            if enc is None:
                enc = encoders[(w, h)] = av.CodecContext.create("mjpeg", "w")
                enc.width, enc.height, enc.pix_fmt = w, h, "yuvj420p"
                enc.time_base = Fraction(1, 25)
                enc.open()
            img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
            frame.pts = i
            for packet in enc.encode(frame):
                packet.stream = stream
                packet.time_base = Fraction(1, 25)
                packet.pts = packet.dts = i
                out.mux(packet)
    return path


def test_frames_larger_than_the_header_fail_the_video_as_absurd_dimensions(tmp_path):
    # the header says 320x240 (as do the first frames, which FFmpeg reads to fill it in); the
    # third is 2000x2000: the probe, which decodes the first frames, refuses it
    early = _mjpeg_avi(tmp_path / "early.avi", [(320, 240)] * 2 + [(2000, 2000)] * 2,
                       (320, 240))
    with pytest.raises(AbsurdDimensionsError, match="2000x2000") as refused:
        probe(early)
    assert refused.value.code == "absurd_dimensions"
    # later frames outgrow the header, past what the probe decodes: decoding them fails
    sizes = [(320, 240)] * 30 + [(2000, 2000)] * 2
    later = _mjpeg_avi(tmp_path / "later.avi", sizes, (320, 240))
    info = probe(later)
    assert (info.width, info.height, info.frame_count) == (320, 240, 32)
    with pytest.raises(AbsurdDimensionsError, match="2000x2000"):
        for _ in iter_frames(later, FrameRange(0, 32), info.index):
            pass
    with pytest.raises(AbsurdDimensionsError):
        read_frames(later, [31], info.index)


def test_picks_are_extracted_at_the_size_the_probe_saw(tmp_path):
    sizes = [(320, 240)] * 3 + [(160, 120)] * 3
    video = _mjpeg_avi(tmp_path / "smaller.avi", sizes, (320, 240))
    info = probe(video)
    picks = read_frames(video, [1, 4], info.index)
    assert picks[1].shape == picks[4].shape == (240, 320, 3)


def test_the_executor_estimate_never_gives_ffmpeg_an_impossible_index(small_mp4, tmp_path,
                                                                      monkeypatch):
    from jobs.golden.executor import estimate_work_s

    bomb = _bomb(small_mp4, tmp_path / "bomb.mp4")
    opened: list[str] = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: opened.append(str(a[0])) or real_open(*a, **k))
    assert estimate_work_s([str(bomb)]) == 0.0  # no work: it fails at its probe
    assert opened == []


def test_quicktime_sound_counting_decoded_samples_is_not_a_bomb(tmp_path):
    """QuickTime's version-0 sound descriptions give compressed sound (IMA4, MACE) a constant
    sample size of 1 and count decoded samples, more than the file's bytes: such a sound
    track is not refused (a video track claiming the same is)."""
    path = tmp_path / "ima4.mov"
    with av.open(str(path), "w", format="mov") as out:
        video = out.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("adpcm_ima_qt", rate=48000, layout="mono")
        for _ in range(50):
            for packet in video.encode(av.VideoFrame.from_ndarray(
                    np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                out.mux(packet)
        size = sound.codec_context.frame_size
        for i in range(96000 // size):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, size), np.int16), format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = 48000, i * size
            for packet in sound.encode(frame):
                out.mux(packet)
        for stream in (video, sound):
            for packet in stream.encode(None):
                out.mux(packet)
    data = bytearray(path.read_bytes())
    sound_stsz = data.find(b"stsz", data.find(b"soun")) - 4  # the sound track's table
    struct.pack_into(">II", data, sound_stsz + 12, 1, 96_000)  # decoded samples, size 1
    counted = tmp_path / "counted.mov"
    counted.write_bytes(bytes(data))
    assert 96_000 > len(data)
    tracks = moov_tracks(counted.open("rb"), "v")
    assert [(t.handler, t.samples) for t in tracks] == [("vide", 50), ("soun", 96_000)]
    assert probe(counted).frame_count == 50
    video_stsz = data.find(b"stsz") - 4  # the same claim on the video track is refused
    struct.pack_into(">II", data, video_stsz + 12, 1, 96_000)
    counted.write_bytes(bytes(data))
    with pytest.raises(ImplausibleSampleCountError):
        moov_tracks(counted.open("rb"), "v")
