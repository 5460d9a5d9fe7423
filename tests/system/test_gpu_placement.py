"""CUDA placement: model replicas and video-job actors asking for GPUs run on them, in fp16.

Marked ``gpu``: skipped where CUDA is absent (CI); run on a machine with a GPU
(``FRAMESIFT_REQUIRE_GPU=1 make test-gpu``). The session's private Ray detects the GPU itself.
"""

from __future__ import annotations

import socket

import cv2
import numpy as np
import pytest

from model_fixtures import make_compact_pth, make_yolo_pt  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_weights(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu-models")
    return {"yolo": make_yolo_pt(root), "compact": make_compact_pth(root, scale=2)}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_model_replicas_with_num_gpus_run_on_cuda_in_fp16(ray_cluster, gpu_weights):
    import ray
    from ray import serve

    from serve.model_deployments import bind_models
    from serve.settings import ServiceSettings

    assert ray.cluster_resources().get("GPU", 0) >= 1, "Ray did not detect the GPU"
    settings = ServiceSettings(yolo_weights=str(gpu_weights["yolo"]), yolo_imgsz=160,
                               upscaler_weights=str(gpu_weights["compact"]),
                               detector_num_gpus=0.5, upscaler_num_gpus=0.5,
                               detector_num_cpus=0.5, upscaler_num_cpus=0.5)
    models = bind_models(settings)
    serve.start(http_options={"host": "127.0.0.1", "port": _free_port()})
    try:
        detector = serve.run(models["detector"], name="gpu-detector", route_prefix=None)
        upscaler = serve.run(models["upscaler"], name="gpu-upscaler", route_prefix=None)
        info = detector.info.remote().result()
        assert info["device"].startswith("cuda") and info["half"] is True, info
        image = cv2.imencode(".png", np.full((96, 128, 3), 127, np.uint8))[1].tobytes()
        found = detector.detect.remote(image).result()
        assert (found["width"], found["height"]) == (128, 96) and "detections" in found
        up = upscaler.info.remote().result()
        assert up["device"].startswith("cuda") and up["dtype"] == "torch.float16", up
        out = upscaler.upscale.remote(image, None, "png").result()
        assert (out["width"], out["height"]) == (256, 192)
    finally:
        serve.shutdown()


def test_video_jobs_on_gpu_actors_keep_every_frame(ray_cluster, gpu_weights, videos, tmp_path):
    from actors.detector import DetectorConfig
    from actors.upscaler import UpscalerConfig
    from actors.video import probe
    from jobs.video.detect import detect_video
    from jobs.video.upscale import upscale_video

    clip, _ = videos.get(seconds=2, size=(96, 64), seed=43, gop=20)
    det = detect_video(str(clip), str(tmp_path / "det"),
                       DetectorConfig(weights=str(gpu_weights["yolo"]), conf=0.0005, imgsz=128),
                       workers=1, chunk_frames=32, num_gpus=1)
    assert det.frames_processed == det.frames_total == probe(str(clip)).frame_count
    up = upscale_video(str(clip), str(tmp_path / "up.mp4"),
                       UpscalerConfig(weights=str(gpu_weights["compact"]), tile=0),
                       workers=1, chunk_frames=32, num_gpus=1)
    out = probe(up.output)
    assert out.frame_count == det.frames_total and (out.width, out.height) == (192, 128)
