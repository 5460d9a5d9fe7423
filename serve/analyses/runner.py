"""Runs golden-frame analyses for the HTTP service, one at a time, as a detached Ray actor.

The actor owns the job's Ray Data pipeline: killing it (cancel) makes Ray stop the scoring
tasks it owns, and the store session it had open is never committed. It keeps an in-memory
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
from actors.video import probe
from jobs.golden.job import Hooks, VideoJob, run_golden
from jobs.golden.limits import WorkLimits
from jobs.golden.manifest import GoldenManifest
from jobs.golden.params import GoldenParams
from jobs.golden.planner import ChunkPlan
from jobs.redact import redact_text
from jobs.settings import Settings
from jobs.sources import SourceOptions
from jobs.stores import make_store

if TYPE_CHECKING:
    from jobs.golden.repick import StoredResult

RUNNER_NAMESPACE = "framesift"


def new_runner_name() -> str:
    return f"framesift-runner-{uuid.uuid4().hex[:12]}"


def result_summary(manifest: GoldenManifest, location: str | None) -> dict[str, Any]:
    """What the API returns for a finished analysis (no server paths in it: the location is
    the manifest's key in the store, ``<scan_id>/manifest.json``)."""
    data = manifest.model_dump(mode="json", include={"golden_frames", "selection", "plan",
                                                      "timings_s", "scores_key", "store",
                                                      "gaps"})
    public = f"{manifest.scan_id}/{Path(location).name}" if location else None
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
    frames = TypeAdapter(list[GoldenFrame]).validate_python(result.get("golden_frames") or [])
    stored = store.manifest(spec["scan_id"])
    if stored is not None and [g.to_dict() for g in stored.golden_frames] != \
            [g.to_dict() for g in frames]:
        raise ResultSupersededError(f"scan {spec['scan_id']!r} was analysed again after "
                                    f"analysis {parent['id']}: re-pick the latest analysis of it")
    overrides = {k: v for k, v in (parent["params"] or {}).items()
                 if v is not None and k != "repick_of"}
    params = replace(GoldenParams.from_settings(settings), **overrides)
    video = VideoSummary(path=str(spec["source"]), **(result.get("video") or {}))
    return StoredResult(spec["scan_id"], spec.get("item_type"), video, params,
                        ChunkPlan.from_dict(result["plan"]), tuple(frames), str(spec["source"]))


class RunnerBusyError(RuntimeError):
    """``start`` was called while an analysis still runs."""


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

    def start(self, spec: dict[str, Any]) -> None:
        """Begin analysing ``spec`` (returns at once)."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise RunnerBusyError(f"runner still busy with analysis {self.spec.get('id')}")
            self.spec = spec
            self._events = []
            self._path = None
            self._thread = threading.Thread(target=self._run, name="analysis", daemon=True)
            self._thread.start()

    def status(self) -> dict[str, Any]:
        """Which analysis this runner holds, and whether it is still working on it."""
        with self._lock:
            busy = self._thread is not None and self._thread.is_alive()
            return {"analysis_id": self.spec.get("id"), "busy": busy}

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
        return replace(GoldenParams.from_settings(settings), **overrides)

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
            self._emit("golden_frame", frame.to_dict())

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
                # an upload on this node: refused here at once, not after the pipeline starts
                # (the workers check every other input right after their probe)
                info = probe(job.path)
                limits.check(self.spec.get("source_name") or "the video", info.width,
                             info.height, info.frame_count)
            [result] = run_golden([job], self._params(job_settings), make_store(job_settings),
                                  hooks=self._hooks(),
                                  sources=SourceOptions.from_settings(job_settings),
                                  limits=limits)
            if result.ok and result.manifest is not None:
                self._emit("done", {"result": result_summary(result.manifest, result.location)})
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

        store = make_store(job_settings)
        base = parent_result(self.spec, job_settings, store)
        frames = base.video.frame_count
        self._emit("planned", {"total": frames, "video": base.video.public(),
                               "plan": base.plan.to_dict()})
        hooks = Hooks(on_pick=lambda _scan, frame: self._emit("golden_frame", frame.to_dict()))
        result = repick_video(base, self._params(job_settings), store,
                              sources=SourceOptions.from_settings(job_settings), hooks=hooks)
        assert result.manifest is not None
        self._emit("progress", {"current": frames, "total": frames, "percentage": 100.0,
                                "eta_s": 0.0})
        self._emit("done", {"result": result_summary(result.manifest, result.location)})
