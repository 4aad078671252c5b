"""Object stores: S3 through an S3-compatible server on loopback (moto's
server mode), counted from the server's own request log; ETags computed here
(MD5 of a single-part upload); GCS and Azure URLs set up without a network."""

from __future__ import annotations

import hashlib
import os
import secrets
import struct
from pathlib import Path
from typing import Any

import pytest
from ckptscan.replica import INDEX_NAME, write_header_bytes
from ckptscan.sources import (
    RetryPolicy,
    SourceError,
    coalesce,
    discover,
    fetch_headers,
    open_source,
)
from ckptscan.synth import write_small_minimax
from test_sources import assert_same_header, file_bytes

FAST = RetryPolicy(attempts=2, backoff=0.01, max_backoff=0.02, max_wait=2.0)



@pytest.fixture
def bucket(s3: Any, tmp_path: Path) -> tuple[str, Path]:
    """A bucket holding a small checkpoint at ckpt/ (and one file below it)."""
    d, _ = write_small_minimax(tmp_path / "ckpt", shards=3)
    (d / "extra").mkdir()
    (d / "extra" / "notes.txt").write_text("not part of the checkpoint")
    name = f"ckpt-{secrets.token_hex(4)}"
    s3.upload_dir(name, "ckpt", d)
    s3.clear()
    return name, d


def test_listing_has_sizes_and_etags(s3: Any, bucket: tuple[str, Path]) -> None:
    name, d = bucket
    with open_source(f"s3://{name}/ckpt/", retry=FAST) as src:
        assert src.kind == "s3" and src.url == f"s3://{name}/ckpt"
        every = src.list()
        files = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
        assert [e.name for e in every] == files
        for e in every:
            data = (d / e.name).read_bytes()
            assert e.size == len(data)
            assert e.version == f'"{hashlib.md5(data).hexdigest()}"'
        assert [e.name for e in src.list(recursive=False)] == [f for f in files if "/" not in f]
        assert src.url_of("config.json") == f"s3://{name}/ckpt/config.json"
    assert s3.count("GET", f"/{name}") == 2 == src.stats.requests  # two listings


def test_headers_equal_local_with_one_get_per_shard(s3: Any, bucket: tuple[str, Path]) -> None:
    name, d = bucket
    with open_source(f"s3://{name}/ckpt") as src:
        found = discover(src)
        assert found.shards == sorted(p.name for p in d.glob("*.safetensors"))
        assert found.index_data == (d / INDEX_NAME).read_bytes()
        assert found.config_data == (d / "config.json").read_bytes()
        heads = fetch_headers(src, found.shards, index=found.index())
    for h in heads:
        assert h.error is None and h.cost["requests"] == 1
        assert_same_header(h.core, d / h.name)
        assert s3.count("GET", f"/{name}/ckpt/{h.name}") == 1
    # one listing, index.json, config.json, one GET per shard; each read carries
    # the listed ETag
    assert s3.count() == 3 + len(heads) == src.stats.requests
    reads = [r for r in s3.log if r.path.startswith(f"/{name}/ckpt/")]
    for r in reads:
        data = (d / r.path.removeprefix(f"/{name}/ckpt/")).read_bytes()
        assert r.if_match == f'"{hashlib.md5(data).hexdigest()}"'


def test_without_an_index_at_most_two_gets_per_shard(s3: Any, bucket: tuple[str, Path]) -> None:
    name, d = bucket
    names = sorted(p.name for p in d.glob("*.safetensors"))
    with open_source(f"s3://{name}/ckpt") as src:
        heads = fetch_headers(src, names, speculative=1024)
    lengths = {n: struct.unpack("<Q", file_bytes(d / n, 0, 8))[0] for n in names}
    for h in heads:
        n = lengths[h.name]
        assert h.cost == {"requests": 2, "bytes": 8 + n, "retries": 0, "redirects": 0}
        assert_same_header(h.core, d / h.name)
    assert sorted(r.range for r in s3.log) == sorted(
        ["bytes=0-1023"] * 3 + [f"bytes=1024-{8 + n - 1}" for n in lengths.values()])


