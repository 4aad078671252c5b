"""Byte sources: the pieces (coalescing, scrubbing, retries, header-length
prediction), the local source, and plain HTTP against a loopback server.

References are independent of the code under test: file bytes read with
open(), headers parsed with json in the test, counts from the server's own
request log, hand-computed ranges and waits.
"""

from __future__ import annotations

import json
import os
import random
import struct
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ckptscan import _core
from ckptscan.replica import INDEX_NAME, LAYOUTS, write_replica
from ckptscan.sources import (
    RetryPolicy,
    SourceError,
    coalesce,
    discover,
    fetch_headers,
    is_remote,
    open_source,
    predict_header_lengths,
    scrub,
    scrub_url,
)
from ckptscan.sources.retry import Retryable, ratelimit, server_wait, with_retries
from ckptscan.synth import write_safetensors, write_small_minimax

FAST = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, max_wait=1.0)


# ---------------------------------------------------------------- helpers


def json_header(path: Path) -> tuple[int, dict[str, Any]]:
    """(N, header) of a safetensors file, read and parsed here with json."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return n, json.loads(f.read(n))


def assert_same_header(remote: Any, path: Path) -> None:
    """A header parsed from fetched bytes equals the file parsed from disk by
    the core (every column and problem), and, for a valid file, what json
    reads from it."""
    local = _core.open_shard(str(path))
    assert remote.file_size == local.file_size == os.path.getsize(path)
    assert (remote.header_len, remote.data_start, remote.data_end) == (
        local.header_len, local.data_start, local.data_end)
    assert remote.problems == local.problems
    assert remote.metadata == local.metadata
    assert remote.names() == local.names()
    for col in ("dtype_codes", "begins", "ends", "numels", "shape_starts", "dims"):
        np.testing.assert_array_equal(getattr(remote, col), getattr(local, col))
    if not local.problems:
        n, header = json_header(path)
        header.pop("__metadata__", None)
        assert remote.header_len == n
        dtypes = [d for d, _ in _core.DTYPES]
        got = {remote.name(i): (dtypes[remote.dtype_codes[i]], list(remote.shape(i)),
                                [int(remote.begins[i]) - 8 - n, int(remote.ends[i]) - 8 - n])
               for i in range(len(remote))}
        assert got == {k: (v["dtype"], v["shape"], v["data_offsets"]) for k, v in header.items()}


def file_bytes(path: Path, start: int, end: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


@pytest.fixture
def small(hub_server: Any) -> Path:
    """A small MiniMax-shaped FP8 checkpoint (3 shards, index, config) under the server's root."""
    d, _ = write_small_minimax(hub_server.root / "small", shards=3)
    return d


# ---------------------------------------------------------------- pieces


def test_coalesce_merges_neighbours_within_the_gap_and_caps_the_span() -> None:
    ranges = [(500, 600), (0, 100), (150, 200), (100, 120), (2000, 2100), (10_000, 30_000)]
    assert coalesce(ranges, gap=50, max_span=10**9) == [
        (0, 200), (500, 600), (2000, 2100), (10_000, 30_000)]
    assert coalesce(ranges, gap=0, max_span=10**9) == [
        (0, 120), (150, 200), (500, 600), (2000, 2100), (10_000, 30_000)]
    # a span stops growing at max_span; a range longer than it stays whole
    assert coalesce([(0, 100), (100, 200), (200, 300)], gap=10, max_span=200) == [
        (0, 200), (200, 300)]
    assert coalesce([(0, 5000)], gap=10, max_span=100) == [(0, 5000)]
    with pytest.raises(ValueError):
        coalesce([(5, 4)])


