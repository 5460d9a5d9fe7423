"""The HTTP service loses the node that runs its coordinator and the analysis runner, mid-analysis,
on a multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``: a head with
``num_cpus=0`` and two one-CPU worker nodes, in a subprocess: service_cluster.py), with the
records in the session's real PostgreSQL and uploads in S3 (moto's server on loopback).

Serve restarts the coordinator on the other node; it finds the analysis in PostgreSQL, sees its
runner is gone and queues it again ahead of those accepted after it; a runner on the other node
reads the upload from S3. The analysis ends ``succeeded`` exactly once, the queued analyses run
in the order they were accepted, and a client that reconnects to the event stream with
``Last-Event-ID`` continues from the last event it saw, with no gap and nothing twice.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import httpx
import pytest
from httpx_sse import SSEError, connect_sse

from managed_cluster import ManagedCluster
from serve_fixtures import free_port, upload_video, wait_for_status
from source_servers import MotoS3

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class ServiceCluster(ManagedCluster):
    """service_cluster.py in a subprocess (see managed_cluster.py)."""

    def __init__(self, env: dict[str, str], port: int, settings: dict) -> None:
        super().__init__("service_cluster.py", [str(port), json.dumps(settings)], env,
                         prefix="fsf-", cwd=ROOT)
        self.address = self.first["ready"]


def _log_tail(temp_dir: str, lines: int = 120) -> str:
    """The cluster's log lines that mention an error or a failure (every node's Ray logs)."""
    hits = []
    for path in sorted(Path(temp_dir).rglob("*")):
        if path.is_file() and path.suffix in (".log", ".err", ".out"):
            for line in path.read_text(errors="replace").splitlines():
                if any(w in line.lower() for w in ("error", "fail", "requeue", "interrupt")):
                    hits.append(f"{path.name}: {line[:400]}")
    return "\n".join(hits[-lines:])


def _follow(client: httpx.Client, url: str, last_id: int | None, stop_at: tuple[str, ...],
            timeout: float = 300) -> list[tuple[int, str, dict]]:
    """What a reconnecting EventSource does: read the stream, and when it fails or ends early
    connect again with ``Last-Event-ID`` (the last id seen), until one of ``stop_at``."""
    seen: list[tuple[int, str, dict]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
        try:
            with connect_sse(client, "GET", url, headers=headers) as source:
                for sse in source.iter_sse():
                    if not sse.data:  # a keep-alive comment (httpx_sse yields it with no data)
                        continue
                    last_id = int(sse.id)
                    seen.append((last_id, sse.event, sse.json()))
                    if sse.event in stop_at:
                        return seen
        except (httpx.HTTPError, SSEError):
            pass  # the service is restarting: try again
        time.sleep(0.5)
    raise AssertionError(f"no {stop_at} event within {timeout} s: {[e[:2] for e in seen]}")


def test_a_lost_node_with_the_coordinator_and_runner_changes_no_outcome(make_database, videos,
                                                                        tmp_path):
    import psycopg

    warm, _ = videos.get(seconds=2, size=(320, 180), seed=61)
    first_video, _ = videos.get(seconds=20, size=(1280, 720), seed=32, gop=30)  # 600 frames
    later = [videos.get(seconds=2, size=(320, 180), seed=s)[0] for s in (63, 64)]
    database = make_database()
    s3 = MotoS3().start()
    s3.client().create_bucket(Bucket="fs-uploads")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")},
           **MotoS3.KEYS, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT),
           "AWS_EC2_METADATA_DISABLED": "true", "FRAMESIFT_DATABASE_URL": database,
           "FRAMESIFT_S3_ENDPOINT": s3.endpoint, "FRAMESIFT_S3_REGION": "us-east-1"}
    settings = {"state_dir": str(tmp_path / "state"), "out_dir": str(tmp_path / "out"),
                "uploads_url": "s3://fs-uploads/incoming", "max_running_analyses": 1,
                "runner_resources": {"fs_service": 0.01}, "top_k": 3}
    port = free_port()
    cluster = None
    try:
        cluster = ServiceCluster(env, port, settings)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
            # a first analysis puts a warm runner beside the coordinator, on node a
            w = upload_video(c, warm, "failover-warm")
            assert w.status_code == 202, w.text
            assert wait_for_status(c, w.json()["id"], timeout=300)["status"] == "succeeded"
            assert "added" in cluster.command("add")  # node b: where they can move
            placed = cluster.command("where")
            [warm_runner] = placed["runners"]
            assert placed == {"coordinator": "a", "runners": {warm_runner: "a"}}, placed

            ids = []
            for path, scan in ((first_video, "failover-1"), (later[0], "failover-2"),
                               (later[1], "failover-3")):
                r = upload_video(c, path, scan)
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            events_url = f"/v1/analyses/{ids[0]}/events"
            # a client watches the first analysis until it runs ...
            seen = _follow(c, events_url, None, stop_at=("state", "status", "done", "error"))
            while seen[-1][2].get("status") == "queued":
                seen += _follow(c, events_url, seen[-1][0], stop_at=("status", "done", "error"))
            assert seen[-1][2].get("status") == "running", [e[:2] for e in seen]
            with psycopg.connect(database) as db:
                [(status, runner, source)] = db.execute(
                    "select status, runner, source from framesift_service.analyses where id = %s",
                    (ids[0],)).fetchall()
            # ... and goes away while node a is lost with the coordinator and the runner
            assert cluster.command("kill") == {"killed": "a"}
            assert (status, runner) == ("running", warm_runner)  # the runner on node a
            assert source.startswith("s3://fs-uploads/incoming/")  # not a path on node a
            rest = _follow(c, events_url, seen[-1][0], stop_at=("done", "error"))
            for aid in ids:
                final = wait_for_status(c, aid, timeout=300)
                assert final["status"] == "succeeded", json.dumps(final)
            moved = cluster.command("where")

        kinds = [k for _, k, _ in seen + rest]
        got = [i for i, _, _ in seen[1:] + rest]
        assert got == list(range(seen[0][0] + 1, rest[-1][0] + 1)), kinds  # no gap, no repeat
        assert rest[-1][1] == "done" and kinds.count("done") == 1 and "error" not in kinds
        requeued = [d for _, k, d in rest if k == "status" and d["status"] == "queued"]
        assert len(requeued) == 1 and requeued[0]["reason"], rest  # why it starts again
        assert moved["coordinator"] == "b" and set(moved["runners"].values()) <= {"b"}, moved

        with psycopg.connect(database) as db:
            rows = {r[0]: r[1:] for r in db.execute(
                "select id, status, attempts, started_at, finished_at "
                "from framesift_service.analyses where id = any(%s)", (ids,)).fetchall()}
            finals = {(a, t): n for a, t, n in db.execute(
                "select analysis_id, type, count(*) from framesift_service.events where "
                "analysis_id = any(%s) and type in ('done', 'error') group by 1, 2",
                (ids,)).fetchall()}
        assert [rows[a][:2] for a in ids] == [("succeeded", 2), ("succeeded", 1),
                                              ("succeeded", 1)]
        assert all(finals.get((a, "done")) == 1 and (a, "error") not in finals for a in ids)
        # one at a time, in the order they were accepted (the interrupted one first)
        (_, _, s1, f1), (_, _, s2, f2), (_, _, s3_, _) = (rows[a] for a in ids)
        assert s1 < f1 <= s2 < f2 <= s3_
        for i in (1, 2, 3):
            assert (tmp_path / "out" / f"failover-{i}" / "manifest.json").is_file()
        # every upload was deleted once its analysis ended (pyarrow leaves a folder marker)
        left = s3.client().list_objects_v2(Bucket="fs-uploads").get("Contents", [])
        assert [o["Key"] for o in left if not o["Key"].endswith("/")] == []
    except BaseException:
        if cluster is not None:  # the service's own account of what went wrong
            print(_log_tail(cluster.temp_dir))
        raise
    finally:
        if cluster is not None:
            cluster.stop()
        s3.stop()
