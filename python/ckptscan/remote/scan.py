"""One remote checkpoint's reads, for `pipeline._scan`.

The pipeline is the same for every checkpoint; for a remote one it asks this
module, instead of the file system, for the shards (headers fetched by
`sources.fetch_headers`, parsed by the same core as local files, so a remote
header has the problems the same file has on disk), index.json and
config.json (read whole, within the same limits) and the first bytes of a
file (another format's magic). A file that cannot be had is the root cause of
its tensors' absence, named by a finding code (`error_code`), and the scan
goes on. Every request is counted: the report states what the scan cost.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar, cast

from .. import _core
from ..checkpoint import Checkpoint, Index, index_from_core
from ..config import MAX_CONFIG_BYTES
from ..errors import Problem, ShardIOError
from ..layout import CheckpointSpec, FileStat
from ..result import Report
from ..shard import Shard
from ..sources import SourceError, fetch_headers
from ..sources.base import Stats
from .layout import error_code
from .refs import RemotePath
from .shard import RemoteShard, metered

T = TypeVar("T")


class RemoteScan:
    """Reads one remote checkpoint (`spec.remote`). `spec` is the checkpoint as
    read: each shard's size as the server gave it, a shard that could not be
    read turned into an ``error`` file with its finding code; `problems` what
    went wrong without making a file unreadable (a server ignoring Range)."""

    def __init__(self, spec: CheckpointSpec, max_requests: int | None = None) -> None:
        ref = spec.remote
        assert ref is not None
        self.ref = ref
        self.src, owned = ref.open()
        if owned:
            weakref.finalize(self, self.src.close)
        self.max_requests = max_requests
        self.cost = Stats()
        self.cost.add(requests=ref.listing.get("requests", 0), nbytes=ref.listing.get("bytes", 0),
                      retries=ref.listing.get("retries", 0),
                      redirects=ref.listing.get("redirects", 0))
        self.problems: list[Problem] = []
        self.shards: dict[str, RemoteShard] = {}
        self._heads: dict[str, bytes] = {}
        self._small: dict[str, tuple[bytes | None, SourceError | None]] = {}
        self._index_core: Any = None
        self.root = cast(Any, RemotePath(spec.path, spec.kind not in ("file", "shard")))
        self.spec = self._fetch(spec) if spec.format == "safetensors" else spec

    # ---- reading
    def _metered(self, fn: Callable[[], T]) -> T:
        return metered(self.src, self.cost, fn)

    def _charge(self, cost: dict[str, int]) -> None:
        self.cost.add(requests=cost.get("requests", 0), nbytes=cost.get("bytes", 0),
                      retries=cost.get("retries", 0), redirects=cost.get("redirects", 0))

    def _read_small(self, fs: FileStat | None, limit: int) -> None:
        if fs is None or fs.kind != "file":
            return
        try:
            data: bytes | None = self._metered(
                lambda: self.src.read_all(self.ref.names[fs.path], limit))
            self._small[fs.path] = (data, None)
        except SourceError as exc:
            self._small[fs.path] = (None, exc)

    def _fetch(self, spec: CheckpointSpec) -> CheckpointSpec:
        """index.json and config.json (together), then every shard's header."""
        config = spec.config if spec.config is None or spec.config.size is None or (
            spec.config.size <= MAX_CONFIG_BYTES) else None
        with ThreadPoolExecutor(2, thread_name_prefix="ckptscan-meta") as pool:
            later = pool.submit(self._read_small, config, MAX_CONFIG_BYTES)
            self._read_small(spec.index, 1 << 30)
            index = self._index_bytes(spec.index)
            if index is not None:
                self._index_core = _core.parse_index(index)
            wanted = [fs for fs in spec.shards if fs.kind == "file"]
            names = [self.ref.names[fs.path] for fs in wanted]
            prefix = _common_dir(names)
            heads = fetch_headers(self.src, [n[len(prefix):] for n in names],
                                  index=self._index_core, max_requests=self.max_requests,
                                  prefix=prefix)
            later.result()
        files: dict[str, FileStat] = {}
        listed_by_index = spec.kind not in ("file", "shard")
        for fs, name, h in zip(wanted, names, heads, strict=True):
            self._charge(h.cost)
            self.problems += [Problem("remote-range-ignored", message.partition(": ")[2] or
                                      message, fs.path) for _url, message in h.notices]
            if (h.error is not None and h.error.code == "not-found" and listed_by_index
                    and not self.src.lists_files):
                continue  # plain HTTP: a shard index.json names that is not there is missing
            if h.error is not None or h.core is None:
                err = h.error
                code = error_code(err.code) if err is not None else "remote-error"
                reason = f"{err.code}: {err.reason}" if err is not None else "no header"
                files[fs.path] = replace(fs, kind="error", size=h.size, error=reason, code=code)
                continue
            files[fs.path] = replace(fs, size=h.size)
            shard = RemoteShard(h.core, fs.path, self.src, name)
            shard.cost = self.cost
            self.shards[fs.path] = shard
            self._heads[fs.path] = h.head
        return replace(spec, shards=[files.get(fs.path, fs) for fs in spec.shards
                                     if fs.path in files or fs.kind != "file"])

    def _index_bytes(self, fs: FileStat | None) -> bytes | None:
        if fs is None:
            return None
        return self._small.get(fs.path, (None, None))[0]

    # ---- what the pipeline asks
    def shard(self, fs: FileStat) -> Shard:
        return self.shards[fs.path]

    @property
    def opened(self) -> int:
        return len(self.shards)

    def head(self, path: str) -> bytes:
        """A fetched shard's first bytes (or, for another format's file, read now)."""
        if path in self._heads:
            return self._heads[path]
        try:
            data, _size = self._metered(lambda: self.src.read_head(self.ref.names[path], 16))
        except SourceError:
            return b""
        return bytes(data)

    def read_index(self, fs: FileStat, problems: list[Problem]) -> Index | None:
        data, err = self._small.get(fs.path, (None, None))
        if err is not None:
            problems.append(Problem("index-invalid", f"cannot read: {err.code}: {err.reason}",
                                    fs.path))
            return None
        if data is None:
            return None
        core = self._index_core if self._index_core is not None else _core.parse_index(data)
        return index_from_core(core, cast(Any, RemotePath(fs.path, False)), "index-invalid",
                               problems)

    def read_config(self, fs: FileStat, problems: list[Problem]) -> dict[str, Any] | None:
        from ..pipeline import config_over_limit, parse_config

        if config_over_limit(fs, problems):
            return None
        data, err = self._small.get(fs.path, (None, None))
        if err is not None:
            if err.code == "too-large":
                problems.append(Problem("limit-exceeded", f"config.json is beyond the "
                                        f"{MAX_CONFIG_BYTES:,}-byte limit: not read", fs.path))
            else:
                problems.append(Problem("config-invalid", f"cannot read: {err.code}: "
                                        f"{err.reason}", fs.path))
            return None
        return None if data is None else parse_config(data, fs, problems)

    def finish(self, report: Report) -> Report:
        """The report with what the scan cost (requests and bytes)."""
        cost = self.cost.as_dict()
        report.source.requests = cost["requests"]
        report.source.bytes = cost["bytes"]
        return report


