"""The candidate pool (jobs/golden/candidates.py): which frames a run extracts beside its picks,
and its file read back exactly."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.records import FrameScore, GlintMetrics
from jobs.golden.candidates import (Candidate, candidate_frames, candidates_table, extract_frame,
                                    neighbourhood, read_candidates)
from jobs.golden.params import GoldenParams
from jobs.golden.reducer import select_with


def _scores(n: int = 240, fps: float = 30.0, seed: int = 3) -> list[FrameScore]:
    """Holds (low motion) joined by moves, with noisy sharpness: several picks per hold."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        moving = (i // 40) % 2 == 1
        out.append(FrameScore(frame_index=i, pts=i, time_s=i / fps,
                              sharpness=float(100 + 40 * rng.random() - 30 * moving),
                              motion=float(3.0 + rng.random() if moving else 0.2 + 0.3 * rng.random()),
                              thumb=rng.integers(0, 255, 256, dtype=np.uint8).tobytes()))
    return out


def test_the_neighbourhood_is_the_parameters_around_the_run_nearest_first():
    base = GoldenParams()
    sets = neighbourhood(base)
    assert len(sets) == 45 and {p.top_k for p in sets} == {2 * base.top_k}
    assert (sets[0].min_gap_s, sets[0].motion_max) == (base.min_gap_s, base.motion_max)
    octaves = [abs(math.log2(p.min_gap_s / base.min_gap_s)) + abs(math.log2(p.motion_max / base.motion_max))
               for p in sets]
    assert octaves == sorted(octaves) and octaves[-1] == pytest.approx(2)
    assert min(p.min_gap_s for p in sets) == 0.25 and max(p.min_gap_s for p in sets) == 1.0
    assert min(p.motion_max for p in sets) == 0.5 and max(p.motion_max for p in sets) == 2.0
    assert len({p.min_gap_s for p in sets}) == 9 and len({p.motion_max for p in sets}) == 5
    assert all(replace(p, top_k=base.top_k, min_gap_s=base.min_gap_s, motion_max=base.motion_max) == base
               for p in sets)  # nothing else changes


def test_candidates_are_the_neighbourhood_picks_capped_and_never_the_picks():
    scores = _scores()
    base = GoldenParams()
    picks = [p.score.frame_index for p in select_with(scores, base).picks]
    pool = candidate_frames(scores, base, picks)
    assert pool and not set(pool) & set(picks) and len(pool) == len(set(pool))
    assert len(pool) <= base.candidates
    everything = set().union(*({p.score.frame_index for p in select_with(scores, n).picks}
                               for n in neighbourhood(base)))
    assert set(pool) <= everything - set(picks)
    wide = candidate_frames(scores, replace(base, candidates=200), picks)
    assert set(wide) == everything - set(picks)  # uncapped: every neighbourhood pick
    assert pool == wide[:len(pool)]  # the cap keeps the nearest parameter sets' first
    # more picks at the run's gap and bar are all in the pool
    more = {p.score.frame_index for p in select_with(scores, replace(base, top_k=8)).picks}
    assert more <= set(picks) | set(wide)
    assert candidate_frames(scores, replace(base, candidates=0), picks) == []
    assert len(candidate_frames(scores, replace(base, candidates=3), picks)) == 3


def test_the_pool_file_reads_back_exactly(tmp_path):
    params = GoldenParams()
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (36, 64, 3), dtype=np.uint8)
    bgr[5:15, 10:30] = 255  # a glint blob: centre and box set
    shiny = extract_frame(7, bgr, params)
    assert shiny.glint.largest_blob_bbox is not None and (shiny.width, shiny.height) == (64, 36)
    dull = Candidate(3, b"\xff\xd8jpeg", 640, 360, GlintMetrics(0.0, 0, 0, 0.0, None, None))
    pq.write_table(candidates_table([shiny, dull]), tmp_path / "candidates.parquet")
    table = pq.read_table(tmp_path / "candidates.parquet")
    assert table["frame_index"].to_pylist() == [3, 7]  # in frame order
    assert table.schema.field("image").type == pa.binary()
    back = read_candidates(table)
    assert back == {3: dull, 7: shiny}  # glint tuples and None come back as they were
