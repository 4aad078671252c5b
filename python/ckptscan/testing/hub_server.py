"""A local HTTP server for tests and benchmarks: a directory tree over plain
HTTP with Range, and the Hugging Face Hub's endpoints emulated over the same
tree, with latency, request counts and faults on demand.

    with HubServer(tmp_path, latency=0.05) as hub:
        hub.http_url("ckpt/")                 # plain HTTP: GET /ckpt/<file>
        hub.hf_url("org/model")               # hf://org/model, with HF_ENDPOINT=hub.url
        hub.inject("reset", "*00003*", after=4096)
        hub.count("*.safetensors")            # requests that touched matching files

Routes (every directory ROOT/ORG/NAME is a Hub model repository):

- ``GET /PATH``: the file ROOT/PATH, Range honoured (``bytes=a-b``, ``a-``, ``-n``).
- ``GET /api/models/ORG/NAME[/revision/REV]``: the commit REV resolves to and
  the files (``?blobs=true``: with size, git blob id and LFS sha256).
- ``GET /api/models?author=ORG[&limit=N]``: ORG's models with their commits,
  N per page, the next page named by a ``Link: <...>; rel="next"`` header.
- ``GET|HEAD /ORG/NAME/resolve/REV/FILE``: small files served directly (ETag:
  git blob id); LFS files (*.safetensors, or above 10 MiB) answer 302 to a
  signed ``/cdn/...`` location, with X-Repo-Commit, X-Linked-Etag (the sha256)
  and X-Linked-Size, like the Hub.
- ``GET /cdn/ID?Expires=..&Signature=..``: the file, Range honoured; 403
  without the signature.

Revisions: "main", any name given to `add_revision`, or the commit itself; all
serve the same files. With `token` set, the API and resolve routes answer 401
without ``Authorization: Bearer TOKEN`` (the CDN never needs it: the log
records whether a request carried one).

LFS sha256 values are real for files up to `hash_limit` bytes; larger ones
(sparse replicas of hundreds of GB) get a stand-in derived from path, size
and mtime, since hashing them would read every byte of their holes.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote

import orjson

LFS_THRESHOLD = 10 << 20
_CHUNK = 1 << 20

#: what `inject` can do to a request for a matching file
FAULTS = {
    "status": "answer `status` (404, 403, 500, 503 ...), with Retry-After `wait` if given",
    "throttle": "answer 429 with Retry-After `wait` and/or the RateLimit header `ratelimit`",
    "reset": "send the headers and `after` body bytes, then reset the connection",
    "ignore-range": "ignore Range: answer 200 with the whole file",
    "change": "serve another version tag (ETag; X-Linked-Etag on the Hub) than the listing's",
}


@dataclass
class Fault:
    """One injected fault: `kind` (a key of FAULTS) for requests whose file
    (path under the root) matches `match`, at `where` ("any", "file" for plain
    HTTP, "api", "resolve", "cdn"), for the next `times` such requests (None: all)."""

    kind: str
    match: str = "*"
    times: int | None = None
    where: str = "any"
    status: int = 503
    after: int = 0
    wait: float | None = None
    ratelimit: str | None = None
    hits: int = 0


@dataclass(frozen=True)
class Request:
    """One request the server answered."""

    method: str
    route: str           # "file", "api", "resolve", "cdn"
    path: str            # without the query
    query: str
    file: str | None     # path under the root
    range: str | None
    status: int
    auth: bool           # carried an Authorization header
    fault: str | None


@dataclass
class _FileInfo:
    size: int
    mtime_ns: int
    lfs: bool
    sha256: str
    blob_id: str
    pointer_size: int


@dataclass
class HubServer:
    """See the module docstring. Binds 127.0.0.1 on a free port."""

    root: Path
    latency: float = 0.0
    token: str | None = None
    hash_limit: int = 64 << 20
    log: list[Request] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)  # added to every response
    sent_bytes: int = 0  # body bytes written (what a client that stops early saved)
    peak_in_flight: int = 0  # the most requests being answered at once
    page_size: int = 1000  # models per page of an author's listing, at most

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self._lock = threading.Lock()
        self._infos: dict[tuple[str, int, int], _FileInfo] = {}
        self._revisions: dict[str, str] = {}
        self._generations: dict[str, int] = {}
        self._cdn: dict[str, tuple[str, str]] = {}  # id -> (file, signature)
        self._in_flight = 0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- lifetime
    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        server = _Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
        server.daemon_threads = True
        server.request_queue_size = 256  # many clients connect at once (default: 5)
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,),
                                        name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start() if self._server is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ---- addresses
    @property
    def url(self) -> str:
        """The base URL, and the Hub endpoint (set HF_ENDPOINT to it)."""
        assert self._server is not None, "start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def http_url(self, path: str = "") -> str:
        return f"{self.url}/{quote(path)}"

    def hf_url(self, repo: str, revision: str | None = None, subdir: str = "") -> str:
        at = f"@{quote(revision, safe='')}" if revision else ""
        return f"hf://{repo}{at}" + (f"/{subdir}" if subdir else "")

    def commit(self, repo: str, revision: str = "main") -> str:
        """The commit `revision` of `repo` resolves to (stable per repo and name,
        until `new_commit`)."""
        with self._lock:
            generation = self._generations.get(repo, 0)
        tag = f"{repo}@{revision}" + (f"#{generation}" if generation else "")
        return hashlib.sha1(tag.encode()).hexdigest()

    def new_commit(self, repo: str) -> str:
        """Moves every revision of `repo` to a new commit (as a push does); returns main's."""
        with self._lock:
            self._generations[repo] = self._generations.get(repo, 0) + 1
            for key in [k for k in self._revisions if k.startswith(f"{repo}@")]:
                del self._revisions[key]
        return self.commit(repo)

    def add_revision(self, repo: str, name: str) -> str:
        commit = self.commit(repo, name)
        with self._lock:
            self._revisions[f"{repo}@{name}"] = commit
        return commit

    # ---- faults and counts
    def inject(self, kind: str, match: str = "*", *, times: int | None = None,
               where: str = "any", **params: Any) -> Fault:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        fault = Fault(kind, match, times, where, **params)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Forget faults, the request log and the byte and concurrency counts."""
        with self._lock:
            self.faults.clear()
            self.log.clear()
            self.sent_bytes = self.peak_in_flight = 0

    def count(self, match: str | None = None, *, route: str | None = None) -> int:
        """Requests answered, for files matching `match` and/or on `route`."""
        with self._lock:
            return sum(1 for r in self.log
                       if (match is None or (r.file is not None and fnmatch.fnmatch(r.file, match)))
                       and (route is None or r.route == route))

    def sha256(self, path: str) -> str:
        """The LFS sha256 the server lists for ROOT/path."""
        return self._info(path).sha256

    def _fault(self, file: str | None, route: str) -> Fault | None:
        if file is None:
            return None
        with self._lock:
            for f in self.faults:
                if (f.times is None or f.hits < f.times) and f.where in ("any", route) \
                        and fnmatch.fnmatch(file, f.match):
                    f.hits += 1
                    return f
        return None

    def _record(self, h: _Handler, route: str, file: str | None, status: int,
                fault: Fault | None) -> None:
        with self._lock:
            path, _, query = h.path.partition("?")
            self.log.append(Request(h.command, route, path, query, file,
                                    h.headers.get("Range"), status,
                                    h.headers.get("Authorization") is not None,
                                    fault.kind if fault else None))

    # ---- files
    def _path(self, rel: str) -> Path | None:
        p = (self.root / rel).resolve()
        if p != self.root and self.root not in p.parents:
            return None
        return p if p.is_file() else None

    def _info(self, rel: str) -> _FileInfo:
        p = self.root / rel
        st = p.stat()
        key = (rel, st.st_size, st.st_mtime_ns)
        with self._lock:
            info = self._infos.get(key)
        if info is not None:
            return info
        lfs = rel.endswith(".safetensors") or st.st_size > LFS_THRESHOLD
        if st.st_size <= self.hash_limit:
            sha, sha1 = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % st.st_size)
            with open(p, "rb") as f:
                while chunk := f.read(_CHUNK):
                    sha.update(chunk)
                    sha1.update(chunk)
            sha256, blob = sha.hexdigest(), sha1.hexdigest()
        else:
            stand_in = f"ckptscan-test-server:{rel}:{st.st_size}:{st.st_mtime_ns}".encode()
            sha256 = hashlib.sha256(stand_in).hexdigest()
            blob = hashlib.sha1(stand_in).hexdigest()
        pointer = (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
                   f"size {st.st_size}\n").encode()
        if lfs:
            blob = hashlib.sha1(b"blob %d\0" % len(pointer) + pointer).hexdigest()
        info = _FileInfo(st.st_size, st.st_mtime_ns, lfs, sha256, blob, len(pointer))
        with self._lock:
            self._infos[key] = info
        return info

    def _resolve_revision(self, repo: str, rev: str) -> str | None:
        if rev == "main" or rev == self.commit(repo, "main"):
            return self.commit(repo, "main")
        with self._lock:
            named = self._revisions.get(f"{repo}@{rev}")
            if named is None and rev in self._revisions.values():
                named = rev
        return named

    # ---- routes
    def handle(self, h: _Handler) -> None:
        with self._lock:
            self._in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            if self.latency:
                time.sleep(self.latency)
            self._route(h)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _route(self, h: _Handler) -> None:
        raw = h.path.partition("?")[0]
        parts = raw.split("/")
        if raw.startswith("/api/models/"):
            self._api(h, raw)
        elif raw == "/api/models":
            self._org(h)
        elif len(parts) >= 6 and parts[3] == "resolve":
            self._resolve(h, parts)
        elif raw.startswith("/cdn/"):
            self._cdn_get(h, unquote(raw[len("/cdn/"):]))
        else:
            rel = unquote(raw.lstrip("/"))
            fault = self._fault(rel, "file")
            if self._path(rel) is None:
                self._error(h, "file", rel, 404, "EntryNotFound", "no such file", fault)
                return
            info = self._info(rel)
            self._serve(h, "file", rel, f'"{info.mtime_ns:x}-{info.size:x}"', {}, fault)

    def _authorized(self, h: _Handler) -> bool:
        return self.token is None or h.headers.get("Authorization") == f"Bearer {self.token}"

    def _repo(self, org: str, name: str) -> Path | None:
        p = (self.root / org / name).resolve()
        return p if org and name and p.is_dir() and p.parent.parent == self.root else None

    def _api(self, h: _Handler, raw: str) -> None:
        rest = raw[len("/api/models/"):]
        org, _, rest = rest.partition("/")
        name, _, rest = rest.partition("/")
        org, name = unquote(org), unquote(name)
        repo = f"{org}/{name}"
        rev = unquote(rest[len("revision/"):]) if rest.startswith("revision/") else "main"
        fault = self._fault(repo, "api")
        if fault is not None and self._fault_answer(h, "api", repo, fault):
            return
        if not self._authorized(h):
            self._error(h, "api", repo, 401, "GatedRepo", "a token is needed", fault)
            return
        if self._repo(org, name) is None:
            self._error(h, "api", repo, 404, "RepoNotFound", "Repository not found", fault)
            return
        commit = self._resolve_revision(repo, rev)
        if commit is None:
            self._error(h, "api", repo, 404, "RevisionNotFound", f"Invalid rev id: {rev}", fault)
            return
        blobs = "blobs=true" in h.path.partition("?")[2].lower()
        siblings = []
        base = self.root / org / name
        for p in sorted(base.rglob("*")):
            if not p.is_file():
                continue
            rel = p.relative_to(base).as_posix()
            sib: dict[str, Any] = {"rfilename": rel}
            if blobs:
                info = self._info(f"{repo}/{rel}")
                sib.update(size=info.size, blobId=info.blob_id)
                if info.lfs:
                    sib["lfs"] = {"sha256": info.sha256, "size": info.size,
                                  "pointerSize": info.pointer_size}
            siblings.append(sib)
        body = orjson.dumps({"_id": commit[:24], "id": repo, "modelId": repo, "sha": commit,
                             "private": self.token is not None, "siblings": siblings})
        self._send(h, "api", repo, 200, {"Content-Type": "application/json"}, body, fault)

    def _org(self, h: _Handler) -> None:
        """The model listing of one author (`?author=ORG`): id and current commit
        of each model, `limit` per page, the next page named by a Link header."""
        query = parse_qs(h.path.partition("?")[2])
        org = query.get("author", [""])[0]
        fault = self._fault(org, "api")
        if fault is not None and self._fault_answer(h, "api", org, fault):
            return
        if not self._authorized(h):
            self._error(h, "api", org, 401, None, "a token is needed", fault)
            return
        base = self.root / org
        names = sorted(p.name for p in base.iterdir() if p.is_dir()) if org and (
            base.is_dir() and base.parent == self.root) else []
        limit = max(1, min(self.page_size, int(query.get("limit", ["1000"])[0])))
        start = int(query.get("cursor", ["0"])[0])
        page = names[start:start + limit]
        body = orjson.dumps([{"_id": self.commit(f"{org}/{n}")[:24], "id": f"{org}/{n}",
                              "sha": self.commit(f"{org}/{n}")} for n in page])
        headers = {"Content-Type": "application/json"}
        if start + limit < len(names):
            headers["Link"] = (f'<{self.url}/api/models?author={quote(org)}&limit={limit}'
                               f'&cursor={start + limit}>; rel="next"')
        self._send(h, "api", org, 200, headers, body, fault)

    def _resolve(self, h: _Handler, parts: list[str]) -> None:
        org, name = unquote(parts[1]), unquote(parts[2])
        rev = unquote(parts[4])
        path = "/".join(unquote(p) for p in parts[5:])
        repo = f"{org}/{name}"
        rel = f"{repo}/{path}"
        fault = self._fault(rel, "resolve")
        if fault is not None and fault.kind != "change" and self._fault_answer(h, "resolve", rel,
                                                                               fault):
            return
        if not self._authorized(h):
            self._error(h, "resolve", rel, 401, "GatedRepo", "a token is needed", fault)
            return
        commit = self._resolve_revision(repo, rev) if self._repo(org, name) else None
        if commit is None:
            self._error(h, "resolve", rel, 404, "RevisionNotFound", f"Invalid rev id: {rev}",
                        fault)
            return
        if self._path(rel) is None:
            self._error(h, "resolve", rel, 404, "EntryNotFound", "Entry not found", fault)
            return
        info = self._info(rel)
        hub = {"X-Repo-Commit": commit}
        if not info.lfs:
            self._serve(h, "resolve", rel, f'"{info.blob_id}"', hub, fault)
            return
        sha = info.sha256
        if fault is not None and fault.kind == "change":
            sha = hashlib.sha256(sha.encode()).hexdigest()
        with self._lock:
            cdn_id = next((k for k, (f, _) in self._cdn.items() if f == rel), None)
            if cdn_id is None:
                cdn_id = secrets.token_hex(8)
                self._cdn[cdn_id] = (rel, secrets.token_urlsafe(24))
            signature = self._cdn[cdn_id][1]
        expires = int(time.time()) + 3600
        location = f"{self.url}/cdn/{cdn_id}?Expires={expires}&Signature={signature}"
        hub.update({"Location": location, "X-Linked-Etag": f'"{sha}"',
                    "X-Linked-Size": str(info.size), "ETag": f'"{sha}"'})
        self._send(h, "resolve", rel, 302, hub, b"", fault)

    def _cdn_get(self, h: _Handler, cdn_id: str) -> None:
        with self._lock:
            known = self._cdn.get(cdn_id)
        rel = known[0] if known else None
        fault = self._fault(rel, "cdn")
        signature = parse_qs(h.path.partition("?")[2]).get("Signature", [""])[0]
        if known is None or signature != known[1]:
            self._error(h, "cdn", rel, 403, None, "bad or missing signature", fault)
            return
        assert rel is not None
        info = self._info(rel)
        self._serve(h, "cdn", rel, f'"cdn-{info.sha256[:32]}"', {}, fault)

    # ---- answers
    def _fault_answer(self, h: _Handler, route: str, file: str, fault: Fault) -> bool:
        """Answers for the faults that replace the whole response; False for the
        ones that alter how a file is served."""
        if fault.kind == "status":
            extra = {"Retry-After": f"{fault.wait:g}"} if fault.wait is not None else {}
            code = {404: "EntryNotFound", 403: "GatedRepo"}.get(fault.status)
            self._error(h, route, file, fault.status, code, "injected", fault, extra)
            return True
        if fault.kind == "throttle":
            extra = {}
            if fault.wait is not None:
                extra["Retry-After"] = f"{fault.wait:g}"
            if fault.ratelimit is not None:
                extra["RateLimit"] = fault.ratelimit
            self._error(h, route, file, 429, None, "Too Many Requests", fault, extra)
            return True
        return False

    def _serve(self, h: _Handler, route: str, rel: str, etag: str, extra: dict[str, str],
               fault: Fault | None) -> None:
        if fault is not None and self._fault_answer(h, route, rel, fault):
            return
        info = self._info(rel)
        size = info.size
        if fault is not None and fault.kind == "change":
            etag = f'"changed-{secrets.token_hex(4)}"'
        rng = None if fault is not None and fault.kind == "ignore-range" else _parse_range(
            h.headers.get("Range"), size)
        headers = {"ETag": etag, "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream", **extra}
        if isinstance(rng, str):  # unsatisfiable
            headers["Content-Range"] = f"bytes */{size}"
            self._send(h, route, rel, 416, headers, b"", fault)
            return
        if rng is None:
            status, start, stop = 200, 0, size
        else:
            status, (start, stop) = 206, rng
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        headers["Content-Length"] = str(stop - start)
        self._record(h, route, rel, status, fault)
        h.send_response(status)
        for k, v in {**self.headers, **headers}.items():
            h.send_header(k, v)
        h.end_headers()
        if h.command == "HEAD":
            return
        limit = fault.after if fault is not None and fault.kind == "reset" else None
        self._stream(h, self.root / rel, start, stop, limit)

    def _stream(self, h: _Handler, path: Path, start: int, stop: int, limit: int | None) -> None:
        end = stop if limit is None else min(stop, start + limit)
        try:
            with open(path, "rb") as f:
                pos = start
                while pos < end:
                    chunk = os.pread(f.fileno(), min(_CHUNK, end - pos), pos)
                    if not chunk:
                        break
                    h.wfile.write(chunk)
                    with self._lock:
                        self.sent_bytes += len(chunk)
                    pos += len(chunk)
        except (BrokenPipeError, ConnectionResetError):  # the client stopped reading
            h.close_connection = True
            return
        if limit is not None:  # the fault: a reset (RST, not FIN) mid-body
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True

    def _error(self, h: _Handler, route: str, file: str | None, status: int, code: str | None,
               message: str, fault: Fault | None, extra: dict[str, str] | None = None) -> None:
        headers = {"Content-Type": "application/json", **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(h, route, file, status, headers, orjson.dumps({"error": message}), fault)

    def _send(self, h: _Handler, route: str, file: str | None, status: int,
              headers: dict[str, str], body: bytes, fault: Fault | None) -> None:
        self._record(h, route, file, status, fault)
        h.send_response(status)
        for k, v in {**self.headers, **headers}.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD" and body:
            h.wfile.write(body)


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that drop connections (by design, in tests) are not errors."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as clients expect of a CDN
    server_hub: HubServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server_hub.handle(self)

    def do_HEAD(self) -> None:  # noqa: N802
        self.server_hub.handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def _parse_range(value: str | None, size: int) -> tuple[int, int] | str | None:
    """[start, stop) of a single `bytes=` range, "unsatisfiable", or None (no
    usable Range: the whole file)."""
    if not value or not value.startswith("bytes=") or "," in value:
        return None
    first, _, last = value[len("bytes="):].strip().partition("-")
    try:
        if first == "":
            n = int(last)
            return (max(0, size - n), size) if n > 0 and size > 0 else "unsatisfiable"
        start = int(first)
        stop = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        return None
    if start >= size or stop <= start:
        return "unsatisfiable"
    return start, stop
