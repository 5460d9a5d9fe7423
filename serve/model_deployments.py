"""Model deployments: one per model, each loading its weights once per replica.

Callers send the encoded image (a few tens of KB) and the replica decodes it, with the pixel
cap, on a thread beside the model: shipping decoded arrays (~1 MB each) through the object store
cost more per request than the batching saved.

* ``Detector`` (YOLO): requests are batched with ``@serve.batch``; the batch size and wait are
  retuned live through ``user_config`` (``reconfigure``). The cropper runs inside this
  deployment: crops need the image and its detections, so cutting them where the detections
  are made ships the image once and shares one batched model pass across all categories.
* ``Upscaler`` (Real-ESRGAN via spandrel): one image at a time (sizes differ; tiling bounds
  memory), encoded to PNG/JPEG in the replica so only the compressed result travels.

Errors a caller can fix come back as ``{"error": {"code", "message"}}`` values, not exceptions,
so the ingress answers them as JSON without unwrapping Ray errors.

Each model's libraries come with an extra (pyproject.toml): ``[yolo]`` for the detector,
``[upscale]`` for the upscaler. Where the app is built without it, the model is not deployed
(a warning says which extra to install) and its routes answer 503 ``model_not_configured``.
"""

import asyncio
import base64
import functools
import io
import logging
import os
import threading
import zipfile
from collections import Counter
from typing import Any, Awaitable, Callable

import numpy as np
from ray import serve

from actors.cropper import CropConfig, crops_by_category, encode_image
from actors.detector import Detector, DetectorConfig, resolve_classes
from actors.errors import FramesiftError
from actors.image_analysis import ImageLimits, decode_image
from actors.records import Detections
from actors.upscaler import Upscaler, UpscalerConfig
from actors.weights import install_hint, missing_extra

DEFAULT_BATCH = {"max_batch_size": 16, "batch_wait_timeout_s": 0.01}
DETECTOR_AUTOSCALING = {"min_replicas": 1, "target_ongoing_requests": 16}  # + max_replicas
UPSCALER_AUTOSCALING = {"min_replicas": 1, "target_ongoing_requests": 2}

log = logging.getLogger("framesift.models")


def _error(exc: FramesiftError) -> dict[str, Any]:
    return {"error": {"code": getattr(exc, "code", "invalid_request"), "message": str(exc)}}


