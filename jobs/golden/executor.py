"""Where a golden-frame run executes: in this process, on a Ray that is already up, or on a
private Ray started for it. Pure decisions (plus two cheap look-ups: a local Ray's address
file and a video's header); nothing here imports Ray.

Starting Ray costs seconds before the first frame is scored (the cluster, then the first
pipeline's worker processes), and on the machine the command runs on it buys no CPUs that
threads in this process do not have: the scorer's work (PyAV decode, OpenCV resize, Laplacian
and optical flow) runs without the GIL. So a short job runs in process, and Ray pays when the
work is long enough that its processes' better CPU use outweighs its start-up, or when the
cluster has CPUs this machine has not (an address given).
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

ExecutorMode = Literal["auto", "in-process", "join", "private"]

# Measured with bench/golden.py on the 2-core development machine (README, Benchmarks): a
# private Ray's start plus its first pipeline's workers, and the first pipeline on a Ray that is
# already up (its worker processes still start per job).
PRIVATE_RAY_STARTUP_S = 20.0
JOIN_RAY_STARTUP_S = 8.0
# Scoring throughput of threads in this process relative to Ray's worker processes on the same
# CPUs (bench/golden.py: in_process_vs_ray_warm).
IN_PROCESS_EFFICIENCY = 0.85


class ExecutorError(Exception):
    """The requested way to run is not available (``--executor join`` without a Ray)."""

    code = "executor_unavailable"


@dataclass(frozen=True)
class ExecutorChoice:
    """How the run executes, and the sentence the plan line shows."""

    mode: Literal["in-process", "join", "private"]
    address: str | None
    threads: int
    reason: str

    @property
    def distributed(self) -> bool:
        return self.mode != "in-process"


def local_ray_address(temp_dir: str | None = None, timeout_s: float = 0.2) -> str | None:
    """The address of a Ray already running on this machine (``ray start --head``,
    ``framesift serve``), or None. Read from Ray's address file and checked with one TCP
    connect, so a stale file from a Ray that has stopped is not joined."""
    root = Path(temp_dir or os.environ.get("RAY_TMPDIR") or
                os.path.join(tempfile.gettempdir(), "ray"))
    try:
        address = (root / "ray_current_cluster").read_text().strip()
    except OSError:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return address
    except OSError:
        return None


def estimate_work_s(paths: Sequence[str], sample: int = 64) -> float | None:
    """Seconds of scoring on one CPU for local videos, from their headers (frame count and
    size; a header without either has its packets counted), with the planner's cost model.
    None when the work cannot be known here (a remote input): the run then goes to Ray. A file
    that is missing or not a video counts as no work (it fails at its probe). A long batch is
    estimated from ``sample`` of its videos, evenly spread, scaled to its length.
    """
    if not paths or any("://" in p for p in paths):
        return None
    step = max(1, len(paths) // sample) if len(paths) > sample else 1
    chosen = list(paths)[::step]
    total = 0.0
    for path in chosen:
        work = _header_work_s(path)
        if work is None:
            return None
        total += work
    return total * len(paths) / len(chosen)


def _header_work_s(path: str) -> float | None:
    import av

    from actors.errors import FramesiftError
    from actors.video import check_index
    from actors.video_open import open_container
    from jobs.golden.planner import CostModel

    if not os.path.isfile(path):
        return 0.0
    try:
        with open(path, "rb") as fh:  # an MP4 index claiming more than the file holds is never
            check_index(fh, path)     # given to FFmpeg (it fails at its probe)
    except FramesiftError:
        return 0.0
    try:
        with open_container(path) as container:
            if not container.streams.video:
                return 0.0
            stream = container.streams.video[0]
            rate = stream.average_rate
            frames = stream.frames
            if not frames and stream.duration and rate and stream.time_base:
                frames = int(stream.duration * stream.time_base * rate)
            if not frames and container.duration and rate:
                frames = int(container.duration / 1e6 * rate)
            if not frames:  # no count in the header (raw elementary streams, some Ogg): a
                frames = _counted_packets(container, stream)  # demux is cheap next to Ray's start
            if not frames:
                return None
            return frames * CostModel().frame_s(stream.codec_context.width,
                                                stream.codec_context.height)
    except av.error.FFmpegError:
        return 0.0  # not a video: the pipeline reports what is wrong with it


# A header without a frame count: packets are counted up to this many (a demux of a local
# file, no decoding: well under a second); a video longer than that is Ray's work anyway.
COUNT_PACKETS_UP_TO = 20_000


def _counted_packets(container, stream) -> int:
    """Video packets of a local file with data, up to ``COUNT_PACKETS_UP_TO``."""
    n = 0
    for packet in container.demux(stream):
        if packet.size:
            n += 1
            if n >= COUNT_PACKETS_UP_TO:
                break
    return n


def choose_executor(requested: ExecutorMode, *, address: str | None, local_ray: str | None,
                    work_s: float | None, cpus: int) -> ExecutorChoice:
    """How to run: the mode asked for, or with ``auto`` the fastest by estimate.

    ``address``: a cluster the user named (``--address``, ``FRAMESIFT_RAY_ADDRESS``, a
    ``ray job submit`` job); ``local_ray``: a Ray up on this machine (``local_ray_address``);
    ``work_s``: estimated scoring on one CPU (None: unknown); ``cpus``: this machine's CPUs.
    """
    cpus = max(1, cpus)
    if requested == "in-process":
        return ExecutorChoice("in-process", None, cpus, f"in process on {cpus} thread(s) "
                              "(--executor in-process)")
    if requested == "private":
        return ExecutorChoice("private", None, cpus, "a private local Ray (--executor private)")
    if requested == "join":
        target = address or local_ray
        if target is None:
            raise ExecutorError("--executor join: no Ray to join; start one (`ray start "
                                "--head`, `framesift serve`) or give --address")
        return ExecutorChoice("join", target, cpus, f"the Ray at {target} (--executor join)")
    if address:
        return ExecutorChoice("join", address, cpus, f"the Ray cluster at {address} (given)")
    if work_s is None:
        if local_ray:
            return ExecutorChoice("join", local_ray, cpus, f"the local Ray at {local_ray}: the "
                                  "inputs are remote, so their work is not known before they "
                                  "are probed")
        return ExecutorChoice("private", None, cpus, "a private local Ray: the inputs are remote, "
                              "so their work is not known before they are probed")
    in_process = work_s / (cpus * IN_PROCESS_EFFICIENCY)
    startup = JOIN_RAY_STARTUP_S if local_ray else PRIVATE_RAY_STARTUP_S
    on_ray = startup + work_s / cpus
    if in_process <= on_ray:
        return ExecutorChoice("in-process", None, cpus,
                              f"in process on {cpus} thread(s): about {work_s:.1f} CPU-s of "
                              f"work, ~{in_process:.1f} s here vs ~{on_ray:.1f} s with "
                              f"{'the local Ray' if local_ray else 'a private Ray'} "
                              f"(~{startup:.0f} s to start); --executor overrides")
    if local_ray:
        return ExecutorChoice("join", local_ray, cpus,
                              f"the local Ray at {local_ray}: about {work_s:.0f} CPU-s of work, "
                              f"~{on_ray:.0f} s there vs ~{in_process:.0f} s in process")
    return ExecutorChoice("private", None, cpus,
                          f"a private local Ray: about {work_s:.0f} CPU-s of work, "
                          f"~{on_ray:.0f} s with Ray vs ~{in_process:.0f} s in process")
