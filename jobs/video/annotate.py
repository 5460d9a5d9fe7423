"""``framesift annotate``: draw detections (boxes and labels) onto a video with ffmpeg-python
(drawbox/drawtext), optionally as a compilation of only the frames that have detections.

The ffmpeg binary is the one on PATH, else the one imageio-ffmpeg ships. The graph has a fixed
number of named box slots (``drawbox@bK`` + ``drawtext@tK``, as many as the busiest frame needs);
a ``sendcmd`` script moves them frame by frame (frame times from our index, so B-frames and VFR
are exact). The graph's size and ffmpeg's per-frame work do not grow with the number of
detections: one filter pair per detection, enabled on its frame, made an 1,800-box video
overflow ffmpeg-python's graph recursion and cost ffmpeg every filter on every frame.
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
from actors.video_open import CONTAINER_OPTIONS, container_format, ffmpeg_input_url, open_container

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


OFFSCREEN = -10_000  # an unused slot is drawn here (outside the frame: nothing visible)


def _quote(text: str) -> str:
    """A sendcmd argument, taken literally: single-quoted (inside quotes nothing is special
    but the quote itself, written as ``'\\''``)."""
    return "'" + text.replace("'", "'\\''") + "'"


def _slot_commands(k: int, r: dict[str, Any] | None) -> list[str]:
    """sendcmd commands that show detection ``r`` in slot ``k`` (None: hide the slot)."""
    if r is None:
        return [f"drawbox@b{k} x {OFFSCREEN}", f"drawtext@t{k} x {OFFSCREEN}"]
    color = _COLORS[int(r["class_id"]) % len(_COLORS)]
    x, y = int(r["x1"]), int(r["y1"])
    w, h = max(1, int(r["x2"] - r["x1"])), max(1, int(r["y2"] - r["y1"]))
    label = f"{r['class_name']} {r['confidence']:.2f}"
    return [f"drawbox@b{k} x {x}", f"drawbox@b{k} y {y}", f"drawbox@b{k} w {w}",
            f"drawbox@b{k} h {h}", f"drawbox@b{k} color {color}",
            f"drawtext@t{k} text {_quote(label)}", f"drawtext@t{k} x {x + 2}",
            f"drawtext@t{k} y {max(0, y - 14)}", f"drawtext@t{k} boxcolor {color}@0.6"]


def box_script(boxes: dict[int, list[dict[str, Any]]], times: list[float], slots: int) -> str:
    """The sendcmd script: at each frame whose boxes differ from the previous frame's, set every
    slot (shown or hidden). A command fires once, at the first frame at or after its time; the
    time used is halfway from the previous frame, so float rounding never moves a box."""
    lines: list[str] = []
    previous: list[dict[str, Any]] = []
    for n in range(len(times)):
        current = boxes.get(n, [])
        if current == previous:
            continue
        start = times[n] - (times[n] - times[n - 1]) / 2 if n else 0.0
        cmds = [c for k in range(slots)
                for c in _slot_commands(k, current[k] if k < len(current) else None)]
        lines.append(f"{start:.6f} " + ", ".join(cmds) + ";")
        previous = current
    return "\n".join(lines) + "\n"


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
    boxes: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        per_frame = boxes.setdefault(int(r["frame_index"]), [])
        if len(per_frame) < max_per_frame:
            per_frame.append(r)
    drawn = sum(len(b) for b in boxes.values())
    slots = max((len(b) for b in boxes.values()), default=0)
    times = [info.index.time_s(i) for i in range(info.frame_count)]
    font = next((f for f in _FONTS if Path(f).is_file()), None)
    # the binary decodes the file PyAV just checked: same demuxer forced, same allow-list, and
    # the local file protocol only (it must not open what a playlist or a name could point to)
    src = ffmpeg.input(ffmpeg_input_url(video), f=container_format(video), **CONTAINER_OPTIONS)
    v = src.video
    with tempfile.TemporaryDirectory(prefix="framesift-annotate-") as work:
        script = Path(work) / "boxes.cmd"
        script.write_text(box_script(boxes, times, slots))
        if slots:
            v = v.filter("sendcmd", f=str(script))
        for k in range(slots):
            v = v.filter(f"drawbox@b{k}", x=OFFSCREEN, y=OFFSCREEN, w=1, h=1, color="red",
                         t=thickness)
            text_args: dict[str, Any] = dict(text="-", x=OFFSCREEN, y=OFFSCREEN, fontsize=12,
                                             fontcolor="white", box=1, boxcolor="red@0.6",
                                             expansion="none")
            if font:
                text_args["fontfile"] = font
            v = v.filter(f"drawtext@t{k}", **text_args)
        if compilation:
            expr = "+".join(f"between(n,{a},{b})" for a, b in _runs(sorted(boxes)))
            v = v.filter("select", expr).filter("setpts", "N/FRAME_RATE/TB")
            streams = [v]
            out_args: dict[str, Any] = {"an": None}
        else:
            audio = probe_audio(video)
            streams = [v, src.audio] if audio else [v]
            out_args = {"c:a": "copy"} if audio else {}
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        out = ffmpeg.output(*streams, output, vcodec="libx264", pix_fmt="yuv420p", crf=20,
                            preset="veryfast", fps_mode="passthrough", **out_args)
        args = ffmpeg.compile(out, cmd=ffmpeg_binary(), overwrite_output=True)
        proc = subprocess.run(args[:1] + ["-hide_banner", "-loglevel", "error"] + args[1:],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    frames_out = probe(output).frame_count
    return AnnotateResult(str(Path(output).resolve()), info.frame_count, frames_out, drawn,
                          compilation)


def probe_audio(video: str) -> list[int]:
    with open_container(video) as c:
        return [s.index for s in c.streams.audio]
