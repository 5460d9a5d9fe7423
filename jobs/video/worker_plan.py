"""How many model workers (GPUs, or CPUs on a CPU cluster) a video job should use.

The previous system's parallelization study: for a 25 ms/frame job, 2 GPUs cost 62% more and
4 GPUs 248% more, with no speed gain; every worker pays a start-up (container, model load,
weights/video download) that cheap per-frame work never earns back. So the plan estimates

    wall(n)        = startup_s + overhead_s * (n - 1) + frames * frame_s / n
    gpu_seconds(n) = n * wall(n)          (a worker is held from its start to the job's end)

and ``workers=auto`` picks the cheapest n whose speedup over one worker reaches the target,
the target being capped at 90% of the best speedup the free workers allow (so extra workers
are never bought for a marginal gain).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class WorkerCosts:
    """Per-worker start-up, split into its parts, and per-frame model time on one worker."""

    frame_s: float  # seconds of model work per frame on one worker
    container_s: float = 20.0  # node/container start (0 on a warm cluster)
    model_load_s: float = 5.0
    download_s: float = 5.0  # weights + input video onto the worker
    coordination_s: float = 2.0  # extra per additional worker: splitting, concat, scheduling

    @property
    def startup_s(self) -> float:
        return self.container_s + self.model_load_s + self.download_s


@dataclass(frozen=True)
class WorkerOption:
    workers: int
    wall_s: float
    gpu_seconds: float
    speedup: float
    cost_ratio: float  # gpu_seconds / gpu_seconds of one worker


@dataclass(frozen=True)
class WorkerPlan:
    workers: int
    resource: str  # "GPU" or "CPU"
    free: int
    target_speedup: float
    est_wall_s: float
    est_gpu_seconds: float
    speedup: float
    cost_ratio: float
    reason: str
    options: list[WorkerOption] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        unit = "GPU-s" if self.resource == "GPU" else "CPU-s"
        lines = [f"plan: {self.workers} worker(s) ({self.resource}, {self.free} free): "
                 f"est. wall {self.est_wall_s:.1f} s, {self.est_gpu_seconds:.1f} {unit}, "
                 f"speedup {self.speedup:.2f}x, cost x{self.cost_ratio:.2f}. {self.reason}"]
        for o in self.options[:8]:
            lines.append(f"  {o.workers:>3} worker(s): wall {o.wall_s:8.1f} s  "
                         f"{o.gpu_seconds:9.1f} {unit}  speedup {o.speedup:5.2f}x  "
                         f"cost {100 * (o.cost_ratio - 1):+6.0f}%")
        return "\n".join(lines)


def estimate(frames: int, costs: WorkerCosts, n: int) -> WorkerOption:
    wall = costs.startup_s + costs.coordination_s * (n - 1) + frames * costs.frame_s / n
    one = costs.startup_s + frames * costs.frame_s
    return WorkerOption(n, round(wall, 3), round(n * wall, 3), round(one / wall, 4),
                        round(n * wall / one, 4))


def plan_workers(frames: int, costs: WorkerCosts, *, free_gpus: int = 0, free_cpus: int = 1,
                 target_speedup: float = 4.0, max_workers: int = 64,
                 max_chunks: int | None = None, workers: int | str = "auto") -> WorkerPlan:
    """The worker count for ``frames`` frames: ``workers`` if given, else the cost-minimal
    count reaching the (capped) target speedup. GPUs when the cluster has free ones."""
    resource, free = ("GPU", free_gpus) if free_gpus > 0 else ("CPU", max(1, free_cpus))
    limit = max(1, min(free, max_workers, max_chunks or max_workers, max(1, frames)))
    options = [estimate(frames, costs, n) for n in range(1, limit + 1)]
    if workers != "auto":
        n = max(1, int(workers))
        chosen = estimate(frames, costs, n)
        reason = f"{n} worker(s) as asked"
        if n > free:
            reason += f" (only {free} {resource}s free now: some will wait or the cluster scales up)"
    else:
        best = max(o.speedup for o in options)
        goal = min(target_speedup, 0.9 * best)
        chosen = min((o for o in options if o.speedup >= goal), key=lambda o: o.gpu_seconds)
        one = options[0]
        if chosen.workers == 1:
            if len(options) > 1:
                o2 = options[min(len(options), 4) - 1]
                reason = (f"1 worker: per-worker start-up ({costs.startup_s:.0f} s) outweighs the "
                          f"work ({frames} x {1000 * costs.frame_s:.1f} ms); {o2.workers} workers "
                          f"would cost {100 * (o2.cost_ratio - 1):+.0f}% for {o2.speedup:.2f}x")
            else:
                reason = f"1 worker: only one {resource} free"
        else:
            reason = (f"{chosen.workers} workers reach {chosen.speedup:.2f}x (target "
                      f"{target_speedup:g}x, best possible {best:.2f}x with {limit}) for "
                      f"{100 * (chosen.cost_ratio - 1):+.0f}% cost vs one worker "
                      f"({one.wall_s:.0f} s)")
    return WorkerPlan(chosen.workers, resource, free, target_speedup, chosen.wall_s,
                      chosen.gpu_seconds, chosen.speedup, chosen.cost_ratio, reason, options)


# Rough per-frame model seconds on one worker when no measured figure is given (planner input).
DETECT_FRAME_S = {"GPU": 0.010, "CPU": 0.10}  # YOLOv8n at 640 px
UPSCALE_S_PER_MPX = {"GPU": 0.5, "CPU": 30.0}  # RealESRGAN_x4plus per input megapixel


@dataclass(frozen=True)
class VideoJobPlan:
    """How a model video job will run: the worker plan and the GPUs each worker asks for."""

    workers: WorkerPlan
    num_gpus: float


def plan_video_job(kind: str, frames: int, *, frame_ms: float | None, megapixels: float,
                   settings: Any, max_chunks: int, free_gpus: int,
                   free_cpus: int) -> VideoJobPlan:
    """The worker plan of a ``detect`` or ``upscale`` job over ``frames`` frames.

    The per-frame cost is ``frame_ms`` when measured, else the prior for the model (scaled by
    the YOLO input size, or by the frame's megapixels for upscaling). GPUs when the cluster
    has free ones, else CPUs.
    """
    resource = "GPU" if free_gpus > 0 else "CPU"
    if frame_ms is not None:
        frame_s = frame_ms / 1000
    elif kind == "detect":
        frame_s = DETECT_FRAME_S[resource] * (settings.yolo_imgsz / 640) ** 2
    elif kind == "upscale":
        frame_s = UPSCALE_S_PER_MPX[resource] * megapixels
    else:
        raise ValueError(f"kind must be 'detect' or 'upscale', got {kind!r}")
    costs = WorkerCosts(frame_s, container_s=0.0, model_load_s=settings.worker_startup_s,
                        download_s=0.0)
    plan = plan_workers(frames, costs, free_gpus=free_gpus, free_cpus=free_cpus,
                        target_speedup=settings.target_speedup, max_chunks=max_chunks,
                        workers=settings.workers)
    num_gpus = settings.video_num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if free_gpus > 0 else 0.0
    return VideoJobPlan(plan, num_gpus)
