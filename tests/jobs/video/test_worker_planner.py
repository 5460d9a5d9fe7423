"""The video jobs' worker planner: how many model workers pay off."""

from __future__ import annotations

from jobs.video.worker_plan import WorkerCosts, plan_workers

def test_planner_keeps_cheap_work_on_one_worker():
    # the previous system's study: 25 ms/frame, extra GPUs cost more with no speed gain
    plan = plan_workers(300, WorkerCosts(frame_s=0.025), free_gpus=4)
    assert plan.workers == 1 and plan.resource == "GPU"
    two, four = plan.options[1], plan.options[3]
    assert two.cost_ratio > 1.5 and four.cost_ratio > 3 and four.speedup < 1.1
    assert "1 worker" in plan.reason and "GPU-s" in plan.describe()


def test_planner_buys_workers_for_expensive_work_up_to_the_target():
    plan = plan_workers(3000, WorkerCosts(frame_s=2.0), free_gpus=8, target_speedup=4.0)
    assert 4 <= plan.workers <= 6 and plan.speedup >= 4.0
    cheaper = [o for o in plan.options if o.workers < plan.workers]
    assert all(o.speedup < 4.0 for o in cheaper)
    assert plan_workers(3000, WorkerCosts(frame_s=2.0), free_gpus=2).workers == 2
    assert plan_workers(100, WorkerCosts(frame_s=2.0), free_gpus=0, free_cpus=2).resource == "CPU"
    assert plan_workers(100, WorkerCosts(frame_s=2.0), free_gpus=8, workers=3).workers == 3
