"""A batch on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head
with ``num_cpus=0`` and two one-CPU worker nodes) whose inputs are only URLs and S3 objects:
the workers read them from a loopback HTTP server and moto's S3 server, nothing is shared but
the result folder. One worker node is killed mid-batch: every video still succeeds, identical
to the sequential run. Then the driver is killed mid-batch and the batch rerun: every video
ends succeeded once, nothing stored twice, nothing half-written.

The cluster lives in a subprocess (``cluster_manager.py``) and the batches run as
``python -m jobs.golden`` subprocesses (the ``ray job submit`` entrypoint) that join it, so
the test session's private Ray is neither used nor touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from jobs.golden.job import GoldenParams, VideoJob, run_golden
from jobs.stores.local import LocalStore
from managed_cluster import ManagedCluster
from source_servers import MotoS3, RangeServer

ROOT = Path(__file__).resolve().parents[2]
SEEDS = (51, 52, 53, 54)
pytestmark = pytest.mark.slow


class ClusterManager(ManagedCluster):
    """cluster_manager.py in a subprocess (see managed_cluster.py): two one-CPU workers."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__("cluster_manager.py", ["2"], env, prefix="fsk-")
        self.address = self.first["address"]

    def busy_workers(self) -> list[str]:
        """Titles of this cluster's worker processes running a batch's tasks or actors."""
        titles = []
        for raylet in self.processes():
            try:
                if raylet.name() != "raylet":
                    continue
                for child in raylet.children(recursive=True):
                    title = " ".join(child.cmdline()).strip()
                    if title.startswith("ray::") and any(
                            name in title for name in ("MapBatches", "MapWorker", "Repartition",
                                                       "_finish_task", "FromItems")):
                        titles.append(title)
            except psutil.Error:
                continue
        return titles


@pytest.fixture(scope="module")
def inputs(videos, tmp_path_factory):
    """Four videos, each behind an honest HTTP URL and in an S3 bucket: eight inputs."""
    root = tmp_path_factory.mktemp("remote")
    local = []
    for seed in SEEDS:
        path, _ = videos.get(seconds=3, size=(320, 180), seed=seed)
        shutil.copy(path, root / f"v{seed}.mp4")
        local.append(path)
    http = RangeServer(root).start()
    s3 = MotoS3().start()
    client = s3.client()
    client.create_bucket(Bucket="scans")
    for seed in SEEDS:
        client.upload_file(str(root / f"v{seed}.mp4"), "scans", f"in/v{seed}.mp4")
    manifest = root / "batch.jsonl"
    rows = []
    for seed in SEEDS:
        rows.append({"video": http.url("r", f"v{seed}.mp4"), "scan_id": f"http-{seed}"})
        rows.append({"video": f"s3://scans/in/v{seed}.mp4", "scan_id": f"s3-{seed}"})
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    yield manifest, [r["scan_id"] for r in rows], s3, local
    http.stop()
    s3.stop()


@pytest.fixture(scope="module")
def env(inputs):
    _, _, s3, _ = inputs
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")},
            **MotoS3.KEYS, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT),
            "FRAMESIFT_URL_ALLOWLIST": "127.0.0.1:*", "FRAMESIFT_S3_ENDPOINT": s3.endpoint,
            "FRAMESIFT_S3_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.fixture(scope="module")
def cluster(env):
    manager = ClusterManager(env)
    yield manager
    manager.stop()


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """The same videos as local files, sequentially in this process."""
    _, _, _, local = inputs
    store = LocalStore(tmp_path_factory.mktemp("reference"))
    run_golden([VideoJob(str(p), f"ref-{seed}") for p, seed in zip(local, SEEDS)],
               GoldenParams(top_k=3), store, distributed=False)
    return store


