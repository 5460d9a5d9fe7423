"""What decides a golden-frame result: the parameters recorded in every manifest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from actors.glint import GlintConfig
from actors.scoring import ScorerConfig

if TYPE_CHECKING:
    from jobs.settings import Settings


@dataclass(frozen=True)
class GoldenParams:
    """Everything that decides a golden-frame result (recorded in the manifest)."""

    top_k: int = 5
    min_gap_s: float = 0.5
    motion_max: float = 1.0
    image_format: str = "jpeg"
    jpeg_quality: int = 95
    workers: int | None = None  # None = let the planner decide
    max_workers: int = 16
    min_frames_per_chunk: int = 30
    actors: bool = False
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    glint: GlintConfig = field(default_factory=GlintConfig)

    @classmethod
    def from_settings(cls, s: "Settings") -> "GoldenParams":
        return cls(top_k=s.top_k, min_gap_s=s.min_gap_s, motion_max=s.motion_max,
                   image_format=s.image_format, jpeg_quality=s.jpeg_quality,
                   workers=None if s.workers == "auto" else int(s.workers),
                   max_workers=s.max_workers, min_frames_per_chunk=s.min_frames_per_chunk,
                   actors=s.executor == "actors",
                   scorer=ScorerConfig(analysis_long_side=s.analysis_long_side, flow=s.flow,
                                       dis_preset=s.dis_preset))
