"""HTTP(S) sources: a directory URL holding model.safetensors.index.json, or
the URL of one .safetensors file. Also the transport of the Hub source.

Plain urllib3 (pooled keep-alive connections, no retries or redirects of its
own) so that this module decides, per response: a redirect is followed once
per file and its location reused for the file's later ranges; a server that
ignores Range is read only as far as needed and the connection dropped; the
ETag and size must stay what they were; 429 and 5xx are retried as the
server asks (`retry.py`).
"""

from __future__ import annotations

import builtins
import os
import re
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urljoin, urlsplit

from .. import __version__, _core
from .base import Entry, Source, SourceError, Stats, scrub
from .retry import Retryable, RetryPolicy, ratelimit, server_wait, with_retries

if TYPE_CHECKING:
    import urllib3

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
USER_AGENT = f"ckptscan/{__version__}"
MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", re.IGNORECASE)
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)", re.IGNORECASE)
_CHUNK = 1 << 20


def content_range(value: str | None) -> tuple[int, int, int | None] | None:
    """(first, last, total or None) of a `Content-Range: bytes a-b/n` header."""
    m = _CONTENT_RANGE.fullmatch((value or "").strip())
    if m is None:
        return None
    return int(m[1]), int(m[2]), None if m[3] == "*" else int(m[3])


