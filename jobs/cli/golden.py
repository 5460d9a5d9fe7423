"""``framesift golden``: pick the golden frames of videos (or of a batch manifest).

Also ``python -m jobs.golden`` (``golden_entrypoint``), the ``ray job submit`` entrypoint.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from jobs.cli.common import (AddressOption, NumCpusOption, OutOption, ProgressOption,
                             StoreOption, WorkersOption, err, fail, load_settings, path_or_none)

if TYPE_CHECKING:
    from jobs.golden.executor import ExecutorChoice
    from jobs.golden.batch import BatchReport, ManifestEntry
    from jobs.golden.job import Hooks, VideoJob
    from jobs.golden.manifest import GoldenResult
    from jobs.settings import Settings
    from jobs.stores.base import Store


def submitted_job_address() -> str | None:
    """Inside a ``ray job submit`` job, the cluster it was submitted to (Ray sets RAY_ADDRESS
    and RAY_JOB_CONFIG_JSON_ENV_VAR for the entrypoint); otherwise None: a private local Ray."""
    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return os.environ.get("RAY_ADDRESS") or None
    return None


def video_jobs(videos: list[str], scan_id: str | None, item_type: str | None) -> "list[VideoJob]":
    """One job per video (a file, a URL or an object); scan ids from ``--scan-id`` or the file
    names, unique."""
    from actors.errors import FramesiftError
    from jobs.golden.job import VideoJob
    from jobs.sources import check_input, is_remote
    from jobs.stores.base import scan_id_from_path

    if scan_id and len(videos) > 1:
        fail("--scan-id names one video; with several videos each gets its file name as scan id")
    jobs = []
    for v in videos:
        try:
            video = check_input(v) if is_remote(v) else str(Path(check_input(v)).absolute())
            name = video.split("?", 1)[0].split("#", 1)[0].rstrip("/") if is_remote(v) else video
            jobs.append(VideoJob(video, scan_id or scan_id_from_path(name), item_type))
        except FramesiftError as exc:
            fail(str(exc))
    ids = [j.scan_id for j in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        fail(f"several videos map to scan id(s) {', '.join(dupes)}: rename them or run them apart")
    return jobs


def manifest_entries(manifest: Path, videos: list[str] | None,
                     scan_id: str | None) -> "list[ManifestEntry]":
    from actors.errors import FramesiftError
    from jobs.golden.batch import read_manifest

    if videos or scan_id:
        fail("--manifest lists the videos and their scan ids; give no VIDEO or --scan-id with it")
    try:
        return read_manifest(manifest)
    except FramesiftError as exc:
        fail(str(exc))


class ProgressBar:
    """The scoring bar (frames, fps, ETA) across every planned video, and the plan lines."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def on_planned(self, scan: str, info: Any, plan: Any) -> None:
        err.print(f"{scan}: {info.frame_count} frames {info.width}x{info.height} "
                  f"@ {info.avg_fps:.2f} fps -> {len(plan.chunks)} chunk(s) ({plan.reason})",
                  highlight=False, soft_wrap=True)
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=info.frame_count, unit="frame", desc="scoring",
                            file=sys.stderr, dynamic_ncols=True)
        else:
            self.bar.total += info.frame_count
            self.bar.refresh()

    def on_frames(self, _scan: str, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def hooks(self) -> "Hooks":
        from jobs.golden.job import Hooks

        return Hooks(on_planned=self.on_planned, on_frames=self.on_frames)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class BatchProgress:
    """A batch's bar (videos done and failed, frames/s, ETA) and one line per finished video,
    printed as each one is stored (the summary at the end lists them in manifest order)."""

    def __init__(self, enabled: bool, videos: int) -> None:
        self.enabled = enabled
        self.videos = videos
        self.frames = 0
        self.ok = 0
        self.failed = 0
        self.t0 = time.perf_counter()
        self.bar: Any = None

    def on_batch(self, plan: Any) -> None:
        err.print(f"plan: {plan.reason}", highlight=False, soft_wrap=True)
        if self.enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=plan.videos, unit="video", desc="videos", file=sys.stderr,
                            dynamic_ncols=True)

    def on_frames(self, _scan: str, n: int) -> None:
        self.frames += n
        self._postfix()

    def on_result(self, result: Any) -> None:
        if result.ok:
            self.ok += 1
            line, stream = f"done {result.scan_id} -> {result.location}", sys.stdout
        else:
            self.failed += 1
            line = f"failed {result.scan_id} [{result.error_code}]: {result.error}"
            stream = sys.stderr
        if self.bar is not None:
            self.bar.write(line, file=stream)
            self.bar.update(1)
            self._postfix()
        else:
            print(line, file=stream, flush=True)

    def _postfix(self) -> None:
        if self.bar is not None:
            elapsed = max(1e-9, time.perf_counter() - self.t0)
            self.bar.set_postfix_str(f"ok={self.ok} failed={self.failed} "
                                     f"frames/s={self.frames / elapsed:.1f}", refresh=False)

    def hooks(self) -> "Hooks":
        from jobs.golden.job import Hooks

        return Hooks(on_batch=self.on_batch, on_frames=self.on_frames, on_result=self.on_result)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def choose_how_to_run(settings: "Settings", videos: list[str]) -> "ExecutorChoice":
    """In process, on a Ray already up, or on a private Ray (``--executor``; auto: by
    estimate over ``videos``, the inputs); the choice is printed as the plan's first line."""
    from jobs.golden.executor import (ExecutorError, choose_executor, estimate_work_s,
                                      local_ray_address)

    mode, address = settings.executor, settings.ray_address
    if mode == "in-process" and address:
        fail("--executor in-process runs here; --address names a cluster to run on: give one")
    look = mode in ("auto", "join") and not address
    work = estimate_work_s(videos) if mode == "auto" and videos and not address else None
    cpus = settings.num_cpus or len(os.sched_getaffinity(0))
    try:
        choice = choose_executor(mode, address=address,
                                 local_ray=local_ray_address() if look else None,
                                 work_s=work, cpus=cpus)
    except ExecutorError as exc:
        fail(str(exc))
    err.print(f"executor: {choice.reason}", highlight=False, soft_wrap=True)
    return choice


