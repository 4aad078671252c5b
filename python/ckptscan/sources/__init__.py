"""Byte sources behind one seam: local paths, HTTP(S), the Hugging Face Hub,
S3, GCS and Azure.

    from ckptscan.sources import open_source, discover, fetch_headers

    with open_source("hf://MiniMaxAI/MiniMax-M2") as src:  # s3://, gs://, az://, https://, a path
        found = discover(src)                  # listing + index.json + config.json
        heads = fetch_headers(src, found.shards, index=found.index())
        src.revision, src.stats.as_dict()      # the commit read; requests and bytes spent

The network clients (urllib3, obstore) are imported on first use, so that
importing ckptscan costs nothing for them.
"""

from __future__ import annotations

import os
import re

from .base import (
    COALESCE_GAP,
    COALESCE_MAX,
    DEFAULT_MAX_REQUESTS,
    ERROR_CODES,
    Entry,
    Source,
    SourceError,
    Stats,
    coalesce,
    scrub,
    scrub_url,
)
from .headers import (
    SPECULATIVE_READ,
    Discovery,
    HeaderResult,
    discover,
    fetch_headers,
    predict_header_lengths,
)
from .retry import RetryPolicy

__all__ = [
    "COALESCE_GAP", "COALESCE_MAX", "DEFAULT_MAX_REQUESTS", "ERROR_CODES", "SPECULATIVE_READ",
    "Discovery", "Entry", "HeaderResult", "RetryPolicy", "Source", "SourceError", "Stats",
    "coalesce", "discover", "fetch_headers", "is_remote", "open_source",
    "predict_header_lengths", "scrub", "scrub_url",
]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "az", "azure", "abfs", "abfss", "adl"}


def _scheme(location: str) -> str | None:
    m = _SCHEME.match(location)
    return m[1].lower() if m else None


def is_remote(location: str | os.PathLike[str]) -> bool:
    """True for a URL this package reads remotely (hf://, http(s)://, s3:// ...)."""
    scheme = _scheme(os.fspath(location)) if isinstance(location, str) else None
    return scheme is not None and scheme != "file"


def open_source(location: str | os.PathLike[str], *, max_requests: int | None = None,
                retry: RetryPolicy | None = None) -> Source:
    """The source for a path or URL: `hf://ORG/NAME[@REV][/SUBDIR]`,
    `http(s)://...` (a directory with index.json, or one .safetensors file),
    `s3://`, `gs://`, `az://` prefixes, or a local path (`file://` too).
    `max_requests`: requests in flight at once (default DEFAULT_MAX_REQUESTS)."""
    text = os.fspath(location)
    scheme = _scheme(text) if isinstance(location, str) else None
    if scheme is None or scheme == "file":
        from .local import LocalSource

        return LocalSource(text, max_requests=max_requests, retry=retry)
    if scheme == "hf":
        from .hf import HubSource

        return HubSource(text, max_requests=max_requests, retry=retry)
    if scheme in ("http", "https"):
        from .http import HTTPSource

        return HTTPSource(text, max_requests=max_requests, retry=retry)
    if scheme in _OBJECT_STORES:
        from .objstore import ObjectStoreSource

        return ObjectStoreSource(text, max_requests=max_requests, retry=retry)
    raise SourceError("invalid", text, f"no source for {scheme}:// URLs "
                      "(hf, http, https, s3, gs, az or a local path)")
