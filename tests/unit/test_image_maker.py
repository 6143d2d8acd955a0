"""The real-image maker (scripts/images) without building anything: sources parsing, cache keys, and the
one-line failure when no apt mirror answers (a real mmdebstrap run against a closed port: under a second)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.images.make import cache_key, dockerfile
from scripts.images.recipes import RECIPES
from scripts.images.sources import copy_sources, find_sources

ROOT = Path(__file__).resolve().parents[2]


def test_deb822_and_one_line_sources(tmp_path: Path) -> None:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    (d / "sources.list").write_text("# nothing\ndeb-src http://example.invalid/x bookworm main\n")
    (d / "sources.list.d" / "a.sources").write_text(
        "Types: deb\nURIs: http://mirror.invalid/debian\nSuites: bookworm-updates bookworm\nComponents: main\n"
        "\nTypes: deb\nEnabled: no\nURIs: http://off.invalid/\nSuites: sid\nComponents: main\n")
    (d / "sources.list.d" / "b.list").write_text("deb [arch=amd64] http://other.invalid/debian trixie main\n")
    s = find_sources(apt_dir=d)
    assert [p.name for p in s.files] == ["b.list", "a.sources"]  # sources.list has no 'deb' line
    assert s.suite == "trixie"  # the first release-like suite, not bookworm-updates
    assert "http://off.invalid/" not in s.uris
    assert find_sources(apt_dir=d, suite="bookworm").suite == "bookworm"


def test_cache_key_follows_packages_and_sources(tmp_path: Path) -> None:
    a, b = tmp_path / "a.list", tmp_path / "b.list"
    a.write_text("deb http://one.invalid/debian bookworm main\n")
    b.write_text("deb http://two.invalid/debian bookworm main\n")
    sa, sb = find_sources(a), find_sources(b)
    keys = {cache_key(RECIPES[n], sa) for n in RECIPES}
    assert len(keys) == len(RECIPES)
    assert cache_key(RECIPES["nginx"], sa) != cache_key(RECIPES["nginx"], sb)
    assert cache_key(RECIPES["nginx"], sa) == cache_key(RECIPES["nginx"], find_sources(a))


def test_dockerfiles_are_from_scratch_with_metadata(tmp_path: Path) -> None:
    a = tmp_path / "a.list"
    a.write_text("deb http://one.invalid/debian bookworm main\n")
    text = dockerfile(RECIPES["nginx"], find_sources(a))
    assert "FROM scratch\nADD rootfs.tar /\n" in text
    assert "STOPSIGNAL SIGQUIT" in text and 'CMD ["nginx", "-g", "daemon off;"]' in text
    assert "one.invalid" not in text  # the mirror never lands in an image's metadata
    assert "USER redis" in dockerfile(RECIPES["redis"], find_sources(a))
    assert "USER postgres" in dockerfile(RECIPES["postgres"], find_sources(a))


def test_unreachable_sources_fail_in_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.list"
    bogus.write_text("deb http://127.0.0.1:9/debian bookworm main\n")  # port 9 (discard): nothing listens
    p = subprocess.run([sys.executable, "-m", "scripts.images", "--sources", str(bogus), "debian",
                        str(tmp_path / "ctx")], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={"CTK_IMAGE_CACHE": str(tmp_path / "cache"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert p.returncode == 1
    assert p.stdout == ""
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("images: error:")]
    assert len(errors) == 1, p.stderr
    assert str(bogus) in errors[0] and "http://127.0.0.1:9/debian" in errors[0]
    assert "Could not connect" in errors[0] or "Failed to fetch" in errors[0]
    assert "Traceback" not in p.stderr
    assert not list((tmp_path / "cache").glob("*.tar"))
    assert not (tmp_path / "ctx" / "Dockerfile").exists()


def test_missing_sources_file_fails_in_one_line(tmp_path: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "scripts.images", "--sources", str(tmp_path / "none.list"),
                        "nginx", str(tmp_path / "ctx")], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.strip().count("\n") == 0 and "none.list" in p.stderr


def test_machine_sources_copied_under_names_apt_reads(tmp_path: Path) -> None:
    d = tmp_path / "apt"
    (d / "sources.list.d").mkdir(parents=True)
    (d / "sources.list").write_text("deb http://one.invalid/debian bookworm main\n")
    (d / "sources.list.d" / "x.sources").write_text("Types: deb\nURIs: http://two.invalid/\nSuites: bookworm\n"
                                                     "Components: main\n")
    out = copy_sources(find_sources(apt_dir=d), tmp_path / "ctx" / "apt-sources")
    assert sorted(p.name for p in out) == ["machine.list", "x.sources"]
    assert (tmp_path / "ctx" / "apt-sources" / "machine.list").read_text().startswith("deb http://one.invalid")


def test_real_images_fixture_fails_never_skips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.real_image_fixtures import RealImages

    bogus = tmp_path / "bogus.list"
    bogus.write_text("deb http://127.0.0.1:9/debian bookworm main\n")
    monkeypatch.setenv("CTK_IMAGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("scripts.images.make.find_sources", lambda: find_sources(bogus))
    with pytest.raises(pytest.fail.Exception, match="127.0.0.1:9"):
        RealImages("/nonexistent.sock", "127.0.0.1:1", tmp_path)["debian"]
