"""Pick the golden frames from per-frame scores: one per steady hold first.

A scan is a series of steady *holds* on different views, joined by moves and hand-held shake.

* **Steady** (windowed stillness): every frame within ``still_window_s`` seconds of a frame
  (itself included) has motion <= ``motion_max``. A one- or two-frame slow-down inside a
  shake is not steady; ``still_window_s=0`` gives the old per-frame rule.
* **Holds**: a hold is a maximal run of frames each still against its predecessor (motion <=
  ``motion_max``) that lasts at least ``min_hold_s`` seconds (first to last frame) and holds
  a steady *core*. Runs without a core (a slow-down inside a shake) or shorter runs are not
  holds. Hold ids count from 0 in time order. A frame is *still* (``Pick.still``, the
  ``still`` column of the scores) when it is steady or in a hold.
* **Candidates**: first picks come from a hold's core, at least ``edge_margin_s`` from both
  of its ends (its middle frame when the core is too short); extra picks from the core first,
  then from anywhere in the hold at least ``edge_margin_s`` from its ends. A hold is *sharp*
  when its best core candidate has at least ``hold_sharpness_ratio`` times the sharpness of
  the sharpest hold's; the others (focus missed) are *soft*.
* **Near-duplicates**: two frames whose thumbnails (``FrameScore.thumb``) differ by less than
  ``dup_max_diff`` grey levels on average. Frames without a thumbnail are never duplicates.

Picking (every pick at least ``min_gap_s`` from every other; candidates ranked by sharpness,
ties: lower motion, then lower frame index), until ``top_k`` picks:

1. one pick per sharp hold, holds in order of their best sharpness, refusing a frame that is
   a near-duplicate of an earlier pick (a return to a view already picked waits);
2. only when that leaves places: extra picks from sharp holds, always to the hold with the
   fewest picks (ties: the longest), still refusing near-duplicates;
3. the same again allowing near-duplicates (a sharp still duplicate beats a blurred or moving
   frame); they are marked ``near_duplicate`` and the notes name them;
4. steps 1-3 over the soft holds;
5. relaxation: the motion bar is raised x2, x4, x8, then to any motion, and the sharpest frames
   steady at that bar fill the remaining places (non-duplicates first). Picks that are not
   still are marked ``still=False`` and the notes say so.

Fewer than ``top_k`` picks only happen when no frame is left ``min_gap_s`` from every pick,
and the notes say so. Every pick carries the hold it lies in (-1 = none). The result depends
only on the scores, not on their order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np

from actors.records import FrameScore
from jobs.golden.params import GoldenParams

RELAX_FACTORS = (2.0, 4.0, 8.0, float("inf"))
_EPS = 1e-9


@dataclass(frozen=True)
class Pick:
    score: FrameScore
    still: bool
    hold: int = -1  # id of the hold the frame lies in, -1 = none
    near_duplicate: bool = False  # a near-duplicate of another pick (taken for lack of others)


@dataclass(frozen=True)
class Hold:
    """A steady hold: frames ``[start, stop)`` (frame indices), each still against its
    predecessor, around a steady core ``[core_start, core_stop)`` (see module doc)."""

    id: int
    start: int
    stop: int
    core_start: int
    core_stop: int
    start_s: float
    end_s: float  # time of the last frame
    duration_s: float  # end_s - start_s
    best_frame: int  # sharpest core candidate (away from the edges)
    best_sharpness: float
    sharp: bool  # competes for first picks (see module doc)
    picks: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "picked": self.picks > 0}


@dataclass(frozen=True)
class Selection:
    picks: tuple[Pick, ...]
    still_frames: int
    relaxed: bool
    motion_max_used: float
    notes: tuple[str, ...] = field(default=())
    holds: tuple[Hold, ...] = field(default=())
    still_indices: frozenset[int] = field(default=frozenset(), repr=False)  # still frames


def _rank_key(s: FrameScore) -> tuple[float, float, int]:
    return (-s.sharpness, s.motion, s.frame_index)


def windowed_motion(scores: Sequence[FrameScore], window_s: float) -> list[float]:
    """For each frame of ``scores`` (sorted by frame index), the largest motion of the frames
    within ``window_s`` seconds of it. NaN motion counts as infinite."""
    times = [s.time_s for s in scores]
    motion = [s.motion if s.motion == s.motion else float("inf") for s in scores]
    out: list[float] = []
    window: deque[int] = deque()  # indices with decreasing motion
    hi = 0
    for t in times:
        while hi < len(times) and times[hi] <= t + window_s + _EPS:
            while window and motion[window[-1]] <= motion[hi]:
                window.pop()
            window.append(hi)
            hi += 1
        while times[window[0]] < t - window_s - _EPS:
            window.popleft()
        out.append(motion[window[0]])
    return out


def _inside(run: Sequence[FrameScore], margin_s: float) -> list[FrameScore]:
    """Frames of ``run`` at least ``margin_s`` from both of its ends."""
    first, last = run[0].time_s, run[-1].time_s
    return [s for s in run if s.time_s - first >= margin_s - _EPS
            and last - s.time_s >= margin_s - _EPS]


def find_holds(scores: Sequence[FrameScore], peak: Sequence[float], *, motion_max: float,
               min_hold_s: float, edge_margin_s: float, hold_sharpness_ratio: float
               ) -> tuple[list[Hold], dict[int, tuple[list[FrameScore], list[FrameScore]]]]:
    """Holds of ``scores`` (sorted by frame index; ``peak`` from ``windowed_motion``) and, per
    hold, its ranked core candidates (first picks) and ranked rim candidates (extra picks)."""
    runs: list[tuple[int, int]] = []
    a = None
    for i, s in enumerate([*scores, None]):
        ok = s is not None and s.motion <= motion_max
        if ok and a is None:
            a = i
        elif not ok and a is not None:
            runs.append((a, i))
            a = None
    raw = []
    for a, b in runs:
        run = scores[a:b]
        if run[-1].time_s - run[0].time_s < min_hold_s - _EPS:
            continue
        core = [s for s, m in zip(run, peak[a:b]) if m <= motion_max]
        if not core:
            continue
        core_cands = sorted(_inside(core, edge_margin_s) or [core[(len(core) - 1) // 2]],
                            key=_rank_key)
        taken = {s.frame_index for s in core_cands}
        rim_cands = sorted((s for s in _inside(run, edge_margin_s) if s.frame_index not in taken),
                           key=_rank_key)
        raw.append((run, core, core_cands, rim_cands))
    top = max((cands[0].sharpness for _, _, cands, _ in raw), default=0.0)
    holds, candidates = [], {}
    for hid, (run, core, core_cands, rim_cands) in enumerate(raw):
        best = core_cands[0]
        holds.append(Hold(hid, run[0].frame_index, run[-1].frame_index + 1, core[0].frame_index,
                          core[-1].frame_index + 1, run[0].time_s, run[-1].time_s,
                          run[-1].time_s - run[0].time_s, best.frame_index, best.sharpness,
                          best.sharpness >= hold_sharpness_ratio * top - _EPS))
        candidates[hid] = (core_cands, rim_cands)
    return holds, candidates


def thumb_diff(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two thumbnails in grey levels (inf when not comparable)."""
    return _grey_diff(_grey(a), _grey(b))


