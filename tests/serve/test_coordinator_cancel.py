"""The coordinator's cancel against its own event poll: a cancel that lands while the pump is
waiting on the runner must stay cancelled (the runner dies because we killed it); on both
databases (``db_settings``)."""

from __future__ import annotations

import asyncio

from ray.exceptions import RayActorError


class _Method:
    def __init__(self, fn) -> None:
        self.remote = fn


class _BlockedRunner:
    """A runner handle whose event poll waits until released, then fails as a killed actor."""

    def __init__(self) -> None:
        self.polled = asyncio.Event()
        self.release = asyncio.Event()
        self.events = _Method(self._events)
        self.cancel = _Method(self._cancel)

    async def _cancel(self, analysis_id: str) -> str:
        return "cancelled"  # nothing of it was being stored: the runner lets the cancel win

    async def _events(self, analysis_id: str, after: int) -> list:
        self.polled.set()
        await self.release.wait()
        raise RayActorError()


def test_a_cancel_during_the_event_poll_is_not_undone_by_the_killed_runner(ray_cluster, tmp_path,
                                                                          db_settings, monkeypatch):
    from serve.analyses.coordinator import AnalysisCoordinator
    from serve.analyses.state import now

    monkeypatch.setattr("serve.analyses.lifecycle.ray.kill", lambda *args, **kwargs: None)
    coordinator = AnalysisCoordinator.func_or_class(db_settings)
    started = []
    monkeypatch.setattr(coordinator, "_start", started.append)
    video = tmp_path / "upload.mp4"
    video.write_bytes(b"video")
    coordinator.db.insert({"id": "a1", "scan_id": "s1", "item_type": None, "source_kind": "file",
                           "source": str(video), "params": {}, "fingerprint": "f1",
                           "status": "queued", "created_at": now()},
                          ("status", {"status": "queued"}))
    coordinator.db.update("a1", status="running", started_at=now(), runner="r1", attempts=1)
    runner = _BlockedRunner()
    coordinator._runners["a1"], coordinator._runner_names["a1"] = runner, "r1"

    async def scenario() -> None:
        tick = asyncio.create_task(coordinator._tick())
        await asyncio.wait_for(runner.polled.wait(), 10)
        view = await coordinator.cancel("a1")  # kills the runner while the tick waits on it
        assert view["status"] == "cancelled"
        runner.release.set()  # the poll now fails: the actor is gone
        await asyncio.wait_for(tick, 10)

    asyncio.run(scenario())
    rec = coordinator.db.get("a1")
    assert (rec["status"], rec["error_code"]) == ("cancelled", "cancelled")
    assert [e["type"] for e in coordinator.db.events("a1")][-1] == "error"
    assert not started, "the cancelled analysis was queued and started again"
