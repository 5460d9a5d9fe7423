"""CLI commands of the model video jobs: ``detect-video``, ``upscale-video``, ``annotate``.

Registered on the ``framesift`` app by ``jobs/cli.py``; each prints the worker plan (why this
many workers) before running, and the result as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from actors.errors import FramesiftError

# Rough per-frame model seconds on one worker when no --frame-ms is given (planner input).
_DETECT_FRAME_S = {"GPU": 0.010, "CPU": 0.10}  # YOLOv8n at 640 px
_UPSCALE_S_PER_MPX = {"GPU": 0.5, "CPU": 30.0}  # RealESRGAN_x4plus per input megapixel


def _plan(kind: str, frames: int, frame_ms: float | None, mpx: float, settings, chunks: int):  # noqa: ANN001, ANN202
    from jobs.cli import err
    from jobs.gpu_planner import WorkerCosts, cluster_free_resources, plan_workers

    free_gpus, free_cpus = cluster_free_resources()
    resource = "GPU" if free_gpus > 0 else "CPU"
    if frame_ms is not None:
        frame_s = frame_ms / 1000
    elif kind == "detect":
        frame_s = _DETECT_FRAME_S[resource] * (settings.yolo_imgsz / 640) ** 2
    else:
        frame_s = _UPSCALE_S_PER_MPX[resource] * mpx
    plan = plan_workers(frames, WorkerCosts(frame_s, container_s=0.0,
                                            model_load_s=settings.worker_startup_s, download_s=0.0),
                        free_gpus=free_gpus, free_cpus=free_cpus,
                        target_speedup=settings.target_speedup, max_chunks=chunks,
                        workers=settings.workers)
    err.print(plan.describe(), highlight=False, soft_wrap=True, markup=False)
    num_gpus = settings.video_num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if free_gpus > 0 else 0.0
    return plan, num_gpus


def register_video_commands(app: typer.Typer) -> None:
    from jobs.cli import _settings, fail, out

    @app.command("detect-video")
    def detect_video_command(
        video: Annotated[Path, typer.Argument(help="video file")],
        out_dir: Annotated[Optional[Path], typer.Option("--out", help="result folder [output/<name>-detections]")] = None,
        weights: Annotated[Optional[str], typer.Option(help="YOLO .pt/.yaml [FRAMESIFT_YOLO_WEIGHTS]")] = None,
        every: Annotated[int, typer.Option(help="detect every Nth frame")] = 1,
        workers: Annotated[Optional[str], typer.Option(help="'auto' (planner) or a count [auto]")] = None,
        batch_size: Annotated[Optional[int], typer.Option(help="frames per model call [16]")] = None,
        conf: Annotated[Optional[float], typer.Option(help="confidence floor [0.25]")] = None,
        iou: Annotated[Optional[float], typer.Option(help="NMS IoU [0.45]")] = None,
        imgsz: Annotated[Optional[int], typer.Option(help="inference size [640]")] = None,
        classes: Annotated[Optional[str], typer.Option(help="comma-separated class names/ids")] = None,
        num_gpus: Annotated[Optional[float], typer.Option(help="GPUs per actor [1 with GPUs, else 0]")] = None,
        frame_ms: Annotated[Optional[float], typer.Option(help="planner: model ms per frame")] = None,
        chunk_frames: Annotated[int, typer.Option(help="frames decoded per chunk")] = 64,
        address: Annotated[Optional[str], typer.Option(help="Ray address; default: private local Ray")] = None,
        num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the private local Ray")] = None,
    ) -> None:
        """Detect objects in every (Nth) frame on an actor pool: detections.parquet + summary.json."""
        from actors.detector import DetectorConfig
        from actors.video import probe
        from jobs.detect_video import detect_video
        from jobs.runtime import ensure_ray

        s = _settings(yolo_weights=weights, workers=workers, detect_batch_size=batch_size,
                      yolo_conf=conf, yolo_iou=iou, yolo_imgsz=imgsz, video_num_gpus=num_gpus,
                      ray_address=address, num_cpus=num_cpus)
        if every < 1:
            fail("--every must be >= 1")
        try:
            info = probe(str(video))
            from actors.models import YOLO_SUFFIXES, resolve_weights

            resolve_weights(s.yolo_weights, "FRAMESIFT_YOLO_WEIGHTS (--weights)",
                            "a YOLO .pt (or .yaml) file", YOLO_SUFFIXES)
            ensure_ray(s.ray_address, s.num_cpus)
            frames = len(range(0, info.frame_count, every))
            chunks = -(-info.frame_count // max(1, chunk_frames))
            plan, gpus = _plan("detect", frames, frame_ms, 0.0, s, chunks)
            cfg = DetectorConfig(weights=s.yolo_weights, conf=s.yolo_conf, iou=s.yolo_iou,
                                 classes=tuple(c.strip() for c in classes.split(",")) if classes else None,
                                 imgsz=s.yolo_imgsz, batch_size=s.detect_batch_size,
                                 device=s.model_device, half=s.model_half, gpus=gpus)
            target = out_dir or Path(s.out_dir) / f"{video.stem}-detections"
            result = detect_video(str(video), str(target), cfg, stride=every,
                                  workers=plan.workers, chunk_frames=chunk_frames, num_gpus=gpus)
        except FramesiftError as exc:
            fail(str(exc))
            return
        out.print_json(json.dumps({**result.to_dict(), "plan": plan.reason}))

    @app.command("upscale-video")
    def upscale_video_command(
        video: Annotated[Path, typer.Argument(help="video file")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="output video [<name>-upscaled.mp4 in --out]")] = None,
        weights: Annotated[Optional[str], typer.Option(help="Real-ESRGAN .pth [FRAMESIFT_UPSCALER_WEIGHTS]")] = None,
        scale: Annotated[Optional[float], typer.Option(help="output scale [the model's]")] = None,
        tile: Annotated[Optional[int], typer.Option(help="tile px, 0 = none [256]")] = None,
        workers: Annotated[Optional[str], typer.Option(help="'auto' (planner) or a count [auto]")] = None,
        num_gpus: Annotated[Optional[float], typer.Option(help="GPUs per actor [1 with GPUs, else 0]")] = None,
        frame_ms: Annotated[Optional[float], typer.Option(help="planner: model ms per frame")] = None,
        chunk_frames: Annotated[int, typer.Option(help="frames per encoded segment")] = 64,
        crf: Annotated[int, typer.Option(help="x264 CRF of the output")] = 18,
        address: Annotated[Optional[str], typer.Option(help="Ray address; default: private local Ray")] = None,
        num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the private local Ray")] = None,
    ) -> None:
        """Upscale every frame on an Upscaler actor pool; same frame count, timing and audio."""
        from actors.models import UPSCALER_SUFFIXES, resolve_weights
        from actors.upscaler import UpscalerConfig
        from actors.video import probe
        from jobs.runtime import ensure_ray
        from jobs.upscale_video import upscale_video

        s = _settings(upscaler_weights=weights, upscale_tile=tile, workers=workers,
                      video_num_gpus=num_gpus, ray_address=address, num_cpus=num_cpus)
        try:
            info = probe(str(video))
            resolve_weights(s.upscaler_weights, "FRAMESIFT_UPSCALER_WEIGHTS (--weights)",
                            "a Real-ESRGAN .pth file", UPSCALER_SUFFIXES)
            ensure_ray(s.ray_address, s.num_cpus)
            chunks = -(-info.frame_count // max(1, chunk_frames))
            plan, gpus = _plan("upscale", info.frame_count, frame_ms,
                               info.width * info.height / 1e6, s, chunks)
            cfg = UpscalerConfig(weights=s.upscaler_weights, tile=s.upscale_tile,
                                 tile_pad=s.upscale_tile_pad, pre_pad=s.upscale_pre_pad,
                                 outscale=scale, device=s.model_device, half=s.model_half,
                                 gpus=gpus)
            target = output or Path(s.out_dir) / f"{video.stem}-upscaled.mp4"
            result = upscale_video(str(video), str(target), cfg, workers=plan.workers,
                                   chunk_frames=chunk_frames, num_gpus=gpus, crf=crf)
        except FramesiftError as exc:
            fail(str(exc))
            return
        out.print_json(json.dumps({**result.to_dict(), "plan": plan.reason}))

    @app.command("annotate")
    def annotate_command(
        video: Annotated[Path, typer.Argument(help="video file")],
        detections: Annotated[Path, typer.Option(help="detections.parquet from detect-video")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="output [<name>-annotated.mp4 beside the detections]")] = None,
        min_confidence: Annotated[float, typer.Option(help="draw boxes at or above this")] = 0.0,
        compilation: Annotated[bool, typer.Option(help="only the frames with detections (no audio)")] = False,
    ) -> None:
        """Draw the detections (boxes, labels) onto the video with FFmpeg."""
        from jobs.annotate import annotate_video

        if not detections.is_file():
            fail(f"{detections}: no such detections file (run framesift detect-video first)")
        target = output or detections.parent / f"{video.stem}-annotated.mp4"
        try:
            result = annotate_video(str(video), str(detections), str(target),
                                    min_confidence=min_confidence, compilation=compilation)
        except FramesiftError as exc:
            fail(str(exc))
            return
        except RuntimeError as exc:
            fail(str(exc), 1)
            return
        out.print_json(json.dumps(result.to_dict()))
