"""The ``framesift`` Typer app: one command per module in this package, registered here.

Command modules never import this module; they share ``jobs.cli.common``.
"""

from __future__ import annotations

import typer

from jobs.cli import golden, repick, sample, service, sync, video_jobs

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="framesift: distributed golden-frame selection and video processing on Ray.")

app.command("golden")(golden.golden)
app.command("repick")(repick.repick)
app.command("sync")(sync.sync)
app.command("sample-video")(sample.sample_video)
app.command("serve")(service.serve_command)
app.command("detect-video")(video_jobs.detect_video)
app.command("upscale-video")(video_jobs.upscale_video)
app.command("annotate")(video_jobs.annotate)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
