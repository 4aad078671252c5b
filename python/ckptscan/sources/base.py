"""The byte-source seam: which files a checkpoint has, and their bytes.

A `Source` is rooted at a directory-like location (a local directory, an HTTP
directory, a Hub repository at one commit, an object-store prefix) and names
files relative to it with ``/``. Every read is a byte range; every request is
counted. Remote sources never put a secret (token, signed query string,
password) in a URL, message or repr they return: see `scrub`.
"""

from __future__ import annotations

import builtins
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from ..errors import CkptScanError
from .retry import RetryPolicy

#: requests in flight per source: enough that the headers of a 100-200-shard
#: checkpoint take two or three round trips, few enough that a CDN or an S3
#: prefix does not throttle (64 in flight at 30 ms each is ~2,000 GET/s; S3
#: serves 5,500 per prefix) and that a laptop's sockets and threads are no burden.
DEFAULT_MAX_REQUESTS = 64
#: read_ranges merges ranges whose gap is at most this (reading a small gap
#: costs less than a round trip) ...
COALESCE_GAP = 1 << 20
#: ... into requests of at most this many bytes (memory per request in flight).
COALESCE_MAX = 64 << 20
#: index.json and config.json are read whole; above this they are refused.
MAX_SMALL_FILE = 1 << 30

# Stable codes of SourceError, each one way a remote read can fail.
ERROR_CODES: dict[str, str] = {
    "not-found": "the object does not exist (404)",
    "unauthorized": "credentials missing or rejected (401)",
    "forbidden": "access refused (403)",
    "changed": "the object changed between listing and reading (version, ETag or size)",
    "range-ignored": "the server ignored Range and sent the whole object",
    "truncated": "the object or the response ended before the bytes asked for",
    "connection": "connection failed, reset or timed out (after retries)",
    "rate-limited": "still throttled (429) when the time allowed for waiting ran out",
    "server-error": "the server kept failing (5xx, after retries)",
    "too-large": "a file read whole is larger than allowed",
    "http-error": "another HTTP error status",
    "invalid": "an unusable URL, listing or response",
    "io-error": "the operating system refused a local read",
}


class SourceError(CkptScanError, OSError):
    """A listing or read that failed. `code` (a key of `ERROR_CODES`) says how,
    `url` names the file (secrets scrubbed)."""

    def __init__(self, code: str, url: str, message: str) -> None:
        assert code in ERROR_CODES, code
        self.code = code
        self.url = scrub(url)
        self.reason = scrub(message)
        super().__init__(f"{self.url}: {code}: {self.reason}")

    def __reduce__(self) -> tuple[type[SourceError], tuple[str, str, str]]:
        return SourceError, (self.code, self.url, self.reason)


# ---------------------------------------------------------------- secrets

_SECRET_QUERY = "<redacted>"
_URL = re.compile(r"""\b([a-z][a-z0-9+.-]*://[^\s"'<>]+)""", re.IGNORECASE)
_TOKENS = re.compile(
    r"(hf_[A-Za-z0-9]{8,}|(?:Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+|"
    r"(?:X-Amz-[A-Za-z-]+|Signature|Expires|Key-Pair-Id|sig|se|sp|sv|token|access_token|"
    r"x-goog-[a-z-]+|GoogleAccessId)=[^&\s\"']+)", re.IGNORECASE)


def scrub_url(url: str) -> str:
    """`url` without user:password@ (any user@ over http(s), where it may be a
    token) and with its query string replaced by a marker (signed URLs carry
    their signature there); no fragment."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _TOKENS.sub(_SECRET_QUERY, url)
    if not parts.scheme or not parts.netloc:
        return _TOKENS.sub(_SECRET_QUERY, url)
    user, at, host = parts.netloc.rpartition("@")
    if at and ":" not in user and parts.scheme not in ("http", "https"):
        host = f"{user}@{host}"  # abfss://container@account...: a name, not a secret
    query = _SECRET_QUERY if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def scrub(text: str) -> str:
    """`text` with every URL scrubbed (`scrub_url`) and anything shaped like a
    token, an Authorization value or a signature parameter replaced."""
    return _TOKENS.sub(_SECRET_QUERY, _URL.sub(lambda m: scrub_url(m.group(1)), text))


# ---------------------------------------------------------------- listing and accounting


@dataclass(frozen=True, slots=True)
class Entry:
    """One file of a source. `size` is None where the listing does not say
    (plain HTTP has no listing); `version` is the tag that changes when the
    content does: the object version or ETag, the Hub's LFS sha256 (git blob id
    for small files), or a local file's mtime and size."""

    name: str
    size: int | None
    version: str | None
    sha256: str | None = None  # the Hub's LFS sha256, for verifying copies
    etag: str | None = None    # an object store's ETag (If-Match), where it is not `version`