def test_range_reads_are_byte_exact_and_coalesced(s3: Any, bucket: tuple[str, Path]) -> None:
    name, d = bucket
    shard = sorted(d.glob("*.safetensors"))[0]
    size = os.path.getsize(shard)
    ranges = [(0, 8), (100, 300), (350, 400), (size // 2, size // 2 + 10), (size - 5, size)]
    with open_source(f"s3://{name}/ckpt") as src:
        got = src.read_ranges(shard.name, ranges, gap=100)
        assert [bytes(b) for b in got] == [file_bytes(shard, a, b) for a, b in ranges]
        assert s3.count("GET", f"/{name}/ckpt/{shard.name}") == len(coalesce(ranges, 100))
        with pytest.raises(SourceError) as err:
            src.read(shard.name, size - 2, size + 10)
        assert err.value.code == "truncated"


def test_an_object_replaced_after_listing_is_named(s3: Any, bucket: tuple[str, Path]) -> None:
    name, d = bucket
    shards = sorted(p.name for p in d.glob("*.safetensors"))
    with open_source(f"s3://{name}/ckpt", retry=FAST) as src:
        found = discover(src)
        s3.client().put_object(Bucket=name, Key=f"ckpt/{shards[1]}", Body=b"\0" * 64)
        heads = fetch_headers(src, found.shards, index=found.index())
    assert [h.error.code if h.error else None for h in heads] == [None, "changed", None]
    assert "If-Match" in str(heads[1].error) and shards[1] in str(heads[1].error)
    assert_same_header(heads[0].core, d / shards[0])


def test_missing_and_damaged_objects(s3: Any, bucket: tuple[str, Path], tmp_path: Path) -> None:
    name, d = bucket
    bad = tmp_path / "bad"
    bad.mkdir()
    write_header_bytes(bad / "huge.safetensors", b"{}", 100, length=200_000_000)
    write_header_bytes(bad / "json.safetensors", b'{"a":{"dtype":"F32"', 16)
    shard = sorted(d.glob("*.safetensors"))[0]
    (bad / "short.safetensors").write_bytes(shard.read_bytes()[:5000])
    (bad / "empty.safetensors").write_bytes(b"")
    s3.upload_dir(name, "bad", bad)
    names = ["absent.safetensors", "empty.safetensors", "huge.safetensors",
             "json.safetensors", "short.safetensors"]
    with open_source(f"s3://{name}/bad", retry=FAST) as src:
        src.list()
        heads = fetch_headers(src, names)
    assert heads[0].error is not None and heads[0].error.code == "not-found"
    assert "absent.safetensors" in str(heads[0].error)
    for h in heads[1:]:
        assert h.error is None, h.error
        assert_same_header(h.core, bad / h.name)
        assert h.core.problems
    assert heads[1].cost["requests"] == 0  # listed as empty: nothing to ask for


def test_aws_endpoint_url_s3_wins_and_secrets_stay_out(
        s3: Any, bucket: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    name, _ = bucket
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3.endpoint)
    with open_source(f"s3://{name}/ckpt", retry=FAST) as src:
        assert "config.json" in [e.name for e in src.list()]
    with open_source(f"s3://no-such-bucket-{secrets.token_hex(3)}/x", retry=FAST) as src, \
            pytest.raises(SourceError) as err:
        src.list()
    shown = [str(err.value), repr(err.value), repr(src), src.url]
    for text in shown:
        assert os.environ["AWS_SECRET_ACCESS_KEY"] not in text
        assert "<Error>" not in text  # the status line, not the XML body


@pytest.mark.parametrize("url,kind,shown", [
    ("gs://bucket/pre/fix/", "gs", "gs://bucket/pre/fix"),
    ("az://container/prefix", "az", "az://container/prefix"),
    ("abfss://container@account.dfs.core.windows.net/p", "az",
     "abfss://container@account.dfs.core.windows.net/p"),
])
def test_gcs_and_azure_urls_set_up_their_stores(
        url: str, kind: str, shown: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_STORAGE_ACCOUNT_NAME", "account")
    with open_source(url) as src:
        assert (src.kind, src.url) == (kind, shown)
        assert src.url_of("model.safetensors") == f"{shown}/model.safetensors"
