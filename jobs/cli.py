"""The ``framesift`` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from actors.errors import FramesiftError
from jobs.golden import GoldenParams, GoldenResult, Hooks, VideoJob, run_golden
from jobs.settings import Settings
from jobs.store import scan_id_from_path
from jobs.stores import make_store

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="framesift: distributed golden-frame selection and video processing on Ray.")
err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 2) -> None:
    """One-line error and exit code 2 (bad input) or 1 (job failure)."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _settings(**overrides: object) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        raise  # unreachable


def _jobs(videos: list[Path], scan_id: str | None, item_type: str | None) -> list[VideoJob]:
    if scan_id and len(videos) > 1:
        fail("--scan-id names one video; with several videos each gets its file name as scan id")
    jobs = []
    for v in videos:
        try:
            jobs.append(VideoJob(str(v.absolute()), scan_id or scan_id_from_path(v), item_type))
        except FramesiftError as exc:
            fail(str(exc))
    ids = [j.scan_id for j in jobs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        fail(f"several videos map to scan id(s) {', '.join(dupes)}: rename them or run them apart")
    return jobs


def print_results(results: list[GoldenResult]) -> None:
    for r in results:
        if not r.ok:
            err.print(f"[red]failed[/] {r.scan_id}: {r.error}", highlight=False, soft_wrap=True)
            continue
        m = r.manifest or {}
        sel = m.get("selection", {})
        out.print(f"[green]{r.scan_id}[/]: {len(m.get('golden_frames', []))} golden frames -> "
                  f"{Path(r.location or '').parent.resolve()}", highlight=False, soft_wrap=True)
        for note in sel.get("notes", []):
            out.print(f"  [yellow]note:[/] {note}", highlight=False)
        print_upload(r.scan_id, m.get("supabase"))
        table = Table(show_edge=False)
        for col in ("rank", "frame", "time s", "sharpness", "motion px", "still", "glint %"):
            table.add_column(col, justify="left" if col == "still" else "right")
        table.add_column("file", no_wrap=True)
        for g in m.get("golden_frames", []):
            table.add_row(str(g["rank"]), str(g["frame_index"]), f"{g['time_s']:.3f}",
                          f"{g['sharpness']:.1f}", f"{g['motion']:.3f}", "yes" if g["still"] else "NO",
                          f"{100 * g['glint']['share']:.2f}", g["key"].rsplit("/", 1)[-1])
        out.print(table)


@app.command()
def golden(
    videos: Annotated[Optional[list[Path]], typer.Argument(
        help="video files to analyse (or give --manifest)", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option(help="golden frames per video [5]")] = None,
    min_gap_s: Annotated[Optional[float], typer.Option(help="seconds between picks [0.5]")] = None,
    motion_max: Annotated[Optional[float], typer.Option(help="stillness bar in source px [1.0]")] = None,
    flow: Annotated[Optional[str], typer.Option(help="dis or farneback [dis]")] = None,
    workers: Annotated[Optional[str], typer.Option(help="'auto' or chunks per video [auto]")] = None,
    executor: Annotated[Optional[str], typer.Option(help="tasks or actors [tasks]")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="local store root [output]")] = None,
    scan_id: Annotated[Optional[str], typer.Option(help="scan id (one video); default: file name")] = None,
    item_type: Annotated[Optional[str], typer.Option(help="free-form item type for the manifest")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray address; default: private local Ray")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the private local Ray")] = None,
    image_format: Annotated[Optional[str], typer.Option(help="jpeg or png [jpeg]")] = None,
    store: Annotated[Optional[str], typer.Option(help="local or supabase [local]")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    manifest: Annotated[Optional[Path], typer.Option(
        help="CSV/JSONL of video (path or URL), scan_id, item_type: a batch job")] = None,
    resume: Annotated[bool, typer.Option(
        help="with --manifest: skip scans already complete in the store")] = True,
    cluster_cpus: Annotated[Optional[int], typer.Option(
        help="CPUs to plan for (autoscaling cluster: what it may scale to)")] = None,
) -> None:
    """Pick the sharpest still frames of each video and store them with their metrics."""
    settings = _settings(top_k=top_k, min_gap_s=min_gap_s, motion_max=motion_max, flow=flow,
                         workers=workers, executor=executor,
                         out_dir=str(out_dir) if out_dir else None, ray_address=address,
                         num_cpus=num_cpus, image_format=image_format, store=store,
                         cluster_cpus=cluster_cpus)
    settings.ray_address = settings.ray_address or submitted_job_address()
    entries = _manifest_entries(manifest, videos, scan_id) if manifest is not None else None
    if entries is None and not videos:
        fail("give one or more VIDEO files, or --manifest FILE")
    jobs = _jobs(videos, scan_id, item_type) if entries is None else []
    params = GoldenParams.from_settings(settings)
    try:
        result_store = make_store(settings)
    except FramesiftError as exc:
        fail(str(exc))
    bar: tqdm | None = None

    def on_planned(scan: str, info, plan) -> None:  # noqa: ANN001 - hook signature
        nonlocal bar
        err.print(f"{scan}: {info.frame_count} frames {info.width}x{info.height} "
                  f"@ {info.avg_fps:.2f} fps -> {len(plan.chunks)} chunk(s) ({plan.reason})",
                  highlight=False, soft_wrap=True)
        if progress:
            if bar is None:
                bar = tqdm(total=info.frame_count, unit="frame", desc="scoring", file=sys.stderr,
                           dynamic_ncols=True)
            else:
                bar.total += info.frame_count
                bar.refresh()

    def on_frames(_scan: str, n: int) -> None:
        if bar is not None:
            bar.update(n)

    hooks = Hooks(on_planned=on_planned, on_frames=on_frames)
    report = None
    try:
        if entries is not None:
            from jobs.batch import DownloadOptions, run_batch

            report = run_batch(entries, params, result_store, resume=resume, hooks=hooks,
                               downloads=DownloadOptions(settings.download_dir,
                                                         settings.download_max_bytes,
                                                         settings.download_timeout_s,
                                                         settings.url_allowlist),
                               address=settings.ray_address, num_cpus=settings.num_cpus,
                               plan_cpus=settings.cluster_cpus)
            results = report.results
        else:
            results = run_golden(jobs, params, result_store, address=settings.ray_address,
                                 num_cpus=settings.num_cpus, hooks=hooks,
                                 plan_cpus=settings.cluster_cpus)
    finally:
        if bar is not None:
            bar.close()
    print_results(results)
    if report is not None:
        print_batch_summary(report)
    failed = [r for r in results if not r.ok]
    if failed:
        if len(failed) == len(results) and len(failed) == 1:
            fail(failed[0].error or "failed", 2 if failed[0].error_code != "job_failed" else 1)
        raise typer.Exit(2)


def submitted_job_address() -> str | None:
    """Inside a ``ray job submit`` job, the cluster it was submitted to (Ray sets RAY_ADDRESS
    and RAY_JOB_CONFIG_JSON_ENV_VAR for the entrypoint); otherwise None: a private local Ray."""
    import os

    if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ:
        return os.environ.get("RAY_ADDRESS") or None
    return None


def _manifest_entries(manifest: Path, videos: list[Path] | None, scan_id: str | None) -> list:
    from jobs.batch import read_manifest

    if videos or scan_id:
        fail("--manifest lists the videos and their scan ids; give no VIDEO or --scan-id with it")
    try:
        return read_manifest(manifest)
    except FramesiftError as exc:
        fail(str(exc))
        raise  # unreachable


def print_batch_summary(report) -> None:  # noqa: ANN001 - jobs.batch.BatchReport
    """Skipped scans, the summary line and the same as one JSON line (for job logs)."""
    import json

    for scan in report.skipped:
        out.print(f"[dim]skipped[/] {scan}: already complete in the store", highlight=False)
    out.print(report.summary.line(), highlight=False, soft_wrap=True)
    out.print(json.dumps({"summary": report.summary.to_dict()}), highlight=False, soft_wrap=True,
              markup=False)


def print_upload(scan_id: str, section: dict | None) -> None:
    """One line on the Supabase upload of a result (nothing for the local store)."""
    if not section:
        return
    if section.get("status") == "uploaded":
        out.print(f"  supabase: uploaded to bucket {section.get('bucket')} "
                  f"(analysis {section.get('analysis_id')})", highlight=False, soft_wrap=True)
        for key, url in (section.get("signed_urls") or {}).items():
            out.print(f"  signed url {key}: {url}", highlight=False, soft_wrap=True)
        return
    err.print(f"  [yellow]supabase: not uploaded yet:[/] {', '.join(section.get('not_uploaded', []))}"
              f" ({section.get('error') or 'pending'}); the result is kept locally: run "
              f"`framesift sync --scan-id {scan_id}`", highlight=False, soft_wrap=True)


@app.command()
def sync(
    scan_id: Annotated[Optional[str], typer.Option(help="only this scan; default: every pending one")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="local store root [output]")] = None,
) -> None:
    """Upload to Supabase what earlier runs could not (safe to run again)."""
    from jobs.supabase_store import SupabaseStore

    settings = _settings(out_dir=str(out_dir) if out_dir else None, store="supabase")
    try:
        sb = SupabaseStore.from_settings(settings)
        reports = sb.sync(scan_id)
    except FramesiftError as exc:
        fail(str(exc))
        return
    if not reports:
        out.print("nothing pending" + (f" for {scan_id}" if scan_id else ""), highlight=False)
    for report in reports:
        out.print(f"{report.scan_id}:", highlight=False)
        print_upload(report.scan_id, report.section())
    if any(not r.complete for r in reports):
        raise typer.Exit(1)


