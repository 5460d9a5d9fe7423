"""How the coordinator drives analyses through their lifecycle on runners (the base class of
``AnalysisCoordinator``, serve/analyses/coordinator.py, which adds the API the ingress calls).

On start-up and periodically it adopts running records no runner handle of this replica
watches (after a restart, or started by an overlapping coordinator) and requeues those whose
runner is gone; its pump polls runners for events and persists them, starts queued analyses
when a slot frees (serve/analyses/fair_queue.py), stops one that ran past ``max_analysis_s``,
and ends analyses: the record, its final event and its runner in one step. Every decision is a
compare-and-set on the record (serve/analyses/state.py). Finished runners stay warm for the
next analysis; those nobody references are killed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
from ray.exceptions import ActorUnavailableError, RayActorError

from serve.analyses.fair_queue import fair_order
from serve.analyses.runner import (CANCELLED, RUNNER_NAMESPACE, AnalysisRunner,
                                   new_runner_name)
from serve.analyses.shaping import analysis_view
from serve.analyses.state import ACTIVE, AnalysisDB, now
from serve.analyses.uploads import Uploads
from serve.settings import ServiceSettings

log = logging.getLogger("framesift.coordinator")

MAX_ATTEMPTS = 2  # a runner lost to a node or process failure is retried once
ADOPT_EVERY_S = 2.0  # how often running records nobody here watches are looked for
RUNNER_NAME_GRACE_S = 5.0  # a record is marked running just before its runner is created
CANCEL_ASK_S = 10.0  # how long a cancel waits for the runner's answer
SECRET_LOST = ("the service restarted before the video was downloaded, and its URL's "
               "credentials or signed query are never stored: post the analysis again")


class AnalysisLifecycle:
    """Runners, queue and records of the analyses; the state is set by the coordinator's
    ``__init__``."""

    settings: ServiceSettings
    db: AnalysisDB
    uploads: Uploads
    _secret_urls: dict[str, str]  # analysis id -> full URL (never on disk)
    _last_sweep: float
    _last_adopt: float
    _runners: dict[str, Any]  # analysis id -> runner handle
    _runner_names: dict[str, str]
    _idle: list[Any]  # warm runners waiting for work
    _unverified: set[str]  # reattached after a restart, not yet checked
    _pump: asyncio.Task | None

    def _recover(self) -> None:
        referenced = self._adopt("the service restarted while the analysis ran")
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["namespace"] == RUNNER_NAMESPACE and actor["name"] not in referenced \
                    and actor["name"].startswith("framesift-runner-"):
                try:  # a runner of a previous coordinator incarnation: idle or orphaned
                    ray.kill(ray.get_actor(actor["name"], namespace=RUNNER_NAMESPACE))
                except ValueError:
                    pass

    def _adopt(self, why: str) -> set[str]:
        """Watch every running analysis no runner handle here watches (after a restart, or one
        an overlapping coordinator started); requeue those whose runner is gone. Returns the
        runner names of the running analyses."""
        self._last_adopt = now()
        names = set()
        for rec in self.db.with_status("running"):
            if rec["runner"]:
                names.add(rec["runner"])
            if rec["id"] in self._runners:
                continue
            try:
                handle = ray.get_actor(rec["runner"], namespace=RUNNER_NAMESPACE)
            except (ValueError, TypeError):
                if rec["started_at"] and now() - rec["started_at"] < RUNNER_NAME_GRACE_S:
                    continue  # another coordinator marked it running an instant ago
                self._requeue_or_fail(rec, why)
                continue
            self._runners[rec["id"]] = handle
            self._runner_names[rec["id"]] = rec["runner"]
            self._unverified.add(rec["id"])  # its start() may have died with its coordinator
        return names

    def _sweep_uploads(self) -> None:
        """Delete uploads no queued or running analysis refers to (a crash, a disconnect)."""
        self._last_sweep = now()
        try:
            removed = self.uploads.sweep(self.db.active_sources("file"),
                                         self.settings.upload_orphan_grace_s)
        except Exception as exc:  # noqa: BLE001 - housekeeping: try again at the next sweep
            log.warning("could not sweep the uploads in %s: %s: %s", self.uploads.location,
                        type(exc).__name__, exc)
            return
        if removed:
            log.warning("deleted %d upload(s) no analysis refers to", len(removed))

    def _secret_lost(self, rec: dict[str, Any]) -> bool:
        return bool(rec.get("source_secret")) and rec["id"] not in self._secret_urls

    def _requeue_or_fail(self, rec: dict[str, Any], why: str) -> None:
        """``rec`` (running with ``rec["runner"]``) lost its runner: queue it again (it keeps
        its place: the queue is in acceptance order) or fail it; no-op if it moved on."""
        self._forget(rec["id"])
        if self._secret_lost(rec):
            self._finish(rec["id"], "failed", error=("interrupted", f"{why}; {SECRET_LOST}"),
                         runner=rec["runner"])
        elif rec["attempts"] < MAX_ATTEMPTS:
            self.db.change(rec["id"], {"status": "queued", "runner": None, "runner_seq": 0,
                                       "progress_current": 0},
                           status_in=("running",), runner=rec["runner"],
                           event=("status", {"status": "queued", "reason": why}))
        else:
            self._finish(rec["id"], "failed", error=("interrupted", f"{why}; gave up after "
                                                     f"{rec['attempts']} attempts"),
                         runner=rec["runner"])

    def _forget(self, analysis_id: str) -> None:
        self._runners.pop(analysis_id, None)
        self._runner_names.pop(analysis_id, None)
        self._unverified.discard(analysis_id)

    def _ensure_pump(self) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.get_running_loop().create_task(self._pump_forever())

    async def _pump_forever(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception:  # noqa: BLE001 - the loop must survive one bad tick
                log.exception("coordinator tick failed")
            await asyncio.sleep(0.05 if self._runners else 0.2)

    async def _tick(self) -> None:
        sweep_every = min(60.0, max(1.0, self.settings.upload_orphan_grace_s / 4))
        if now() - self._last_sweep > sweep_every:
            self._sweep_uploads()
        if now() - self._last_adopt > ADOPT_EVERY_S:
            self._adopt("the analysis worker was lost")
        for analysis_id, handle in list(self._runners.items()):
            rec = self.db.get(analysis_id)
            name = self._runner_names.get(analysis_id)
            if rec is None or rec["status"] != "running" or rec["runner"] != name:
                self._forget(analysis_id)  # ended, or requeued and restarted by someone else
                continue
            limit = self.settings.max_analysis_s
            if rec["started_at"] and now() - rec["started_at"] > limit and \
                    await self._runner_stops(rec, handle) == CANCELLED:
                self._finish(analysis_id, "failed", kill=True, runner=name, error=(
                    "analysis_timeout", f"the analysis ran longer than {limit:g} s "
                    "(FRAMESIFT_MAX_ANALYSIS_S) and was stopped; nothing was stored"))
                continue  # (a result being stored is let finish: it ends succeeded)
            try:
                if analysis_id in self._unverified and not await self._verify(rec, handle):
                    if self._runners.get(analysis_id) is handle:
                        self._requeue_or_fail(rec, "its worker had moved on")
                    continue
                events = await handle.events.remote(analysis_id, rec["runner_seq"])
            except ActorUnavailableError:
                # unreachable, not (yet) dead: its node may be lost but not declared so. Wait
                # for Ray's verdict (or the analysis timeout above): a new runner started now
                # could be placed on that very node and die with it, costing a second attempt
                continue
            except RayActorError:
                if self._runners.get(analysis_id) is handle:  # not ended while we waited
                    self._requeue_or_fail(rec, "the analysis worker died")
                continue
            if self._runners.get(analysis_id) is not handle:
                continue  # cancelled while we waited (its runner was killed): drop late events
            for event in events:
                if not self._apply(analysis_id, name, event):
                    break  # the record moved on (another coordinator applied it or ended it)
        slots = self.settings.max_running_analyses - len(self._runners)
        for rec in self._queue()[:max(0, slots)]:
            self._start(rec)

    def _queue(self) -> list[dict[str, Any]]:
        """The queued analyses in the order they start: round robin between tenants, first
        come first served within one (serve/analyses/fair_queue.py)."""
        queued = self.db.with_status("queued")
        if len({r["owner"] for r in queued}) < 2:
            return queued  # one tenant (or none): first come first served
        return fair_order(queued, self.db.with_status("running"), self.db.last_started())

    async def _verify(self, rec: dict[str, Any], handle: Any) -> bool:
        """After a restart: make sure the runner really holds this analysis (a start() sent
        just before the old coordinator died is lost with it); start it again if idle.
        False when the runner is busy with something else."""
        state = await handle.status.remote()
        self._unverified.discard(rec["id"])
        if state["analysis_id"] == rec["id"]:
            return True
        if state["busy"]:
            return False
        if self.db.change(rec["id"], {"runner_seq": 0, "progress_current": 0},
                          status_in=("running",), runner=rec["runner"]) is None:
            return False
        await handle.start.remote(self._spec(rec))
        return True

    def _spec(self, rec: dict[str, Any]) -> dict[str, Any]:
        spec = {"id": rec["id"], "runner": rec["runner"], "scan_id": rec["scan_id"],
                "item_type": rec["item_type"],
                "source_kind": rec["source_kind"],
                "source": self._secret_urls.get(rec["id"], rec["source"]),
                "source_name": rec.get("source_name") or "the video",
                "params": rec["params"],
                "tenant": rec.get("owner"),
                "settings": self.settings.model_dump(exclude={"api_keys", "database_url",
                                                              "admin_key"},
                                                     mode="json")}
        parent_id = (rec["params"] or {}).get("repick_of")
        if parent_id:  # a re-pick builds on its parent's result (serve/analyses/runner.py)
            parent = self.db.get(parent_id) or {}
            spec["parent"] = {"id": parent_id, "result": parent.get("result"),
                              "params": parent.get("params") or {}}
        return spec

    def _start(self, rec: dict[str, Any]) -> None:
        if self._secret_lost(rec):
            self._finish(rec["id"], "failed", error=("interrupted", SECRET_LOST))
            return
        idle = self._idle.pop() if self._idle else None
        name = idle[0] if idle else new_runner_name()
        # claim the analysis first: a coordinator overlapping with us may be starting it too
        claimed = self.db.change(rec["id"], {"status": "running", "started_at": now(),
                                             "runner_seq": 0, "runner": name,
                                             "attempts": rec["attempts"] + 1},
                                 status_in=("queued",), event=("status", {"status": "running"}))
        if claimed is None:
            if idle:
                self._idle.append(idle)
            return
        if idle:
            handle = idle[1]
        else:
            options: dict[str, Any] = {"name": name, "namespace": RUNNER_NAMESPACE,
                                       "lifetime": "detached", "num_cpus": 0, "max_restarts": 0}
            if self.settings.runner_resources:
                options["resources"] = dict(self.settings.runner_resources)
            handle = ray.remote(AnalysisRunner).options(**options).remote()
        handle.start.remote(self._spec(claimed))
        self._runners[rec["id"]] = handle
        self._runner_names[rec["id"]] = name

    def _apply(self, analysis_id: str, runner: str, event: dict[str, Any]) -> bool:
        """Persist one runner event, once: only while the record is running on ``runner`` and
        the event is newer than those applied. False when the record moved on."""
        kind, data, seq = event["type"], event["data"], event["seq"]
        if kind == "done":
            return self._finish(analysis_id, "succeeded", result=data["result"], runner=runner)
        if kind == "error":  # a commit refused because the cancel won is that cancel
            status = "cancelled" if data["code"] == CANCELLED else "failed"
            return self._finish(analysis_id, status, error=(data["code"], data["message"]),
                                runner=runner)
        fields: dict[str, Any] = {"runner_seq": seq}
        if kind == "planned":
            fields["progress_total"] = data["total"]
        elif kind == "progress":
            fields.update(progress_current=data["current"], progress_total=data["total"],
                          progress_at=now())
        stored = self.db.change(analysis_id, fields, status_in=("running",), runner=runner,
                                runner_seq_below=seq,
                                event=(kind, data) if kind in ("planned", "progress",
                                                               "golden_frame") else None)
        if stored is None:
            rec = self.db.get(analysis_id)  # an event already applied is no reason to stop
            return bool(rec and rec["status"] == "running" and rec["runner"] == runner)
        return True

    def _finish(self, analysis_id: str, status: str, result: dict[str, Any] | None = None,
                error: tuple[str, str] | None = None, kill: bool = False,
                runner: Any = None, status_in: tuple[str, ...] = ACTIVE) -> bool:
        """End an active analysis (only while it is active and, given ``runner``, still that
        runner's): record, final event and runner in one step. False when it had ended or
        moved on already (nothing done)."""
        fields: dict[str, Any] = {"status": status, "finished_at": now(), "runner": None}
        if result is not None:
            fields["result"] = result
        if error is not None:
            fields["error_code"], fields["error_message"] = error
        condition: dict[str, Any] = {"runner": runner} if runner is not None else {}
        # SSE streams end on "done" or "error"; a cancellation is an error event too
        before = self.db.get(analysis_id)
        rec = self.db.change(analysis_id, fields, status_in=status_in, **condition,
                             event=("done" if status == "succeeded" else "error", self._view))
        handle = self._runners.pop(analysis_id, None)
        name = self._runner_names.pop(analysis_id, None)
        self._unverified.discard(analysis_id)
        if rec is None:
            return False
        self._secret_urls.pop(analysis_id, None)
        if handle is None and before and before["runner"] and (kill or status == "cancelled"):
            try:  # running under a runner this replica does not watch (yet): stop it too
                handle, name = ray.get_actor(before["runner"], namespace=RUNNER_NAMESPACE), None
            except (ValueError, TypeError):
                handle = None
        if handle is not None:
            if kill or status == "cancelled" or name is None or \
                    len(self._idle) >= self.settings.max_running_analyses:
                ray.kill(handle, no_restart=True)  # stops its tasks; nothing gets committed
            else:
                self._idle.append((name, handle))  # warm for the next analysis
        if rec["source_kind"] == "file":
            self.uploads.remove(rec["source"])
        return True

    async def _runner_stops(self, rec: dict[str, Any], handle: Any = None) -> str:
        """Ask the runner of running ``rec`` to give up its analysis before it is ended:
        ``cancelled`` (nothing of it will be stored) or ``committing`` (too late: its result
        is being stored, and it will end succeeded or failed on its own). The decision is the
        runner's (``CommitDecision``), taken once against the commit of the result."""
        if handle is None:
            handle = self._runners.get(rec["id"])
        if handle is None and rec["runner"]:
            try:
                handle = ray.get_actor(rec["runner"], namespace=RUNNER_NAMESPACE)
            except (ValueError, TypeError):
                return CANCELLED  # no runner: nothing of it can commit any more
        if handle is None:
            return CANCELLED
        try:
            return await asyncio.wait_for(handle.cancel.remote(rec["id"]), CANCEL_ASK_S)
        except RayActorError:
            return CANCELLED  # dead: nothing of it can be claimed any more
        except (ActorUnavailableError, asyncio.TimeoutError):
            # unreachable: its claims fail the same way (the workers ask it), and it is killed
            log.warning("the runner of %s did not answer the cancel; stopping it", rec["id"])
            return CANCELLED

    def _view(self, rec: dict[str, Any]) -> dict[str, Any]:
        return analysis_view(rec, self._queue)