class HttpBase(Source):
    """Range reads over HTTP(S); subclasses say where a file lives (`_file_url`)
    and which headers go with requests to it (`_auth_headers`)."""

    def __init__(self, url: str, *, max_requests: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        super().__init__(url, max_requests=max_requests, retry=retry)
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        self._proxies: dict[str, str | None] = {}
        self._locations: dict[str, tuple[str, bool]] = {}  # file -> (redirect target, auth?)
        self._data_etags: dict[str, str] = {}  # file -> ETag of the first data response

    # ---- subclass hooks
    def _file_url(self, name: str) -> str:
        raise NotImplementedError

    def _auth_headers(self, url: str) -> dict[str, str]:
        return {}

    def _check_redirect(self, name: str, headers: Mapping[str, str]) -> None:
        """A redirect's own headers (the Hub names the file's hash and size there)."""

    def _auth_hint(self) -> str:
        return ""

    # ---- connections
    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for this URL's scheme and host
        (HTTP(S)_PROXY, NO_PROXY), looked up once per host."""
        parts = urlsplit(url)
        key = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            if key in self._proxies:
                return self._proxies[key]
        proxy = None if urllib.request.proxy_bypass(parts.hostname or "") else (
            urllib.request.getproxies().get(parts.scheme))
        with self._lock:
            self._proxies[key] = proxy
        return proxy

    def _manager(self, url: str) -> urllib3.PoolManager:
        import urllib3

        proxy = self._proxy(url)
        with self._lock:
            manager = self._managers.get(proxy)
            if manager is None:
                timeout = urllib3.Timeout(connect=self.retry.connect_timeout,
                                          read=self.retry.read_timeout)
                # block=False: a connection dropped mid-response is replaced, not waited for
                kw: dict[str, Any] = {"maxsize": self.max_requests, "block": False,
                                      "timeout": timeout, "retries": False}
                # the system's CAs (and SSL_CERT_FILE); a corporate bundle where named
                bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                if bundle:
                    kw["ca_certs"] = bundle
                manager = (urllib3.ProxyManager(proxy, **kw) if proxy
                           else urllib3.PoolManager(**kw))
                self._managers[proxy] = manager
            return manager

    def _send(self, method: str, url: str, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        import urllib3

        self.stats.add(requests=1)
        try:
            return self._manager(url).request(
                method, url, headers=headers, preload_content=False, decode_content=False,
                redirect=False, retries=False)
        except urllib3.exceptions.SSLError as exc:
            raise SourceError("connection", url, f"TLS failed: {_reason(exc)}") from None
        except urllib3.exceptions.LocationValueError as exc:
            raise SourceError("invalid", url, f"unusable URL: {exc}") from None
        except urllib3.exceptions.HTTPError as exc:
            raise Retryable("connection", _describe(exc, self.retry)) from None

    # ---- the range read
    def _read(self, name: str, start: int, end: int, *, head: bool) -> tuple[memoryview, int]:
        return with_retries(lambda: self._attempt(name, start, end, head), self.retry,
                            self.url_of(name), self.stats)

    def _attempt(self, name: str, start: int, end: int, head: bool) -> tuple[memoryview, int]:
        with self._lock:
            cached = self._locations.get(name)
        url, auth = cached if cached is not None else (self._file_url(name), True)
        plain = {"Range": f"bytes={start}-{end - 1}", "Accept-Encoding": "identity",
                 "User-Agent": USER_AGENT}
        for _hop in range(MAX_REDIRECTS + 1):
            headers = {**plain, **self._auth_headers(url)} if auth else plain
            with self.slots.slot():
                resp = self._send("GET", url, headers)
                try:
                    self._note_ratelimit(resp.headers)
                    if resp.status not in _REDIRECTS:
                        return self._body(name, resp, start, end, head)
                    target = resp.headers.get("Location")
                    if not target:
                        raise SourceError("invalid", self.url_of(name),
                                          f"{resp.status} redirect without a Location")
                    self._check_redirect(name, resp.headers)
                finally:
                    _finish(resp)
            # A relative Location stays with the service and its credentials; an
            # absolute one (a CDN's signed URL) gets none. The location is reused
            # for this file's later ranges: one hop per file.
            auth = auth and not urlsplit(target).netloc
            url = urljoin(url, target)
            self.stats.add(redirects=1)
            with self._lock:
                self._locations[name] = (url, auth)
        raise SourceError("invalid", self.url_of(name), f"more than {MAX_REDIRECTS} redirects")

    def _body(self, name: str, resp: urllib3.BaseHTTPResponse, start: int, end: int,
              head: bool) -> tuple[memoryview, int]:
        status = resp.status
        where = self.url_of(name)
        if status == 206:
            rng = content_range(resp.headers.get("Content-Range"))
            if rng is None or rng[0] != start or rng[1] < rng[0]:
                got = resp.headers.get("Content-Range")
                raise SourceError("invalid", where, "206 without the Content-Range asked for "
                                  f"(asked bytes {start}-{end - 1}, got {got!r})")
            first, last, total = rng
            size = total if total is not None else self.known_size(name)
            if size is None:
                if last < end - 1:
                    size = last + 1
                else:
                    raise SourceError("invalid", where, "Content-Range gives no object size")
            self._check_version(name, resp.headers, size)
            stop = min(last + 1, end)
            if stop < end and not head:
                raise SourceError("truncated", where, f"the object is {size:,} bytes; "
                                  f"bytes {start:,}-{end - 1:,} asked")
            return _read_exactly(resp, stop - start, self.stats), size
        if status == 200:
            return self._whole_object(name, resp, start, end, head)
        if status == 416:
            m = _UNSATISFIED_RANGE.fullmatch((resp.headers.get("Content-Range") or "").strip())
            size = int(m[1]) if m else self.known_size(name)
            if size is not None and head and start == 0:
                self._check_version(name, resp.headers, size)
                return memoryview(b""), size
            raise SourceError("truncated", where, f"the object is {_bytes(size)}; bytes "
                              f"{start:,}-{end - 1:,} asked (416 Range Not Satisfiable)")
        raise _status_error(status, resp, where, self._auth_hint())

    def _whole_object(self, name: str, resp: urllib3.BaseHTTPResponse, start: int, end: int,
                      head: bool) -> tuple[memoryview, int]:
        """A 200 answer to a Range request: the whole object is coming. Read what
        was asked for (if it starts at 0) and drop the connection."""
        where = self.url_of(name)
        length_text = resp.headers.get("Content-Length")
        length = int(length_text) if length_text and length_text.isdigit() else None
        whole = f"the whole {_bytes(length)} object"
        if start > 0:
            raise SourceError("range-ignored", where, f"the server ignored Range (asked bytes "
                              f"{start:,}-{end - 1:,}, it answered 200 with {whole}); not read")
        want = end if length is None else min(end, length)
        data = _read_exactly(resp, want, self.stats, allow_short=length is None)
        size = length if length is not None else (len(data) if len(data) < end
                                                  else self.known_size(name))
        if size is None:
            raise SourceError("range-ignored", where, f"the server ignored Range and sent {whole} "
                              "with no Content-Length: its size is unknown")
        self._check_version(name, resp.headers, size)
        if len(data) < size:
            self.notice(name, f"range-ignored: the server ignored Range and sent {whole}; "
                        f"read the first {len(data):,} bytes and closed the connection")
        if len(data) < end - start and not head:
            raise SourceError("truncated", where,
                              f"the object is {size:,} bytes; bytes {start:,}-{end - 1:,} asked")
        return data, size

    def _check_version(self, name: str, headers: Mapping[str, str], size: int) -> None:
        """The object must keep the size and ETag it had when listed or first read."""
        where = self.url_of(name)
        known = self._known(name)
        if known is not None and known.size is not None and known.size != size:
            raise SourceError("changed", where, f"the object is {size:,} bytes; it was "
                              f"{known.size:,} when listed (changed or truncated since)")
        etag = headers.get("ETag")
        with self._lock:
            first = self._data_etags.setdefault(name, etag) if etag else self._data_etags.get(name)
        if etag and first != etag:
            raise SourceError("changed", where, f"ETag {etag} differs from the {first} of an "
                              "earlier read: the object changed while being read")
        if known is None or known.size is None:
            self._remember(Entry(name, size, (known.version if known else None) or etag,
                                 known.sha256 if known else None))

    def _note_ratelimit(self, headers: Mapping[str, str]) -> None:
        remaining, reset = ratelimit(headers)
        if remaining == 0 and reset:
            self.slots.pause_until(time.monotonic() + reset)

    def close(self) -> None:
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
        for m in managers:
            m.clear()
        super().close()


class HTTPSource(HttpBase):
    """`http(s)://host/dir/` (a directory holding model.safetensors.index.json,
    or model.safetensors) or `http(s)://host/dir/file.safetensors`. Plain HTTP
    lists nothing: the files are those the index names, and sizes and ETags are
    learnt from the first read of each. A query string (a presigned file URL,
    a directory-wide SAS) is sent with every request and shown nowhere."""

    kind = "http"
    lists_files = False

    def __init__(self, url: str, *, max_requests: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError("invalid", url, "not an http(s) URL with a host")
        path = parts.path or "/"
        self.single: str | None = None
        if path.endswith(".safetensors"):
            directory, _, self.single = path.rpartition("/")
            self._single_url = url  # as given: a presigned URL keeps its query
            path = directory + "/"
        elif not path.endswith("/"):
            path += "/"
        self._root = f"{parts.scheme}://{parts.netloc}{path}"
        self._query = parts.query  # a directory-wide signature (SAS) goes with every file
        super().__init__(self._root if self.single is None else url,
                         max_requests=max_requests, retry=retry)
        self._listed: builtins.list[Entry] | None = None
        self._list_lock = threading.Lock()

    def url_of(self, name: str) -> str:
        return scrub(urljoin(self._root, quote(name)))

    def _file_url(self, name: str) -> str:
        if name == self.single:
            return self._single_url
        url = urljoin(self._root, quote(name))
        return f"{url}?{self._query}" if self._query else url

    def list(self, recursive: bool = True) -> list[Entry]:
        """The index, the shards it names (and index.json itself); a directory
        without an index but with model.safetensors lists that one file."""
        with self._list_lock:
            if self._listed is None:
                self._listed = self._list()
            return list(self._listed)

    def adopt(self, entries: Sequence[Entry], revision: str | None = None) -> None:
        super().adopt(entries, revision)
        with self._list_lock:
            self._listed = sorted(entries, key=lambda e: e.name)

    def _list(self) -> builtins.list[Entry]:
        if self.single is not None:
            return [self.entry(self.single)]
        try:
            data = self.read_all(INDEX_NAME)
        except SourceError as exc:
            if exc.code != "not-found":
                raise
            try:
                return [self.entry(SINGLE_NAME)]
            except SourceError as single_exc:
                if single_exc.code != "not-found":
                    raise
            raise SourceError("not-found", self.url, (
                f"neither {INDEX_NAME} nor {SINGLE_NAME} here: a plain HTTP directory cannot "
                "be listed; give the URL of a .safetensors file or of a directory with an index"
            )) from None
        names = _core.parse_index(data).shard_names
        found = {n: self._known(n) or Entry(n, None, None) for n in names}
        found[INDEX_NAME] = self.entry(INDEX_NAME)
        return sorted(found.values(), key=lambda e: e.name)


# ---------------------------------------------------------------- helpers


def _finish(resp: urllib3.BaseHTTPResponse) -> None:
    """Return the connection to the pool when the body was read to its end (or
    the rest is a redirect's or an error's few bytes); otherwise close it: the
    rest of an unwanted body is never read."""
    left = resp.length_remaining
    if left is not None and left <= 65536:
        resp.drain_conn()  # also completes a response whose rest is empty
    else:
        resp.close()
    resp.release_conn()


def _read_exactly(resp: urllib3.BaseHTTPResponse, n: int, stats: Stats,
                  allow_short: bool = False) -> memoryview:
    import urllib3

    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    try:
        while got < n:
            chunk = resp.read(min(n - got, _CHUNK))
            if not chunk:
                break
            view[got:got + len(chunk)] = chunk
            got += len(chunk)
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        stats.add(nbytes=got)
        raise Retryable("connection", f"{_describe(exc)} after {got:,} of {n:,} bytes") from None
    stats.add(nbytes=got)
    if got < n and not allow_short:
        raise Retryable("connection", f"the response ended after {got:,} of {n:,} bytes")
    return view[:got]


def _status_error(status: int, resp: urllib3.BaseHTTPResponse, where: str,
                  hint: str) -> Exception:
    reason = f"{status} {resp.reason or ''}".strip()
    detail = resp.headers.get("X-Error-Message")
    if detail:
        reason += f" ({detail[:200]})"
    if status == 429:
        return Retryable("rate-limited", reason, wait=server_wait(resp.headers), throttled=True)
    if status == 408 or status >= 500:
        return Retryable("server-error", reason, wait=server_wait(resp.headers))
    code = {404: "not-found", 410: "not-found", 401: "unauthorized", 403: "forbidden",
            412: "changed"}.get(status, "http-error")
    if code in ("unauthorized", "forbidden") and hint:
        reason += f"; {hint}"
    return SourceError(code, where, reason)


def _describe(exc: BaseException, policy: RetryPolicy | None = None) -> str:
    """A short, secret-free account of a transport failure (urllib3's own
    messages name the pool and may quote the URL)."""
    import urllib3

    e = urllib3.exceptions
    if isinstance(exc, e.NewConnectionError):
        return f"cannot connect: {_reason(exc)}"
    if isinstance(exc, e.ConnectTimeoutError):
        return "connect timed out"
    if isinstance(exc, e.ReadTimeoutError | TimeoutError):
        limit = f" for {policy.read_timeout:g} s" if policy else ""
        return f"no data{limit} (read timeout)"
    if isinstance(exc, e.ProxyError):
        return f"proxy failed: {_reason(exc)}"
    if isinstance(exc, e.ProtocolError | ConnectionError):
        text = str(exc).lower()
        if "reset" in text:
            return "connection reset"
        if "incompleteread" in text or "ended" in text or "remote end closed" in text:
            return "connection closed early"
        return "connection broken"
    return f"{type(exc).__name__}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return scrub(text.rpartition("): ")[2] or text)[:200]


def _bytes(n: int | None) -> str:
    return "unknown-size" if n is None else f"{n:,}-byte"
