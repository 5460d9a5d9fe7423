"""The golden-frame job: source -> probe -> plan -> score -> select -> extract -> store.

``run_golden`` runs it over one or many videos through the streaming pipeline of
``jobs.golden.stream`` (``stream_golden`` yields each video's result as it finishes);
``finish_video`` is the last step (``jobs.golden.finish``). ``python -m jobs.golden`` (the
``ray job submit`` entrypoint) runs it from the command line.
"""

from __future__ import annotations

from jobs.golden.finish import Hooks, VideoJob, finish_video, scores_table
from jobs.golden.manifest import GoldenResult
from jobs.golden.params import GoldenParams
from jobs.golden.stream import VideoOutcome, run_golden, stream_golden

__all__ = ["GoldenParams", "GoldenResult", "Hooks", "VideoJob", "VideoOutcome", "finish_video",
           "run_golden", "scores_table", "stream_golden"]