def _grey(thumb: bytes) -> np.ndarray:
    return np.frombuffer(thumb, np.uint8).astype(np.int16)


def _grey_diff(x: np.ndarray, y: np.ndarray) -> float:
    if not len(x) or len(x) != len(y):
        return float("inf")
    return int(np.abs(x - y).sum()) / len(x)  # the mean (exact: a sum of small integers)


class _Picker:
    """Picks under the gap rule and the near-duplicate guard."""

    def __init__(self, top_k: int, min_gap_s: float, dup_max_diff: float) -> None:
        self.k, self.gap, self.dup = top_k, min_gap_s, dup_max_diff
        self.picks: list[FrameScore] = []
        self.duplicates: set[int] = set()
        self.per_hold: dict[int, int] = {}
        self._greys: dict[int, np.ndarray] = {}  # thumbnails as arrays, made once per frame

    @property
    def full(self) -> bool:
        return len(self.picks) >= self.k

    def _grey(self, s: FrameScore) -> np.ndarray:
        grey = self._greys.get(s.frame_index)
        if grey is None:
            grey = self._greys[s.frame_index] = _grey(s.thumb)
        return grey

    def is_duplicate(self, c: FrameScore) -> bool:
        x = self._grey(c)
        return any(_grey_diff(x, self._grey(p)) < self.dup for p in self.picks)

    def eligible(self, c: FrameScore, guard: bool) -> bool:
        if any(abs(c.time_s - p.time_s) < self.gap - _EPS or c.frame_index == p.frame_index
               for p in self.picks):
            return False
        return not (guard and self.is_duplicate(c))

    def first_eligible(self, ranked: Iterable[FrameScore], guard: bool) -> FrameScore | None:
        return next((c for c in ranked if self.eligible(c, guard)), None)

    def add(self, c: FrameScore, hold: int | None) -> None:
        if self.is_duplicate(c):
            self.duplicates.add(c.frame_index)
        self.picks.append(c)
        if hold is not None:
            self.per_hold[hold] = self.per_hold.get(hold, 0) + 1

    def from_holds(self, holds: Sequence[Hold],
                   candidates: dict[int, tuple[list[FrameScore], list[FrameScore]]]) -> None:
        for h in sorted(holds, key=lambda h: (-h.best_sharpness, h.id)):  # one per hold
            if self.full:
                return
            c = self.first_eligible(candidates[h.id][0], guard=True)
            if c is not None:
                self.add(c, h.id)
        for guard in (True, False):  # extra picks: the hold with the fewest picks, longest first
            open_holds = list(holds)
            while open_holds and not self.full:
                open_holds.sort(key=lambda h: (self.per_hold.get(h.id, 0), -h.duration_s,
                                               -h.best_sharpness, h.id))
                h = open_holds[0]
                core, rim = candidates[h.id]
                c = self.first_eligible(core, guard) or self.first_eligible(rim, guard)
                if c is None:
                    open_holds.pop(0)
                else:
                    self.add(c, h.id)

    def from_frames(self, ranked: Sequence[FrameScore]) -> None:
        for guard in (True, False):
            for c in ranked:
                if self.full:
                    return
                if self.eligible(c, guard):
                    self.add(c, None)


