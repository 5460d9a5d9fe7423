"""The candidate pool: frames extracted beside the picks, so a re-pick need not decode them.

A grader who re-picks a finished scan (jobs/golden/repick.py) mostly asks for a little more or
less of the same: more picks, a wider or narrower gap, a looser or stricter motion bar. Every
frame such a selection picks must be decoded from the source video when it was not extracted
before, and that decode (a walk from the last keyframe) costs far more than the selection.

So a run extracts, beside its picks, the frames that the selections *around* its parameters
pick (``neighbourhood``: twice the picks, with the gap and the motion bar each from half to
twice the run's), up to ``GoldenParams.candidates`` extra frames, nearest parameter sets
first. Each is stored once, with what a golden frame needs of it: its image encoded like the
picks, its size and its glint analysis. The picks are in it too, so a pick that a re-pick
drops stays at hand for the next one. It is stored in one of two forms:

* a folder (the local store): one image file per frame in ``candidates/`` and
  ``candidates.parquet`` listing them (``pool_index_table``). A re-pick moves the folder into
  its result and hard-links the new picks from it: nothing is written again;
* one file (an object store, where one object is one request): ``candidates.parquet`` with
  the images in it (``candidates_table``).

A re-pick takes a new pick from the pool when it is there (the same bytes and glint a full run
would produce: the image encoding and the glint analysis are deterministic), decodes it
otherwise, and stores the pool again with the frames it decoded added. The pool is a cache:
a re-picked result's pool is its parent's plus what it decoded, not what a full run with the
new parameters would have extracted.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from itertools import product
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from actors.cropper import encode_image
from actors.glint import glint_metrics
from actors.records import FrameScore, GlintMetrics
from jobs.golden.manifest import CANDIDATES_FOLDER, CANDIDATES_NAME
from jobs.golden.params import GoldenParams
from jobs.golden.reducer import PreparedScores, picked_frames


# The parameter sets around a run's: twice the picks, the gap from half to twice the run's in
# quarter octaves, the motion bar from half to twice in half octaves (nearby values pick mostly
# the same frames: picks move only where a frame sits at the edge of a gap or the bar).
TOP_K_FACTOR = 2
GAP_SCALES = tuple(2 ** (i / 4) for i in range(-4, 5))
MOTION_SCALES = tuple(2 ** (i / 2) for i in range(-2, 3))


@dataclass(frozen=True)
class Candidate:
    """One extracted frame: its image as stored, its size and its glint analysis."""

    frame_index: int
    image: bytes | None  # None: in a stored pool folder, not read (``pool_file``)
    width: int
    height: int
    glint: GlintMetrics


def extract_frame(frame_index: int, bgr: np.ndarray, params: GoldenParams) -> Candidate:
    """A decoded frame (upright BGR) as stored: encoded like every golden frame, with its
    glint analysis."""
    return Candidate(frame_index, encode_image(bgr, params.image_format, params.jpeg_quality),
                     bgr.shape[1], bgr.shape[0], glint_metrics(bgr, params.glint))


def neighbourhood(params: GoldenParams) -> list[GoldenParams]:
    """The selection parameters around ``params`` whose picks the pool holds, nearest first
    (by how many octaves the gap and the motion bar move; the run's own gap and bar first)."""
    steps = sorted(product(GAP_SCALES, MOTION_SCALES),
                   key=lambda gm: (abs(math.log2(gm[0])) + abs(math.log2(gm[1])), gm))
    return [replace(params, top_k=params.top_k * TOP_K_FACTOR, min_gap_s=params.min_gap_s * g,
                    motion_max=params.motion_max * m) for g, m in steps]


def candidate_frames(scores: Sequence[FrameScore], params: GoldenParams,
                     picked: Iterable[int], prepared: PreparedScores | None = None) -> list[int]:
    """The frames to extract beside the ``picked`` ones: the picks of the ``neighbourhood``
    selections, at most ``params.candidates`` of them, nearest parameter sets first
    (``prepared``: the run's own selection's ``PreparedScores`` of ``scores``, shared)."""
    if params.candidates <= 0:
        return []
    seen = set(picked)
    out: list[int] = []
    prepared = prepared or PreparedScores(scores, params.still_window_s)  # shared by them all
    for around in neighbourhood(params):
        for i in picked_frames(prepared, around):
            if i not in seen:
                seen.add(i)
                out.append(i)
                if len(out) == params.candidates:
                    return out
    return out


_GLINT = pa.struct([("share", pa.float64()), ("blob_count", pa.int64()),
                    ("largest_blob_area_px", pa.int64()), ("largest_blob_share", pa.float64()),
                    ("largest_blob_center", pa.list_(pa.float64())),
                    ("largest_blob_bbox", pa.list_(pa.int64()))])
SCHEMA = pa.schema([("frame_index", pa.int64()), ("image", pa.binary()),
                    ("width", pa.int32()), ("height", pa.int32()), ("glint", _GLINT)])
# The folder form's listing: the images are files in ``candidates/`` (``pool_file``).
INDEX_SCHEMA = pa.schema([("frame_index", pa.int64()), ("file", pa.string()),
                          ("width", pa.int32()), ("height", pa.int32()), ("glint", _GLINT)])


def pool_file(frame_index: int, ext: str) -> str:
    """The pool image of a frame, in the result's folder: ``candidates/<frame_index>.<ext>``."""
    return f"{CANDIDATES_FOLDER}/{int(frame_index)}.{ext}"


def candidates_table(pool: Iterable[Candidate]) -> pa.Table:
    """``candidates.parquet`` with the images in it: one row per frame, in frame order."""
    rows = sorted(pool, key=lambda c: c.frame_index)
    if any(c.image is None for c in rows):
        raise ValueError("candidates_table needs every frame's image (read the pool folder's)")
    return pa.table({"frame_index": [c.frame_index for c in rows],
                     "image": [c.image for c in rows],
                     "width": [c.width for c in rows], "height": [c.height for c in rows],
                     "glint": [asdict(c.glint) for c in rows]}, schema=SCHEMA)


def pool_index_table(pool: Iterable[Candidate], ext: str) -> pa.Table:
    """``candidates.parquet`` of the folder form: one row per frame (its image file named, not
    held), in frame order."""
    rows = sorted(pool, key=lambda c: c.frame_index)
    return pa.table({"frame_index": [c.frame_index for c in rows],
                     "file": [pool_file(c.frame_index, ext) for c in rows],
                     "width": [c.width for c in rows], "height": [c.height for c in rows],
                     "glint": [asdict(c.glint) for c in rows]}, schema=INDEX_SCHEMA)


def _glint(row: dict) -> GlintMetrics:
    center, bbox = row["largest_blob_center"], row["largest_blob_bbox"]
    return GlintMetrics(**{**row, "largest_blob_center": tuple(center) if center else None,
                           "largest_blob_bbox": tuple(bbox) if bbox else None})


def read_candidates(table: pa.Table) -> dict[int, Candidate]:
    """``candidates.parquet`` back, by frame index (of the folder form: without the images,
    ``image`` None)."""
    inline = "image" in table.column_names
    rows = table.select((SCHEMA if inline else INDEX_SCHEMA).names).to_pylist()
    return {r["frame_index"]: Candidate(r["frame_index"], r["image"] if inline else None,
                                        r["width"], r["height"], _glint(r["glint"]))
            for r in rows}


__all__ = ["CANDIDATES_FOLDER", "CANDIDATES_NAME", "Candidate", "candidate_frames",
           "candidates_table", "extract_frame", "neighbourhood", "pool_file", "pool_index_table",
           "read_candidates"]
