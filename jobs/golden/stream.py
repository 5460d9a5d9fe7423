"""One streaming run from inputs to stored results, each video's result as it finishes.

``stream_golden`` turns the jobs into ``VideoInput`` messages (Supabase objects signed here;
an unreadable input fails at once), plans the batch for the runner's CPUs, and hands the
inputs, the stages' config and the driver's ``Collector`` to a runner
(``jobs.golden.runners``): ``sequential`` (the bit-exact reference), ``threads`` (in this
process) or ``ray`` (streaming Ray Data plus driver tasks, ``jobs.golden.ray_runner``). The
stages themselves are in ``jobs.golden.stages``, their messages in ``jobs.golden.messages``.

Everything that reads a video runs where the stages run: inputs are local paths every node
sees, http(s) URLs, s3:// or gs:// objects, or Supabase objects signed here
(``jobs.sources``). A video that fails (cannot be read, is not a video, disappears mid-run,
cannot be stored) becomes its own failed result; the others go on.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

from jobs.golden.collector import Collector, VideoOutcome
from jobs.golden.finish import Hooks, VideoJob
from jobs.golden.limits import WorkLimits
from jobs.golden.manifest import GoldenResult
from jobs.golden.messages import VideoInput
from jobs.golden.params import GoldenParams
from jobs.golden.planner import plan_batch
from jobs.golden.runners import Runner, SequentialRunner, ThreadRunner
from jobs.golden.stages import GoldenConfig, error_code, error_text
from jobs.sources import (InvalidSourceError, SourceOptions, check_input, display_name,
                          scheme_of)
from jobs.stores.base import Store


def _check_unique(jobs: Sequence[VideoJob]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.scan_id in seen:
            raise ValueError(f"scan id {job.scan_id!r} appears twice in one run")
        seen.add(job.scan_id)


def _inputs(jobs: Sequence[VideoJob], sources: SourceOptions,
            ) -> tuple[list[VideoInput], list[tuple[VideoInput, Exception]]]:
    """One input per readable job (Supabase objects signed now); the others fail at once."""
    inputs: list[VideoInput] = []
    failed: list[tuple[VideoInput, Exception]] = []
    valid: list[tuple[int, VideoJob]] = []
    for seq, job in enumerate(jobs):
        try:
            check_input(job.path)
        except InvalidSourceError as exc:
            failed.append((VideoInput(job.scan_id, job.path, display_name(job.path),
                                      job.item_type, seq), exc))
            continue
        valid.append((seq, job))
    signed: dict[str, Any] = {}
    supabase = [job.path for _, job in valid if scheme_of(job.path) == "supabase"]
    if supabase:
        from jobs.sources.supabase_inputs import sign_inputs

        signed = sign_inputs(supabase, sources.signed_url_expiry_s)
    for seq, job in valid:
        url = signed.get(job.path, job.path)
        item = VideoInput(job.scan_id, url if isinstance(url, str) else job.path,
                          display_name(job.path), job.item_type, seq)
        if isinstance(url, Exception):
            failed.append((item, url))
        else:
            inputs.append(item)
    return inputs, failed


def make_runner(distributed: bool = True, *, threads: int = 1, address: str | None = None,
                num_cpus: int | None = None, plan_cpus: int | None = None,
                max_finishing: int | None = None) -> Runner:
    """The runner a run's options name: Ray when ``distributed``, else threads of this
    process (``threads`` > 1) or the sequential reference."""
    if distributed:
        from jobs.golden.ray_runner import RayRunner

        return RayRunner(address, num_cpus, plan_cpus, max_finishing)
    return ThreadRunner(threads) if threads > 1 else SequentialRunner()


def stream_golden(jobs: Sequence[VideoJob], params: GoldenParams, store: Store, *,
                  distributed: bool = True, address: str | None = None,
                  num_cpus: int | None = None, plan_cpus: int | None = None,
                  hooks: Hooks | None = None, sources: SourceOptions | None = None,
                  max_finishing: int | None = None, keep_manifests: bool = True,
                  limits: WorkLimits | None = None, threads: int = 1,
                  runner: Runner | None = None) -> Iterator[VideoOutcome]:
    """Run the golden-frame job over ``jobs``; yield each video's outcome as it finishes.

    ``runner`` runs the stages; by default ``make_runner`` picks it from ``distributed``,
    ``threads``, ``address``, ``num_cpus``, ``plan_cpus`` and ``max_finishing``.
    ``keep_manifests=False`` drops each manifest once its result is yielded (a large batch:
    the store has them).
    """
    hooks = hooks or Hooks()
    sources = sources or SourceOptions()
    _check_unique(jobs)
    if not jobs:
        return
    runner = runner or make_runner(distributed, threads=threads, address=address,
                                   num_cpus=num_cpus, plan_cpus=plan_cpus,
                                   max_finishing=max_finishing)
    batch = plan_batch(len(jobs), max(1, runner.cpus()), workers=params.workers)
    if hooks.on_batch:
        hooks.on_batch(batch)
    inputs, failed = _inputs(jobs, sources)
    config = GoldenConfig(params, sources, batch, store, limits=limits or WorkLimits())
    collector = Collector(hooks, keep_manifests=keep_manifests)
    for item, exc in failed:
        collector.fail_input(item, error_text(exc), error_code(exc))
    yield from collector.drain()
    if inputs:
        yield from runner.run(inputs, config, collector)


def run_golden(jobs: Sequence[VideoJob], params: GoldenParams, store: Store, *,
               distributed: bool = True, address: str | None = None,
               num_cpus: int | None = None, hooks: Hooks | None = None,
               plan_cpus: int | None = None, sources: SourceOptions | None = None,
               limits: WorkLimits | None = None, threads: int = 1,
               runner: Runner | None = None) -> list[GoldenResult]:
    """``stream_golden`` collected: every video's result, in the order of ``jobs``."""
    results: dict[int, GoldenResult] = {}
    for outcome in stream_golden(jobs, params, store, distributed=distributed, address=address,
                                 num_cpus=num_cpus, plan_cpus=plan_cpus, hooks=hooks,
                                 sources=sources, limits=limits, threads=threads,
                                 runner=runner):
        results[outcome.seq] = outcome.result
    return [results[i] for i in range(len(jobs))]


__all__ = ["VideoOutcome", "make_runner", "run_golden", "stream_golden"]
