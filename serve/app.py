"""The HTTP API: a FastAPI ingress composed with the analysis coordinator.

(No ``from __future__ import annotations`` here: FastAPI must see real types through
Serve's wrapping of the ingress methods.)

``serve run serve/config.yaml`` / ``serve deploy serve/config.yaml`` use ``build_app``;
``framesift serve`` starts the same application on a private local Ray. Reading requests,
shaping answers and the OpenAPI documentation of the bodies are serve/ingress_io.py's.
"""


import asyncio
import hashlib
import logging
import os
from typing import Any, AsyncIterator

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from actors.image_analysis import ImageLimits
from jobs.redact import install_redaction, redact_url
from jobs.url_rules import Allowlist, check_url
from jobs.images import ImageItem, analyze_stream
from serve.console import router as console_router
from serve.analyses.coordinator import AnalysisCoordinator
from serve.errors import ApiError, install_error_handlers
from serve.ingress_io import (_ANALYSIS_BODY, _EVENTS_DOC, _IMAGES_BODY, ERRORS, _content_type,
                              _event_id, _found, _image_loader, _json_body, _refused, _sse,
                              _upload_name)
from serve.model_routes import detections_for, model_body_limits, router as model_router
from serve.model_deployments import bind_models
from serve.repick_routes import router as repick_router
from serve.result_routes import router as result_router
from serve.schemas import (AnalysisAccepted, AnalysisList, AnalysisRequest, AnalysisView,
                           ErrorResponse)
from serve.analyses.uploads import open_uploads
from serve.security import BodyCap, BodyLimit, key_owner, request_caller, require_api_key
from serve.settings import ServiceSettings

log = logging.getLogger("framesift.api")

app = FastAPI(
    title="framesift",
    version="0.1.0",
    description="Golden-frame analyses of videos, streamed progress (SSE), and batch image "
                "analysis. Every error is `{\"error\": {\"code\", \"message\"}}`. When the "
                "server has API keys, /v1 routes need `Authorization: Bearer <key>`.",
)
install_error_handlers(app)
app.add_middleware(BodyLimit)
app.include_router(model_router)  # /v1/detect, /v1/crop, /v1/upscale (serve/model_routes.py)
app.include_router(result_router)  # /v1/analyses/{id}/scores, .../frames/{i} (serve/result_routes.py)
app.include_router(repick_router)  # /v1/analyses/{id}/preview, .../repick (serve/repick_routes.py)
app.include_router(console_router)  # the web console at / (serve/console.py, serve/static/)


