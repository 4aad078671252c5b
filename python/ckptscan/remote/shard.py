"""A shard whose header was fetched from a source: the same parsed table as a
local shard (`_core.parse_bytes`), its tensor bytes read on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import ShardIOError
from ..shard import Shard
from .refs import metered

if TYPE_CHECKING:
    from ..sources.base import Source, Stats


class Feed(Protocol):
    """Bytes a deep scan fetched ahead (`ckptscan.remote.deep`)."""

    def view(self, shard: RemoteShard, start: int, end: int) -> np.ndarray | None: ...


class RemoteShard(Shard):
    """`raw(name)` gives the tensor's bytes from the deep scan's prefetched
    ranges when they hold them, else in one range request (a read-only copy,
    where a local shard gives a view of its mapping)."""

    remote = True

    def __init__(self, core: Any, path: str, source: Source, name: str) -> None:
        super().__init__(core, path)
        self.source = source
        self.source_name = name  # the file's name under the source's root
        self.feed: Feed | None = None
        self.cost: Stats | None = None  # the scan's requests and bytes, when counted

    def raw(self, name: str, populate: bool = False) -> np.ndarray:
        row = self._row(name)
        start, end = int(self.core.begins[row]), int(self.core.ends[row])
        feed = self.feed
        if feed is not None:
            got = feed.view(self, start, end)
            if got is not None:
                return got
        return self._read(name, start, end)

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Bytes [start, stop) of a tensor's data (relative to it) in one range
        request: a stream through a large tensor holds one piece at a time."""
        row = self._row(name)
        begin, end = int(self.core.begins[row]), int(self.core.ends[row])
        return self._read(name, begin + start, min(end, begin + stop))

    def _read(self, name: str, start: int, end: int) -> np.ndarray:
        from ..sources import SourceError

        try:
            data = metered(self.source, self.cost,
                           lambda: self.source.read(self.source_name, start, end))
        except SourceError as exc:
            raise ShardIOError(self.path, f"{name}: {exc.code}: {exc.reason}") from None
        out = np.frombuffer(data, dtype=np.uint8)
        out.flags.writeable = False
        return out

    def __repr__(self) -> str:
        state = "closed" if self._core is None else f"{len(self)} tensors"
        return f"<RemoteShard {self.path!r} {state}>"


__all__ = ["Feed", "RemoteShard"]
