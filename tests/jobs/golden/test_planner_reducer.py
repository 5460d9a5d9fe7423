"""Chunk planning (jobs/planner.py) and golden-frame selection (jobs/reducer.py)."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from actors.records import FrameIndex, FrameScore
from jobs.golden.planner import baseline_workers, plan_chunks
from jobs.golden.reducer import select_golden


def _covers(plan, n):
    assert plan.chunks[0].start == 0 and plan.chunks[-1].stop == n
    assert all(a.stop == b.start for a, b in zip(plan.chunks, plan.chunks[1:]))


def test_short_video_runs_as_one_chunk_where_the_old_rule_split():
    plan = plan_chunks(60, 1280, 720, cpus=8)
    assert len(plan.chunks) == 1 and "one chunk" in plan.reason
    assert plan.baseline_workers == baseline_workers(60) == 2


def test_long_video_uses_the_cluster_but_not_more():
    plan = plan_chunks(600, 1920, 1080, cpus=2)
    _covers(plan, 600)
    assert len(plan.chunks) == 2 and plan.parallel_workers == 2
    big = plan_chunks(6000, 1920, 1080, cpus=8, max_workers=16)
    _covers(big, 6000)
    assert 8 <= len(big.chunks) <= 16
    capped = plan_chunks(6000, 1920, 1080, cpus=8, max_workers=3)
    assert len(capped.chunks) <= 3


def test_min_frames_per_chunk_is_respected():
    plan = plan_chunks(100, 3840, 2160, cpus=16, min_frames_per_chunk=40)
    assert len(plan.chunks) <= 2
    assert all(len(c) >= 40 for c in plan.chunks)


def test_chunk_starts_snap_to_just_after_a_keyframe():
    kfs = (0, 140, 310, 462)
    index = FrameIndex(tuple(range(600)), kfs, Fraction(1, 30))
    plan = plan_chunks(600, 1920, 1080, cpus=4, index=index)
    _covers(plan, 600)
    assert len(plan.chunks) == 4
    for c in plan.chunks[1:]:
        assert c.start - 1 in kfs  # the look-back frame is a keyframe: no GOP decoded for nothing
    assert plan.lookback_frames == 0


def test_snapping_never_costs_more_lookback_than_equal_chunks():
    kfs = (0, 97, 251, 333, 480)
    index = FrameIndex(tuple(range(600)), kfs, Fraction(1, 30))
    plan = plan_chunks(600, 1920, 1080, cpus=4, index=index)
    _covers(plan, 600)
    n = len(plan.chunks)
    equal_starts = [round(j * 600 / n) for j in range(1, n)]
    equal_lookback = sum(s - 1 - max(k for k in kfs if k <= s - 1) for s in equal_starts)
    assert plan.lookback_frames < equal_lookback


def test_forced_workers_and_bad_arguments():
    plan = plan_chunks(90, 640, 360, cpus=2, workers=3)
    assert len(plan.chunks) == 3
    _covers(plan, 90)
    with pytest.raises(ValueError):
        plan_chunks(0, 640, 360, cpus=2)
    with pytest.raises(ValueError):
        plan_chunks(100, 640, 360, cpus=2, workers=0)


def _scores(values):
    return [FrameScore(i, i, i / 10, s, m) for i, (s, m) in enumerate(values)]


def test_picks_are_still_sharpest_and_spaced():
    vals = [(100 + i, 0.5) for i in range(50)]  # sharpness rises with time, all still
    vals[49] = (10_000, 5.0)  # sharpest frame moves: never picked while still frames suffice
    sel = select_golden(_scores(vals), top_k=3, min_gap_s=0.5, motion_max=1.0)
    # frames 47-48 are within 0.2 s of the moving frame 49: outside the hold's steady core
    # [0, 47), whose last frame 46 is inside the 0.1 s edge margin: the sharpest candidate is 45
    assert [p.score.frame_index for p in sel.picks] == [45, 40, 35]
    assert not sel.relaxed and all(p.still for p in sel.picks) and sel.notes == ()
    assert [(h.start, h.stop, h.core_start, h.core_stop) for h in sel.holds] == [(0, 49, 0, 47)]
    assert all(p.hold == 0 for p in sel.picks) and sel.holds[0].picks == 3


def test_ties_break_deterministically_whatever_the_input_order():
    vals = [(50.0, 0.2)] * 40
    s = _scores(vals)
    a = select_golden(s, top_k=4, min_gap_s=0.3)
    shuffled = s[:]
    random.Random(3).shuffle(shuffled)
    b = select_golden(shuffled, top_k=4, min_gap_s=0.3)
    assert a == b
    assert [p.score.frame_index for p in a.picks] == [1, 4, 7, 10]  # frame 0: edge margin


def test_too_few_still_frames_relaxes_and_says_so():
    vals = [(100.0, 5.0)] * 60
    vals[10:18] = [(90.0, 0.1)] * 8  # the one steady hold: too short for a second pick
    sel = select_golden(_scores(vals), top_k=3, min_gap_s=0.5, motion_max=1.0)
    assert len(sel.picks) == 3
    assert sel.relaxed
    assert [p.still for p in sel.picks].count(True) == 1
    assert [p.hold for p in sel.picks if p.still] == [0]
    assert all(p.hold == -1 for p in sel.picks if not p.still)
    assert "only 1 still frame" in sel.notes[0] and "relaxed to motion <= 8 px" in sel.notes[0]
    assert sel.motion_max_used == 8.0


def test_video_too_short_for_k_picks_says_so():
    sel = select_golden(_scores([(10.0, 0.0)] * 8), top_k=5, min_gap_s=0.5)
    assert len(sel.picks) == 2
    assert any("only 2 frame(s) exist at least 0.5 s apart" in n for n in sel.notes)
    assert not sel.relaxed and sel.motion_max_used == 1.0


def test_selection_rejects_bad_parameters():
    with pytest.raises(ValueError):
        select_golden([], top_k=0)
    with pytest.raises(ValueError):
        select_golden([], min_gap_s=-1)
    for knob in ("still_window_s", "min_hold_s", "edge_margin_s", "hold_sharpness_ratio",
                 "dup_max_diff"):
        with pytest.raises(ValueError, match=knob):
            select_golden([], **{knob: -0.1})
