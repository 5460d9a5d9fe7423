"""Batch jobs over many videos (jobs/golden/batch.py, ``framesift golden --manifest``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jobs.golden.batch import (ManifestEntry, ManifestError, is_complete, read_manifest,
                               run_batch)
from jobs.golden.job import GoldenParams, Hooks
from jobs.sources import SourceOptions
from jobs.stores.local import LocalStore

ROOT = Path(__file__).resolve().parents[3]


# ---------------------------------------------------------------- manifest parsing

def test_csv_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    m = tmp_path / "sub" / "batch.csv"
    m.write_text("video,scan_id,item_type\n"
                 "a.mp4,scan-a,ring\n"
                 f"{tmp_path}/b c.mp4,,\n"
                 "https://cdn.example.com/v/x%20y.mp4?sig=1,,watch\n"
                 "s3://scans/2024/ring-7.mp4,,\n"
                 "gs://scans/b.mov,gs-b,\n"
                 "supabase://videos/u1/c.mp4,,\n")
    a, b, c, s3, gs, sb = read_manifest(m)
    assert a == ManifestEntry(str(tmp_path / "sub" / "a.mp4"), "scan-a", "ring", 2)
    assert (b.video, b.scan_id, b.item_type) == (f"{tmp_path}/b c.mp4", "b-c", None)
    assert c.is_remote and c.video.endswith("?sig=1") and c.item_type == "watch"
    assert c.scan_id == "x-20y"
    assert (s3.video, s3.scan_id, s3.is_remote) == ("s3://scans/2024/ring-7.mp4", "ring-7", True)
    assert (gs.scan_id, sb.scan_id, sb.video) == ("gs-b", "c", "supabase://videos/u1/c.mp4")


def test_jsonl_manifest_with_comments_and_blank_lines(tmp_path):
    m = tmp_path / "batch.jsonl"
    m.write_text('{"video": "a.mp4", "scan_id": "s1", "item_type": "ring"}\n\n'
                 '# a comment\n{"video": "/abs/b.mp4"}\n')
    a, b = read_manifest(m)
    assert (a.video, a.scan_id, a.item_type, a.line) == (str(tmp_path / "a.mp4"), "s1", "ring", 1)
    assert (b.video, b.scan_id, b.line) == ("/abs/b.mp4", "b", 4)


def test_a_plain_list_of_videos_is_a_manifest(tmp_path):
    m = tmp_path / "list.txt"  # what ``ls clips/*.mp4 > list.txt`` or a bucket listing gives
    m.write_text("# Monday's scans\nclips/a.mp4\n\nhttps://cdn.example.com/v/x,y.mp4?sig=1\n"
                 "s3://scans/2024/ring-7.mp4\n")
    a, url, s3 = read_manifest(m)
    assert (a.video, a.scan_id, a.line) == (str(tmp_path / "clips" / "a.mp4"), "a", 2)
    assert (url.video, url.line) == ("https://cdn.example.com/v/x,y.mp4?sig=1", 4)
    assert (s3.scan_id, s3.is_remote) == ("ring-7", True)
    with pytest.raises(ManifestError, match="line 2: ftp:// is not accepted"):
        (tmp_path / "bad.txt").write_text("a.mp4\nftp://host/b.mp4\n")
        read_manifest(tmp_path / "bad.txt")


@pytest.mark.parametrize("name, text, message", [
    ("m.csv", "path,scan_id\na.mp4,a\n", "needs a header row with a 'video' column"),
    ("m.csv", "video,scan_id,colour\na.mp4,a,red\n", "line 2: unknown field(s) colour"),
    ("m.csv", "video,scan_id\na.mp4,x\nb.mp4,x\n", "line 3: scan id 'x' already used on line 2"),
    ("m.csv", "video,scan_id\na.mp4,../evil\n", "line 2: invalid scan id"),
    ("m.csv", "video,scan_id\n,a\n", "line 2: 'video' is empty"),
    ("m.csv", "video\nftp://host/a.mp4\n", "line 2: ftp:// is not accepted"),
    ("m.csv", "video\ns3://b/a.mp4?endpoint_override=10.0.0.1\n", "line 2: s3://b/a.mp4: a query"),
    ("m.jsonl", '{"video": "a.mp4"}\n{"video": \n', "m.jsonl:2: not a JSON object"),
    ("m.jsonl", '["a.mp4"]\n', "expected a JSON object"),
    ("m.csv", "video,scan_id\n", "lists no videos"),
])
def test_bad_manifests_are_rejected_with_the_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / name)
    assert message in str(info.value)
    assert info.value.code == "invalid_manifest"


def test_missing_manifest(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.csv")


# ---------------------------------------------------------------- running a batch

class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http_videos(tmp_path_factory):
    """A loopback HTTP server serving a folder (video/mp4 for .mp4)."""
    root = tmp_path_factory.mktemp("served")
    handler = partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _entries(tmp_path, videos, http_videos):
    served, base = http_videos
    a, _ = videos.get(seconds=3, size=(320, 180), seed=11)
    b, _ = videos.get(seconds=3, size=(320, 180), seed=12)
    c, _ = videos.get(seconds=3, size=(320, 180), seed=13)
    shutil.copy(c, served / "c.mp4")
    (tmp_path / "bad.mp4").write_text("not a video")
    return [
        ManifestEntry(str(a), "scan-a", "ring"),
        ManifestEntry(str(tmp_path / "bad.mp4"), "scan-bad"),
        ManifestEntry(str(b), "scan-b", "watch"),
        ManifestEntry(str(tmp_path / "missing.mp4"), "scan-missing"),
        ManifestEntry(f"{base}/c.mp4?token=secret", "scan-url", "shoe"),
        ManifestEntry(f"{base}/nope.mp4", "scan-404"),
        ManifestEntry("http://10.255.255.1/v.mp4", "scan-private"),
    ]


def test_batch_results_errors_resume_and_summary(ray_cluster, videos, http_videos, tmp_path):
    entries = _entries(tmp_path, videos, http_videos)
    store = LocalStore(tmp_path / "out")
    params = GoldenParams(top_k=3)
    sources = SourceOptions(allowlist="127.0.0.1:*", max_bytes=1 << 26, deadline_s=30)
    finished = []
    report = run_batch(entries, params, store, sources=sources,
                       hooks=Hooks(on_result=lambda r: finished.append(r.scan_id)))
    by_id = {r.scan_id: r for r in report.results}
    assert [r.scan_id for r in report.results] == [e.scan_id for e in entries]
    assert sorted(finished) == sorted(e.scan_id for e in entries)  # one line per video
    assert {s for s, r in by_id.items() if r.ok} == {"scan-a", "scan-b", "scan-url"}
    codes = {s: r.error_code for s, r in by_id.items() if not r.ok}
    assert codes == {"scan-bad": "not_a_video", "scan-missing": "video_not_found",
                     "scan-404": "source_gone", "scan-private": "url_blocked"}
    assert "secret" not in json.dumps([r.error for r in report.results])
    assert all(r.manifest is None for r in report.results)  # the driver keeps no manifests
    for scan, item in (("scan-a", "ring"), ("scan-b", "watch"), ("scan-url", "shoe")):
        manifest = store.manifest(scan)
        assert manifest.item_type == item and len(manifest.golden_frames) == 3
        assert is_complete(store, scan, params)
    # the URL video was read by the workers (this server has no ranges: one full read each),
    # never downloaded to a folder; its recorded name has no query string
    assert store.manifest("scan-url").video.path == f"{http_videos[1]}/c.mp4?***"
    s = report.summary
    assert (s.videos, s.ok, s.failed, s.skipped) == (7, 3, 4, 0)
    assert s.frames == 3 * 90 and s.frames_per_s > 0 and s.cpu_s > 0
    assert s.worker_cpu_s > 0 and s.driver_cpu_s > 0 and 0 < s.first_result_s <= s.wall_s

    # resume: complete scans are skipped, nothing of theirs is rewritten; failed ones rerun
    stamps = {scan: store.manifest(scan).created_at for scan in ("scan-a", "scan-b", "scan-url")}
    again = run_batch(entries, params, store, sources=sources)
    assert sorted(again.skipped) == ["scan-a", "scan-b", "scan-url"]
    assert [r.scan_id for r in again.results] == ["scan-bad", "scan-missing", "scan-404",
                                                 "scan-private"]
    assert all(not r.ok for r in again.results)
    assert {scan: store.manifest(scan).created_at for scan in stamps} == stamps
    assert (again.summary.skipped, again.summary.ok, again.summary.frames) == (3, 0, 0)

    # an incomplete result (no manifest) and changed parameters are recomputed
    (tmp_path / "out" / "scan-b" / "manifest.json").unlink()
    third = run_batch(entries[:3], params, store, sources=sources)
    assert third.skipped == ["scan-a"] and [r.scan_id for r in third.results] == ["scan-bad", "scan-b"]
    assert store.manifest("scan-b") is not None
    other = GoldenParams(top_k=2)
    assert not is_complete(store, "scan-a", other)
    fourth = run_batch(entries[:1], other, store, sources=sources)
    assert fourth.skipped == [] and fourth.results[0].ok
    assert len(store.manifest("scan-a").golden_frames) == 2
    # --no-resume recomputes even a complete result
    fifth = run_batch(entries[:1], other, store, sources=sources, resume=False)
    assert fifth.skipped == [] and store.manifest("scan-a").created_at != stamps["scan-a"]


def _run(module_args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", *module_args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _summary(stdout: str) -> dict:
    line = next(ln for ln in stdout.splitlines() if ln.startswith('{"summary"'))
    return json.loads(line)["summary"]


@pytest.mark.slow
def test_cli_manifest_end_to_end_and_rerun(videos, tmp_path):
    a, _ = videos.get(seconds=3, size=(320, 180), seed=11)
    b, _ = videos.get(seconds=3, size=(320, 180), seed=12)
    shutil.copy(a, tmp_path / "a.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    (tmp_path / "batch.jsonl").write_text(
        '{"video": "a.mp4", "scan_id": "cli-a", "item_type": "ring"}\n'
        f'{{"video": "{b}", "scan_id": "cli-b"}}\n'
        '{"video": "broken.mp4", "scan_id": "cli-broken"}\n')
    common = ["--out", str(tmp_path / "out"), "--num-cpus", "2", "--no-progress", "--top-k", "2"]
    first = _run(["jobs.cli", "golden", "--manifest", str(tmp_path / "batch.jsonl"), *common],
                 cwd=tmp_path)
    assert first.returncode == 2, first.stderr  # one video failed: the batch says so
    assert "failed cli-broken" in first.stderr
    summary = _summary(first.stdout)
    assert (summary["videos"], summary["ok"], summary["failed"], summary["skipped"]) == (3, 2, 1, 0)
    assert summary["frames"] == 180 and summary["frames_per_s"] > 0
    assert "frames/s" in first.stdout and "CPU-seconds" in first.stdout
    for scan in ("cli-a", "cli-b"):
        assert (tmp_path / "out" / scan / "manifest.json").is_file()
    # the `ray job submit` entrypoint, rerun: complete scans are skipped
    second = _run(["jobs.golden", "--manifest", "batch.jsonl", *common], cwd=tmp_path)
    assert second.returncode == 2, second.stderr
    assert "skipped cli-a" in second.stdout and "skipped cli-b" in second.stdout
    assert _summary(second.stdout)["skipped"] == 2
    # misuse: a manifest and videos together, or nothing at all
    both = _run(["jobs.cli", "golden", "a.mp4", "--manifest", "batch.jsonl"], cwd=tmp_path)
    assert both.returncode == 2 and "give no VIDEO" in both.stderr
    neither = _run(["jobs.cli", "golden"], cwd=tmp_path)
    assert neither.returncode == 2 and "--manifest FILE" in neither.stderr
