"""The coordinator with tenants and against its runners, without HTTP, on both databases
(``db_settings``): the queue is fair between tenants, and a cancel racing the commit of the
result is decided once, by the runner, whichever way the race goes."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace

import pyarrow as pa
import pytest

from serve.analyses.state import now


def _coordinator(settings: dict, monkeypatch):
    from serve.analyses.coordinator import AnalysisCoordinator

    monkeypatch.setattr("serve.analyses.lifecycle.ray.kill", lambda *args, **kwargs: None)
    return AnalysisCoordinator.func_or_class(settings)


def test_the_queue_is_round_robin_between_tenants_and_in_order_within_one(ray_cluster,
                                                                          db_settings,
                                                                          monkeypatch):
    coordinator = _coordinator({**db_settings, "max_running_analyses": 1,
                                "max_queued_analyses": 50, "max_active_analyses_per_key": 10},
                               monkeypatch)
    coordinator._start = lambda rec: None  # everything queued first
    names = {}
    for name, tenant in [("a1", "acme"), ("a2", "acme"), ("a3", "acme"), ("a4", "acme"),
                         ("a5", "acme"), ("b1", "beta"), ("b2", "beta"), ("c1", "corp")]:
        url = f"http://127.0.0.1:9/{name}.mp4"
        answer = asyncio.run(coordinator.submit({"source_kind": "url", "source": url,
                                                 "source_id": url, "scan_id": name,
                                                 "owner": tenant}))
        names[answer["view"]["id"]] = name
    fair = ["a1", "b1", "c1", "a2", "b2", "a3", "a4", "a5"]
    positions = {names[v["id"]]: v["queue_position"]
                 for v in asyncio.run(coordinator.list(None, 100))}
    assert sorted(positions, key=positions.get) == fair

    started = []

    def claim(rec) -> None:  # what _start records, with no runner behind it
        if coordinator.db.change(rec["id"], {"status": "running", "started_at": now(),
                                             "runner": "r"}, status_in=("queued",)):
            started.append(names[rec["id"]])

    coordinator._start = claim
    for _ in range(len(fair)):
        asyncio.run(coordinator._tick())  # one slot: one start
        [running] = coordinator.db.with_status("running")
        coordinator.db.change(running["id"], {"status": "succeeded", "runner": None},
                              status_in=("running",))
    assert started == fair


# ---- cancel against commit -------------------------------------------------------------------

class _Remote:
    """``handle.method.remote(...)`` of an actor, for a runner object in this process."""

    def __init__(self, target) -> None:
        self._target = target

    def __getattr__(self, name: str):
        method = getattr(self._target, name)

        class _Method:
            @staticmethod
            async def remote(*args, **kwargs):
                return await asyncio.to_thread(method, *args, **kwargs)
        return _Method


class _PausedGate:
    """The worker's commit gate (``RunnerCommitGate`` asks the runner actor the same way),
    holding the commit at ``where`` ("before" or "after" the runner's decision) until released."""

    def __init__(self, runner, analysis_id: str, where: str) -> None:
        self.runner, self.analysis_id, self.where = runner, analysis_id, where
        self.reached, self.release = threading.Event(), threading.Event()

    def claim(self) -> bool:
        if self.where == "before":
            self.reached.set()
            assert self.release.wait(30)
        granted = self.runner.claim_commit(self.analysis_id)
        if self.where == "after":
            self.reached.set()
            assert self.release.wait(30)
        return granted


def _result(store, scan_id: str, tag: bytes, gate=None) -> dict:
    """Store a result of ``scan_id`` (through ``gate`` when given), as the worker does; the
    analysis's result summary."""
    from jobs.stores.gate import GatedStore
    from manifest_fixtures import golden_frame, sample_manifest
    from serve.analyses.runner import result_summary

    target = GatedStore(store, gate) if gate is not None else store
    with target.open(scan_id) as session:
        key, uri = session.put_image(12, tag, "jpg", "image/jpeg")
        session.put_scores(pa.table({"frame_index": [12]}))
        frame = replace(golden_frame(12, 1, scan_id), key=key, uri=uri)
        manifest = sample_manifest(scan_id, [frame], timings_s={"total_s": len(tag)})
        location = session.commit(manifest)
    return result_summary(manifest, location)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_cancel_racing_the_commit_never_lies_and_never_loses_the_previous_result(
        ray_cluster, db_settings, tmp_path, monkeypatch, where):
    """Scan S succeeded once; a second analysis of S is cancelled while its commit is held
    just before (or just after) the runner decides. Before: the cancel wins, nothing is
    stored, and the first analysis's frames are still served. After: the cancel is refused
    (too late), the analysis ends succeeded and its result is the one stored."""
    from jobs.stores.gate import CommitRefusedError
    from jobs.stores.local import LocalStore
    from serve.analyses.runner import AnalysisRunner, CommitDecision
    from serve.errors import ApiError
    from serve.result_routes import local_result_folder

    out = tmp_path / "out"
    coordinator = _coordinator({**db_settings, "out_dir": str(out)}, monkeypatch)
    coordinator._start = lambda rec: None
    store = LocalStore(out)
    first = _result(store, "scan-s", b"first")
    for aid in ("a0", "a1"):
        coordinator.db.insert({"id": aid, "scan_id": "scan-s", "item_type": None,
                               "source_kind": "url", "source": f"http://x/{aid}", "params": {},
                               "fingerprint": aid, "status": "queued", "created_at": now()},
                              ("status", {"status": "queued"}))
    coordinator.db.update("a0", status="succeeded", result=first, finished_at=now())
    coordinator.db.update("a1", status="running", started_at=now(), runner="r1", attempts=1)
    runner = AnalysisRunner()
    runner.spec, runner.decision = {"id": "a1"}, CommitDecision("a1")
    coordinator._runners["a1"], coordinator._runner_names["a1"] = _Remote(runner), "r1"

    gate = _PausedGate(runner, "a1", where)
    outcome: dict = {}

    def worker() -> None:
        try:
            outcome["result"] = _result(store, "scan-s", b"second run", gate)
        except CommitRefusedError as exc:
            outcome["refused"] = exc

    thread = threading.Thread(target=worker)
    thread.start()
    assert gate.reached.wait(30)
    view = asyncio.run(coordinator.cancel("a1"))  # the commit is held right here
    gate.release.set()
    thread.join(30)

    if where == "before":
        assert view["status"] == "cancelled" and "refused" in outcome
        runner._emit("error", {"code": "cancelled", "message": str(outcome["refused"])})
        asyncio.run(coordinator._tick())
        assert coordinator.db.get("a1")["status"] == "cancelled"
        assert store.manifest("scan-s").golden_frames[0].uri.endswith("/scan-s/12.jpg")
        assert (out / "scan-s" / "12.jpg").read_bytes() == b"first"
        assert local_result_folder(out, "scan-s", first) is not None  # still served, not 410
    else:
        assert view["status"] == "running" and "result" in outcome  # too late to cancel
        runner._emit("done", {"result": outcome["result"]})
        asyncio.run(coordinator._tick())
        rec = coordinator.db.get("a1")
        assert rec["status"] == "succeeded" and rec["error_code"] is None
        assert (out / "scan-s" / "12.jpg").read_bytes() == b"second run"
        assert local_result_folder(out, "scan-s", rec["result"]) is not None
        with pytest.raises(ApiError) as superseded:  # replaced by a run that did succeed
            local_result_folder(out, "scan-s", first)
        assert superseded.value.status == 410


def test_the_workers_gate_asks_the_runner_actor_and_a_runner_gone_refuses(ray_cluster):
    """``RunnerCommitGate`` from a Ray task: granted while the runner holds the analysis and no
    cancel came first (a cancel after it is then too late); refused for another analysis, after
    a cancel, and once the runner is gone (killed by the cancel)."""
    import ray

    from serve.analyses.runner import (RUNNER_NAMESPACE, AnalysisRunner, RunnerCommitGate,
                                       new_runner_name)

    @ray.remote(num_cpus=0)
    def claim(gate) -> bool:
        return gate.claim()

    def runner_holding(analysis_id: str):
        name = new_runner_name()
        handle = ray.remote(AnalysisRunner).options(name=name, namespace=RUNNER_NAMESPACE,
                                                    num_cpus=0, max_restarts=0).remote()
        spec = {"id": analysis_id, "runner": name, "settings": {}, "source_kind": "url",
                "source": "http://127.0.0.1:9/none.mp4", "scan_id": "s", "item_type": None,
                "params": {}}  # fails at once (a private address): the decision stays
        ray.get(handle.start.remote(spec))
        return name, handle

    name, handle = runner_holding("a1")
    assert ray.get(claim.remote(RunnerCommitGate(name, "a2"))) is False
    assert ray.get(claim.remote(RunnerCommitGate(name, "a1"))) is True
    assert ray.get(handle.cancel.remote("a1")) == "committing"
    ray.kill(handle, no_restart=True)
    assert ray.get(claim.remote(RunnerCommitGate(name, "a1"))) is False

    name, handle = runner_holding("b1")
    assert ray.get(handle.cancel.remote("b1")) == "cancelled"
    assert ray.get(claim.remote(RunnerCommitGate(name, "b1"))) is False
    ray.kill(handle, no_restart=True)
