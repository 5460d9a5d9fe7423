"""The progress total is known as soon as a video is probed (issue 21: a 100,000-frame video
planned as one unit showed 0/0 until it was done): ``on_planned`` comes before its frames are
scored, for one-chunk videos as for chunked ones."""

from __future__ import annotations

import pytest

from actors.scoring import ChunkScorer
from jobs.golden import stages
from jobs.golden.finish import Hooks, VideoJob
from jobs.golden.params import GoldenParams
from jobs.golden.stream import run_golden
from jobs.stores.local import LocalStore


@pytest.mark.parametrize("announce_s, first", [(0.0, "planned"), (1e9, "scoring")],
                         ids=["long-enough-to-announce", "short-plan-comes-with-result"])
def test_a_one_chunk_video_announces_its_frame_count_before_it_is_scored(
        videos, tmp_path, monkeypatch, announce_s, first):
    """A one-chunk video whose estimated work reaches ``ANNOUNCE_WORK_S`` (a 100,000-frame
    video: minutes) sends its plan before it is scored; a shorter one's plan comes with its
    result (one message), still before its frames are counted."""
    monkeypatch.setattr(stages, "ANNOUNCE_WORK_S", announce_s)
    path, _ = videos.get(seconds=1.0, size=(160, 90), seed=5)
    events: list[tuple[str, int]] = []
    real = ChunkScorer.score

    def scoring(self, task, *args, **kwargs):
        events.append(("scoring", len(task.frames)))
        return real(self, task, *args, **kwargs)

    monkeypatch.setattr(ChunkScorer, "score", scoring)
    hooks = Hooks(on_planned=lambda s, info, plan: events.append(("planned", info.frame_count)),
                  on_frames=lambda s, n: events.append(("frames", n)))
    [result] = run_golden([VideoJob(str(path), "one")], GoldenParams(top_k=2),
                          LocalStore(tmp_path / "out"), distributed=False, hooks=hooks)
    assert result.ok
    expected = [("planned", 30), ("scoring", 30), ("frames", 30)]
    if first == "scoring":
        expected[:2] = expected[1::-1]
    assert events == expected
