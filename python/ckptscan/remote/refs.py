"""What a checkpoint found at a URL carries into the pipeline: `RemoteRef`
(where to read it, and what its listing said), `RemotePath` (the URL where the
checks use a checkpoint's path) and `RemoteOptions` (how sources read).

A `RemoteRef` pickles without its live source: a worker process (Dask, Ray)
opens its own and adopts the listing, so that it sends no listing request and
reads the same commit and versions the listing saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..sources.base import Entry
from ..sources.retry import RetryPolicy

if TYPE_CHECKING:
    from ..layout import CheckpointSpec
    from ..sources.base import Source, Stats
    from .fetch import Fetched

T = TypeVar("T")


@dataclass(frozen=True)
class RemoteOptions:
    """`max_requests`: requests in flight per source (None: the default);
    `retry`: timeouts and retries."""

    max_requests: int | None = None
    retry: RetryPolicy | None = None


@dataclass(eq=False)
class RemoteRef:
    """Where a remote checkpoint's files are read from.

    `url` opens the source (for the Hub, pinned to the listed commit; it may
    hold a signed query string, so it is never shown or stored); `names` maps
    each file's URL as shown (`FileStat.path`) to its name under the source's
    root; `entries` is what the listing said of them; `listing` the requests
    and bytes the listing cost when it found this checkpoint alone; `endpoint`
    the Hub endpoint the listing came from (a worker elsewhere reads the same
    Hub whatever its HF_ENDPOINT says; its token stays its own).
    """

    url: str
    kind: str
    names: dict[str, str]
    entries: tuple[Entry, ...] = ()
    revision: str | None = None
    options: RemoteOptions = field(default_factory=RemoteOptions)
    listing: dict[str, int] = field(default_factory=dict)
    endpoint: str | None = None
    _live: Source | None = field(default=None, repr=False)
    prefetch: Future[Fetched] | None = field(default=None, repr=False)  # `remote.fetch`

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_live"] = state["prefetch"] = None  # sockets and threads stay here
        return state

    def open(self) -> tuple[Source, bool]:
        """The source to read from, and whether the caller owns it (must close
        it): the one the listing used when it is alive in this process, else a
        fresh one that adopts the listing."""
        if self._live is not None:
            return self._live, False
        from ..sources import open_source

        limit, retry = self.options.max_requests, self.options.retry
        if self.kind == "hf":
            from ..sources.hf import HubSource

            src: Source = HubSource(self.url, endpoint=self.endpoint, max_requests=limit,
                                    retry=retry)
        else:
            src = open_source(self.url, max_requests=limit, retry=retry)
        src.adopt(self.entries, self.revision)
        return src, True

    def fingerprint(self, spec: CheckpointSpec) -> tuple[Any, ...]:
        """What must stay the same for a stored scan to stand: the commit, and
        each listed file's size and version tag."""
        files = [spec.index, spec.config, *spec.shards, *spec.copies]
        return (self.kind, self.revision,
                [(f.name, f.size, f.version) for f in files if f is not None])


def metered(source: Source, cost: Stats | None, fn: Callable[[], T]) -> T:
    """`fn()`, with the requests and bytes it sends on this thread added to `cost`."""
    if cost is None:
        return fn()
    with source.stats.meter() as m:
        try:
            return fn()
        finally:
            cost.add(requests=m.requests, nbytes=m.bytes, retries=m.retries,
                     redirects=m.redirects)


def close_sources(specs: Iterable[CheckpointSpec]) -> None:
    """Closes the live sources the listing of `specs` opened (each once)."""
    seen: set[int] = set()
    for spec in specs:
        ref = spec.remote
        if ref is not None and ref._live is not None and id(ref._live) not in seen:
            seen.add(id(ref._live))
            ref._live.close()


class RemotePath:
    """A checkpoint's URL where the checks use its `Path`: ``/ name``,
    `parent`, `name`, `is_dir()`, ``str()`` and ``os.fspath()`` (so that
    ``os.path.join`` gives the file's URL). Never touches a file system."""

    def __init__(self, url: str, is_dir: bool = True) -> None:
        self.url = url.rstrip("/") if is_dir else url
        self._dir = is_dir

    def __truediv__(self, name: str) -> RemotePath:
        return RemotePath(f"{self.url}/{name}", False)

    @property
    def parent(self) -> RemotePath:
        return RemotePath(self.url.rpartition("/")[0], True)

    @property
    def name(self) -> str:
        return self.url.rpartition("/")[2]

    def is_dir(self) -> bool:
        return self._dir

    def __fspath__(self) -> str:
        return self.url

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)


def join(root: str, name: str) -> str:
    """A file's URL as shown: the checkpoint's URL, ``/``, its name."""
    return f"{root.rstrip('/')}/{name}" if name else root


__all__ = ["RemoteOptions", "RemotePath", "RemoteRef", "close_sources", "join", "metered"]
