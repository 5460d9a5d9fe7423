"""Crops per category from detections: pure functions, no model.

Each requested category gets its own list of crops (what the previous crop service returned,
one call per category); the detections they come from are computed once per image by the
shared detector, not once per category.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import cv2
import numpy as np

from actors.errors import InvalidParameterError
from actors.records import Detections


@dataclass(frozen=True)
class CropConfig:
    padding: float = 0.1  # fraction of the box's width/height added on each side
    min_confidence: float = 0.25
    max_per_category: int = 50
    image_format: str = "jpeg"  # jpeg or png
    jpeg_quality: int = 92


@dataclass(frozen=True)
class Crop:
    category: str
    detection: dict[str, Any]  # the detection it was cut from, as the API shows it
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 after padding, clipped to the image
    image: np.ndarray  # BGR

    def encode(self, config: CropConfig) -> bytes:
        return encode_image(self.image, config.image_format, config.jpeg_quality)


def encode_image(bgr: np.ndarray, image_format: str = "jpeg", jpeg_quality: int = 92) -> bytes:
    fmt = image_format.lower()
    if fmt in ("jpeg", "jpg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        raise InvalidParameterError(f"image format must be jpeg or png, got {image_format!r}")
    if not ok:
        raise InvalidParameterError("the image could not be encoded")
    return buf.tobytes()


def padded_box(xyxy: Sequence[float], width: int, height: int,
               padding: float) -> tuple[int, int, int, int]:
    """The box ``x1, y1, x2, y2`` grown by ``padding`` x its size on each side, clipped,
    integer pixels."""
    bx1, by1, bx2, by2 = (float(v) for v in xyxy)
    bw, bh = bx2 - bx1, by2 - by1
    x1 = int(np.floor(max(0.0, bx1 - padding * bw)))
    y1 = int(np.floor(max(0.0, by1 - padding * bh)))
    x2 = int(np.ceil(min(float(width), bx2 + padding * bw)))
    y2 = int(np.ceil(min(float(height), by2 + padding * bh)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)


def parse_categories(text: str | Sequence[str]) -> list[str]:
    """'a,b' or ['a', 'b'] -> unique names in order; at least one."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for c in (i.strip() for i in items):
        if c and c.lower() not in [o.lower() for o in out]:
            out.append(c)
    if not out:
        raise InvalidParameterError("give at least one category, e.g. categories=person,car")
    return out


def crops_by_category(image: np.ndarray, detections: Detections, categories: Sequence[str],
                      config: CropConfig = CropConfig()) -> dict[str, list[Crop]]:
    """For each category (a class name, case-insensitive, or a class id), its crops, best first."""
    h, w = image.shape[:2]
    names = np.array([str(n).lower() for n in detections.class_name], dtype=object)
    rows = detections.to_list()
    out: dict[str, list[Crop]] = {}
    for category in categories:
        key = category.strip().lower()
        match = names == key
        if key.isdigit():
            match |= detections.class_id == int(key)
        picked = np.flatnonzero(match & (detections.confidence >= config.min_confidence))
        picked = picked[np.argsort(-detections.confidence[picked], kind="stable")]
        crops = []
        for i in picked[: config.max_per_category]:
            box = padded_box(detections.xyxy[i], w, h, config.padding)
            crops.append(Crop(category, rows[i], box,
                              np.ascontiguousarray(image[box[1]:box[3], box[0]:box[2]])))
        out[category] = crops
    return out
