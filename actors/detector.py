"""YOLO detection unit (ultralytics), batched over frames; our ``Detections`` at the boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np

from actors.errors import InvalidParameterError
from actors.records import Detections
from actors.stage import Resources, Stage
from actors.weights import load_yolo, setup_torch_worker

DETECTION_COLUMNS = ("video_id", "frame_index", "time_s", "x1", "y1", "x2", "y2", "confidence",
                     "class_id", "class_name")


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of the detector. ``conf`` is the floor the model runs at; callers may filter
    higher per request. ``classes`` are ids or names (None: every class)."""

    weights: str | None = None
    conf: float = 0.25
    iou: float = 0.45
    classes: tuple[int | str, ...] | None = None
    imgsz: int = 640
    max_det: int = 300
    device: str = "auto"
    half: bool = True  # fp16 on CUDA
    batch_size: int = 16  # frames per model call
    cpus: float = 1.0
    gpus: float = 0.0
    setting: str = "FRAMESIFT_YOLO_WEIGHTS"  # named in errors about the weights


def resolve_classes(classes: Sequence[int | str] | None, names: dict[int, str]) -> list[int] | None:
    """Class ids from ids or names; ``InvalidParameterError`` naming the known classes."""
    if classes is None:
        return None
    by_name = {n.lower(): i for i, n in names.items()}
    out: list[int] = []
    for c in classes:
        key = c.strip() if isinstance(c, str) else c
        if isinstance(key, str) and key.isdigit():
            key = int(key)
        if isinstance(key, (int, np.integer)) and int(key) in names:
            out.append(int(key))
        elif isinstance(key, str) and key.lower() in by_name:
            out.append(by_name[key.lower()])
        else:
            known = ", ".join(list(names.values())[:20]) + (" ..." if len(names) > 20 else "")
            raise InvalidParameterError(f"unknown class {c!r}: this model knows {known}")
    return sorted(set(out))


class Detector(Stage[dict[str, Any], dict[str, np.ndarray]]):
    """Loads YOLO once (``setup``); ``detect`` runs a list of BGR frames in batches."""

    name = "detect"

    def __init__(self, config: DetectorConfig) -> None:
        self.config = config
        self.model: Any = None
        self.device = "cpu"
        self.class_ids: list[int] | None = None
        self.calls = 0  # model calls (batches) so far

    def setup(self) -> None:
        self.device = setup_torch_worker(self.config.cpus, self.config.device)
        self.model = load_yolo(self.config.weights, self.config.setting)
        self.class_ids = resolve_classes(self.config.classes, self.names)

    @property
    def resources(self) -> Resources:
        return Resources(self.config.cpus, self.config.gpus)

    @property
    def names(self) -> dict[int, str]:
        return {int(k): str(v) for k, v in self.model.names.items()}

    @property
    def half(self) -> bool:
        return bool(self.config.half and self.device.startswith("cuda"))

    def detect(self, frames: Sequence[np.ndarray], conf: float | None = None,
               classes: Sequence[int] | None = None) -> list[Detections]:
        """Detections per frame (BGR uint8 HxWx3), ``config.batch_size`` frames per model call."""
        if self.model is None:
            self.setup()
        out: list[Detections] = []
        step = max(1, self.config.batch_size)
        for i in range(0, len(frames), step):
            chunk = [np.ascontiguousarray(f) for f in frames[i:i + step]]
            results = self.model.predict(chunk, conf=self.config.conf, iou=self.config.iou,
                                         classes=self.class_ids, imgsz=self.config.imgsz,
                                         max_det=self.config.max_det, device=self.device,
                                         half=self.half, verbose=False)
            self.calls += 1
            out.extend(Detections.from_ultralytics(r).filter(conf, classes) for r in results)
        return out

    def process(self, batch: dict[str, Any]) -> Iterator[dict[str, np.ndarray]]:
        """Ray Data batch of frames (``frame``, ``frame_index``, ``video_id``, ``time_s``) ->
        one row per detection (``DETECTION_COLUMNS``)."""
        frames = batch["frame"]
        found = self.detect([frames[i] for i in range(len(frames))])
        counts = [len(d) for d in found]
        cols = {key: np.repeat(np.asarray(batch[key]), counts)
                for key in ("video_id", "frame_index", "time_s")}
        merged = Detections.concat(found).columns()
        yield {c: (cols[c] if c in cols else merged[c]) for c in DETECTION_COLUMNS}

