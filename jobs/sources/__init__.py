"""Where videos are read from, by the workers that decode them (no shared volume needed).

An input is one of

- a local path (``/data/scan.mp4``): read directly (on a cluster: a path every node sees),
- an ``http://`` or ``https://`` URL: read with range requests (``jobs.sources.http``); a chunk
  fetches about what it decodes, and only a server without range support costs a full download,
- ``s3://bucket/key`` and ``gs://bucket/key``: read through ``pyarrow.fs`` with the same read-ahead
  (``jobs.sources.objects``),
- ``supabase://bucket/key``: a Supabase Storage object; the driver signs it
  (``jobs.sources.supabase_inputs``) and the workers read the signed URL over HTTP, without the key.

``open_source`` turns an input into what ``actors.video`` reads: the path itself, or a
``MediaSource`` whose reads fail with typed ``SourceError``s (``source_gone``,
``source_timeout``, ``source_access_denied``, ``range_protocol_violation``,
``source_read_failed``, or the code of the URL rule that refused it). Every name shown in an
error or a result is ``display_name(input)``: no credentials, no query string.
"""

from __future__ import annotations

from actors.media_source import MediaSource
from jobs.sources.options import (InvalidSourceError, SourceOptions, check_input, display_name,
                                  is_remote, parse_object_url, scheme_of, source_identity)

__all__ = ["InvalidSourceError", "SourceOptions", "check_input", "display_name", "is_remote",
           "open_source", "parse_object_url", "scheme_of", "source_identity"]


def open_source(url: str, name: str, options: SourceOptions,
                identity: tuple[int, str | None] | None = None) -> str | MediaSource:
    """What ``actors.video`` reads for an input: a local path as is, or a ``MediaSource``.

    ``url`` is what to read (for a Supabase object: its signed URL), ``name`` what to call it;
    ``identity`` is ``source_identity`` of the source the video was probed through: reading
    another object under the same URL then fails with ``source_gone``.
    """
    scheme = scheme_of(url)
    if scheme is None:
        return url
    if scheme in ("http", "https"):
        from jobs.sources.http import HttpSource

        return HttpSource(url, name, options, identity)
    if scheme in ("s3", "gs"):
        from jobs.sources.objects import ObjectSource

        _, bucket, key = parse_object_url(url)
        return ObjectSource(scheme, bucket, key, name, options, identity)
    raise InvalidSourceError(f"{name}: {scheme}:// cannot be read by a worker directly "
                             "(supabase:// objects are signed by the driver first)")
