"""Shard headers from any source in as few round trips as possible.

With an index.json, each shard's header length is predicted from the tensor
names the index gives it (a header entry is the name plus a few dozen bytes of
dtype, shape and offsets), and that much is read in one request. Without one,
one speculative read; in both cases a second request only when the 8-byte
length says the header is longer than what came back. The bytes go to the
same strict parser as local files (`_core.parse_bytes`), so a remote header
has exactly the problems the same file has on disk.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .. import _core
from .base import Source, SourceError

INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
#: the first read of a shard without an index: most headers fit (the Hub's own
#: client reads 100 KB, and large MoE shards sit right at that size)
SPECULATIVE_READ = 256 << 10
#: first bytes kept of each shard (magic numbers of other formats)
HEAD_BYTES = 16
#: a predicted first read is at least this (a round trip costs far more)
MIN_FIRST_READ = 16 << 10
# A compact entry is `"NAME":{"dtype":"DT","shape":[S],"data_offsets":[A,B]},`:
# 46 fixed bytes, the name, the dtype (F8_E4M3: 7), the shape (two dims of up
# to 5-6 digits: 12) and two offsets of up to the file size's digits.
_ENTRY_FIXED = 46 + 7 + 12
_METADATA_ALLOWANCE = 2048  # {"__metadata__":{"format":"pt"}, ...} and padding
#: ASCII a JSON string holds as it is (no escape)
_PLAIN_JSON = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


@dataclass
class HeaderResult:
    """One shard's header as read from a source.

    `core` is the parsed header (a `_core.Shard` with no data mapping, its
    `problems` those of the same file read locally) or None when the bytes
    could not be had; then `error` says why. `cost` holds the requests, bytes,
    retries and redirects spent on this shard; `first_read` the bytes asked
    for in the first request; `notices` what went wrong without failing (a
    server that ignored Range), as (url, message); `head` the file's first
    bytes (what names another format saved under a .safetensors name).
    """

    name: str
    url: str
    core: Any | None
    size: int | None
    error: SourceError | None = None
    cost: dict[str, int] = field(default_factory=dict)
    first_read: int = 0
    notices: list[tuple[str, str]] = field(default_factory=list)
    head: bytes = b""


@dataclass
class Discovery:
    """A checkpoint's files at a source: the shards (*.safetensors at its
    root; over plain HTTP, those index.json names), index.json and config.json
    (bytes, or None when absent; `errors` says why one could not be read)."""

    source: Source
    shards: list[str]
    index_name: str | None
    index_data: bytes | None
    config_data: bytes | None
    errors: dict[str, SourceError] = field(default_factory=dict)

    def index(self) -> Any | None:
        """index.json parsed by the core (`_core.Index`), or None."""
        return None if self.index_data is None else _core.parse_index(self.index_data)


def discover(source: Source) -> Discovery:
    """Lists the root (one request on most sources) and reads index.json and
    config.json concurrently. Raises SourceError only when the root itself
    cannot be listed."""
    with ThreadPoolExecutor(2, thread_name_prefix="ckptscan-discover") as pool:
        # Plain HTTP lists nothing (reading index.json is its listing): probe
        # config.json meanwhile rather than after.
        probe = None if source.lists_files else pool.submit(_read_small, source, CONFIG_NAME)
        entries = source.list(recursive=False)
        names = {e.name for e in entries}
        indexes = sorted(n for n in names if n.endswith(".safetensors.index.json"))
        index_name = INDEX_NAME if INDEX_NAME in names else (indexes[0] if indexes else None)
        shards = sorted(n for n in names if n.endswith(".safetensors"))
        if probe is None and CONFIG_NAME in names:
            probe = pool.submit(_read_small, source, CONFIG_NAME)
        index = _read_small(source, index_name) if index_name else (None, None)
        config = probe.result() if probe is not None else (None, None)
    errors = {}
    for name, (_data, err) in ((index_name, index), (CONFIG_NAME, config)):
        if err is not None and name and not (err.code == "not-found" and name not in names):
            errors[name] = err  # (a config.json probed for and absent is no error)
    return Discovery(source, shards, index_name, index[0], config[0], errors)


def _read_small(source: Source, name: str) -> tuple[bytes | None, SourceError | None]:
    try:
        return source.read_all(name), None
    except SourceError as exc:
        return None, exc


def predict_header_lengths(index: Any, sizes: dict[str, int | None] | None = None
                           ) -> dict[str, int]:
    """For each shard the index names: how many bytes to read (8-byte length
    plus header) to hold its whole header in one request, with a margin.
    `sizes` (from a listing) bounds the offsets' digits; otherwise index.json's
    total_size does (no shard holds more data than the whole checkpoint)."""
    import numpy as np  # here: listing a source needs no numpy

    names: list[str] = index.names()
    ids = np.asarray(index.shard_ids, dtype=np.int64)
    shard_names: list[str] = index.shard_names
    if not names:
        return {}
    joined = "".join(names)
    if joined.isascii() and not joined.encode().translate(None, _PLAIN_JSON):
        lengths = np.fromiter(map(len, names), np.int64, len(names))
    else:
        lengths = np.fromiter(map(_json_length, names), np.int64, len(names))
    name_bytes = np.bincount(ids, weights=lengths, minlength=len(shard_names))
    counts = np.bincount(ids, minlength=len(shard_names))
    total = index.total_size
    default_digits = len(str(total)) if total else 12
    out: dict[str, int] = {}
    for k, shard in enumerate(shard_names):
        size = (sizes or {}).get(shard)
        digits = len(str(size)) if size else default_digits
        header = int(name_bytes[k]) + int(counts[k]) * (_ENTRY_FIXED + 2 * digits)
        out[shard] = 8 + header + header // 32 + _METADATA_ALLOWANCE
    return out


def _json_length(name: str) -> int:
    """The most bytes a JSON writer may spend on `name` (raw UTF-8 or \\u escapes)."""
    return max(len(json.dumps(name)), len(json.dumps(name, ensure_ascii=False).encode())) - 2


def fetch_headers(source: Source, names: Sequence[str], *, index: Any | None = None,
                  max_requests: int | None = None, speculative: int = SPECULATIVE_READ,
                  prefix: str = "") -> list[HeaderResult]:
    """Each shard's parsed header, in the order of `names`, one request per
    shard where possible (see the module docstring). Requests run `max_requests`
    at a time (default: the source's limit). A shard that cannot be read gets
    its `error` and the others go on. `prefix`: the directory of `names` (and of
    the index naming them) under the source's root, "" or ending in "/"."""
    sizes = {n: source.known_size(prefix + n) for n in names}
    guesses = predict_header_lengths(index, sizes) if index is not None else {}
    first = {n: max(MIN_FIRST_READ, guesses[n]) if n in guesses else speculative for n in names}
    workers = max(1, min(max_requests or source.max_requests, len(names)))
    if workers == 1:
        return [_fetch_one(source, n, first[n], prefix) for n in names]
    with ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-headers") as pool:
        return list(pool.map(lambda n: _fetch_one(source, n, first[n], prefix), names))


def _read_rest(source: Source, path: str, data: memoryview, need: int) -> memoryview:
    """The header's bytes past the first read; from a server that ignores Range,
    the first `need` bytes again (it sends the object from its start anyway)."""
    try:
        rest = source.read(path, len(data), need)
    except SourceError as exc:
        if exc.code != "range-ignored":
            raise
        again, _size = source.read_head(path, need)
        return again
    return memoryview(bytes(data) + bytes(rest))


def _fetch_one(source: Source, name: str, first_read: int, prefix: str = "") -> HeaderResult:
    path = prefix + name
    with source.stats.meter() as cost, source.collecting() as notices:
        size: int | None = None
        head = b""
        try:
            data, size = source.read_head(path, first_read)
            head = bytes(data[:HEAD_BYTES])
            if len(data) >= 8:
                need = 8 + int.from_bytes(data[:8], "little")
                # A length past the limit or the file is the parser's finding,
                # from these 8 bytes: never read on for it.
                if need - 8 <= _core.MAX_HEADER_LEN and len(data) < need <= size:
                    data = _read_rest(source, path, data, need)
            core = _core.parse_bytes(data, size)
            error = None
        except SourceError as exc:
            core, error = None, exc
    return HeaderResult(name, source.url_of(path), core, size, error, cost.as_dict(), first_read,
                        notices, head)
