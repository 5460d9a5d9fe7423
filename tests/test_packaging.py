"""What pyproject.toml promises: Ray pinned to the version of cluster.yaml's images, one
OpenCV (the headless build) in the environment, every import declared in the install that
needs it (core, a model extra, or dev), torch only with the model extras, type hints shipped."""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
OPENCV_DISTS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python",
                "opencv-contrib-python-headless"}


def _name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _requirements(*extras: str) -> dict[str, Requirement]:
    """The project's requirements (the core, plus ``extras``, self-references resolved)."""
    found: dict[str, Requirement] = {}
    pending = [(req, None) for req in PROJECT["dependencies"]]
    pending += [(req, extra) for extra in extras
                for req in PROJECT["optional-dependencies"][extra]]
    while pending:
        text, _ = pending.pop()
        req = Requirement(text)
        if _name(req.name) == "framesift":
            pending += [(r, e) for e in req.extras for r in PROJECT["optional-dependencies"][e]]
            continue
        found[_name(req.name)] = req
    return found


def test_ray_is_pinned_to_the_version_of_the_cluster_images():
    import ray

    [pin] = [r for r in PROJECT["dependencies"] if Requirement(r).name == "ray"]
    spec = list(Requirement(pin).specifier)
    assert len(spec) == 1 and spec[0].operator == "==" and "*" not in spec[0].version, pin
    version = spec[0].version
    cfg = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    images = [cfg["docker"]["image"]] + [t["docker"]["worker_image"]
                                         for t in cfg["available_node_types"].values()
                                         if "docker" in t]
    assert len(images) >= 2
    for image in images:
        assert re.fullmatch(rf"rayproject/ray:{re.escape(version)}-py3\d+-(cpu|gpu)", image), image
    assert ray.__version__ == version  # what this environment runs is what the images run


def test_cv2_is_the_one_headless_opencv():
    import cv2

    installed = {_name(d.metadata["Name"]) for d in md.distributions()}
    assert installed & OPENCV_DISTS == {"opencv-python-headless"}
    assert [_name(d) for d in md.packages_distributions()["cv2"]] == ["opencv-python-headless"]
    files = {str(f) for f in md.distribution("opencv-python-headless").files or ()}
    loaded = Path(cv2.__file__).resolve().relative_to(
        Path(md.distribution("opencv-python-headless").locate_file("")).resolve())
    assert str(loaded) in files  # the cv2 that imports is the headless distribution's
    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines()
           if line.strip().startswith("GUI:")]
    assert gui == ["NONE"], gui  # a GUI build (Qt, GTK) needs libGL on headless nodes


def test_ultralytics_is_its_headless_variant_when_installed():
    owners = md.packages_distributions().get("ultralytics")
    if owners is None:
        pytest.skip("the yolo extra is not installed")
    assert [_name(d) for d in owners] == ["ultralytics-opencv-headless"]
    assert "ultralytics" not in _requirements("yolo", "upscale", "models", "dev")


def test_torch_comes_only_with_the_model_extras_and_as_the_pair():
    assert not {"torch", "torchvision", "ultralytics-opencv-headless", "spandrel"} & \
        set(_requirements())
    for extra in ("yolo", "upscale", "models"):
        reqs = _requirements(extra)
        assert str(reqs["torch"].specifier) == "==2.14.1", extra
        assert str(reqs["torchvision"].specifier) == "==0.29.1", extra
    assert "ultralytics-opencv-headless" in _requirements("yolo")
    assert "spandrel" in _requirements("upscale")
    assert set(_requirements("models")) == set(_requirements("yolo", "upscale"))
    assert "torch" not in _requirements("dev")


def test_zero_major_dependencies_have_a_ceiling():
    for req in _requirements("yolo", "upscale", "dev").values():
        floors = [s.version for s in req.specifier if s.operator in (">=", "==", "~=")]
        if floors and floors[0].startswith("0."):
            assert any(s.operator in ("<", "==", "~=") for s in req.specifier), str(req)


def _imports(paths) -> set[str]:
    found: set[str] = set()
    for path in paths:
        if path.suffix == ".ipynb":
            cells = json.loads(path.read_text())["cells"]
            sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        else:
            sources = [path.read_text()]
        for source in sources:
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.Import):
                    found.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    found.add(node.module.split(".")[0])
    return found


def _undeclared(folders: tuple[str, ...], allowed: set[str]) -> dict[str, list[str]]:
    local = {"actors", "jobs", "serve"} | {p.stem for f in ("tests", "bench", "tests/system")
                                           for p in (ROOT / f).glob("*.py")}
    owners = md.packages_distributions()
    missing = {}
    paths = [p for f in folders for p in (ROOT / f).rglob("*") if p.suffix in (".py", ".ipynb")]
    for module in sorted(_imports(paths) - set(sys.stdlib_module_names) - local):
        dists = {_name(d) for d in owners.get(module, [])}
        if not dists & allowed:
            missing[module] = sorted(dists) or ["(not installed)"]
    return missing


def test_the_code_imports_only_what_its_install_declares():
    core = set(_requirements())
    models = set(_requirements("models"))
    # the model units import torch, ultralytics and spandrel only when a model is loaded
    model_modules = {"torch", "ultralytics", "spandrel"}
    code = _undeclared(("actors", "jobs", "serve"), core)
    assert set(code) <= model_modules, code
    assert not _undeclared(("actors", "jobs", "serve"), models)
    assert not _undeclared(("tests", "bench", "notebooks"), set(_requirements("models", "dev")))


def test_the_packages_ship_py_typed():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in ("actors", "jobs", "serve"):
        assert (ROOT / package / "py.typed").is_file()
        assert "py.typed" in data["package-data"][package]
