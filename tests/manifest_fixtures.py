"""Golden manifests for store tests: one written by framesift 0.1.0 before the typed record
existed (``data/manifest-0.1.0-local.json``), and a builder of sample manifests from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.records import GlintMetrics, GoldenFrame
from jobs.golden.manifest import GoldenManifest

OLD_MANIFEST = Path(__file__).resolve().parent / "data" / "manifest-0.1.0-local.json"


def golden_frame(index: int, rank: int, scan_id: str = "scan-1", ext: str = "jpg") -> GoldenFrame:
    return GoldenFrame(rank=rank, frame_index=index, time_s=index / 30, sharpness=100.0 + index,
                       motion=0.2, still=True, width=64, height=48,
                       glint=GlintMetrics(0.01, 2, 9, 0.003, (0.5, 0.5), (1, 2, 3, 4)),
                       key=f"{scan_id}/{index}.{ext}", uri=f"file:///x/{index}.{ext}")


def sample_manifest(scan_id: str = "scan-1", frames: list[GoldenFrame] | None = None,
                    **updates: Any) -> GoldenManifest:
    """The 0.1.0 manifest with another scan id, golden frames and fields."""
    base = GoldenManifest.from_json(OLD_MANIFEST.read_bytes())
    frames = frames if frames is not None else [golden_frame(12, 1, scan_id)]
    return base.model_copy(update={"scan_id": scan_id, "golden_frames": frames,
                                   "scores_key": f"{scan_id}/scores.parquet", **updates})
