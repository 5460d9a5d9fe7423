"""The sample tables of an MP4/MOV checked against what the file can hold, before FFmpeg
reads them.

FFmpeg builds its per-sample index from the ``moov`` box when it opens the file, sized by the
counts the tables claim: a 3 KB file whose ``stts``/``stsz``/``stsc`` claim 85,000,000 samples
(one constant sample size, one run of 85,000,000) makes it allocate gigabytes. Every sample
takes at least one byte of the file (``stsz``'s constant size when it gives one), and every
table's entries must fit in its box, so a claim larger than the file is refused here
(``ImplausibleSampleCountError``) with a few small reads, before FFmpeg or PyAV expand
anything. The video track's sample count is also what ``probe`` checks against the work
budget before FFmpeg opens the file.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from typing import BinaryIO

from actors.errors import CorruptVideoError
from actors.media_source import MAX_MOOV_BYTES, _boxes, _file_boxes

_CONTAINERS = frozenset({b"moov", b"trak", b"mdia", b"minf", b"stbl"})
# Top-level boxes an MP4/MOV may start with: any other start is not one (nothing to check, and
# its bytes are not walked as box headers).
_FIRST_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot",
                          b"uuid", b"styp", b"sidx", b"moof", b"junk", b"pdin"})
# Top-level boxes walked to find ``moov`` (a fragmented file puts it first, a plain one after
# ``ftyp`` and ``mdat``): a file of tiny boxes is not walked box by box to its end.
MAX_TOP_BOXES = 10_000
# Old QuickTime sound tracks with a constant sample size count decoded samples, not stored
# ones (IMA4 stores 64 samples in 34 bytes, MACE 6:1, GSM 160 in 33): their claims may exceed
# the file's bytes by this factor. FFmpeg indexes such tracks by chunk, not by sample.
SOUND_SAMPLES_PER_BYTE = 64
# Bytes per entry of the tables whose entry count FFmpeg allocates by.
_ENTRY_BYTES = {b"stts": 8, b"ctts": 8, b"stsc": 12, b"stco": 4, b"co64": 8, b"stss": 4,
                b"stps": 4}


class ImplausibleSampleCountError(CorruptVideoError):
    """An MP4/MOV whose index claims more samples (or table entries) than the file holds."""

    code = "implausible_sample_count"


@dataclass(frozen=True)
class TrackSamples:
    """What one track's tables claim: its handler (``vide``, ``soun``, ...) and samples."""

    handler: str
    samples: int


def _u32(data: bytes, at: int) -> int:
    return struct.unpack(">I", data[at:at + 4])[0]


