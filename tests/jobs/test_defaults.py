"""Each default lives once. GoldenParams holds the defaults of everything that decides a
result; Settings takes its defaults from there, and the CLI's help shows the settings'
defaults (the README's table is checked against Settings in tests/test_docs.py)."""

from __future__ import annotations

import re
from dataclasses import fields

import typer

from jobs.cli.commands import app
from jobs.golden.params import GoldenParams
from jobs.settings import Settings
from serve.settings import ServiceSettings

# CLI options whose name differs from the setting they set
SETTING_OF = {"out_dir": "out_dir", "batch_size": "detect_batch_size", "conf": "yolo_conf",
              "iou": "yolo_iou", "imgsz": "yolo_imgsz", "tile": "upscale_tile",
              "state_dir": "state_dir"}
# bracketed help that names no default of a setting (a derived path, an env variable)
NOT_A_DEFAULT = re.compile(r"^(FRAMESIFT_\w+|output/<name>-detections|<name>-\w+\.mp4 .*|"
                           r"the model's|1 with GPUs, else 0|CPUs)$")


def test_the_settings_defaults_are_the_params_defaults():
    assert Settings().golden_params() == GoldenParams()


def test_every_params_field_is_a_setting_or_comes_from_one():
    names = set(Settings.model_fields)
    derived = {"workers": "workers", "actors": "ray_compute", "scorer": "analysis_long_side",
               "glint": None}
    for f in fields(GoldenParams):
        assert f.name in names or f.name in derived, f"GoldenParams.{f.name} has no setting"


def test_every_default_in_the_cli_help_is_the_settings_default():
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    checked = 0
    for name, sub in command.commands.items():
        for param in sub.params:
            found = re.search(r"\[([^\]]+)\]$", getattr(param, "help", None) or "")
            if not found or NOT_A_DEFAULT.match(found.group(1)):
                continue
            setting = SETTING_OF.get(param.name, param.name)
            model = ServiceSettings.model_fields  # a superset of Settings
            assert setting in model, f"{name} --{param.name}: help shows a default of no setting"
            assert found.group(1) == str(model[setting].default), \
                f"{name} --{param.name}: help says [{found.group(1)}], the setting's default " \
                f"is {model[setting].default!r}"
            checked += 1
    assert checked >= 15
