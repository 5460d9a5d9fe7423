"""Shared fixtures: generated videos with known truth, and one private Ray per session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from actors.synthetic import SampleTruth, make_sample_video


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
        detail = f"torch {torch.__version__}, CUDA build {torch.version.cuda}"
    except Exception as exc:  # torch missing or broken: no GPU path here
        has_cuda, detail = False, f"torch unusable: {exc}"
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if has_cuda or not gpu_items:
        return
    if os.environ.get("FRAMESIFT_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"FRAMESIFT_REQUIRE_GPU=1 but torch sees no CUDA device ({detail})")
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason="needs CUDA"))


class Videos:
    """Generates sample videos on demand and caches them for the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[tuple, tuple[Path, SampleTruth]] = {}

    def get(self, *, seconds: float = 6.0, size: tuple[int, int] = (480, 270), seed: int = 0,
            bframes: int = 2, gop: int = 60, vfr: bool = False, fps: int = 30) -> tuple[Path, SampleTruth]:
        key = (seconds, size, seed, bframes, gop, vfr, fps)
        if key not in self._made:
            name = f"v_{size[0]}x{size[1]}_{seconds}s_s{seed}_b{bframes}_g{gop}_{'vfr' if vfr else 'cfr'}_{fps}.mp4"
            path = self.root / name
            truth = make_sample_video(path, seconds=seconds, size=size, fps=fps, seed=seed,
                                      bframes=bframes, gop=gop, variable_fps=vfr)
            self._made[key] = (path, truth)
        return self._made[key]


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    return Videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One private local Ray (2 CPUs, own temp dir) for the whole session."""
    import ray

    from jobs.runtime import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    # the Serve proxy bounds request headers and read times (serve/http_guard.py), as the Ray
    # that `framesift serve` starts does; short read timeouts keep the tests of them short
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
                          "serve.http_guard.proxy_middlewares")
    os.environ.setdefault("FRAMESIFT_HEADER_TIMEOUT_S", "3")
    os.environ.setdefault("FRAMESIFT_BODY_IDLE_TIMEOUT_S", "4")
    temp_dir = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
    cpus = ensure_ray(num_cpus=2, temp_dir=temp_dir)
    yield cpus
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
