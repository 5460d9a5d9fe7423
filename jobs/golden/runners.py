"""Where the golden stages run: one interface, three runners.

- ``SequentialRunner``: every stage in this process, one message after another. The bit-exact
  reference every other runner is compared to.
- ``ThreadRunner``: the same stages on a pool of threads in this process, each thread with its
  own stages (decode, resize, Laplacian and flow release the GIL). What a laptop run uses.
- ``RayRunner`` (``jobs.golden.ray_runner``): streaming Ray Data plus driver-submitted tasks.

A runner takes the run's inputs, the stages' config and the driver's ``Collector``, and
yields each video's outcome as it finishes. Results are the same whichever runs them.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from typing import Iterator, Sequence

from jobs.golden.collector import Collector, VideoOutcome
from jobs.golden.messages import ChunkTask, Message, VideoInput, VideoScores
from jobs.golden.stages import FinishStage, GoldenConfig, ScoreStage, VideoStage


class Runner(ABC):
    """Runs the golden stages over a run's inputs."""

    name = "runner"

    @abstractmethod
    def cpus(self) -> int:
        """The CPUs to plan the run for (starts the runner's cluster when it needs one)."""

    @abstractmethod
    def run(self, inputs: Sequence[VideoInput], config: GoldenConfig,
            collector: Collector) -> Iterator[VideoOutcome]:
        """Every input through the stages; each video's outcome as it finishes."""


class SequentialRunner(Runner):
    """The stages in this process, in order: the reference."""

    name = "sequential"

    def cpus(self) -> int:
        return 1

    def run(self, inputs: Sequence[VideoInput], config: GoldenConfig,
            collector: Collector) -> Iterator[VideoOutcome]:
        videos, scoring = VideoStage(config), ScoreStage(config)
        finishing = FinishStage(config)
        for item in inputs:
            for message in videos.process(item):
                for out in scoring.process(message):
                    ready = collector.take(out)
                    if ready is not None:
                        for done in finishing.process(ready):
                            collector.take(done)
                yield from collector.drain()


class ThreadRunner(Runner):
    """The stages on ``threads`` threads of this process, each with its own scorer (OpenCV on
    one thread each). At most twice as many videos are in flight as there are threads."""

    name = "threads"

    def __init__(self, threads: int) -> None:
        self.threads = max(1, threads)

    def cpus(self) -> int:
        return self.threads

    def run(self, inputs: Sequence[VideoInput], config: GoldenConfig,
            collector: Collector) -> Iterator[VideoOutcome]:
        one_each = replace(config, params=replace(
            config.params, scorer=replace(config.params.scorer, cpus=1)))
        local = threading.local()

        def stages() -> tuple[VideoStage, ScoreStage, FinishStage]:
            if getattr(local, "stages", None) is None:
                local.stages = (VideoStage(one_each), ScoreStage(one_each),
                                FinishStage(one_each))
            return local.stages

        def probe(item: VideoInput) -> list[Message]:
            return list(stages()[0].process(item))

        def score(task: ChunkTask) -> list[Message]:
            return list(stages()[1].process(task))

        def finish(scored: VideoScores) -> list[Message]:
            return list(stages()[2].process(scored))

        todo = iter(inputs)
        pending: set[Future[list[Message]]] = set()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="golden") as pool:
            while True:
                while len(pending) < 2 * self.threads:  # a batch is not all queued at once
                    item = next(todo, None)
                    if item is None:
                        break
                    pending.add(pool.submit(probe, item))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    for message in future.result():
                        if isinstance(message, ChunkTask):
                            pending.add(pool.submit(score, message))
                            continue
                        ready = collector.take(message)
                        if ready is not None:
                            pending.add(pool.submit(finish, ready))
                yield from collector.drain()