def test_scrub_removes_passwords_signatures_and_tokens() -> None:
    url = "https://user:pa55word@cdn.example.com/x/model.safetensors?X-Amz-Signature=abc123&Expires=9"
    out = scrub_url(url)
    assert out.startswith("https://cdn.example.com/x/model.safetensors")
    for secret in ("pa55word", "user:", "abc123", "Expires=9"):
        assert secret not in out
    text = (f"failed {url} with Authorization: Bearer hf_abcdefghijklmnop and "
            "token hf_QWERTYUIOPASDFGH; sig=deadbeef&se=2030")
    cleaned = scrub(text)
    for secret in ("pa55word", "abc123", "hf_abcdefghijklmnop", "hf_QWERTYUIOPASDFGH", "deadbeef"):
        assert secret not in cleaned
    assert "cdn.example.com/x/model.safetensors" in cleaned
    assert scrub_url("s3://bucket/prefix") == "s3://bucket/prefix"


def test_server_wait_reads_retry_after_and_the_ratelimit_headers() -> None:
    now = 1_700_000_000.0
    assert server_wait({"Retry-After": "7"}, now) == 7.0
    assert server_wait({"Retry-After": formatdate(now + 30, usegmt=True)}, now) == pytest.approx(30)
    assert server_wait({"Retry-After": formatdate(now - 30, usegmt=True)}, now) == 0.0
    assert server_wait({"Retry-After": "soon"}, now) is None
    # the structured field: the spent policy's reset counts, an unspent one's does not
    assert ratelimit({"RateLimit": '"api";r=0;t=42, "burst";r=9;t=3'}) == (0, 42.0)
    assert server_wait({"RateLimit": '"api";r=0;t=42'}, now) == 42.0
    assert server_wait({"RateLimit": '"api";r=5;t=42'}, now) is None
    # the older drafts
    assert server_wait({"RateLimit": "limit=100, remaining=0, reset=12"}, now) == 12.0
    assert server_wait({"RateLimit-Remaining": "0", "RateLimit-Reset": "8"}, now) == 8.0
    # both: the longer wait
    assert server_wait({"Retry-After": "3", "RateLimit": '"x";r=0;t=10'}, now) == 10.0
    assert server_wait({}, now) is None


def test_backoff_grows_exponentially_with_jitter_inside_each_step() -> None:
    policy = RetryPolicy(backoff=0.5, max_backoff=4.0)
    random.seed(1)
    for failures, step in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        waits = [policy.backoff_delay(failures) for _ in range(200)]
        assert min(waits) >= step / 2 and max(waits) <= step
        assert max(waits) - min(waits) > step / 4  # jittered, not one value


def test_with_retries_sleeps_what_the_server_asks_and_gives_up_in_bounded_time() -> None:
    from ckptscan.sources import Stats

    clock = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    # throttled twice with Retry-After 2 s, then an answer
    answers = iter([Retryable("rate-limited", "429", wait=2.0, throttled=True)] * 2 + ["ok"])

    def attempt() -> str:
        a = next(answers)
        if isinstance(a, Exception):
            raise a
        return a

    stats = Stats()
    policy = RetryPolicy(attempts=3, max_wait=60)
    assert with_retries(attempt, policy, "u", stats, sleep=sleep, clock=lambda: clock[0]) == "ok"
    assert slept == [2.0, 2.0] and stats.retries == 2

    # endless 429s every 10 s: waits until max_wait would be passed, then says so
    slept.clear()
    clock[0] = 0.0

    def throttled() -> str:
        raise Retryable("rate-limited", "429 Too Many Requests", wait=10.0, throttled=True)

    with pytest.raises(SourceError) as err:
        with_retries(throttled, policy, "https://h/x", Stats(), sleep=sleep,
                     clock=lambda: clock[0])
    assert err.value.code == "rate-limited"
    assert slept == [10.0] * 6  # the 6th wait ends at 60 s, the limit; a 7th would pass it
    assert "gave up" in str(err.value) and "60 s" in str(err.value)

    # transient failures: `attempts` tries, exponential waits
    slept.clear()

    def reset() -> str:
        raise Retryable("connection", "connection reset")

    with pytest.raises(SourceError) as err:
        with_retries(reset, RetryPolicy(attempts=4, backoff=1.0, max_backoff=100), "u",
                     Stats(), sleep=sleep, clock=lambda: clock[0])
    assert err.value.code == "connection" and "4 attempts" in str(err.value)
    assert len(slept) == 3
    assert 0.5 <= slept[0] <= 1 and 1 <= slept[1] <= 2 and 2 <= slept[2] <= 4


