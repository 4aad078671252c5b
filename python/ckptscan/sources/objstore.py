"""Object stores: `s3://BUCKET/PREFIX`, `gs://BUCKET/PREFIX`, `az://CONTAINER/PREFIX`
(and the other URL forms obstore accepts for them), through obstore (Rust
object_store: sync calls release the GIL, buffers come back without a copy,
each cloud's credential chain built in).

Credentials: S3 reads the environment (AWS_ACCESS_KEY_ID ..., web identity,
ECS, instance metadata) natively, and the shared config/credentials files and
SSO profiles through boto3 when it is installed and such a file or AWS_PROFILE
exists; AWS_ENDPOINT_URL_S3 (then AWS_ENDPOINT_URL) points it at an
S3-compatible store. GCS: GOOGLE_SERVICE_ACCOUNT*, application default
credentials, the metadata server. Azure: AZURE_STORAGE_ACCOUNT_NAME with a
key, SAS, client secret, managed identity or the Azure CLI.

Every read after the listing carries `If-Match` with the listed ETag, so an
object replaced in between fails with `changed` rather than mixing versions.
The store's own retries (exponential backoff with jitter on 5xx, 429,
timeouts and resets, bounded by the policy) are not counted as requests.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .base import Entry, Source, SourceError
from .retry import RetryPolicy

SCHEMES = {"s3": "s3", "s3a": "s3", "gs": "gs", "gcs": "gs", "az": "az", "azure": "az",
           "abfs": "az", "abfss": "az", "adl": "az"}
_LIST_PAGE = 1000  # keys per listing request (S3, GCS and Azure alike)
_STATUS = re.compile(r"status code: (\d{3})[^:\n]*")


class ObjectStoreSource(Source):
    """A bucket prefix on S3, GCS or Azure (see the module docstring)."""

    def __init__(self, url: str, *, max_requests: int | None = None,
                 retry: RetryPolicy | None = None, store: Any = None) -> None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in SCHEMES:
            raise SourceError("invalid", url, "not an s3://, gs:// or az:// URL")
        self.kind = SCHEMES[scheme]
        super().__init__(url.rstrip("/"), max_requests=max_requests, retry=retry)
        self._store = store if store is not None else _make_store(self.kind, url, self.retry,
                                                                 self.max_requests)
        self._etags: dict[str, str] = {}

    def url_of(self, name: str) -> str:
        return f"{self.url}/{name}"

    def list(self, recursive: bool = True) -> list[Entry]:
        import obstore

        try:
            if recursive:
                metas = [m for chunk in obstore.list(self._store, chunk_size=_LIST_PAGE)
                         for m in chunk]
            else:
                metas = list(obstore.list_with_delimiter(self._store)["objects"])
        except Exception as exc:  # obstore raises its own exception tree
            raise _store_error(exc, self.url) from None
        self.stats.add(requests=max(1, math.ceil(len(metas) / _LIST_PAGE)))
        entries = [self._entry(m) for m in metas]
        self._remember(*entries)
        return sorted(entries, key=lambda e: e.name)

    def _entry(self, meta: Any) -> Entry:
        etag = meta.get("e_tag")
        if etag:
            with self._lock:
                self._etags[meta["path"]] = etag
        return Entry(meta["path"], int(meta["size"]), meta.get("version") or etag, etag=etag)

    def adopt(self, entries: Sequence[Entry], revision: str | None = None) -> None:
        super().adopt(entries, revision)
        with self._lock:
            self._etags.update({e.name: e.etag for e in entries if e.etag})

    def _stat(self, name: str) -> Entry:
        import obstore

        try:
            with self.slots.slot():
                self.stats.add(requests=1)
                meta = obstore.head(self._store, name)
        except Exception as exc:
            raise _store_error(exc, self.url_of(name)) from None
        entry = self._entry(meta)
        self._remember(entry)
        return entry

    def _read(self, name: str, start: int, end: int, *, head: bool) -> tuple[memoryview, int]:
        import obstore

        known = self.known_size(name)
        if known is not None and start >= known:  # stores answer 416 here
            if head and start == 0:
                return memoryview(b""), known
            raise SourceError("truncated", self.url_of(name),
                              f"the object is {known:,} bytes; bytes {start:,}-{end - 1:,} asked")
        with self._lock:
            etag = self._etags.get(name)
        options: Any = {"range": (start, end)}
        if etag:
            options["if_match"] = etag
        try:
            with self.slots.slot():
                self.stats.add(requests=1)
                result = obstore.get(self._store, name, options=options)
                data = memoryview(result.bytes())
        except Exception as exc:
            err = _store_error(exc, self.url_of(name))
            if err.code == "truncated" and head and start == 0:  # a size-0 object, unlisted
                return memoryview(b""), self.entry(name).size or 0
            raise err from None
        self.stats.add(nbytes=len(data))
        meta = result.meta
        size = int(meta["size"])
        got_etag = meta.get("e_tag")
        if etag and got_etag and got_etag != etag:  # a store that ignores If-Match
            raise SourceError("changed", self.url_of(name),
                              f"ETag {got_etag} differs from the listed {etag}")
        if got_etag and not etag:
            with self._lock:
                self._etags.setdefault(name, got_etag)
        want = min(end, size) - start
        if len(data) != want or (want < end - start and not head):
            raise SourceError("truncated", self.url_of(name),
                              f"the object is {size:,} bytes; bytes {start:,}-{end - 1:,} "
                              f"asked, {len(data):,} received")
        return data, size


def _make_store(kind: str, url: str, policy: RetryPolicy, max_requests: int) -> Any:
    from obstore.store import from_url

    retry_config: Any = {
        "max_retries": max(0, policy.attempts - 1),
        "backoff": {"init_backoff": timedelta(seconds=policy.backoff),
                    "max_backoff": timedelta(seconds=policy.max_backoff), "base": 2},
        "retry_timeout": timedelta(seconds=policy.max_wait),
    }
    client: Any = {
        "connect_timeout": timedelta(seconds=policy.connect_timeout),
        "read_timeout": timedelta(seconds=policy.read_timeout),
        "timeout": timedelta(seconds=max(600.0, policy.read_timeout)),
        "pool_max_idle_per_host": str(max_requests),
    }
    extra: Any = {}
    if kind == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            extra["endpoint"] = endpoint
            if endpoint.startswith("http://"):
                client["allow_http"] = True
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        if region:
            extra["region"] = region
        provider = _boto3_provider()
        if provider is not None:
            extra["credential_provider"] = provider
    elif kind == "gs":
        base = os.environ.get("GOOGLE_BASE_URL")
        if base and base.startswith("http://"):
            client["allow_http"] = True
    try:
        return from_url(url, client_options=client, retry_config=retry_config, **extra)
    except Exception as exc:
        raise SourceError("invalid", url, f"cannot set up the store: {_first_line(exc)}") from None


def _boto3_provider() -> Any:
    """boto3's credential chain (profiles, SSO, credential_process) when the
    environment does not hold keys itself and a profile or AWS file exists."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        return None
    files = [env.get("AWS_SHARED_CREDENTIALS_FILE"), env.get("AWS_CONFIG_FILE"),
             "~/.aws/credentials", "~/.aws/config"]
    if not env.get("AWS_PROFILE") and not any(f and Path(f).expanduser().exists()
                                              for f in files):
        return None
    try:
        boto3 = importlib.import_module("boto3")
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        return None
    try:
        return Boto3CredentialProvider(boto3.Session())
    except Exception:  # no credentials in the profile: object_store's own chain decides
        return None


