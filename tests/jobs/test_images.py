"""Batch image analysis (jobs/images.py) reads each image only when its turn comes."""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from actors.image_analysis import ImageError, ImageLimits


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return cv2.imencode(".jpg", rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))[1].tobytes()


def test_a_batch_holds_about_its_window_of_images_not_all_of_them(ray_cluster):
    from jobs.images import ImageItem, analyze_stream

    loaded: list[int] = []
    finished_when: list[int] = []  # how many images had been read when each result came

    def loader(i: int):
        async def load() -> bytes:
            loaded.append(i)
            if i == 5:
                raise ImageError("image_too_large", "image is larger than 10 bytes")
            return _jpeg(i)
        return load

    items = [ImageItem(i, f"{i}.jpg", load=loader(i)) for i in range(12)]

    async def run() -> list:
        events = []
        async for event, data in analyze_stream(items, concurrency=2, task_cpus=1.0,
                                                limits=ImageLimits()):
            if event in ("result", "error"):
                finished_when.append(len(loaded))
            events.append((event, data))
        return events

    events = asyncio.run(run())
    assert sorted(loaded) == list(range(12))
    errors = [d for e, d in events if e == "error"]
    assert [(d["index"], d["code"]) for d in errors] == [(5, "image_too_large")]
    assert len([e for e, _ in events if e == "result"]) == 11
    # when the first image was done, only the first window had been read (2, +1 refused one
    # at most), not the batch
    assert finished_when[0] <= 3, finished_when
