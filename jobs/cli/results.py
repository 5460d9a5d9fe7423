"""How results are printed: the picks table per video, the upload line, the batch summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

from jobs.cli.common import err, out

if TYPE_CHECKING:
    from jobs.golden.batch import BatchReport
    from jobs.golden.manifest import GoldenManifest, GoldenResult, UploadSection

_COLUMNS = ("rank", "frame", "time s", "sharpness", "motion px", "still", "glint %")


def picks_table(manifest: "GoldenManifest") -> Table:
    table = Table(show_edge=False)
    for col in _COLUMNS:
        table.add_column(col, justify="left" if col == "still" else "right")
    table.add_column("file", no_wrap=True)
    for g in manifest.golden_frames:
        table.add_row(str(g.rank), str(g.frame_index), f"{g.time_s:.3f}", f"{g.sharpness:.1f}",
                      f"{g.motion:.3f}", "yes" if g.still else "NO",
                      f"{100 * g.glint.share:.2f}", g.key.rsplit("/", 1)[-1])
    return table


def print_results(results: "list[GoldenResult]") -> None:
    for r in results:
        if not r.ok or r.manifest is None:
            err.print(f"[red]failed[/] {r.scan_id}: {r.error}", highlight=False, soft_wrap=True)
            continue
        m = r.manifest
        out.print(f"[green]{r.scan_id}[/]: {len(m.golden_frames)} golden frames -> "
                  f"{Path(r.location or '').parent.resolve()}", highlight=False, soft_wrap=True)
        for note in m.selection.notes:
            out.print(f"  [yellow]note:[/] {note}", highlight=False)
        print_upload(r.scan_id, m.supabase)
        out.print(picks_table(m))


def print_upload(scan_id: str, section: "UploadSection | None") -> None:
    """One line on the Supabase upload of a result (nothing for the local store)."""
    if section is None:
        return
    if section.complete:
        out.print(f"  supabase: uploaded to bucket {section.bucket} "
                  f"(analysis {section.analysis_id})", highlight=False, soft_wrap=True)
        for key, url in (section.signed_urls or {}).items():
            out.print(f"  signed url {key}: {url}", highlight=False, soft_wrap=True)
        for key, why in (section.signed_url_errors or {}).items():
            err.print(f"  [yellow]no signed url for {key}:[/] {why}", highlight=False,
                      soft_wrap=True)
        return
    err.print(f"  [yellow]supabase: not uploaded yet:[/] {', '.join(section.not_uploaded)}"
              f" ({section.error or 'pending'}); the result is kept locally: run "
              f"`framesift sync --scan-id {scan_id}`", highlight=False, soft_wrap=True)


def print_batch_summary(report: "BatchReport") -> None:
    """Skipped scans, every video's outcome in manifest order, the summary line and the same
    as one JSON line (for job logs)."""
    for scan in report.skipped:
        out.print(f"[dim]skipped[/] {scan}: already complete in the store", highlight=False)
    for r in report.results:
        if r.ok:
            out.print(f"  ok      {r.scan_id}: {r.location}", highlight=False, soft_wrap=True,
                      markup=False)
        else:
            out.print(f"  failed  {r.scan_id} [{r.error_code}]: {r.error}", highlight=False,
                      soft_wrap=True, markup=False)
    if report.summary is None:
        return
    out.print(report.summary.line(), highlight=False, soft_wrap=True)
    out.print(json.dumps({"summary": report.summary.to_dict()}), highlight=False, soft_wrap=True,
              markup=False)
