"""The model video jobs: ``detect-video``, ``upscale-video``, ``annotate``.

Each prints the worker plan (why this many workers) before running, and the result as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from jobs.cli.common import (AddressOption, NumCpusOption, WorkersOption, err, fail,
                              load_settings, out, user_errors)

if TYPE_CHECKING:
    from actors.records import VideoInfo
    from jobs.settings import Settings
    from jobs.video.worker_plan import VideoJobPlan

NumGpusOption = Annotated[Optional[float], typer.Option(
    "--num-gpus", help="GPUs per actor [1 with GPUs, else 0]")]
FrameMsOption = Annotated[Optional[float], typer.Option(
    "--frame-ms", help="planner: model ms per frame")]


def _start_and_plan(kind: str, video: Path, frames_of: "Any", frame_ms: float | None,
                    settings: "Settings", chunk_frames: int) -> "tuple[VideoInfo, VideoJobPlan]":
    """Probe the video, start Ray, plan the workers and print the plan."""
    from actors.video import probe
    from jobs.runtime import ensure_ray, free_resources
    from jobs.video.worker_plan import plan_video_job

    info = probe(str(video))
    ensure_ray(settings.ray_address, settings.num_cpus)
    free_gpus, free_cpus = free_resources()
    plan = plan_video_job(kind, frames_of(info), frame_ms=frame_ms,
                          megapixels=info.width * info.height / 1e6, settings=settings,
                          max_chunks=-(-info.frame_count // max(1, chunk_frames)),
                          free_gpus=free_gpus, free_cpus=free_cpus)
    err.print(plan.workers.describe(), highlight=False, soft_wrap=True, markup=False)
    return info, plan


def _print_result(result: Any, plan: "VideoJobPlan | None" = None) -> None:
    data = result.to_dict()
    if plan is not None:
        data["plan"] = plan.workers.reason
    out.print_json(json.dumps(data))


def detect_video(
    video: Annotated[Path, typer.Argument(help="video file")],
    out_dir: Annotated[Optional[Path], typer.Option(
        "--out", help="result folder [output/<name>-detections]")] = None,
    weights: Annotated[Optional[str], typer.Option(help="YOLO .pt/.yaml [FRAMESIFT_YOLO_WEIGHTS]")] = None,
    every: Annotated[int, typer.Option(help="detect every Nth frame")] = 1,
    workers: WorkersOption = None,
    batch_size: Annotated[Optional[int], typer.Option(help="frames per model call [16]")] = None,
    conf: Annotated[Optional[float], typer.Option(help="confidence floor [0.25]")] = None,
    iou: Annotated[Optional[float], typer.Option(help="NMS IoU [0.45]")] = None,
    imgsz: Annotated[Optional[int], typer.Option(help="inference size [640]")] = None,
    classes: Annotated[Optional[str], typer.Option(help="comma-separated class names/ids")] = None,
    num_gpus: NumGpusOption = None,
    frame_ms: FrameMsOption = None,
    chunk_frames: Annotated[int, typer.Option(help="frames decoded per chunk")] = 64,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
) -> None:
    """Detect objects in every (Nth) frame on an actor pool: detections.parquet + summary.json."""
    from actors.detector import DetectorConfig
    from actors.weights import YOLO_SUFFIXES, require_extra, resolve_weights
    from jobs.video.detect import detect_video as run

    s = load_settings(yolo_weights=weights, workers=workers, detect_batch_size=batch_size,
                      yolo_conf=conf, yolo_iou=iou, yolo_imgsz=imgsz, video_num_gpus=num_gpus,
                      ray_address=address, num_cpus=num_cpus)
    if every < 1:
        fail("--every must be >= 1")
    with user_errors():
        require_extra("detector")
        resolve_weights(s.yolo_weights, "FRAMESIFT_YOLO_WEIGHTS (--weights)",
                        "a YOLO .pt (or .yaml) file", YOLO_SUFFIXES)
        _, plan = _start_and_plan("detect", video, lambda i: len(range(0, i.frame_count, every)),
                                  frame_ms, s, chunk_frames)
        cfg = DetectorConfig(weights=s.yolo_weights, conf=s.yolo_conf, iou=s.yolo_iou,
                             classes=tuple(c.strip() for c in classes.split(",")) if classes else None,
                             imgsz=s.yolo_imgsz, batch_size=s.detect_batch_size,
                             device=s.model_device, half=s.model_half, gpus=plan.num_gpus)
        target = out_dir or Path(s.out_dir) / f"{video.stem}-detections"
        result = run(str(video), str(target), cfg, stride=every, workers=plan.workers.workers,
                     chunk_frames=chunk_frames, num_gpus=plan.num_gpus)
    _print_result(result, plan)


def upscale_video(
    video: Annotated[Path, typer.Argument(help="video file")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="output video [<name>-upscaled.mp4 in --out]")] = None,
    weights: Annotated[Optional[str], typer.Option(
        help="Real-ESRGAN .pth [FRAMESIFT_UPSCALER_WEIGHTS]")] = None,
    scale: Annotated[Optional[float], typer.Option(help="output scale [the model's]")] = None,
    tile: Annotated[Optional[int], typer.Option(help="tile px, 0 = none [256]")] = None,
    workers: WorkersOption = None,
    num_gpus: NumGpusOption = None,
    frame_ms: FrameMsOption = None,
    chunk_frames: Annotated[int, typer.Option(help="frames per encoded segment")] = 64,
    crf: Annotated[int, typer.Option(help="x264 CRF of the output")] = 18,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
) -> None:
    """Upscale every frame on an Upscaler actor pool; same frame count, timing and audio."""
    from actors.upscaler import UpscalerConfig
    from actors.weights import UPSCALER_SUFFIXES, require_extra, resolve_weights
    from jobs.video.upscale import upscale_video as run

    s = load_settings(upscaler_weights=weights, upscale_tile=tile, workers=workers,
                      video_num_gpus=num_gpus, ray_address=address, num_cpus=num_cpus)
    with user_errors():
        require_extra("upscaler")
        resolve_weights(s.upscaler_weights, "FRAMESIFT_UPSCALER_WEIGHTS (--weights)",
                        "a Real-ESRGAN .pth file", UPSCALER_SUFFIXES)
        _, plan = _start_and_plan("upscale", video, lambda i: i.frame_count, frame_ms, s,
                                  chunk_frames)
        cfg = UpscalerConfig(weights=s.upscaler_weights, tile=s.upscale_tile,
                             tile_pad=s.upscale_tile_pad, pre_pad=s.upscale_pre_pad,
                             outscale=scale, device=s.model_device, half=s.model_half,
                             gpus=plan.num_gpus)
        target = output or Path(s.out_dir) / f"{video.stem}-upscaled.mp4"
        result = run(str(video), str(target), cfg, workers=plan.workers.workers,
                     chunk_frames=chunk_frames, num_gpus=plan.num_gpus, crf=crf)
    _print_result(result, plan)


def annotate(
    video: Annotated[Path, typer.Argument(help="video file")],
    detections: Annotated[Path, typer.Option(help="detections.parquet from detect-video")],
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="output [<name>-annotated.mp4 beside the detections]")] = None,
    min_confidence: Annotated[float, typer.Option(help="draw boxes at or above this")] = 0.0,
    compilation: Annotated[bool, typer.Option(help="only the frames with detections (no audio)")] = False,
) -> None:
    """Draw the detections (boxes, labels) onto the video with FFmpeg."""
    from jobs.video.annotate import annotate_video

    if not detections.is_file():
        fail(f"{detections}: no such detections file (run framesift detect-video first)")
    target = output or detections.parent / f"{video.stem}-annotated.mp4"
    with user_errors():
        try:
            result = annotate_video(str(video), str(detections), str(target),
                                    min_confidence=min_confidence, compilation=compilation)
        except RuntimeError as exc:  # ffmpeg itself failed: a job failure, not bad input
            fail(str(exc), 1)
    _print_result(result)
