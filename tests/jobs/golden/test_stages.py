"""The golden stages on their own, in this process (jobs/golden/stages.py)."""

from __future__ import annotations

from dataclasses import fields, replace

from actors.records import FrameScore
from actors.video import probe
from jobs.golden.messages import (ChunkScores, ChunkTask, PlannedVideo, VideoDone, VideoFailed,
                                  VideoInput, to_table)
from jobs.golden.params import GoldenParams
from jobs.golden.planner import plan_batch
from jobs.golden.stages import FinishStage, GoldenConfig, ScoreStage, VideoStage
from jobs.sources import SourceOptions
from jobs.stores.local import LocalStore


def _config(tmp_path, **params) -> GoldenConfig:
    golden = GoldenParams(top_k=2, **params)
    return GoldenConfig(golden, SourceOptions(), plan_batch(1, 3, workers=golden.workers),
                        LocalStore(tmp_path / "out"))


def test_a_split_video_leaves_its_plan_and_chunks_whose_scores_carry_no_pixels(videos, tmp_path):
    path, _ = videos.get(seconds=2)
    config = _config(tmp_path, workers=3)
    out = list(VideoStage(config).process(VideoInput("s", str(path), "clip.mp4", None, 0)))
    video, tasks = out[0], out[1:]
    assert isinstance(video, PlannedVideo) and len(tasks) == 3 == video.n_chunks
    assert all(isinstance(t, ChunkTask) for t in tasks)
    scored = [m for t in tasks for m in ScoreStage(config).process(t)]
    assert all(isinstance(m, ChunkScores) for m in scored)
    assert [m.index is not None for m in scored] == [True, False, False]  # chunk 0 only
    scores = [s for m in scored for s in m.scores]
    assert [s.frame_index for s in scores] == list(range(video.summary.frame_count))
    # metrics only: no field of a score holds pixels, the thumbnail is a 16x16 signature
    assert {f.name for f in fields(FrameScore)} == {"frame_index", "pts", "time_s", "sharpness",
                                                    "motion", "thumb"}
    assert {len(s.thumb) for s in scores} == {256}
    assert to_table(scored).nbytes < 400 * len(scores) + 2000 * len(scored)  # no frames


def test_a_whole_video_is_finished_by_the_stage_that_probed_it(videos, tmp_path):
    path, _ = videos.get(seconds=2)
    config = _config(tmp_path)
    [done] = VideoStage(config).process(VideoInput("w", str(path), "clip.mp4", None, 0))
    assert isinstance(done, VideoDone) and done.frames == probe(path).frame_count
    assert done.video.n_chunks == 1  # its plan comes with it (short: no message of its own)
    assert (tmp_path / "out" / "w" / "manifest.json").is_file()


def test_a_chunk_whose_video_is_gone_becomes_its_videos_failure(videos, tmp_path):
    path, _ = videos.get(seconds=2)
    config = _config(tmp_path, workers=2)
    video, first, _ = VideoStage(config).process(VideoInput("g", str(path), "clip.mp4", None, 0))
    gone = replace(first, chunk=replace(first.chunk, path=str(tmp_path / "gone.mp4")),
                   video=replace(video, input=replace(video.input, url=str(tmp_path / "gone.mp4"))))
    [failed] = ScoreStage(config).process(gone)
    assert isinstance(failed, VideoFailed) and failed.chunk == 0
    assert failed.error_code == "video_not_found" and "gone.mp4" in failed.error


def test_the_finish_stage_refuses_scores_that_do_not_fit_the_index(videos, tmp_path):
    path, _ = videos.get(seconds=2)
    config = _config(tmp_path, workers=2)
    video, *tasks = VideoStage(config).process(VideoInput("f", str(path), "clip.mp4", None, 0))
    parts = [m for t in tasks for m in ScoreStage(config).process(t)]
    twice = (parts[0], parts[0], *parts[1:])
    from jobs.golden.messages import VideoScores

    [out] = FinishStage(config).process(VideoScores(video, twice))
    assert isinstance(out, VideoFailed) and "at most once" in out.error
    assert not (tmp_path / "out" / "f").exists()
    [ok] = FinishStage(config).process(VideoScores(video, tuple(parts)))
    assert isinstance(ok, VideoDone)
