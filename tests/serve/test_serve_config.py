"""serve/config.yaml is a valid Serve config whose application builds with its own args."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError
from ray.serve.schema import DeploymentSchema, ServeApplicationSchema, ServeDeploySchema

CONFIG = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def _deployments(app) -> set[str]:
    """Names of the deployments bound into an application (the ingress and its arguments)."""
    names, todo = set(), [app]
    while todo:
        deployment = todo.pop()._bound_deployment
        names.add(deployment.name)
        rc = deployment._replica_config
        for arg in [*rc.init_args, *rc.init_kwargs.values()]:
            values = arg.values() if isinstance(arg, dict) else [arg]
            todo.extend(v for v in values if hasattr(v, "_bound_deployment"))
    return names


def test_config_validates_and_its_application_builds(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(CONFIG.read_text())
    schema = ServeDeploySchema.model_validate(data)
    assert schema.http_options.host == "127.0.0.1"  # loopback unless keys are set
    [app_cfg] = schema.applications
    module, attr = app_cfg.import_path.split(":")
    builder = getattr(importlib.import_module(module), attr)
    app = builder(app_cfg.args)
    built = _deployments(app)
    for dep in app_cfg.deployments:
        assert dep.name in built, f"config names deployment {dep.name!r} the app does not have"
    ingress = next(d for d in app_cfg.deployments if d.name == "Ingress")
    assert 0 < ingress.ray_actor_options.num_cpus < 1  # fractional
    assert ingress.max_queued_requests > 0 and ingress.backpressure_config.retry_after_s
    assert ingress.autoscaling_config["max_replicas"] > ingress.autoscaling_config["min_replicas"]


def _unknown_keys(data: dict) -> list[str]:
    """Keys Serve's schema would silently ignore (it accepts unknown deployment options)."""
    unknown = [k for k in data if k not in ServeDeploySchema.model_fields]
    for app in data.get("applications", []):
        unknown += [k for k in app if k not in ServeApplicationSchema.model_fields]
        for dep in app.get("deployments", []):
            unknown += [k for k in dep if k not in DeploymentSchema.model_fields]
    return unknown


def test_no_key_is_silently_ignored_and_a_typo_is_caught():
    data = yaml.safe_load(CONFIG.read_text())
    assert _unknown_keys(data) == []
    data["applications"][0]["deployments"][0]["max_queued_requestz"] = 5
    assert _unknown_keys(data) == ["max_queued_requestz"]
    data["applications"][0]["deployments"][0]["max_queued_requests"] = "many"
    with pytest.raises(ValidationError):
        ServeDeploySchema.model_validate(data)


def test_api_keys_are_refused_in_the_application_config():
    from serve.app import build_app

    with pytest.raises(ValueError, match="FRAMESIFT_API_KEYS"):
        build_app({"settings": {"api_keys": "secret"}})
    with pytest.raises(ValueError, match="FRAMESIFT_ADMIN_KEY"):
        build_app({"settings": {"admin_key": "secret"}})


def test_api_keys_name_their_tenants_and_a_bare_key_is_named_by_its_hash(tmp_path):
    import hashlib

    from serve.settings import ServiceSettings
    from serve.tenants import ApiKeyConfigError

    keys = tmp_path / "keys"
    keys.write_text("beta:key-b\nbare-key\n")
    settings = ServiceSettings(api_keys="acme:key-a", api_keys_file=str(keys), admin_key="boss")
    entries = settings.api_key_entries()
    assert [(k.tenant, k.secret) for k in entries] == [
        ("acme", "key-a"), ("beta", "key-b"),
        (hashlib.sha256(b"bare-key").hexdigest()[:16], "bare-key"), (None, "boss")]
    assert all(k.secret not in repr(k) for k in entries)  # a key never shows in a repr
    assert settings.api_key_list() == ["key-a", "key-b", "bare-key", "boss"]
    with pytest.raises(ApiKeyConfigError, match="admin"):
        ServiceSettings(api_keys="acme:boss", admin_key="boss").api_key_entries()
    with pytest.raises(ApiKeyConfigError, match="twice"):
        ServiceSettings(api_keys="acme:k,beta:k").api_key_entries()
