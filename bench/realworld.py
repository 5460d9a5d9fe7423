"""Real-world clips benchmark: prints one JSON object.

Over the real clips this machine has (``make realclips``: OpenCV's and imageio's sample videos,
plus the codec/container variants derived from them, see tests/realclips.py), or the video files
of ``--clips DIR``: per clip its container and codec (PyAV), the frames the container lists,
whether ``framesift golden`` opened it (and the error code when not), the frames it listed but
did not score (gaps), the share of still frames, its picks, and the wall time of the cold CLI
as a new user runs it (``framesift golden CLIP --out TMP --scan-id X``: a fresh process,
imports, run, store); beside it sharp-frames 0.4.0 on every frame (bench/sharp_frames.py:
whether it processed the clip, and its wall time; skipped with a message without Debian's
ffmpeg and ffprobe). Totals: clips opened by each, sums of wall times, framesift/sharp-frames.

The CLI's one-line error carries no code; for a clip it failed on, the code comes from running
the same job again in this process (``run_golden``, in process, not timed).

    python bench/realworld.py [--clips DIR] [--only NAME[,NAME]] [--no-sharp-frames] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # sharp_frames.py
sys.path.insert(0, str(ROOT / "tests"))  # realclips.py: the cache `make realclips` fills

import av  # noqa: E402

import realclips  # noqa: E402
from _service import emit  # noqa: E402

CLI_TIMEOUT_S = 900
NOT_CLIPS = {realclips.MANIFEST, ".lock"}


def clips_in(folder: Path) -> list[Path]:
    """Every file under ``folder`` that may be a clip (no manifests, locks or partial files),
    the folder's own files first, then its subfolders'."""
    found = [p for p in folder.rglob("*") if p.is_file() and p.name not in NOT_CLIPS
             and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (len(p.relative_to(folder).parts), str(p)))


def describe(path: Path) -> dict:
    """What PyAV says about the clip: container, codec, size, rate, the frames it lists."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return {"container": c.format.name, "codec": None, "pyav_error": "no video stream"}
            s = c.streams.video[0]
            rate = s.average_rate or s.guessed_rate
            duration = (float(s.duration * s.time_base) if s.duration and s.time_base
                        else (c.duration / 1e6 if c.duration else None))
            return {"container": c.format.name, "codec": s.codec_context.name,
                    "width": s.codec_context.width, "height": s.codec_context.height,
                    "fps": round(float(rate), 3) if rate else None,
                    "duration_s": round(duration, 3) if duration else None,
                    "frames_listed": s.frames or None}  # None: the container lists no count
    except Exception as exc:  # noqa: BLE001 - what PyAV says is data here
        return {"container": None, "codec": None, "pyav_error": f"{type(exc).__name__}: {exc}"}


def framesift_cmd() -> list[str]:
    """The console script a user runs (the one beside this interpreter), else the module."""
    exe = Path(sys.executable).parent / "framesift"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jobs.cli"]


def scan_id_for(path: Path) -> str:
    return "rw-" + re.sub(r"[^A-Za-z0-9_-]+", "-", path.name).strip("-")


def cold_cli(path: Path, out: Path, scan_id: str) -> dict:
    """``framesift golden CLIP --out OUT --scan-id ID`` in a fresh process, timed."""
    cmd = [*framesift_cmd(), "golden", str(path), "--out", str(out), "--scan-id", scan_id,
           "--no-progress"]
    t = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
                              cwd=out.parent)
    except subprocess.TimeoutExpired:
        return {"wall_s": round(time.perf_counter() - t, 2), "exit": None,
                "error": f"timed out after {CLI_TIMEOUT_S} s"}
    wall = time.perf_counter() - t
    lines = done.stderr.splitlines()
    executor = next((ln.split(":", 1)[1].split(":", 1)[0].strip() for ln in lines
                     if ln.startswith("executor:")), None)
    result = {"wall_s": round(wall, 2), "exit": done.returncode, "executor": executor}
    errors = [ln for ln in lines if ln.startswith("error:")]
    if done.returncode != 0:
        text = errors[-1][len("error:"):].strip() if errors else (lines[-1] if lines else "")
        result["error"] = text.replace(str(path) + ": ", "")
    return result