def _pick(prepared: "PreparedScores", top_k: int, min_gap_s: float, motion_max: float,
          min_hold_s: float, edge_margin_s: float, hold_sharpness_ratio: float,
          dup_max_diff: float) -> tuple[_Picker, int, float]:
    """Steps 1-5 of the module doc: the picker with its picks (in the order taken), how many
    were taken before relaxing, and the motion bar the last relaxed pick needed."""
    holds, candidates = prepared.holds(motion_max, min_hold_s, edge_margin_s,
                                       hold_sharpness_ratio)
    picker = _Picker(top_k, min_gap_s, dup_max_diff)
    picker.from_holds([h for h in holds if h.sharp], candidates)
    picker.from_holds([h for h in holds if not h.sharp], candidates)
    strict, used = len(picker.picks), motion_max
    for factor in RELAX_FACTORS:
        if picker.full:
            break
        before = len(picker.picks)
        bar = motion_max * factor
        picker.from_frames(prepared.steady_ranked(bar))
        if len(picker.picks) > before:
            used = bar
    return picker, strict, used


def picked_frames(prepared: "PreparedScores", params: GoldenParams) -> list[int]:
    """The frames ``select_with(scores, params)`` picks, in the order they were taken (no
    selection record built: the candidate pool asks this of many parameter sets)."""
    prepared.check(params.still_window_s)
    picker, _, _ = _pick(prepared, params.top_k, params.min_gap_s, params.motion_max,
                         params.min_hold_s, params.edge_margin_s, params.hold_sharpness_ratio,
                         params.dup_max_diff)
    return [p.frame_index for p in picker.picks]


class PreparedScores:
    """Scores in frame order with their windowed motion, and the holds and rankings found so
    far: several selections on the same scores (the candidate pool's, jobs/golden/
    candidates.py) share them instead of finding them again."""

    def __init__(self, scores: Sequence[FrameScore], still_window_s: float) -> None:
        self.still_window_s = still_window_s
        self.ordered = sorted(scores, key=lambda s: s.frame_index)
        self.peak = windowed_motion(self.ordered, still_window_s)
        self._holds: dict[tuple[float, ...], Any] = {}
        self._ranked: dict[float, list[FrameScore]] = {}

    def check(self, still_window_s: float) -> None:
        if still_window_s != self.still_window_s:
            raise ValueError(f"scores prepared for still_window_s={self.still_window_s}, "
                             f"selected with {still_window_s}")

    def holds(self, motion_max: float, min_hold_s: float, edge_margin_s: float,
              hold_sharpness_ratio: float
              ) -> tuple[list[Hold], dict[int, tuple[list[FrameScore], list[FrameScore]]]]:
        """``find_holds`` on these scores (found once per set of arguments)."""
        key = (motion_max, min_hold_s, edge_margin_s, hold_sharpness_ratio)
        if key not in self._holds:
            self._holds[key] = find_holds(self.ordered, self.peak, motion_max=motion_max,
                                          min_hold_s=min_hold_s, edge_margin_s=edge_margin_s,
                                          hold_sharpness_ratio=hold_sharpness_ratio)
        return self._holds[key]

    def steady_ranked(self, bar: float) -> list[FrameScore]:
        """The frames steady at motion ``bar``, ranked (sharpest first)."""
        if bar not in self._ranked:
            self._ranked[bar] = sorted((s for s, m in zip(self.ordered, self.peak) if m <= bar),
                                       key=_rank_key)
        return self._ranked[bar]


