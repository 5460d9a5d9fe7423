"""``framesift detect-video``: decode once (every Nth frame), detect in batches on an actor
pool, write every detection to Parquet and a JSON summary."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from actors.detector import DETECTION_COLUMNS, Detector, DetectorConfig
from actors.frames import DecoderConfig, FrameChunk, FrameDecoder
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


def detect_video(path: str, out_dir: str, detector: DetectorConfig, *, stride: int = 1,
                 workers: int = 1, chunk_frames: int = 64, num_gpus: float = 0.0,
                 decode_workers: int = 1) -> DetectResult:
    """Run the detector over every ``stride``-th frame of ``path`` (Ray must be up)."""
    import ray.data

    from jobs.units import map_unit

    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    t0 = time.perf_counter()
    info = probe(path)
    chunks = FrameChunk.split("video", info, chunk_frames, stride)
    wanted = sum(len(c.wanted()) for c in chunks)
    notes: list[str] = []
    cpus = int(ray.cluster_resources().get("CPU", 1))
    if not num_gpus and workers * detector.cpus + 1 > cpus:  # leave a CPU for decoding
        fitted = max(1, int((cpus - 1) // max(detector.cpus, 0.01)))
        if fitted < workers:
            notes.append(f"{workers} CPU detector actors leave no CPU to decode on a {cpus}-CPU "
                         f"cluster: using {fitted}")
            workers = fitted
    ds = ray.data.from_items([c.to_row() for c in chunks], override_num_blocks=len(chunks))
    ds = map_unit(ds, FrameDecoder, DecoderConfig(), actors=False,
                  concurrency=max(1, decode_workers), num_cpus=1.0, batch_size=1)
    ds = map_unit(ds, Detector, detector, actors=True, concurrency=max(1, workers),
                  num_cpus=detector.cpus, num_gpus=num_gpus, batch_size=detector.batch_size)
    cols: dict[str, list[Any]] = {c: [] for c in DETECTION_COLUMNS}
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        for c in DETECTION_COLUMNS:
            cols[c].extend(batch[c].tolist())
    order = sorted(range(len(cols["frame_index"])),
                   key=lambda i: (cols["frame_index"][i], -cols["confidence"][i]))
    table = pa.table({
        "frame_index": pa.array([cols["frame_index"][i] for i in order], pa.int64()),
        "time_s": pa.array([cols["time_s"][i] for i in order], pa.float64()),
        **{c: pa.array([cols[c][i] for i in order], pa.float64())
           for c in ("x1", "y1", "x2", "y2", "confidence")},
        "class_id": pa.array([cols["class_id"][i] for i in order], pa.int64()),
        "class_name": pa.array([str(cols["class_name"][i]) for i in order], pa.string()),
    })
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    det_path = out / "detections.parquet"
    pq.write_table(table, det_path)
    wall = time.perf_counter() - t0
    per_class = dict(Counter(str(c) for c in cols["class_name"]).most_common())
    result = DetectResult(
        video=str(Path(path).resolve()), detections_path=str(det_path.resolve()),
        summary_path=str((out / "summary.json").resolve()), frames_total=info.frame_count,
        frames_processed=wanted, stride=stride, detections=table.num_rows,
        frames_with_detections=len(set(cols["frame_index"])), per_class=per_class,
        workers=workers, batch_size=detector.batch_size, wall_s=round(wall, 3),
        fps=round(wanted / wall, 2) if wall > 0 else 0.0, notes=notes)
    (out / "summary.json").write_text(json.dumps({**result.to_dict(), "video_info": info.summary(),
                                                  "detector": {"weights": detector.weights,
                                                               "conf": detector.conf,
                                                               "iou": detector.iou,
                                                               "imgsz": detector.imgsz}},
                                                 indent=2, default=str))
    return result
