"""Video upscale: model-only fps (frames already decoded, in-process) vs the whole pipeline
fps (decode -> Upscaler actor -> encode segments -> concat with audio) on one worker.

Random-weight Real-ESRGAN Compact (realesr-general-x4v3 layout: 64 features, 32 convs, x4) on a
small generated video. Prints one JSON object. On CPU, report only (the 0.8x target is for GPU).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main(seconds: float = 2.0, size: tuple[int, int] = (160, 90)) -> None:
    from model_fixtures import make_compact_pth

    from actors.synthetic import make_sample_video
    from actors.upscaler import Upscaler, UpscalerConfig
    from actors.video import probe, read_frames
    from jobs.runtime import ensure_ray
    from jobs.upscale_video import upscale_video

    tmp = Path(tempfile.mkdtemp(prefix="fs-bench-up-"))
    weights = make_compact_pth(tmp, scale=4, num_feat=64, num_conv=32)
    video = tmp / "in.mp4"
    make_sample_video(video, seconds=seconds, size=size, fps=30, seed=3)
    info = probe(str(video))
    cfg = UpscalerConfig(weights=str(weights), tile=0, cpus=2.0)
    frames = read_frames(str(video), list(range(info.frame_count)), info.index)
    up = Upscaler(cfg)
    up.setup()
    up.upscale(frames[0])
    t0 = time.perf_counter()
    for i in range(info.frame_count):
        up.upscale(frames[i])
    model_fps = info.frame_count / (time.perf_counter() - t0)
    del up
    ensure_ray(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="fsray-bench-", dir="/tmp"))
    t0 = time.perf_counter()
    res = upscale_video(str(video), str(tmp / "out.mp4"), cfg, workers=1,
                        chunk_frames=info.frame_count)
    pipeline_fps = info.frame_count / (time.perf_counter() - t0)
    print(json.dumps({"device": "cpu", "model": "Compact 64nf 32nc x4 (random)",
                      "input": f"{size[0]}x{size[1]}", "frames": info.frame_count,
                      "model_only_fps": round(model_fps, 2), "pipeline_fps": round(pipeline_fps, 2),
                      "pipeline_over_model": round(pipeline_fps / model_fps, 2),
                      "pipeline_wall_s": res.wall_s, "pipeline_model_s": res.model_s,
                      "output": f"{res.width}x{res.height}", "frames_out": res.frames,
                      "note": "pipeline includes actor start-up and model load (one cold run)"},
                     indent=2))


if __name__ == "__main__":
    main()
