"""Which database holds the analysis records: the one the service's settings name."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from serve.analyses.postgres_state import PostgresAnalysisDB
from serve.analyses.sqlite_state import SqliteAnalysisDB
from serve.analyses.state import AnalysisDB

if TYPE_CHECKING:
    from serve.settings import ServiceSettings


def open_analysis_db(settings: "ServiceSettings") -> AnalysisDB:
    """PostgreSQL when ``FRAMESIFT_DATABASE_URL`` is set, else SQLite under the state dir."""
    if settings.database_url is not None:
        return PostgresAnalysisDB(settings.database_url.get_secret_value())
    return SqliteAnalysisDB(Path(settings.state_dir).resolve() / "analyses.sqlite3")
