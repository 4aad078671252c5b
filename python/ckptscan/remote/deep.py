"""--deep over a source: tensor bytes fetched ahead in large coalesced ranges,
in the order the deep driver reads them, through the same kernels.

The driver (`ckptscan.deep`) reads tensors in file order with a bounded
window in flight. Here its tasks are cut into batches of about `BATCH_BYTES`
(one tensor larger than that is a batch of its own); a batch is fetched with
`Source.read_ranges` (neighbouring tensors merged into one request), `AHEAD`
batches ahead of the one being read, and dropped once the driver has judged
its last tensor: memory stays within a few batches (or the largest tensor).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import ShardIOError
from ..sources import SourceError, coalesce
from .refs import metered
from .shard import RemoteShard

#: tensor bytes per batch (a request of about this size, where tensors are adjacent)
BATCH_BYTES = 32 << 20
#: batches fetched ahead of the one the kernels read, at most (and at most this
#: many batches' bytes: tensors larger than a batch are not fetched ahead in threes)
AHEAD = 3


@dataclass
class _Batch:
    nbytes: int = 0
    ranges: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # shard -> ranges
    future: Future[dict[tuple[int, int], memoryview]] | None = None
    left: int = 0  # tasks not judged yet


class Feed:
    """Prefetched tensor bytes of one deep scan over remote shards."""

    def __init__(self, shards: Sequence[Any], tasks: Sequence[Any], frame: Any) -> None:
        self.shards = list(shards)
        self.batches: list[_Batch] = []
        self._where: dict[tuple[int, int], int] = {}  # (shard, start) -> batch
        self._of_row: dict[int, int] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(AHEAD + 1, thread_name_prefix="ckptscan-deep-fetch")
        self._held = 0  # bytes of batches fetched (or being fetched) and not dropped
        current: _Batch | None = None
        for t in tasks:
            if current is None or current.nbytes >= BATCH_BYTES:
                current = _Batch()
                self.batches.append(current)
            current.nbytes += t.nbytes
            current.left += 1
            self._of_row[t.row] = len(self.batches) - 1
            for r in (t.row, t.scale_row):
                if r < 0:
                    continue
                sid = int(frame.shard_of[r])
                core = self.shards[sid].core
                row = int(frame.row_of[r])
                span = (int(core.begins[row]), int(core.ends[row]))
                current.ranges.setdefault(sid, []).append(span)
                self._where[(sid, span[0])] = len(self.batches) - 1
        self._sid = {id(s): k for k, s in enumerate(self.shards)}
        for s in self.shards:
            s.feed = self

    @property
    def planned(self) -> int:
        """The bytes the batches' requests will read (tensors and the small gaps merged in)."""
        return sum(e - s for b in self.batches for rs in b.ranges.values()
                   for s, e in coalesce(rs))

    def _start(self, k: int) -> None:
        """Batch `k` (wanted now), and the next ones while the bytes held stay
        within AHEAD batches."""
        for j in range(k, min(k + AHEAD + 1, len(self.batches))):
            b = self.batches[j]
            if b.future is not None or b.left == 0:
                continue
            if j > k and self._held + b.nbytes > AHEAD * BATCH_BYTES:
                break
            b.future = self._pool.submit(self._fetch, b)
            self._held += b.nbytes

    def _fetch(self, b: _Batch) -> dict[tuple[int, int], memoryview]:
        out: dict[tuple[int, int], memoryview] = {}
        for sid, ranges in b.ranges.items():
            shard: RemoteShard = self.shards[sid]
            got = metered(shard.source, shard.cost,
                          partial(shard.source.read_ranges, shard.source_name, ranges))
            out.update({(sid, r[0]): v for r, v in zip(ranges, got, strict=True)})
        return out

    def view(self, shard: RemoteShard, start: int, end: int) -> np.ndarray | None:
        sid = self._sid.get(id(shard))
        k = self._where.get((sid, start)) if sid is not None else None
        if sid is None or k is None:
            return None
        with self._lock:
            self._start(k)
            fut = self.batches[k].future
        if fut is None:  # already released: read it again by itself
            return None
        try:
            data = fut.result()[(sid, start)]
        except SourceError as exc:
            raise ShardIOError(shard.path, f"{exc.code}: {exc.reason}") from None
        out = np.frombuffer(data[:end - start], dtype=np.uint8)
        out.flags.writeable = False
        return out

    def done(self, row: int) -> None:
        """The driver judged this tensor: a batch with none left is dropped."""
        k = self._of_row.get(row)
        if k is None:
            return
        with self._lock:
            b = self.batches[k]
            b.left -= 1
            if b.left == 0:
                if b.future is not None:
                    self._held -= b.nbytes
                b.future = None
                b.ranges = {}

    def close(self) -> None:
        for s in self.shards:
            s.feed = None
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.batches = []


def feed_for(shards: Sequence[Any], tasks: Sequence[Any], frame: Any) -> Feed | None:
    """A Feed when the shards are read through a source (None: mapped files)."""
    if not shards or not all(getattr(s, "remote", False) for s in shards):
        return None
    return Feed(shards, tasks, frame)


__all__ = ["AHEAD", "BATCH_BYTES", "Feed", "feed_for"]
