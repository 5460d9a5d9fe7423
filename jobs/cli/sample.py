"""``framesift sample-video``: a synthetic scan video with its ground truth."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from jobs.cli.common import fail, out

if TYPE_CHECKING:
    from actors.synthetic import SampleTruth
    from actors.synthetic_camera import CameraTruth

SCENARIOS = ("windows", "holds", "camera")


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
    scenario: Annotated[Optional[str], typer.Option(
        help="windows (sharp/blurred/shaking/pan windows), holds (a hand-held scan; 5 holds "
             "unless --holds) or camera (real camera conditions: sensor noise, a small moving "
             "subject, flicker, a hand-moved item, shake, a focus pull; about 12.6 s, --seconds "
             "and --vfr are not used); default: holds when --holds is given, else windows")] = None,
) -> None:
    """Write a synthetic scan video and its ground truth (<path>.truth.json)."""
    from actors.synthetic import make_sample_video, truth_path
    from actors.synthetic_holds import make_hold_video

    chosen = scenario or ("holds" if holds else "windows")
    if chosen not in SCENARIOS:
        fail(f"bad sample-video option: --scenario must be one of {', '.join(SCENARIOS)}, got {chosen!r}")
    if holds and chosen != "holds":
        fail(f"bad sample-video option: --holds {holds} makes a holds video, not --scenario {chosen}")
    try:
        w, h = (int(x) for x in size.lower().split("x"))
        truth: SampleTruth | CameraTruth
        if chosen == "camera":
            from actors.synthetic_camera import make_camera_video

            camera = make_camera_video(path, size=(w, h), fps=fps, seed=seed, bframes=bframes,
                                       gop=gop)
            what = "segments " + ", ".join(f"{name} [{start}, {stop})"
                                           for name, start, stop in camera.segments)
            truth = camera
        elif chosen == "holds":
            truth = make_hold_video(path, holds=holds or 5, size=(w, h), fps=fps, seed=seed,
                                    bframes=bframes, gop=gop)
            what = f"{len(truth.holds)} steady holds"
        else:
            truth = make_sample_video(path, seconds=seconds, size=(w, h), fps=fps, seed=seed,
                                      bframes=bframes, gop=gop, variable_fps=vfr)
            sharp = sum(1 for w_ in truth.windows if w_.kind == "sharp_still")
            what = f"{sharp} sharp+still windows"
    except ValueError as exc:
        fail(f"bad sample-video option: {exc}")
    out.print(f"wrote {path} ({truth.frame_count} frames, {truth.width}x{truth.height}, "
              f"{what}) and {truth_path(path)}", highlight=False, soft_wrap=True)
