"""Video upscale: model-only fps vs pipeline fps.

* ``model_only_fps``: frames already decoded, the Upscaler alone, warm, in this process.
* ``pipeline_warm_fps``: the per-chunk pipeline of an upscale actor (decode -> model -> encode
  on a background thread), warm, in this process: what a long video sees per worker.
* ``job_cold_fps``: the whole ``upscale_video`` job on one worker (Ray actor start-up and
  model load, segments, concat with audio) on the same video: what a short video sees.

Random-weight Real-ESRGAN Compact (realesr-general-x4v3 layout: 64 features, 32 convs, x4) on a
small generated video. The target (pipeline >= 0.8x model-only) is for one GPU; on CPU the
decoder and encoder compete with the model for the same cores: report only.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _service import emit  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="sample video length")
    parser.add_argument("--size", default="160x90", help="input WxH")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args()
    size = tuple(int(x) for x in args.size.split("x"))
    from model_fixtures import make_compact_pth

    from actors.frames import SegmentConfig, SegmentUpscaler
    from actors.records import VideoChunk
    from actors.synthetic import make_sample_video
    from actors.upscaler import Upscaler, UpscalerConfig
    from actors.video import probe
    from actors.video_decode import read_frames
    from jobs.runtime import ensure_ray
    from jobs.video.upscale import upscale_video

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-up-"))
    weights = make_compact_pth(tmp, scale=4, num_feat=64, num_conv=32)
    video = tmp / "in.mp4"
    make_sample_video(video, seconds=args.seconds, size=size, fps=30, seed=3)
    info = probe(str(video))
    n = info.frame_count
    cfg = UpscalerConfig(weights=str(weights), tile=0, cpus=2.0, device=args.device)
    frames = list(read_frames(str(video), list(range(n)), info.index).values())

    up = Upscaler(cfg)
    up.setup()
    up.upscale(frames[0])
    t0 = time.perf_counter()
    for frame in frames:
        up.upscale(frame)
    model_fps = n / (time.perf_counter() - t0)
    device = up.device
    del up

    segment = SegmentUpscaler(SegmentConfig(cfg, str(tmp / "segments-warm"), cpus=cfg.cpus))
    segment.setup()
    (tmp / "segments-warm").mkdir()
    chunk = VideoChunk.split("bench", info, n)[0]
    segment.encode_chunk(chunk)  # warm-up
    t0 = time.perf_counter()
    _, written, warm_model_s = segment.encode_chunk(chunk)
    warm_s = time.perf_counter() - t0
    del segment

    ensure_ray(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="fsray-bench-", dir="/tmp"))
    res = upscale_video(str(video), str(tmp / "out.mp4"), cfg, workers=1, chunk_frames=n,
                        num_gpus=0 if device == "cpu" else 1)
    emit({"device": device, "model": "Compact 64nf 32nc x4 (random weights)",
          "input": f"{size[0]}x{size[1]}", "output": f"{res.width}x{res.height}",
          "frames": n, "frames_out": res.frames,
          "model_only_fps": round(model_fps, 2),
          "pipeline_warm_fps": round(written / warm_s, 2),
          "pipeline_warm_over_model_only": round(written / warm_s / model_fps, 2),
          "pipeline_warm_model_share": round(warm_model_s / warm_s, 2),
          "job_cold_fps": round(n / res.wall_s, 2),
          "job_cold_over_model_only": round(n / res.wall_s / model_fps, 2),
          "job_cold_wall_s": res.wall_s, "job_cold_model_s": res.model_s,
          "job_cold_timings": res.timings,
          "target_pipeline_ge_0.8x_model_only": "GPU only" if device == "cpu" else
          written / warm_s / model_fps >= 0.8}, args.out)


if __name__ == "__main__":
    main()
