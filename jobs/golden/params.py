"""What decides a golden-frame result: the parameters recorded in every manifest."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from actors.glint import GlintConfig
from actors.scoring import ScorerConfig


@dataclass(frozen=True)
class GoldenParams:
    """Everything that decides a golden-frame result (recorded in the manifest). The defaults
    here are the only ones: ``jobs.settings.Settings`` (and so the CLI help and the README's
    configuration table) take theirs from these."""

    top_k: int = 5
    min_gap_s: float = 0.5
    motion_max: float = 1.0
    still_window_s: float = 0.2
    min_hold_s: float = 0.5
    edge_margin_s: float = 0.1
    hold_sharpness_ratio: float = 0.3
    dup_max_diff: float = 2.0
    image_format: Literal["jpeg", "png"] = "jpeg"
    jpeg_quality: int = 95
    candidates: int = 32  # frames extracted beside the picks for re-picks (jobs/golden/candidates.py)
    workers: int | None = None  # None = let the planner decide
    max_workers: int = 16
    min_frames_per_chunk: int = 30
    actors: bool = False
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    glint: GlintConfig = field(default_factory=GlintConfig)

    def recorded(self) -> dict[str, Any]:
        """The parameters as a manifest records them (plain JSON data)."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_recorded(cls, data: dict[str, Any]) -> "GoldenParams":
        """Parameters read back from a manifest; fields it predates take today's defaults."""
        return _adapter().validate_python(data)


@functools.cache
def _adapter() -> Any:
    """The validator of recorded parameters (built once: building one costs milliseconds,
    which a batch re-pick of short videos would pay per video)."""
    from pydantic import TypeAdapter

    return TypeAdapter(GoldenParams)
