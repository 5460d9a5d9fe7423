"""Pick quality on generated hand-held scan videos with known holds: prints one JSON object.

For several seeds, sizes and hold counts, ``make_hold_video`` writes a scan (moves between
distinct views, hand-held shake with one- or two-frame slow-downs, focus pulls); the frames are
scored sequentially in this process and picked by framesift's selection (``select_golden``) and,
for comparison, by the pre-hold rule (still = motion <= 1 px against the previous frame, then
the sharpest still frames at least ``min_gap_s`` apart), and by sharp-frames 0.4.0 (its best-n
method over every frame, ``min_gap_s`` apart; bench/sharp_frames.py, skipped with a message
without Debian's ffmpeg). ``pick_quality`` measures any list of
picked frame indices against the truth, so another tool's picks can be measured the same way:

    from bench.pick_quality import pick_quality
    pick_quality([12, 80, 151, 230, 301], truth)

    python bench/pick_quality.py [--seeds 0,1,2,3,4] [--sizes 320x180,480x270] [--holds 5,7]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from actors.records import FrameRange, FrameScore  # noqa: E402
from actors.synthetic import SampleTruth  # noqa: E402
from actors.synthetic_holds import make_hold_video  # noqa: E402


def pick_quality(picks: Sequence[int], truth: SampleTruth, *, top_k: int | None = None,
                 edge_s: float = 0.2) -> dict[str, Any]:
    """How good ``picks`` (frame indices) are on a ``holds`` video.

    * ``inside_holds``: picks on a still frame of a true hold (not its first, moving frame);
    * ``in_focus``: of those, picks without focus blur;
    * ``distinct_holds``: true holds covered; ``holds_available``: sharp holds in the video;
      ``expected_distinct``: min(picks asked, sharp holds): what a hold-aware picker covers;
    * ``repeated_while_unused``: picks beyond the first in a hold while a sharp hold is unused;
    * ``shake_picks`` (``dip_picks``: on a momentary slow-down), ``move_picks``,
      ``soft_hold_picks``, ``edge_picks`` (within ``edge_s`` of the true hold's first or last
      frame) and ``min_edge_distance_s``.
    """
    if truth.scenario != "holds":
        raise ValueError("pick_quality needs the truth of a make_hold_video video")
    asked = top_k if top_k is not None else len(picks)
    holds = {h.id: h for h in truth.holds}
    sharp_holds = {h.id for h in truth.holds if h.sharpness_class == "sharp"}
    frames = [truth.frames[i] for i in picks]
    inside = [i for i, f in zip(picks, frames) if f.hold >= 0 and f.still]
    per_hold = Counter(truth.frames[i].hold for i in inside)
    unused_sharp = sharp_holds - set(per_hold)
    edge = []
    for i in inside:
        h = holds[truth.frames[i].hold]
        edge.append(min(i - h.start, h.stop - 1 - i) / truth.fps)
    return {
        "picks": len(picks),
        "inside_holds": len(inside),
        "in_focus": sum(1 for i in inside if truth.frames[i].blur == 0.0),
        "distinct_holds": len(per_hold),
        "holds_available": len(sharp_holds),
        "expected_distinct": min(asked, len(sharp_holds)),
        "repeated_while_unused": (sum(n - 1 for n in per_hold.values()) if unused_sharp else 0),
        "shake_picks": sum(1 for f in frames if f.kind == "shake"),
        "dip_picks": sum(1 for f in frames if f.dip),
        "move_picks": sum(1 for f in frames if f.kind == "move"),
        "soft_hold_picks": sum(1 for i in inside if holds[truth.frames[i].hold].sharpness_class
                               == "soft"),
        "edge_picks": sum(1 for d in edge if d < edge_s - 1e-9),
        "min_edge_distance_s": round(min(edge), 3) if edge else None,
    }


def per_frame_rule(scores: Sequence[FrameScore], top_k: int = 5, min_gap_s: float = 0.5,
                   motion_max: float = 1.0) -> list[int]:
    """The pre-hold rule, for comparison: still frames (against the previous frame only)
    ranked by sharpness, greedily at least ``min_gap_s`` apart."""
    picks: list[FrameScore] = []
    for s in sorted(scores, key=lambda s: (-s.sharpness, s.motion, s.frame_index)):
        if s.motion <= motion_max and all(abs(s.time_s - p.time_s) >= min_gap_s - 1e-9
                                          for p in picks):
            picks.append(s)
        if len(picks) == top_k:
            break
    return [p.frame_index for p in picks]


def measure(path: Path, truth: SampleTruth, top_k: int, sharp_frames: Any = None) -> dict[str, Any]:
    from actors.records import VideoChunk
    from actors.scoring import ChunkScorer
    from actors.video import probe
    from jobs.golden.reducer import select_golden

    info = probe(path)
    scores = ChunkScorer().score(VideoChunk.of("v", info, FrameRange(0, info.frame_count)))
    selection = select_golden(scores, top_k=top_k)
    ours = [p.score.frame_index for p in selection.picks]
    row = {"framesift": pick_quality(ours, truth, top_k=top_k),
           "per_frame_rule": pick_quality(per_frame_rule(scores, top_k), truth, top_k=top_k),
           "holds_found": len(selection.holds), "notes": list(selection.notes)}
    if sharp_frames is not None:  # every frame, its best-n picks min_gap_s apart
        run = sharp_frames.run(str(path), top_k=top_k, fps=info.avg_fps,
                               source_fps=info.avg_fps, frame_count=info.frame_count)
        row["sharp_frames"] = pick_quality(run.picks, truth, top_k=top_k)
    return row


def _summary(rows: list[dict[str, Any]], who: str) -> dict[str, Any]:
    got = [r[who] for r in rows]
    return {
        "videos": len(got),
        "all_picks_inside_holds": sum(g["inside_holds"] == g["picks"] for g in got),
        "all_expected_holds_covered": sum(g["distinct_holds"] == g["expected_distinct"]
                                          for g in got),
        "picks": sum(g["picks"] for g in got),
        "inside_holds": sum(g["inside_holds"] for g in got),
        "in_focus": sum(g["in_focus"] for g in got),
        "distinct_holds": sum(g["distinct_holds"] for g in got),
        "expected_distinct": sum(g["expected_distinct"] for g in got),
        "shake_picks": sum(g["shake_picks"] for g in got),
        "dip_picks": sum(g["dip_picks"] for g in got),
        "edge_picks": sum(g["edge_picks"] for g in got),
        "repeated_while_unused": sum(g["repeated_while_unused"] for g in got),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--sizes", default="320x180,480x270")
    ap.add_argument("--holds", default="5,7", help="sharp holds per video (comma-separated)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    hold_counts = [int(h) for h in args.holds.split(",")]
    sys.path.insert(0, str(ROOT / "bench"))
    from sharp_frames import SharpFrames

    tool: Any = SharpFrames()
    why = tool.available()
    if why:
        tool = None
    rows = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pick-quality-") as tmp:
        for size in sizes:
            for holds in hold_counts:
                for seed in seeds:
                    path = Path(tmp) / f"h{holds}_{size[0]}x{size[1]}_s{seed}.mp4"
                    truth = make_hold_video(path, holds=holds, size=size, seed=seed)  # type: ignore[arg-type]
                    row = {"size": f"{size[0]}x{size[1]}", "holds": holds, "seed": seed,
                           "frames": truth.frame_count, **measure(path, truth, args.top_k, tool)}
                    rows.append(row)
    result = {
        "bench": "pick_quality",
        "top_k": args.top_k,
        "summary": {"framesift": _summary(rows, "framesift"),
                    "per_frame_rule": _summary(rows, "per_frame_rule"),
                    "sharp_frames_0.4.0": _summary(rows, "sharp_frames") if tool else why},
        "videos": rows,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return result


if __name__ == "__main__":
    main()