def read_result(out: Path, scan_id: str) -> dict:
    """From the stored result: frames, gaps, still share, picks."""
    import pyarrow.parquet as pq

    manifest = json.loads((out / scan_id / "manifest.json").read_text())
    table = pq.read_table(out / scan_id / "scores.parquet", columns=["frame_index", "still"])
    frame_count = manifest["video"]["frame_count"]
    rows = table.num_rows
    still = table.column("still").to_pylist()
    if "gaps" in manifest:
        gaps, source = len(manifest["gaps"]), "manifest"
    else:
        gaps, source = frame_count - rows, "frame_count - rows"
    return {"framesift_frame_count": frame_count, "scored_rows": rows, "gaps": gaps,
            "gaps_from": source, "frame_count_minus_rows": frame_count - rows,
            "still_share": round(sum(still) / rows, 4) if rows else None,
            "picks": [g["frame_index"] for g in manifest["golden_frames"]],
            "relaxed": manifest.get("selection", {}).get("relaxed"),
            "variable_fps": manifest["video"].get("variable_fps")}


def diagnose(path: Path, work: Path) -> tuple[str | None, str | None]:
    """The error code of the job on this clip: the same job run again here, in process."""
    try:
        from jobs.golden.job import VideoJob, run_golden
        from jobs.settings import Settings
        from jobs.stores.local import LocalStore

        params = Settings().golden_params()
        [result] = run_golden([VideoJob(str(path), "diagnose", None)], params,
                              LocalStore(work), distributed=False, threads=1)
    except Exception as exc:  # noqa: BLE001 - a crash is what we report
        code = getattr(exc, "code", None)
        return code or f"raised {type(exc).__name__}", str(exc)[:300]
    if result.ok:
        return None, "succeeded when run again in process"
    return result.error_code, None


