"""Uploaded videos on the service's disk, owned by the analysis that refers to them.

The ingress writes an upload under an ``incoming-`` name; the coordinator *claims* it (renames
it to the analysis id) in the same step that records the analysis, with no ``await`` between,
so a client that disconnects at any point leaves either a claimed file with its record or an
unclaimed file the ingress deletes. Whatever a crash still leaves behind (a file no queued or
running analysis refers to) is deleted by ``sweep`` at start-up and periodically, once it is
older than a grace period (an upload being written is always fresh).
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Iterable

INCOMING_PREFIX = "incoming-"
# Uploads are stored without the client's file name or suffix: nothing the client chose
# reaches a path, and FFmpeg's format guess cannot be steered by a name (actors/video.py
# opens inputs through a container allow-list in any case).
UPLOAD_SUFFIX = ".upload"


class LocalUploads:
    """Uploads in one folder (``<state_dir>/uploads``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def incoming(self) -> Path:
        """A fresh path for an upload being received (not yet any analysis's)."""
        return self.root / f"{INCOMING_PREFIX}{uuid.uuid4().hex}{UPLOAD_SUFFIX}"

    def claim(self, incoming: str | os.PathLike[str], analysis_id: str) -> Path:
        """Make ``incoming`` the upload of ``analysis_id`` (atomic rename). Raises
        ``FileNotFoundError`` when it is gone (its request ended and deleted it)."""
        src = Path(incoming)
        if src.parent.resolve() != self.root or not src.name.startswith(INCOMING_PREFIX):
            raise FileNotFoundError(f"not an incoming upload: {src.name}")
        dst = self.root / f"{analysis_id}{UPLOAD_SUFFIX}"
        os.rename(src, dst)
        return dst

    def remove(self, path: str | os.PathLike[str]) -> None:
        Path(path).unlink(missing_ok=True)

    def sweep(self, referenced: Iterable[str], grace_s: float) -> list[str]:
        """Delete files older than ``grace_s`` that no active analysis refers to; returns
        their names."""
        keep = {Path(p).resolve() for p in referenced}
        cutoff = time.time() - grace_s
        removed = []
        for path in self.root.iterdir():
            try:
                if path.resolve() in keep or not path.is_file() or path.stat().st_mtime > cutoff:
                    continue
                path.unlink()
            except FileNotFoundError:
                continue
            removed.append(path.name)
        return removed
