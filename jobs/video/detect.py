"""``framesift detect-video``: decode once (every Nth frame), detect in batches on an actor
pool, write every detection to Parquet and a JSON summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from actors.detector import Detector, DetectorConfig
from actors.frames import DecoderConfig, FrameDecoder
from actors.records import Detections, VideoChunk
from actors.video import probe


@dataclass
class DetectResult:
    video: str
    detections_path: str
    summary_path: str
    frames_total: int
    frames_processed: int
    stride: int
    detections: int
    frames_with_detections: int
    per_class: dict[str, int]
    workers: int
    batch_size: int
    wall_s: float
    fps: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def detections_table(frame_index: np.ndarray, time_s: np.ndarray, dets: Detections) -> pa.Table:
    """``detections.parquet``: one row per box, by frame, most confident first."""
    order = np.lexsort((-dets.confidence, frame_index))
    cols = dets[order].columns()
    return pa.table({
        "frame_index": pa.array(frame_index[order], pa.int64()),
        "time_s": pa.array(time_s[order], pa.float64()),
        **{c: pa.array(cols[c], pa.float64()) for c in ("x1", "y1", "x2", "y2", "confidence")},
        "class_id": pa.array(cols["class_id"], pa.int64()),
        "class_name": pa.array([str(n) for n in cols["class_name"]], pa.string()),
    })


def _fit_cpu_workers(workers: int, detector: DetectorConfig, num_gpus: float,
                     notes: list[str]) -> int:
    """CPU detector actors that still leave a CPU for decoding (they would deadlock otherwise)."""
    from jobs.runtime import cluster_cpus

    cpus = cluster_cpus()
    if num_gpus or workers * detector.cpus + 1 <= cpus:
        return workers
    fitted = max(1, int((cpus - 1) // max(detector.cpus, 0.01)))
    if fitted < workers:
        notes.append(f"{workers} CPU detector actors leave no CPU to decode on a {cpus}-CPU "
                     f"cluster: using {fitted}")
        return fitted
    return workers


def _collect(ds: Any) -> tuple[np.ndarray, np.ndarray, Detections]:
    """Every detection the pipeline produced, with its frame index and time."""
    idx, times, parts = [], [], []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        idx.append(batch["frame_index"])
        times.append(batch["time_s"])
        parts.append(Detections(np.stack([batch[c] for c in ("x1", "y1", "x2", "y2")], axis=1),
                                batch["confidence"], batch["class_id"], batch["class_name"]))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0), Detections.empty()
    return np.concatenate(idx), np.concatenate(times), Detections.concat(parts)


def detect_video(path: str, out_dir: str, detector: DetectorConfig, *, stride: int = 1,
                 workers: int = 1, chunk_frames: int = 64, num_gpus: float = 0.0,
                 decode_workers: int = 1) -> DetectResult:
    """Run the detector over every ``stride``-th frame of ``path`` (Ray must be up)."""
    import ray.data

    from jobs.units import map_stage

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    t0 = time.perf_counter()
    info = probe(path)
    chunks = VideoChunk.split("video", info, chunk_frames, stride)
    wanted = sum(len(c.wanted()) for c in chunks)
    notes: list[str] = []
    workers = _fit_cpu_workers(workers, detector, num_gpus, notes)
    ds: ray.data.Dataset = ray.data.from_items([c.to_row() for c in chunks],
                                               override_num_blocks=len(chunks))
    ds = map_stage(ds, FrameDecoder(DecoderConfig()), actors=False,
                   concurrency=max(1, decode_workers), batch_size=1)
    ds = map_stage(ds, Detector(replace(detector, gpus=num_gpus)), actors=True,
                   concurrency=max(1, workers), batch_size=detector.batch_size)
    frame_index, time_s, dets = _collect(ds)
    table = detections_table(frame_index, time_s, dets)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    det_path = out / "detections.parquet"
    pq.write_table(table, det_path)
    wall = time.perf_counter() - t0
    per_class = dict(Counter(str(c) for c in dets.class_name).most_common())
    result = DetectResult(
        video=str(Path(path).resolve()), detections_path=str(det_path.resolve()),
        summary_path=str((out / "summary.json").resolve()), frames_total=info.frame_count,
        frames_processed=wanted, stride=stride, detections=table.num_rows,
        frames_with_detections=len(set(frame_index.tolist())), per_class=per_class,
        workers=workers, batch_size=detector.batch_size, wall_s=round(wall, 3),
        fps=round(wanted / wall, 2) if wall > 0 else 0.0, notes=notes)
    (out / "summary.json").write_text(json.dumps({**result.to_dict(), "video_info": info.summary(),
                                                  "detector": {"weights": detector.weights,
                                                               "conf": detector.conf,
                                                               "iou": detector.iou,
                                                               "imgsz": detector.imgsz}},
                                                 indent=2, default=str))
    return result
