"""Videos read through file objects (actors/media_source.py, actors/video.py): the ranged file's
read-ahead and failure rule, and the MP4 index taken from the moov alone."""

from __future__ import annotations

import io

import numpy as np
import pytest

from actors.errors import CorruptVideoError, SourceGoneError
from actors.records import FrameRange
from actors.media_source import KnownBlocks, MediaSource, RangeFile, mp4_lacks_index
from actors.video import probe
from actors.video_decode import iter_frames, read_frames


class CountingSource:
    """A local file as a ``MediaSource`` through ``RangeFile``, counting what is fetched."""

    def __init__(self, path, block: int = 4096, max_block: int = 65536, fail_after: int | None = None):
        self.data = path.read_bytes()
        self.name = f"mem://{path.name}"
        self.block, self.max_block = block, max_block
        self.fail_after = fail_after
        self.fetched: list[tuple[int, int]] = []

    def fetch(self, offset: int, length: int) -> bytes:
        if self.fail_after is not None and len(self.fetched) >= self.fail_after:
            raise SourceGoneError(self.name, "HTTP 404: no object at this address")
        self.fetched.append((offset, length))
        return self.data[offset:offset + length]

    def open(self) -> RangeFile:
        return RangeFile(self.name, len(self.data), self.fetch, block=self.block,
                         max_block=self.max_block)


def test_read_ahead_doubles_while_sequential_and_restarts_after_a_seek():
    data = bytes(range(256)) * 4096  # 1 MiB
    calls: list[tuple[int, int]] = []
    fh = RangeFile("x", len(data), lambda o, n: calls.append((o, n)) or data[o:o + n],
                   block=1000, max_block=8000)
    out = b"".join(fh.read(700) for _ in range(40))
    assert out == data[:28000]
    assert [n for _, n in calls[:6]] == [1000, 2000, 4000, 8000, 8000, 8000]  # doubling, capped
    fh.seek(500_000)
    assert fh.read(10) == data[500_000:500_010]
    # three blocks read in a row: the one after the last was fetched ahead; the seek waited
    # for it (never two fetches at once) before its own, small again
    assert calls[6:] == [(31_000, 8000), (500_000, 1000)]
    fh.seek(100)  # the first block is still cached: no request
    assert fh.read(50) == data[100:150] and len(calls) == 8
    fh.seek(31_500)  # and so is the block fetched ahead
    assert fh.read(100) == data[31_500:31_600] and len(calls) == 8
    fh.seek(-10, io.SEEK_END)
    assert fh.read(100) == data[-10:] and fh.read(5) == b""


def test_an_open_reading_past_the_head_then_the_tail_fetches_nothing_ahead():
    data = bytes(range(256)) * 4096
    calls: list[tuple[int, int]] = []
    fh = RangeFile("x", len(data), lambda o, n: calls.append((o, n)) or data[o:o + n],
                   block=1000, max_block=8000)
    # the head and a little past it (a container's header), as PyAV reads: in small pieces
    assert fh.read(700) + fh.read(700) == data[:1400]
    fh.seek(-500, io.SEEK_END)  # then the index at the tail
    assert fh.read(500) == data[-500:]
    # a block fetched ahead would be waited for before the tail's fetch, so it would show here
    assert calls == [(0, 1000), (1000, 2000), (len(data) - 500, 500)]


def test_a_second_file_of_a_source_starts_with_the_blocks_the_first_held():
    data = bytes(range(256)) * 4096
    calls: list[tuple[int, int]] = []

    def fetch(offset: int, n: int) -> bytes:
        calls.append((offset, n))
        return data[offset:offset + n]

    known = KnownBlocks()
    first = RangeFile("x", len(data), fetch, block=1000, max_block=8000, known=known)
    first.read(100)  # an open: the head, then the index at the tail
    first.seek(-300, io.SEEK_END)
    first.read(300)
    first.close()
    assert calls == [(0, 1000), (len(data) - 300, 300)]
    second = RangeFile("x", len(data), fetch, block=1000, max_block=8000, known=known)
    assert second.read(100) == data[:100]
    second.seek(-300, io.SEEK_END)
    assert second.read(300) == data[-300:]
    assert len(calls) == 2  # both from the first file's blocks
    second.seek(500_000)
    assert second.read(10) == data[500_000:500_010] and len(calls) == 3
    # a file of another size (the source saw another object) takes no block past its end
    short = RangeFile("x", 2000, fetch, block=1000, max_block=8000, known=known)
    assert short.read(100) == data[:100] and len(calls) == 3
    assert short.seek(1500) and short.read(10) == data[1500:1510] and len(calls) == 4


def test_a_failed_fetch_is_raised_once_then_the_file_ends():
    calls = []

    def fetch(offset: int, length: int) -> bytes:
        calls.append(offset)
        raise SourceGoneError("x", "gone")

    fh = RangeFile("x", 10_000, fetch, block=100, max_block=100)
    with pytest.raises(SourceGoneError):
        fh.read(10)
    assert fh.read(10) == b"" and fh.read(10) == b"" and len(calls) == 1
    short = RangeFile("y", 10_000, lambda o, n: b"abc", block=100, max_block=100)
    with pytest.raises(Exception) as info:
        short.read(10)
    assert info.value.code == "range_protocol_violation"


@pytest.mark.parametrize("spec", [dict(bframes=2, gop=60), dict(bframes=3, gop=48),
                                  dict(bframes=0, gop=12), dict(vfr=True, bframes=2)],
                         ids=["b2", "b3", "no-b-short-gop", "vfr"])
def test_a_source_is_probed_from_its_moov_and_decodes_like_the_file(videos, spec):
    path, _ = videos.get(seconds=4, size=(320, 180), seed=61, **spec)
    source = CountingSource(path)
    assert isinstance(source, MediaSource)
    local, remote = probe(path), probe(source)
    assert remote.index == local.index and remote.summary() == {**local.summary(), "path": source.name}
    fetched = sum(n for _, n in source.fetched)
    assert fetched < 0.5 * len(source.data)  # the index, not the media data
    n = local.frame_count
    for frames in (FrameRange(0, 7), FrameRange(n // 2, n // 2 + 9), FrameRange(n - 3, n)):
        a = [f.to_ndarray(format="bgr24") for _, f in iter_frames(path, frames, local.index)]
        b = [f.to_ndarray(format="bgr24") for _, f in iter_frames(source, frames, local.index)]
        assert all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(frames)
    picks = read_frames(source, [n - 1, 2, n // 2], local.index)
    assert sorted(picks) == [2, n // 2, n - 1]


def test_a_cut_mp4_source_is_corrupt_and_a_failing_one_reports_its_own_error(videos, tmp_path):
    path, _ = videos.get(seconds=4, size=(320, 180), seed=61, bframes=2, gop=60)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[:20_000])
    with open(cut, "rb") as fh:
        assert mp4_lacks_index(fh)
    with open(path, "rb") as fh:
        assert not mp4_lacks_index(fh)
    with pytest.raises(CorruptVideoError, match="moov"):
        probe(CountingSource(cut))
    # the source dies after two fetches: the video fails with the source's error, not with
    # the "truncated stream" FFmpeg sees once reads return nothing
    with pytest.raises(SourceGoneError, match="HTTP 404"):
        probe(CountingSource(path, fail_after=2))