@app.command("sample-video")
def sample_video(
    path: Annotated[Path, typer.Argument(help="where to write the MP4")],
    seconds: Annotated[float, typer.Option(help="duration")] = 10.0,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "1280x720",
    fps: Annotated[int, typer.Option(help="frames per second")] = 30,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    bframes: Annotated[int, typer.Option(help="H.264 B-frames")] = 2,
    gop: Annotated[int, typer.Option(help="maximum keyframe interval")] = 60,
    vfr: Annotated[bool, typer.Option(help="variable frame rate")] = False,
    holds: Annotated[int, typer.Option(help="a hand-held scan with this many steady holds on "
                                            "distinct views (shake, focus pulls); its length "
                                            "follows from the holds, --seconds and --vfr are "
                                            "not used; 0 = the window video")] = 0,
) -> None:
    """Write a synthetic scan video and its ground truth (<path>.truth.json)."""
    from actors.synthetic import make_hold_video, make_sample_video, truth_path

    try:
        w, h = (int(x) for x in size.lower().split("x"))
        if holds:
            truth = make_hold_video(path, holds=holds, size=(w, h), fps=fps, seed=seed,
                                    bframes=bframes, gop=gop)
        else:
            truth = make_sample_video(path, seconds=seconds, size=(w, h), fps=fps, seed=seed,
                                      bframes=bframes, gop=gop, variable_fps=vfr)
    except ValueError as exc:
        fail(f"bad sample-video option: {exc}")
        return
    if holds:
        what = f"{len(truth.holds)} steady holds"
    else:
        what = f"{sum(1 for w_ in truth.windows if w_.kind == 'sharp_still')} sharp+still windows"
    out.print(f"wrote {path} ({truth.frame_count} frames, {truth.width}x{truth.height}, "
              f"{what}) and {truth_path(path)}", highlight=False, soft_wrap=True)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port")] = 8000,
    state_dir: Annotated[Optional[Path], typer.Option(help="analysis records [state]")] = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="local store root [output]")] = None,
    address: Annotated[Optional[str], typer.Option(help="Ray address; default: private local Ray")] = None,
    num_cpus: Annotated[Optional[int], typer.Option(help="CPUs of the private local Ray")] = None,
) -> None:
    """Start the HTTP API (Ray Serve) and block; Ctrl-C stops it."""
    from ray import serve as ray_serve

    from jobs.runtime import ensure_ray
    from serve.app import build_app
    from serve.security import InsecureBindError, check_bind
    from serve.settings import ServiceSettings

    overrides = {k: str(v) for k, v in (("state_dir", state_dir), ("out_dir", out_dir)) if v}
    try:
        check_bind(host, ServiceSettings(**overrides).api_key_list())
    except (InsecureBindError, ValidationError) as exc:
        fail(str(exc))
    ensure_ray(address, num_cpus)
    import ray

    from serve.models import cpu_headroom_warning

    settings = ServiceSettings(**overrides)
    warning = None if (address or settings.ray_address) else cpu_headroom_warning(
        settings, ray.cluster_resources().get("CPU", 0.0))  # a cluster may scale: no warning
    if warning:
        err.print(f"warning: {warning}", highlight=False, soft_wrap=True)
    ray_serve.start(http_options={"host": host, "port": port})
    ray_serve.run(build_app({"settings": overrides}), name="framesift", route_prefix="/")
    err.print(f"framesift API on http://{host}:{port} (docs: /docs); Ctrl-C to stop",
              highlight=False)
    try:
        import time

        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        ray_serve.shutdown()


from jobs.video_commands import register_video_commands  # noqa: E402 - needs app, fail, out

register_video_commands(app)


def golden_entrypoint() -> None:
    """``python -m jobs.golden``: the golden command alone (for ``ray job submit``)."""
    typer.run(golden)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