def test_predicted_header_lengths_cover_every_layout_in_one_read(
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    assert set(LAYOUTS) == {"minimax_m2", "deepseek_v3", "llama_bf16", "qwen3_moe_fp8"}
    for name in LAYOUTS:
        fixture = {"minimax_m2": "minimax_replica", "deepseek_v3": "deepseek_replica",
                   "llama_bf16": "llama_replica"}.get(name)
        d = (request.getfixturevalue(fixture) if fixture
             else write_replica(name, tmp_path / name))
        index = _core.read_index(str(d / INDEX_NAME))
        for sizes in (None, {n: os.path.getsize(d / n) for n in index.shard_names}):
            predicted = predict_header_lengths(index, sizes)
            assert sorted(predicted) == sorted(index.shard_names)
            for shard, guess in predicted.items():
                n, _ = json_header(d / shard)
                assert 8 + n <= guess <= 1.5 * (8 + n) + 4096, (name, shard)


def test_predicted_lengths_allow_for_names_any_writer_escapes(tmp_path: Path) -> None:
    names = ['quote"d.weight', "back\\slash.weight", "ünïcødé.weight", "emoji😀.weight",
             "ctrl\x01.weight", "plain.weight"]
    tensors = {n: ("F32", (2, 3), np.zeros((2, 3), np.float32)) for n in names}
    path = write_safetensors(tmp_path / "model-00001-of-00001.safetensors", tensors)
    index = json.dumps({"weight_map": {n: path.name for n in names}}).encode()  # \u escapes
    predicted = predict_header_lengths(_core.parse_index(index))
    n, header = json_header(path)
    assert sorted(header) == sorted(names)
    assert predicted[path.name] >= 8 + n


# ---------------------------------------------------------------- is_remote / open_source


def test_open_source_picks_the_source_for_each_kind(tmp_path: Path) -> None:
    for url, kind in [("hf://org/name", "hf"), ("https://h.example/ckpt/", "http"),
                      ("http://h.example/m.safetensors", "http"), (str(tmp_path), "local"),
                      (f"file://{tmp_path}", "local")]:
        with open_source(url) as src:
            assert src.kind == kind
    assert is_remote("hf://a/b") and is_remote("s3://b/p") and is_remote("https://x/y")
    assert not is_remote("/models/x") and not is_remote("file:///x") and not is_remote("rel/dir")
    with pytest.raises(SourceError) as err:
        open_source("ftp://host/x")
    assert err.value.code == "invalid"
    with pytest.raises(SourceError) as err:
        open_source(str(tmp_path / "absent"))
    assert err.value.code == "not-found"


# ---------------------------------------------------------------- local


def test_local_source_lists_reads_byte_exact_and_notices_changes(tmp_path: Path) -> None:
    d, _ = write_small_minimax(tmp_path / "ckpt", shards=2)
    (d / "sub").mkdir()
    (d / "sub" / "extra.bin").write_bytes(b"x" * 10)
    with open_source(d) as src:
        top = src.list(recursive=False)
        every = src.list()
        expected_top = sorted(p.name for p in d.iterdir() if p.is_file())
        assert [e.name for e in top] == expected_top
        assert [e.name for e in every] == sorted(expected_top + ["sub/extra.bin"])
        for e in every:
            assert e.size == os.path.getsize(d / e.name)
        shard = d / "model-00000-of-00002.safetensors"
        size = os.path.getsize(shard)
        assert bytes(src.read(shard.name, 100, 5000)) == file_bytes(shard, 100, 5000)
        head, got_size = src.read_head(shard.name, 64)
        assert bytes(head) == file_bytes(shard, 0, 64) and got_size == size
        ranges = [(8, 16), (size - 10, size), (4000, 4100), (0, 0)]
        assert [bytes(b) for b in src.read_ranges(shard.name, ranges)] == [
            file_bytes(shard, a, b) for a, b in ranges]
        with pytest.raises(SourceError) as err:
            src.read(shard.name, size - 4, size + 4)
        assert err.value.code == "truncated"
        heads = fetch_headers(src, [shard.name])
        assert_same_header(heads[0].core, shard)
        os.utime(shard, ns=(1, 1))  # the file changes after the listing
        with pytest.raises(SourceError) as err:
            src.read(shard.name, 0, 8)
        assert err.value.code == "changed"


# ---------------------------------------------------------------- plain HTTP


def test_http_directory_headers_equal_local_with_one_request_per_shard(
        hub_server: Any, small: Path) -> None:
    with open_source(hub_server.http_url("small/")) as src:
        found = discover(src)
        assert found.shards == sorted(p.name for p in small.glob("*.safetensors"))
        assert found.index_data == (small / INDEX_NAME).read_bytes()
        assert found.config_data == (small / "config.json").read_bytes()
        assert not found.errors
        heads = fetch_headers(src, found.shards, index=found.index())
        for h in heads:
            assert h.error is None
            assert_same_header(h.core, small / h.name)
            assert h.cost["requests"] == 1 and hub_server.count(f"small/{h.name}") == 1
            assert h.url == hub_server.http_url(f"small/{h.name}")
        # index.json and config.json once each, then one request per shard
        assert hub_server.count() == 2 + len(found.shards) == src.stats.requests
        assert src.stats.bytes == sum(h.cost["bytes"] for h in heads) + len(
            found.index_data) + len(found.config_data or b"")


def test_http_without_index_reads_each_header_in_at_most_two_requests(
        hub_server: Any, small: Path) -> None:
    names = sorted(p.name for p in small.glob("*.safetensors"))
    with open_source(hub_server.http_url("small/")) as src:
        # default speculative read: each small header fits, one request
        assert all(h.cost["requests"] == 1 for h in fetch_headers(src, names))
        hub_server.clear()
        # a 1 KiB first read: the length prefix asks for the rest, exactly
        heads = fetch_headers(src, names, speculative=1024)
        for h in heads:
            n, _ = json_header(small / h.name)
            assert h.cost["requests"] == 2 and h.cost["bytes"] == 8 + n
            assert_same_header(h.core, small / h.name)
        ranges = sorted(r.range for r in hub_server.log)
        assert ranges == sorted(["bytes=0-1023"] * len(names) + [
            f"bytes=1024-{8 + json_header(small / n)[0] - 1}" for n in names])


def test_http_single_file_url_and_directories_without_an_index(
        hub_server: Any, small: Path) -> None:
    shard = sorted(small.glob("*.safetensors"))[0]
    with open_source(hub_server.http_url(f"small/{shard.name}")) as src:
        [entry] = src.list()
        assert (entry.name, entry.size) == (shard.name, os.path.getsize(shard))
        found = discover(src)
        assert found.shards == [shard.name] and found.index_data is None
        [h] = fetch_headers(src, found.shards)
        assert_same_header(h.core, shard)
    lone = hub_server.root / "lone"
    lone.mkdir()
    os.link(shard, lone / "model.safetensors")
    with open_source(hub_server.http_url("lone/")) as src:
        assert [e.name for e in src.list()] == ["model.safetensors"]
    (hub_server.root / "empty").mkdir()
    with open_source(hub_server.http_url("empty/")) as src, pytest.raises(SourceError) as err:
        src.list()
    assert err.value.code == "not-found" and "cannot be listed" in str(err.value)


def test_http_range_reads_are_byte_exact_and_coalesced(hub_server: Any, small: Path) -> None:
    shard = sorted(small.glob("*.safetensors"))[1]
    size = os.path.getsize(shard)
    rng = random.Random(7)
    ranges = []
    for _ in range(40):
        a = rng.randrange(0, size - 1)
        ranges.append((a, min(size, a + rng.randrange(1, 5000))))
    with open_source(hub_server.http_url("small/")) as src:
        got = src.read_ranges(shard.name, ranges, gap=20_000, max_span=400_000)
        assert [bytes(b) for b in got] == [file_bytes(shard, a, b) for a, b in ranges]
        spans = coalesce(ranges, 20_000, 400_000)
        assert hub_server.count(f"small/{shard.name}") == len(spans) < len(ranges)
        assert sorted(r.range for r in hub_server.log) == sorted(
            f"bytes={a}-{b - 1}" for a, b in spans)
        assert bytes(src.read(shard.name, 0, size)) == shard.read_bytes()
        with pytest.raises(SourceError) as err:
            src.read(shard.name, size - 2, size + 2)
        assert err.value.code == "truncated"


def test_requests_in_flight_stay_within_max_requests(hub_server: Any, tmp_path: Path) -> None:
    d = hub_server.root / "many"
    d.mkdir()
    names = [f"part-{k}.safetensors" for k in range(9)]
    for k, name in enumerate(names):
        write_safetensors(d / name, {f"w{k}": ("F32", (4,), np.arange(4, dtype=np.float32))})
    hub_server.latency = 0.05
    with open_source(hub_server.http_url("many/"), max_requests=3) as src:
        heads = fetch_headers(src, names)
    assert all(h.error is None for h in heads)
    assert hub_server.peak_in_flight == 3  # bounded, and actually concurrent
    hub_server.clear()
    with open_source(hub_server.http_url("many/"), max_requests=8) as src:
        fetch_headers(src, names, max_requests=2)
    assert hub_server.peak_in_flight == 2


@pytest.mark.slow
def test_full_size_minimax_over_http_costs_one_request_per_shard(
        hub_server: Any, minimax_replica: Path) -> None:
    from ckptscan.replica import copy_replica

    d = copy_replica(minimax_replica, hub_server.root / "m2")
    with open_source(hub_server.http_url("m2/")) as src:
        found = discover(src)
        assert len(found.shards) == 125
        heads = fetch_headers(src, found.shards, index=found.index())
    assert all(h.error is None and h.cost["requests"] == 1 for h in heads)
    assert sum(len(h.core) for h in heads) == 96_103
    assert hub_server.count() == 127  # index.json, config.json, 125 headers
    for h in heads:
        assert_same_header(h.core, d / h.name)
    # without the index: a speculative read, a second only where a header is longer
    hub_server.clear()
    with open_source(hub_server.http_url("m2/")) as src:
        heads = fetch_headers(src, found.shards)
    longer = sum(1 for h in heads if 8 + h.core.header_len > 256 << 10)
    assert all(h.cost["requests"] == (2 if 8 + h.core.header_len > 256 << 10 else 1)
               for h in heads)
    assert hub_server.count() == 125 + longer <= 250


def test_names_from_an_index_stay_under_the_root(hub_server: Any, small: Path) -> None:
    (hub_server.root / "outside.safetensors").write_bytes(
        (small / "model-00000-of-00003.safetensors").read_bytes())
    hostile = ["../outside.safetensors", "/etc/passwd", "a/./b.safetensors", "a//b", ""]
    for location in (hub_server.http_url("small/"), str(small)):
        with open_source(location) as src:
            heads = fetch_headers(src, hostile)
            assert [h.error.code if h.error else None for h in heads] == ["invalid"] * 5
            with pytest.raises(SourceError):
                src.read("../outside.safetensors", 0, 8)
    assert hub_server.count() == 0


def test_a_directory_query_string_goes_with_every_request_and_nowhere_else(
        hub_server: Any, small: Path) -> None:
    with open_source(hub_server.http_url("small/") + "?sv=2024&sig=SeCrEt123") as src:
        found = discover(src)
        heads = fetch_headers(src, found.shards, index=found.index())
        shown = [src.url, repr(src), *(h.url for h in heads)]
    assert all(h.error is None for h in heads)
    assert {r.query for r in hub_server.log} == {"sv=2024&sig=SeCrEt123"}
    assert not any("SeCrEt123" in text for text in shown)