@dataclass
class Stats:
    """Requests and bytes a source cost (thread-safe). `requests` counts every
    request sent, redirects and retries included; `bytes` the body bytes read."""

    requests: int = 0
    bytes: int = 0
    retries: int = 0
    redirects: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _meters: threading.local = field(default_factory=threading.local, repr=False, compare=False)

    def add(self, *, requests: int = 0, nbytes: int = 0, retries: int = 0,
            redirects: int = 0) -> None:
        with self._lock:
            self.requests += requests
            self.bytes += nbytes
            self.retries += retries
            self.redirects += redirects
        meter: Stats | None = getattr(self._meters, "current", None)
        if meter is not None:  # the thread's own share (one shard's cost)
            meter.requests += requests
            meter.bytes += nbytes
            meter.retries += retries
            meter.redirects += redirects

    @contextmanager
    def meter(self) -> Iterator[Stats]:
        """Also counts, in the Stats it yields, what this thread costs inside the block."""
        mine, before = Stats(), getattr(self._meters, "current", None)
        self._meters.current = mine
        try:
            yield mine
        finally:
            self._meters.current = before

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {"requests": self.requests, "bytes": self.bytes, "retries": self.retries,
                    "redirects": self.redirects}


class SharedLimiter(Protocol):
    """A request budget shared by several processes (a farm on Ray): one
    `acquire` before each request, one `release` after it."""

    def acquire(self) -> None: ...
    def release(self) -> None: ...


_shared_limiter: SharedLimiter | None = None


def set_shared_limiter(limiter: SharedLimiter | None) -> None:
    """Every source of this process also takes a slot of `limiter` per request
    (None: no shared budget). Set by a farm's worker before it scans."""
    global _shared_limiter
    _shared_limiter = limiter


class RequestSlots:
    """At most `n` requests in flight on a source (and, when a farm set one, in
    the shared budget of all its workers), and none before a time the server
    named (a RateLimit header saying the window is spent)."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"max_requests must be at least 1, not {n}")
        self.n = n
        self._sem = threading.BoundedSemaphore(n)
        self._not_before = 0.0

    def pause_until(self, when: float) -> None:
        self._not_before = max(self._not_before, when)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._sem:
            wait = self._not_before - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            shared = _shared_limiter
            if shared is None:
                yield
                return
            shared.acquire()
            try:
                yield
            finally:
                shared.release()


def coalesce(ranges: Sequence[tuple[int, int]], gap: int = COALESCE_GAP,
             max_span: int = COALESCE_MAX) -> list[tuple[int, int]]:
    """Merged [start, end) spans covering `ranges`: neighbours whose gap is at
    most `gap` join while the span stays within `max_span` (a single range
    longer than that stays one span). Sorted by start."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if start < 0 or end < start:
            raise ValueError(f"invalid range [{start}, {end})")
        if out and start - out[-1][1] <= gap and max(end, out[-1][1]) - out[-1][0] <= max_span:
            out[-1] = (out[-1][0], max(end, out[-1][1]))
        else:
            out.append((start, end))
    return out


# ---------------------------------------------------------------- the seam


