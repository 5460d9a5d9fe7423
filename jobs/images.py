"""Batch image analysis on Ray tasks with a sliding concurrency window.

A new image starts as soon as one finishes (no batch barrier); events come back in completion
order: ``result`` or ``error`` per image, ``progress`` after each, ``summary`` at the end.
With a ``detect`` callable (the Detector deployment), each image is also sent to it while its
analysis runs, and its result carries the detections.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Sequence

import ray

from actors.image_analysis import ImageError, ImageLimits, analyze_image


@dataclass(frozen=True)
class ImageItem:
    """One image of a batch: its bytes, or ``load`` that reads them when the image's turn
    comes (so a batch never has to be in memory at once), or an error found before."""

    index: int
    filename: str | None
    data: bytes | None = None
    error: tuple[str, str] | None = None  # (code, message) found before analysis
    load: Callable[[], Awaitable[bytes]] | None = None  # may raise ImageError


def _analyze(data: bytes, limits: ImageLimits, analysis_long_side: int) -> dict[str, Any]:
    import cv2

    from actors.memory import keep_large_allocations_on_heap

    cv2.setNumThreads(1)
    keep_large_allocations_on_heap()
    try:
        return {"ok": analyze_image(data, limits, analysis_long_side=analysis_long_side).to_dict()}
    except ImageError as exc:
        return {"error": {"code": exc.code, "message": str(exc)}}


_analyze_remote = ray.remote(max_retries=1)(_analyze)


@dataclass
class _Tally:
    """Counts of a batch so far and the ``progress`` event they make."""

    total: int
    analyzed: int = 0
    failed: int = 0
    item_s: float = 0.0

    def progress(self) -> dict[str, Any]:
        done = self.analyzed + self.failed
        return {"current": done, "total": self.total,
                "percentage": round(100.0 * done / self.total, 2) if self.total else 100.0,
                "analyzed": self.analyzed, "failed": self.failed}

    def outcome(self, item: ImageItem, outcome: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Count one finished image and return its ``result`` or ``error`` event."""
        where = {"index": item.index, "filename": item.filename}
        if "ok" in outcome:
            self.analyzed += 1
            self.item_s += outcome["ok"]["elapsed_s"]
            return "result", {**where, **outcome["ok"]}
        self.failed += 1
        return "error", {**where, **outcome["error"]}


def _analyzer(task_cpus: float, limits: ImageLimits, analysis_long_side: int,
              detect: Callable[[bytes], Awaitable[dict[str, Any]]] | None,
              ) -> Callable[[bytes], Coroutine[Any, Any, dict[str, Any]]]:
    """``data -> {"ok": result} | {"error": ...}``: the analysis as a Ray task, with the
    detector's answer merged in when ``detect`` is given (both run at once)."""
    async def analysis(data: bytes) -> dict[str, Any]:
        return await _analyze_remote.options(num_cpus=task_cpus).remote(data, limits,
                                                                        analysis_long_side)

    async def run(data: bytes) -> dict[str, Any]:
        if detect is None:
            return await analysis(data)
        outcome, found = await asyncio.gather(analysis(data), detect(data))
        if "ok" in outcome:
            if "error" in found:  # decodable for the analysis but refused by the detector
                return {"error": {"code": f"detection_{found['error']['code']}",
                                  "message": found["error"]["message"]}}
            outcome["ok"]["detections"] = found["detections"]
        return outcome

    return run


async def analyze_stream(items: Sequence[ImageItem], *, concurrency: int, task_cpus: float,
                         limits: ImageLimits, analysis_long_side: int = 640,
                         detect: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None,
                         ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ``(event, data)`` pairs as images finish."""
    t0 = time.perf_counter()
    tally = _Tally(len(items))
    run = _analyzer(task_cpus, limits, analysis_long_side, detect)
    queue = list(items)
    running: dict[asyncio.Task, ImageItem] = {}
    try:
        while queue or running:
            while queue and len(running) < concurrency:
                item = queue.pop(0)
                data, error = item.data, item.error
                if error is None and data is None and item.load is not None:
                    try:
                        data = await item.load()
                    except ImageError as exc:
                        error = (exc.code, str(exc))
                if error is not None or data is None:  # refused before analysis (size, empty)
                    code, message = error or ("empty_image", "no image data")
                    yield tally.outcome(item, {"error": {"code": code, "message": message}})
                    yield "progress", tally.progress()
                    continue
                running[asyncio.create_task(run(data))] = item
                del data  # the task holds it until the image is analysed
            if not running:
                continue
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                item = running.pop(task)
                try:
                    outcome = task.result()
                except Exception as exc:  # noqa: BLE001 - one image never stops the others
                    outcome = {"error": {"code": "analysis_failed", "message": str(exc)}}
                yield tally.outcome(item, outcome)
                yield "progress", tally.progress()
    finally:
        for task in running:
            task.cancel()
    elapsed = time.perf_counter() - t0
    yield "summary", {"total": tally.total, "analyzed": tally.analyzed, "failed": tally.failed,
                      "concurrency": concurrency, "elapsed_s": round(elapsed, 4),
                      "sum_item_s": round(tally.item_s, 4),
                      "speedup": round(tally.item_s / elapsed, 3) if elapsed > 0 else None}
