"""The coordinator's durable state on its own (no HTTP): uploads it owns, and URLs it keeps
out of the database."""

from __future__ import annotations

import os
import time

from serve.analyses.state import now


def _record(coordinator, analysis_id: str, source: str, kind: str = "file", **extra) -> None:
    coordinator.db.insert({"id": analysis_id, "scan_id": "s1", "item_type": None,
                           "source_kind": kind, "source": source, "params": {},
                           "fingerprint": analysis_id, "status": "queued", "created_at": now(),
                           **extra})


def test_start_up_deletes_uploads_no_analysis_refers_to(ray_cluster, tmp_path):
    from serve.analyses.coordinator import AnalysisCoordinator

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    first = AnalysisCoordinator.func_or_class({"state_dir": str(tmp_path)})
    queued, orphan, fresh = (uploads / "a1.upload", uploads / "incoming-old.upload",
                             uploads / "incoming-being-written.upload")
    for path in (queued, orphan, fresh):
        path.write_bytes(b"\0" * 1024)
    for path in (queued, orphan):  # written long ago
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    _record(first, "a1", str(queued))
    # the service restarts: the new coordinator sweeps before anything else
    AnalysisCoordinator.func_or_class({"state_dir": str(tmp_path)})
    assert queued.exists() and fresh.exists()  # referenced; still being received
    assert not orphan.exists()


def test_a_url_with_secrets_is_stored_redacted_and_fails_clearly_after_a_restart(ray_cluster,
                                                                                  tmp_path):
    import asyncio

    from serve.analyses.coordinator import AnalysisCoordinator

    settings = {"state_dir": str(tmp_path), "max_running_analyses": 1}
    coordinator = AnalysisCoordinator.func_or_class(settings)
    coordinator._start = lambda rec: None  # keep it queued: no runner in this test
    url = "https://user:pw-3141@cdn.example.com/v.mp4?X-Amz-Signature=sig-2718"
    answer = asyncio.run(coordinator.submit({"source_kind": "url", "source": url,
                                             "source_id": url, "scan_id": "s1"}))
    aid = answer["view"]["id"]
    rec = coordinator.db.get(aid)
    assert rec["source"] == "https://***@cdn.example.com/v.mp4?***" and rec["source_secret"]
    assert coordinator._spec(rec)["source"] == url  # the runner gets the full URL
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("analyses.sqlite3*"))
    assert b"pw-3141" not in stored and b"sig-2718" not in stored
    restarted = AnalysisCoordinator.func_or_class(settings)
    asyncio.run(restarted._tick())  # its turn comes: the URL is gone with the old replica
    rec = restarted.db.get(aid)
    assert (rec["status"], rec["error_code"]) == ("failed", "interrupted")
    assert "post the analysis again" in rec["error_message"]
