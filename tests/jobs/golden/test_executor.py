"""Where a golden-frame run executes (jobs/golden/executor.py): the choice by estimate, a
running local Ray found by its address file, the in-process threads equal to the sequential
reference, and a CLI that starts without loading what it does not need."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from actors.synthetic import make_sample_video
from jobs.golden.executor import (PRIVATE_RAY_STARTUP_S, ExecutorError, choose_executor,
                                  estimate_work_s, local_ray_address)
from jobs.golden.finish import VideoJob
from jobs.golden.params import GoldenParams
from jobs.golden.stream import run_golden
from jobs.settings import Settings
from jobs.stores.local import LocalStore

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("clips")
    make_sample_video(root / "a.mp4", seconds=4, size=(320, 180), seed=1)
    make_sample_video(root / "b.mp4", seconds=3, size=(256, 144), seed=2)
    (root / "bad.mp4").write_bytes(b"not a video at all" * 100)
    return root


def test_a_short_job_runs_in_process_and_a_long_one_on_ray():
    short = choose_executor("auto", address=None, local_ray=None, work_s=4.0, cpus=2)
    assert short.mode == "in-process" and short.threads == 2 and not short.distributed
    assert "in process" in short.reason and "private Ray" in short.reason
    long = choose_executor("auto", address=None, local_ray=None, work_s=3600.0, cpus=2)
    assert long.mode == "private" and long.distributed and long.address is None
    # a Ray already up costs less to use than one to start: it pays for less work
    work = 2 * PRIVATE_RAY_STARTUP_S * 3  # in between the two break-even points
    assert choose_executor("auto", address=None, local_ray=None, work_s=work, cpus=2).mode == \
        "in-process"
    joined = choose_executor("auto", address=None, local_ray="127.0.0.1:6379", work_s=work,
                             cpus=2)
    assert joined.mode == "join" and joined.address == "127.0.0.1:6379"


def test_a_named_cluster_or_a_forced_mode_is_obeyed():
    given = choose_executor("auto", address="ray://head:10001", local_ray=None, work_s=1.0,
                            cpus=2)
    assert given.mode == "join" and given.address == "ray://head:10001"
    assert choose_executor("private", address=None, local_ray="127.0.0.1:6379", work_s=1.0,
                           cpus=2).mode == "private"
    assert choose_executor("in-process", address=None, local_ray="127.0.0.1:6379",
                           work_s=1e6, cpus=3).threads == 3
    with pytest.raises(ExecutorError, match="ray start --head"):
        choose_executor("join", address=None, local_ray=None, work_s=1.0, cpus=2)
    # remote or unprobed inputs: their work is unknown, so Ray (the one up, if any)
    assert choose_executor("auto", address=None, local_ray=None, work_s=None, cpus=2).mode == \
        "private"
    assert choose_executor("auto", address=None, local_ray="10.0.0.2:6379", work_s=None,
                           cpus=2).address == "10.0.0.2:6379"


def test_a_local_ray_is_found_only_while_it_answers(tmp_path):
    assert local_ray_address(str(tmp_path)) is None  # no address file
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        (tmp_path / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
        assert local_ray_address(str(tmp_path)) == f"127.0.0.1:{port}"
    assert local_ray_address(str(tmp_path)) is None  # a stale file of a Ray that stopped
    (tmp_path / "ray_current_cluster").write_text("garbage")
    assert local_ray_address(str(tmp_path)) is None


def test_the_work_is_estimated_from_local_headers_only(clips):
    one = estimate_work_s([str(clips / "a.mp4")])
    both = estimate_work_s([str(clips / "a.mp4"), str(clips / "b.mp4")])
    assert one is not None and both is not None and 0 < one < both
    assert estimate_work_s([str(clips / "a.mp4"), "https://example.com/v.mp4"]) is None
    # a broken or missing file is no work: it fails at its probe, whichever way the run goes
    assert estimate_work_s([str(clips / "a.mp4"), str(clips / "bad.mp4"),
                            str(clips / "missing.mp4")]) == one
    assert estimate_work_s([]) is None


def test_a_header_without_a_frame_count_is_counted_not_sent_to_ray(tmp_path):
    """A raw MPEG-2 elementary stream (an old .m2v) has no frame count or duration in its
    header: its packets are counted, so a short clip still runs in process."""
    import av

    from media_fixtures import random_video

    es = random_video(tmp_path / "old.m2v", "mpeg2video", "mpeg2video", 50, (320, 240))
    with av.open(str(es)) as c:
        assert not c.streams.video[0].frames and c.duration is None  # nothing in the header
    work = estimate_work_s([str(es)])
    assert work is not None and 0 < work < PRIVATE_RAY_STARTUP_S
    assert choose_executor("auto", address=None, local_ray=None, work_s=work,
                           cpus=2).mode == "in-process"


def test_in_process_threads_give_the_sequential_result(clips, tmp_path):
    jobs = [VideoJob(str(clips / "a.mp4"), "a"), VideoJob(str(clips / "bad.mp4"), "bad"),
            VideoJob(str(clips / "b.mp4"), "b")]
    params = GoldenParams(top_k=3, min_frames_per_chunk=20)
    seq, threaded = LocalStore(tmp_path / "seq"), LocalStore(tmp_path / "threads")
    reference = run_golden(jobs, params, seq, distributed=False)
    results = run_golden(jobs, params, threaded, distributed=False, threads=3)
    assert [(r.scan_id, r.status, r.error_code) for r in results] == \
        [(r.scan_id, r.status, r.error_code) for r in reference]
    assert [r.status for r in results] == ["succeeded", "failed", "succeeded"]
    # one video: planned in chunks for the threads, scored side by side
    [alone] = run_golden([VideoJob(str(clips / "a.mp4"), "a-alone")],
                         replace(params, workers=3), threaded, distributed=False, threads=3)
    assert alone.ok and len(threaded.manifest("a-alone").plan.chunks) > 1
    for scan, other in (("a", "a"), ("b", "b"), ("a", "a-alone")):
        a, b = seq.manifest(scan), threaded.manifest(other)
        assert [(g.frame_index, g.sharpness, g.motion, g.glint) for g in a.golden_frames] == \
            [(g.frame_index, g.sharpness, g.motion, g.glint) for g in b.golden_frames]
        assert pq.read_table(seq.root / a.scores_key).equals(
            pq.read_table(threaded.root / b.scores_key))


def test_the_cli_says_how_it_runs_and_runs_in_process(clips, tmp_path, monkeypatch):
    from jobs.cli.commands import app

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))  # no local Ray to find
    result = CliRunner().invoke(app, ["golden", str(clips / "a.mp4"), "--out",
                                      str(tmp_path / "out"), "--no-progress", "--top-k", "2"])
    assert result.exit_code == 0, result.output
    assert "executor: in process on" in result.output
    manifest = json.loads((tmp_path / "out" / "a" / "manifest.json").read_text())
    assert len(manifest["golden_frames"]) == 2
    joined = CliRunner().invoke(app, ["golden", str(clips / "a.mp4"), "--executor", "join",
                                      "--out", str(tmp_path / "out2"), "--no-progress"])
    assert joined.exit_code != 0 and "no Ray to join" in joined.output
    assert not (tmp_path / "out2" / "a").exists()


def test_the_old_executor_values_still_mean_the_ray_compute(monkeypatch):
    monkeypatch.setenv("FRAMESIFT_EXECUTOR", "actors")
    settings = Settings()
    assert (settings.executor, settings.ray_compute) == ("auto", "actors")
    assert settings.golden_params().actors
    assert Settings(executor="private", ray_compute="tasks").ray_compute == "tasks"


def test_the_cli_loads_no_heavy_library_to_start():
    code = ("import sys, jobs.cli.commands\n"
            "heavy = ('ray', 'cv2', 'av', 'pyarrow', 'numpy', 'pandas', 'torch', 'httpx')\n"
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_long_batch_is_estimated_from_a_sample(clips):
    one = estimate_work_s([str(clips / "a.mp4")])
    many = estimate_work_s([str(clips / "a.mp4")] * 200, sample=8)
    assert one is not None and many == pytest.approx(200 * one)


def test_a_small_local_batch_runs_in_process(clips, tmp_path, monkeypatch):
    from jobs.cli.commands import app

    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path / "no-ray"))
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text("\n".join(json.dumps({"video": str(clips / n), "scan_id": n.split(".")[0]})
                                  for n in ("a.mp4", "b.mp4", "bad.mp4")) + "\n")
    result = CliRunner().invoke(app, ["golden", "--manifest", str(manifest), "--out",
                                      str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 2, result.output  # the bad video fails alone
    assert "executor: in process on" in result.output
    assert (tmp_path / "out" / "a" / "manifest.json").exists()
    assert (tmp_path / "out" / "b" / "manifest.json").exists()
    assert not (tmp_path / "out" / "bad" / "manifest.json").exists()
