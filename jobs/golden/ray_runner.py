"""The golden stages on Ray: streaming Ray Data plus tasks the driver submits.

::

  from_items: one row per video (``VideoInput``)                                   driver
    -> VideoStage   probe and plan; a video planned as one chunk is scored and finished right
                    there; a longer one leaves as its ``PlannedVideo`` and one ``ChunkTask``
                    per chunk. Many short videos go a few to a task; each one's result still
                    leaves as soon as it is stored
    -> ScoreStage   (few videos: chunks within each) score one chunk; the rest passes through
    -> iter_batches progress and results; a chunked video's scores wait here until its last
                    chunk is in, then ``FinishStage`` runs as a Ray task (at most
                    ``max_finishing`` at once, harvested with ``ray.wait(timeout=0)``)

With many videos (whole-video units) there is no score operator: a video long enough to be
split anyway is rare there, and its chunks are scored by Ray tasks the driver submits, so a
finished video's row never waits behind a chunk stage's slot.

What was measured to pay (bench/batch.py, bench/golden.py): a target block size of one byte
(every message a task yields leaves as its own block at once), the outbox on the driver's node
(the driver's loop harvests tasks while a thread pumps Ray Data's blocking iterator), and the
backlog limit (no more rows are taken while chunk tasks fill every CPU).

Everything that reads a video runs on a worker. Killing the driver kills its tasks; committed
results stay, so a rerun with resume finishes the rest.
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Sequence

import pyarrow as pa

from actors.stage import Resources, Stage
from actors.scoring import ChunkScorer, ScorerConfig
from jobs.golden.collector import Collector, VideoOutcome
from jobs.golden.messages import (ChunkTask, Message, VideoFailed, VideoInput, VideoScores,
                                  from_table, to_table)
from jobs.golden.runners import Runner
from jobs.golden.stages import FinishStage, GoldenConfig, ScoreStage, VideoStage

# Ray resources of the finish tasks of chunked videos (a one-chunk video is finished in the
# task that scored it).
FINISH_CPUS = 1.0
# Whole-video units: at most this many videos in one video-stage task, and at least this many
# tasks per CPU (bench/batch.py).
MAX_VIDEOS_PER_TASK = 4
VIDEO_TASKS_PER_CPU = 6


class WireStage(Stage[pa.Table, pa.Table]):
    """A golden stage on the wire: ``WIRE_SCHEMA`` batches in, one single-row batch out per
    message, each yielded the moment it is made. Resources are the inner stage's."""

    def __init__(self, stage: VideoStage | ScoreStage) -> None:
        self.stage = stage
        self.name = stage.name  # type: ignore[misc]

    @property
    def resources(self) -> Resources:
        return self.stage.resources

    def setup(self) -> None:
        self.stage.ready()

    def process(self, batch: pa.Table) -> Iterator[pa.Table]:
        for item in from_table(batch):
            for message in self.stage.process(item):  # type: ignore[arg-type]
                yield to_table([message])


# A worker's scorers, kept across chunk tasks (its flow estimator is set up once); each task's
# stage takes the run's own config (its sources and store), never an earlier run's.
_WORKER_SCORERS: dict[ScorerConfig, ChunkScorer] = {}


def _score_task(config: GoldenConfig, task: ChunkTask) -> Message:
    """Ray task body: score one chunk of a long video in a batch of whole videos."""
    scorer = _WORKER_SCORERS.get(config.params.scorer)
    if scorer is None:
        scorer = _WORKER_SCORERS[config.params.scorer] = ChunkScorer(config.params.scorer)
        scorer.setup()
    stage = ScoreStage(config, scorer)
    [message] = stage.process(task)
    return message


def _finish_task(config: GoldenConfig, scored: VideoScores) -> Message:
    """Ray task body: finish a chunked video whose scores are all in."""
    [message] = FinishStage(config).process(scored)
    return message


def _task_failure(item: VideoInput, step: str, kind: str, exc: Exception,
                  task: ChunkTask | None = None, scored: VideoScores | None = None) -> VideoFailed:
    """A task whose retries are spent, as the video's failure."""
    first = str(exc).splitlines()[0] if str(exc) else ""
    video = task.video if task else (scored.video if scored else None)
    return VideoFailed(item, f"{step} failed: {type(exc).__name__}: {first}", f"{kind}_failed",
                       video, task.number if task else None)


