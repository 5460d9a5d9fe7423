"""Batch golden-frame jobs over many videos: manifest parsing, resume, progress, summary.

A manifest is a CSV (header row) or JSONL file of ``{video, scan_id, item_type}``, or a plain
list with one video per line (``ls *.mp4 > list.txt``; ``#`` comments allowed); ``video`` is a
path (relative paths are resolved from the manifest's folder), an http(s) URL, or an
``s3://``, ``gs://`` or ``supabase://`` object: the workers read it where it lives
(``jobs.sources``). All videos flow through one streaming pipeline (``stream_golden``): each
video is stored as soon as it is finished, and gets its own result or error. A rerun skips
scans whose results are already complete in the store with the same parameters, so a batch
whose driver was killed loses only the videos that were in flight.
"""

from __future__ import annotations

import csv
import json
import resource
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from actors.errors import FramesiftError
from jobs.golden.finish import Hooks, VideoJob
from jobs.golden.manifest import GoldenResult
from jobs.golden.params import GoldenParams
from jobs.golden.stream import stream_golden
from jobs.sources import SourceOptions, check_input, is_remote
from jobs.stores.base import Store, scan_id_from_path, validate_scan_id

MANIFEST_FIELDS = ("video", "scan_id", "item_type")


class ManifestError(FramesiftError, ValueError):
    """The manifest file cannot be used as a whole (unreadable, malformed, duplicate ids)."""

    code = "invalid_manifest"


@dataclass(frozen=True)
class ManifestEntry:
    video: str  # absolute path, http(s) URL, or s3:// gs:// supabase:// object
    scan_id: str
    item_type: str | None = None
    line: int = 0

    @property
    def is_remote(self) -> bool:
        return is_remote(self.video)


def _names_a_video(line: str) -> bool:
    """Whether a manifest's first line is itself a video (a plain list), not a CSV header: a
    URL, or a file name with an extension and no comma."""
    return "://" in line or ("," not in line and Path(line).suffix != "")


def _rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    lines = [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), start=1)]
    first = next((ln for _, ln in lines if ln), "")
    if path.suffix.lower() in (".jsonl", ".ndjson") or first.startswith("{"):
        rows = []
        for n, line in lines:
            if not line or line.startswith("#"):
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path}:{n}: not a JSON object ({exc.msg}). Each line of a "
                                    "JSONL manifest is one object like "
                                    '{"video": "a.mp4", "scan_id": "a", "item_type": "ring"}') from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{n}: expected a JSON object, found {type(row).__name__}")
            rows.append((n, row))
        return rows
    listed = [(n, ln) for n, ln in lines if ln and not ln.startswith("#")]
    if listed and _names_a_video(listed[0][1]):
        return [(n, {"video": ln}) for n, ln in listed]
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "video" not in header:
        raise ManifestError(f"{path}: a CSV manifest needs a header row with a 'video' column "
                            f"(and optionally scan_id, item_type); found {header or 'no header'}. "
                            "A plain list of videos, one per line, needs no header")
    # line numbers: header is line 1 (blank lines are skipped by the reader, close enough)
    return [(n, {(k or "").strip(): v for k, v in row.items()})
            for n, row in enumerate(reader, start=2)]


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Parse and validate a manifest; every problem is reported at once with its line.

    ``scan_id`` defaults to the video's file name (made safe), as on the command line.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    entries: list[ManifestEntry] = []
    problems: list[str] = []
    for line, row in _rows(path, text):
        unknown = sorted(set(row) - set(MANIFEST_FIELDS) - {""})
        if unknown:
            problems.append(f"line {line}: unknown field(s) {', '.join(unknown)}; "
                            f"expected {', '.join(MANIFEST_FIELDS)}")
            continue
        video = str(row.get("video") or "").strip()
        if not video:
            problems.append(f"line {line}: 'video' is empty; give a path or an http(s) URL")
            continue
        try:
            check_input(video)
        except FramesiftError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if not is_remote(video):
            p = Path(video).expanduser()
            video = str(p if p.is_absolute() else (path.parent / p).absolute())
        scan_id = str(row.get("scan_id") or "").strip()
        if not scan_id:
            stem = video.split("?", 1)[0].split("#", 1)[0].rstrip("/") if is_remote(video) else video
            scan_id = scan_id_from_path(stem)
        item_type = row.get("item_type")
        item_type = str(item_type).strip() or None if item_type is not None else None
        try:
            validate_scan_id(scan_id)
        except FramesiftError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        entries.append(ManifestEntry(video, scan_id, item_type, line))
    seen: dict[str, int] = {}
    for e in entries:
        if e.scan_id in seen:
            problems.append(f"line {e.line}: scan id {e.scan_id!r} already used on line "
                            f"{seen[e.scan_id]}; give each video its own scan_id")
        seen.setdefault(e.scan_id, e.line)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more"
                                            if len(problems) > 10 else "")
        raise ManifestError(f"{path}: {shown}")
    if not entries:
        raise ManifestError(f"{path}: the manifest lists no videos")
    return entries


