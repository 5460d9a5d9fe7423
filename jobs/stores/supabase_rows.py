"""The rows the Supabase store writes (jobs/stores/supabase.py): one ``golden_frames`` row per
golden frame, and the ``analyses`` row of a result."""

from __future__ import annotations

import uuid
from typing import Any

from actors.records import GoldenFrame
from jobs.golden.manifest import GoldenManifest
from jobs.stores.base import tenant_prefix

# Namespace of the deterministic golden_frames row ids
ROW_NAMESPACE = uuid.UUID("6f1c2a4e-6a43-5c1e-9a8e-2f0d7b1c9e55")


def golden_frame_row(scan_id: str, analysis_id: str, frame: GoldenFrame, bucket: str,
                     content_type: str, tenant: str | None = None) -> dict[str, Any]:
    """The ``golden_frames`` row of one golden frame (``tenant`` '' without one)."""
    glint = frame.to_dict()["glint"]
    return {
        "id": str(uuid.uuid5(ROW_NAMESPACE,
                             f"{tenant_prefix(tenant)}{scan_id}/{int(frame.frame_index)}")),
        "analysis_id": analysis_id,
        "tenant": tenant or "",
        "scan_id": scan_id,
        "frame_index": int(frame.frame_index),
        "rank": int(frame.rank),
        "timestamp_s": float(frame.time_s),
        "sharpness": float(frame.sharpness),
        "motion": float(frame.motion),
        "still": bool(frame.still),
        "glint_share": float(frame.glint.share),
        "glint_blob_count": int(frame.glint.blob_count),
        "glint_largest_blob_px": int(frame.glint.largest_blob_area_px),
        "glint": glint,
        "width": int(frame.width),
        "height": int(frame.height),
        "storage_bucket": bucket,
        "storage_key": frame.key,
        "content_type": content_type,
    }


def analysis_row(analysis_id: str, scan_id: str, status: str,
                 manifest: GoldenManifest | None = None, error: str | None = None,
                 tenant: str | None = None) -> dict[str, Any]:
    """The ``analyses`` row: status, parameters, timings, counts, error."""
    row: dict[str, Any] = {
        "id": analysis_id, "tenant": tenant or "", "scan_id": scan_id, "item_type": None, "status": status,
        "parameters": {}, "timings": {}, "video": None, "frame_count": None,
        "still_frames": None, "golden_count": 0, "error": error, "framesift_version": None,
    }
    if manifest is not None:
        m = manifest.model_dump(mode="json", include={"video"})
        row.update(item_type=manifest.item_type, parameters=manifest.parameters,
                   timings=dict(manifest.timings_s), video=m["video"],
                   frame_count=manifest.video.frame_count,
                   still_frames=manifest.selection.still_frames,
                   golden_count=len(manifest.golden_frames),
                   framesift_version=manifest.framesift_version)
    return row