class Source(ABC):
    """Files under one root and their bytes. Thread-safe; close() when done.

    Subclasses implement `list`, `_read` and, where a file's size or version is
    not known from a listing, `_stat`.
    """

    kind: str  # "local", "http", "hf", "s3", "gs", "az"
    #: False where list() cannot see every file (plain HTTP): absent files are probed
    lists_files = True

    def __init__(self, url: str, *, max_requests: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        self.url = scrub_url(url)
        self.revision: str | None = None  # the Hub: the commit the revision resolved to
        self.stats = Stats()
        self.retry = retry or RetryPolicy()
        self.slots = RequestSlots(max_requests or DEFAULT_MAX_REQUESTS)
        self.notices: builtins.list[tuple[str, str]] = []  # (file, what happened that did not fail)
        self._entries: dict[str, Entry] = {}
        self._small: dict[str, bytes] = {}  # files read whole, kept (listing reads index.json)
        self._lock = threading.Lock()
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    @property
    def max_requests(self) -> int:
        return self.slots.n

    # ---- listing
    @abstractmethod
    def list(self, recursive: bool = True) -> list[Entry]:
        """The files under the root (`recursive=False`: directly in it), sorted by name."""

    def entry(self, name: str) -> Entry:
        """What is known of one file: from the listing, or one request (`_stat`)."""
        self._check_name(name)
        with self._lock:
            known = self._entries.get(name)
        if known is not None and known.size is not None:
            return known
        found = self._stat(name)
        self._remember(found)
        return found

    def size(self, name: str) -> int:
        size = self.entry(name).size
        assert size is not None
        return size

    def url_of(self, name: str) -> str:
        """The file's URL as shown to people (no secrets)."""
        return f"{self.url.rstrip('/')}/{name}"

    def _check_name(self, name: str) -> None:
        """File names come from listings and index.json (hostile input): each
        must stay under the root."""
        parts = name.split("/")
        if not name or name.startswith("/") or "\\" in name or "\0" in name or any(
                p in ("", ".", "..") for p in parts):
            raise SourceError("invalid", self.url, f"{name!r} is not a file name under the root")

    def adopt(self, entries: Sequence[Entry], revision: str | None = None) -> None:
        """Takes a listing made elsewhere (by the process that found the
        checkpoint) as this source's own: no listing request is sent again, and
        reads are held to the sizes and versions it gives."""
        self._remember(*entries)
        if revision is not None:
            self.revision = revision

    def _remember(self, *entries: Entry) -> None:
        with self._lock:
            for e in entries:
                self._entries[e.name] = e

    def _known(self, name: str) -> Entry | None:
        with self._lock:
            return self._entries.get(name)

    def _stat(self, name: str) -> Entry:
        """Size and version of one file, by a request; `list` fills what it can."""
        _data, size = self.read_head(name, 0)
        known = self._known(name)
        return known if known is not None and known.size == size else Entry(name, size, None)

    def notice(self, name: str, message: str) -> None:
        """Something about a file that did not make its read fail (a server
        ignoring Range); also kept by the thread's `collecting()` block."""
        note = (self.url_of(name), scrub(message))
        with self._lock:
            self.notices.append(note)
        mine: builtins.list[tuple[str, str]] | None = getattr(self._local, "notes", None)
        if mine is not None:
            mine.append(note)

    @contextmanager
    def collecting(self) -> Iterator[builtins.list[tuple[str, str]]]:
        """The notices this thread causes inside the block."""
        mine: builtins.list[tuple[str, str]] = []
        before = getattr(self._local, "notes", None)
        self._local.notes = mine
        try:
            yield mine
        finally:
            self._local.notes = before

    # ---- reading
    @abstractmethod
    def _read(self, name: str, start: int, end: int, *, head: bool) -> tuple[memoryview, int]:
        """One request for bytes [start, end) of `name`: (the bytes, the object's size).
        `head=True`: fewer bytes are fine when the object ends first (a guess at a
        header's length); otherwise a short object is a `truncated` SourceError."""

    def read_head(self, name: str, length: int) -> tuple[memoryview, int]:
        """The first min(length, size) bytes of `name` and its size, in one request."""
        self._check_name(name)
        known = self.known_size(name)
        if known is not None and (known == 0 or length == 0):
            return memoryview(b""), known
        data, size = self._read(name, 0, max(length, 1), head=True)
        return data[:length], size

    def read(self, name: str, start: int, end: int) -> memoryview:
        """Bytes [start, end) of `name`, in one request; `truncated` if it is shorter."""
        if start < 0 or end < start:
            raise ValueError(f"invalid range [{start}, {end})")
        self._check_name(name)
        if end == start:
            return memoryview(b"")
        data, _size = self._read(name, start, end, head=False)
        return data

    def read_ranges(self, name: str, ranges: Sequence[tuple[int, int]], *, gap: int = COALESCE_GAP,
                    max_span: int = COALESCE_MAX) -> builtins.list[memoryview]:
        """Bytes of each [start, end) range of `name`, in the order given. Ranges
        are coalesced (`coalesce`) and the merged requests run concurrently; the
        views returned share the merged buffers (no copy)."""
        spans = coalesce([r for r in ranges if r[1] > r[0]], gap, max_span)
        if len(spans) <= 1:
            bufs = [self.read(name, *s) for s in spans]
        else:
            bufs = list(self._executor().map(lambda s: self.read(name, *s), spans))
        out: builtins.list[memoryview] = []
        for start, end in ranges:
            if end <= start:
                out.append(memoryview(b""))
                continue
            k = _span_of(spans, start)
            base = spans[k][0]
            out.append(bufs[k][start - base:end - base])
        return out

    def read_all(self, name: str, limit: int = MAX_SMALL_FILE) -> bytes:
        """A whole small file (index.json, config.json): one request when it
        fits in `limit`, kept for the next call; `too-large` otherwise."""
        with self._lock:
            cached = self._small.get(name)
        if cached is not None:
            return cached
        data, size = self.read_head(name, limit + 1)
        if size > limit:
            raise SourceError("too-large", self.url_of(name),
                              f"{size:,} bytes, more than the {limit:,} allowed")
        out = bytes(data)
        with self._lock:
            self._small[name] = out
        return out

    def known_size(self, name: str) -> int | None:
        """The size a listing or an earlier read gave, without a request."""
        known = self._known(name)
        return None if known is None else known.size

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.max_requests,
                                                thread_name_prefix=f"ckptscan-{self.kind}")
            return self._pool

    # ---- lifetime
    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        rev = f" @{self.revision}" if self.revision else ""
        return f"<{type(self).__name__} {self.url!r}{rev}>"


def _span_of(spans: Sequence[tuple[int, int]], start: int) -> int:
    lo, hi = 0, len(spans) - 1
    while lo < hi:  # the last span starting at or before `start`
        mid = (lo + hi + 1) // 2
        if spans[mid][0] <= start:
            lo = mid
        else:
            hi = mid - 1
    return lo