def select_golden(scores: Sequence[FrameScore], *, top_k: int = 5, min_gap_s: float = 0.5,
                  motion_max: float = 1.0, still_window_s: float = 0.2, min_hold_s: float = 0.5,
                  edge_margin_s: float = 0.1, hold_sharpness_ratio: float = 0.3,
                  dup_max_diff: float = 2.0, prepared: PreparedScores | None = None) -> Selection:
    """Choose up to ``top_k`` frames, one per steady hold first (see the module doc).

    Deterministic for the same scores in any order. ``prepared``: ``PreparedScores`` of these
    same scores at ``still_window_s``, shared with other selections on them.
    """
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    if min(min_gap_s, motion_max, still_window_s, min_hold_s, edge_margin_s,
           hold_sharpness_ratio, dup_max_diff) < 0:
        raise ValueError("min_gap_s, motion_max, still_window_s, min_hold_s, edge_margin_s, "
                         "hold_sharpness_ratio and dup_max_diff must be >= 0")
    if prepared is None:
        prepared = PreparedScores(scores, still_window_s)
    prepared.check(still_window_s)
    ordered, peak = prepared.ordered, prepared.peak
    holds = prepared.holds(motion_max, min_hold_s, edge_margin_s, hold_sharpness_ratio)[0]
    picker, strict, used = _pick(prepared, top_k, min_gap_s, motion_max, min_hold_s,
                                 edge_margin_s, hold_sharpness_ratio, dup_max_diff)
    notes: list[str] = []
    if len(picker.picks) > strict:
        bar_text = "any motion" if used == float("inf") else f"motion <= {used:g} px"
        notes.append(f"only {strict} still frame(s) (motion <= {motion_max:g} px within "
                     f"{still_window_s:g} s) in holds of at least {min_hold_s:g} s could be "
                     f"picked at least {min_gap_s:g} s apart; {len(picker.picks) - strict} "
                     f"pick(s) relaxed to {bar_text}")
    if not picker.full:
        notes.append(f"only {len(picker.picks)} frame(s) exist at least {min_gap_s:g} s apart; "
                     f"asked for {top_k}")
    if picker.duplicates:
        notes.append(f"{len(picker.duplicates)} pick(s) near-duplicate an earlier pick (frames "
                     f"{', '.join(str(i) for i in sorted(picker.duplicates))}): no other frame "
                     f"was left to pick")
    still_set = frozenset({s.frame_index for s, m in zip(ordered, peak) if m <= motion_max}
                          | {i for h in holds for i in range(h.start, h.stop)})
    def hold_of(i: int) -> int:
        return next((h.id for h in holds if h.start <= i < h.stop), -1)

    picks = tuple(Pick(p, p.frame_index in still_set, hold_of(p.frame_index),
                       p.frame_index in picker.duplicates)
                  for p in sorted(picker.picks, key=_rank_key))
    counts = {h.id: sum(1 for p in picks if p.hold == h.id) for h in holds}
    return Selection(picks=picks, still_frames=len(still_set),
                     relaxed=any(not p.still for p in picks), motion_max_used=used,
                     notes=tuple(notes),
                     holds=tuple(Hold(**{**asdict(h), "picks": counts[h.id]}) for h in holds),
                     still_indices=still_set)


def select_with(scores: Sequence[FrameScore], params: GoldenParams,
                prepared: PreparedScores | None = None) -> Selection:
    """``select_golden`` under the selection parameters of ``params`` (the one mapping from
    parameters to a selection: a full run and a re-pick from stored scores share it)."""
    return select_golden(scores, top_k=params.top_k, min_gap_s=params.min_gap_s,
                         motion_max=params.motion_max, still_window_s=params.still_window_s,
                         min_hold_s=params.min_hold_s, edge_margin_s=params.edge_margin_s,
                         hold_sharpness_ratio=params.hold_sharpness_ratio,
                         dup_max_diff=params.dup_max_diff, prepared=prepared)
