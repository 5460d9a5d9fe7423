"""Tenants: who an API key belongs to, and what a caller may see.

``FRAMESIFT_API_KEYS=acme:KEY1,beta:KEY2`` gives each key a tenant; a bare key (``KEY3``) is
its own tenant, named by the first 16 hex digits of its SHA-256 (never the key itself: tenant
names appear in rows, folders and logs). ``FRAMESIFT_ADMIN_KEY`` sees and cancels every
tenant's analyses; its own analyses, like every analysis of a server without keys, belong to
no tenant and use the single-tenant layout (``<out_dir>/<scan_id>/``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from jobs.stores.base import TENANT_NAME


class ApiKeyConfigError(ValueError):
    """A ``FRAMESIFT_API_KEYS`` entry names an unusable tenant, or a key is given twice."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its tenant (None: the admin key) and the secret itself."""

    tenant: str | None
    secret: str = field(repr=False)

    @property
    def admin(self) -> bool:
        return self.tenant is None


@dataclass(frozen=True)
class Caller:
    """Who sent a request. ``tenant`` owns what it creates; ``sees_all`` is the admin key,
    or any caller of a server without keys."""

    tenant: str | None
    sees_all: bool

    @property
    def scope(self) -> str | None:
        """The tenant whose analyses this caller may see and change; None = all of them."""
        return None if self.sees_all else self.tenant


NO_KEYS = Caller(tenant=None, sees_all=True)


def bare_key_tenant(key: str) -> str:
    """The tenant of a key given without one: a short hash of it (never the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def parse_api_keys(raw: str) -> list[ApiKey]:
    """Keys from comma- or newline-separated ``tenant:key`` or bare ``key`` entries.

    An entry is ``tenant:key`` when the text before its first ``:`` is a tenant name (letters,
    digits, '.', '_', '-', at most 64, starting with a letter or digit); otherwise the whole
    entry is a bare key.
    """
    keys: list[ApiKey] = []
    seen: set[str] = set()
    for entry in (e.strip() for e in raw.replace("\n", ",").split(",")):
        if not entry:
            continue
        name, sep, secret = entry.partition(":")
        if sep and TENANT_NAME.match(name) and ".." not in name and secret.strip():
            key = ApiKey(name, secret.strip())
        else:
            key = ApiKey(bare_key_tenant(entry), entry)
        if key.secret in seen:
            raise ApiKeyConfigError("an API key is listed twice in FRAMESIFT_API_KEYS(_FILE): "
                                    "give every key once, with one tenant")
        seen.add(key.secret)
        keys.append(key)
    return keys


def identify(token: str, keys: list[ApiKey]) -> ApiKey | None:
    """The configured key equal to ``token`` (every key compared in constant time), or None."""
    found = None
    for key in keys:
        if hmac.compare_digest(token.encode(), key.secret.encode()):
            found = key
    return found


def caller_of(key: ApiKey) -> Caller:
    return Caller(tenant=key.tenant, sees_all=key.admin)
