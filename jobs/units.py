"""The one adapter that maps a ``Stage`` (``actors.stage``) onto Ray Data ``map_batches``.

The stage's ``resources`` become the operator's CPUs and GPUs. With ``actors=True`` the stage
runs in a pool of long-lived actors (setup once per actor: what a warm service or a model
wants); otherwise each batch is a Ray task that sets up its own copy (cheap when setup loads
nothing: what one-shot jobs want). Every batch a stage yields leaves as its own block.
"""

from __future__ import annotations

from typing import Any, Iterator

from ray.data import ActorPoolStrategy, Dataset, TaskPoolStrategy

from actors.stage import Stage


class StageActor:
    """Ray Data callable class hosting one set-up copy of a stage per actor."""

    def __init__(self, stage: Stage[Any, Any]) -> None:
        self.stage = stage.ready()

    def __call__(self, batch: Any) -> Iterator[Any]:
        yield from self.stage.process(batch)


def run_stage_once(batch: Any, stage: Stage[Any, Any]) -> Iterator[Any]:
    """Ray Data task body: set the stage up, map one batch."""
    yield from stage.ready().process(batch)


def map_stage(ds: Dataset, stage: Stage[Any, Any], *, actors: bool, concurrency: int,
              batch_size: int = 1, batch_format: str = "numpy") -> Dataset:
    """``ds.map_batches`` with ``stage`` on its resources, as an actor pool or as tasks."""
    common: dict[str, Any] = dict(batch_size=batch_size, batch_format=batch_format,
                                  num_cpus=stage.resources.cpus, zero_copy_batch=True)
    if stage.resources.gpus:
        common["num_gpus"] = stage.resources.gpus
    if actors:
        return ds.map_batches(StageActor, fn_constructor_args=(stage,),
                              compute=ActorPoolStrategy(size=max(1, concurrency)), **common)
    return ds.map_batches(run_stage_once, fn_kwargs={"stage": stage},  # type: ignore[arg-type]
                          compute=TaskPoolStrategy(size=max(1, concurrency)), **common)
