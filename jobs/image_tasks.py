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
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence

import ray

from actors.image_analysis import ImageError, ImageLimits, analyze_image


@dataclass(frozen=True)
class ImageItem:
    index: int
    filename: str | None
    data: bytes | None
    error: tuple[str, str] | None = None  # (code, message) found before analysis


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


async def analyze_stream(items: Sequence[ImageItem], *, concurrency: int, task_cpus: float,
                         limits: ImageLimits, analysis_long_side: int = 640,
                         detect: Callable[[bytes], Awaitable[dict[str, Any]]] | None = None,
                         ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ``(event, data)`` pairs as images finish."""
    t0 = time.perf_counter()
    total, analyzed, failed, item_s = len(items), 0, 0, 0.0
    queue = list(items)
    running: dict[asyncio.Task, ImageItem] = {}

    async def analysis(data: bytes) -> dict[str, Any]:
        return await _analyze_remote.options(num_cpus=task_cpus).remote(data, limits,
                                                                        analysis_long_side)

    async def run(item: ImageItem) -> dict[str, Any]:
        if detect is None:
            return await analysis(item.data)
        outcome, found = await asyncio.gather(analysis(item.data), detect(item.data))
        if "ok" in outcome:
            if "error" in found:  # decodable for the analysis but refused by the detector
                return {"error": {"code": f"detection_{found['error']['code']}",
                                  "message": found["error"]["message"]}}
            outcome["ok"]["detections"] = found["detections"]
        return outcome

    def progress() -> dict[str, Any]:
        done = analyzed + failed
        return {"current": done, "total": total,
                "percentage": round(100.0 * done / total, 2) if total else 100.0,
                "analyzed": analyzed, "failed": failed}

    try:
        while queue or running:
            while queue and len(running) < concurrency:
                item = queue.pop(0)
                if item.error is not None:
                    failed += 1
                    yield "error", {"index": item.index, "filename": item.filename,
                                    "code": item.error[0], "message": item.error[1]}
                    yield "progress", progress()
                    continue
                running[asyncio.create_task(run(item))] = item
            if not running:
                continue
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                item = running.pop(task)
                try:
                    outcome = task.result()
                except Exception as exc:  # noqa: BLE001 - one image never stops the others
                    outcome = {"error": {"code": "analysis_failed", "message": str(exc)}}
                if "ok" in outcome:
                    analyzed += 1
                    item_s += outcome["ok"]["elapsed_s"]
                    yield "result", {"index": item.index, "filename": item.filename, **outcome["ok"]}
                else:
                    failed += 1
                    yield "error", {"index": item.index, "filename": item.filename,
                                    **outcome["error"]}
                yield "progress", progress()
    finally:
        for task in running:
            task.cancel()
    elapsed = time.perf_counter() - t0
    yield "summary", {"total": total, "analyzed": analyzed, "failed": failed,
                      "concurrency": concurrency, "elapsed_s": round(elapsed, 4),
                      "sum_item_s": round(item_s, 4),
                      "speedup": round(item_s / elapsed, 3) if elapsed > 0 else None}
