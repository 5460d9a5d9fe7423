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

This module is the deployment and the API the ingress calls; driving the runners is its base
class's (serve/analyses/lifecycle.py), fingerprints and views are serve/analyses/shaping.py.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ray import serve

from jobs.redact import redact_url
from jobs.redact import install_redaction
from serve.analyses.admission import Reservations
from serve.analyses.lifecycle import AnalysisLifecycle
from serve.analyses.runner import CANCELLED
from serve.analyses.shaping import PARAM_KEYS, fingerprint, repick_request
from serve.analyses.open_db import open_analysis_db
from serve.analyses.state import FINAL, AnalysisDB, now
from serve.analyses.uploads import UploadGoneError, Uploads, open_uploads
from serve.settings import ServiceSettings

log = logging.getLogger("framesift.coordinator")

RETRY_AFTER_S = 30  # what a refused caller is told to wait (a short analysis' order of time)


@serve.deployment(num_replicas=1, max_ongoing_requests=1000, ray_actor_options={"num_cpus": 0})
class AnalysisCoordinator(AnalysisLifecycle):
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

    async def check_health(self) -> None:
        self._ensure_pump()  # also resumes queued work after a restart with no traffic

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
