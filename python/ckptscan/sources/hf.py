"""The Hugging Face Hub: `hf://ORG/NAME[@REVISION][/SUBDIR]`.

One API request resolves the revision to its commit and lists every file with
its size, git blob id and LFS sha256 (`/api/models/{repo}/revision/{rev}?blobs=true`).
Files are then read at that commit through `resolve/` URLs: a large file's
answer is a redirect to a signed CDN location, followed once per file and
reused for its later ranges; the redirect's X-Linked-Etag and X-Linked-Size
must match the listing. The token (HF_TOKEN, or the file the Hub's own client
writes) goes to the Hub endpoint only, never to the CDN, and never into output.

No huggingface_hub import: it would cost more to import than the two
endpoints cost to call.
"""

from __future__ import annotations

import builtins
import os
import re
import threading
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urljoin, urlsplit

import orjson

from .base import Entry, SourceError, Stats
from .http import USER_AGENT, HttpBase, _finish, _read_exactly, _status_error
from .retry import RetryPolicy, with_retries

DEFAULT_ENDPOINT = "https://huggingface.co"
MAX_LISTING = 256 << 20
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SPECIAL_REV = re.compile(r"(refs/(?:pr|convert)/[^/]+)(?:/(.*))?")


def parse_hf_url(url: str) -> tuple[str, str | None, str]:
    """(ORG/NAME, revision or None, subdirectory or "") of an hf:// URL. A
    revision holding "/" is written URL-encoded (`@feature%2Fx`), except
    `refs/pr/N` and `refs/convert/...`, which may be written as they are."""
    if not url.startswith("hf://"):
        raise SourceError("invalid", url, "not an hf:// URL")
    org, _, rest = url[len("hf://"):].partition("/")
    revision: str | None = None
    if "@" in rest.partition("/")[0]:
        name, _, after = rest.partition("@")
        special = _SPECIAL_REV.fullmatch(after)
        if special:
            revision, subdir = special[1], special[2] or ""
        else:
            rev_text, _, subdir = after.partition("/")
            revision = unquote(rev_text)
        if not revision:
            raise SourceError("invalid", url, "empty revision after '@'")
    else:
        name, _, subdir = rest.partition("/")
    if not (_PART.fullmatch(org) and _PART.fullmatch(name)):
        raise SourceError("invalid", url, "expected hf://ORG/NAME[@REVISION][/SUBDIR]")
    subdir = subdir.strip("/")
    if any(p in ("", ".", "..") for p in subdir.split("/")) and subdir:
        raise SourceError("invalid", url, "a subdirectory with empty, '.' or '..' parts")
    return f"{org}/{name}", revision, subdir


