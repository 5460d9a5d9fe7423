"""A Ray cluster living in a subprocess of this one, driven over its stdin.

``cluster_manager.py`` (a batch's cluster) and ``service_cluster.py`` (the HTTP service on a
cluster) answer each command with one JSON line through ``answer``, on a pipe of their own:
Ray prints its notices to stdout whenever it likes (a killed raylet's notice once landed in the
middle of an answer line), so stdout and stderr only go to the manager's log. Every process of
the cluster runs under the manager's temporary folder, so stopping it kills only those, never
the test session's own Ray.
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
ANSWER_FD = "FRAMESIFT_TEST_ANSWER_FD"  # the write end of the answers' pipe, in the script


def answer(data: dict) -> None:
    """In a cluster script: one answer to the test, on the answers' pipe."""
    fd = int(os.environ[ANSWER_FD])
    os.write(fd, (json.dumps(data) + "\n").encode())


class ManagedCluster:
    """Start ``script TEMP_DIR *args`` and read its first answer; ``command`` sends one line
    and returns the answer; ``stop`` quits it and kills anything of it left."""

    def __init__(self, script: str, args: list[str], env: dict[str, str], *, prefix: str,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix=prefix, dir="/tmp")  # short: socket paths
        self.log = open(os.path.join(self.temp_dir, "manager.log"), "w")
        read_end, write_end = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(HERE / script), self.temp_dir, *args],
                stdin=subprocess.PIPE, stdout=self.log, stderr=subprocess.STDOUT, text=True,
                env={**env, ANSWER_FD: str(write_end)}, pass_fds=(write_end,), cwd=cwd)
        finally:
            os.close(write_end)  # the script holds the only write end: its exit ends the pipe
        self.answers = os.fdopen(read_end, "r")
        self.first = self._answer()

    def _answer(self) -> dict:
        line = self.answers.readline()
        if not line:
            self.log.flush()
            raise RuntimeError("the cluster manager exited: "
                               + Path(self.log.name).read_text()[-3000:])
        return json.loads(line)

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
        self.answers.close()
        self.log.close()
        shutil.rmtree(self.temp_dir, ignore_errors=True)