@serve.deployment(max_ongoing_requests=100, max_queued_requests=200,
                  backpressure_config={"status_code": 503, "retry_after_s": 1},
                  ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class Ingress:
    """Stateless front door; state lives in the coordinator (and its database)."""

    def __init__(self, coordinator: DeploymentHandle, settings: dict[str, Any] | None = None,
                 models: dict[str, DeploymentHandle] | None = None) -> None:
        install_redaction(log)
        install_redaction(logging.getLogger("ray.serve"))
        self.coordinator = coordinator
        self.settings = ServiceSettings(**(settings or {}))
        app.state.api_keys = self.settings.api_key_entries()
        app.state.models = models or {}  # model deployment handles by name (routers use them)
        app.state.coordinator, app.state.settings = coordinator, self.settings  # result routes
        self.uploads = open_uploads(self.settings)  # a folder here, or object storage
        s = self.settings
        multipart = ("multipart/form-data",)
        app.state.body_limits = {  # only uploads may be large; JSON bodies get the small cap
            "/v1/analyses": BodyCap(s.max_upload_bytes + 2**20, multipart),
            "/v1/images/analyze": BodyCap(s.max_images_per_request * (s.max_image_bytes + 4096)
                                          + 2**20, multipart),
            **{path: BodyCap(cap) for path, cap in model_body_limits(s.max_image_bytes).items()},
        }
        app.state.small_body_limit = s.max_json_bytes
        app.state.model_limits = {"max_image_bytes": s.max_image_bytes,
                                  "max_image_pixels": s.max_image_pixels}

    # ---- health ------------------------------------------------------------------------------

    @app.get("/healthz", summary="Liveness")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: the coordinator answers",
             responses={503: {"model": ErrorResponse}})
    async def readyz(self) -> dict[str, Any]:
        try:
            await asyncio.wait_for(self.coordinator.ping.remote(), timeout=5)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            raise ApiError(503, "not_ready", f"coordinator not ready: {type(exc).__name__}",
                           headers={"Retry-After": "2"}) from exc
        return {"status": "ready", "deployments": ["Ingress", "AnalysisCoordinator"]}

    # ---- analyses ----------------------------------------------------------------------------

    @app.post("/v1/analyses", status_code=202, response_model=AnalysisAccepted,
              dependencies=[Depends(require_api_key)], responses=ERRORS,
              openapi_extra=_ANALYSIS_BODY, summary="Start a golden-frame analysis",
              description="JSON `{video_url, scan_id, ...}` (camelCase webhook keys accepted) or "
                          "a multipart upload of the video. Re-posting the same scan and "
                          "parameters while it runs returns the running analysis.")
    async def create_analysis(self, request: Request) -> JSONResponse:
        ctype = _content_type(request)
        if ctype not in ("application/json", "multipart/form-data"):
            raise ApiError(415, "unsupported_media_type",
                           f"send application/json or multipart/form-data, not '{ctype or 'none'}'")
        owner = key_owner(request)
        if ctype == "application/json":
            req = self._parse(await _json_body(request))
            if not req.video_url:
                raise ApiError(422, "invalid_request", "video_url is required with a JSON body "
                                                       "(or upload the file as multipart)")
            await asyncio.to_thread(self._check_url, req.video_url)
            _refused(await self.coordinator.admission.remote(owner))
            submit = {"source_kind": "url", "source": req.video_url,
                      "source_id": req.video_url, "source_name": redact_url(req.video_url)}
            answer = await self.coordinator.submit.remote(self._submission(req, submit, owner))
        else:
            # a place is held before the body is read (a refusal is answered now), and counts
            # as queued while the body comes in (serve/analyses/admission.py)
            held = await self.coordinator.reserve.remote(owner)
            _refused(held.get("refused"))
            answer = await self._receive_and_submit(request, owner, held["ticket"])
        _refused(answer.get("refused"))
        view = answer["view"]
        base = (self.settings.public_url or request.scope.get("root_path", "")).rstrip("/")
        accepted = AnalysisAccepted(id=view["id"], scan_id=view["scan_id"], status=view["status"],
                                    created=answer["created"],
                                    status_url=f"{base}/v1/analyses/{view['id']}",
                                    events_url=f"{base}/v1/analyses/{view['id']}/events")
        return JSONResponse(accepted.model_dump(), status_code=202)

    async def _receive_and_submit(self, request: Request, owner: Any,
                                  ticket: str) -> dict[str, Any]:
        """Read the multipart upload held by ``ticket`` and submit it (which takes the
        ticket); a request that ends any other way gives its place back."""
        submitted = False
        try:
            form = await request.form(max_files=1, max_fields=10)
            upload = form.get("video")
            if not isinstance(upload, UploadFile):
                raise ApiError(422, "invalid_request", "multipart upload needs a 'video' file part")
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            req = self._parse(fields)
            ref, digest = await self._save_upload(upload)
            submit = {"source_kind": "file", "source": ref, "source_id": digest,
                      "source_name": _upload_name(upload.filename), "ticket": ticket}
            answer = None
            try:
                answer = await self.coordinator.submit.remote(
                    self._submission(req, submit, owner))
                submitted = True
            finally:
                # with an answer, the coordinator has claimed the upload or deleted it; if this
                # request ends any other way (coordinator lost, client gone) it is abandoned:
                # deleted now where that cannot race with a claim, else by the sweep
                if answer is None:
                    self.uploads.abandon(ref)
            return answer
        finally:
            if not submitted:
                # sent, not awaited: a request cancelled because its client went away may not
                # wait for anything any more (if the call is lost, the place expires)
                self.coordinator.release.remote(ticket)

    @staticmethod
    def _submission(req: AnalysisRequest, source: dict[str, Any],
                    owner: str | None) -> dict[str, Any]:
        return {**source, "owner": owner, "scan_id": req.scan_id, "item_type": req.item_type,
                "top_k": req.top_k, "min_gap_s": req.min_gap_s, "motion_max": req.motion_max}

    @staticmethod
    def _parse(data: Any) -> AnalysisRequest:
        try:
            return AnalysisRequest.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from exc

    def _check_url(self, url: str) -> None:
        """Refuse bad schemes and private addresses now, not after queueing (422)."""
        check_url(url, Allowlist.parse(self.settings.url_allowlist))

    async def _save_upload(self, upload: UploadFile) -> tuple[str, str]:
        """Receive the upload into a file (no name or suffix of the client's) and publish it
        where every runner can read it; returns its reference and its digest."""
        path = self.uploads.receive_path()
        digest = hashlib.sha256()
        size = 0
        try:
            with path.open("wb") as out:
                while chunk := await upload.read(1 << 20):
                    size += len(chunk)
                    if size > self.settings.max_upload_bytes:
                        raise ApiError(413, "payload_too_large", "video upload is larger than "
                                       f"{self.settings.max_upload_bytes} bytes")
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        finally:
            await upload.close()
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(422, "empty_upload", "the uploaded video is empty")
        try:
            ref = await asyncio.to_thread(self.uploads.publish, path)
        except Exception as exc:  # noqa: BLE001 - the upload store failed: the client may retry
            path.unlink(missing_ok=True)
            log.warning("could not store an upload in %s: %s: %s", self.uploads.location,
                        type(exc).__name__, exc)
            raise ApiError(503, "upload_store_unavailable", "the upload could not be stored; "
                           "try again later", headers={"Retry-After": "5"}) from None
        return ref, digest.hexdigest()

    @app.get("/v1/analyses/{analysis_id}", response_model=AnalysisView,
             dependencies=[Depends(require_api_key)], responses=ERRORS,
             summary="Status, progress, ETA, timings, result or error")
    async def get_analysis(self, request: Request, analysis_id: str) -> dict[str, Any]:
        scope = request_caller(request).scope
        return _found(await self.coordinator.get.remote(analysis_id, scope), analysis_id)

    @app.get("/v1/analyses", response_model=AnalysisList, dependencies=[Depends(require_api_key)],
             responses=ERRORS, summary="List analyses, newest first")
    async def list_analyses(self, request: Request,
                            scan_id: str | None = Query(None, max_length=128),
                            limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        scope = request_caller(request).scope
        return {"analyses": await self.coordinator.list.remote(scan_id, limit, scope)}

    @app.delete("/v1/analyses/{analysis_id}", response_model=AnalysisView,
                dependencies=[Depends(require_api_key)], responses=ERRORS,
                summary="Cancel a queued or running analysis (its workers stop)",
                description="A cancelled analysis stored nothing. Once a running analysis "
                            "has begun storing its result it can no longer be cancelled: "
                            "409 `cancel_too_late`, and it ends succeeded. A finished "
                            "analysis is returned as it is.")
    async def cancel_analysis(self, request: Request, analysis_id: str) -> dict[str, Any]:
        scope = request_caller(request).scope
        view = _found(await self.coordinator.cancel.remote(analysis_id, scope), analysis_id)
        if view["status"] in ("queued", "running"):
            raise ApiError(409, "cancel_too_late", f"analysis {analysis_id} is storing its "
                           "result: it can no longer be cancelled and ends succeeded (or "
                           "failed, storing nothing)")
        return view

    @app.get("/v1/analyses/{analysis_id}/events", dependencies=[Depends(require_api_key)],
             responses=ERRORS, openapi_extra=_EVENTS_DOC,
             summary="Server-Sent Events: the current state, then progress as it happens")
    async def analysis_events(self, request: Request, analysis_id: str,
                              last_event_id: str | None = Header(
            None, alias="Last-Event-ID", description="resume after this event id (sent by a "
            "reconnecting EventSource): the events after it, without a `state` first"),
            ) -> EventSourceResponse:
        scope = request_caller(request).scope
        snap = _found(await self.coordinator.snapshot.remote(analysis_id, scope), analysis_id)
        resume = _event_id(last_event_id)
        if resume is not None and resume <= snap["seq"]:
            return EventSourceResponse(self._follow(analysis_id, resume), ping=15)
        return EventSourceResponse(self._event_stream(analysis_id, snap), ping=15)

    async def _event_stream(self, analysis_id: str, snap: dict[str, Any]) -> AsyncIterator[dict]:
        yield _sse("state", {**snap["view"], "golden_frames": snap["golden_frames"]}, snap["seq"])
        if snap["view"]["status"] in ("succeeded", "failed", "cancelled"):
            final = "done" if snap["view"]["status"] == "succeeded" else "error"
            yield _sse(final, snap["view"], snap["seq"])
            return
        async for event in self._follow(analysis_id, snap["seq"]):
            yield event

    async def _follow(self, analysis_id: str, after: int) -> AsyncIterator[dict]:
        """The analysis's events after ``after``, each with its id, until ``done``/``error``.
        If the coordinator is lost meanwhile (restarting, maybe on another node) the stream
        ends; the client reconnects with ``Last-Event-ID`` and continues where it was."""
        while True:
            try:
                batch = await self.coordinator.events.remote(analysis_id, after, 10.0)
            except Exception as exc:  # noqa: BLE001 - the client resumes from its last id
                log.warning("event stream of %s ended: %s", analysis_id, type(exc).__name__)
                return
            for event in batch["events"]:
                after = event["seq"]
                yield _sse(event["type"], event["data"], event["seq"])
                if event["type"] in ("done", "error"):
                    return
            if batch["final"] and not batch["events"]:
                return

    # ---- batch image analysis ----------------------------------------------------------------

    @app.post("/v1/images/analyze", dependencies=[Depends(require_api_key)], responses=ERRORS,
              openapi_extra=_IMAGES_BODY, summary="Analyse many images; results stream back (SSE)")
    async def analyze_images(self, request: Request,
                             concurrency: int | None = Query(
                                 None, ge=1, description="images at once (capped by the server)"),
                             detect: bool = Query(False, description="add YOLO detections to "
                                                  "each result (needs the detector deployed)")
                             ) -> EventSourceResponse:
        s = self.settings
        detector = detections_for(request) if detect else None  # 503 before reading the body
        if _content_type(request) != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type",
                           "send the images as multipart/form-data parts named 'images'")
        try:  # the parser stops at the first file past the limit: one code for too many
            form = await request.form(max_files=s.max_images_per_request, max_fields=10)
        except HTTPException as exc:
            if "Too many files" not in str(exc.detail):
                raise
            raise ApiError(413, "too_many_images", f"more than {s.max_images_per_request} "
                           f"images; at most {s.max_images_per_request} per request") from None
        uploads = [v for v in form.getlist("images") if isinstance(v, UploadFile)]
        if not uploads:
            raise ApiError(422, "invalid_request", "no 'images' file parts in the request")
        if len(uploads) > s.max_images_per_request:
            raise ApiError(413, "too_many_images", f"{len(uploads)} images; at most "
                           f"{s.max_images_per_request} per request")
        # read each image only when its turn comes (and let it go once analysed): the ingress
        # holds about `window` images at a time, not the whole batch
        items = [ImageItem(i, up.filename, load=_image_loader(up, s.max_image_bytes))
                 for i, up in enumerate(uploads)]
        window = min(concurrency or s.analysis_concurrency, s.max_analysis_concurrency)
        limits = ImageLimits(max_pixels=s.max_image_pixels)

        async def stream() -> AsyncIterator[dict]:
            async for event, data in analyze_stream(items, concurrency=window,
                                                    task_cpus=s.image_task_cpus, limits=limits,
                                                    analysis_long_side=s.analysis_long_side,
                                                    detect=detector):
                yield _sse(event, data)

        return EventSourceResponse(stream(), ping=15)


