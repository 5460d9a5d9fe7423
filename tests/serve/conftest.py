"""The coordinator's database, both ways: each test that takes ``db_settings`` runs once on
SQLite (the embedded default) and once on the session's PostgreSQL (``FRAMESIFT_DATABASE_URL``).
"""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request, tmp_path) -> dict:
    """Service settings with the analysis records on SQLite under ``tmp_path`` or in a fresh
    PostgreSQL database."""
    settings = {"state_dir": str(tmp_path)}
    if request.param == "postgres":
        settings["database_url"] = request.getfixturevalue("make_database")()
    return settings

