"""Runs golden-frame analyses for the HTTP service, one at a time, as a detached Ray actor.

The actor owns the job's Ray Data pipeline: killing it (cancel) makes Ray stop the scoring
tasks it owns. It is also where a cancel and the commit of the result are decided, once
(``CommitDecision``): the worker that stores the result claims the commit from this actor
right before it (``RunnerCommitGate``), and the coordinator asks it before it records a
cancel; whichever comes first wins, so an analysis that says ``cancelled`` stored nothing and
one that stored its result ends ``succeeded``. It keeps an in-memory
event log of its current analysis that the service's coordinator polls and persists. A runner
that finished is reused for the next analysis: its imports and Ray Data are warm, which saves
the second or so a new worker process costs.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actors.errors import FramesiftError
from actors.records import GoldenFrame, VideoInfo, VideoSummary
from actors.video import check_index
from jobs.golden.job import Hooks, VideoJob, run_golden
from jobs.golden.limits import WorkLimits
from jobs.golden.manifest import GoldenManifest, public_frame
from jobs.golden.params import GoldenParams
from jobs.golden.planner import ChunkPlan
from jobs.redact import redact_text
from jobs.settings import Settings
from jobs.sources import SourceOptions
from jobs.stores import make_store
from jobs.stores.base import tenant_prefix
from jobs.stores.gate import GatedStore

if TYPE_CHECKING:
    from jobs.golden.repick import StoredResult

RUNNER_NAMESPACE = "framesift"


def new_runner_name() -> str:
    return f"framesift-runner-{uuid.uuid4().hex[:12]}"


def result_summary(manifest: GoldenManifest, location: str | None,
                   tenant: str | None = None) -> dict[str, Any]:
    """What the API returns for a finished analysis (no server paths in it: the location is
    the manifest's key in the store, ``[_tenants/<tenant>/]<scan_id>/manifest.json``; frames
    without their ``file://`` URIs)."""
    data = manifest.model_dump(mode="json", include={"golden_frames", "selection", "plan",
                                                      "timings_s", "scores_key", "store",
                                                      "gaps", "candidates_key"})
    data["golden_frames"] = [public_frame(f) for f in data.get("golden_frames") or []]
    public = (f"{tenant_prefix(tenant)}{manifest.scan_id}/{Path(location).name}"
              if location else None)
    return {**data, "video": manifest.video.public(), "location": public}


def parent_result(spec: dict[str, Any], settings: Settings, store: Any) -> "StoredResult":
    """The result a re-pick builds on: the parent analysis's, from its record (any node), with
    the parameters it ran with; 410-like ``result_superseded`` when the store holds a later
    analysis of the scan."""
    from pydantic import TypeAdapter

    from jobs.golden.repick import StoredResult
    from jobs.golden.stored import ResultSupersededError

    parent = spec["parent"]
    result = parent["result"] or {}
    # the record's frames are the API's: without a file:// URI (the session gives the re-pick's
    # frames their own)
    public = [public_frame(dict(f)) for f in result.get("golden_frames") or []]
    frames = TypeAdapter(list[GoldenFrame]).validate_python([{"uri": "", **f} for f in public])
    stored = store.manifest(spec["scan_id"])
    if stored is not None and [public_frame(g.to_dict()) for g in stored.golden_frames] != \
            [public_frame(g.to_dict()) for g in frames]:
        raise ResultSupersededError(f"scan {spec['scan_id']!r} was analysed again after "
                                    f"analysis {parent['id']}: re-pick the latest analysis of it")
    overrides = {k: v for k, v in (parent["params"] or {}).items()
                 if v is not None and k != "repick_of"}
    params = replace(settings.golden_params(), **overrides)
    video = VideoSummary(path=str(spec["source"]), **(result.get("video") or {}))
    return StoredResult(spec["scan_id"], spec.get("item_type"), video, params,
                        ChunkPlan.from_dict(result["plan"]), tuple(frames), str(spec["source"]),
                        candidates_key=result.get("candidates_key"))


class RunnerBusyError(RuntimeError):
    """``start`` was called while an analysis still runs."""


OPEN, COMMITTING, CANCELLED = "open", "committing", "cancelled"


class CommitDecision:
    """Cancel or commit of one analysis, decided once: the first of ``claim`` (the result is
    about to be stored) and ``cancel`` wins, and the other learns which."""

    def __init__(self, analysis_id: str | None) -> None:
        self.analysis_id = analysis_id
        self._state = OPEN
        self._lock = threading.Lock()

    def claim(self, analysis_id: str) -> bool:
        """True when the result of ``analysis_id`` may be committed (again, for a retried
        task); False once it was cancelled, or for another analysis."""
        with self._lock:
            if analysis_id != self.analysis_id or self._state == CANCELLED:
                return False
            self._state = COMMITTING
            return True

    def cancel(self, analysis_id: str) -> str:
        """``cancelled`` (nothing of it will be committed) or ``committing`` (too late: its
        result is being stored)."""
        with self._lock:
            if analysis_id != self.analysis_id:
                return CANCELLED  # not this runner's analysis: nothing of it commits here
            if self._state == OPEN:
                self._state = CANCELLED
            return self._state


class RunnerCommitGate:
    """The gate a worker holds (picklable): claims the commit from the named runner actor.
    A runner that is gone (killed by a cancel) or does not answer refuses."""

    def __init__(self, runner_name: str, analysis_id: str, timeout_s: float = 30.0) -> None:
        self.runner_name = runner_name
        self.analysis_id = analysis_id
        self.timeout_s = timeout_s

    def claim(self) -> bool:
        import ray
        from ray.exceptions import GetTimeoutError, RayActorError

        try:
            runner = ray.get_actor(self.runner_name, namespace=RUNNER_NAMESPACE)
            return bool(ray.get(runner.claim_commit.remote(self.analysis_id),
                                timeout=self.timeout_s))
        except (ValueError, RayActorError, GetTimeoutError):
            return False


def work_limits(settings: dict[str, Any]) -> WorkLimits:
    """The service's per-analysis limits, checked on the worker before scoring starts."""
    return WorkLimits(int(settings.get("max_analysis_frames") or 0),
                      int(settings.get("max_analysis_pixel_frames") or 0))


def public_message(text: str, video_path: str | None, name: str,
                   server_dirs: tuple[str, ...] = ()) -> str:
    """``text`` as the client may see it: the video's path on this server named as the client
    knows it (the upload's file name, the redacted URL), any other server path hidden, and
    secrets redacted."""
    if video_path:
        text = text.replace(str(video_path), name)
    for folder in server_dirs:
        if folder:
            text = re.sub(re.escape(str(Path(folder).resolve())) + r"[^\s:'\"),;]*",
                          "<server path>", text)
    return redact_text(text)


class AnalysisRunner:
    """Analyses videos (an uploaded file, or a URL the workers read with range requests under
    the service's URL rules); records events as it goes."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] = {}
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._path: str | None = None  # the uploaded video (a path, or an s3:// supabase:// object)
        self.decision = CommitDecision(None)

    def start(self, spec: dict[str, Any]) -> None:
        """Begin analysing ``spec`` (returns at once)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RunnerBusyError(f"runner still busy with analysis {self.spec.get('id')}")
            self.spec = spec
            self.decision = CommitDecision(spec["id"])
            self._events = []
            self._path = None
            self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
            self._thread.start()

    def status(self) -> dict[str, Any]:
        """Which analysis this runner holds, and whether it is still working on it."""
        with self._lock:
            busy = self._thread is not None and self._thread.is_alive()
            return {"analysis_id": self.spec.get("id"), "busy": busy}

    def claim_commit(self, analysis_id: str) -> bool:
        """Called by the worker about to store the result (``RunnerCommitGate``)."""
        return self.decision.claim(analysis_id)

    def cancel(self, analysis_id: str) -> str:
        """Called by the coordinator before it records a cancel: ``cancelled`` or
        ``committing`` (see ``CommitDecision.cancel``)."""
        return self.decision.cancel(analysis_id)

    def _store(self, job_settings: Settings) -> Any:
        """The tenant's store, committing only through this runner's decision."""
        store = make_store(job_settings, self.spec.get("tenant"))
        return GatedStore(store, RunnerCommitGate(self.spec["runner"], self.spec["id"]))

    def events(self, analysis_id: str, after: int = 0) -> list[dict[str, Any]]:
        """Events of ``analysis_id`` after sequence number ``after`` (empty for another id)."""
        with self._lock:
            if self.spec.get("id") != analysis_id:
                return []
            return self._events[after:]

    def _emit(self, type_: str, data: dict[str, Any]) -> None:
        with self._lock:
            self._events.append({"seq": len(self._events) + 1, "type": type_, "data": data})

    def _public(self, text: str) -> str:
        settings = self.spec["settings"]
        dirs = tuple(settings.get(k) or "" for k in ("state_dir", "out_dir"))
        return public_message(text, self._path,
                              self.spec.get("source_name") or "the video", dirs)

    def _params(self, settings: Settings) -> GoldenParams:
        overrides = {k: v for k, v in self.spec["params"].items()
                     if v is not None and k != "repick_of"}
        return replace(settings.golden_params(), **overrides)

    def _hooks(self) -> Hooks:
        """Hooks that turn the job's progress into this analysis's events."""
        totals: dict[str, int] = {"total": 0, "current": 0}
        t_first = time.time()

        def on_planned(_scan: str, info: VideoInfo, plan: ChunkPlan) -> None:
            totals["total"] = info.frame_count
            self._emit("planned", {"total": info.frame_count,
                                   "video": info.public(),
                                   "plan": plan.to_dict()})

        def on_frames(_scan: str, n: int) -> None:
            totals["current"] += n
            cur, tot = totals["current"], max(1, totals["total"])
            elapsed = time.time() - t_first
            eta = elapsed / cur * (tot - cur) if cur else None
            self._emit("progress", {"current": cur, "total": tot,
                                    "percentage": round(100.0 * cur / tot, 2),
                                    "eta_s": round(eta, 2) if eta is not None else None})

        def on_pick(_scan: str, frame: GoldenFrame) -> None:
            self._emit("golden_frame", public_frame(frame.to_dict()))

        return Hooks(on_planned=on_planned, on_frames=on_frames, on_pick=on_pick)

    def _run(self) -> None:
        settings = self.spec["settings"]
        try:
            self._emit("started", {"started_at": time.time()})
            if self.spec["source_kind"] == "file":  # named as the client knows it in messages
                self._path = str(self.spec["source"])
            job_settings = Settings(**{k: v for k, v in settings.items() if k in Settings.model_fields})
            if self.spec.get("parent"):
                self._repick(job_settings)
                return
            job = VideoJob(str(self.spec["source"]), self.spec["scan_id"], self.spec["item_type"])
            limits = work_limits(settings)
            if self.spec["source_kind"] == "file" and "://" not in job.path:
                # an upload on this node: an MP4 whose index claims more than the file holds or
                # the limits allow is refused here at once, from its moov box, not after the
                # pipeline starts. Nothing is indexed here: the worker's probe builds the
                # index once (and refuses the rest from the header or while counting)
                with open(job.path, "rb") as fh:
                    check_index(fh, job.path, limits)
            [result] = run_golden([job], self._params(job_settings), self._store(job_settings),
                                  hooks=self._hooks(),
                                  sources=SourceOptions.from_settings(job_settings),
                                  limits=limits)
            if result.ok and result.manifest is not None:
                self._emit("done", {"result": result_summary(result.manifest, result.location,
                                                             self.spec.get("tenant"))})
            else:
                self._emit("error", {"code": result.error_code or "analysis_failed",
                                     "message": self._public(result.error or "analysis failed")})
        except FramesiftError as exc:
            self._emit("error", {"code": getattr(exc, "code", "analysis_failed"),
                                 "message": self._public(str(exc))})
        except Exception as exc:  # noqa: BLE001 - reported to the client as data, not a crash
            self._emit("error", {"code": "internal_error",
                                 "message": self._public(f"{type(exc).__name__}: {exc}")})

    def _repick(self, job_settings: Settings) -> None:
        """A re-pick: select from the parent's stored scores, decode only the new picks; each
        pick is a ``golden_frame`` event as it is stored."""
        from jobs.golden.repick import repick_video

        store = self._store(job_settings)
        base = parent_result(self.spec, job_settings, store)
        frames = base.video.frame_count
        self._emit("planned", {"total": frames, "video": base.video.public(),
                               "plan": base.plan.to_dict()})
        hooks = Hooks(on_pick=lambda _scan, frame: self._emit("golden_frame",
                                                              public_frame(frame.to_dict())))
        result = repick_video(base, self._params(job_settings), store,
                              sources=SourceOptions.from_settings(job_settings), hooks=hooks)
        assert result.manifest is not None
        self._emit("progress", {"current": frames, "total": frames, "percentage": 100.0,
                                "eta_s": 0.0})
        self._emit("done", {"result": result_summary(result.manifest, result.location,
                                                     self.spec.get("tenant"))})