class AppArgs(BaseModel):
    """Arguments of ``build_app`` (the ``args:`` of serve/config.yaml)."""

    settings: dict[str, Any] = Field(default_factory=dict,
                                     description="overrides of FRAMESIFT_* settings (no secrets: "
                                                 "API keys come from the replica environment)")


def build_app(args: dict[str, Any] | AppArgs | None = None) -> serve.Application:
    """Typed application builder: the coordinator bound into the ingress."""
    parsed = args if isinstance(args, AppArgs) else AppArgs.model_validate(args or {})
    for secret in ("api_keys", "database_url", "admin_key"):
        if secret in parsed.settings:
            raise ValueError(f"{secret} must come from FRAMESIFT_{secret.upper()} in the "
                             "environment, not from the application config (Ray logs it)")
    overrides = ServiceSettings(**parsed.settings).model_dump(
        include=set(parsed.settings), mode="json")
    for key in ("state_dir", "out_dir"):  # replicas may run elsewhere: pin absolute paths
        overrides[key] = os.path.abspath(overrides.get(key) or getattr(ServiceSettings(), key))
    for key in ("yolo_weights", "upscaler_weights"):  # files: absolute, as state_dir
        if overrides.get(key) and os.path.exists(overrides[key]):
            overrides[key] = os.path.abspath(overrides[key])
    coordinator = AnalysisCoordinator.bind(overrides)
    models = bind_models(ServiceSettings(**overrides))  # only the models whose weights are set
    return Ingress.bind(coordinator, overrides, models=models or None)
