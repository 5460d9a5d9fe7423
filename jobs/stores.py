"""Pick the store named by the settings: ``local`` (default) or ``supabase``."""

from __future__ import annotations

from jobs.settings import Settings
from jobs.store import LocalStore, Store


def make_store(settings: Settings) -> Store:
    """``LocalStore`` for ``store=local``; ``SupabaseStore`` (local copy + upload) otherwise.

    Raises ``SupabaseConfigError`` when Supabase is asked for but not configured.
    """
    if settings.store == "supabase":
        from jobs.supabase_store import SupabaseStore

        return SupabaseStore.from_settings(settings)
    return LocalStore(settings.out_dir)
