"""The golden-frame job end to end on a private local Ray (jobs/golden.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from actors.records import FrameRange, FrameScore, VideoChunk, VideoInfo
from actors.video import probe
from jobs.golden.job import GoldenParams, Hooks, VideoJob, run_golden
from jobs.golden.messages import (
    ChunkScores,
    ChunkTask,
    PlannedVideo,
    VideoInput,
    from_table,
    to_table,
)
from jobs.golden.planner import ChunkPlan, plan_batch
from jobs.golden.ray_runner import WireStage
from jobs.golden.stages import GoldenConfig, ScoreStage
from jobs.sources import SourceOptions
from jobs.stores.local import LocalStore
from jobs.units import map_stage

ROOT = Path(__file__).resolve().parents[3]


def _tasks(info: VideoInfo, chunks: list[FrameRange]) -> list[ChunkTask]:
    plan = ChunkPlan(info.frame_count, tuple(chunks), len(chunks), 0.0, 0.0, 0, 1, "test")
    video = PlannedVideo(VideoInput("v", info.path, "v", None, 0), info.without_index(), plan,
                         None, 0.0)
    return [ChunkTask(video, i, VideoChunk.of("v", info, c)) for i, c in enumerate(chunks)]


def _config() -> GoldenConfig:
    return GoldenConfig(GoldenParams(), SourceOptions(), plan_batch(1, 2), LocalStore("/none"))


def _score_in_process(info: VideoInfo) -> list[FrameScore]:
    """The reference: the score stage over the whole video as one chunk, in this process."""
    [task] = _tasks(info, [FrameRange(0, info.frame_count)])
    [scored] = ScoreStage(_config()).process(task)
    assert isinstance(scored, ChunkScores)
    return list(scored.scores)


def _score_on_ray(tasks: list[ChunkTask], *, actors: bool, on_batch=None) -> list[FrameScore]:
    """The production score stage on Ray Data (the operator the Ray runner builds)."""
    import ray.data

    ds = ray.data.from_items(to_table(tasks).to_pylist(), override_num_blocks=len(tasks))
    ds = map_stage(ds, WireStage(ScoreStage(_config())), actors=actors, concurrency=2,
                   batch_format="pyarrow")
    scores: list[FrameScore] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0):
        for message in from_table(batch):
            assert isinstance(message, ChunkScores), message
            scores.extend(message.scores)
            if on_batch:
                on_batch()
    return sorted(scores, key=lambda s: s.frame_index)


def _picks(result):
    return [(g.frame_index, g.sharpness, g.motion) for g in result.manifest.golden_frames]


@pytest.mark.parametrize("spec", [
    dict(seconds=8, size=(480, 270), seed=1),
    dict(seconds=8, size=(640, 360), seed=2, bframes=3, gop=48),
    dict(seconds=8, size=(854, 480), seed=5),
    dict(seconds=8, size=(480, 270), seed=4, vfr=True),
], ids=["seed1-270p", "seed2-360p-bframes", "seed5-480p", "seed4-vfr"])
def test_picks_fall_in_sharp_still_windows(ray_cluster, videos, tmp_path, spec):
    path, truth = videos.get(**spec)
    store = LocalStore(tmp_path)
    [result] = run_golden([VideoJob(str(path), "scan")], GoldenParams(), store)
    assert result.ok, result.error
    picks = [g.frame_index for g in result.manifest.golden_frames]
    assert len(picks) == 5
    good = truth.sharp_still_frames()
    assert set(picks) <= good, (picks, truth.windows)
    for kind in ("blurred", "shaking", "pan"):
        assert not set(picks) & truth.frames_of(kind)
    times = sorted(g.time_s for g in result.manifest.golden_frames)
    assert all(b - a >= 0.5 - 1e-9 for a, b in zip(times, times[1:]))
    assert all(g.still for g in result.manifest.golden_frames)
    holds = {h.id: h for h in result.manifest.selection.holds}
    for g in result.manifest.golden_frames:  # every pick comes from a steady hold
        assert holds[g.hold].start <= g.frame_index < holds[g.hold].stop
    # what was stored is what the manifest says
    for g in result.manifest.golden_frames:
        assert (tmp_path / g.key).is_file()
    scores = pq.read_table(tmp_path / "scan" / "scores.parquet").to_pydict()
    assert scores["frame_index"] == list(range(truth.frame_count))
    assert sorted(i for i, p in zip(scores["frame_index"], scores["picked"]) if p) == sorted(picks)
    assert [scores["hold"][g.frame_index] for g in result.manifest.golden_frames] == \
        [g.hold for g in result.manifest.golden_frames]


def test_distributed_result_equals_sequential_for_several_chunkings(ray_cluster, videos):
    path, _ = videos.get(seconds=6, size=(640, 360), seed=9, bframes=3, gop=40)
    info = probe(path)
    reference = _score_in_process(info)
    n = info.frame_count
    chunkings = [[FrameRange(0, n)],
                 [FrameRange(0, 61), FrameRange(61, n)],
                 [FrameRange(0, 1), FrameRange(1, 2), FrameRange(2, 77), FrameRange(77, 130),
                  FrameRange(130, n)]]
    for actors in (False, True):
        for chunks in chunkings:
            got = _score_on_ray(_tasks(info, chunks), actors=actors)
            assert got == reference, (actors, chunks)


def test_distributed_job_equals_sequential_job(ray_cluster, videos, tmp_path):
    path, _ = videos.get(seconds=8, size=(640, 360), seed=2, bframes=3, gop=48)
    seq = run_golden([VideoJob(str(path), "s")], GoldenParams(), LocalStore(tmp_path / "a"),
                     distributed=False)[0]
    # chunk stage as tasks (the default) and as a warm actor pool (--ray-compute actors)
    for workers, actors in ((None, False), (3, False), (7, False), (3, True)):
        dist = run_golden([VideoJob(str(path), "s")], GoldenParams(workers=workers, actors=actors),
                          LocalStore(tmp_path / f"b{workers}{actors}"))[0]
        assert _picks(dist) == _picks(seq)
        assert dist.manifest.selection == seq.manifest.selection
        assert [g.hold for g in dist.manifest.golden_frames] == \
            [g.hold for g in seq.manifest.golden_frames]
        assert [g.glint for g in dist.manifest.golden_frames] == \
            [g.glint for g in seq.manifest.golden_frames]
        a = pq.read_table(tmp_path / "a" / "s" / "scores.parquet")
        b = pq.read_table(tmp_path / f"b{workers}{actors}" / "s" / "scores.parquet")
        assert a.equals(b)


def test_many_videos_share_one_run_and_a_bad_one_does_not_stop_the_others(ray_cluster, videos, tmp_path):
    good1, _ = videos.get(seconds=4, seed=11)
    good2, _ = videos.get(seconds=4, seed=12, size=(640, 360))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00" * 1000)
    seen = []
    hooks = Hooks(on_pick=lambda scan, g: seen.append((scan, g.frame_index)))
    results = run_golden([VideoJob(str(good1), "g1"), VideoJob(str(bad), "bad"),
                          VideoJob(str(good2), "g2")], GoldenParams(top_k=3),
                         LocalStore(tmp_path / "out"), hooks=hooks)
    assert [r.status for r in results] == ["succeeded", "failed", "succeeded"]
    assert results[1].error_code == "not_a_video"
    assert not (tmp_path / "out" / "bad").exists()
    assert len(seen) == 6


def _scorer_worker_pids() -> list[int]:
    """Ray Data actor processes of *our* private cluster (children of its raylet)."""
    import psutil
    from ray._private import worker

    raylet = worker._global_node.all_processes["raylet"][0].process.pid
    pids = []
    for child in psutil.Process(raylet).children(recursive=True):
        try:
            if "MapWorker" in " ".join(child.cmdline()):
                pids.append(child.pid)
        except psutil.Error:
            continue
    return pids


def test_killed_scorer_actor_does_not_change_the_result(ray_cluster, videos):
    path, _ = videos.get(seconds=12, size=(1280, 720), seed=21, gop=30)
    info = probe(path)
    chunks = [FrameRange(a, min(info.frame_count, a + 30)) for a in range(0, info.frame_count, 30)]
    tasks = _tasks(info, chunks)
    reference = _score_in_process(info)
    killed: list[int] = []
    progress = threading.Event()

    def killer() -> None:
        progress.wait(60)
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            pids = _scorer_worker_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    got = _score_on_ray(tasks, actors=True, on_batch=progress.set)
    thread.join(5)
    assert killed, "no scorer actor was found to kill"
    assert got == reference


def _cli(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_cli_golden_end_to_end_and_job_entrypoint(videos, tmp_path):
    path, truth = videos.get(seconds=6, seed=3)
    res = _cli("golden", str(path), "--scan-id", "cli-scan", "--out", str(tmp_path / "out"),
               "--num-cpus", "2", "--top-k", "3", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "out" / "cli-scan" / "manifest.json").read_text())
    assert len(manifest["golden_frames"]) == 3
    assert {g["frame_index"] for g in manifest["golden_frames"]} <= truth.sharp_still_frames()
    assert "cli-scan" in res.stdout and "rank" in res.stdout
    assert "frame/s" in res.stderr  # the progress bar
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    job = subprocess.run([sys.executable, "-m", "jobs.golden", str(path), "--scan-id", "job-scan",
                          "--out", str(tmp_path / "out"), "--num-cpus", "2", "--no-progress",
                          "--top-k", "3"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=240)
    assert job.returncode == 0, job.stderr
    again = json.loads((tmp_path / "out" / "job-scan" / "manifest.json").read_text())
    assert [g["frame_index"] for g in again["golden_frames"]] == \
        [g["frame_index"] for g in manifest["golden_frames"]]


@pytest.mark.parametrize("args, message", [
    (["golden", "missing.mp4"], "no such file"),
    (["golden", "notes.mp4"], "not a readable media container"),
    (["golden", "x.mp4", "--scan-id", "../evil"], "invalid scan id"),
    (["golden", "x.mp4", "--top-k", "0"], "top_k"),
    (["golden", "x.mp4", "--flow", "magic"], "flow"),
    (["golden", "x.mp4", "--workers", "many"], "workers"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path, args, message):
    (tmp_path / "notes.mp4").write_text("not a video")
    (tmp_path / "x.mp4").write_text("not a video")
    res = _cli(*args, "--num-cpus", "1", "--no-progress", cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any(message in ln for ln in lines), res.stderr
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "output").exists() or not any((tmp_path / "output").rglob("manifest.json"))


def test_sample_video_cli_writes_video_and_truth(tmp_path):
    res = _cli("sample-video", str(tmp_path / "s.mp4"), "--seconds", "2", "--size", "320x180",
               cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    truth = json.loads((tmp_path / "s.mp4.truth.json").read_text())
    assert truth["frame_count"] == 60 and any(w["kind"] == "sharp_still" for w in truth["windows"])
    assert probe(tmp_path / "s.mp4").frame_count == 60
    bad = _cli("sample-video", str(tmp_path / "t.mp4"), "--size", "33x10", cwd=tmp_path)
    assert bad.returncode == 2 and "size must be even" in bad.stderr
    scan = _cli("sample-video", str(tmp_path / "h.mp4"), "--holds", "2", "--size", "320x180",
                cwd=tmp_path)
    assert scan.returncode == 0, scan.stderr
    assert "2 steady holds" in scan.stdout
    truth = json.loads((tmp_path / "h.mp4.truth.json").read_text())
    assert truth["scenario"] == "holds" and len(truth["holds"]) == 2
    assert len(truth["frames"]) == truth["frame_count"] == probe(tmp_path / "h.mp4").frame_count
