"""A commit that asks first: the store of a job that can be cancelled.

A cancel and a commit of the same result race: the cancel may be decided while the result is
being written. ``GatedStore`` wraps a store so that every session asks a ``CommitGate`` right
before its commit. The gate decides once, in one place (for the HTTP service, the analysis's
runner: serve/analyses/runner.py): either the commit goes ahead (a cancel arriving later is
refused) or the cancel won (the commit is refused, the session aborts, the previous result
of the scan stays as it was).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from actors.errors import FramesiftError

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pyarrow as pa

    from jobs.golden.candidates import Candidate
    from jobs.golden.manifest import GoldenManifest
    from jobs.stores.base import Store, StoreSession


class CommitRefusedError(FramesiftError):
    """The job was cancelled before its result was committed; nothing was stored."""

    code = "cancelled"


class CommitGate(Protocol):
    """Decides whether a finished result may be committed."""

    def claim(self) -> bool:
        """True: commit now (from here on a cancel is refused); False: the job was cancelled."""


def _forwarded(wrapper: Any, name: str) -> Any:
    """``name`` of the wrapper's inner object. Never a dunder, and nothing before ``inner`` is
    set (unpickling looks up ``__setstate__`` on an empty instance: no endless recursion)."""
    inner = wrapper.__dict__.get("inner")
    if inner is None or name.startswith("__"):
        raise AttributeError(name)
    return getattr(inner, name)


class GatedSession:
    """A store session whose ``commit`` first claims the gate (refused: aborted, raises)."""

    def __init__(self, inner: "StoreSession", gate: CommitGate, scan_id: str) -> None:
        self.inner = inner
        self.gate = gate
        self.scan_id = scan_id

    def put_image(self, frame_index: int, data: bytes, ext: str,
                  content_type: str) -> tuple[str, str]:
        return self.inner.put_image(frame_index, data, ext, content_type)

    def put_scores(self, table: "pa.Table") -> str:
        return self.inner.put_scores(table)

    def put_candidates(self, frames: "Sequence[Candidate]", ext: str, content_type: str) -> str:
        return self.inner.put_candidates(frames, ext, content_type)

    def carry_candidates(self) -> frozenset[str]:
        return self.inner.carry_candidates()

    def link_candidate(self, frame_index: int, ext: str, content_type: str) -> tuple[str, str]:
        return self.inner.link_candidate(frame_index, ext, content_type)

    def keep_image(self, frame_index: int, data: bytes, ext: str,
                   content_type: str) -> tuple[str, str]:
        return self.inner.keep_image(frame_index, data, ext, content_type)

    def keep_file(self, name: str, data: bytes, content_type: str) -> str:
        return self.inner.keep_file(name, data, content_type)

    def commit(self, manifest: "GoldenManifest") -> str:
        if not self.gate.claim():
            self.inner.abort()
            raise CommitRefusedError(f"the analysis of scan {self.scan_id!r} was cancelled before "
                                     "its result was stored; nothing was stored")
        return self.inner.commit(manifest)

    def abort(self) -> None:
        self.inner.abort()

    def __getattr__(self, name: str) -> Any:
        """What else the inner session offers."""
        return _forwarded(self, name)

    def __enter__(self) -> "GatedSession":
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.inner.__exit__(*exc)


class GatedStore:
    """``inner`` whose sessions commit only when ``gate`` allows it."""

    def __init__(self, inner: "Store", gate: CommitGate) -> None:
        self.inner = inner
        self.gate = gate
        self.name = inner.name

    def open(self, scan_id: str) -> GatedSession:
        return GatedSession(self.inner.open(scan_id), self.gate, scan_id)

    def manifest(self, scan_id: str) -> "GoldenManifest | None":
        return self.inner.manifest(scan_id)

    def __getattr__(self, name: str) -> Any:
        """What else the inner store offers (its folder, its Supabase client, its tenant)."""
        return _forwarded(self, name)


__all__ = ["CommitGate", "CommitRefusedError", "GatedSession", "GatedStore"]