def _errors_as_values(method: Callable[..., Awaitable[dict[str, Any]]]
                      ) -> Callable[..., Awaitable[dict[str, Any]]]:
    """A caller-fixable ``FramesiftError`` raised by ``method`` comes back as ``{"error"}``."""
    @functools.wraps(method)
    async def wrapped(*args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return await method(*args, **kwargs)
        except FramesiftError as exc:
            return _error(exc)
    return wrapped


async def _decode(data: bytes, max_pixels: int) -> np.ndarray:
    """BGR pixels of an encoded image (``ImageError`` when undecodable or over the cap)."""
    bgr, _ = await asyncio.to_thread(decode_image, data, ImageLimits(max_pixels=max_pixels))
    return bgr


@serve.deployment(name="Detector", max_ongoing_requests=32, user_config=DEFAULT_BATCH,
                  ray_actor_options={"num_cpus": 1, "num_gpus": 0},
                  autoscaling_config={**DETECTOR_AUTOSCALING, "max_replicas": 2})
class DetectorDeployment:
    """YOLO, loaded once per replica; concurrent requests are batched into one model call."""

    def __init__(self, config: dict[str, Any], default_conf: float = 0.25) -> None:
        self.default_conf = default_conf  # per-request filter; the model runs at config["conf"]
        cfg = dict(config)
        if cfg.get("classes") is not None:
            cfg["classes"] = tuple(cfg["classes"])
        self.unit = Detector(DetectorConfig(**cfg))
        self.unit.setup()
        self.batch_sizes: Counter[int] = Counter()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Retune batching live (``serve deploy`` with a new ``user_config``)."""
        cfg = {**DEFAULT_BATCH, **(user_config or {})}
        self._detect_batch.set_max_batch_size(int(cfg["max_batch_size"]))
        self._detect_batch.set_batch_wait_timeout_s(float(cfg["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01)
    async def _detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        self.batch_sizes[len(images)] += 1
        return await asyncio.to_thread(self.unit.detect, images)

    def _classes(self, classes: list[str] | None) -> list[int] | None:
        return resolve_classes(classes, self.unit.names) if classes else None

    @_errors_as_values
    async def detect(self, data: bytes, conf: float | None = None,
                     classes: list[str] | None = None,
                     max_pixels: int = ImageLimits.max_pixels) -> dict[str, Any]:
        """Detections in an encoded image: ``{width, height, detections}`` or ``{error}``."""
        ids = self._classes(classes)
        image = await _decode(data, max_pixels)
        conf = self.default_conf if conf is None else conf
        dets = (await self._detect_batch(image)).filter(conf, ids)
        return {"width": int(image.shape[1]), "height": int(image.shape[0]),
                "detections": dets.to_list()}

    @_errors_as_values
    async def crop(self, data: bytes, categories: list[str], padding: float,
                   min_confidence: float | None, image_format: str, as_zip: bool,
                   max_pixels: int = ImageLimits.max_pixels) -> dict[str, Any]:
        """Crops per category of an encoded image: JSON-ready dict, ``{zip}`` or ``{error}``."""
        min_confidence = self.default_conf if min_confidence is None else min_confidence
        names = {n.lower() for n in self.unit.names.values()}
        unknown = [c for c in categories if c.lower() not in names
                   and not (c.isdigit() and int(c) in self.unit.names)]
        if unknown:
            known = ", ".join(list(self.unit.names.values())[:20])
            return {"error": {"code": "unknown_category",
                              "message": f"unknown categories {unknown}: this model knows {known}"}}
        image = await _decode(data, max_pixels)
        dets = await self._detect_batch(image)
        cfg = CropConfig(padding=padding, min_confidence=min_confidence, image_format=image_format)
        crops = crops_by_category(image, dets, categories, cfg)
        ext = "png" if image_format == "png" else "jpg"
        summary: dict[str, list[dict[str, Any]]] = {}
        files: dict[str, bytes] = {}
        for cat, items in crops.items():
            summary[cat] = []
            for k, c in enumerate(items):
                data = c.encode(cfg)
                entry = {**c.detection, "crop_box": list(c.box),
                         "width": int(c.image.shape[1]), "height": int(c.image.shape[0])}
                if as_zip:
                    entry["file"] = f"{cat}/{k:03d}.{ext}"
                    files[entry["file"]] = data
                else:
                    entry["image_base64"] = base64.b64encode(data).decode()
                summary[cat].append(entry)
        body = {"width": int(image.shape[1]), "height": int(image.shape[0]),
                "format": image_format, "categories": summary}
        if not as_zip:
            return body
        import json

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("crops.json", json.dumps(body, indent=2))
            for name, data in files.items():
                zf.writestr(name, data)
        return {"zip": buf.getvalue()}

    def info(self) -> dict[str, Any]:
        batch = self._detect_batch
        return {"classes": self.unit.names, "device": self.unit.device,
                "half": self.unit.half, "model_calls": self.unit.calls,
                "batch_sizes": dict(self.batch_sizes),
                "max_batch_size": (batch._get_max_batch_size()
                                   if hasattr(batch, "_get_max_batch_size") else None)}


@serve.deployment(name="Upscaler", max_ongoing_requests=4,
                  ray_actor_options={"num_cpus": 1, "num_gpus": 0},
                  autoscaling_config={**UPSCALER_AUTOSCALING, "max_replicas": 2})
class UpscalerDeployment:
    """Real-ESRGAN, loaded once per replica; one image on the model at a time."""

    def __init__(self, config: dict[str, Any], max_output_pixels: int = 16_777_216) -> None:
        self.unit = Upscaler(UpscalerConfig(**config))
        self.unit.setup()
        self.max_output_pixels = max_output_pixels
        self._lock = threading.Lock()

    def _run(self, image: np.ndarray, scale: float | None, image_format: str) -> bytes:
        with self._lock:
            out = self.unit.upscale(image, scale)
        return encode_image(out, image_format)

    @_errors_as_values
    async def upscale(self, data: bytes, scale: float | None, image_format: str,
                      max_pixels: int = ImageLimits.max_pixels) -> dict[str, Any]:
        """An encoded image upscaled: ``{content, width, height, ...}`` or ``{error}``."""
        image = await _decode(data, max_pixels)
        s = float(scale) if scale is not None else float(self.unit.scale)
        h, w = image.shape[:2]
        ow, oh = max(1, round(w * s)), max(1, round(h * s))
        if ow * oh > self.max_output_pixels:
            return {"error": {"code": "output_too_large", "message": (
                f"{w}x{h} at scale {s:g} would be {ow}x{oh} = {ow * oh} pixels; the limit is "
                f"{self.max_output_pixels} (FRAMESIFT_MAX_UPSCALE_PIXELS): send a smaller image "
                "or a lower scale")}}
        data = await asyncio.to_thread(self._run, image, scale, image_format)
        return {"content": data, "width": ow, "height": oh, "model_scale": self.unit.scale,
                "tile": self.unit.tile}

    def info(self) -> dict[str, Any]:
        return {"scale": self.unit.scale, "architecture": self.unit.model.architecture.name,
                "device": self.unit.device, "dtype": str(self.unit.dtype), "tile": self.unit.tile,
                "oom_retries": self.unit.oom_retries}


def _weights(path: str | None) -> str | None:
    return os.path.abspath(path) if path and os.path.exists(path) else path


def detector_config(settings: Any) -> dict[str, Any]:
    """DetectorConfig kwargs from (service) settings."""
    return {"weights": _weights(settings.yolo_weights), "conf": min(settings.yolo_conf, 0.05),
            "iou": settings.yolo_iou, "imgsz": settings.yolo_imgsz,
            "batch_size": settings.detect_batch_size, "device": settings.model_device,
            "half": settings.model_half, "cpus": settings.detector_num_cpus}


def upscaler_config(settings: Any) -> dict[str, Any]:
    return {"weights": _weights(settings.upscaler_weights), "tile": settings.upscale_tile,
            "tile_pad": settings.upscale_tile_pad, "pre_pad": settings.upscale_pre_pad,
            "device": settings.model_device, "half": settings.model_half}


def _installed(model: str, weights: str | None) -> bool:
    if not weights:
        return False
    extra = missing_extra(model)
    if extra is not None:
        log.warning("%s weights are set (%s) but the %s extra is not installed here: the %s is "
                    "not deployed and its routes answer 503 until you run %s and redeploy",
                    model, weights, extra, model, install_hint(model))
    return extra is None


def bind_models(settings: Any) -> dict[str, Any]:
    """The model deployments the settings configure (weights set, extra installed), bound, by
    name."""
    models: dict[str, Any] = {}
    batch = {"max_batch_size": settings.detect_batch_size,
             "batch_wait_timeout_s": settings.detect_batch_wait_s}
    if _installed("detector", settings.yolo_weights):
        models["detector"] = DetectorDeployment.options(
            user_config=batch,
            autoscaling_config={**DETECTOR_AUTOSCALING,
                                "max_replicas": settings.detector_max_replicas},
            ray_actor_options={"num_cpus": settings.detector_num_cpus,
                               "num_gpus": settings.detector_num_gpus},
        ).bind(detector_config(settings), settings.yolo_conf)
    if _installed("upscaler", settings.upscaler_weights):
        models["upscaler"] = UpscalerDeployment.options(
            autoscaling_config={**UPSCALER_AUTOSCALING,
                                "max_replicas": settings.upscaler_max_replicas},
            ray_actor_options={"num_cpus": settings.upscaler_num_cpus,
                               "num_gpus": settings.upscaler_num_gpus},
        ).bind(upscaler_config(settings), settings.max_upscale_pixels)
    return models


def cpu_headroom_warning(settings: Any, cluster_cpus: float) -> str | None:
    """A warning when the model replicas' CPU reservations leave no CPU for analyses (whose
    Ray tasks would then wait forever on a fixed-size local Ray), else None."""
    reserved = ((settings.detector_num_cpus if settings.yolo_weights else 0.0)
                + (settings.upscaler_num_cpus if settings.upscaler_weights else 0.0))
    if not reserved or cluster_cpus - reserved >= settings.image_task_cpus:
        return None
    return (f"the model replicas reserve {reserved:g} of this Ray's {cluster_cpus:g} CPUs, "
            f"leaving less than the {settings.image_task_cpus:g} an image or video analysis "
            "task needs: analyses will wait until CPUs free up. Give Ray more CPUs (--num-cpus) "
            "or lower FRAMESIFT_DETECTOR_NUM_CPUS / FRAMESIFT_UPSCALER_NUM_CPUS (e.g. 0.5)")
