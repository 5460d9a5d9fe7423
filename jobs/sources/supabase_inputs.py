"""``supabase://bucket/key`` inputs: the driver signs them, the workers read the signed URLs.

The driver holds ``SUPABASE_URL`` and ``SUPABASE_SERVICE_ROLE_KEY`` (as for the Supabase store)
and asks Storage for signed download URLs in bulk (one request per bucket and 500 objects);
the workers read those URLs with range requests (``jobs.sources.http``) and never see the key.
A signed URL carries its token in the query string, so it is never shown: errors and results
name the input as ``supabase://bucket/key``. The URLs live ``signed_url_expiry_s`` (default a
day, ``FRAMESIFT_SUPABASE_INPUT_URL_EXPIRY_S``): longer than the batch, or the last videos
fail with ``source_access_denied``. An object that is not there fails its video with
``source_gone`` before any work is spent on it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

from actors.errors import SourceAccessDeniedError, SourceError, SourceGoneError
from jobs.sources.options import parse_object_url
from jobs.stores.supabase_client import (SupabaseClient, SupabaseConfigError,
                                         SupabaseCredentials, SupabaseRequestError)

SIGN_BATCH = 500

ClientFactory = Callable[[str], SupabaseClient]  # bucket -> client


def sign_inputs(videos: Sequence[str], expiry_s: int, *, environ: dict[str, str] | None = None,
                client_factory: ClientFactory | None = None) -> dict[str, str | SourceError]:
    """Signed URL (or the error that stops it) of every ``supabase://`` input in ``videos``."""
    wanted: dict[str, list[str]] = defaultdict(list)
    for video in dict.fromkeys(videos):
        _, bucket, key = parse_object_url(video)
        wanted[bucket].append(key)
    if not wanted:
        return {}
    out: dict[str, str | SourceError] = {}
    if client_factory is None:
        try:
            creds = SupabaseCredentials.from_env(environ)
        except SupabaseConfigError as exc:
            return {f"supabase://{b}/{k}": SourceError(f"supabase://{b}/{k}", str(exc),
                                                       code=exc.code)
                    for b, keys in wanted.items() for k in keys}

        def client_factory(bucket: str) -> SupabaseClient:
            return SupabaseClient(creds, bucket=bucket)

    for bucket, keys in wanted.items():
        client = client_factory(bucket)
        try:
            for i in range(0, len(keys), SIGN_BATCH):
                batch = keys[i:i + SIGN_BATCH]
                try:
                    signed = client.signed_urls(batch, expiry_s)
                except SupabaseRequestError as exc:
                    for key in batch:
                        out[f"supabase://{bucket}/{key}"] = _request_error(
                            f"supabase://{bucket}/{key}", exc)
                    continue
                for key in batch:
                    name = f"supabase://{bucket}/{key}"
                    url = signed.urls.get(key)
                    why = signed.refused.get(key, "no signed URL")
                    out[name] = url if url else SourceGoneError(
                        name, f"no such object in Supabase Storage (or no access to it): {why}")
        finally:
            client.close()
    return out


def _request_error(name: str, exc: SupabaseRequestError) -> SourceError:
    text = str(exc)
    if "statusCode 404" in text or exc.status == 404:
        return SourceGoneError(name, f"signing failed: {text}")
    if exc.status in (401, 403) or "statusCode 403" in text:
        return SourceAccessDeniedError(name, f"signing failed: {text}")
    return SourceError(name, f"signing failed: {text}")
