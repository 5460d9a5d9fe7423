"""Frame chunks: decode a frame range once (every Nth frame) into a batch of BGR frames, and
upscale a range into an encoded video segment. Rows are plain columns for Ray Data."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import av
import numpy as np

from actors.records import FrameRange, VideoChunk
from actors.stage import Resources, Stage
from actors.video_decode import iter_frames, to_display_bgr


@dataclass(frozen=True)
class DecoderConfig:
    threads: int = 1
    cpus: float = 1.0


class FrameDecoder(Stage[dict[str, Any], dict[str, Any]]):
    """Chunk rows -> one row per wanted frame: ``frame`` (upright BGR), index, time."""

    name = "decode"

    def __init__(self, config: DecoderConfig = DecoderConfig()) -> None:
        self.config = config

    @property
    def resources(self) -> Resources:
        return Resources(self.config.cpus)

    def setup(self) -> None:
        import cv2

        cv2.setNumThreads(max(1, int(self.config.cpus)))

    def process(self, batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        ids, idx, times, frames = [], [], [], []
        for chunk in VideoChunk.from_batch(batch):
            wanted = chunk.wanted()
            if not wanted:
                continue
            span = FrameRange(wanted[0], wanted[-1] + 1)
            for i, frame in iter_frames(chunk.path, span, chunk.index, threads=self.config.threads):
                if i % chunk.stride == 0:
                    ids.append(chunk.video_id)
                    idx.append(i)
                    times.append(chunk.index.time_s(i))
                    frames.append(to_display_bgr(frame, chunk.rotation,
                                                 (chunk.width, chunk.height)))
        yield {"video_id": np.asarray(ids, dtype=object), "frame_index": np.asarray(idx, np.int64),
                "time_s": np.asarray(times, np.float64),
                "frame": np.stack(frames) if frames else np.zeros((0, 1, 1, 3), np.uint8)}


@dataclass(frozen=True)
class SegmentConfig:
    """Upscale a chunk and encode it as an H.264 segment (no B-frames: segments concatenate
    with monotonic timestamps) in ``out_dir``."""

    upscaler: Any  # UpscalerConfig
    out_dir: str
    crf: int = 18
    preset: str = "veryfast"
    decode_threads: int = 1
    cpus: float = 1.0
    gpus: float = 0.0


class SegmentUpscaler(Stage[dict[str, Any], dict[str, Any]]):
    """Decode a range, upscale every frame (model loaded once per actor), encode a segment
    keeping every frame's pts. Encoding runs on a background thread beside the model."""

    name = "upscale-segment"

    def __init__(self, config: SegmentConfig) -> None:
        self.config = config
        self.upscaler: Any = None

    @property
    def resources(self) -> Resources:
        return Resources(self.config.cpus, self.config.gpus)

    def setup(self) -> None:
        from actors.upscaler import Upscaler

        self.upscaler = Upscaler(self.config.upscaler)
        self.upscaler.setup()

    def encode_chunk(self, chunk: VideoChunk) -> tuple[str, int, float]:
        """(segment path, frames written, seconds spent in the model)."""
        import time

        out = Path(self.config.out_dir) / f"{chunk.video_id}-{chunk.frames.start:08d}.mkv"
        tmp = out.with_suffix(".part.mkv")
        frames_q: queue.Queue = queue.Queue(maxsize=4)
        written = 0
        errors: list[BaseException] = []

        def encoder() -> None:
            nonlocal written
            container = None
            stream = None
            try:
                container = av.open(str(tmp), "w")
                while (item := frames_q.get()) is not None:
                    pts, img = item
                    if stream is None:
                        stream = container.add_stream("libx264", options={
                            "crf": str(self.config.crf), "preset": self.config.preset, "bf": "0"})
                        stream.width, stream.height = img.shape[1], img.shape[0]
                        stream.pix_fmt = "yuv420p"
                        stream.time_base = chunk.index.time_base
                        stream.codec_context.time_base = chunk.index.time_base
                    vf = av.VideoFrame.from_ndarray(img, format="bgr24")
                    vf.pts, vf.time_base = pts, chunk.index.time_base
                    for packet in stream.encode(vf):
                        container.mux(packet)
                    written += 1
                if stream is not None:
                    for packet in stream.encode():
                        container.mux(packet)
            except BaseException as exc:  # noqa: BLE001 - reported by the caller
                errors.append(exc)
                while frames_q.get() is not None:  # drain so the producer never blocks
                    pass
            finally:
                if container is not None:
                    container.close()

        thread = threading.Thread(target=encoder, daemon=True)
        thread.start()
        model_s = 0.0
        try:
            for i, frame in iter_frames(chunk.path, chunk.frames, chunk.index,
                                        threads=self.config.decode_threads):
                t0 = time.perf_counter()
                up = self.upscaler.upscale(to_display_bgr(frame, chunk.rotation,
                                                          (chunk.width, chunk.height)))
                model_s += time.perf_counter() - t0
                frames_q.put((chunk.index.pts[i], up))
        finally:
            frames_q.put(None)
            thread.join()
        if errors:
            raise errors[0]
        tmp.replace(out)
        return str(out), written, model_s

    def process(self, batch: dict[str, Any]) -> Iterator[dict[str, Any]]:
        if self.upscaler is None:
            self.setup()
        starts, paths, counts, model_s = [], [], [], []
        for chunk in VideoChunk.from_batch(batch):
            path, n, secs = self.encode_chunk(chunk)
            starts.append(chunk.frames.start)
            paths.append(path)
            counts.append(n)
            model_s.append(secs)
        yield {"start": np.asarray(starts, np.int64), "segment": np.asarray(paths, dtype=object),
                "frames": np.asarray(counts, np.int64), "model_s": np.asarray(model_s, np.float64)}
