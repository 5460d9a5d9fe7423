"""Hold-aware selection (jobs/reducer.py) on hand-made scores and on generated hand-held scans
with known holds (actors/synthetic.py ``make_hold_video``)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from actors.records import FrameRange, FrameScore, VideoChunk
from actors.scoring import ChunkScorer, thumbnail
from actors.synthetic import SampleTruth, truth_path
from actors.synthetic_holds import make_hold_video
from actors.video import probe
from jobs.golden.job import GoldenParams, VideoJob, run_golden
from jobs.golden.reducer import select_golden, thumb_diff, windowed_motion
from jobs.stores.local import LocalStore

FPS = 10  # hand-made scores: frame i at i / 10 s; the 0.2 s still window is +-2 frames


def _view(seed: int, drift: int = 0) -> bytes:
    """A 16x16 thumbnail of view ``seed``, its content moved ``drift`` columns."""
    img = np.random.default_rng(seed).integers(0, 255, (16, 64), dtype=np.uint8)
    return img[:, drift:drift + 16].tobytes()


def _scores(spec: list[tuple[float, float, bytes]]) -> list[FrameScore]:
    return [FrameScore(i, i, i / FPS, sharp, motion, thumb)
            for i, (sharp, motion, thumb) in enumerate(spec)]


def _segment(n: int, sharp: float, motion: float, thumb: bytes = b"") -> list[tuple[float, float, bytes]]:
    return [(sharp, motion, thumb)] * n


def _hold_of(sel, frame_index: int) -> int:
    return next(p.hold for p in sel.picks if p.score.frame_index == frame_index)


# --- pure selection on hand-made scores --------------------------------------------------------

def test_a_one_or_two_frame_dip_in_a_shake_is_not_still():
    spec = _segment(20, 50.0, 3.0)  # shaking
    spec[6] = (500.0, 0.2, b"")  # one-frame slow-down, the sharpest frame of the video
    spec[12:14] = [(480.0, 0.3, b"")] * 2  # a two-frame one
    spec += _segment(10, 100.0, 0.0)[:1] + _segment(9, 100.0, 0.1)  # a hold after the shake
    spec[20] = (100.0, 4.0, b"")  # the hand settles: the hold's first frame moves
    spec += _segment(6, 40.0, 5.0)
    scores = _scores(spec)
    sel = select_golden(scores, top_k=1, min_gap_s=0.5)
    assert not {6, 12, 13} & sel.still_indices
    assert [p.score.frame_index for p in sel.picks] != [6]
    assert sel.picks[0].hold == 0 and sel.picks[0].still
    assert [(h.start, h.stop, h.core_start, h.core_stop) for h in sel.holds] == [(21, 30, 23, 28)]
    # the per-frame rule of old (window 0) called the dips still
    assert {6, 12, 13} <= select_golden(scores, top_k=1, still_window_s=0,
                                        min_hold_s=0).still_indices
    assert windowed_motion(scores, 0.2)[6] == 3.0


def test_windowed_motion_shuffled_input_and_nan():
    scores = _scores([(1.0, m, b"") for m in (0.0, 2.0, 0.0, 0.0, 0.0, 0.0, float("nan"), 0.0)])
    assert windowed_motion(scores, 0.1) == [2.0, 2.0, 2.0, 0.0, 0.0, float("inf"),
                                            float("inf"), float("inf")]
    shuffled = scores[:]
    random.Random(1).shuffle(shuffled)
    assert select_golden(shuffled, top_k=2, min_hold_s=0.0) == \
        select_golden(scores, top_k=2, min_hold_s=0.0)


def test_holds_shorter_than_min_hold_are_ignored():
    spec = _segment(8, 10.0, 5.0) + _segment(7, 300.0, 0.0, _view(1)) + _segment(8, 10.0, 5.0) \
        + _segment(12, 100.0, 0.0, _view(2)) + _segment(8, 10.0, 5.0)
    scores = _scores(spec)
    # still runs: 8-14 (0.6 s, steady core 10-12) and 23-34 (1.1 s, steady core 25-32)
    sel = select_golden(scores, top_k=1, min_hold_s=0.8)
    assert [(h.start, h.stop, h.core_start, h.core_stop) for h in sel.holds] == [(23, 35, 25, 33)]
    assert {10, 11, 12} <= sel.still_indices and not {8, 9, 13, 14} & sel.still_indices
    assert [p.score.frame_index for p in sel.picks] == [26] and sel.picks[0].hold == 0
    shorter = select_golden(scores, top_k=1, min_hold_s=0.5)
    assert [(h.start, h.stop) for h in shorter.holds] == [(8, 15), (23, 35)]
    assert shorter.picks[0].score.frame_index == 11  # the sharp short hold, away from its edges


def test_one_pick_per_hold_first_ranked_by_best_sharpness():
    spec = (_segment(6, 10.0, 5.0) + _segment(30, 200.0, 0.0, _view(1))  # long, sharpest hold
            + _segment(6, 10.0, 5.0) + _segment(10, 120.0, 0.0, _view(2))
            + _segment(6, 10.0, 5.0) + _segment(10, 150.0, 0.0, _view(3)) + _segment(6, 10.0, 5.0))
    sel = select_golden(_scores(spec), top_k=3, min_gap_s=0.5)
    assert sorted(p.hold for p in sel.picks) == [0, 1, 2]
    assert [h.picks for h in sel.holds] == [1, 1, 1] and all(h.to_dict()["picked"] for h in sel.holds)
    assert [p.hold for p in sel.picks] == [0, 2, 1]  # ranked by sharpness
    assert not any(p.near_duplicate for p in sel.picks) and sel.notes == ()
    two = select_golden(_scores(spec), top_k=2, min_gap_s=0.5)
    assert sorted(p.hold for p in two.picks) == [0, 2]  # the two sharpest holds
    assert [h.picks > 0 for h in two.holds] == [True, False, True]


def test_picks_keep_away_from_hold_edges():
    spec = _segment(6, 10.0, 5.0) + _segment(14, 100.0, 0.0) + _segment(6, 10.0, 5.0)
    spec[8] = spec[9] = (900.0, 0.0, b"")  # first frames of the detected hold [8, 18)
    spec[17] = (800.0, 0.0, b"")  # its last frame
    spec[12] = (150.0, 0.0, b"")
    sel = select_golden(_scores(spec), top_k=1, edge_margin_s=0.2)
    assert [(h.start, h.stop, h.core_start, h.core_stop) for h in sel.holds] == [(6, 20, 8, 18)]
    assert [p.score.frame_index for p in sel.picks] == [12]
    assert sel.holds[0].best_frame == 12 and sel.holds[0].best_sharpness == 150.0
    assert select_golden(_scores(spec), top_k=1, edge_margin_s=0.0).picks[0].score.frame_index == 8
    # an extra pick, with the core spent, comes from the rest of the hold, still off its edges
    two = select_golden(_scores(spec), top_k=2, edge_margin_s=0.2)
    assert sorted(p.score.frame_index for p in two.picks) == [12, 17]
    assert all(p.still and p.hold == 0 for p in two.picks)


def test_second_picks_only_when_holds_are_fewer_than_k_spaced_and_deduplicated():
    # hold 0: long and static (every frame the same view); hold 1: shorter, the view drifts
    spec = _segment(6, 10.0, 5.0) + _segment(40, 100.0, 0.0, _view(1))
    spec += _segment(6, 10.0, 5.0)
    spec += [(90.0, 0.3, _view(2, drift=j // 2)) for j in range(30)]
    spec += _segment(6, 10.0, 5.0)
    scores = _scores(spec)
    two = select_golden(scores, top_k=2)
    assert sorted(p.hold for p in two.picks) == [0, 1]
    four = select_golden(scores, top_k=4)
    holds = Counter(p.hold for p in four.picks)
    # the extra picks go where they are not near-duplicates: the drifting hold, not the longer
    assert holds == {0: 1, 1: 3}
    assert not any(p.near_duplicate for p in four.picks) and four.notes == ()
    drift = sorted((p.score for p in four.picks if p.hold == 1), key=lambda s: s.frame_index)
    assert all(b.time_s - a.time_s >= 0.5 - 1e-9 for a, b in zip(drift, drift[1:]))
    assert all(thumb_diff(a.thumb, b.thumb) >= 2.0 for a in drift for b in drift if a != b)
    # with no other frame left, near-duplicates are taken from the longest hold, and flagged
    nine = select_golden(scores, top_k=9)
    assert len(nine.picks) == 9
    assert all(p.still for p in nine.picks) and not nine.relaxed
    assert Counter(p.hold for p in nine.picks) == {0: 3, 1: 6}
    dups = [p for p in nine.picks if p.near_duplicate]
    assert len(dups) == 2 and all(p.hold == 0 for p in dups)
    assert any("2 pick(s) near-duplicate" in n for n in nine.notes)
    times = sorted(p.score.time_s for p in nine.picks)
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(times, times[1:]))
    # dup_max_diff=0 turns the guard off: the longest hold gets the extra picks first
    off = select_golden(scores, top_k=4, dup_max_diff=0.0)
    assert Counter(p.hold for p in off.picks) == {0: 2, 1: 2}


def test_a_return_to_a_view_already_picked_waits_for_distinct_views():
    spec = (_segment(6, 10.0, 5.0) + _segment(12, 200.0, 0.0, _view(1))
            + _segment(6, 10.0, 5.0) + _segment(12, 180.0, 0.0, _view(1))  # same view again
            + _segment(6, 10.0, 5.0) + _segment(12, 120.0, 0.0, _view(2)) + _segment(6, 10.0, 5.0))
    sel = select_golden(_scores(spec), top_k=2)
    assert sorted(p.hold for p in sel.picks) == [0, 2]
    sel3 = select_golden(_scores(spec), top_k=3)
    assert sorted(p.hold for p in sel3.picks) == [0, 1, 2]
    assert [p.hold for p in sel3.picks if p.near_duplicate] == [1]


def test_soft_holds_come_after_sharp_holds():
    spec = (_segment(6, 10.0, 5.0) + _segment(30, 200.0, 0.0, _view(1))
            + _segment(6, 10.0, 5.0) + _segment(30, 20.0, 0.0, _view(2))  # focus missed
            + _segment(6, 10.0, 5.0) + _segment(12, 150.0, 0.0, _view(3)) + _segment(6, 10.0, 5.0))
    sel = select_golden(_scores(spec), top_k=3)
    assert [h.sharp for h in sel.holds] == [True, False, True]
    assert Counter(p.hold for p in sel.picks) == {0: 2, 2: 1}  # a second sharp pick first
    more = select_golden(_scores(spec), top_k=9)  # the soft hold once the sharp ones are spent
    assert Counter(p.hold for p in more.picks) == {0: 6, 1: 1, 2: 2}
    equal = select_golden(_scores(spec), top_k=3, hold_sharpness_ratio=0.0)
    assert sorted(p.hold for p in equal.picks) == [0, 1, 2]


def test_no_hold_relaxes_flags_the_picks_and_says_so():
    spec = _segment(40, 100.0, 3.0)
    spec[5] = (900.0, 0.1, b"")  # a dip: not still, picked only once the bar is relaxed
    sel = select_golden(_scores(spec), top_k=2, min_gap_s=0.5)
    assert sel.holds == () and sel.still_frames == 0
    assert sel.relaxed and sel.motion_max_used == 4.0
    assert [p.still for p in sel.picks] == [False, False]
    assert [p.hold for p in sel.picks] == [-1, -1]
    assert sel.picks[0].score.frame_index == 5
    assert "only 0 still frame(s)" in sel.notes[0] and "relaxed to motion <= 4 px" in sel.notes[0]


# --- generated hand-held scans --------------------------------------------------------------

class HoldVideos:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[tuple, tuple[Path, SampleTruth, list[FrameScore]]] = {}

    def get(self, **spec) -> tuple[Path, SampleTruth, list[FrameScore]]:
        key = tuple(sorted(spec.items()))
        if key not in self._made:
            path = self.root / ("h_" + "_".join(f"{k}{v}" for k, v in key).replace(" ", "") + ".mp4")
            truth = make_hold_video(path, **spec)
            info = probe(path)
            scores = ChunkScorer(GoldenParams().scorer).score(
                VideoChunk.of("v", info, FrameRange(0, info.frame_count)))
            self._made[key] = (path, truth, scores)
        return self._made[key]


@pytest.fixture(scope="module")
def hold_videos(tmp_path_factory: pytest.TempPathFactory) -> HoldVideos:
    return HoldVideos(tmp_path_factory.mktemp("holds"))


def _select(scores: list[FrameScore], **overrides):
    p = GoldenParams(**overrides)
    return select_golden(scores, top_k=p.top_k, min_gap_s=p.min_gap_s, motion_max=p.motion_max,
                         still_window_s=p.still_window_s, min_hold_s=p.min_hold_s,
                         edge_margin_s=p.edge_margin_s,
                         hold_sharpness_ratio=p.hold_sharpness_ratio,
                         dup_max_diff=p.dup_max_diff)


def _edge_distance_s(truth: SampleTruth, i: int) -> float:
    h = truth.holds[truth.frames[i].hold]
    return min(i - h.start, h.stop - 1 - i) / truth.fps


def _check_found_holds(truth: SampleTruth, scores: list[FrameScore], sel) -> None:
    """Every frame the selection calls still lies still inside a true hold, and every detected
    hold lies in exactly one true hold."""
    for i in sel.still_indices:
        assert truth.frames[i].hold >= 0 and truth.frames[i].still, (i, truth.frames[i])
    for h in sel.holds:
        assert len({truth.frames[i].hold for i in range(h.start, h.stop)}) == 1
    dips = [i for i, f in enumerate(truth.frames) if f.dip]
    assert dips and not set(dips) & sel.still_indices


@pytest.mark.parametrize("size", [(320, 180), (480, 270)], ids=["180p", "270p"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_five_holds_give_five_picks_from_five_distinct_holds(hold_videos, size, seed):
    _, truth, scores = hold_videos.get(holds=5, size=size, seed=seed)
    # the traps are there: a slow-down inside a shake measures below the 1 px bar, and is
    # sharper than a hold of the video
    dips = [scores[i] for i, f in enumerate(truth.frames) if f.dip]
    assert min(s.motion for s in dips) <= 1.0
    sel = _select(scores)
    _check_found_holds(truth, scores, sel)
    picks = [p.score.frame_index for p in sel.picks]
    assert len(picks) == 5 and not sel.relaxed and sel.notes == ()
    assert all(truth.frames[i].kind == "hold" and truth.frames[i].still for i in picks), picks
    assert all(truth.frames[i].blur == 0.0 for i in picks), "a pick inside a focus pull"
    assert len({truth.frames[i].hold for i in picks}) == 5
    assert min(_edge_distance_s(truth, i) for i in picks) >= 0.2
    assert all(p.hold >= 0 and p.still and not p.near_duplicate for p in sel.picks)
    assert len({p.hold for p in sel.picks}) == 5


@pytest.mark.parametrize("seed, size", [(3, (320, 180)), (4, (480, 270))], ids=["s3-180p", "s4-270p"])
def test_three_long_holds_give_second_picks_to_the_longest(hold_videos, seed, size):
    _, truth, scores = hold_videos.get(holds=3, size=size, seed=seed, hold_s=(2.0, 3.0))
    sel = _select(scores)
    _check_found_holds(truth, scores, sel)
    picks = [p.score.frame_index for p in sel.picks]
    assert len(picks) == 5 and not sel.relaxed
    assert all(truth.frames[i].kind == "hold" and truth.frames[i].still
               and truth.frames[i].blur == 0.0 for i in picks)
    per_hold = Counter(truth.frames[i].hold for i in picks)
    assert sorted(per_hold.values()) == [1, 2, 2]  # every hold first, then one extra each
    single = next(h for h, n in per_hold.items() if n == 1)
    length = {h.id: h.stop - h.start for h in truth.holds}
    assert all(length[single] <= length[h] for h in per_hold)
    times = sorted(i / truth.fps for i in picks)
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(times, times[1:]))
    assert min(_edge_distance_s(truth, i) for i in picks) >= 0.2
    # static holds: the extra picks are near-duplicates, and the selection says so
    assert sum(p.near_duplicate for p in sel.picks) == 2
    assert any("near-duplicate" in n for n in sel.notes)


def test_more_holds_than_k_picks_the_sharpest_distinct_holds(hold_videos):
    _, truth, scores = hold_videos.get(holds=7, size=(320, 180), seed=5)
    sel = _select(scores)
    _check_found_holds(truth, scores, sel)
    picks = [p.score.frame_index for p in sel.picks]
    assert len({truth.frames[i].hold for i in picks}) == 5
    assert all(truth.frames[i].still and truth.frames[i].blur == 0.0 for i in picks)
    best = sorted(sel.holds, key=lambda h: -h.best_sharpness)
    assert {h.id for h in best[:5]} == {p.hold for p in sel.picks}


def test_a_hold_that_never_reaches_focus_is_left_for_a_sharp_second_pick(hold_videos):
    _, truth, scores = hold_videos.get(holds=4, soft_holds=1, size=(320, 180), seed=6,
                                       hold_s=(1.6, 2.4))
    soft = next(h for h in truth.holds if h.sharpness_class == "soft")
    sel = _select(scores)
    _check_found_holds(truth, scores, sel)
    found = {truth.frames[h.start].hold: h for h in sel.holds}
    assert not found[soft.id].sharp and all(h.sharp for t, h in found.items() if t != soft.id)
    picks = [p.score.frame_index for p in sel.picks]
    holds = Counter(truth.frames[i].hold for i in picks)
    assert soft.id not in holds and len(holds) == 4 and len(picks) == 5


def test_golden_job_records_holds_in_manifest_and_scores(hold_videos, tmp_path):
    path, truth, _ = hold_videos.get(holds=5, size=(320, 180), seed=0)
    [result] = run_golden([VideoJob(str(path), "scan")], GoldenParams(), LocalStore(tmp_path),
                          distributed=False)
    assert result.ok, result.error
    m = json.loads((tmp_path / "scan" / "manifest.json").read_text())
    holds = m["selection"]["holds"]
    assert len(holds) == 5 and all(h["picked"] and h["picks"] == 1 for h in holds)
    assert {"id", "start", "stop", "duration_s", "best_sharpness", "picked"} <= set(holds[0])
    assert sorted(g["hold"] for g in m["golden_frames"]) == [0, 1, 2, 3, 4]
    for key in ("still_frames", "relaxed", "motion_max_used", "picked", "notes"):
        assert key in m["selection"]
    assert m["parameters"]["still_window_s"] == 0.2 and m["parameters"]["min_hold_s"] == 0.5
    table = pq.read_table(tmp_path / "scan" / "scores.parquet").to_pydict()
    for h in holds:
        span = range(h["start"], h["stop"])
        assert all(table["hold"][i] == h["id"] and table["still"][i] for i in span)
    inside = {i for h in holds for i in range(h["start"], h["stop"])}
    assert all(table["hold"][i] == -1 for i in range(truth.frame_count) if i not in inside)
    for g in m["golden_frames"]:
        assert table["picked"][g["frame_index"]] and table["hold"][g["frame_index"]] == g["hold"]
        assert truth.frames[g["frame_index"]].hold >= 0
    dips = [i for i, f in enumerate(truth.frames) if f.dip]
    assert not any(table["still"][i] for i in dips)


def test_hold_video_truth_round_trips_and_views_differ(hold_videos):
    path, truth, scores = hold_videos.get(holds=5, size=(320, 180), seed=0)
    assert SampleTruth.from_json(truth_path(path).read_text()) == truth
    assert len(truth.frames) == truth.frame_count == len(scores)
    mids = [scores[(h.start + h.stop) // 2].thumb for h in truth.holds]
    assert min(thumb_diff(a, b) for k, a in enumerate(mids) for b in mids[k + 1:]) > 10
    assert truth.sharp_still_frames() < {i for i, f in enumerate(truth.frames) if f.still}
    with pytest.raises(ValueError, match="size must be even"):
        make_hold_video(path, size=(33, 10))
    with pytest.raises(ValueError, match="hold_s"):
        make_hold_video(path, hold_s=(2.0, 1.0))


def test_thumbnail_is_exact_block_means():
    gray = np.arange(32 * 48, dtype=np.uint16).reshape(32, 48).astype(np.uint8)
    thumb = np.frombuffer(thumbnail(gray), np.uint8).reshape(16, 16)
    expected = gray.reshape(16, 2, 16, 3).astype(float).mean(axis=(1, 3))
    assert np.array_equal(thumb, np.floor(expected + 0.5).astype(np.uint8))
    assert len(thumbnail(np.zeros((4, 200), np.uint8))) == 256
