"""Real clips that other people recorded, for tests and benchmarks: fetched from Debian packages
into a cache outside the tree, plus codec/container variants derived from them.

Originals come from two Debian packages (``apt-get download``, no install): ``opencv-doc``
(OpenCV's sample videos: MPEG-4 Part 2 with packed B-frames, Cinepak, MS-MPEG4v3, and two
H.264 MP4s shipped gzipped) and ``python3-imageio`` (two H.264 MP4s). Derived variants are made
from them with the ffmpeg binary of ``imageio-ffmpeg``: what phones and old archives produce
(Theora, VP8, VP9, MPEG-1/2 elementary and program streams, MJPEG, HuffYUV, H.263, FLV1, WMV2,
MPEG-4 Part 2 with B-frames, x264 in MOV and MPEG-TS, and AVI streams remuxed into Matroska).

The cache is ``$FRAMESIFT_REALCLIPS`` (default ``~/.cache/framesift/realclips``)::

    realclips/
      manifest.json      packages and versions, every original file with its size
      Megamind.avi ...   the originals, flat
      derived/           the variants (made on demand), with their own manifest.json

    python tests/realclips.py fetch     # what `make realclips` runs (needs apt-get and root)
    python tests/realclips.py derive    # make the variants now (needs a fetched cache)
    python tests/realclips.py list      # the clips this machine has, one per line

In tests (``tests`` is on pytest's path)::

    import realclips
    pytestmark = pytest.mark.skipif(realclips.skip_reason() is not None,
                                    reason=realclips.skip_reason() or "")
    for clip in realclips.real_clips() + realclips.derived_clips(): ...

Importing this module runs nothing: it reads no files and starts no process.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ENV_VAR = "FRAMESIFT_REALCLIPS"
MANIFEST = "manifest.json"
DERIVED = "derived"
FETCH_HINT = "run `make realclips` (needs apt-get and root)"


@dataclass(frozen=True)
class Original:
    """A file of a Debian package, copied flat into the cache (gunzipped when ``.gz``)."""

    package: str
    member: str  # path inside the package

    @property
    def name(self) -> str:
        base = self.member.rsplit("/", 1)[-1]
        return base[:-3] if base.endswith(".gz") else base


_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
_OPENCV_HTML = "usr/share/doc/opencv-doc/opencv4/html"
_IMAGEIO = "usr/lib/python3/dist-packages/imageio/resources/images"

ORIGINALS: tuple[Original, ...] = (
    Original("opencv-doc", f"{_OPENCV_DATA}/Megamind.avi"),       # MPEG-4 ASP, packed B, AC-3
    Original("opencv-doc", f"{_OPENCV_DATA}/Megamind_bugy.avi"),  # the same, damaged
    Original("opencv-doc", f"{_OPENCV_DATA}/tree.avi"),           # Cinepak
    Original("opencv-doc", f"{_OPENCV_DATA}/vtest.avi"),          # MS-MPEG4v3 (DivX 3)
    Original("opencv-doc", f"{_OPENCV_HTML}/box.mp4.gz"),         # H.264, hand-held
    Original("opencv-doc", f"{_OPENCV_HTML}/cup.mp4.gz"),         # H.264
    Original("python3-imageio", f"{_IMAGEIO}/cockatoo.mp4"),      # H.264 720p
    Original("python3-imageio", f"{_IMAGEIO}/realshort.mp4"),     # H.264, 36 frames
)
PACKAGES: tuple[str, ...] = tuple(dict.fromkeys(o.package for o in ORIGINALS))


@dataclass(frozen=True)
class Variant:
    """A clip derived from an original with ffmpeg: ``ffmpeg [input_args] -i SOURCE [args] OUT``."""

    name: str
    source: str
    args: tuple[str, ...]
    input_args: tuple[str, ...] = ()
    what: str = ""

    def recipe(self) -> list[str]:
        """The arguments that decide the output (the cache is remade when they change)."""
        return [*self.input_args, "-i", self.source, *self.args]


_CUT = ("-t", "6", "-an")  # 6 s of box.mp4 (hand-held, 640x480), video only
_NTSC = ("-r", "30000/1001")  # MPEG-1/2 and H.263 accept only their standard frame rates

VARIANTS: tuple[Variant, ...] = (
    Variant("box-theora.ogv", "box.mp4", (*_CUT, "-c:v", "libtheora", "-q:v", "7"),
            what="Theora in Ogg"),
    Variant("box-vp8.webm", "box.mp4",
            (*_CUT, "-c:v", "libvpx", "-b:v", "1M", "-deadline", "good", "-cpu-used", "4"),
            what="VP8 in WebM"),
    Variant("box-vp9.webm", "box.mp4",
            (*_CUT, "-c:v", "libvpx-vp9", "-b:v", "1M", "-deadline", "realtime", "-cpu-used", "8"),
            what="VP9 in WebM (realtime, as phones and browsers record)"),
    Variant("box-mpeg1-es.mpg", "box.mp4",
            (*_CUT, *_NTSC, "-c:v", "mpeg1video", "-q:v", "4", "-f", "mpeg1video"),
            what="raw MPEG-1 video elementary stream (no container) named .mpg"),
    Variant("box-mpeg2-ps.mpg", "box.mp4",
            (*_CUT, *_NTSC, "-c:v", "mpeg2video", "-q:v", "4", "-bf", "2", "-g", "15",
             "-f", "vob"),
            what="MPEG-2 program stream with B-frames (DVD/camcorder style)"),
    Variant("box-mpeg2-es.m2v", "box.mp4",
            (*_CUT, *_NTSC, "-c:v", "mpeg2video", "-q:v", "4", "-bf", "2", "-g", "15",
             "-f", "mpeg2video"),
            what="raw MPEG-2 video elementary stream with B-frames"),
    Variant("box-mjpeg.avi", "box.mp4",
            (*_CUT, "-c:v", "mjpeg", "-q:v", "3", "-pix_fmt", "yuvj420p"),
            what="Motion JPEG in AVI (cameras, old phones)"),
    Variant("box-huffyuv-2s.avi", "box.mp4", ("-t", "2", "-an", "-c:v", "huffyuv"),
            what="HuffYUV lossless in AVI, 2 s (big)"),
    Variant("box-h263-cif.3gp", "box.mp4",
            (*_CUT, *_NTSC, "-vf", "scale=352:288", "-c:v", "h263", "-q:v", "4"),
            what="H.263 at CIF in 3GP (old phones)"),
    Variant("box-flv1.flv", "box.mp4", (*_CUT, "-c:v", "flv", "-q:v", "4"),
            what="Sorenson Spark (FLV1) in FLV"),
    Variant("box-wmv2.wmv", "box.mp4", (*_CUT, "-c:v", "wmv2", "-q:v", "4"),
            what="WMV2 (Windows Media Video 8) in ASF"),
    Variant("box-mpeg4-bf2.avi", "box.mp4",
            (*_CUT, "-c:v", "mpeg4", "-q:v", "4", "-bf", "2", "-vtag", "XVID"),
            what="MPEG-4 Part 2 with B-frames in AVI (Xvid style)"),
    Variant("box-x264-bf3.mov", "box.mp4",
            (*_CUT, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-bf", "3",
             "-pix_fmt", "yuv420p"),
            what="H.264 with 3 B-frames in QuickTime MOV"),
    Variant("box-x264.ts", "box.mp4",
            (*_CUT, "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt",
             "yuv420p", "-f", "mpegts"),
            what="H.264 in MPEG-TS (broadcast, some cameras)"),
    Variant("Megamind-remux.mkv", "Megamind.avi", ("-c:v", "copy", "-c:a", "copy"),
            input_args=("-fflags", "+genpts"),
            what="MPEG-4 Part 2 with packed B-frames remuxed into Matroska (with its AC-3)"),
    Variant("vtest-remux.mkv", "vtest.avi", ("-c", "copy"),
            what="MS-MPEG4v3 remuxed into Matroska (VfW codec private)"),
)


class FetchError(RuntimeError):
    """Fetching the Debian packages or copying their clips failed."""


# ---------------------------------------------------------------------------------- where

def cache_root() -> Path:
    """The cache folder, whether or not anything is in it."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "framesift" / "realclips"