def open_remote_checkpoint(url: str) -> Checkpoint:
    """`open_checkpoint` for a URL: every shard's header fetched (one request
    per shard where possible), index.json and config.json read; tensor bytes
    are read on demand by each shard's `raw()`. Raises `ShardIOError` when the
    URL cannot be listed or holds several checkpoints."""
    from ..layout import LayoutError
    from ..pipeline import file_problem
    from .layout import resolve_url
    from .refs import close_sources

    try:
        specs = resolve_url(url)
    except LayoutError as exc:
        raise ShardIOError(url, str(exc)) from None
    if len(specs) != 1:
        close_sources(specs)
        raise ShardIOError(url, f"holds {len(specs)} checkpoints: open one of "
                                f"{', '.join(s.path for s in specs[:6])}")
    reader = RemoteScan(specs[0])
    spec = reader.spec
    problems = list(reader.problems)
    problems += [p for fs in spec.shards if (p := file_problem(fs)) is not None]
    index = reader.read_index(spec.index, problems) if spec.index is not None else None
    config = reader.read_config(spec.config, problems) if spec.config is not None else None
    shards: list[Shard] = [reader.shards[fs.path] for fs in spec.shards
                           if fs.path in reader.shards]
    ckpt = Checkpoint(reader.root, shards, config, problems, index=index,
                      found=[fs.name for fs in spec.shards], partial=spec.kind == "shard")
    weakref.finalize(ckpt, close_sources, specs)  # the shards read through it until then
    return ckpt


def _common_dir(names: list[str]) -> str:
    """The directory (ending in "/") all `names` share, or ""."""
    dirs = {n.rpartition("/")[0] for n in names}
    if len(dirs) != 1:
        return ""
    d = dirs.pop()
    return f"{d}/" if d else ""


__all__ = ["RemoteScan", "open_remote_checkpoint"]
