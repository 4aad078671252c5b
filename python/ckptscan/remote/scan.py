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
from dataclasses import replace
from typing import Any, TypeVar, cast

from .. import _core
from ..checkpoint import Checkpoint, Index, index_from_core
from ..config import MAX_CONFIG_BYTES
from ..errors import Problem, ShardIOError
from ..layout import CheckpointSpec, FileStat
from ..result import Report
from ..shard import Shard
from ..sources import SourceError
from ..sources.base import Stats
from .fetch import fetch
from .layout import error_code
from .refs import RemotePath, metered
from .shard import RemoteShard

T = TypeVar("T")


class RemoteScan:
    """Reads one remote checkpoint (`spec.remote`). `spec` is the checkpoint as
    read: each shard's size as the server gave it, a shard that could not be
    read turned into an ``error`` file with its finding code; `problems` what
    went wrong without making a file unreadable (a server ignoring Range)."""

    def __init__(self, spec: CheckpointSpec) -> None:
        ref = spec.remote
        assert ref is not None
        self.ref = ref
        self.src, owned = ref.open()
        if owned:
            weakref.finalize(self, self.src.close)
        self.cost = Stats()
        self._charge(ref.listing)  # the listing that found it alone
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

    def _fetch(self, spec: CheckpointSpec) -> CheckpointSpec:
        """index.json, config.json and every shard's header (read when the URL
        was resolved, or now); a shard that could not be had becomes an error."""
        ahead, self.ref.prefetch = self.ref.prefetch, None
        got = ahead.result() if ahead is not None else fetch(self.src, spec, self.ref.names)
        self._charge(got.cost.as_dict())
        self._small, self._index_core = got.small, got.index_core
        by_path = {fs.path: fs for fs in spec.shards}
        files: dict[str, FileStat] = {}
        listed_by_index = spec.kind not in ("file", "shard")
        for path, h in zip(got.wanted, got.heads, strict=True):
            fs = by_path[path]
            self._charge(h.cost)
            if h.notices:  # one finding per file, however many reads it took
                message = h.notices[0][1]
                self.problems.append(Problem("remote-range-ignored",
                                             message.partition(": ")[2] or message, fs.path))
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
            shard = RemoteShard(h.core, fs.path, self.src, self.ref.names[fs.path])
            shard.cost = self.cost
            self.shards[fs.path] = shard
            self._heads[fs.path] = h.head
        return replace(spec, shards=[files.get(fs.path, fs) for fs in spec.shards
                                     if fs.path in files or fs.kind != "file"])

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


__all__ = ["RemoteScan", "open_remote_checkpoint"]
