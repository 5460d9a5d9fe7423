"""The README stays true: every setting is documented with its default."""

from __future__ import annotations

from pathlib import Path

from serve.settings import ServiceSettings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_setting_is_in_the_readme_configuration_table():
    for name, field in ServiceSettings.model_fields.items():  # a superset of Settings
        row = next((ln for ln in README.splitlines()
                    if ln.startswith(f"| `FRAMESIFT_{name.upper()}`")), None)
        assert row is not None, f"FRAMESIFT_{name.upper()} missing from README"
        default = field.default
        if default is not None:
            assert f"`{default}`" in row, f"README default of {name} is not {default!r}"


def test_readme_gives_the_two_commands():
    assert "make demo" in README and "make test" in README
