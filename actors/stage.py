"""The shape of every unit of work: a ``Stage`` maps one item to zero or more items.

A stage has a ``name``, the ``resources`` one instance asks of its worker (CPUs, GPUs),
``setup()`` for what is loaded once per worker (models, OpenCV threads), and
``process(item)``, which yields its outputs. Plain Python: the Ray adapter (``jobs.units``)
and the golden runners (``jobs.golden.runners``) decide where a stage runs, so the same stage
runs in a test, in threads of this process, in a Ray task or in a Ray actor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Generic, Iterable, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


@dataclass(frozen=True)
class Resources:
    """What one instance of a stage asks of its worker."""

    cpus: float = 1.0
    gpus: float = 0.0

    def __post_init__(self) -> None:
        if self.cpus < 0 or self.gpus < 0:
            raise ValueError(f"resources must not be negative: cpus={self.cpus}, gpus={self.gpus}")


class Stage(ABC, Generic[In, Out]):
    """One unit of work. Subclasses set ``name``, may override ``resources`` and ``setup``,
    and implement ``process``. ``setup`` runs once per instance before the first item (the
    runners call ``ready()``, which is idempotent)."""

    name: ClassVar[str] = "stage"
    _set_up: bool = False

    @property
    def resources(self) -> Resources:
        return Resources()

    def setup(self) -> None:
        """Load what the stage needs once per worker (models, threads). Default: nothing."""

    def ready(self) -> "Stage[In, Out]":
        """``setup()`` once; returns the stage."""
        if not self._set_up:
            self.setup()
            self._set_up = True
        return self

    @abstractmethod
    def process(self, item: In) -> Iterable[Out]:
        """The outputs of one item."""
