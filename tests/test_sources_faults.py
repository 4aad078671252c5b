"""Bad networks and lying servers: each fault the loopback server injects is
named for the shard it hit, and the other shards are read as usual."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from ckptscan import _core
from ckptscan.replica import copy_replica, write_header_bytes
from ckptscan.sources import RetryPolicy, SourceError, discover, fetch_headers, open_source
from ckptscan.synth import write_small_minimax
from test_sources import assert_same_header, file_bytes

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_wait=1.0)


@pytest.fixture
def ckpt(hub_server: Any) -> Path:
    d, _ = write_small_minimax(hub_server.root / "c", shards=3)
    return d


def fetch(hub: Any, retry: RetryPolicy = FAST, path: str = "c/") -> tuple[Any, list[Any]]:
    src = open_source(hub.http_url(path), retry=retry)
    found = discover(src)
    return src, fetch_headers(src, found.shards, index=found.index())


def by_code(heads: list[Any]) -> list[str | None]:
    return [h.error.code if h.error else None for h in heads]


def assert_rest_fine(heads: list[Any], d: Path, bad: set[int]) -> None:
    for k, h in enumerate(heads):
        if k not in bad:
            assert h.error is None
            assert_same_header(h.core, d / h.name)


def test_connection_reset_mid_header_is_retried_then_named(hub_server: Any, ckpt: Path) -> None:
    hub_server.inject("reset", "c/*00001-of*", after=1000)
    src, heads = fetch(hub_server)
    assert by_code(heads) == [None, "connection", None]
    err = str(heads[1].error)
    assert "reset" in err and "3 attempts" in err and heads[1].name in err
    assert heads[1].cost["retries"] == 2 and hub_server.count("c/*00001-of*") == 3
    assert_rest_fine(heads, ckpt, {1})
    # once only: the retry reads it
    hub_server.clear()
    hub_server.inject("reset", "c/*00001-of*", after=1000, times=1)
    src, heads = fetch(hub_server)
    assert by_code(heads) == [None, None, None] and heads[1].cost["retries"] == 1
    assert_rest_fine(heads, ckpt, set())


def test_a_server_ignoring_range_is_read_only_as_far_as_needed(
        hub_server: Any, llama_replica: Path) -> None:
    d = copy_replica(llama_replica, hub_server.root / "llama")
    shard = sorted(d.glob("*.safetensors"))[0]
    size = os.path.getsize(shard)
    assert size > 1 << 30  # GBs of (sparse) data behind a small header
    hub_server.inject("ignore-range", f"llama/{shard.name}")
    src, heads = fetch(hub_server, path="llama/")
    h = next(h for h in heads if h.name == shard.name)
    assert h.error is None
    assert_same_header(h.core, shard)
    assert h.cost["bytes"] == h.first_read < 1 << 20
    assert hub_server.sent_bytes < 64 << 20  # the server was stopped, not drained
    [(where, message)] = src.notices
    assert where.endswith(shard.name) and "ignored Range" in message
    assert f"{size:,}" in message
    assert h.notices == src.notices and all(not x.notices for x in heads if x is not h)
    # a range further in cannot be had without reading everything before it
    with pytest.raises(SourceError) as err:
        src.read(shard.name, size - 100, size)
    assert err.value.code == "range-ignored" and shard.name in str(err.value)


def test_404_and_403_for_shards_the_index_lists(hub_server: Any, ckpt: Path) -> None:
    gone = sorted(ckpt.glob("*.safetensors"))[0]
    gone.unlink()  # listed in index.json, absent from the server
    hub_server.inject("status", "c/*00002-of*", status=403)
    src, heads = fetch(hub_server)
    assert by_code(heads) == ["not-found", None, "forbidden"]
    assert heads[0].name in str(heads[0].error) and "404" in str(heads[0].error)
    assert "403" in str(heads[2].error)
    assert heads[0].cost["requests"] == heads[2].cost["requests"] == 1  # no retries
    assert_rest_fine(heads, ckpt, {0, 2})


def test_a_truncated_object_has_the_problems_it_has_on_disk(
        hub_server: Any, ckpt: Path) -> None:
    shards = sorted(ckpt.glob("*.safetensors"))
    n = []
    for p in shards:
        with open(p, "rb") as f:
            n.append(struct.unpack("<Q", f.read(8))[0])
    os.truncate(shards[1], 8 + n[1] + 100)  # data cut short
    os.truncate(shards[2], 8 + n[2] // 2)  # header cut short
    src, heads = fetch(hub_server)
    assert by_code(heads) == [None, None, None]
    for h in heads:
        assert_same_header(h.core, ckpt / h.name)
    assert [p[0] for p in heads[1].core.problems] == ["truncated"]
    assert [p[0] for p in heads[2].core.problems] == ["header-length-invalid"]


def test_a_header_length_over_the_limit_is_not_read(hub_server: Any, ckpt: Path) -> None:
    bad = ckpt / "model-00001-of-00003.safetensors"
    write_header_bytes(bad, b'{"x":1}', 1000, length=200_000_000)
    src, heads = fetch(hub_server)
    h = heads[1]
    assert h.error is None and h.cost["requests"] == 1
    assert h.cost["bytes"] == os.path.getsize(bad) < 2000
    assert [p[0] for p in h.core.problems] == ["header-too-large"]
    assert_same_header(h.core, bad)
    # no index: a large file with a huge length costs one speculative read
    big = ckpt / "huge.safetensors"
    write_header_bytes(big, b"{}", 50 << 20, length=200_000_000)
    [h] = fetch_headers(src, ["huge.safetensors"])
    assert h.cost == {"requests": 1, "bytes": 256 << 10, "retries": 0, "redirects": 0}
    assert_same_header(h.core, big)


def test_malformed_headers_have_the_same_problems_remotely(hub_server: Any, ckpt: Path) -> None:
    shards = sorted(ckpt.glob("*.safetensors"))
    write_header_bytes(shards[0], b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},', 8)
    write_header_bytes(shards[2], b'{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}', 8)
    src, heads = fetch(hub_server)
    for h in heads:
        assert h.error is None
        assert_same_header(h.core, ckpt / h.name)
    assert heads[0].core.problems and heads[2].core.problems


def test_an_object_changing_between_reads_is_named(hub_server: Any, ckpt: Path) -> None:
    src, heads = fetch(hub_server)
    name = heads[0].name
    hub_server.inject("change", f"c/{name}")
    with pytest.raises(SourceError) as err:
        src.read(name, 100, 200)
    assert err.value.code == "changed" and "ETag" in str(err.value) and name in str(err.value)
    # the tag seen first stays the reference: later reads must keep it
    hub_server.clear()
    assert bytes(src.read(heads[1].name, 0, 8)) == file_bytes(ckpt / heads[1].name, 0, 8)


def test_a_hub_object_unlike_its_listing_is_named(
        hub_server: Any, ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    repo = hub_server.root / "org" / "m"
    repo.parent.mkdir()
    ckpt.rename(repo)
    names = sorted(p.name for p in repo.glob("*.safetensors"))
    with open_source("hf://org/m", retry=FAST) as src:
        src.list()
        hub_server.inject("change", f"org/m/{names[0]}", where="resolve")  # another sha256
        with open(repo / names[2], "r+b") as f:  # shorter than listed
            f.truncate(os.path.getsize(repo / names[2]) - 10)
        heads = fetch_headers(src, names)
    assert by_code(heads) == ["changed", None, "changed"]
    assert all("the listing said" in str(heads[k].error) for k in (0, 2))
    assert all(heads[k].cost["requests"] == 1 for k in (0, 2))  # the redirect said so


def test_endless_429s_are_given_up_on_in_bounded_time(hub_server: Any, ckpt: Path) -> None:
    hub_server.inject("throttle", "c/*00001-of*", wait=0.1)
    t0 = time.monotonic()
    src, heads = fetch(hub_server, RetryPolicy(attempts=3, backoff=0.01, max_wait=0.55))
    took = time.monotonic() - t0
    assert by_code(heads) == [None, "rate-limited", None]
    err = str(heads[1].error)
    assert "gave up" in err and "429" in err and "0.55 s" in err
    # it waited as long as allowed (a further 0.1 s wait would end past 0.55 s), no longer
    assert 0.45 <= took < 3
    assert 3 <= heads[1].cost["requests"] == hub_server.count("c/*00001-of*") <= 6
    assert_rest_fine(heads, ckpt, {1})
    # a server asking for longer than the limit is given up on at once
    hub_server.clear()
    hub_server.inject("throttle", "c/*00001-of*", wait=3600)
    t0 = time.monotonic()
    src, heads = fetch(hub_server, RetryPolicy(max_wait=30))
    assert time.monotonic() - t0 < 5
    assert heads[1].error is not None and "asked to wait 3,600 s" in str(heads[1].error)


def test_throttling_waits_what_retry_after_or_ratelimit_says(hub_server: Any, ckpt: Path) -> None:
    hub_server.inject("throttle", "c/*00000-of*", wait=0.3, times=1)
    hub_server.inject("throttle", "c/*00002-of*", ratelimit='"default";r=0;t=0.4', times=1)
    policy = RetryPolicy(backoff=0.001, max_backoff=0.002, max_wait=5)
    src = open_source(hub_server.http_url("c/"), retry=policy)
    names = sorted(p.name for p in ckpt.glob("*.safetensors"))
    for name, least in [(names[0], 0.3), (names[2], 0.4)]:
        t0 = time.monotonic()
        [h] = fetch_headers(src, [name])
        took = time.monotonic() - t0
        assert h.error is None and h.cost["retries"] == 1
        assert least <= took < least + 1.0  # the backoff alone would be ~1 ms
        assert_same_header(h.core, ckpt / name)


def test_a_spent_ratelimit_window_pauses_the_next_request(hub_server: Any, ckpt: Path) -> None:
    hub_server.headers["RateLimit"] = '"default";r=0;t=0.3'
    names = sorted(p.name for p in ckpt.glob("*.safetensors"))
    with open_source(hub_server.http_url("c/"), retry=FAST) as src:
        src.read(names[0], 0, 8)  # answered, and told the window is spent
        t0 = time.monotonic()
        src.read(names[1], 0, 8)
        assert time.monotonic() - t0 >= 0.3
        assert src.stats.retries == 0 and hub_server.count() == 2  # waited, no 429 needed


def test_server_errors_are_retried_then_named(hub_server: Any, ckpt: Path) -> None:
    hub_server.inject("status", "c/*00000-of*", status=503, times=2)
    hub_server.inject("status", "c/*00002-of*", status=500)
    src, heads = fetch(hub_server)
    assert by_code(heads) == [None, None, "server-error"]
    assert heads[0].cost["retries"] == 2 and heads[0].cost["requests"] == 3
    assert "500" in str(heads[2].error) and "3 attempts" in str(heads[2].error)
    assert_rest_fine(heads, ckpt, {2})


def test_a_listed_shard_unreadable_leaves_the_checkpoint_readable(
        hub_server: Any, ckpt: Path) -> None:
    """Every fault at once, one per shard, and nothing else is lost."""
    for k in range(3):
        write_small_minimax(hub_server.root / "c" / f"extra{k}", shards=1)
    hub_server.inject("reset", "c/model-00000-of*", after=10)
    hub_server.inject("status", "c/model-00001-of*", status=404)
    src = open_source(hub_server.http_url("c/"), retry=FAST)
    names = sorted(p.name for p in ckpt.glob("*.safetensors")) + [
        f"extra{k}/model-00000-of-00001.safetensors" for k in range(3)]
    heads = fetch_headers(src, names)
    assert by_code(heads) == ["connection", "not-found", None, None, None, None]
    for h in heads[2:]:
        assert_same_header(h.core, ckpt / h.name)
    assert _core.MAX_HEADER_LEN == 100_000_000
