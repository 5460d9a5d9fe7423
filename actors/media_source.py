"""Videos that are not local files: what ``actors.video_open`` needs to read them.

A ``MediaSource`` names a video (``name``: shown in errors and results, never with credentials)
and opens it as a seekable, read-only file object that PyAV reads through ``av.open(fileobj)``.
The readers themselves (HTTP ranges, object stores) live in ``jobs.sources``: they apply the
URL rules of ``jobs.url_rules``, which this layer does not import. What they share is here:

``RangeFile`` turns positioned reads of an object of known size (``fetch(offset, length)``: one
range request, one object-store ``read_at``) into the file object PyAV wants. PyAV reads 32 KiB
at a time; the file reads ahead in blocks that double while the reads are sequential (``block``
.. ``max_block``) and start small again after a seek, so a chunk fetches about what it decodes
in a handful of requests. Once three blocks in a row were read sequentially (a decode streaming
through the file, not an open reading past the head before it jumps to an index at the tail),
the next block is fetched ahead on a background thread while this one is decoded, so the
request's latency hides behind the decoding (at most one block past what the decode needs is
fetched for nothing); fetches never overlap (the reader's client is used by one thread at a
time), and a block fetched ahead but not wanted stays in the cache. The last few blocks stay
cached (FFmpeg goes back to the file's head after reading an index at its end). A source opened
more than once (probed, then decoded, then the picks extracted) keeps the blocks its last file
held in ``KnownBlocks``, so the next open starts with the head and the index instead of
fetching them again. A failed read raises its ``SourceError`` once and then answers
end-of-file: FFmpeg retries failed reads, and PyAV keeps only the last exception, so raising
again would cost a second timeout for nothing. ``failure`` keeps the error, so the caller can
report it instead of the "truncated stream" that FFmpeg sees next.
"""

from __future__ import annotations

import io
import struct
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Callable, Iterator, Protocol, Sequence, runtime_checkable

from actors.errors import RangeProtocolError, SourceError, VideoError

Fetch = Callable[[int, int], bytes]  # (offset, length) -> exactly ``length`` bytes

DEFAULT_BLOCK = 256 * 1024
DEFAULT_MAX_BLOCK = 8 * 1024 * 1024
KEEP_BLOCKS = 2  # recent blocks kept for re-reads (an index at the tail, the current one),
# besides the file's first block, which stays: FFmpeg goes back to the head after the tail


@runtime_checkable
class MediaSource(Protocol):
    """A video read through a file object (``jobs.sources`` builds them from URLs)."""

    name: str

    def open(self) -> BinaryIO | io.RawIOBase:
        """A new seekable, read-only file object on the video. Raises ``SourceError``."""


Block = tuple[int, bytes]  # (offset in the object, its bytes)


class KnownBlocks:
    """The blocks one source's files held when they closed, for its next open (bounded: the
    head and the ``KEEP_BLOCKS`` most recent of the last file closed). Only for opens of the
    same object: the source checks that it did not change."""

    def __init__(self) -> None:
        self.blocks: tuple[Block, ...] = ()

    def keep(self, blocks: Sequence[Block]) -> None:
        self.blocks = tuple(blocks)


