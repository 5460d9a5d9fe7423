"""Glint (specular highlight) analysis: bright, unsaturated pixels and their largest blob."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from actors.records import GlintMetrics


@dataclass(frozen=True)
class GlintConfig:
    """A pixel is a highlight when HSV value >= ``value_min`` and saturation <= ``saturation_max``."""

    value_min: int = 240
    saturation_max: int = 40
    min_blob_px: int = 4  # smaller specks are sensor noise, not glare


def highlight_mask(bgr: np.ndarray, config: GlintConfig = GlintConfig()) -> np.ndarray:
    """uint8 mask (0/255) of specular-highlight pixels."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    _, s, v = cv2.split(hsv)
    return ((v >= config.value_min) & (s <= config.saturation_max)).astype(np.uint8) * 255


def glint_metrics(bgr: np.ndarray, config: GlintConfig = GlintConfig()) -> GlintMetrics:
    """Share of highlight pixels, number of highlight blobs, and the largest blob."""
    mask = highlight_mask(bgr, config)
    h, w = mask.shape
    total = float(h * w)
    count, _, stats, centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.flatnonzero(areas >= config.min_blob_px)
    if keep.size == 0:
        return GlintMetrics(share=float(np.count_nonzero(mask)) / total, blob_count=0,
                            largest_blob_area_px=0, largest_blob_share=0.0,
                            largest_blob_center=None, largest_blob_bbox=None)
    best = int(keep[np.argmax(areas[keep])]) + 1
    x, y, bw, bh, area = (int(v) for v in stats[best])
    cx, cy = centroids[best]
    return GlintMetrics(
        share=float(np.count_nonzero(mask)) / total,
        blob_count=int(keep.size),
        largest_blob_area_px=area,
        largest_blob_share=area / total,
        largest_blob_center=(round(float(cx) / w, 6), round(float(cy) / h, 6)),
        largest_blob_bbox=(x, y, bw, bh),
    )
