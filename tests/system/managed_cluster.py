"""A Ray cluster living in a subprocess of this one, driven over its stdin.

``cluster_manager.py`` (a batch's cluster) and ``service_cluster.py`` (the HTTP service on a
cluster) answer each command with one JSON line (``service_cluster.py`` prefixes its lines with
``FSC ``: Ray prints its own notices to the same stdout). Every process of the cluster runs
under the manager's temporary folder, so stopping it kills only those, never the test
session's own Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent


class ManagedCluster:
    """Start ``script TEMP_DIR *args`` and read its first answer; ``command`` sends one line
    and returns the answer; ``stop`` quits it and kills anything of it left."""

    def __init__(self, script: str, args: list[str], env: dict[str, str], *, prefix: str,
                 marker: str = "", cwd: str | os.PathLike[str] | None = None) -> None:
        self.marker = marker
        self.temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: socket paths
        self.log = open(os.path.join(self.temp_dir, "manager.log"), "w")
        self.proc = subprocess.Popen([sys.executable, str(HERE / script), self.temp_dir, *args],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, env=env, cwd=cwd)
        self.first = self._answer()

    def _answer(self) -> dict:
        assert self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.log.flush()
                raise RuntimeError("the cluster manager exited: "
                                   + Path(self.log.name).read_text()[-3000:])
            if line.startswith(self.marker) and line[len(self.marker):].lstrip().startswith("{"):
                return json.loads(line[len(self.marker):])

    def command(self, command: str) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def processes(self) -> list[psutil.Process]:
        """This cluster's processes (by their temporary folder on the command line)."""
        found = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if self.temp_dir in " ".join(p.info["cmdline"] or []):
                    found.append(p)
            except psutil.Error:
                continue
        return found

    def stop(self) -> None:
        try:
            self.command("quit")
        except (RuntimeError, OSError, ValueError):
            pass
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in self.processes():  # anything left of this cluster only
            try:
                p.kill()
            except psutil.Error:
                continue
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