class _Tasks:
    """The finish tasks of chunked videos (at most ``limit`` at once) and, in whole-video
    batches, the chunk tasks of the videos long enough to be split anyway."""

    def __init__(self, config: GoldenConfig, limit: int) -> None:
        import ray

        self.ray = ray
        self.limit = max(1, limit)
        self.config_ref = ray.put(config)
        self.finish_task = ray.remote(num_cpus=FINISH_CPUS, max_retries=3)(_finish_task)
        self.score_task = ray.remote(num_cpus=config.params.scorer.cpus,
                                     max_retries=3)(_score_task)
        self.finishing: dict[Any, VideoScores] = {}
        self.scoring: dict[Any, ChunkTask] = {}

    def finish(self, collector: Collector, scored: VideoScores) -> None:
        while len(self.finishing) >= self.limit:
            self.harvest(collector, block=True)
        self.finishing[self.finish_task.remote(self.config_ref, scored)] = scored

    def score(self, task: ChunkTask) -> None:
        self.scoring[self.score_task.remote(self.config_ref, task)] = task

    @property
    def backlogged(self) -> bool:
        """Chunk tasks enough to keep every CPU busy: the driver takes no more rows from the
        pipeline until one ends (a batch of long videos probes much faster than it scores,
        and the driver's state stays bounded by the videos in flight)."""
        return len(self.scoring) >= self.limit

    def pending(self) -> int:
        return len(self.finishing) + len(self.scoring)

    def harvest(self, collector: Collector, block: bool = False) -> None:
        running = [*self.finishing, *self.scoring]
        if not running:
            return
        ready, _ = self.ray.wait(running, num_returns=1 if block else len(running),
                                 timeout=None if block else 0)
        for ref in ready:
            try:
                message = self.ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the task died for good (retries spent)
                if ref in self.finishing:
                    scored = self.finishing[ref]
                    message = _task_failure(scored.video.input, "the finish step", "finish",
                                            exc, scored=scored)
                else:
                    task = self.scoring[ref]
                    message = _task_failure(task.video.input, "scoring a chunk", "score", exc,
                                            task=task)
            self.finishing.pop(ref, None)
            self.scoring.pop(ref, None)
            self.take(collector, message)

    def take(self, collector: Collector, message: Message) -> None:
        if isinstance(message, ChunkTask):  # a long video in a batch of whole videos
            self.score(message)
            return
        ready = collector.take(message)
        if ready is not None:
            self.finish(collector, ready)


class RayRunner(Runner):
    """Streaming Ray Data plus driver tasks on a Ray cluster (joined at ``address``, or a
    local one started with ``num_cpus``). ``plan_cpus``: plan for that many CPUs instead of
    the cluster's now (an autoscaling cluster: what it may scale to). ``max_finishing``: most
    chunked videos finishing at once (default 2 x the CPUs planned for)."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None,
                 plan_cpus: int | None = None, max_finishing: int | None = None) -> None:
        self.address, self.num_cpus = address, num_cpus
        self.plan_cpus, self.max_finishing = plan_cpus, max_finishing
        self._cpus: int | None = None

    def cpus(self) -> int:
        if self._cpus is None:
            from jobs.runtime import ensure_ray

            cluster_cpus = ensure_ray(self.address, self.num_cpus)
            self._cpus = self.plan_cpus or cluster_cpus
        return self._cpus

    def run(self, inputs: Sequence[VideoInput], config: GoldenConfig,
            collector: Collector) -> Iterator[VideoOutcome]:
        import ray.data

        from jobs.units import map_stage, run_stage_once

        cpus = self.cpus()
        tasks = _Tasks(config, self.max_finishing or 2 * cpus)
        whole = config.batch.mode == "whole"
        # Many short videos: a few per task (Ray Data's per-task cost, paid once per group),
        # still at least VIDEO_TASKS_PER_CPU tasks per CPU so the last ones leave no CPU idle.
        per_task = (max(1, min(MAX_VIDEOS_PER_TASK, len(inputs) // (cpus * VIDEO_TASKS_PER_CPU)))
                    if whole else 1)
        ds: ray.data.Dataset = ray.data.from_items(to_table(inputs).to_pylist(),
                                 override_num_blocks=-(-len(inputs) // per_task))
        # The video stage runs as tasks with Ray Data's default resources (one CPU: it scores
        # the one-chunk videos). Every task does a video's work, so it never runs far ahead of
        # the scoring (probes of many videos first would delay every result).
        ds = ds.map_batches(run_stage_once,  # type: ignore[arg-type] # fn_kwargs: the stage
                            fn_kwargs={"stage": WireStage(VideoStage(config))},
                            batch_size=per_task, batch_format="pyarrow", zero_copy_batch=True)
        if not whole:
            ds = map_stage(ds, WireStage(ScoreStage(config)), actors=config.params.actors,
                           concurrency=cpus, batch_format="pyarrow")
        # Messages are a few hundred bytes (a chunk's scores a few KiB): with a target block
        # size of one byte every message a task yields is its own block, sent on at once.
        ds.context.target_max_block_size = 1
        yield from self._drive(ds, tasks, collector)

    def _drive(self, ds: Any, tasks: _Tasks, collector: Collector) -> Iterator[VideoOutcome]:
        """Ray Data's iterator blocks, so a thread pumps its batches to this loop, which also
        harvests the finish (and chunk) tasks as they come."""
        batches: queue.Queue[Any] = queue.Queue(maxsize=16)
        stop = threading.Event()
        end = object()

        def pump() -> None:
            try:
                for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow",
                                             prefetch_batches=1):
                    while not stop.is_set():
                        try:
                            batches.put(batch, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                batches.put(end)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the driver loop
                batches.put(exc)

        thread = threading.Thread(target=pump, name="golden-stream", daemon=True)
        thread.start()
        try:
            while True:
                if tasks.backlogged:
                    tasks.harvest(collector, block=True)
                    yield from collector.drain()
                    continue
                # tasks running: look at them often; otherwise the next batch is all there is
                try:
                    item = batches.get(timeout=0.05 if tasks.pending() else 1.0)
                except queue.Empty:
                    item = None
                if item is end:
                    break
                if isinstance(item, BaseException):
                    raise item
                if item is not None:
                    for message in from_table(item):
                        tasks.take(collector, message)  # type: ignore[arg-type]
                tasks.harvest(collector)
                yield from collector.drain()
            while tasks.pending():
                tasks.harvest(collector, block=True)
                yield from collector.drain()
        finally:
            stop.set()
