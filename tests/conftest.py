"""Shared fixtures: generated videos with known truth, one private Ray per session, and a private
PostgreSQL server (started only when a test asks for it)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from actors.synthetic import SampleTruth, make_sample_video


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
        detail = f"torch {torch.__version__}, CUDA build {torch.version.cuda}"
    except Exception as exc:  # torch missing or broken: no GPU path here
        has_cuda, detail = False, f"torch unusable: {exc}"
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if has_cuda or not gpu_items:
        return
    if os.environ.get("FRAMESIFT_REQUIRE_GPU") == "1":
        raise pytest.UsageError(f"FRAMESIFT_REQUIRE_GPU=1 but torch sees no CUDA device ({detail})")
    for item in gpu_items:
        item.add_marker(pytest.mark.skip(reason="needs CUDA"))


class Videos:
    """Generates sample videos on demand and caches them for the session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._made: dict[tuple, tuple[Path, SampleTruth]] = {}

    def get(self, *, seconds: float = 6.0, size: tuple[int, int] = (480, 270), seed: int = 0,
            bframes: int = 2, gop: int = 60, vfr: bool = False, fps: int = 30) -> tuple[Path, SampleTruth]:
        key = (seconds, size, seed, bframes, gop, vfr, fps)
        if key not in self._made:
            rate = "vfr" if vfr else "cfr"
            name = f"v_{size[0]}x{size[1]}_{seconds}s_s{seed}_b{bframes}_g{gop}_{rate}_{fps}.mp4"
            path = self.root / name
            truth = make_sample_video(path, seconds=seconds, size=size, fps=fps, seed=seed,
                                      bframes=bframes, gop=gop, variable_fps=vfr)
            self._made[key] = (path, truth)
        return self._made[key]


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Videos:
    return Videos(tmp_path_factory.mktemp("videos"))


@pytest.fixture(scope="session")
def ray_cluster():
    """One private local Ray (2 CPUs, own temp dir) for the whole session."""
    import ray

    from jobs.runtime import ensure_ray

    if ray.is_initialized():
        ray.shutdown()
    # the Serve proxy bounds request headers and read times (serve/http_guard.py), as the Ray
    # that `framesift serve` starts does; short read timeouts keep the tests of them short
    os.environ.setdefault("RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH",
                          "serve.http_guard.proxy_middlewares")
    os.environ.setdefault("FRAMESIFT_HEADER_TIMEOUT_S", "3")
    os.environ.setdefault("FRAMESIFT_BODY_IDLE_TIMEOUT_S", "4")
    temp_dir = tempfile.mkdtemp(prefix="fsray-", dir="/tmp")
    cpus = ensure_ray(num_cpus=2, temp_dir=temp_dir)
    yield cpus
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


def _postgres_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def postgres():
    """A private PostgreSQL server for the session; yields a conninfo string for the superuser.

    It runs as the ``postgres`` user when the tests run as root (initdb refuses root), in a temp
    dir on a free loopback port, trusting local connections; stopped at the session's end.
    """
    bindir = _postgres_binaries()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl) found; `make test` installs "
                    "them (apt-get install postgresql)")
    as_user: list[str] = []
    root = tempfile.mkdtemp(prefix="fspg-")
    if os.geteuid() == 0:
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        os.chown(root, pg.pw_uid, pg.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    os.chmod(root, 0o700)
    data, log = os.path.join(root, "data"), os.path.join(root, "server.log")
    port = _free_port()
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", data, "-U", "postgres",
                    "--auth=trust", "-E", "UTF8", "--no-locale"],
                   check=True, capture_output=True, timeout=180)
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    started = subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", data, "-l", log, "-o", opts,
                              "-w", "-t", "120", "start"], capture_output=True, timeout=180)
    if started.returncode != 0:
        logtext = Path(log).read_text() if os.path.exists(log) else ""
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"pg_ctl start failed: {started.stderr.decode()} {logtext}")
    pid = int(Path(data, "postmaster.pid").read_text().splitlines()[0])
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        stopped = subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", data, "-m", "fast",
                                  "-w", "-t", "60", "stop"], capture_output=True, timeout=120)
        if stopped.returncode != 0:
            try:
                os.kill(pid, signal.SIGQUIT)  # our own postmaster, by pid
            except ProcessLookupError:
                pass
        shutil.rmtree(root, ignore_errors=True)


def new_database(conninfo: str) -> str:
    """A fresh, empty database on the server of ``conninfo``; returns its ``postgresql://`` URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f"create database {name}")
    keys = dict(p.split("=", 1) for p in conninfo.split())
    return f"postgresql://{keys['user']}@{keys['host']}:{keys['port']}/{name}"


@pytest.fixture
def make_database(postgres):
    """Factory of fresh, empty databases on the session's server (``postgresql://`` URLs)."""
    return lambda: new_database(postgres)