class RangeFile(io.RawIOBase):
    """Seekable read-only file over positioned reads, with adaptive read-ahead (module doc).

    ``prefetched``: the object's first bytes, read by the opener (counted as read);
    ``known``: blocks an earlier file of the same object read (``KnownBlocks``), handed back
    to it when this one closes."""

    def __init__(self, name: str, size: int, fetch: Fetch, *, block: int = DEFAULT_BLOCK,
                 max_block: int = DEFAULT_MAX_BLOCK, prefetched: bytes = b"",
                 known: KnownBlocks | None = None,
                 on_close: Callable[[], None] | None = None) -> None:
        super().__init__()
        if size < 0 or block < 1 or max_block < block:
            raise ValueError("need size >= 0 and 1 <= block <= max_block")
        self.name = name
        self.size = size
        self._fetch = fetch
        self.block, self.max_block = block, max_block
        self._next = block
        self._known = known
        self._head: Block | None = None
        self._blocks: list[Block] = []  # the most recent others, newest last
        for start, data in (known.blocks if known else ()):
            if start + len(data) <= size:  # (the source checked it is the same object)
                self._keep(start, data)
        head = prefetched[:size]  # bytes [0, len(prefetched)) when the opener read them
        if head:
            self._head = (0, head)
        self._last_end = len(self._head[1]) if self._head else -1
        self.pos = 0
        self.requests = 0
        self.bytes_read = len(head)
        self.failure: SourceError | None = None
        self._on_close = on_close
        self._pool: ThreadPoolExecutor | None = None  # one thread: the block fetched ahead
        self._ahead: tuple[int, Future[bytes]] | None = None  # (start, its bytes)
        self._run = 0  # sequential fills in a row

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def read(self, n: int | None = -1) -> bytes:
        if self.failure is not None:
            return b""
        try:
            return self._read(n)
        except SourceError as exc:
            self.failure = exc
            raise
        except Exception as exc:  # a reader bug or a library error: still this video's error
            self.failure = SourceError(self.name, f"read failed ({type(exc).__name__}: {exc})")
            raise self.failure from exc

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def _read(self, n: int | None) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, max(0, self.size - self.pos))
        out = bytearray()
        while len(out) < n:
            block = self._cached(self.pos) or self._fill(self.pos, n - len(out))
            start, data = block
            off = self.pos - start
            piece = memoryview(data)[off: off + n - len(out)]
            out += piece
            self.pos += len(piece)
        return bytes(out)

    def _cached(self, pos: int) -> Block | None:
        for start, data in (*reversed(self._blocks), *([self._head] if self._head else [])):
            if start <= pos < start + len(data):
                return start, data
        return None

    def _fill(self, start: int, want: int) -> Block:
        sequential = start == self._last_end
        self._run = self._run + 1 if sequential else 0
        data = self._take_ahead(start)
        if data is None:
            self._next = min(self.max_block, self._next * 2) if sequential else self.block
            data = self._get(start, min(max(want, self._next), self.size - start))
        else:
            self._next = len(data)
        self._last_end = start + len(data)
        self._keep(start, data)
        if self._run >= 2 and self._last_end < self.size:  # streaming: fetch the next one now
            length = min(self.max_block, self._next * 2, self.size - self._last_end)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
            self._ahead = (self._last_end, self._pool.submit(self._get, self._last_end, length))
        return start, data

    def _get(self, start: int, length: int) -> bytes:
        data = self._fetch(start, length)
        self.requests += 1
        if len(data) != length:
            raise RangeProtocolError(self.name, f"asked for {length} bytes at offset {start}, "
                                                f"got {len(data)}")
        self.bytes_read += length
        return data

    def _take_ahead(self, start: int) -> bytes | None:
        """The block fetched ahead when it starts at ``start``. Any other is waited for (one
        fetch at a time) and cached when it came, its failure dropped: nobody asked for it."""
        if self._ahead is None:
            return None
        at, future = self._ahead
        self._ahead = None
        if at == start:
            return future.result()  # its SourceError is this read's
        try:
            self._keep(at, future.result())
        except Exception:  # noqa: BLE001 - a block nobody needs failed: nothing to report
            pass
        return None

    def _keep(self, start: int, data: bytes) -> None:
        if start == 0:
            self._head = (start, data)
        else:
            self._blocks = [*self._blocks[-(KEEP_BLOCKS - 1):], (start, data)]

    def close(self) -> None:
        if not self.closed:
            if self._known is not None:
                self._known.keep([*([self._head] if self._head else []), *self._blocks])
            self._blocks, self._head = [], None
            ahead, self._ahead = self._ahead, None
            if self._pool is not None:
                self._pool.shutdown(wait=False)
            if self._on_close is not None:
                if ahead is not None and not ahead[1].done():  # its client closes after it
                    on_close = self._on_close
                    ahead[1].add_done_callback(lambda _: on_close())
                else:
                    self._on_close()
        super().close()

    def stats(self) -> dict[str, int]:
        """Requests and bytes fetched so far (benchmarks and tests)."""
        return {"requests": self.requests, "bytes": self.bytes_read, "size": self.size}


