"""``framesift sync``: upload to Supabase what earlier runs could not."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from jobs.cli.common import OutOption, fail, load_settings, out, path_or_none


def sync(
    scan_id: Annotated[Optional[str], typer.Option(help="only this scan; default: every pending one")] = None,
    out_dir: OutOption = None,
    tenant: Annotated[Optional[str], typer.Option(help="the HTTP service tenant whose results "
                                                  "(under <out>/_tenants/<tenant>/); default: "
                                                  "results of no tenant")] = None,
) -> None:
    """Upload to Supabase what earlier runs could not (safe to run again)."""
    from actors.errors import FramesiftError
    from jobs.cli.results import print_upload
    from jobs.stores.supabase import SupabaseStore

    settings = load_settings(out_dir=path_or_none(out_dir), store="supabase")
    try:
        reports = SupabaseStore.from_settings(settings, tenant=tenant).sync(scan_id)
    except FramesiftError as exc:
        fail(str(exc))
    if not reports:
        out.print("nothing pending" + (f" for {scan_id}" if scan_id else ""), highlight=False)
    for report in reports:
        out.print(f"{report.scan_id}:", highlight=False)
        print_upload(report.scan_id, report.section())
    if any(not r.complete for r in reports):
        raise typer.Exit(1)