def _store_error(exc: BaseException, where: str) -> SourceError:
    """A SourceError for an obstore exception: the status line, not its XML body."""
    try:
        from obstore import exceptions as oe
    except ImportError:  # pragma: no cover - obstore raised it, so it is there
        raise exc from None
    text = str(exc)
    status = _STATUS.search(text)
    code_num = int(status[1]) if status else None
    brief = status[0].removeprefix("status code: ") if status else _first_line(exc)
    if isinstance(exc, oe.NotFoundError | FileNotFoundError):
        return SourceError("not-found", where, "no such object")
    if isinstance(exc, oe.PreconditionError):
        return SourceError("changed", where, "the ETag no longer matches the listing's "
                           "(If-Match failed): the object changed since it was listed")
    if isinstance(exc, oe.PermissionDeniedError):
        return SourceError("forbidden", where, brief)
    if isinstance(exc, oe.UnauthenticatedError):
        return SourceError("unauthorized", where, brief)
    if code_num == 416:
        return SourceError("truncated", where, brief)
    if code_num == 429:
        return SourceError("rate-limited", where, f"{brief} (retries exhausted)")
    if code_num is not None and code_num >= 500:
        return SourceError("server-error", where, f"{brief} (retries exhausted)")
    if code_num is not None:
        return SourceError("http-error", where, brief)
    return SourceError("connection", where, brief)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