def _file_boxes(fh: BinaryIO) -> Iterator[tuple[int, bytes, int]]:
    """(offset, type, size) of a file's top-level boxes, seeking from header to header (a few
    small reads, so a remote file is not read whole); a size-0 box runs to the end of the file.
    Stops at the end, at a short read, and after a broken header (size < 8)."""
    fh.seek(0, io.SEEK_END)
    total = fh.tell()
    offset = 0
    while offset + 8 <= total:
        fh.seek(offset)
        head = fh.read(16)
        if len(head) < 8:
            return
        size, kind = struct.unpack(">I4s", head[:8])
        if size == 1 and len(head) >= 16:
            size = struct.unpack(">Q", head[8:16])[0]
        elif size == 0:
            size = total - offset
        yield offset, kind, size
        if size < 8:
            return
        offset += size


def mp4_lacks_index(fh: BinaryIO) -> bool:
    """True when ``fh`` starts like an MP4/MOV (an ``ftyp`` box) but no top-level ``moov`` box
    follows: a file cut short before its index was written."""
    try:
        seen = False
        for offset, kind, _ in _file_boxes(fh):
            if (offset == 0 and kind != b"ftyp") or kind == b"moov":
                return False
            seen = True
        return seen
    except (OSError, VideoError):
        return False


# -- MP4 index without the media data --------------------------------------------------------

_MOOV_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts"})
MAX_MOOV_BYTES = 64 * 1024 * 1024


def _boxes(data: bytes, offset: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of the boxes in ``data[offset:end]``."""
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset:offset + 8])
        header = 8
        if size == 1:
            if offset + 16 > end:
                return
            size, header = struct.unpack(">Q", data[offset + 8:offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        if size < header or offset + size > end:
            return
        yield kind, offset + header, offset + size
        offset += size


def mp4_moov(fh: BinaryIO) -> bytes | None:
    """The ``moov`` box of an MP4/MOV file (found by walking the top-level box headers with
    seeks, so the media data is not read), or None. The file's position is left where it was
    (FFmpeg reads on from there)."""
    position = fh.tell()
    try:
        return _find_moov(fh)
    finally:
        fh.seek(position)


def _find_moov(fh: BinaryIO) -> bytes | None:
    for offset, kind, size in _file_boxes(fh):
        if size < 8:
            return None
        if kind == b"moov":
            if size > MAX_MOOV_BYTES:
                return None
            fh.seek(offset)
            data = fh.read(size)
            return data if len(data) == size else None
    return None


def video_composition_offsets(moov: bytes, samples: int) -> list[int] | None:
    """Per-sample composition offsets (``ctts``, decode order) of the first video track of a
    ``moov`` box that lists ``samples`` samples: ``[]`` when it has none (pts == dts), None
    when there is no video track or the table is malformed or claims other than ``samples``
    samples (checked before anything is expanded). Offsets are signed in both versions of the
    box, as FFmpeg reads them (version 0 files with negative offsets exist)."""
    for kind, start, end in _boxes(moov, 8, len(moov)):
        if kind != b"trak":
            continue
        found: dict[str, Any] = {}
        _walk_track(moov, start, end, samples, found)
        if found.get("video"):
            return None if found.get("bad") else found.get("ctts", [])
    return None


def _walk_track(moov: bytes, a: int, b: int, samples: int, found: dict[str, Any]) -> None:
    """Into ``found``: whether the track in ``moov[a:b]`` is video, and its composition
    offsets (``bad`` when its ``ctts`` does not fit its box or claims other than ``samples``)."""
    for k, x, y in _boxes(moov, a, b):
        if k in _MOOV_CONTAINERS:
            _walk_track(moov, x, y, samples, found)
        elif k == b"hdlr" and y - x >= 12:
            found["video"] = moov[x + 8:x + 12] == b"vide"
        elif k == b"ctts" and y - x >= 8:
            count = struct.unpack(">I", moov[x + 4:x + 8])[0]
            if x + 8 + 8 * count > y:
                found["bad"] = True
                return
            entries = [struct.unpack(">Ii", moov[x + 8 + 8 * i:x + 16 + 8 * i])
                       for i in range(count)]
            if sum(n for n, _ in entries) != samples:
                found["bad"] = True
                return
            found["ctts"] = [off for n, off in entries for _ in range(n)]