def is_complete(store: Store, scan_id: str, params: GoldenParams) -> bool:
    """True when ``store`` holds a committed, successful result of ``scan_id`` computed with
    the same parameters (a rerun with other parameters recomputes it)."""
    manifest = store.manifest(scan_id)
    return bool(manifest and manifest.status == "succeeded" and manifest.decided_by(params))


@dataclass
class BatchSummary:
    videos: int
    ok: int
    failed: int
    skipped: int
    frames: int
    wall_s: float
    frames_per_s: float
    cpu_s: float
    driver_cpu_s: float
    worker_cpu_s: float
    first_result_s: float | None = None

    def line(self) -> str:
        first = (f"; first result after {self.first_result_s:.1f} s"
                 if self.first_result_s is not None else "")
        return (f"summary: {self.videos} videos: {self.ok} ok, {self.failed} failed, "
                f"{self.skipped} skipped (already complete); {self.frames} frames in "
                f"{self.wall_s:.1f} s = {self.frames_per_s:.1f} frames/s{first}; "
                f"{self.cpu_s:.1f} CPU-seconds ({self.driver_cpu_s:.1f} driver, "
                f"{self.worker_cpu_s:.1f} on workers)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class BatchReport:
    """The batch's results in manifest order (without their manifests: the store has them),
    the scans skipped as already complete, and the summary."""

    results: list[GoldenResult]
    skipped: list[str] = field(default_factory=list)
    summary: BatchSummary | None = None


def _cpu_now() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def run_batch(entries: Sequence[ManifestEntry], params: GoldenParams, store: Store, *,
              resume: bool = True, sources: SourceOptions | None = None,
              address: str | None = None, num_cpus: int | None = None,
              plan_cpus: int | None = None, hooks: Hooks | None = None,
              distributed: bool = True, max_finishing: int | None = None,
              threads: int = 1) -> BatchReport:
    """Run every manifest entry through the streaming pipeline; never stop at a bad video.

    Each video is stored as it finishes (``hooks.on_result`` hears of it then). The driver
    keeps one small result per video for the summary, never the manifests. Results come back
    in manifest order; skipped (already complete) scans are not among them.
    """
    t0, cpu0 = time.perf_counter(), _cpu_now()
    skipped = [e.scan_id for e in entries if resume and is_complete(store, e.scan_id, params)]
    done = set(skipped)
    todo = [e for e in entries if e.scan_id not in done]
    jobs = [VideoJob(e.video, e.scan_id, e.item_type) for e in todo]
    results: list[GoldenResult | None] = [None] * len(jobs)
    frames, worker_s, first = 0, 0.0, None
    for outcome in stream_golden(jobs, params, store, distributed=distributed, address=address,
                                 num_cpus=num_cpus, plan_cpus=plan_cpus, hooks=hooks,
                                 sources=sources, max_finishing=max_finishing,
                                 keep_manifests=False, threads=threads):
        results[outcome.seq] = outcome.result
        frames += outcome.frames
        worker_s += outcome.worker_s
        if first is None and outcome.result.ok:
            first = time.perf_counter() - t0
    ordered = [r if r is not None else
               GoldenResult.failed(e.scan_id, e.video, "no result came back from the pipeline",
                                   "internal_error")
               for e, r in zip(todo, results)]
    ok = sum(1 for r in ordered if r.ok)
    wall = time.perf_counter() - t0
    driver = _cpu_now() - cpu0
    summary = BatchSummary(videos=len(entries), ok=ok, failed=len(ordered) - ok,
                           skipped=len(skipped), frames=frames, wall_s=wall,
                           frames_per_s=frames / wall if wall > 0 else 0.0,
                           cpu_s=driver + worker_s, driver_cpu_s=driver, worker_cpu_s=worker_s,
                           first_result_s=first)
    return BatchReport(ordered, skipped, summary)
