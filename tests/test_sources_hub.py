"""The Hub source (hf://) against the loopback Hub emulation: revisions,
listings with sizes and hashes computed here, headers equal to the local
parse, the CDN redirect followed once per file, tokens kept out of output;
and the Hub's own client reading the same emulation (so that it is faithful)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from ckptscan.replica import INDEX_NAME
from ckptscan.sources import RetryPolicy, SourceError, discover, fetch_headers, open_source
from ckptscan.sources.hf import hub_token, parse_hf_url
from ckptscan.synth import write_small_minimax
from test_sources import assert_same_header, file_bytes, json_header

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, max_wait=1.0)
TOKEN = "hf_TestSecretToken0123456789"



@pytest.fixture
def repo(hub: Any) -> Path:
    d, _ = write_small_minimax(hub.root / "org" / "small", shards=3)
    return d


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_blob_id(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_parse_hf_url() -> None:
    assert parse_hf_url("hf://org/name") == ("org/name", None, "")
    assert parse_hf_url("hf://org/name@v1.0/sub/dir") == ("org/name", "v1.0", "sub/dir")
    assert parse_hf_url("hf://org/name@feature%2Fx") == ("org/name", "feature/x", "")
    assert parse_hf_url("hf://org/name@refs/pr/12/fp8") == ("org/name", "refs/pr/12", "fp8")
    assert parse_hf_url("hf://org/name/sub@x") == ("org/name", None, "sub@x")
    for bad in ("hf://org", "hf://org/", "hf://org/na me", "hf://org/name@", "hf://org/n/../x"):
        with pytest.raises(SourceError):
            parse_hf_url(bad)


def test_the_endpoint_comes_from_hf_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    with open_source("hf://org/name") as src:
        assert src.endpoint == "https://huggingface.co"  # type: ignore[attr-defined]
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1/")
    with open_source("hf://org/name") as src:
        assert src.endpoint == "http://127.0.0.1:1"  # type: ignore[attr-defined]
    monkeypatch.setenv("HF_ENDPOINT", "ftp://x")
    with pytest.raises(SourceError):
        open_source("hf://org/name")


def test_token_comes_from_the_environment_or_the_hub_clients_file(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME",
                "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert hub_token() is None
    default = tmp_path / ".cache" / "huggingface" / "token"
    default.parent.mkdir(parents=True)
    default.write_text("hf_fromDefaultFile\n")
    assert hub_token() == "hf_fromDefaultFile"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "token").write_text("hf_fromHfHome")
    assert hub_token() == "hf_fromHfHome"
    monkeypatch.setenv("HF_TOKEN", "hf_fromEnv")
    assert hub_token() == "hf_fromEnv"


def test_listing_resolves_the_revision_with_sizes_and_hashes(hub: Any, repo: Path) -> None:
    with open_source("hf://org/small", retry=FAST) as src:
        entries = {e.name: e for e in src.list()}
        assert src.revision == hub.commit("org/small")
        assert sorted(entries) == sorted(p.name for p in repo.iterdir())
        for name, e in entries.items():
            path = repo / name
            assert e.size == os.path.getsize(path)
            if name.endswith(".safetensors"):  # LFS: the sha256 of the content
                assert e.sha256 == e.version == sha256(path)
            else:  # a git blob
                assert e.sha256 is None and e.version == git_blob_id(path)
        assert hub.count(route="api") == 1
        assert src.url_of("config.json") == f"hf://org/small@{src.revision}/config.json"
    hub.add_revision("org/small", "v1.0")
    with open_source("hf://org/small@v1.0") as src:
        assert src.resolve() == hub.commit("org/small", "v1.0") != hub.commit("org/small")
    commit = hub.commit("org/small")
    with open_source(f"hf://org/small@{commit}") as src:
        assert src.resolve() == commit
    for url in ("hf://org/small@nope", "hf://org/absent"):
        with open_source(url, retry=FAST) as src, pytest.raises(SourceError) as err:
            src.list()
        assert err.value.code == "not-found", url


def test_headers_equal_local_and_the_cdn_redirect_is_followed_once_per_file(
        hub: Any, repo: Path) -> None:
    with open_source("hf://org/small") as src:
        found = discover(src)
        assert found.index_data == (repo / INDEX_NAME).read_bytes()
        assert found.config_data == (repo / "config.json").read_bytes()
        heads = fetch_headers(src, found.shards, index=found.index())
        for h in heads:
            assert h.error is None and h.url == src.url_of(h.name)
            assert_same_header(h.core, repo / h.name)
            # one request to resolve/ (302), one to the CDN location
            assert h.cost == {"requests": 2, "bytes": h.cost["bytes"], "retries": 0,
                              "redirects": 1}
            assert hub.count(f"org/small/{h.name}", route="resolve") == 1
            assert hub.count(f"org/small/{h.name}", route="cdn") == 1
        # the listing, index.json and config.json (small files: no redirect), the shards
        assert hub.count() == 3 + 2 * len(heads) == src.stats.requests
        # later ranges go straight to the signed location
        shard = repo / heads[0].name
        size = os.path.getsize(shard)
        ranges = [(0, 10), (size // 2, size // 2 + 100), (size - 7, size)]
        got = src.read_ranges(shard.name, ranges, gap=0)
        assert [bytes(b) for b in got] == [file_bytes(shard, a, b) for a, b in ranges]
        assert hub.count(f"org/small/{shard.name}", route="resolve") == 1
        assert hub.count(f"org/small/{shard.name}", route="cdn") == 1 + 3


def test_a_subdirectory_is_a_checkpoint_of_its_own(hub: Any) -> None:
    base = hub.root / "org" / "multi"
    d, _ = write_small_minimax(base / "fp8", shards=2)
    (base / "README.md").write_text("readme")
    for url in ("hf://org/multi/fp8", "hf://org/multi@main/fp8"):
        with open_source(url) as src:
            found = discover(src)
            assert found.shards == sorted(p.name for p in d.glob("*.safetensors"))
            assert [e.name for e in src.list()] == sorted(p.name for p in d.iterdir())
            for h in fetch_headers(src, found.shards, index=found.index()):
                assert_same_header(h.core, d / h.name)
    with open_source("hf://org/multi/absent", retry=FAST) as src, \
            pytest.raises(SourceError) as err:
        src.list()
    assert err.value.code == "not-found"


def test_the_token_goes_to_the_hub_only_and_never_into_output(
        hub: Any, repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    hub.token = TOKEN
    with open_source("hf://org/small", retry=FAST) as src, pytest.raises(SourceError) as err:
        src.list()
    assert err.value.code == "unauthorized" and "HF_TOKEN" in str(err.value)
    home = tmp_path / "hf-home"
    home.mkdir()
    (home / "token").write_text(TOKEN)  # where `hf auth login` writes it
    hub.clear()
    hub.inject("status", "*00001-of*", status=403, where="cdn")
    hub.inject("reset", "*00002-of*", where="cdn")
    with open_source("hf://org/small", retry=FAST) as src:
        found = discover(src)
        heads = fetch_headers(src, found.shards, index=found.index())
        assert heads[0].error is None
        assert [h.error.code if h.error else None for h in heads] == [None, "forbidden",
                                                                       "connection"]
        shown = [repr(src), src.url, *(h.url for h in heads), *(str(h.error) for h in heads),
                 *(repr(h.error) for h in heads), repr(src.notices), repr(src.stats),
                 *(repr(e) for e in src.list())]
    for text in shown:
        assert TOKEN not in text and "Signature" not in text and "/cdn/" not in text, text
    api = [r for r in hub.log if r.route in ("api", "resolve")]
    cdn = [r for r in hub.log if r.route == "cdn"]
    assert api and all(r.auth for r in api)
    assert cdn and not any(r.auth for r in cdn)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    (home / "token").unlink()
    with open_source("hf://org/small") as src:
        assert src.resolve() == hub.commit("org/small")


def test_the_hub_client_reads_the_emulated_hub_as_it_reads_the_hub(
        hub: Any, repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The emulation is what the Hub's own client expects: its listing and
    its header reader (redirects, ranges) agree with the files."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.url, token=False)
    info = api.model_info("org/small", files_metadata=True)
    assert info.sha == hub.commit("org/small")
    for s in info.siblings or []:
        path = repo / s.rfilename
        assert s.size == os.path.getsize(path)
        if s.lfs is not None:
            assert s.lfs.sha256 == sha256(path)
    meta = api.get_safetensors_metadata("org/small")
    assert sorted(meta.files_metadata) == sorted(p.name for p in repo.glob("*.safetensors"))
    for name, fm in meta.files_metadata.items():
        _n, header = json_header(repo / name)
        header.pop("__metadata__", None)
        assert {k: (t.dtype, t.shape, list(t.data_offsets)) for k, t in fm.tensors.items()} == {
            k: (v["dtype"], v["shape"], v["data_offsets"]) for k, v in header.items()}


def test_reading_before_listing_lists_first(hub: Any, repo: Path) -> None:
    names = sorted(p.name for p in repo.glob("*.safetensors"))
    with open_source("hf://org/small") as src:
        heads = fetch_headers(src, names)  # the commit is needed for resolve/ URLs
        assert src.revision == hub.commit("org/small")
    assert [h.error for h in heads] == [None] * len(names)
    assert hub.count(route="api") == 1
