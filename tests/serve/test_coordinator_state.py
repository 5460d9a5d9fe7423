"""The coordinator's durable state on its own (no HTTP), on both databases (``db_settings``:
SQLite and PostgreSQL): uploads it owns, URLs it keeps out of the database, the queue's order,
event ids, and two coordinators overlapping on one database (a replica restarted elsewhere
while the old one still runs) that never apply an event twice nor end an analysis twice."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from serve.analyses.state import now
from serve_fixtures import stored_text


def _open(settings: dict):
    from serve.analyses.open_db import open_analysis_db
    from serve.settings import ServiceSettings

    return open_analysis_db(ServiceSettings(**settings))


def _record(db, analysis_id: str, source: str, kind: str = "file", **extra) -> None:
    assert db.insert({"id": analysis_id, "scan_id": "s1", "item_type": None,
                      "source_kind": kind, "source": source, "params": {},
                      "fingerprint": analysis_id, "status": "queued", "created_at": now(),
                      **extra}, ("status", {"status": "queued"}))


def test_start_up_deletes_uploads_no_analysis_refers_to(ray_cluster, db_settings, tmp_path):
    from serve.analyses.coordinator import AnalysisCoordinator

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    first = AnalysisCoordinator.func_or_class(db_settings)
    queued, orphan, fresh = (uploads / "a1.upload", uploads / "incoming-old.upload",
                             uploads / "incoming-being-written.upload")
    for path in (queued, orphan, fresh):
        path.write_bytes(b"\0" * 1024)
    for path in (queued, orphan):  # written long ago
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    _record(first.db, "a1", str(queued))
    # the service restarts: the new coordinator sweeps before anything else
    AnalysisCoordinator.func_or_class(db_settings)
    assert queued.exists() and fresh.exists()  # referenced; still being received
    assert not orphan.exists()


def test_a_url_with_secrets_is_stored_redacted_and_fails_clearly_after_a_restart(ray_cluster,
                                                                                  db_settings):
    from serve.analyses.coordinator import AnalysisCoordinator

    settings = {**db_settings, "max_running_analyses": 1}
    coordinator = AnalysisCoordinator.func_or_class(settings)
    coordinator._start = lambda rec: None  # keep it queued: no runner in this test
    url = "https://user:pw-3141@cdn.example.com/v.mp4?X-Amz-Signature=sig-2718"
    answer = asyncio.run(coordinator.submit({"source_kind": "url", "source": url,
                                             "source_id": url, "scan_id": "s1"}))
    aid = answer["view"]["id"]
    rec = coordinator.db.get(aid)
    assert rec["source"] == "https://***@cdn.example.com/v.mp4?***" and rec["source_secret"]
    assert coordinator._spec(rec)["source"] == url  # the runner gets the full URL
    stored = stored_text(coordinator.db)
    assert b"cdn.example.com" in stored
    assert b"pw-3141" not in stored and b"sig-2718" not in stored
    restarted = AnalysisCoordinator.func_or_class(settings)
    asyncio.run(restarted._tick())  # its turn comes: the URL is gone with the old replica
    rec = restarted.db.get(aid)
    assert (rec["status"], rec["error_code"]) == ("failed", "interrupted")
    assert "post the analysis again" in rec["error_message"]


def test_the_queue_keeps_acceptance_order_and_a_requeued_analysis_keeps_its_place(db_settings):
    db = _open(db_settings)
    t0 = now()
    for i, aid in enumerate(("first", "second", "third")):
        # clocks of different nodes disagree: the order is the order of acceptance
        _record(db, aid, f"/u/{aid}", created_at=t0 - 10 * i)
    assert db.change("first", {"status": "running", "runner": "r1"}, status_in=("queued",))
    assert [r["id"] for r in db.with_status("queued")] == ["second", "third"]
    # its runner's node is lost: queued again, ahead of the analyses accepted after it
    assert db.change("first", {"status": "queued", "runner": None}, status_in=("running",),
                     runner="r1", event=("status", {"status": "queued"}))
    assert [r["id"] for r in db.with_status("queued")] == ["first", "second", "third"]
    assert db.change("first", {"status": "queued"}, status_in=("running",), runner="r1") is None
    # one active analysis per fingerprint, whoever inserts it
    assert not db.insert({"id": "dup", "scan_id": "s1", "item_type": None, "source_kind": "url",
                          "source": "u", "params": {}, "fingerprint": "second",
                          "status": "queued", "created_at": now()}, ("status", {}))
    assert db.get("dup") is None and db.last_seq("dup") == 0
    db.close()


def test_a_result_relaxed_to_any_motion_is_stored_as_json(db_settings):
    """A selection relaxed to any motion has an infinite bar: JSON has no Infinity (jsonb
    refuses it, and so does a browser's JSON.parse), so it is stored, and shown, as null."""
    db = _open(db_settings)
    _record(db, "r1", "/u/r1")
    db.add_event("r1", "result", {"selection": {"motion_max_used": float("inf")},
                                  "golden_frames": [{"motion": float("nan"), "rank": 1}]})
    [_, event] = db.events("r1")
    assert event["data"] == {"selection": {"motion_max_used": None},
                             "golden_frames": [{"motion": None, "rank": 1}]}


def test_event_ids_are_unique_and_gapless_under_concurrent_writers(db_settings):
    first, second = _open(db_settings), _open(db_settings)  # two connections / processes
    _record(first, "a1", "/u/a1")
    errors = []

    def write(db, tag: str) -> None:
        try:
            for i in range(40):
                db.add_event("a1", "progress", {"writer": tag, "i": i})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(db, tag))
               for db, tag in ((first, "a"), (second, "b"), (first, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    events = second.events("a1")
    assert [e["seq"] for e in events] == list(range(1, 122))
    assert sorted((e["data"]["writer"], e["data"]["i"]) for e in events[1:]) == \
        sorted((w, i) for w in "abc" for i in range(40))
    assert [e["seq"] for e in first.events("a1", after=100)] == list(range(101, 122))
    first.close()
    second.close()


class _Method:
    def __init__(self, fn) -> None:
        self.remote = fn


class _ScriptedRunner:
    """A runner handle that has run ``events`` of analysis ``aid`` (what the real one keeps)."""

    def __init__(self, aid: str, events: list[dict]) -> None:
        self.aid, self.log = aid, events
        self.events = _Method(self._events)
        self.status = _Method(self._status)

    async def _events(self, analysis_id: str, after: int) -> list:
        await asyncio.sleep(0)  # let the other coordinator interleave
        return self.log[after:] if analysis_id == self.aid else []

    async def _status(self) -> dict:
        return {"analysis_id": self.aid, "busy": False}


def test_two_overlapping_coordinators_apply_each_event_once_and_end_it_once(
        ray_cluster, db_settings, monkeypatch):
    from serve.analyses.coordinator import AnalysisCoordinator

    monkeypatch.setattr("serve.analyses.lifecycle.ray.kill", lambda *args, **kwargs: None)
    old, new = (AnalysisCoordinator.func_or_class(db_settings) for _ in range(2))
    _record(old.db, "a1", "https://cdn.example.com/v.mp4", kind="url")
    assert old.db.change("a1", {"status": "running", "runner": "r1", "started_at": now(),
                                "attempts": 1}, status_in=("queued",),
                         event=("status", {"status": "running"}))
    script = [{"seq": 1, "type": "started", "data": {}},
              {"seq": 2, "type": "planned", "data": {"total": 90}},
              {"seq": 3, "type": "progress", "data": {"current": 45, "total": 90}},
              {"seq": 4, "type": "progress", "data": {"current": 90, "total": 90}},
              {"seq": 5, "type": "golden_frame", "data": {"frame_index": 7}},
              {"seq": 6, "type": "done", "data": {"result": {"golden_frames": []}}}]
    runner = _ScriptedRunner("a1", script)
    for c in (old, new):  # both watch the same runner (the new one adopted it)
        c._runners["a1"], c._runner_names["a1"] = runner, "r1"
        c._unverified.add("a1")

    async def both() -> None:
        for _ in range(3):
            await asyncio.gather(old._tick(), new._tick())

    asyncio.run(both())
    events = new.db.events("a1")
    assert [e["type"] for e in events] == ["status", "status", "planned", "progress", "progress",
                                           "golden_frame", "done"]
    assert [e["seq"] for e in events] == list(range(1, 8))
    rec = old.db.get("a1")
    assert (rec["status"], rec["runner"], rec["runner_seq"]) == ("succeeded", None, 5)
    # a late cancel or timeout from either one changes nothing
    assert asyncio.run(old.cancel("a1"))["status"] == "succeeded"
    assert not new._finish("a1", "failed", error=("x", "y"))
    assert [e["type"] for e in new.db.events("a1")].count("done") == 1
    assert not old._runners and not new._runners


def test_a_restarted_coordinator_requeues_an_analysis_whose_runner_is_gone(ray_cluster,
                                                                           db_settings):
    from serve.analyses.coordinator import AnalysisCoordinator

    first = AnalysisCoordinator.func_or_class(db_settings)
    first._start = lambda rec: None
    for aid in ("a1", "a2"):
        _record(first.db, aid, f"https://cdn.example.com/{aid}.mp4", kind="url")
    first.db.change("a1", {"status": "running", "runner": "framesift-runner-lost",
                           "started_at": now() - 60, "attempts": 1}, status_in=("queued",))
    restarted = AnalysisCoordinator.func_or_class(db_settings)  # its node is gone with the runner
    restarted._start = lambda rec: None
    rec = restarted.db.get("a1")
    assert (rec["status"], rec["runner"], rec["attempts"]) == ("queued", None, 1)
    assert [r["id"] for r in restarted.db.with_status("queued")] == ["a1", "a2"]
    assert restarted.db.events("a1")[-1]["data"]["status"] == "queued"
    snap = asyncio.run(restarted.snapshot("a1"))
    assert snap["seq"] == restarted.db.last_seq("a1") and snap["view"]["queue_position"] == 1


@pytest.mark.parametrize("url", ["postgresql://fs:pw-s3cr3t@127.0.0.1:1/analyses",
                                 "postgresql://fs:pw-s3cr3t@127.0.0.1:1/analyses?sslmode=disable"])
def test_the_database_password_never_shows(url, caplog):
    from serve.analyses.postgres_state import PostgresAnalysisDB

    with pytest.raises(ConnectionError) as failed:
        PostgresAnalysisDB(url, connect_timeout_s=2)
    message = str(failed.value)
    assert "pw-s3cr3t" not in message and "127.0.0.1:1/analyses" in message, message
    assert "pw-s3cr3t" not in caplog.text
    db = PostgresAnalysisDB.__new__(PostgresAnalysisDB)
    db._url = url
    assert "pw-s3cr3t" not in repr(db) and repr(db).startswith("PostgresAnalysisDB(")