def read_manifest(root: Path | None = None) -> dict | None:
    """The cache's manifest, or None when it is missing or unreadable."""
    try:
        return json.loads(((root or cache_root()) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def missing(root: Path | None = None) -> list[str]:
    """Originals that are absent, or whose size differs from the manifest (all of them when
    there is no manifest)."""
    root = root or cache_root()
    manifest = read_manifest(root)
    if manifest is None:
        return [o.name for o in ORIGINALS]
    files = manifest.get("files", {})
    out = []
    for o in ORIGINALS:
        entry = files.get(o.name)
        path = root / o.name
        if entry is None or not path.is_file() or path.stat().st_size != entry.get("size"):
            out.append(o.name)
    return out


def skip_reason() -> str | None:
    """None when every original is in the cache; otherwise why tests on real clips skip."""
    root = cache_root()
    if not root.is_dir():
        return f"real clips not fetched ({root} does not exist): {FETCH_HINT}"
    if read_manifest(root) is None:
        return f"real clips not fetched (no {MANIFEST} in {root}): {FETCH_HINT}"
    gone = missing(root)
    if gone:
        return (f"real clips incomplete in {root} (missing or changed: {', '.join(gone)}): "
                f"{FETCH_HINT}")
    return None


def clip_dir() -> Path | None:
    """The cache folder when it holds every original, else None."""
    return cache_root() if skip_reason() is None else None


def real_clips() -> list[Path]:
    """The fetched originals, sorted by name; [] when the cache is not complete."""
    root = clip_dir()
    return [] if root is None else sorted(root / o.name for o in ORIGINALS)


# ---------------------------------------------------------------------------------- fetch

def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"})


# apt-get's words when its package lists are absent or stale (a version gone from the mirror)
_NO_LISTS = ("unable to locate package", "has no installation candidate",
             "can't select candidate", "404", "not found")


def _download(packages: tuple[str, ...], into: Path) -> None:
    """``apt-get download`` into ``into``; ``apt-get update -qq`` once, only when the lists
    are missing or stale."""
    cmd = ["apt-get", "download", *packages]
    done = _run(cmd, into)
    if done.returncode != 0 and any(w in done.stderr.lower() for w in _NO_LISTS):
        update = _run(["apt-get", "update", "-qq"])
        if update.returncode != 0:
            raise FetchError(f"apt-get update failed: {update.stderr.strip()[-500:]}")
        done = _run(cmd, into)
    if done.returncode != 0:
        raise FetchError(f"apt-get download {' '.join(packages)} failed: "
                         f"{done.stderr.strip()[-500:]}")


def _copy_original(original: Original, tree: Path, root: Path) -> int:
    """Copy (or gunzip) one member into ``root`` atomically; its size."""
    src = tree / original.member
    if not src.is_file():
        raise FetchError(f"{original.package} has no {original.member} (package layout changed?)")
    part = root / f".{original.name}.part"
    if src.name.endswith(".gz"):
        with gzip.open(src, "rb") as fin, open(part, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        shutil.copyfile(src, part)
    os.replace(part, root / original.name)
    return (root / original.name).stat().st_size


def fetch(root: Path | None = None, *, force: bool = False) -> dict:
    """Put the originals into ``root`` (default: the cache) and return its manifest. A complete
    cache is left as it is (nothing downloaded) unless ``force``. The debs and the extracted
    trees live in a temporary folder that is removed afterwards, also on failure."""
    root = root or cache_root()
    if not force and not missing(root):
        return read_manifest(root) or {}
    for tool in ("apt-get", "dpkg", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise FetchError(f"{tool} not found: real clips come from Debian packages")
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="realclips-") as tmp:
        work = Path(tmp)
        _download(PACKAGES, work)
        versions: dict[str, str] = {}
        trees: dict[str, Path] = {}
        for package in PACKAGES:
            debs = sorted(work.glob(f"{package}_*.deb"))
            if not debs:
                raise FetchError(f"apt-get download left no {package}_*.deb in {work}")
            deb = debs[-1]
            versions[package] = _run(["dpkg-deb", "-f", str(deb), "Version"]).stdout.strip()
            tree = work / package
            extracted = _run(["dpkg", "-x", str(deb), str(tree)])
            if extracted.returncode != 0:
                raise FetchError(f"dpkg -x {deb.name} failed: {extracted.stderr.strip()[-500:]}")
            deb.unlink()
            trees[package] = tree
        files = {}
        for o in ORIGINALS:
            size = _copy_original(o, trees[o.package], root)
            files[o.name] = {"size": size, "package": o.package, "member": o.member}
    manifest = {"packages": versions, "files": files,
                "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "fetch_s": round(time.perf_counter() - t0, 2)}
    part = root / f".{MANIFEST}.part"
    part.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(part, root / MANIFEST)  # written last: its presence means "complete"
    return manifest


# ---------------------------------------------------------------------------------- derive

def ffmpeg_exe() -> str:
    """The ffmpeg binary shipped by imageio-ffmpeg (a project dependency; it has no ffprobe)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time makes variants (pytest workers, a bench beside a test run)."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def derive(variant: Variant, root: Path, out_dir: Path) -> Path:
    """Make one variant into ``out_dir`` (atomically: a failed encode leaves nothing)."""
    out = out_dir / variant.name
    part = out_dir / f".part-{variant.name}"  # keeps the suffix: ffmpeg picks its muxer by it
    cmd = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
           *variant.input_args, "-i", str(root / variant.source), *variant.args, str(part)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not part.is_file() or part.stat().st_size == 0:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg could not make {variant.name} ({variant.what}): "
                           f"{' '.join(cmd)}\n{done.stderr.strip()[-800:]}")
    os.replace(part, out)
    return out


def derived_clips(names: list[str] | None = None) -> list[Path]:
    """The variants (all, or those ``names``), made on first use and cached in ``derived/``;
    one whose recipe changed is made again. [] when the originals are not fetched."""
    root = clip_dir()
    if root is None:
        return []
    wanted = [v for v in VARIANTS if names is None or v.name in names]
    out_dir = root / DERIVED
    with _locked(out_dir):
        book_path = out_dir / MANIFEST
        try:
            book = json.loads(book_path.read_text())
        except (OSError, ValueError):
            book = {}
        files = book.setdefault("files", {})
        changed = False
        for v in wanted:
            entry = files.get(v.name) or {}
            path = out_dir / v.name
            if (path.is_file() and entry.get("recipe") == v.recipe()
                    and entry.get("size") == path.stat().st_size):
                continue
            t = time.perf_counter()
            derive(v, root, out_dir)
            files[v.name] = {"recipe": v.recipe(), "size": path.stat().st_size,
                             "what": v.what, "make_s": round(time.perf_counter() - t, 2)}
            changed = True
        if changed:
            book["ffmpeg"] = ffmpeg_exe().rsplit("/", 1)[-1]
            part = out_dir / f".{MANIFEST}.part"
            part.write_text(json.dumps(book, indent=2) + "\n")
            os.replace(part, book_path)
    return sorted(out_dir / v.name for v in wanted)


# ---------------------------------------------------------------------------------- CLI

def _cli_fetch() -> int:
    root = cache_root()
    if not missing(root):
        print(f"real clips: up to date in {root}")
        return 0
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        print(f"note: real clips not fetched (needs apt-get and root): the real-clip tests will "
              f"be skipped; as root run: {sys.executable} {Path(__file__).resolve()} fetch",
              file=sys.stderr)
        return 0
    print(f"fetching real clips ({', '.join(PACKAGES)}, apt-get download) into {root}")
    try:
        manifest = fetch(root)
    except FetchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"real clips: {len(manifest['files'])} files in {root} ({manifest['fetch_s']} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=("fetch", "derive", "list", "why"),
                    help="fetch the originals, make the variants, list the clips, or say why "
                         "tests would skip")
    args = ap.parse_args(argv)
    if args.command == "fetch":
        return _cli_fetch()
    why = skip_reason()
    if args.command == "why":
        print(why or f"real clips complete in {cache_root()}")
        return 0
    if why:
        print(why, file=sys.stderr)
        return 1
    if args.command == "derive":
        t = time.perf_counter()
        made = derived_clips()
        print(f"{len(made)} derived clips in {made[0].parent} ({time.perf_counter() - t:.1f} s)")
        return 0
    for path in real_clips() + derived_clips():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
