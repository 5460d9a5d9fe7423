"""The analysis coordinator: one replica that owns the queue and the durable records.

Each running analysis runs in a detached ``AnalysisRunner`` actor (serve/analyses/runner.py);
finished runners stay warm for the next analysis. The coordinator polls runners for events,
persists them (serve/analyses/state.py: SQLite on this node, or PostgreSQL that every node
reaches) and starts queued analyses when a slot frees: round robin between tenants, in the
order they were accepted within one (serve/analyses/fair_queue.py). Every read and cancel is
scoped to the caller's tenant; another tenant's analysis is answered as absent. On
restart, on this node or another, it reattaches to runners still alive, requeues the analyses
whose runner is gone, and kills runners nobody references: an accepted analysis completes or
fails, never vanishes. Every decision is a compare-and-set on the record (state.py), so a
restarted coordinator overlapping briefly with a dying one never applies an event twice,
starts an analysis twice or ends it twice; running records no runner handle of this replica
watches are adopted periodically, whoever marked them running.

Bounds: at most ``max_queued_analyses`` wait (503 past it) and ``max_active_analyses_per_key``
are queued or running per tenant (429 past it; serve/tenants.py), uploads being received
counted among them (``reserve``: serve/analyses/admission.py); a running analysis is stopped after
``max_analysis_s``. Uploads are claimed when the analysis is recorded and swept when nothing
refers to them (serve/analyses/uploads.py). A video URL with credentials or a signed query is
stored redacted; the full URL stays in this replica's memory until its analysis ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ray
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError

from jobs.redact import redact_url
from jobs.redact import install_redaction
from serve.analyses.admission import Reservations
from serve.analyses.fair_queue import fair_order
from serve.analyses.runner import (CANCELLED, RUNNER_NAMESPACE, AnalysisRunner,
                                   new_runner_name)
from serve.analyses.state import ACTIVE, FINAL, AnalysisDB, now, open_analysis_db
from serve.analyses.uploads import UploadGoneError, Uploads, open_uploads
from serve.settings import ServiceSettings

log = logging.getLogger("framesift.coordinator")

MAX_ATTEMPTS = 2  # a runner lost to a node or process failure is retried once
PARAM_KEYS = ("top_k", "min_gap_s", "motion_max")
RETRY_AFTER_S = 30  # what a refused caller is told to wait (a short analysis' order of time)
ADOPT_EVERY_S = 2.0  # how often running records nobody here watches are looked for
RUNNER_NAME_GRACE_S = 5.0  # a record is marked running just before its runner is created
CANCEL_ASK_S = 10.0  # how long a cancel waits for the runner's answer
SECRET_LOST = ("the service restarted before the video was downloaded, and its URL's "
               "credentials or signed query are never stored: post the analysis again")


def fingerprint(scan_id: str, item_type: str | None, source_kind: str, source_id: str,
                params: dict[str, Any], tenant: str | None = None) -> str:
    """Same tenant, scan, video and parameters -> same fingerprint (idempotent re-posts; one
    tenant never joins another's analysis)."""
    scope = {"tenant": tenant} if tenant is not None else {}  # no tenant: as before tenants
    blob = json.dumps({"scan_id": scan_id, "item_type": item_type, "kind": source_kind,
                       "source": source_id, "params": {k: params.get(k) for k in PARAM_KEYS},
                       **scope}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def repick_request(parent: dict[str, Any]) -> dict[str, Any]:
    """What a re-pick's record takes from its parent's: the scan, and the video as it was
    stored (a re-pick reads it only for picks whose images are not stored)."""
    return {"scan_id": parent["scan_id"], "item_type": parent["item_type"],
            "source_kind": parent["source_kind"], "source": parent["source"],
            "source_id": f"repick:{parent['id']}",
            "source_name": parent.get("source_name")}


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts else None


@serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class AnalysisCoordinator:
    def __init__(self, settings: dict[str, Any] | None = None) -> None:
        install_redaction(log)
        self.settings = ServiceSettings(**(settings or {}))
        self.state_dir = Path(self.settings.state_dir).resolve()
        self.db: AnalysisDB = open_analysis_db(self.settings)
        self.uploads: Uploads = open_uploads(self.settings)
        log.info("analysis records in %s, uploads in %s", self.db, self.uploads.location)
        self._secret_urls: dict[str, str] = {}  # analysis id -> full URL (never on disk)
        self._reserved = Reservations()  # places held by uploads being received
        self._last_sweep = 0.0
        self._last_adopt = 0.0
        self._runners: dict[str, Any] = {}  # analysis id -> runner handle
        self._runner_names: dict[str, str] = {}
        self._idle: list[Any] = []  # warm runners waiting for work
        self._unverified: set[str] = set()  # reattached after a restart, not yet checked
        self._pump: asyncio.Task | None = None
        self._recover()
        self._sweep_uploads()

    # ---- lifecycle -------------------------------------------------------------------------

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

    async def check_health(self) -> None:
        self._ensure_pump()  # also resumes queued work after a restart with no traffic

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

    # ---- API used by the ingress -------------------------------------------------------------

    async def ping(self) -> bool:
        self._ensure_pump()
        return True

    async def admission(self, owner: str | None) -> dict[str, Any] | None:
        """Whether an analysis of ``owner`` would be accepted now: None, or the refusal."""
        self._ensure_pump()
        return self._refusal(owner)

    async def reserve(self, owner: str | None) -> dict[str, Any]:
        """Hold a place for an upload about to be received: ``{"ticket"}``, or
        ``{"refused": ...}`` (answered before the body is read). The place counts as a queued
        analysis of ``owner`` until ``submit`` takes it or ``release`` gives it back
        (serve/analyses/admission.py)."""
        self._ensure_pump()
        refusal = self._refusal(owner)
        if refusal is not None:
            return {"refused": refusal}
        return {"ticket": self._reserved.hold(owner)}

    async def release(self, ticket: str) -> None:
        """The upload's request ended without a submit: its place is free again."""
        self._reserved.release(ticket)

    def _refusal(self, owner: str | None) -> dict[str, Any] | None:
        s = self.settings
        if self.db.count("queued") + self._reserved.count(everyone=True) >= \
                s.max_queued_analyses:
            return {"status": 503, "code": "queue_full", "retry_after": RETRY_AFTER_S,
                    "message": f"{s.max_queued_analyses} analyses are already waiting "
                               "(FRAMESIFT_MAX_QUEUED_ANALYSES); try again later"}
        if self.db.count_active(owner) + self._reserved.count(owner) >= \
                s.max_active_analyses_per_key:
            return {"status": 429, "code": "too_many_analyses", "retry_after": RETRY_AFTER_S,
                    "message": f"this API key's tenant already has "
                               f"{s.max_active_analyses_per_key} analyses queued or running "
                               "(FRAMESIFT_MAX_ACTIVE_ANALYSES_PER_KEY); wait for one to "
                               "finish"}
        return None

    async def submit(self, request: dict[str, Any]) -> dict[str, Any]:
        """Queue an analysis, or return the identical active one: ``{"view", "created"}``, or
        ``{"refused": {status, code, message, retry_after}}``.

        An upload (``source_kind`` file) is an incoming file of the ingress; it is claimed
        (renamed to the analysis) in the same synchronous step that records the analysis, or
        deleted when refused. A URL is stored redacted; the full URL stays in memory.
        """
        self._ensure_pump()
        if request.get("repick_of"):
            parent = self.db.get(request["repick_of"])
            if parent is None or parent["status"] != "succeeded" or not parent["result"]:
                return {"refused": {"status": 409, "code": "no_result", "retry_after": None,
                                    "message": f"analysis {request['repick_of']} has no "
                                               "result to re-pick"}}
            # the parent's tenant: the route found the parent in the caller's scope (the admin
            # key sees every tenant's), and its result is stored under that tenant
            request = {**request, **repick_request(parent), "owner": parent.get("owner")}
        kind, owner = request["source_kind"], request.get("owner")
        self._reserved.release(request.get("ticket"))  # its place becomes the record, or nothing
        repick = bool(request.get("repick_of"))  # the parent's video: no upload of its own
        refusal = self._refusal(owner)
        if refusal is not None:
            if kind == "file" and not repick:
                self.uploads.remove(request["source"])
            return {"refused": refusal}
        defaults = {"top_k": self.settings.top_k, "min_gap_s": self.settings.min_gap_s,
                    "motion_max": self.settings.motion_max}
        params = {k: request[k] if request.get(k) is not None else defaults[k] for k in PARAM_KEYS}
        if repick:
            params["repick_of"] = request["repick_of"]
        fp = fingerprint(request["scan_id"], request.get("item_type"), kind,
                         request["source_id"], params, owner)
        existing = self.db.find_active(fp)
        if existing is not None:
            if kind == "file" and not repick:
                self.uploads.remove(request["source"])  # the first upload is used
            return {"view": self._view(existing), "created": False}
        analysis_id = uuid.uuid4().hex
        source, secret = request["source"], False
        if repick:
            pass  # the parent's source as it was stored (redacted, or its upload's reference)
        elif kind == "file":
            try:
                source = self.uploads.claim(source, analysis_id)
            except UploadGoneError:  # its request ended (client gone) and deleted it
                return {"refused": {"status": 409, "code": "upload_gone", "retry_after": None,
                                    "message": "the upload was abandoned before it was queued"}}
        else:
            parts = urlsplit(source)
            secret = bool(parts.username or parts.password or parts.query or parts.fragment)
            if secret:  # stored redacted: the full URL lives in memory until the analysis ends
                self._secret_urls[analysis_id] = source
                source = redact_url(source)
        inserted = self.db.insert({"id": analysis_id, "scan_id": request["scan_id"],
                                   "item_type": request.get("item_type"), "source_kind": kind,
                                   "source": source, "source_name": request.get("source_name"),
                                   "source_secret": secret, "owner": owner,
                                   "params": params, "fingerprint": fp, "status": "queued",
                                   "created_at": now()}, ("status", {"status": "queued"}))
        if not inserted:  # an overlapping coordinator recorded the same analysis just now
            self._secret_urls.pop(analysis_id, None)
            if kind == "file" and not repick:
                self.uploads.remove(source)
            existing = self.db.find_active(fp)
            if existing is not None:
                return {"view": self._view(existing), "created": False}
            return {"refused": {"status": 503, "code": "busy", "retry_after": 1,
                                "message": "the same analysis was being recorded; post again"}}
        await self._tick()
        return {"view": self._view(self.db.get(analysis_id)), "created": True}

    def _visible(self, analysis_id: str, scope: str | None) -> dict[str, Any] | None:
        """The record, if the caller whose ``scope`` this is may see it (None: every tenant's);
        another tenant's analysis is as absent as one that never existed."""
        rec = self.db.get(analysis_id)
        if rec is None or (scope is not None and rec["owner"] != scope):
            return None
        return rec

    async def get(self, analysis_id: str, scope: str | None = None) -> dict[str, Any] | None:
        self._ensure_pump()
        rec = self._visible(analysis_id, scope)
        return self._view(rec) if rec else None

    async def list(self, scan_id: str | None, limit: int = 100,
                   scope: str | None = None) -> list[dict[str, Any]]:
        return [self._view(r) for r in self.db.list(scan_id, limit, owner=scope)]

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

    async def cancel(self, analysis_id: str, scope: str | None = None) -> dict[str, Any] | None:
        """Cancel a queued or running analysis; its view. A running one whose result is
        already being stored is not cancelled (its view, still running, says so)."""
        rec = self._visible(analysis_id, scope)
        if rec is None:
            return None
        message = ("cancelled", "cancelled by the client; nothing was stored")
        if rec["status"] == "queued":
            self._finish(analysis_id, "cancelled", error=message, status_in=("queued",))
        elif rec["status"] == "running" and await self._runner_stops(rec) == CANCELLED:
            if not self._finish(analysis_id, "cancelled", error=message, runner=rec["runner"]):
                # requeued meanwhile (its runner lost): cancel it where it waits now
                self._finish(analysis_id, "cancelled", error=message, status_in=("queued",))
        return self._view(self.db.get(analysis_id))

    async def events(self, analysis_id: str, after: int, wait_s: float = 10.0) -> dict[str, Any]:
        """Events after ``after``; waits up to ``wait_s`` for new ones (long poll)."""
        self._ensure_pump()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            events = self.db.events(analysis_id, after)
            rec = self.db.get(analysis_id)
            final = rec is None or rec["status"] in FINAL
            if events or final or loop.time() >= deadline:
                return {"events": events, "final": final}
            await asyncio.sleep(0.1)

    async def snapshot(self, analysis_id: str,
                       scope: str | None = None) -> dict[str, Any] | None:
        """Current view and the sequence number it reflects (for late SSE subscribers), with
        the golden frames picked so far by its current attempt."""
        self._ensure_pump()
        if self._visible(analysis_id, scope) is None:
            return None
        events = self.db.events(analysis_id)  # first: the view may be newer, never older
        rec = self.db.get(analysis_id)
        if rec is None:
            return None
        picks: list[dict[str, Any]] = []
        for e in events:
            if e["type"] == "status" and e["data"].get("status") == "running":
                picks = []  # a requeued analysis starts over
            elif e["type"] == "golden_frame":
                picks.append(e["data"])
        seq = events[-1]["seq"] if events else 0
        return {"seq": seq, "view": self._view(rec), "golden_frames": picks}

    # ---- views -------------------------------------------------------------------------------

    def _view(self, rec: dict[str, Any]) -> dict[str, Any]:
        cur, tot = rec["progress_current"], rec["progress_total"]
        position = None
        if rec["status"] == "queued":
            ids = [r["id"] for r in self._queue()]
            position = ids.index(rec["id"]) + 1 if rec["id"] in ids else None
        eta = None
        if rec["status"] == "running" and cur and tot and rec["started_at"]:
            elapsed = (rec["progress_at"] or now()) - rec["started_at"]
            eta = round(elapsed / cur * (tot - cur), 2)
        end = rec["finished_at"] or now()
        timings = {"created_at": _iso(rec["created_at"]), "started_at": _iso(rec["started_at"]),
                   "finished_at": _iso(rec["finished_at"]),
                   "queued_s": round((rec["started_at"] or end) - rec["created_at"], 3),
                   "run_s": round(end - rec["started_at"], 3) if rec["started_at"] else None}
        return {
            "id": rec["id"], "scan_id": rec["scan_id"], "tenant": rec["owner"],
            "item_type": rec["item_type"],
            "status": rec["status"], "queue_position": position,
            "progress": {"current": cur, "total": tot,
                         "percentage": round(100.0 * cur / tot, 2) if tot else 0.0},
            "eta_s": eta, "parameters": rec["params"], "timings": timings,
            "result": rec["result"],
            "error": ({"code": rec["error_code"], "message": rec["error_message"]}
                      if rec["error_code"] else None),
        }
