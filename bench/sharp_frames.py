"""sharp-frames 0.4.0, the single-process Laplacian frame picker a user would otherwise run,
installed into its own virtualenv and run on the same videos as framesift (bench/golden.py).

It needs Debian's ``ffmpeg`` and ``ffprobe`` on PATH (``apt-get install ffmpeg``); without them,
or without the package registry, ``SharpFrames.available()`` says why and the bench skips it.

    python bench/sharp_frames.py VIDEO [--top-k 5] [--fps 10]   # one run, prints JSON
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.4.0"
DEFAULT_VENV = Path(os.environ.get("FRAMESIFT_BENCH_CACHE", Path.home() / ".cache" / "framesift-bench")) \
    / f"sharp-frames-{VERSION}"


@dataclass
class SharpFramesRun:
    wall_s: float
    picks: list[int]  # source frame indices (extraction index mapped back through the fps)
    fps: float


class SharpFrames:
    """The tool in its own virtualenv (created on first use)."""

    def __init__(self, venv: Path = DEFAULT_VENV, python: str = sys.executable) -> None:
        self.venv = venv
        self.python = python
        self.exe = venv / "bin" / "sharp-frames"

    def available(self) -> str | None:
        """None when it can run; otherwise why not."""
        missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
        if missing:
            return (f"sharp-frames needs {' and '.join(missing)} on PATH (Debian: apt-get install "
                    "ffmpeg); skipped")
        if self.exe.exists():
            return None
        try:
            subprocess.run([self.python, "-m", "venv", str(self.venv)], check=True,
                           capture_output=True, timeout=300)
            subprocess.run([str(self.venv / "bin" / "pip"), "install", "--quiet",
                            f"sharp-frames=={VERSION}"], check=True, capture_output=True,
                           timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            shutil.rmtree(self.venv, ignore_errors=True)
            detail = getattr(exc, "stderr", b"") or b""
            return (f"could not install sharp-frames=={VERSION} into {self.venv}: "
                    f"{type(exc).__name__} {detail.decode(errors='replace')[-300:]}; skipped")
        return None

    def run(self, video: str, *, top_k: int, fps: float, source_fps: float, frame_count: int,
            min_gap_s: float = 0.5) -> SharpFramesRun:
        """Pick ``top_k`` frames sampled at ``fps`` (its best-n method, at least ``min_gap_s``
        apart), timing the whole command as a user would see it."""
        with tempfile.TemporaryDirectory(prefix="sharp-frames-") as out:
            cmd = [str(self.exe), video, out, "--force-overwrite", "--fps", f"{fps:g}",
                   "--num-frames", str(top_k), "--selection-method", "best-n",
                   "--min-buffer", str(max(1, round(min_gap_s * fps)))]
            t = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, timeout=1800,
                           env={**os.environ, "PYTHONUNBUFFERED": "1"})
            wall = time.perf_counter() - t
            meta = json.loads((Path(out) / "selected_metadata.json").read_text())
        picks = [min(frame_count - 1, round(item["original_index"] * source_fps / fps))
                 for item in meta["selected_items"]]
        return SharpFramesRun(round(wall, 3), picks, fps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--fps", type=float, default=10.0)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from actors.video import probe

    tool = SharpFrames()
    why = tool.available()
    if why:
        print(json.dumps({"skipped": why}))
        return
    info = probe(args.video)
    run = tool.run(args.video, top_k=args.top_k, fps=args.fps, source_fps=info.avg_fps,
                   frame_count=info.frame_count)
    print(json.dumps(run.__dict__))


if __name__ == "__main__":
    main()