def hub_token() -> str | None:
    """The token the Hub's own client would use: HF_TOKEN (or the older
    HUGGING_FACE_HUB_TOKEN), else the file `hf auth login` writes
    (HF_TOKEN_PATH, or $HF_HOME/token, HF_HOME defaulting to
    $XDG_CACHE_HOME/huggingface, i.e. ~/.cache/huggingface)."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = os.environ.get(var, "").strip()
        if value:
            return value
    path = os.environ.get("HF_TOKEN_PATH")
    if not path:
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "huggingface")
        path = os.path.join(home, "token")
    try:
        value = Path(path).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


class HubSource(HttpBase):
    """A Hub model repository at one commit (see the module docstring)."""

    kind = "hf"

    def __init__(self, url: str, *, endpoint: str | None = None, token: str | None = None,
                 max_requests: int | None = None, retry: RetryPolicy | None = None) -> None:
        self.repo, self.requested_revision, self.subdir = parse_hf_url(url)
        super().__init__(url, max_requests=max_requests, retry=retry)
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        origin = urlsplit(self.endpoint)
        if origin.scheme not in ("http", "https") or not origin.hostname:
            raise SourceError("invalid", self.endpoint, "HF_ENDPOINT is not an http(s) URL")
        self._origin = (origin.scheme, origin.netloc)
        self._token = token if token is not None else hub_token()
        self._listing: builtins.list[Entry] | None = None
        self._list_lock = threading.Lock()

    # ---- where things are
    def _path(self, name: str) -> str:
        return f"{self.subdir}/{name}" if self.subdir else name

    def url_of(self, name: str) -> str:
        rev = self.revision or self.requested_revision
        at = f"@{quote(rev, safe='')}" if rev else ""
        return f"hf://{self.repo}{at}/{self._path(name)}"

    def _file_url(self, name: str) -> str:
        commit = self.resolve()
        return f"{self.endpoint}/{self.repo}/resolve/{commit}/{quote(self._path(name))}"

    def _auth_headers(self, url: str) -> dict[str, str]:
        parts = urlsplit(url)
        if self._token and (parts.scheme, parts.netloc) == self._origin:
            return {"Authorization": f"Bearer {self._token}"}
        return {}

    def _auth_hint(self) -> str:
        if self._token:
            return "the token in use has no access to this repository"
        return "a gated or private repository needs a token: set HF_TOKEN or run `hf auth login`"

    # ---- listing
    def resolve(self) -> str:
        """The commit the requested revision (default: main) points to."""
        self.list()
        assert self.revision is not None
        return self.revision

    def list(self, recursive: bool = True) -> list[Entry]:
        with self._list_lock:
            if self._listing is None:
                self._listing = self._fetch_listing()
        if recursive:
            return list(self._listing)
        return [e for e in self._listing if "/" not in e.name]

    def adopt(self, entries: Sequence[Entry], revision: str | None = None) -> None:
        super().adopt(entries, revision)
        if revision is not None:
            with self._list_lock:
                self._listing = sorted(entries, key=lambda e: e.name)

    def _fetch_listing(self) -> builtins.list[Entry]:
        rev = self.requested_revision or "main"
        api = f"{self.endpoint}/api/models/{self.repo}/revision/{quote(rev, safe='')}?blobs=true"
        shown = f"hf://{self.repo}@{quote(rev, safe='')}"
        info = orjson.loads(with_retries(lambda: self._get_whole(api, shown), self.retry, shown,
                                         self.stats))
        commit = info.get("sha") if isinstance(info, dict) else None
        siblings = info.get("siblings") if isinstance(info, dict) else None
        if not isinstance(commit, str) or not _COMMIT.fullmatch(commit) or not isinstance(
                siblings, list):
            raise SourceError("invalid", shown, "the Hub's answer has no commit or file list")
        self.revision = commit
        prefix = f"{self.subdir}/" if self.subdir else ""
        entries = [e for s in siblings if (e := _entry(s, prefix)) is not None]
        if self.subdir and not entries:
            raise SourceError("not-found", self.url_of(""), "no file under this subdirectory")
        self._remember(*entries)
        return sorted(entries, key=lambda e: e.name)

    def _get_whole(self, url: str, shown: str, seen: dict[str, str] | None = None) -> bytes:
        """A whole API answer; `seen` receives its Link header (pagination)."""
        headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity",
                   **self._auth_headers(url)}
        with self.slots.slot():
            resp = self._send("GET", url, headers)
            try:
                self._note_ratelimit(resp.headers)
                if resp.status != 200:
                    raise _status_error(resp.status, resp, shown, self._auth_hint())
                if seen is not None:
                    seen["Link"] = resp.headers.get("Link") or ""
                length = resp.length_remaining
                if length is not None and length > MAX_LISTING:
                    raise SourceError("too-large", shown, f"a {length:,}-byte listing")
                return bytes(_read_exactly(resp, length if length is not None else MAX_LISTING,
                                           self.stats, allow_short=length is None))
            finally:
                _finish(resp)

    def _check_redirect(self, name: str, headers: Mapping[str, str]) -> None:
        known = self._known(name)
        if known is None:
            return
        linked = _unquote_etag(headers.get("X-Linked-Etag") or "")
        size_text = headers.get("X-Linked-Size") or ""
        where = self.url_of(name)
        if linked and known.version and linked != known.version:
            raise SourceError("changed", where, f"the Hub now names its content {linked}; "
                              f"the listing said {known.version}")
        if size_text.isdigit() and known.size is not None and int(size_text) != known.size:
            raise SourceError("changed", where, f"the Hub now says {int(size_text):,} bytes; "
                              f"the listing said {known.size:,}")


def parse_hf_org(url: str) -> str | None:
    """ORG of an `hf://ORG` URL (an organisation or user: all its models), else None."""
    if not url.startswith("hf://"):
        return None
    org = url[len("hf://"):].rstrip("/")
    return org if _PART.fullmatch(org) else None


_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
MAX_PAGES = 10_000


def org_models(url: str, *, max_requests: int | None = None,
               retry: RetryPolicy | None = None) -> tuple[list[tuple[str, str | None]], Stats]:
    """The models of `hf://ORG` with their current commits, as (ORG/NAME, sha),
    from the Hub's model listing (`/api/models?author=ORG`, paged by its Link
    header), and the requests it cost."""
    org = parse_hf_org(url)
    if org is None:
        raise SourceError("invalid", url, "expected hf://ORG")
    # A HubSource only as the transport (endpoint, token, retries, counters):
    # its repository is never read.
    hub = HubSource(f"hf://{org}/models", max_requests=max_requests, retry=retry)
    try:
        page: str | None = (f"{hub.endpoint}/api/models?author={quote(org, safe='')}"
                            "&expand[]=sha&limit=1000")
        out: list[tuple[str, str | None]] = []
        for _ in range(MAX_PAGES):
            if page is None:
                break
            seen: dict[str, str] = {}
            target = page
            data = orjson.loads(with_retries(partial(hub._get_whole, target, url, seen),
                                             hub.retry, url, hub.stats))
            if not isinstance(data, list):
                raise SourceError("invalid", url, "the Hub's model listing is not a list")
            for item in data:
                repo = item.get("id") if isinstance(item, dict) else None
                sha = item.get("sha") if isinstance(item, dict) else None
                if isinstance(repo, str) and repo.startswith(f"{org}/"):
                    out.append((repo, sha if isinstance(sha, str) and _COMMIT.fullmatch(sha)
                                else None))
            nxt = _NEXT.search(seen.get("Link", ""))
            page = urljoin(target, nxt[1]) if nxt else None
        return sorted(set(out)), hub.stats
    finally:
        hub.close()


def _entry(sibling: Any, prefix: str) -> Entry | None:
    if not isinstance(sibling, dict):
        return None
    path = sibling.get("rfilename")
    if not isinstance(path, str) or not path.startswith(prefix) or path == prefix:
        return None
    size = sibling.get("size")
    lfs = sibling.get("lfs") if isinstance(sibling.get("lfs"), dict) else None
    sha256 = lfs.get("sha256") if lfs else None
    version = sha256 if isinstance(sha256, str) else sibling.get("blobId")
    return Entry(path[len(prefix):], size if isinstance(size, int) else None,
                 version if isinstance(version, str) else None,
                 sha256 if isinstance(sha256, str) else None)


def _unquote_etag(value: str) -> str:
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value.strip('"')
