"""Chunk planning: how many ranges to split a video into, and where.

The previous system always split (``min(10, max(2, frames // 30))`` workers), so a 60-frame
clip paid for two containers. This planner estimates the work, splits only when the estimated
wall time drops, never makes more parallel chunks than the cluster has CPUs to run them, and
snaps chunk starts to just after a keyframe so that no chunk decodes a GOP it then throws away
(a chunk decodes ``[start-1, stop)``, and ``start-1`` on a keyframe seeks exactly there).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from actors.records import FrameIndex, FrameRange


@dataclass(frozen=True)
class CostModel:
    """Per-frame and per-chunk costs on one CPU, calibrated with ``bench/golden.py``."""

    decode_s_per_mpx: float = 0.0018  # H.264 decode, per megapixel of frame
    analysis_s_per_frame: float = 0.0026  # resize + Laplacian + DIS(ultrafast) at 640 px
    chunk_overhead_s: float = 0.08  # task dispatch, container open and seek, result transfer
    min_split_work_s: float = 0.5  # below this much work one chunk is always best

    def frame_s(self, width: int, height: int) -> float:
        return self.decode_s_per_mpx * width * height / 1e6 + self.analysis_s_per_frame


@dataclass(frozen=True)
class ChunkPlan:
    """The ranges a video is scored in, with the estimates that chose them."""

    frame_count: int
    chunks: tuple[FrameRange, ...]
    parallel_workers: int
    est_work_s: float
    est_wall_s: float
    lookback_frames: int  # frames decoded only to reach a chunk start (seek cost)
    baseline_workers: int  # what the previous system's rule would have used
    reason: str
    cpus: int = field(default=1)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["chunks"] = [[c.start, c.stop] for c in self.chunks]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ChunkPlan":
        """Inverse of ``to_dict`` (a plan read back from a manifest)."""
        return cls(**{**data, "chunks": tuple(FrameRange(int(a), int(b))
                                              for a, b in data["chunks"])})


# Tried per chunk count: how far (x chunk length) a start may move to sit after a keyframe.
_SNAP_TOLERANCES = (0.0, 0.125, 0.25, 0.5)


def baseline_workers(frame_count: int) -> int:
    """The previous system's rule, kept for comparison in every plan."""
    return min(10, max(2, frame_count // 30))


def _lookback(chunks: list[FrameRange], index: FrameIndex | None) -> int:
    if index is None:
        return 0
    total = 0
    for c in chunks:
        first = max(0, c.start - 1)
        total += first - index.keyframe_at_or_before(first)
    return total


def _boundaries(n: int, frame_count: int, index: FrameIndex | None, min_frames: int,
                snap: float = 0.25) -> list[FrameRange]:
    """n ranges of about equal length; a start moves to keyframe+1 when one lies within
    ``snap`` x chunk length of it."""
    ideal = [round(j * frame_count / n) for j in range(n + 1)]
    starts = [0]
    tolerance = int(snap * frame_count / n)
    for b in ideal[1:-1]:
        best = b
        if index is not None and tolerance > 0:
            candidates = [k + 1 for k in index.keyframes if abs(k + 1 - b) <= tolerance]
            if candidates:
                best = min(candidates, key=lambda s: (abs(s - b), s))
        if best - starts[-1] >= min_frames and frame_count - best >= min_frames:
            starts.append(best)
    starts.append(frame_count)
    return [FrameRange(a, b) for a, b in zip(starts, starts[1:])]


def plan_chunks(frame_count: int, width: int, height: int, *, cpus: int,
                index: FrameIndex | None = None, min_frames_per_chunk: int = 30,
                max_workers: int = 16, workers: int | None = None,
                cost: CostModel = CostModel()) -> ChunkPlan:
    """Split ``frame_count`` frames into chunks for ``cpus`` parallel workers.

    ``workers`` forces a chunk count (``--workers N``); otherwise the count minimising the
    estimated wall time is chosen, preferring fewer chunks when the gain is under 5%.
    """
    if frame_count <= 0:
        raise ValueError("frame_count must be positive")
    if cpus < 1 or min_frames_per_chunk < 1 or max_workers < 1:
        raise ValueError("cpus, min_frames_per_chunk and max_workers must be >= 1")
    frame_s = cost.frame_s(width, height)
    work_s = frame_count * frame_s
    most = max(1, min(max_workers, frame_count // min_frames_per_chunk))

    decode_frame_s = cost.decode_s_per_mpx * width * height / 1e6

    def wall(chunks: list[FrameRange]) -> float:
        """Estimated wall time: chunk costs (frames, look-back decode, overhead) placed on
        ``cpus`` workers longest first."""
        costs = sorted((len(c) * frame_s + _lookback([c], index) * decode_frame_s
                        + cost.chunk_overhead_s for c in chunks), reverse=True)
        loads = [0.0] * min(cpus, len(costs))
        for c in costs:
            loads[loads.index(min(loads))] += c
        return max(loads)

    if workers is not None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        chunks = _boundaries(min(workers, frame_count), frame_count, index, 1)
        reason = f"{workers} workers requested"
    elif work_s < cost.min_split_work_s or most == 1:
        chunks = [FrameRange(0, frame_count)]
        reason = (f"one chunk: about {work_s:.2f} s of work, splitting costs more than it saves"
                  if work_s < cost.min_split_work_s else
                  f"one chunk: fewer than 2 x {min_frames_per_chunk} frames")
    else:
        options = [min((_boundaries(n, frame_count, index, min_frames_per_chunk, snap)
                        for snap in _SNAP_TOLERANCES), key=wall)
                   for n in range(1, min(most, cpus * 2) + 1)]
        best = min(options, key=wall)
        for option in options:  # fewest chunks within 5% of the best
            if wall(option) <= wall(best) * 1.05:
                best = option
                break
        chunks = best
        reason = (f"{len(chunks)} chunks for {cpus} CPUs: estimated {wall(chunks):.2f} s "
                  f"vs {wall(options[0]):.2f} s in one chunk")
    return ChunkPlan(
        frame_count=frame_count,
        chunks=tuple(chunks),
        parallel_workers=min(len(chunks), cpus),
        est_work_s=round(work_s, 3),
        est_wall_s=round(wall(chunks), 3),
        lookback_frames=_lookback(chunks, index),
        baseline_workers=baseline_workers(frame_count),
        reason=reason,
        cpus=cpus,
    )


# -- the batch: whole videos or chunks ---------------------------------------------------------

# In a batch of whole-video units, a video with more estimated work than this (seconds on one
# CPU) is still split, so one long video does not become the batch's tail.
LONG_VIDEO_WORK_S = 60.0


@dataclass(frozen=True)
class BatchPlan:
    """How a batch is cut into units of work, decided from the batch before any probe.

    ``whole``: videos outnumber (or match) the CPUs: one unit per video keeps every CPU busy,
    pays no look-back decode or per-chunk overhead, and each video is finished by the task
    that scored it (throughput). ``chunks``: fewer videos than CPUs: each video is split for
    its share of the CPUs, so its chunks run side by side (latency).
    """

    videos: int
    cpus: int
    mode: Literal["whole", "chunks"]
    cpus_per_video: int
    reason: str
    workers: int | None = None
    long_video_s: float = LONG_VIDEO_WORK_S

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def plan_video(self, frame_count: int, width: int, height: int, *,
                   index: FrameIndex | None = None, min_frames_per_chunk: int = 30,
                   max_workers: int = 16, cost: CostModel = CostModel()) -> ChunkPlan:
        """The chunk plan of one video of this batch; its reason says what the batch chose."""
        common: dict[str, Any] = dict(index=index, min_frames_per_chunk=min_frames_per_chunk,
                                      max_workers=max_workers, cost=cost)
        if self.workers is not None:
            return plan_chunks(frame_count, width, height, cpus=self.cpus, workers=self.workers,
                               **common)
        if self.mode == "chunks":
            plan = plan_chunks(frame_count, width, height, cpus=self.cpus_per_video, **common)
            return plan if self.videos == 1 else replace(plan, reason=f"{self.reason}; {plan.reason}")
        work_s = frame_count * cost.frame_s(width, height)
        if work_s > self.long_video_s:
            plan = plan_chunks(frame_count, width, height, cpus=self.cpus, **common)
            return replace(plan, reason=f"{self.reason}; this one has about {work_s:.0f} s of "
                                        f"work: {plan.reason}")
        plan = plan_chunks(frame_count, width, height, cpus=1, workers=1, **common)
        return replace(plan, reason=f"one chunk: {self.reason}")


def plan_batch(videos: int, cpus: int, *, workers: int | None = None,
               long_video_s: float = LONG_VIDEO_WORK_S) -> BatchPlan:
    """Whole-video units when videos outnumber the CPUs, chunks within videos otherwise."""
    if videos < 1 or cpus < 1:
        raise ValueError("a batch needs at least one video and one CPU")
    if workers is not None:
        return BatchPlan(videos, cpus, "chunks", cpus, f"{workers} chunks per video requested "
                                                       "(--workers)", workers, long_video_s)
    if videos >= cpus:
        return BatchPlan(videos, cpus, "whole", 1,
                         f"{videos} videos for {cpus} CPUs: one unit per video (whole videos keep "
                         f"every CPU busy with no split overhead, and each is finished where it "
                         f"was scored); a video over {long_video_s:.0f} s of work is still split",
                         None, long_video_s)
    share = max(1, cpus // videos)
    return BatchPlan(videos, cpus, "chunks", share,
                     f"{videos} video{'s' if videos > 1 else ''} for {cpus} CPUs: chunks within "
                     f"each video, planned for {share} CPU{'s' if share > 1 else ''} each "
                     f"(latency: a video's chunks run side by side)", None, long_video_s)
