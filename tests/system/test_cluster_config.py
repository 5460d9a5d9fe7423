"""cluster.yaml passes Ray's own cluster-launcher schema validation and says what it must."""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_YAML = ROOT / "cluster.yaml"


def _load(text: str | None = None) -> dict:
    return yaml.safe_load(text if text is not None else CLUSTER_YAML.read_text())


def _validate(config: dict) -> dict:
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_schema_validation():
    prepared = _validate(_load())
    assert prepared["provider"]["type"] == "aws"
    assert set(prepared["available_node_types"]) == {"ray.head.default", "cpu_worker", "gpu_worker"}


@pytest.mark.parametrize("typo, fixed", [
    ("idle_timeout_minutes:", "idle_timout_minutes:"),       # top level
    ("upscaling_speed:", "upscaling_sped:"),
    ("    min_workers: 0\n    max_workers: 8", "    min_worker: 0\n    max_workers: 8"),  # node type
    ("  pull_before_run:", "  pull_befor_run:"),            # docker
    ("head_start_ray_commands:", "head_start_commands:"),
    ("      worker_image:", "      worker_img:"),            # per-node-type docker
])
def test_a_typo_in_a_key_fails_validation(typo, fixed):
    text = CLUSTER_YAML.read_text()
    assert typo in text, f"{typo!r} not in cluster.yaml"
    with pytest.raises(jsonschema.ValidationError):
        _validate(_load(text.replace(typo, fixed, 1)))


def test_node_types_workers_and_scaling():
    cfg = _load()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("CPU") == 0  # scoring never lands on the head
    cpu, gpu = types["cpu_worker"], types["gpu_worker"]
    assert cpu["resources"]["CPU"] >= 1 and "GPU" not in cpu["resources"]
    assert cpu["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    assert gpu["resources"]["GPU"] >= 1 and "InstanceMarketOptions" not in gpu["node_config"]
    for t in (cpu, gpu):
        assert 0 <= t["min_workers"] < t["max_workers"] <= cfg["max_workers"]
    assert cfg["idle_timeout_minutes"] > 0 and cfg["upscaling_speed"] > 0


def test_images_match_the_installed_ray_and_python():
    cfg = _load()
    tag = f"rayproject/ray:{ray.__version__}-py311"
    assert ray.__version__.startswith("2.60")
    assert cfg["docker"]["image"] == f"{tag}-cpu"
    assert cfg["available_node_types"]["gpu_worker"]["docker"]["worker_image"] == f"{tag}-gpu"


def test_setup_installs_the_project_and_bakes_weights_and_starts_serve():
    cfg = _load()
    assert cfg["file_mounts"]["/home/ray/framesift"] == "."
    assert any("pip install" in c and "/home/ray/framesift" in c for c in cfg["setup_commands"])
    gpu_setup = " ".join(cfg["available_node_types"]["gpu_worker"]["worker_setup_commands"])
    head_setup = " ".join(cfg["head_setup_commands"])
    for setup in (gpu_setup, head_setup):  # the nodes that host model deployments
        assert "[models]" in setup and "/home/ray/framesift/models" in setup
        assert ".pth" in setup and ".pt" in setup
    start = " ".join(cfg["head_start_ray_commands"])
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
    assert "serve deploy serve/config.yaml" in start
    assert "--force" not in start
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    guard = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve.http_guard.proxy_middlewares ray start"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):  # proxies on every node
        assert any(guard in c for c in cfg[key]), key
