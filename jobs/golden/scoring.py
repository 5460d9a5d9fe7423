"""Score chunks of many videos through one Ray Data pipeline, or sequentially in-process."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import ray.data

from actors.records import FrameRange, FrameScore, VideoInfo
from actors.records import VideoChunk
from actors.scoring import ChunkScorer, ScorerConfig, scores_to_columns
from jobs.units import map_unit

ProgressFn = Callable[[str, int], None]  # (video_id, frames just scored)


@dataclass
class VideoScores:
    """All frame scores of one video, or the error that stopped it."""

    video_id: str
    scores: list[FrameScore] = field(default_factory=list)
    error: str | None = None
    error_code: str | None = None


def chunk_tasks(video_id: str, info: VideoInfo, chunks: Sequence[FrameRange]) -> list[VideoChunk]:
    return [VideoChunk.of(video_id, info, c) for c in chunks]


def _collect(batch: dict[str, np.ndarray], out: dict[str, VideoScores],
             on_progress: ProgressFn | None) -> None:
    counts: dict[str, int] = defaultdict(int)
    for vid, i, pts, t, sharp, motion, thumb, err, code in zip(
            batch["video_id"], batch["frame_index"], batch["pts"], batch["time_s"],
            batch["sharpness"], batch["motion"], batch["thumb"], batch["error"],
            batch["error_code"]):
        entry = out.setdefault(str(vid), VideoScores(str(vid)))
        if err:
            if not entry.error:
                entry.error, entry.error_code = str(err), str(code)
            continue
        entry.scores.append(FrameScore(int(i), int(pts), float(t), float(sharp), float(motion),
                                       bytes(thumb)))
        counts[str(vid)] += 1
    if on_progress:
        for vid, n in counts.items():
            on_progress(vid, n)


def _finalise(out: dict[str, VideoScores], expected: dict[str, int]) -> dict[str, VideoScores]:
    for vid, n in expected.items():
        entry = out.setdefault(vid, VideoScores(vid))
        if entry.error:
            entry.scores = []
            continue
        entry.scores.sort(key=lambda s: s.frame_index)
        got = [s.frame_index for s in entry.scores]
        if len(set(got)) != len(got) or any(not 0 <= i < n for i in got):
            raise RuntimeError(f"video {vid}: expected each of frames 0..{n - 1} at most once "
                               f"(frames never decoded are gaps); got {len(got)} scores")
    return out


def score_distributed(tasks: Sequence[VideoChunk], config: ScorerConfig, *, actors: bool,
                      concurrency: int, on_progress: ProgressFn | None = None) -> dict[str, VideoScores]:
    """Run every chunk task through one Ray Data ``map_batches``; results keyed, not ordered."""
    expected = _expected(tasks)
    ds = ray.data.from_items([t.to_row() for t in tasks], override_num_blocks=max(1, len(tasks)))
    ds = map_unit(ds, ChunkScorer, config, actors=actors, concurrency=min(concurrency, len(tasks)),
                  num_cpus=config.cpus)
    out: dict[str, VideoScores] = {}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        _collect(batch, out, on_progress)
    return _finalise(out, expected)


def score_sequential(tasks: Sequence[VideoChunk], config: ScorerConfig,
                     on_progress: ProgressFn | None = None) -> dict[str, VideoScores]:
    """The same algorithm in this process, one chunk after another (reference and benchmark)."""
    expected = _expected(tasks)
    scorer = ChunkScorer(config)
    scorer.setup()
    out: dict[str, VideoScores] = {}
    for task in tasks:
        _collect(scores_to_columns([scorer.score_or_error(task)]), out, on_progress)
    return _finalise(out, expected)


def _expected(tasks: Sequence[VideoChunk]) -> dict[str, int]:
    expected: dict[str, int] = {}
    for t in tasks:
        expected[t.video_id] = len(t.index)
    return expected