def sharp_frames_run(tool, path: Path, info: dict, frame_count: int | None) -> dict:
    """sharp-frames on every frame (its ``--fps`` takes whole numbers: the clip's rate rounded),
    5 picks 0.5 s apart. Its picks are mapped to frame indices through the rate, bounded by
    ``frame_count`` (framesift's count, else the container's; unbounded when neither knows:
    raw streams report no reliable duration)."""
    fps = info.get("fps") or 30.0
    frames = frame_count or info.get("frames_listed") or 10**9
    t = time.perf_counter()
    try:
        run = tool.run(str(path), top_k=5, fps=max(1, round(fps)), source_fps=fps,
                       frame_count=frames)
    except subprocess.CalledProcessError as exc:
        said = [ln for out in (exc.stderr, exc.stdout)  # it prints its own errors on stdout
                for ln in (out or b"").decode(errors="replace").splitlines() if ln.strip()]
        return {"processed": False, "wall_s": round(time.perf_counter() - t, 2),
                "error": f"exit {exc.returncode}: {said[-1].strip()[:300] if said else ''}"}
    except Exception as exc:  # noqa: BLE001 - a timeout, no metadata written
        return {"processed": False, "wall_s": round(time.perf_counter() - t, 2),
                "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"processed": True, "wall_s": round(run.wall_s, 2), "picks": run.picks}


def bench_clip(path: Path, name: str, tmp: Path, tool) -> dict:
    info = describe(path)
    row: dict = {"clip": name, **info, "bytes": path.stat().st_size}
    out = tmp / scan_id_for(path)
    out.mkdir()
    scan = scan_id_for(path)
    cli = cold_cli(path, out, scan)
    opened = cli["exit"] == 0 and (out / scan / "manifest.json").exists()
    fs: dict = {"opened": opened, "wall_s": cli["wall_s"], "executor": cli.get("executor")}
    if opened:
        fs.update(read_result(out, scan))
    else:
        fs["exit"] = cli["exit"]
        fs["error"] = cli.get("error")
        code, note = diagnose(path, tmp / f"diagnose-{scan}")
        fs["error_code"] = code
        if note:
            fs["diagnose_note"] = note
    row["framesift"] = fs
    if tool is not None:
        row["sharp_frames"] = sharp_frames_run(tool, path, info,
                                               fs.get("framesift_frame_count"))
    return row


def totals(rows: list[dict], sharp_skipped: str | None) -> dict:
    fs_wall = sum(r["framesift"]["wall_s"] for r in rows)
    out: dict = {"clips": len(rows),
                 "framesift_opened": sum(r["framesift"]["opened"] for r in rows),
                 "framesift_wall_s_sum": round(fs_wall, 2)}
    codes: dict[str, int] = {}
    for r in rows:
        if not r["framesift"]["opened"]:
            code = r["framesift"].get("error_code") or "unknown"
            codes[code] = codes.get(code, 0) + 1
    out["framesift_failures_by_code"] = codes
    if sharp_skipped:
        out["sharp_frames"] = sharp_skipped
        return out
    sf_wall = sum(r["sharp_frames"]["wall_s"] for r in rows)
    both = [r for r in rows if r["framesift"]["opened"] and r["sharp_frames"]["processed"]]
    fs_both = sum(r["framesift"]["wall_s"] for r in both)
    sf_both = sum(r["sharp_frames"]["wall_s"] for r in both)
    out.update(
        sharp_frames_processed=sum(r["sharp_frames"]["processed"] for r in rows),
        sharp_frames_wall_s_sum=round(sf_wall, 2),
        framesift_over_sharp_frames=round(fs_wall / sf_wall, 3) if sf_wall else None,
        clips_both_processed=len(both),
        framesift_wall_s_sum_both=round(fs_both, 2),
        sharp_frames_wall_s_sum_both=round(sf_both, 2),
        framesift_over_sharp_frames_both=round(fs_both / sf_both, 3) if sf_both else None,
        only_framesift=[r["clip"] for r in rows
                        if r["framesift"]["opened"] and not r["sharp_frames"]["processed"]],
        only_sharp_frames=[r["clip"] for r in rows
                           if r["sharp_frames"]["processed"] and not r["framesift"]["opened"]])
    return out


def select(clips: list[Path], only: str | None) -> list[Path]:
    """``--only``: names, comma-separated; a clip matches a name it equals or contains."""
    if not only:
        return clips
    names = [n.strip() for n in only.split(",") if n.strip()]
    exact = [c for c in clips if c.name in names]
    return exact if len(exact) == len(names) else [c for c in clips
                                                   if any(n in c.name for n in names)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=Path,
                    help="a folder of clips (default: the real-clip cache, originals + derived)")
    ap.add_argument("--only", help="only these clips: names (or parts of names), comma-separated")
    ap.add_argument("--no-sharp-frames", action="store_true", help="framesift only")
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    result: dict = {"machine": {"cpus": os.cpu_count()}}
    if args.clips is not None:
        base = args.clips.resolve()
        clips = clips_in(base)
    else:
        why = realclips.skip_reason()
        if why:
            emit({**result, "skipped": why}, args.out)
            return
        base = realclips.clip_dir()
        t = time.perf_counter()
        clips = realclips.real_clips() + realclips.derived_clips()
        result["clips_ready_s"] = round(time.perf_counter() - t, 2)  # derived on first use
        result["packages"] = (realclips.read_manifest() or {}).get("packages")
    clips = select(clips, args.only)
    result["clips_dir"] = str(base)
    tool, sharp_skipped = None, None
    if args.no_sharp_frames:
        sharp_skipped = "not run (--no-sharp-frames)"
    else:
        from sharp_frames import VERSION, SharpFrames

        tool = SharpFrames()
        sharp_skipped = tool.available()
        if sharp_skipped:
            tool = None
        else:
            result["sharp_frames_version"] = VERSION
    rows = []
    with tempfile.TemporaryDirectory(prefix="fsrealworld-") as tmp:
        for i, path in enumerate(clips):
            name = str(path.relative_to(base)) if path.is_relative_to(base) else path.name
            print(f"[{i + 1}/{len(clips)}] {name}", file=sys.stderr, flush=True)
            rows.append(bench_clip(path, name, Path(tmp), tool))
    result["clips"] = rows
    result["totals"] = totals(rows, sharp_skipped)
    emit(result, args.out)


if __name__ == "__main__":
    main()
