"""``framesift annotate``: draw detections (boxes and labels) onto a video with ffmpeg-python
(drawbox/drawtext), optionally as a compilation of only the frames that have detections.

The ffmpeg binary is the one on PATH, else the one imageio-ffmpeg ships. The filter graph is
handed to ffmpeg as a file (``-/filter_complex``), so thousands of boxes never hit the
command-line length limit.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from actors.errors import InvalidParameterError
from actors.video import probe

_COLORS = ("red", "lime", "deepskyblue", "yellow", "magenta", "orange", "cyan", "white")
_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
          "/usr/share/fonts/TTF/DejaVuSans.ttf", "/Library/Fonts/Arial.ttf")


def ffmpeg_binary() -> str:
    """ffmpeg on PATH, else imageio-ffmpeg's bundled binary."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class AnnotateResult:
    output: str
    frames_in: int
    frames_out: int
    boxes_drawn: int
    compilation: bool

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _runs(frames: list[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers -> inclusive runs [(a, b), ...]."""
    runs: list[tuple[int, int]] = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "\\:'%,;[]=" else c for c in text)


def annotate_video(video: str, detections: str, output: str, *, min_confidence: float = 0.0,
                   compilation: bool = False, max_per_frame: int = 20,
                   thickness: int = 2) -> AnnotateResult:
    """Write ``output``: ``video`` with the boxes of ``detections`` (Parquet from detect-video).
    ``compilation`` keeps only the frames with detections (and drops audio)."""
    import ffmpeg

    info = probe(video)
    table = pq.read_table(detections).to_pylist()
    rows = [r for r in table if r["confidence"] >= min_confidence
            and 0 <= r["frame_index"] < info.frame_count]
    if compilation and not rows:
        raise InvalidParameterError(f"{detections}: no detections at or above confidence "
                                    f"{min_confidence}: nothing to compile")
    rows.sort(key=lambda r: (r["frame_index"], -r["confidence"]))
    per_frame: dict[int, int] = {}
    font = next((f for f in _FONTS if Path(f).is_file()), None)
    src = ffmpeg.input(video)
    v = src.video
    drawn = 0
    for r in rows:
        n = int(r["frame_index"])
        if per_frame.get(n, 0) >= max_per_frame:
            continue
        per_frame[n] = per_frame.get(n, 0) + 1
        color = _COLORS[int(r["class_id"]) % len(_COLORS)]
        x, y = int(r["x1"]), int(r["y1"])
        w, h = max(1, int(r["x2"] - r["x1"])), max(1, int(r["y2"] - r["y1"]))
        enable = f"eq(n,{n})"
        v = v.drawbox(x, y, w, h, color=color, thickness=thickness, enable=enable)
        label = _escape(f"{r['class_name']} {r['confidence']:.2f}")
        text_args: dict[str, Any] = dict(text=label, x=x + 2, y=max(0, y - 14), fontsize=12,
                                         fontcolor="white", box=1, boxcolor=f"{color}@0.6",
                                         enable=enable)
        if font:
            text_args["fontfile"] = font
        v = v.drawtext(**text_args)
        drawn += 1
    keep = sorted(per_frame)
    if compilation:
        expr = "+".join(f"between(n,{a},{b})" for a, b in _runs(keep))
        v = v.filter("select", expr).filter("setpts", "N/FRAME_RATE/TB")
        streams = [v]
        out_args: dict[str, Any] = {"an": None}
    else:
        audio = [s for s in probe_audio(video)]
        streams = [v, src.audio] if audio else [v]
        out_args = {"c:a": "copy"} if audio else {}
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    out = ffmpeg.output(*streams, output, vcodec="libx264", pix_fmt="yuv420p", crf=20,
                        preset="veryfast", fps_mode="passthrough", **out_args)
    args = ffmpeg.compile(out, cmd=ffmpeg_binary(), overwrite_output=True)
    with tempfile.NamedTemporaryFile("w", suffix=".ffgraph", delete=False) as fh:
        i = args.index("-filter_complex")
        fh.write(args[i + 1])
        graph = fh.name
    args[i:i + 2] = ["-/filter_complex", graph]
    try:
        proc = subprocess.run(args[:1] + ["-hide_banner", "-loglevel", "error"] + args[1:],
                              capture_output=True, text=True)
    finally:
        Path(graph).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    frames_out = probe(output).frame_count
    return AnnotateResult(str(Path(output).resolve()), info.frame_count, frames_out, drawn,
                          compilation)


def probe_audio(video: str) -> list[int]:
    import av

    with av.open(video) as c:
        return [s.index for s in c.streams.audio]
