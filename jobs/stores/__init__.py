"""Where results go: the local folder (default) or Supabase (local copy + upload).

``base`` holds the Store protocol and the scan-id rules; ``local`` and ``supabase`` implement it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.settings import Settings
    from jobs.stores.base import Store


def make_store(settings: "Settings", tenant: str | None = None) -> "Store":
    """``LocalStore`` for ``store=local``; ``SupabaseStore`` (local copy + upload) otherwise;
    with ``tenant``, that tenant's results (``jobs.stores.base.tenant_prefix``).

    Raises ``SupabaseConfigError`` when Supabase is asked for but not configured.
    """
    if settings.store == "supabase":
        from jobs.stores.supabase import SupabaseStore

        return SupabaseStore.from_settings(settings, tenant=tenant)
    from jobs.stores.local import LocalStore

    return LocalStore(settings.out_dir, tenant)