class Driver:
    """``python -m jobs.golden --manifest`` joined to the cluster; stdout read as it comes."""

    def __init__(self, manifest: Path, out: Path, address: str, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.done = threading.Event()
        self.stderr = tempfile.TemporaryFile("w+")  # a file: an unread pipe could block it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.golden", "--manifest", str(manifest), "--address",
             address, "--out", str(out), "--top-k", "3", "--no-progress"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        self.done.set()

    def wait_for_results(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while sum(ln.startswith("done ") for ln in self.lines) < n:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no {n} results: {self.lines}\n{self.errors()[-3000:]}")
            time.sleep(0.05)

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()

    def finish(self, timeout: float = 600) -> tuple[int, dict, str]:
        code = self.proc.wait(timeout)
        self.done.wait(30)
        stderr = self.errors()
        line = next((ln for ln in self.lines if ln.startswith('{"summary"')), None)
        assert line is not None, (self.lines, stderr[-3000:])
        return code, json.loads(line)["summary"], stderr


def _complete(out: Path, scan: str) -> bool:
    """A result folder holds the manifest and every file it names (nothing half-written)."""
    manifest = out / scan / "manifest.json"
    if not manifest.is_file():
        return False
    data = json.loads(manifest.read_text())
    return ((out / data["scores_key"]).is_file()
            and all((out / g["key"]).is_file() for g in data["golden_frames"]))


def _assert_identical(out: Path, scan: str, reference: LocalStore) -> None:
    seed = scan.split("-")[1]
    ours, ref = json.loads((out / scan / "manifest.json").read_text()), reference.manifest(f"ref-{seed}")
    assert [(g["frame_index"], g["sharpness"], g["motion"]) for g in ours["golden_frames"]] == \
        [(g.frame_index, g.sharpness, g.motion) for g in ref.golden_frames]
    assert pq.read_table(out / scan / "scores.parquet").equals(
        pq.read_table(reference.root / ref.scores_key))


def test_a_worker_node_killed_mid_batch_changes_nothing(cluster, inputs, env, reference, tmp_path):
    manifest, scans, _, _ = inputs
    out = tmp_path / "out"
    driver = Driver(manifest, out, cluster.address, env)
    driver.wait_for_results(1)
    assert "killed" in cluster.command("kill")  # one of the two worker nodes, mid-batch
    code, summary, stderr = driver.finish()
    assert code == 0, stderr[-3000:]
    assert (summary["videos"], summary["ok"], summary["failed"]) == (8, 8, 0)
    assert summary["first_result_s"] < summary["wall_s"]
    for scan in scans:
        assert _complete(out, scan), scan
        _assert_identical(out, scan, reference)
    plan = next(ln for ln in stderr.splitlines() if ln.startswith("plan:"))
    assert "8 videos for 2 CPUs" in plan and "one unit per video" in plan
    assert "added" in cluster.command("add")  # back to two worker nodes


def test_a_driver_killed_mid_batch_loses_only_the_videos_in_flight(cluster, inputs, env,
                                                                   reference, tmp_path):
    manifest, scans, _, _ = inputs
    out = tmp_path / "out"
    first = Driver(manifest, out, cluster.address, env)
    first.wait_for_results(2)
    os.kill(first.proc.pid, signal.SIGKILL)
    first.proc.wait(30)
    deadline = time.monotonic() + 120  # Ray stops the dead job's tasks within seconds
    while cluster.busy_workers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not cluster.busy_workers(), cluster.busy_workers()
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    complete = [s for s in visible if _complete(out, s)]
    assert visible == complete, "a killed run left a half-written result"
    assert 2 <= len(complete) < len(scans)
    stamps = {s: json.loads((out / s / "manifest.json").read_text())["created_at"] for s in complete}

    again = Driver(manifest, out, cluster.address, env)
    code, summary, stderr = again.finish()
    assert code == 0, stderr[-3000:]
    assert (summary["ok"], summary["skipped"], summary["failed"]) == \
        (len(scans) - len(complete), len(complete), 0)
    for scan in complete:
        assert f"skipped {scan}" in "\n".join(again.lines)
        assert json.loads((out / scan / "manifest.json").read_text())["created_at"] == stamps[scan]
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == sorted(scans)
    for scan in scans:
        assert _complete(out, scan)
        _assert_identical(out, scan, reference)
