"""The reads a remote scan starts with: index.json and config.json (together),
then every shard's header (`sources.fetch_headers`, one request per shard
where possible). `prefetch` starts them in the background as soon as a URL is
resolved, so that they overlap what the process does meanwhile (importing
the pipeline, the checks); `RemoteScan` takes their result."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..config import MAX_CONFIG_BYTES
from ..sources.base import SourceError, Stats
from .refs import metered

if TYPE_CHECKING:
    from ..layout import CheckpointSpec, FileStat
    from ..sources.base import Source
    from ..sources.headers import HeaderResult

#: index.json is read whole up to this size
MAX_INDEX_BYTES = 1 << 30


@dataclass
class Fetched:
    """What the first reads brought: file path -> (bytes, or the error of its
    read) for index.json and config.json, the index parsed, each wanted
    shard's header (in `wanted` order) and what the small reads cost."""

    small: dict[str, tuple[bytes | None, SourceError | None]]
    index_core: Any
    wanted: list[str]
    heads: list[HeaderResult]
    cost: Stats = field(default_factory=Stats)


def fetch(src: Source, spec: CheckpointSpec, names: dict[str, str],
          max_requests: int | None = None) -> Fetched:
    from .. import _core
    from ..sources.headers import fetch_headers

    out = Fetched({}, None, [], [])

    def read_small(fs: FileStat | None, limit: int) -> None:
        if fs is None or fs.kind != "file":
            return
        try:
            data: bytes | None = metered(src, out.cost, lambda: src.read_all(names[fs.path], limit))
            out.small[fs.path] = (data, None)
        except SourceError as exc:
            out.small[fs.path] = (None, exc)

    config = spec.config if spec.config is None or spec.config.size is None or (
        spec.config.size <= MAX_CONFIG_BYTES) else None
    with ThreadPoolExecutor(1, thread_name_prefix="ckptscan-meta") as pool:
        later = pool.submit(read_small, config, MAX_CONFIG_BYTES)
        read_small(spec.index, MAX_INDEX_BYTES)
        data = out.small.get(spec.index.path, (None, None))[0] if spec.index else None
        if data is not None:
            out.index_core = _core.parse_index(data)
        out.wanted = [fs.path for fs in spec.shards if fs.kind == "file"]
        paths = [names[p] for p in out.wanted]
        prefix = _common_dir(paths)
        out.heads = fetch_headers(src, [p[len(prefix):] for p in paths], index=out.index_core,
                                  max_requests=max_requests, prefix=prefix)
        later.result()
    return out


def prefetch(spec: CheckpointSpec) -> None:
    """Starts `fetch` for a resolved remote safetensors checkpoint in the
    background; its `RemoteScan` waits for it instead of reading."""
    ref = spec.remote
    if ref is None or ref._live is None or spec.format != "safetensors":
        return
    pool = ThreadPoolExecutor(1, thread_name_prefix="ckptscan-prefetch")
    ref.prefetch = pool.submit(fetch, ref._live, spec, ref.names)
    pool.shutdown(wait=False)


def _common_dir(names: list[str]) -> str:
    """The directory (ending in "/") all `names` share, or ""."""
    dirs = {n.rpartition("/")[0] for n in names}
    if len(dirs) != 1:
        return ""
    d = dirs.pop()
    return f"{d}/" if d else ""


__all__ = ["Fetched", "fetch", "prefetch"]
