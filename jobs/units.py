"""The one adapter that maps a compute unit onto Ray Data ``map_batches``.

A unit is a class built from a config, with ``setup()`` (load models, set threads) and
``__call__(batch) -> batch``. With ``actors=True`` it runs in a pool of long-lived actors
(setup once per actor: what a warm service or a model wants); otherwise each batch is a
Ray task that builds the unit (cheap when setup loads nothing: what one-shot jobs want).
"""

from __future__ import annotations

from typing import Any

from ray.data import ActorPoolStrategy, Dataset, TaskPoolStrategy


class UnitActor:
    """Ray Data callable class hosting one unit instance per actor."""

    def __init__(self, unit_cls: type, config: Any) -> None:
        self.unit = unit_cls(config)
        self.unit.setup()

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        return self.unit(batch)


def run_unit_once(batch: dict[str, Any], unit_cls: type, config: Any) -> dict[str, Any]:
    """Ray Data task body: build the unit, set it up, map one batch."""
    unit = unit_cls(config)
    unit.setup()
    return unit(batch)


def map_unit(ds: Dataset, unit_cls: type, config: Any, *, actors: bool, concurrency: int,
             num_cpus: float = 1.0, num_gpus: float = 0.0, batch_size: int = 1,
             batch_format: str = "numpy") -> Dataset:
    """``ds.map_batches`` with ``unit_cls(config)``, as an actor pool or as tasks."""
    common: dict[str, Any] = dict(batch_size=batch_size, batch_format=batch_format,
                                  num_cpus=num_cpus, zero_copy_batch=True)
    if num_gpus:
        common["num_gpus"] = num_gpus
    if actors:
        return ds.map_batches(UnitActor, fn_constructor_args=(unit_cls, config),
                              compute=ActorPoolStrategy(size=max(1, concurrency)), **common)
    return ds.map_batches(run_unit_once, fn_kwargs={"unit_cls": unit_cls, "config": config},
                          compute=TaskPoolStrategy(size=max(1, concurrency)), **common)
