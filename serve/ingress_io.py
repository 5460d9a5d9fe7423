"""What the ingress (serve/app.py) needs around its routes: reading a request (content type,
JSON body, uploaded images and their names, ``Last-Event-ID``), shaping an answer (404, the
coordinator's refusals, Server-Sent Events) and the OpenAPI documentation of its bodies."""

from __future__ import annotations

import json
import os
from typing import Any, Awaitable, Callable

from fastapi import Request
from starlette.datastructures import UploadFile

from actors.image_analysis import ImageError
from serve.errors import ApiError
from serve.schemas import AnalysisRequest, ErrorResponse

ERRORS = {code: {"model": ErrorResponse} for code in (401, 404, 409, 413, 415, 422, 429, 503)}

_ANALYSIS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": AnalysisRequest.model_json_schema()},
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["video", "scan_id"],
                "properties": {"video": {"type": "string", "format": "binary"},
                               "scan_id": {"type": "string"}, "item_type": {"type": "string"},
                               "top_k": {"type": "integer"}, "min_gap_s": {"type": "number"},
                               "motion_max": {"type": "number"}}}},
        },
    }
}
_IMAGES_BODY = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["images"],
        "properties": {"images": {"type": "array",
                                  "items": {"type": "string", "format": "binary"}}}}}}},
    "responses": {"200": {"description": "text/event-stream: `result` and `error` per image, "
                                         "`progress` after each, then `summary`",
                          "content": {"text/event-stream": {}}}},
}
_EVENTS_DOC = {"responses": {"200": {
    "description": "text/event-stream: `state` first (the current state, for late subscribers), "
                   "then `status`, `planned`, `progress`, `golden_frame`, and a final `done` or "
                   "`error`", "content": {"text/event-stream": {}}}}}


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _found(value: Any, analysis_id: str) -> Any:
    """``value``, or a 404 answer when the coordinator knows no such analysis."""
    if value is None:
        raise ApiError(404, "not_found", f"no analysis {analysis_id!r}")
    return value


async def _json_body(request: Request) -> Any:
    """The request's JSON; malformed or absurdly nested JSON is a 422, never a 500."""
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(422, "invalid_json", f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(422, "invalid_json", "request body is not valid JSON: nested too "
                                            "deeply") from None


def _refused(refusal: dict[str, Any] | None) -> None:
    """Raise the coordinator's refusal (queue full, per-key limit) as its answer."""
    if refusal:
        headers = {"Retry-After": str(refusal["retry_after"])} if refusal.get("retry_after") \
            else None
        raise ApiError(refusal["status"], refusal["code"], refusal["message"], headers=headers)


def _image_loader(upload: UploadFile, max_bytes: int) -> Callable[[], Awaitable[bytes]]:
    """Reads one uploaded image (at most ``max_bytes``) and releases its spooled copy."""
    async def load() -> bytes:
        try:
            data = await upload.read(max_bytes + 1)
        finally:
            await upload.close()
        if len(data) > max_bytes:
            raise ImageError("image_too_large", f"image is larger than {max_bytes} bytes")
        if not data:
            raise ImageError("empty_image", "the part is empty")
        return data
    return load


def _upload_name(filename: str | None) -> str:
    """How error messages name an upload: the client's file name (made safe), never our path."""
    name = "".join(c for c in os.path.basename(filename or "") if c.isprintable())[:128]
    return f"upload {name!r}" if name else "the uploaded video"


def _event_id(header: str | None) -> int | None:
    """The event id a reconnecting client last saw (``Last-Event-ID``), if it is one of ours."""
    value = (header or "").strip()
    return int(value) if value.isdigit() and len(value) < 12 else None


def _sse(event: str, data: Any, event_id: int | None = None) -> dict[str, Any]:
    out = {"event": event, "data": json.dumps(data)}
    if event_id is not None:
        out["id"] = str(event_id)
    return out
