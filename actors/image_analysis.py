"""Single-image analysis: sharpness, exposure and glint of an uploaded image.

Sharpness uses the same definition and analysis size as video frames, so an image and a
golden frame can be compared. Decoding is guarded: the pixel count is read from the header
(Pillow, lazily) before any pixel is decoded, so decompression bombs are refused cheaply.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from actors.errors import FramesiftError
from actors.glint import GlintConfig, glint_metrics
from actors.scoring import analysis_size, laplacian_variance


class ImageError(FramesiftError):
    """An image could not be analysed; ``code`` says why."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ImageLimits:
    max_pixels: int = 50_000_000  # refuse larger images before decoding them
    max_side: int = 20_000


@dataclass(frozen=True)
class ImageAnalysis:
    width: int
    height: int
    format: str
    bytes: int
    sharpness: float
    exposure_mean: float  # mean luma, 0..255
    clipped_dark_share: float  # share of pixels with luma <= 5
    clipped_bright_share: float  # share of pixels with luma >= 250
    glint: dict[str, Any]
    elapsed_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, str]:
    """BGR pixels and the format name; ``ImageError`` for undecodable or oversized input."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            fmt = (probe.format or "unknown").lower()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError("undecodable_image",
                         "not a decodable image (expected JPEG, PNG, WebP, BMP or TIFF)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError("image_too_large", f"image refused as a decompression bomb: {exc}") from exc
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        raise ImageError("image_too_large",
                         f"image is {width}x{height} = {width * height} pixels; the limit is "
                         f"{limits.max_pixels} pixels and {limits.max_side} px per side")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError("undecodable_image", f"the {fmt} data could not be decoded")
    return bgr, fmt


def analyze_image(data: bytes, limits: ImageLimits = ImageLimits(),
                  glint: GlintConfig = GlintConfig(), analysis_long_side: int = 640) -> ImageAnalysis:
    """Decode and measure one image."""
    t0 = time.perf_counter()
    bgr, fmt = decode_image(data, limits)
    h, w = bgr.shape[:2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(gray, analysis_size(w, h, analysis_long_side), interpolation=cv2.INTER_AREA)
    total = float(gray.size)
    return ImageAnalysis(
        width=w, height=h, format=fmt, bytes=len(data),
        sharpness=laplacian_variance(small),
        exposure_mean=float(cv2.mean(gray)[0]),
        clipped_dark_share=float(np.count_nonzero(gray <= 5)) / total,
        clipped_bright_share=float(np.count_nonzero(gray >= 250)) / total,
        glint=asdict(glint_metrics(bgr, glint)),
        elapsed_s=time.perf_counter() - t0,
    )
