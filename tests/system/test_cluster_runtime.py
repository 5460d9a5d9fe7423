"""Real Ray heads started by these tests: a simulated autoscaling cluster whose node types come
from cluster.yaml, and ``ray job submit`` (JobSubmissionClient) against a head with a dashboard.

Each head has its own short temp dir and free ports, ``RAY_AUTH_MODE=disabled`` for server and
clients, and is stopped by pid (the processes whose command line names its temp dir, and their
children). Never the force-stop of every Ray process: other Ray clusters run on this machine. Clients run in
subprocesses, so the session's private Ray (``ray_cluster`` fixture) is neither used nor touched.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
RAY = str(BIN / "ray")
FAKE_ENV = {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _free_range(n: int) -> int:
    """First port of ``n`` consecutive free ports in a private range (bounded tries)."""
    for _ in range(200):
        base = random.randint(20000, 29000)
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    # python on PATH is this venv's (as on a cluster node), so `python -m jobs.golden` works
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", RAY_AUTH_MODE="disabled",
               PYTHONPATH=str(ROOT), **extra)
    return env


class Head:
    """``ray start --head`` with its own temp dir and ports; ``stop()`` kills by pid."""

    def __init__(self, *, num_cpus: int, autoscaling_config: dict | None = None,
                 dashboard: bool = False, env: dict[str, str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="fsc-", dir="/tmp")  # short: socket paths
        self.port = _free_port()
        self.dashboard_port = _free_port()
        self.num_cpus = num_cpus
        self.dashboard = dashboard
        self.env = _env(**(env or {}))
        self.config_path = None
        if autoscaling_config is not None:
            cfg = json.loads(json.dumps(autoscaling_config))
            cfg["provider"]["gcs_address"] = self.address  # workers join this head, not :6379
            self.config_path = os.path.join(self.temp_dir, "autoscaling.yaml")
            Path(self.config_path).write_text(yaml.safe_dump(cfg))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "Head":
        base = _free_range(60)
        cmd = [RAY, "start", "--head", f"--temp-dir={self.temp_dir}", f"--port={self.port}",
               f"--num-cpus={self.num_cpus}", "--num-gpus=0",
               f"--ray-client-server-port={_free_port()}",
               f"--dashboard-port={self.dashboard_port}",
               f"--include-dashboard={'true' if self.dashboard else 'false'}",
               "--dashboard-host=127.0.0.1",
               f"--node-manager-port={_free_port()}", f"--object-manager-port={_free_port()}",
               f"--min-worker-port={base}", f"--max-worker-port={base + 59}",
               f"--dashboard-agent-listen-port={_free_port()}",
               f"--dashboard-agent-grpc-port={_free_port()}",
               f"--metrics-export-port={_free_port()}", f"--runtime-env-agent-port={_free_port()}",
               "--object-store-memory=200000000", "--disable-usage-stats"]
        if self.config_path:
            cmd.append(f"--autoscaling-config={self.config_path}")
        res = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120,
                             cwd=self.temp_dir)
        if res.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed: {res.stdout[-2000:]}\n{res.stderr[-3000:]}")
        return self

    def processes(self) -> list[psutil.Process]:
        found: dict[int, psutil.Process] = {}
        for p in psutil.process_iter(["cmdline"]):
            try:
                if self.temp_dir in " ".join(p.info["cmdline"] or []):
                    found[p.pid] = p
                    for c in p.children(recursive=True):
                        found[c.pid] = c
            except psutil.Error:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def raylets(self) -> list[str]:
        """Command lines of this cluster's raylets (one per node)."""
        out = []
        for p in psutil.process_iter(["name", "cmdline"]):
            try:
                line = " ".join(p.info["cmdline"] or [])
            except psutil.Error:
                continue
            if p.info["name"] == "raylet" and self.temp_dir in line:
                out.append(line)
        return out

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def _workers(raylets: list[str]) -> tuple[int, int]:
    """(worker nodes, of which with a GPU) from raylet command lines; the head has --head."""
    workers = [r for r in raylets if " --head" not in r]
    gpus = [r for r in workers if ",GPU," in r.split("--static_resource_list=", 1)[-1].split(" ")[0]]
    return len(workers), len(gpus)