def _track(moov: bytes, start: int, end: int, file_size: int, name: str) -> TrackSamples:
    """Check one ``trak`` box's sample tables; its claimed sample count (``stsz``/``stz2``)."""
    tables: dict[bytes, tuple[int, int]] = {}
    handler = ""

    def walk(a: int, b: int) -> None:
        nonlocal handler
        for kind, x, y in _boxes(moov, a, b):
            if kind in _CONTAINERS:
                walk(x, y)
            elif kind == b"hdlr" and y - x >= 12 and moov[x + 4:x + 8] != b"dhlr":
                handler = moov[x + 8:x + 12].decode("latin-1")  # (QuickTime's data handler,
                # ``dhlr``, names how the media is reached, not what it is)
            elif kind in _ENTRY_BYTES or kind in (b"stsz", b"stz2"):
                tables[kind] = (x, y)

    walk(start, end)

    def refuse(what: str) -> ImplausibleSampleCountError:
        return ImplausibleSampleCountError(
            name, f"the {handler or 'unknown'} track's index {what}, more than a "
                  f"{file_size}-byte file can hold")

    counts: dict[bytes, int] = {}
    for kind, (x, y) in tables.items():
        if y - x < 8:
            raise refuse(f"has a truncated '{kind.decode()}' box")
        per = _ENTRY_BYTES.get(kind)
        if per:
            counts[kind] = _u32(moov, x + 4)
            if 8 + counts[kind] * per > y - x:
                raise refuse(f"'{kind.decode()}' lists {counts[kind]} entries in "
                             f"{y - x} bytes")
    samples, sample_size = 0, 0
    if b"stsz" in tables:
        x, y = tables[b"stsz"]
        if y - x < 12:
            raise refuse("has a truncated 'stsz' box")
        sample_size, samples = _u32(moov, x + 4), _u32(moov, x + 8)
        if sample_size == 0 and 12 + 4 * samples > y - x:
            raise refuse(f"'stsz' lists {samples} sample sizes in {y - x} bytes")
    elif b"stz2" in tables:
        x, y = tables[b"stz2"]
        if y - x < 12:
            raise refuse("has a truncated 'stz2' box")
        field_bits, samples = moov[x + 7], _u32(moov, x + 8)
        if field_bits not in (4, 8, 16) or 12 + (samples * field_bits + 7) // 8 > y - x:
            raise refuse(f"'stz2' lists {samples} sample sizes in {y - x} bytes")
    per_sample = max(1, sample_size)  # bytes each sample takes in the file, at least
    room = file_size  # bytes the samples may take
    if handler == "soun" and sample_size:  # decoded samples (see SOUND_SAMPLES_PER_BYTE)
        per_sample, room = 1, file_size * SOUND_SAMPLES_PER_BYTE
    if samples * per_sample > room:
        raise refuse(f"claims {samples} samples of at least {per_sample} byte(s)")
    if b"stts" in tables:
        x, _ = tables[b"stts"]
        n = counts[b"stts"]
        total = sum(struct.unpack_from(f">{2 * n}I", moov, x + 8)[::2]) if n else 0
        if total * per_sample > room:
            raise refuse(f"'stts' times {total} samples")
    if b"stsc" in tables:
        x, _ = tables[b"stsc"]
        chunks = counts.get(b"stco", counts.get(b"co64", 0))
        runs = [(_u32(moov, x + 8 + 12 * i), _u32(moov, x + 12 + 12 * i))
                for i in range(counts[b"stsc"])]
        total = 0
        for i, (first, per_chunk) in enumerate(runs):
            last = runs[i + 1][0] if i + 1 < len(runs) else chunks + 1
            total += max(0, last - first) * per_chunk
            if total * per_sample > room:
                raise refuse(f"'stsc' puts {total} or more samples in its chunks")
    return TrackSamples(handler, samples)


def moov_tracks(fh: BinaryIO, name: str) -> list[TrackSamples] | None:
    """Check the sample tables of every track of an MP4/MOV (``fh``: the whole file, seekable)
    against the file's size; the tracks' claimed samples. None when the file has no top-level
    ``moov`` box (not an MP4/MOV: nothing to check here). Raises
    ``ImplausibleSampleCountError`` when a table claims more than the file can hold or the
    index is larger than ``MAX_MOOV_BYTES`` (it would not be checked: refused). The file's
    position is left where it was."""
    position = fh.tell()
    try:
        fh.seek(0, io.SEEK_END)
        file_size = fh.tell()
        for n, (offset, kind, size) in enumerate(_file_boxes(fh)):
            if (n == 0 and kind not in _FIRST_BOXES) or n >= MAX_TOP_BOXES:
                return None
            if kind != b"moov":
                continue
            if size > MAX_MOOV_BYTES:
                raise ImplausibleSampleCountError(
                    name, f"its index (moov box) is {size} bytes, more than the "
                          f"{MAX_MOOV_BYTES} framesift reads")
            fh.seek(offset)
            moov = fh.read(size)
            if len(moov) != size:
                return None  # cut short: FFmpeg reports it
            return [_track(moov, x, y, file_size, name)
                    for kind, x, y in _boxes(moov, 8, len(moov)) if kind == b"trak"]
        return None
    finally:
        fh.seek(position)