def _run(settings: "Settings", store: "Store", jobs: "list[VideoJob]",
         entries: "list[ManifestEntry] | None", resume: bool,
         hooks: "Hooks") -> "tuple[list[GoldenResult], BatchReport | None]":
    from jobs.golden.job import run_golden
    from jobs.sources import SourceOptions

    params = settings.golden_params()
    sources = SourceOptions.from_settings(settings)
    choice = choose_how_to_run(settings, [j.path for j in jobs] if entries is None
                               else [e.video for e in entries])
    run: dict[str, Any] = dict(distributed=choice.distributed, address=choice.address,
                               threads=choice.threads, num_cpus=settings.num_cpus,
                               plan_cpus=settings.cluster_cpus, hooks=hooks, sources=sources)
    if entries is None:
        return run_golden(jobs, params, store, **run), None
    from jobs.golden.batch import run_batch

    report = run_batch(entries, params, store, resume=resume,
                       max_finishing=settings.max_finishing, **run)
    return report.results, report


def golden(
    videos: Annotated[Optional[list[str]], typer.Argument(
        help="videos to analyse: files, http(s) URLs, s3:// gs:// supabase:// objects "
             "(or give --manifest)", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option(help="golden frames per video [5]")] = None,
    min_gap_s: Annotated[Optional[float], typer.Option(help="seconds between picks [0.5]")] = None,
    motion_max: Annotated[Optional[float], typer.Option(help="stillness bar in source px [1.0]")] = None,
    flow: Annotated[Optional[str], typer.Option(help="dis or farneback [dis]")] = None,
    workers: WorkersOption = None,
    executor: Annotated[Optional[str], typer.Option(
        help="auto, in-process, join (a Ray already up, or --address) or private [auto]")] = None,
    ray_compute: Annotated[Optional[str], typer.Option(
        help="on Ray: tasks or actors (a warm pool) [tasks]")] = None,
    out_dir: OutOption = None,
    scan_id: Annotated[Optional[str], typer.Option(help="scan id (one video); default: file name")] = None,
    item_type: Annotated[Optional[str], typer.Option(help="free-form item type for the manifest")] = None,
    address: AddressOption = None,
    num_cpus: NumCpusOption = None,
    image_format: Annotated[Optional[str], typer.Option(help="jpeg or png [jpeg]")] = None,
    candidates: Annotated[Optional[int], typer.Option(
        help="frames stored beside the picks so `framesift repick` need not decode them, "
             "0 = none [32]")] = None,
    store: StoreOption = None,
    progress: ProgressOption = True,
    manifest: Annotated[Optional[Path], typer.Option(
        help="a batch job: a list of videos (paths, URLs or objects), one per line, or a "
             "CSV/JSONL of video, scan_id, item_type")] = None,
    resume: Annotated[bool, typer.Option(
        help="with --manifest: skip scans already complete in the store")] = True,
    cluster_cpus: Annotated[Optional[int], typer.Option(
        help="CPUs to plan for (autoscaling cluster: what it may scale to)")] = None,
) -> None:
    """Pick the sharpest still frames of each video and store them with their metrics."""
    from actors.errors import FramesiftError
    from jobs.cli.results import print_batch_summary, print_results
    from jobs.stores import make_store

    settings = load_settings(top_k=top_k, min_gap_s=min_gap_s, motion_max=motion_max, flow=flow,
                             workers=workers, executor=executor, ray_compute=ray_compute,
                             out_dir=path_or_none(out_dir),
                             ray_address=address, num_cpus=num_cpus, image_format=image_format,
                             candidates=candidates, store=store, cluster_cpus=cluster_cpus)
    settings.ray_address = settings.ray_address or submitted_job_address()
    entries = manifest_entries(manifest, videos, scan_id) if manifest is not None else None
    if entries is None and not videos:
        fail("give one or more VIDEO files, or --manifest FILE")
    jobs = video_jobs(videos or [], scan_id, item_type) if entries is None else []
    try:
        result_store = make_store(settings)
    except FramesiftError as exc:
        fail(str(exc))
    bar = ProgressBar(progress) if entries is None else BatchProgress(progress, len(entries))
    try:
        results, report = _run(settings, result_store, jobs, entries, resume, bar.hooks())
    finally:
        bar.close()
    if report is None:
        print_results(results)
    else:
        print_batch_summary(report)
    failed = [r for r in results if not r.ok]
    if failed:
        if len(failed) == len(results) == 1:
            fail(failed[0].error or "failed", 2 if failed[0].error_code != "job_failed" else 1)
        raise typer.Exit(2)


def golden_entrypoint() -> None:
    """``python -m jobs.golden``: the golden command alone (for ``ray job submit``)."""
    typer.run(golden)
