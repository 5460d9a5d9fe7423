"""``framesift upscale-video``: frames in chunks -> Upscaler actor pool -> encoded segments ->
one output (segments remuxed in order, audio copied from the input). Every frame keeps its
pts, so the frame count and timing of the result are those of the input."""

from __future__ import annotations

import heapq
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import av

from actors.frames import SegmentConfig, SegmentUpscaler
from actors.records import VideoChunk
from actors.upscaler import UpscalerConfig
from actors.video import probe
from actors.video_open import open_container


@dataclass
class UpscaleResult:
    output: str
    frames: int
    segments: int
    workers: int
    width: int
    height: int
    wall_s: float
    model_s: float
    audio_streams: int
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _packets(container: av.container.InputContainer, stream: Any) -> Iterator[av.Packet]:
    for packet in container.demux(stream):
        if packet.size == 0 or packet.dts is None:
            continue
        yield packet


def _timed(packets: Iterator[av.Packet], order: int) -> Iterator[tuple[float, int, av.Packet]]:
    for p in packets:
        yield float((p.dts or 0) * (p.time_base or 0)), order, p


def concat_segments(segments: list[str], source: str, output: str) -> int:
    """Remux the video packets of ``segments`` (in order) and the source's audio into
    ``output``; no re-encoding. Returns the number of audio streams copied."""
    with open_container(segments[0]) as first:
        template = first.streams.video[0]
        with open_container(source) as src, av.open(output, "w") as out:
            vout = out.add_stream_from_template(template)
            audio_in = list(src.streams.audio)
            audio_out = {s.index: out.add_stream_from_template(s) for s in audio_in}

            def video_packets() -> Iterator[av.Packet]:
                for seg in segments:
                    with open_container(seg) as c:
                        yield from _packets(c, c.streams.video[0])

            streams = [_timed(video_packets(), 0)]
            if audio_in:
                streams.append(_timed(_packets(src, audio_in), 1))
            for _, _, packet in heapq.merge(*streams, key=lambda t: (t[0], t[1])):
                packet.stream = vout if packet.stream.type == "video" else audio_out[packet.stream.index]
                out.mux(packet)
    return len(audio_out)


def upscale_video(path: str, output: str, upscaler: UpscalerConfig, *, workers: int = 1,
                  chunk_frames: int = 64, num_gpus: float = 0.0, crf: int = 18,
                  work_dir: str | None = None) -> UpscaleResult:
    """Upscale every frame of ``path`` on an actor pool of ``workers`` (Ray must be up)."""
    import ray.data

    from jobs.units import map_stage

    t0 = time.perf_counter()
    info = probe(path)
    chunks = VideoChunk.split("video", info, chunk_frames)
    out_path = Path(output)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    seg_dir = Path(work_dir) if work_dir else out_path.with_name(out_path.name + ".segments")
    seg_dir.mkdir(parents=True, exist_ok=True)
    config = SegmentConfig(upscaler, str(seg_dir.resolve()), crf=crf, cpus=upscaler.cpus,
                           gpus=num_gpus)
    ds: ray.data.Dataset = ray.data.from_items([c.to_row() for c in chunks],
                                               override_num_blocks=len(chunks))
    ds = map_stage(ds, SegmentUpscaler(config), actors=True,
                   concurrency=max(1, min(workers, len(chunks))), batch_size=1)
    rows: list[tuple[int, str, int, float]] = []
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=0):
        rows.extend(zip(batch["start"].tolist(), batch["segment"].tolist(),
                        batch["frames"].tolist(), batch["model_s"].tolist()))
    rows.sort()  # keyed by start frame, never by arrival order
    if [r[0] for r in rows] != [c.frames.start for c in chunks]:
        raise RuntimeError(f"expected {len(chunks)} segments, got starts {[r[0] for r in rows]}")
    t_up = time.perf_counter()
    tmp = out_path.with_name(out_path.stem + ".part" + out_path.suffix)
    audio = concat_segments([r[1] for r in rows], path, str(tmp))
    tmp.replace(out_path)
    shutil.rmtree(seg_dir, ignore_errors=True)
    result_info = probe(str(out_path))
    wall = time.perf_counter() - t0
    return UpscaleResult(str(out_path.resolve()), result_info.frame_count, len(rows), workers,
                         result_info.width, result_info.height, round(wall, 3),
                         round(sum(r[3] for r in rows), 3), audio,
                         {"upscale_s": round(t_up - t0, 3),
                          "concat_s": round(time.perf_counter() - t_up, 3)})
