"""The real-clip cache (tests/realclips.py): where it lives, when it counts as complete, what
tests are told when it is not, the fetch path (against locally built .deb packages and a
stand-in apt-get, so no registry is needed), and the cached derivation of variants."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import realclips


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "realclips"
    monkeypatch.setenv(realclips.ENV_VAR, str(root))
    return root


def fake_complete_cache(root: Path, sources: dict[str, bytes] | None = None) -> None:
    """Every original as a small file, and a manifest that matches them."""
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for o in realclips.ORIGINALS:
        data = (sources or {}).get(o.name, f"not really {o.name}".encode())
        (root / o.name).write_bytes(data)
        files[o.name] = {"size": len(data), "package": o.package, "member": o.member}
    manifest = {"packages": {p: "1.0-1" for p in realclips.PACKAGES}, "files": files}
    (root / realclips.MANIFEST).write_text(json.dumps(manifest))


def test_the_cache_is_outside_the_tree_by_default(monkeypatch):
    monkeypatch.delenv(realclips.ENV_VAR, raising=False)
    root = realclips.cache_root()
    assert root == Path.home() / ".cache" / "framesift" / "realclips"
    assert not root.is_relative_to(Path(__file__).resolve().parents[1])


def test_a_missing_cache_says_why_and_how_to_fetch(cache):
    why = realclips.skip_reason()
    assert why is not None and "not fetched" in why and "make realclips" in why
    assert str(cache) in why
    assert realclips.clip_dir() is None
    assert realclips.real_clips() == [] and realclips.derived_clips() == []


def test_an_empty_cache_folder_is_not_fetched(cache):
    cache.mkdir(parents=True)
    why = realclips.skip_reason()
    assert why is not None and "no manifest.json" in why and "make realclips" in why
    assert realclips.real_clips() == []


def test_a_complete_cache_lists_every_original(cache):
    fake_complete_cache(cache)
    assert realclips.skip_reason() is None
    assert realclips.clip_dir() == cache
    assert [p.name for p in realclips.real_clips()] == sorted(o.name for o in realclips.ORIGINALS)


@pytest.mark.parametrize("damage", ["delete", "resize", "unlist"])
def test_a_file_that_disagrees_with_the_manifest_makes_the_cache_incomplete(cache, damage):
    fake_complete_cache(cache)
    if damage == "delete":
        (cache / "tree.avi").unlink()
    elif damage == "resize":
        (cache / "tree.avi").write_bytes(b"x")
    else:
        manifest = json.loads((cache / realclips.MANIFEST).read_text())
        del manifest["files"]["tree.avi"]
        (cache / realclips.MANIFEST).write_text(json.dumps(manifest))
    why = realclips.skip_reason()
    assert why is not None and "incomplete" in why and "tree.avi" in why
    assert realclips.missing(cache) == ["tree.avi"]
    assert realclips.real_clips() == []


def test_a_complete_cache_is_not_fetched_again(cache, monkeypatch):
    fake_complete_cache(cache)

    def no_process(*args, **kwargs):
        raise AssertionError(f"fetch ran {args[0]} on a complete cache")

    monkeypatch.setattr(realclips, "_run", no_process)
    assert realclips.fetch(cache)["files"].keys() == {o.name for o in realclips.ORIGINALS}


def test_names_are_unique_and_variants_come_from_originals():
    names = [o.name for o in realclips.ORIGINALS]
    assert len(set(names)) == len(names) == 8
    variants = [v.name for v in realclips.VARIANTS]
    assert len(set(variants)) == len(variants)
    assert not set(variants) & set(names)
    assert all(v.source in names for v in realclips.VARIANTS)


# ------------------------------------------------------------------- fetch, end to end offline

def build_deb(tmp: Path, package: str, version: str, members: dict[str, bytes]) -> Path:
    root = tmp / f"build-{package}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <t@example.invalid>\nDescription: stand-in\n")
    for member, data in members.items():
        (root / member).parent.mkdir(parents=True, exist_ok=True)
        (root / member).write_bytes(data)
    deb = tmp / "repo" / f"{package}_{version}_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


@pytest.mark.skipif(shutil.which("dpkg-deb") is None or shutil.which("dpkg") is None,
                    reason="needs dpkg and dpkg-deb (Debian)")
def test_fetch_extracts_gunzips_records_and_cleans_up(tmp_path, cache, monkeypatch):
    """A stand-in apt-get on PATH: the first download fails for lack of lists, so fetch runs
    `apt-get update -qq` once and downloads again; the debs are real (dpkg-deb --build)."""
    content = {}
    for o in realclips.ORIGINALS:
        content[o.name] = f"{o.name} payload ".encode() * 50
    for package in realclips.PACKAGES:
        members = {}
        for o in realclips.ORIGINALS:
            if o.package == package:
                data = content[o.name]
                members[o.member] = gzip.compress(data) if o.member.endswith(".gz") else data
        build_deb(tmp_path, package, "9.9-1", members)
    log = tmp_path / "apt.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(f"""#!/bin/sh
