"""Model weights resolution, device choice and offline-safe model loading.

Weights are files on disk (baked into the image or copied onto each node); nothing here ever
downloads. ultralytics is imported only after ``YOLO_OFFLINE=1`` (and a private settings dir)
are set, so a missing ``.pt`` can never turn into a download attempt.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any

from actors.errors import FramesiftError

YOLO_SUFFIXES = (".pt", ".yaml", ".yml")
UPSCALER_SUFFIXES = (".pth", ".pt", ".safetensors")
# The extra of each model (pyproject.toml) and the modules it brings that the model imports:
# the core install leaves them out.
MODEL_EXTRAS = {"detector": ("yolo", ("torch", "ultralytics")),
                "upscaler": ("upscale", ("torch", "spandrel"))}


class ModelExtraMissingError(FramesiftError):
    """A model's libraries are not installed: says which extra brings them."""

    code = "model_extra_missing"


def missing_extra(model: str) -> str | None:
    """The extra to install before ``model`` ("detector", "upscaler") can load here, or None
    when its modules are importable."""
    extra, modules = MODEL_EXTRAS[model]
    return extra if any(importlib.util.find_spec(m) is None for m in modules) else None


def install_hint(model: str) -> str:
    return f"pip install 'framesift[{MODEL_EXTRAS[model][0]}]'"


def require_extra(model: str) -> None:
    """``ModelExtraMissingError`` naming the extra, unless ``model``'s modules are importable."""
    extra = missing_extra(model)
    if extra is not None:
        raise ModelExtraMissingError(
            f"the {model} needs {' and '.join(MODEL_EXTRAS[model][1])}, which the core install "
            f"leaves out: install the {extra} extra ({install_hint(model)}, or `make install` "
            "in a checkout) and run it again")


class ModelWeightsError(FramesiftError):
    """A weights file is missing or unusable. Says which setting names it and what to do."""

    code = "model_weights_missing"

    def __init__(self, path: str | None, setting: str, expected: str, detail: str = "") -> None:
        self.path, self.setting = path, setting
        if not path:
            msg = (f"no weights configured: set {setting} to the path of {expected} "
                   "(framesift never downloads weights; bake them into the image or copy them "
                   "onto each node, e.g. under models/)")
        else:
            msg = (f"{setting}={path}: {detail or 'no such file'}. Expected {expected} on this "
                   f"node; put the file at that path (bake it into the image or copy it under "
                   f"models/, see README 'Model weights') or point {setting} at it. framesift "
                   "never downloads weights at run time.")
        super().__init__(msg)


class ModelLoadError(FramesiftError):
    """The weights file exists but is not a model of the expected kind."""

    code = "model_load_failed"


def resolve_weights(path: str | os.PathLike[str] | None, setting: str, expected: str,
                    suffixes: tuple[str, ...]) -> Path:
    """The weights file as an absolute path, or ``ModelWeightsError`` naming the setting."""
    if path is None or not str(path).strip():
        raise ModelWeightsError(None, setting, expected)
    p = Path(path).expanduser()
    if p.suffix.lower() not in suffixes:
        raise ModelWeightsError(str(path), setting, expected,
                                f"unsupported file type '{p.suffix}' (accepted: {', '.join(suffixes)})")
    if p.suffix.lower() in (".yaml", ".yml") and not p.exists():
        return p  # an ultralytics architecture name such as yolov8n.yaml: built, not downloaded
    if not p.is_file():
        raise ModelWeightsError(str(path), setting, expected)
    if p.stat().st_size == 0:
        raise ModelWeightsError(str(path), setting, expected, "the file is empty")
    return p.resolve()


def prepare_ultralytics_env(config_dir: str | None = None) -> None:
    """Keep ultralytics offline and quiet; call before ``import ultralytics``."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_AUTOINSTALL", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", config_dir or os.path.join(
        tempfile.gettempdir(), "framesift-ultralytics"))


def restore_pil_open() -> None:
    """Undo ultralytics' process-wide patch of ``PIL.Image.open``.

    Importing ultralytics replaces ``Image.open`` with a wrapper that, on the first image PIL
    cannot identify, tries to add HEIF support (``pi-heif``) and, without it, raises
    ``ModuleNotFoundError`` instead of ``UnidentifiedImageError``: an undecodable upload then
    became a 500 instead of a clear 422 in every replica that had loaded YOLO. framesift hands
    ultralytics decoded arrays, so PIL's own ``open`` is all it needs.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def load_yolo(path: str | None, setting: str = "FRAMESIFT_YOLO_WEIGHTS") -> Any:
    """An ultralytics ``YOLO`` from a local .pt (weights) or .yaml (architecture, random weights)."""
    require_extra("detector")
    weights = resolve_weights(path, setting, "a YOLO .pt (or .yaml) file", YOLO_SUFFIXES)
    prepare_ultralytics_env()
    from ultralytics import YOLO  # imported only now: YOLO_OFFLINE is set

    restore_pil_open()
    try:
        return YOLO(str(weights), task="detect")
    except FileNotFoundError as exc:
        raise ModelWeightsError(str(path), setting, "a YOLO .pt (or .yaml) file", str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - torch/ultralytics raise many kinds
        raise ModelLoadError(f"{setting}={path}: not a loadable YOLO model "
                             f"({type(exc).__name__}: {exc})") from exc


def load_spandrel(path: str | None, setting: str = "FRAMESIFT_UPSCALER_WEIGHTS") -> Any:
    """A spandrel ``ImageModelDescriptor`` (architecture auto-detected from the state dict)."""
    require_extra("upscaler")
    weights = resolve_weights(path, setting, "a Real-ESRGAN .pth file (e.g. "
                              "RealESRGAN_x4plus.pth or realesr-general-x4v3.pth)", UPSCALER_SUFFIXES)
    import spandrel

    try:
        model = spandrel.ModelLoader(device="cpu").load_from_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - unknown architecture, corrupt pickle, ...
        raise ModelLoadError(f"{setting}={path}: not a supported super-resolution model "
                             f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(model, spandrel.ImageModelDescriptor):
        raise ModelLoadError(f"{setting}={path}: {model.architecture.name} is not an "
                             "image-to-image model")
    return model


def pick_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; anything else is used as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def setup_torch_worker(cpus: float, device: str = "auto") -> str:
    """Per-process set-up of a torch model unit; returns the device it runs on.

    Keeps per-frame tensors on the heap (no fresh ``mmap`` per frame, which made a fresh worker
    1.5x slower), and matches OpenCV's and, on the CPU, torch's threads to the unit's CPUs.
    """
    import cv2

    from actors.memory import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()
    threads = max(1, int(cpus))
    cv2.setNumThreads(threads)
    picked = pick_device(device)
    if picked == "cpu":
        import torch

        torch.set_num_threads(threads)
    return picked