class Timeline(threading.Thread):
    """Samples the number of worker nodes twice a second (bounded by ``stop``)."""

    def __init__(self, head: Head) -> None:
        super().__init__(daemon=True)
        self.head = head
        self.samples: list[tuple[float, int, int]] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self._stop_event.wait(0.5):
            self.samples.append((time.monotonic() - t0, *_workers(self.head.raylets())))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)

    def now(self) -> tuple[int, int]:
        return self.samples[-1][1:] if self.samples else (0, 0)

    def wait_for(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.samples and predicate(*self.now()):
                return True
            time.sleep(0.5)
        return False


def fake_cluster_config(cpu_workers: int = 2) -> dict:
    """cluster.yaml's node types, shrunk to fit a 2-core machine, on the fake multi-node provider.

    Same names, same head CPU count (0: no scoring on the head), same GPU/CPU split; each CPU
    worker gets 1 CPU, the GPU worker 1 CPU and 1 fake GPU; a short idle timeout. The provider
    starts each "node" as a raylet on this machine.
    """
    src = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    types = src["available_node_types"]
    head_type = src["head_node_type"]
    small = {"object_store_memory": 150_000_000}
    nodes = {
        head_type: {"resources": {"CPU": types[head_type]["resources"]["CPU"]},
                    "node_config": {}, "max_workers": 0},
    }
    for name, t in types.items():
        if name == head_type:
            continue
        gpu = t["resources"].get("GPU", 0)
        nodes[name] = {
            "resources": {"CPU": 1, **({"GPU": 1} if gpu else {}), **small},
            "node_config": {},
            "min_workers": t.get("min_workers", 0),
            "max_workers": min(t["max_workers"], 1 if gpu else cpu_workers),
        }
    return {
        "cluster_name": "framesift-fake", "max_workers": cpu_workers + 1,
        "upscaling_speed": src["upscaling_speed"], "idle_timeout_minutes": 0.15,
        "provider": {"type": "fake_multinode", "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": nodes, "head_node_type": head_type,
        "auth": {}, "docker": {}, "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [], "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
    }


def test_fake_cluster_config_is_valid_and_derived_from_cluster_yaml():
    from ray.autoscaler._private.util import validate_config

    cfg = fake_cluster_config()
    validate_config(cfg)
    src = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert set(cfg["available_node_types"]) == set(src["available_node_types"])
    assert cfg["available_node_types"]["ray.head.default"]["resources"]["CPU"] == 0
    assert cfg["available_node_types"]["gpu_worker"]["resources"]["GPU"] == 1
    assert "GPU" not in cfg["available_node_types"]["cpu_worker"]["resources"]


GPU_PROBE = textwrap.dedent("""
    import json, os, sys, ray
    ray.init(address=sys.argv[1], log_to_driver=False)

    @ray.remote(num_gpus=1, num_cpus=1)
    def where():
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "gpu_ids": [int(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}

    got = ray.get(where.remote(), timeout=240)
    node = next(n for n in ray.nodes() if n["NodeID"] == got["node_id"])
    got["node_gpus"] = node["Resources"].get("GPU", 0)
    print("RESULT " + json.dumps(got), flush=True)
""")


@pytest.mark.slow
def test_autoscaling_cluster_scales_up_for_a_golden_job_and_back_down(videos, tmp_path):
    clips = [videos.get(seconds=8, size=(480, 270), seed=s)[0] for s in (21, 22)]
    manifest = tmp_path / "batch.jsonl"
    manifest.write_text("".join(json.dumps({"video": str(c), "scan_id": f"auto-{i}"}) + "\n"
                                for i, c in enumerate(clips)))
    head = Head(num_cpus=0, autoscaling_config=fake_cluster_config(cpu_workers=2), env=FAKE_ENV)
    timeline = Timeline(head)
    try:
        head.start()
        timeline.start()
        assert timeline.wait_for(lambda n, g: True, 10)
        assert timeline.now() == (0, 0)  # only the head, which has no CPU for scoring
        # the job plans for 2 CPUs (what the cluster may scale to): demand beyond the head
        job = subprocess.run(
            [sys.executable, "-m", "jobs.golden", "--manifest", str(manifest),
             "--address", head.address, "--cluster-cpus", "2", "--workers", "2",
             "--out", str(tmp_path / "out"), "--no-progress", "--top-k", "3"],
            cwd=ROOT, env=head.env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        peak = max(n - g for _, n, g in timeline.samples)
        assert peak == 2, timeline.samples  # 0 -> 2 CPU workers
        for i in range(2):
            m = json.loads((tmp_path / "out" / f"auto-{i}" / "manifest.json").read_text())
            assert m["status"] == "succeeded" and len(m["golden_frames"]) == 3
        # idle workers are terminated after the idle timeout (0.15 min here)
        assert timeline.wait_for(lambda n, g: n == 0, 120), timeline.samples[-5:]

        # a num_gpus task brings up the GPU worker type (fake GPU: no CUDA needed)
        probe = subprocess.run([sys.executable, "-c", GPU_PROBE, head.address], cwd=ROOT,
                               env=head.env, capture_output=True, text=True, timeout=300)
        assert probe.returncode == 0, probe.stderr[-3000:]
        got = json.loads(next(ln for ln in probe.stdout.splitlines()
                              if ln.startswith("RESULT "))[7:])
        assert got["gpu_ids"] == [0] and got["node_gpus"] == 1
        assert any(g == 1 for _, _, g in timeline.samples), timeline.samples[-5:]
    finally:
        timeline.stop()
        head.stop()
    assert head.processes() == []


SUBMIT = textwrap.dedent("""
    import json, sys, time
    from ray.job_submission import JobStatus, JobSubmissionClient

    url, entrypoint, working_dir = sys.argv[1:4]
    client = JobSubmissionClient(url)
    job_id = client.submit_job(entrypoint=entrypoint, runtime_env={
        "working_dir": working_dir,
        "excludes": [".venv", ".git", "output", "demo", "notebooks", "bench", "*.egg-info"],
        "env_vars": {"RAY_AUTH_MODE": "disabled"}})
    deadline = time.monotonic() + 300
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > deadline:
            break
        time.sleep(1)
        status = client.get_job_status(job_id)
    # the drivers this cluster has seen: the golden job must have joined it (not started a
    # private Ray of its own inside the job)
    import ray
    ray.init(address=sys.argv[4], log_to_driver=False)
    drivers = [j.get("Entrypoint", "") for j in ray._private.state.jobs()]
    print("RESULT " + json.dumps({"job_id": job_id, "status": str(status.value),
                                  "logs": client.get_job_logs(job_id), "drivers": drivers}),
          flush=True)
""")


@pytest.mark.slow
def test_ray_job_submit_runs_the_golden_entrypoint(videos, tmp_path):
    clip, truth = videos.get(seconds=6, seed=3)
    out = tmp_path / "out"
    head = Head(num_cpus=2, dashboard=True)
    try:
        head.start()
        entrypoint = (f"python -m jobs.golden {clip} --scan-id submitted --out {out} "
                      "--no-progress --top-k 3")
        res = subprocess.run([sys.executable, "-c", SUBMIT, f"http://127.0.0.1:{head.dashboard_port}",
                              entrypoint, str(ROOT), head.address], cwd=tmp_path, env=head.env,
                             capture_output=True, text=True, timeout=400)
        assert res.returncode == 0, res.stderr[-3000:]
        got = json.loads(next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))[7:])
        assert got["status"] == "SUCCEEDED", got["logs"][-3000:]
        manifest = json.loads((out / "submitted" / "manifest.json").read_text())
        assert len(manifest["golden_frames"]) == 3
        assert {g["frame_index"] for g in manifest["golden_frames"]} <= truth.sharp_still_frames()
        assert "submitted: 3 golden frames" in got["logs"] and "rank" in got["logs"]
        assert any("jobs.golden" in d for d in got["drivers"]), got["drivers"]
    finally:
        head.stop()
    assert head.processes() == []