echo "$@" >> {log}
case "$1" in
  update) touch {tmp_path}/updated; exit 0;;
  download)
    [ -e {tmp_path}/updated ] || {{ echo "E: Unable to locate package $2" >&2; exit 100; }}
    cp {tmp_path}/repo/*.deb .; exit 0;;
esac
exit 1
""")
    apt.chmod(apt.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(realclips.tempfile, "tempdir", str(scratch))

    manifest = realclips.fetch()

    calls = log.read_text().splitlines()
    assert calls == [f"download {' '.join(realclips.PACKAGES)}", "update -qq",
                     f"download {' '.join(realclips.PACKAGES)}"]
    assert manifest["packages"] == {p: "9.9-1" for p in realclips.PACKAGES}
    assert manifest == json.loads((cache / realclips.MANIFEST).read_text())
    for o in realclips.ORIGINALS:
        assert (cache / o.name).read_bytes() == content[o.name]  # box.mp4, cup.mp4 gunzipped
        assert manifest["files"][o.name]["size"] == len(content[o.name])
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        [realclips.MANIFEST, *(o.name for o in realclips.ORIGINALS)])
    assert list(scratch.iterdir()) == []  # debs and extracted trees removed
    assert realclips.skip_reason() is None

    realclips.fetch()  # complete: apt-get is not called again
    assert len(log.read_text().splitlines()) == 3


def test_a_fetch_that_fails_leaves_no_manifest(tmp_path, cache, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("apt-get", "dpkg", "dpkg-deb"):
        script = bin_dir / tool
        script.write_text("#!/bin/sh\necho 'E: Failed to fetch http://deb.example: connection "
                          "refused' >&2\nexit 100\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(realclips.FetchError, match="apt-get download"):
        realclips.fetch()
    assert not (cache / realclips.MANIFEST).exists()
    assert realclips.skip_reason() is not None


def test_the_command_line_skips_with_a_note_without_root(cache, monkeypatch, capsys):
    monkeypatch.setattr(realclips.os, "geteuid", lambda: 1000)
    assert realclips.main(["fetch"]) == 0
    err = capsys.readouterr().err
    assert "note:" in err and "needs apt-get and root" in err
    assert not cache.exists()


# ------------------------------------------------------------------- the fetched cache itself

@pytest.mark.skipif(realclips.skip_reason() is not None, reason=realclips.skip_reason() or "")
def test_the_fetched_cache_matches_its_manifest(monkeypatch):
    root = realclips.clip_dir()
    assert root is not None
    manifest = realclips.read_manifest(root)
    assert set(manifest["packages"]) == set(realclips.PACKAGES)
    assert all(manifest["packages"].values())
    assert set(manifest["files"]) == {o.name for o in realclips.ORIGINALS}
    for path in realclips.real_clips():
        assert path.stat().st_size == manifest["files"][path.name]["size"] > 10_000
    for name in ("box.mp4", "cup.mp4", "cockatoo.mp4", "realshort.mp4"):
        assert (root / name).read_bytes()[4:8] == b"ftyp"  # an MP4, gunzipped where shipped .gz
    for name in ("Megamind.avi", "Megamind_bugy.avi", "tree.avi", "vtest.avi"):
        head = (root / name).read_bytes()[:12]
        assert head[:4] == b"RIFF" and head[8:12] == b"AVI "


# ------------------------------------------------------------------- derived variants

def test_variants_are_made_once_and_remade_when_their_recipe_changes(cache, tmp_path):
    """A 1 s textured clip stands in for box.mp4; one cheap variant is made through the real
    path (imageio-ffmpeg's binary), reused while its recipe holds, made again after."""
    source = tmp_path / "box.mp4"
    subprocess.run([realclips.ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-f", "lavfi",
                    "-i", "testsrc2=size=160x120:rate=30:duration=1", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(source)], check=True)
    fake_complete_cache(cache, {"box.mp4": source.read_bytes()})
    name = "box-mpeg1-es.mpg"

    made = realclips.derived_clips([name])
    assert made == [cache / realclips.DERIVED / name]
    assert made[0].read_bytes()[:4] == b"\x00\x00\x01\xb3"  # an MPEG-1 sequence header, no pack
    book_path = cache / realclips.DERIVED / realclips.MANIFEST
    book = json.loads(book_path.read_text())
    assert book["files"][name]["size"] == made[0].stat().st_size
    first = made[0].stat().st_mtime_ns

    assert realclips.derived_clips([name]) == made
    assert made[0].stat().st_mtime_ns == first  # cached

    book["files"][name]["recipe"] = ["-i", "box.mp4", "an older recipe"]
    book_path.write_text(json.dumps(book))
    realclips.derived_clips([name])
    assert made[0].stat().st_mtime_ns != first
    assert json.loads(book_path.read_text())["files"][name]["recipe"] == next(
        v.recipe() for v in realclips.VARIANTS if v.name == name)
    assert not list((cache / realclips.DERIVED).glob(".part-*"))
