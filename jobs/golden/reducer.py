"""Pick the golden frames from per-frame scores.

Still frames (motion <= ``motion_max``) are ranked by sharpness (ties: lower motion, then
lower frame index) and picked greedily with at least ``min_gap_s`` seconds between picks.
When fewer than ``top_k`` still frames can be picked, the motion bar is relaxed step by step
(x2, x4, x8, then any motion) to fill the remaining places; every relaxed pick is marked
``still=False`` and the selection says why. Fewer than ``top_k`` picks only happen when the
video is too short for ``top_k`` frames ``min_gap_s`` apart, and the selection says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from actors.records import FrameScore

RELAX_FACTORS = (2.0, 4.0, 8.0, float("inf"))


@dataclass(frozen=True)
class Pick:
    score: FrameScore
    still: bool


@dataclass(frozen=True)
class Selection:
    picks: tuple[Pick, ...]
    still_frames: int
    relaxed: bool
    motion_max_used: float
    notes: tuple[str, ...] = field(default=())


def _rank_key(s: FrameScore) -> tuple[float, float, int]:
    return (-s.sharpness, s.motion, s.frame_index)


def _fill(picks: list[FrameScore], candidates: Iterable[FrameScore], k: int, gap: float) -> None:
    taken = {p.frame_index for p in picks}
    for c in sorted(candidates, key=_rank_key):
        if len(picks) >= k:
            return
        if c.frame_index in taken:
            continue
        if all(abs(c.time_s - p.time_s) >= gap - 1e-9 for p in picks):
            picks.append(c)
            taken.add(c.frame_index)


def select_golden(scores: Sequence[FrameScore], *, top_k: int = 5, min_gap_s: float = 0.5,
                  motion_max: float = 1.0) -> Selection:
    """Choose up to ``top_k`` frames; deterministic for the same scores in any order."""
    if top_k < 1:
        raise ValueError("top_k must be >= 1")
    if min_gap_s < 0 or motion_max < 0:
        raise ValueError("min_gap_s and motion_max must be >= 0")
    still = [s for s in scores if s.motion <= motion_max]
    picks: list[FrameScore] = []
    _fill(picks, still, top_k, min_gap_s)
    notes: list[str] = []
    used = motion_max
    if len(picks) < top_k:
        strict = len(picks)
        for factor in RELAX_FACTORS:
            used = motion_max * factor
            _fill(picks, (s for s in scores if s.motion <= used), top_k, min_gap_s)
            if len(picks) >= top_k:
                break
        if len(picks) > strict:
            bar = "any motion" if used == float("inf") else f"motion <= {used:g} px"
            notes.append(f"only {strict} still frame(s) (motion <= {motion_max:g} px) at least "
                         f"{min_gap_s:g} s apart; {len(picks) - strict} pick(s) relaxed to {bar}")
        else:
            used = motion_max
    if len(picks) < top_k:
        notes.append(f"only {len(picks)} frame(s) exist at least {min_gap_s:g} s apart; "
                     f"asked for {top_k}")
    ranked = sorted(picks, key=_rank_key)
    return Selection(
        picks=tuple(Pick(p, p.motion <= motion_max) for p in ranked),
        still_frames=len(still),
        relaxed=any(p.motion > motion_max for p in ranked),
        motion_max_used=used,
        notes=tuple(notes),
    )
