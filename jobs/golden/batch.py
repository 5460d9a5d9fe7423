"""Batch golden-frame jobs over many videos: manifest parsing, URL downloads, resume, summary.

A manifest is a CSV (header row) or JSONL file of ``{video, scan_id, item_type}``; ``video`` is a
path (relative paths are resolved from the manifest's folder) or an http(s) URL (downloaded
with ``jobs.fetch.fetch_to_file`` before probing). All chunks of all videos flow through one Ray
Data pipeline (``run_golden``); each video gets its own result or error. A rerun skips scans
whose results are already complete in the store with the same parameters.
"""

from __future__ import annotations

import csv
import json
import resource
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from actors.errors import FramesiftError
from jobs.fetch import Allowlist, FetchError, fetch_to_file
from jobs.golden.job import Hooks, VideoJob, run_golden
from jobs.golden.manifest import GoldenResult
from jobs.golden.params import GoldenParams
from jobs.stores.base import Store, scan_id_from_path, validate_scan_id

MANIFEST_FIELDS = ("video", "scan_id", "item_type")
DOWNLOAD_THREADS = 4


class ManifestError(FramesiftError, ValueError):
    """The manifest file cannot be used as a whole (unreadable, malformed, duplicate ids)."""

    code = "invalid_manifest"


@dataclass(frozen=True)
class ManifestEntry:
    video: str  # absolute path or http(s) URL
    scan_id: str
    item_type: str | None = None
    line: int = 0

    @property
    def is_url(self) -> bool:
        return is_url(self.video)


def is_url(video: str) -> bool:
    return video.lower().startswith(("http://", "https://"))


def _rows(path: Path, text: str) -> list[tuple[int, dict[str, Any]]]:
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if path.suffix.lower() in (".jsonl", ".ndjson") or first.startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
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
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    if "video" not in header:
        raise ManifestError(f"{path}: a CSV manifest needs a header row with a 'video' column "
                            f"(and optionally scan_id, item_type); found {header or 'no header'}")
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
        if not is_url(video):
            if "://" in video:
                problems.append(f"line {line}: only http:// and https:// URLs or file paths "
                                f"are accepted, not {video.split('://', 1)[0]}://")
                continue
            p = Path(video).expanduser()
            video = str(p if p.is_absolute() else (path.parent / p).absolute())
        scan_id = str(row.get("scan_id") or "").strip()
        if not scan_id:
            stem = video.split("?", 1)[0].rstrip("/") if is_url(video) else video
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
class DownloadOptions:
    dest_dir: str = "downloads"
    max_bytes: int = 4_294_967_296
    timeout_s: float = 600.0
    allowlist: str | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> "DownloadOptions":
        return cls(settings.download_dir, settings.download_max_bytes,
                   settings.download_timeout_s, settings.url_allowlist)


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
    scoring_cpu_s: float

    def line(self) -> str:
        return (f"summary: {self.videos} videos: {self.ok} ok, {self.failed} failed, "
                f"{self.skipped} skipped (already complete); {self.frames} frames in "
                f"{self.wall_s:.1f} s = {self.frames_per_s:.1f} frames/s; "
                f"{self.cpu_s:.1f} CPU-seconds ({self.driver_cpu_s:.1f} driver, "
                f"{self.scoring_cpu_s:.1f} scoring, reserved)")

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class BatchReport:
    results: list[GoldenResult]
    skipped: list[str] = field(default_factory=list)
    summary: BatchSummary | None = None


def _cpu_now() -> float:
    self_, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self_.ru_utime + self_.ru_stime + children.ru_utime + children.ru_stime


def _download(entries: Sequence[ManifestEntry], opts: DownloadOptions,
              ) -> tuple[dict[str, str], dict[str, GoldenResult]]:
    """Fetch URL videos (a few at a time); a failed download becomes that video's result."""
    paths: dict[str, str] = {}
    failed: dict[str, GoldenResult] = {}
    urls = [e for e in entries if e.is_url]
    if not urls:
        return paths, failed
    allow = Allowlist.parse(opts.allowlist)

    def one(e: ManifestEntry) -> tuple[ManifestEntry, str | FetchError]:
        try:
            return e, str(fetch_to_file(e.video, opts.dest_dir, max_bytes=opts.max_bytes,
                                        timeout_s=opts.timeout_s, allowlist=allow))
        except FetchError as exc:
            return e, exc

    with ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(urls))) as pool:
        for e, got in pool.map(one, urls):
            if isinstance(got, FetchError):
                failed[e.scan_id] = GoldenResult.failed(e.scan_id, got.url, got)
            else:
                paths[e.scan_id] = got
    return paths, failed


def summarise(results: Sequence[GoldenResult], *, videos: int, skipped: int, wall_s: float,
              driver_cpu_s: float, parallel_cpus: int | None) -> BatchSummary:
    """The batch summary. Scoring runs on Ray workers: its CPU is counted as what they were
    given, the wall time of the shared scoring stage times the chunks that ran in parallel
    (one CPU each, at most ``parallel_cpus``: the cluster's CPUs when None)."""
    ok = [r.manifest for r in results if r.ok and r.manifest is not None]
    frames = sum(m.video.frame_count for m in ok)
    scoring_cpu = 0.0
    if ok:
        score_s = max(m.timings_s.get("score_s", 0.0) for m in ok)
        parallel = sum(len(m.plan.chunks) for m in ok)
        if parallel_cpus is None:
            from jobs.runtime import cluster_cpus

            parallel_cpus = cluster_cpus()
        scoring_cpu = score_s * max(1, min(parallel, parallel_cpus))
    return BatchSummary(videos=videos, ok=len(ok), failed=len(results) - len(ok),
                        skipped=skipped, frames=frames, wall_s=wall_s,
                        frames_per_s=frames / wall_s if wall_s > 0 else 0.0,
                        cpu_s=driver_cpu_s + scoring_cpu, driver_cpu_s=driver_cpu_s,
                        scoring_cpu_s=scoring_cpu)


def run_batch(entries: Sequence[ManifestEntry], params: GoldenParams, store: Store, *,
              resume: bool = True, downloads: DownloadOptions | None = None,
              address: str | None = None, num_cpus: int | None = None,
              plan_cpus: int | None = None, hooks: Hooks | None = None,
              distributed: bool = True) -> BatchReport:
    """Run every manifest entry through one golden-frame pipeline; never stop at a bad video.

    Results come back in manifest order; skipped (already complete) scans are not among them.
    """
    t0, cpu0 = time.perf_counter(), _cpu_now()
    skipped = [e.scan_id for e in entries if resume and is_complete(store, e.scan_id, params)]
    todo = [e for e in entries if e.scan_id not in set(skipped)]
    paths, results = _download(todo, downloads or DownloadOptions())
    jobs = [VideoJob(paths.get(e.scan_id, e.video), e.scan_id, e.item_type)
            for e in todo if e.scan_id not in results]
    if jobs:
        for r in run_golden(jobs, params, store, distributed=distributed, address=address,
                            num_cpus=num_cpus, plan_cpus=plan_cpus, hooks=hooks):
            results[r.scan_id] = r
    ordered = [results[e.scan_id] for e in todo]
    summary = summarise(ordered, videos=len(entries), skipped=len(skipped),
                        wall_s=time.perf_counter() - t0, driver_cpu_s=_cpu_now() - cpu0,
                        parallel_cpus=plan_cpus if distributed else 1)
    return BatchReport(ordered, skipped, summary)
