"""The registry of official BAL problems: metadata, lookup order, downloads (offline: file:// URLs)."""
import hashlib
import importlib.util
import io
import json
import urllib.request
from pathlib import Path

import pytest

from sparselm.bal import registry
from sparselm.bal.registry import (ChecksumError, DatasetInfo, DatasetNotFoundError, cache_dir, dataset_info,
                                   fetch, list_datasets, resolve)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_entry(tmp_path, monkeypatch):
    """Replace the registry by one entry, 'problem-2-3-pre', whose file is a local archive."""
    archive = tmp_path / "served" / "problem-2-3-pre.txt.bz2"
    archive.parent.mkdir()
    archive.write_bytes(b"BZh" + bytes(range(256)) * 20)
    info = DatasetInfo("problem-2-3-pre", "testfamily", archive.as_uri(),
                       hashlib.sha256(archive.read_bytes()).hexdigest(), 2, 3)
    monkeypatch.setattr(registry, "_registry", lambda: {info.name: info})
    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "cache"))
    return info


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty cache and no $SPARSELM_DATA."""
    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SPARSELM_DATA", raising=False)
    return tmp_path


# -- metadata -------------------------------------------------------------------------------------


def test_registry_lists_the_official_problems():
    datasets = list_datasets()
    assert len(datasets) == 74
    assert {d.family for d in datasets} == {"dubrovnik", "ladybug", "trafalgar", "venice"}
    assert len({d.name for d in datasets}) == 74
    for d in datasets:
        assert d.name == f"problem-{d.n_cameras}-{d.n_points}-pre"
        assert d.url == f"https://grail.cs.washington.edu/projects/bal/data/{d.family}/{d.filename}"
        assert len(d.sha256) == 64 and int(d.sha256, 16) >= 0


def test_dataset_info_accepts_names_families_and_file_names():
    info = dataset_info("problem-16-22106-pre")
    assert (info.family, info.n_cameras, info.n_points) == ("dubrovnik", 16, 22106)
    assert info.sha256 == "0d695947deb3fc3026e5434a904151b18fe8e60c0176e430dcb5e7a3da039ca5"
    assert dataset_info("dubrovnik/problem-16-22106-pre.txt.bz2") == info
    assert dataset_info("problem-16-22106-pre.txt") == info


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(DatasetNotFoundError, match="did you mean problem-16-22106-pre"):
        dataset_info("problem-16-22107-pre")
    with pytest.raises(LookupError, match="sparselm datasets list"):
        dataset_info("zzzz")


@pytest.mark.bal
def test_registry_is_generated_from_the_official_checksums(bal_data):
    spec = importlib.util.spec_from_file_location("make_registry", REPO / "datasets" / "make_registry.py")
    make_registry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_registry)
    checksums = json.loads((bal_data / "official-sha256.json").read_text())
    committed = json.loads(registry.REGISTRY_PATH.read_text())["datasets"]  # the package data
    assert make_registry.registry_entries(checksums) == committed
    assert make_registry.OUTPUT == REPO / "sparselm" / "bal" / "data" / "bal_registry.json" == Path(
        str(registry.REGISTRY_PATH))


@pytest.mark.bal
@pytest.mark.parametrize("family", ["dubrovnik", "ladybug", "trafalgar"])
def test_local_official_files_match_the_registry(bal_data, family):
    for path in (bal_data / family).glob("*.txt.bz2"):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == dataset_info(path.name).sha256


def test_missing_registry_file_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(registry, "REGISTRY_PATH", tmp_path / "nowhere.json")
    registry._registry.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="nowhere.json is missing.*package data of sparselm.bal"):
            list_datasets()
    finally:
        monkeypatch.undo()
        registry._registry.cache_clear()
    assert len(list_datasets()) == 74


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("SPARSELM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SPARSELM_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "sparselm"


# -- resolve --------------------------------------------------------------------------------------


def test_resolve_explicit_path_first(isolated, monkeypatch):
    explicit = isolated / "problem-16-22106-pre"
    explicit.write_text("x")
    monkeypatch.chdir(isolated)
    assert resolve(explicit) == explicit
    assert resolve("problem-16-22106-pre") == Path("problem-16-22106-pre")


@pytest.mark.bal
def test_resolve_in_sparselm_data(bal_data, isolated, monkeypatch):
    monkeypatch.setenv("SPARSELM_DATA", str(bal_data))
    assert resolve("problem-16-22106-pre") == bal_data / "dubrovnik" / "problem-16-22106-pre.txt.bz2"
    assert resolve("dubrovnik-3-7-pre") == bal_data / "variants" / "dubrovnik-3-7-pre.txt.bz2"
    assert resolve("ladybug/problem-49-7776-pre") == bal_data / "ladybug" / "problem-49-7776-pre.txt.bz2"
    assert resolve("problem-21-11315-pre.txt.bz2") == bal_data / "trafalgar" / "problem-21-11315-pre.txt.bz2"


def test_resolve_search_order(isolated, monkeypatch):
    first, second = isolated / "first", isolated / "second" / "deep"
    second.mkdir(parents=True)
    (second / "p.txt").write_text("plain")
    monkeypatch.setenv("SPARSELM_DATA", f"{first}:{isolated / 'second'}")  # first does not exist
    assert resolve("p") == second / "p.txt"
    (second / "p.txt.bz2").write_text("compressed")
    assert resolve("p") == second / "p.txt.bz2"  # .txt.bz2 is preferred
    (second / "q[1]").write_text("glob characters are literal")
    assert resolve("q[1]") == second / "q[1]"
    cached = cache_dir() / "bal" / "fam" / "c.txt.bz2"
    cached.parent.mkdir(parents=True)
    cached.write_text("cached")
    assert resolve("c") == cached
    (second / "c.txt").write_text("data beats cache")
    assert resolve("c") == second / "c.txt"


def test_resolve_not_found_says_where_it_looked(isolated, monkeypatch):
    with pytest.raises(DatasetNotFoundError) as info:
        resolve("problem-16-22106-pre")
    message = str(info.value)
    assert "$SPARSELM_DATA (not set)" in message and str(cache_dir() / "bal") in message
    assert "sparselm datasets fetch problem-16-22106-pre" in message
    monkeypatch.setenv("SPARSELM_DATA", str(isolated))
    with pytest.raises(DatasetNotFoundError, match=f"{isolated} \\(\\$SPARSELM_DATA\\).*not an official"):
        resolve("my-problem")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        resolve(isolated / "absent.txt")


# -- fetch ----------------------------------------------------------------------------------------


@pytest.mark.bal
def test_fetch_a_real_file_from_a_mirror(bal_data, isolated):
    source = bal_data / "dubrovnik" / "problem-16-22106-pre.txt.bz2"
    progress = []
    path = fetch("problem-16-22106-pre", url=source.as_uri(),
                 progress=lambda done, total: progress.append((done, total)))
    assert path == cache_dir() / "bal" / "dubrovnik" / "problem-16-22106-pre.txt.bz2"
    assert path.read_bytes() == source.read_bytes()
    assert progress[-1] == (source.stat().st_size, source.stat().st_size)
    assert resolve("problem-16-22106-pre") == path


def test_fetch_verifies_and_caches(fake_entry, monkeypatch):
    path = fetch("problem-2-3-pre")
    assert path == cache_dir() / "bal" / "testfamily" / "problem-2-3-pre.txt.bz2"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == fake_entry.sha256

    def no_network(*args, **kwargs):
        raise AssertionError("downloaded again")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert fetch("problem-2-3-pre") == path  # already there: no download
    with pytest.raises(AssertionError, match="downloaded again"):
        fetch("problem-2-3-pre", force=True)
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_fetch_checksum_mismatch_leaves_nothing(fake_entry, tmp_path):
    wrong = tmp_path / "wrong.bz2"
    wrong.write_bytes(b"BZh not the right file")
    with pytest.raises(ChecksumError, match="does not match"):
        fetch("problem-2-3-pre", url=wrong.as_uri())
    folder = cache_dir() / "bal" / "testfamily"
    assert list(folder.iterdir()) == []
    good = fetch("problem-2-3-pre")  # a later correct download
    with pytest.raises(ChecksumError):
        fetch("problem-2-3-pre", url=wrong.as_uri(), force=True)
    assert hashlib.sha256(good.read_bytes()).hexdigest() == fake_entry.sha256  # earlier download kept
    assert [p.name for p in folder.iterdir()] == [good.name]


class _BrokenResponse(io.BytesIO):
    """A response that delivers one block and then loses the connection."""

    headers = {"Content-Length": "100000"}

    def read(self, size=-1):
        if self.tell() == 0:
            return super().read(1000)
        raise ConnectionResetError("connection lost")


def test_fetch_interrupted_download_leaves_nothing(fake_entry, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _BrokenResponse(b"x" * 5000))
    progress = []
    with pytest.raises(ConnectionResetError):
        fetch("problem-2-3-pre", progress=lambda done, total: progress.append((done, total)))
    assert progress == [(1000, 100000)]
    assert list((cache_dir() / "bal" / "testfamily").iterdir()) == []


def test_fetch_unknown_name(isolated):
    with pytest.raises(DatasetNotFoundError):
        fetch("problem-0-0-pre")
