"""Model routes: detection, crops per category, upscaling. Included into ``serve.app.app``.

(No ``from __future__ import annotations``: FastAPI must see real types through Serve.)
The routes reach the model deployments through ``request.app.state.models`` (handles by
name, set by the ingress); a model that is not deployed answers 503 naming the setting and
the extra that brings its libraries.
"""

from typing import Any, Awaitable, Callable

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import UploadFile

from actors.cropper import parse_categories
from actors.errors import FramesiftError
from actors.image_analysis import ImageLimits
from actors.weights import install_hint
from serve.errors import ApiError
from serve.schemas import ErrorResponse
from serve.security import require_api_key

router = APIRouter(prefix="/v1", tags=["models"], dependencies=[Depends(require_api_key)])

ERRORS = {code: {"model": ErrorResponse} for code in (401, 413, 415, 422, 503)}
_SETTING = {"detector": "FRAMESIFT_YOLO_WEIGHTS (a YOLO .pt file, e.g. models/yolov8n.pt)",
            "upscaler": "FRAMESIFT_UPSCALER_WEIGHTS (a Real-ESRGAN .pth file, e.g. "
                        "models/RealESRGAN_x4plus.pth)"}
_IMAGE_BODY = {"requestBody": {"required": True, "content": {
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary"}}}}}}}


def model_body_limits(max_image_bytes: int) -> dict[str, int]:
    """Body caps of the model routes (for the ingress's ``BodyLimit``)."""
    cap = max_image_bytes + 2**20
    return {"/v1/detect": cap, "/v1/crop": cap, "/v1/upscale": cap}


def model_handle(request: Request, name: str) -> Any:
    """The handle of a deployed model, or 503 ``model_not_configured`` naming the setting and
    the extra to install."""
    handle = (getattr(request.app.state, "models", None) or {}).get(name)
    if handle is None:
        raise ApiError(503, "model_not_configured", f"no {name} is deployed on this server: set "
                       f"{_SETTING[name]}, install its libraries where it runs "
                       f"({install_hint(name)}) and redeploy (weights are local files, never "
                       "downloaded)")
    return handle


async def _image(request: Request) -> bytes:
    """The request's encoded image (raw image/* body or multipart part 'image'), size-checked.
    The model replica decodes it (with the pixel cap): bytes travel, not decoded arrays."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_bytes = _limits(request)["max_image_bytes"]
    if ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=5)
        part = form.get("image")
        if not isinstance(part, UploadFile):
            raise ApiError(422, "invalid_request", "multipart body needs an 'image' file part")
        data = await part.read(max_bytes + 1)
    elif ctype.startswith("image/") or ctype == "application/octet-stream":
        data = await request.body()
    else:
        raise ApiError(415, "unsupported_media_type", "send the image as the body (image/jpeg, "
                       f"image/png, ...) or as multipart part 'image', not '{ctype or 'none'}'")
    if not data:
        raise ApiError(422, "empty_image", "the image is empty")
    if len(data) > max_bytes:
        raise ApiError(413, "image_too_large", f"image is larger than {max_bytes} bytes")
    return data


def _limits(request: Request) -> dict[str, int]:
    return {"max_image_bytes": 25 * 2**20, "max_image_pixels": ImageLimits.max_pixels,
            **getattr(request.app.state, "model_limits", {})}


def _max_pixels(request: Request) -> int:
    return _limits(request)["max_image_pixels"]


def detections_for(request: Request) -> Callable[[bytes], Awaitable[dict[str, Any]]]:
    """``data -> {width, height, detections}`` through the Detector deployment (503 without)."""
    handle = model_handle(request, "detector")
    max_pixels = _max_pixels(request)

    async def detect(data: bytes) -> dict[str, Any]:
        return await handle.detect.remote(data, None, None, max_pixels)

    return detect


def _unwrap(result: dict[str, Any]) -> dict[str, Any]:
    if "error" in result:
        code = result["error"]["code"]
        status = 413 if code in ("output_too_large", "image_too_large") else 422
        raise ApiError(status, code, result["error"]["message"])
    return result


def _csv(text: str | None) -> list[str] | None:
    items = [t.strip() for t in (text or "").split(",") if t.strip()]
    return items or None


@router.post("/detect", responses=ERRORS, openapi_extra=_IMAGE_BODY,
             summary="Detect objects in an image (YOLO)")
async def detect(request: Request,
                 conf: float | None = Query(None, ge=0, le=1, description="confidence floor "
                                            "(default FRAMESIFT_YOLO_CONF)"),
                 classes: str | None = Query(None, description="comma-separated class names "
                                             "or ids to keep")) -> JSONResponse:
    handle = model_handle(request, "detector")
    image = await _image(request)
    result = _unwrap(await handle.detect.remote(image, conf, _csv(classes),
                                                _max_pixels(request)))
    return JSONResponse(result)


@router.post("/crop", responses=ERRORS, openapi_extra=_IMAGE_BODY,
             summary="Crops of the detected objects, per category (JSON with base64, or a zip)")
async def crop(request: Request,
               categories: str = Query(..., description="comma-separated class names, e.g. "
                                       "person,car"),
               padding: float = Query(0.1, ge=0, le=2, description="box size fraction added "
                                      "on each side"),
               min_confidence: float | None = Query(None, ge=0, le=1),
               format: str = Query("json", pattern="^(json|zip)$"),
               image_format: str = Query("jpeg", pattern="^(jpeg|png)$")) -> Response:
    handle = model_handle(request, "detector")
    try:
        cats = parse_categories(categories)
    except FramesiftError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from exc
    image = await _image(request)
    result = _unwrap(await handle.crop.remote(image, cats, padding, min_confidence,
                                              image_format, format == "zip",
                                              _max_pixels(request)))
    if format == "zip":
        return Response(result["zip"], media_type="application/zip",
                        headers={"Content-Disposition": 'attachment; filename="crops.zip"'})
    return JSONResponse(result)


@router.post("/upscale", responses={**ERRORS, 200: {"content": {"image/png": {},
                                                               "image/jpeg": {}}}},
             openapi_extra=_IMAGE_BODY, summary="Upscale an image (Real-ESRGAN)")
async def upscale(request: Request,
                  scale: float | None = Query(None, gt=0, le=8, description="output scale "
                                              "(default: the model's own, e.g. 4)"),
                  format: str = Query("png", pattern="^(png|jpeg)$")) -> Response:
    handle = model_handle(request, "upscaler")
    image = await _image(request)
    result = _unwrap(await handle.upscale.remote(image, scale, format,
                                                 _max_pixels(request)))
    return Response(result["content"], media_type=f"image/{format}",
                    headers={"X-Upscale-Size": f"{result['width']}x{result['height']}",
                             "X-Model-Scale": str(result["model_scale"])})
