"""``framesift repick``: new selection parameters on stored results, without decoding again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from jobs.cli.common import (OutOption, ProgressOption, StoreOption, fail, load_settings,
                             path_or_none)


def repick(
    scan_ids: Annotated[Optional[list[str]], typer.Argument(
        help="scan ids of stored results (or give --manifest)", show_default=False)] = None,
    top_k: Annotated[Optional[int], typer.Option(help="golden frames per video")] = None,
    min_gap_s: Annotated[Optional[float], typer.Option(help="seconds between picks")] = None,
    motion_max: Annotated[Optional[float], typer.Option(help="stillness bar in source px")] = None,
    still_window_s: Annotated[Optional[float], typer.Option(
        help="seconds around a frame that must be still too")] = None,
    min_hold_s: Annotated[Optional[float], typer.Option(help="shortest steady hold")] = None,
    edge_margin_s: Annotated[Optional[float], typer.Option(
        help="distance of first picks from a hold's ends")] = None,
    hold_sharpness_ratio: Annotated[Optional[float], typer.Option(
        help="a hold is sharp at this share of the sharpest hold's sharpness")] = None,
    dup_max_diff: Annotated[Optional[float], typer.Option(
        help="near-duplicate bar, mean grey-level difference of thumbnails")] = None,
    manifest: Annotated[Optional[Path], typer.Option(
        help="re-pick the scans of a batch manifest (as given to `framesift golden`)")] = None,
    out_dir: OutOption = None,
    store: StoreOption = None,
    threads: Annotated[Optional[int], typer.Option(help="scans re-picked at once [CPUs]")] = None,
    progress: ProgressOption = True,
) -> None:
    """Pick again from the stored scores with new selection parameters: only new picks are
    decoded (from the video the result names), frames no longer picked are removed."""
    from actors.errors import FramesiftError
    from jobs.cli.golden import BatchProgress, manifest_entries
    from jobs.cli.results import print_results
    from jobs.golden.repick import stream_repick
    from jobs.sources import SourceOptions
    from jobs.stores import make_store
    from jobs.stores.base import validate_scan_id

    settings = load_settings(out_dir=path_or_none(out_dir), store=store)
    if manifest is not None:
        if scan_ids:
            fail("--manifest lists the scans; give no SCAN_ID with it")
        ids = [e.scan_id for e in manifest_entries(manifest, None, None)]
    elif scan_ids:
        try:
            ids = [validate_scan_id(s) for s in scan_ids]
        except FramesiftError as exc:
            fail(str(exc))
    else:
        fail("give one or more SCAN_IDs, or --manifest FILE")
    changes = {"top_k": top_k, "min_gap_s": min_gap_s, "motion_max": motion_max,
               "still_window_s": still_window_s, "min_hold_s": min_hold_s,
               "edge_margin_s": edge_margin_s, "hold_sharpness_ratio": hold_sharpness_ratio,
               "dup_max_diff": dup_max_diff}
    try:
        result_store = make_store(settings)
    except FramesiftError as exc:
        fail(str(exc))
    bar = BatchProgress(progress and len(ids) > 1, len(ids))
    results = []
    try:
        for result in stream_repick(ids, changes, result_store,
                                    threads=threads or len(os.sched_getaffinity(0)),
                                    sources=SourceOptions.from_settings(settings),
                                    hooks=bar.hooks()):
            results.append(result)
    finally:
        bar.close()
    if len(results) == 1 and results[0].ok:
        print_results(results)
    if any(not r.ok for r in results):
        raise typer.Exit(2)
