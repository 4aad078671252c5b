"""Checkpoint farms: discovery, parallel scanning, incremental rescans.

    result = scan_farm(["/models", "~/.cache/huggingface/hub"], db="farm.db")

1. `discover(roots)` (`ckptscan.layout`) walks the roots (stat only: nothing is
   opened) and finds every checkpoint, in every layout `ckptscan report` knows.
2. A checkpoint whose fingerprint (every file's size, mtime, ctime, inode)
   equals the one stored is not opened at all: rescanning an unchanged farm
   reads no file.
3. The others are scanned in parallel by `scan_group` — the one pipeline
   `ckptscan report` runs, so both give the same findings. Checkpoints sharing
   a file (HF revisions sharing blobs) form one group, so a shared blob is
   read once. Threads (default), worker processes or a Dask cluster
   (`ckptscan.farm.engines`).
4. The caller's thread writes each result in one transaction (`store.Store`).

Roots that do not exist are a usage error; a root that is empty or could not
be listed (an unmounted mount point) never loses its stored checkpoints unless
`prune=True`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import CkptScanError
from ..layout import CheckpointSpec, Note, discover, is_url
from ..render.console import printable

if TYPE_CHECKING:
    from ..pipeline import Outcome
    from ..remote import RemoteOptions
    from ..result import Report

__all__ = ["FarmProgress", "FarmResult", "discover", "scan_farm", "scan_group"]


@dataclass
class FarmProgress:
    checkpoints_done: int
    checkpoints_total: int
    shards_done: int
    shards_total: int
    unchanged: int
    bytes_done: int = 0
    bytes_total: int = 0


@dataclass
class FarmResult:
    """What `scan_farm` did. `rows` are the store's summary rows (dicts, see
    `store.SUMMARY_COLUMNS`) of every checkpoint found, by path; `report(path)`
    gives a checkpoint's full `Report` from the store."""

    db: str
    roots: list[str]
    rows: list[dict[str, Any]]
    scanned: list[str]
    unchanged: list[str]
    failed: list[str]
    removed: list[str]
    notes: list[Note]
    shards_opened: int
    seconds: float

    def report(self, path: str) -> Report | None:
        from .store import Store

        with Store(self.db, create=False) as store:
            return store.load_report(path)  # type: ignore[no-any-return]


def scan_group(*args: Any, **kwargs: Any) -> list[Outcome]:
    """See `ckptscan.farm.engines.scan_group` (imported on first use)."""
    from .engines import scan_group as run

    return run(*args, **kwargs)


def _groups(specs: Sequence[CheckpointSpec]) -> list[list[CheckpointSpec]]:
    """Checkpoints that share a file (by device and inode) go together."""
    parent = list(range(len(specs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[int, int], int] = {}
    for i, spec in enumerate(specs):
        for fs in spec.shards:
            if fs.kind == "file" and fs.inode is not None and fs.dev is not None:
                j = owner.setdefault((fs.dev, fs.inode), i)
                if j != i:
                    parent[find(i)] = find(j)
    groups: dict[int, list[CheckpointSpec]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(find(i), []).append(spec)
    return list(groups.values())


def _as_roots(roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    if isinstance(roots, (str, bytes, os.PathLike)):
        return [os.fsdecode(roots)]
    return [os.fsdecode(r) for r in roots]


def scan_farm(roots: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
              db: str | os.PathLike[str] | None = None, jobs: int | None = None,
              deep: bool = False, *, io_jobs: int = 16, dask: Any = None,
              processes: bool = False, rescan: bool = False, prune: bool = False,
              follow_symlinks: bool = False,
              progress: Callable[[FarmProgress], None] | None = None, ray: Any = None,
              remote: RemoteOptions | None = None) -> FarmResult:
    """Finds every checkpoint under `roots` (one path, or several), scans the new
    and changed ones in parallel and records them in the store `db` (default
    ``~/.cache/ckptscan/farm.db``; ``":memory:"`` keeps nothing).

    `jobs`: checkpoints scanned at once (default: one per core, one at a time with
    `deep`; with `dask`, the cluster's threads). `io_jobs`: header reads in flight
    per checkpoint. `dask`: a scheduler address or a `distributed.Client`; its
    workers must see the same paths. `processes`: worker processes instead of
    threads. `rescan`: ignore fingerprints. `prune`: also forget checkpoints
    under roots that are empty or unreadable now. `ray`: a Ray address
    (``"auto"``, ``"ray://..."``) or True for the Ray instance this process has
    started; `remote` (its `max_requests` a budget all Ray workers share) says how
    URL roots are read.

    URL roots (``s3://``, ``gs://``, ``az://`` prefixes, ``hf://ORG``, one
    checkpoint's URL) are listed; a remote checkpoint is stored under its URL,
    and is not read again while its listing shows the same versions (ETags,
    LFS hashes, the Hub commit): a rescan of an unchanged remote farm sends only
    listing requests.

    Raises `CkptScanError` when a root does not exist. Ctrl-C (KeyboardInterrupt)
    stops the scans in progress (a deep scan within a tensor), keeps every
    checkpoint written so far, and re-raises; the next call resumes.
    """
    from .. import __version__
    from .store import CheckpointRecord, Store

    t0 = time.perf_counter()
    root_list = _as_roots(roots)
    for r in root_list:
        if not is_url(r) and not os.path.lexists(os.path.expanduser(r)):
            raise CkptScanError(f"{r}: no such file or directory (nothing scanned, nothing "
                                "removed from the store)")
    if deep:
        from ..deep import check_environment

        check_environment()
    found = discover(root_list, follow_symlinks=follow_symlinks, remote=remote)
    specs = found.checkpoints
    store = Store(db)
    try:
        known = store.known()  # keyed by printable paths (see Store.put)
        fps = {s.path: s.fingerprint() for s in specs}
        todo, unchanged = [], []
        for spec in specs:
            k = known.get(printable(spec.path))
            if (not rescan and k is not None and k[0] == fps[spec.path] and (k[1] or not deep)
                    and k[2] == __version__):
                unchanged.append(spec.path)
            else:
                todo.append(spec)
        by_path = {s.path: s for s in todo}
        size = {s.path: sum(fs.size or 0 for fs in s.shards) for s in todo}
        status = FarmProgress(0, len(specs), 0, sum(len(s.shards) for s in todo),
                              len(unchanged), 0, sum(size.values()))
        report_progress = _progress_reporter(status, progress)
        if progress is not None:
            progress(status)
        scanned: list[str] = []
        failed: list[str] = []
        opened = 0

        def _store_all(outcomes: list[Outcome]) -> None:
            nonlocal opened
            for o in outcomes:
                spec = by_path[o.path]
                store.put(CheckpointRecord(
                    o.path, spec.kind, o.report, "" if o.failed else fps[o.path], o.shards,
                    spec.repo, spec.revision, deep, o.seconds, __version__))
                (failed if o.failed else scanned).append(o.path)
                opened += o.opened
                status.checkpoints_done += 1
                status.shards_done += len(spec.shards)
                status.bytes_done = min(status.bytes_total, status.bytes_done + size[o.path])
            if progress is not None:
                progress(status)

        runs = _run(_groups(todo), jobs, deep, io_jobs, dask, processes, report_progress, ray,
                    remote)
        try:
            for outcomes in runs:
                _store_all(outcomes)
        finally:
            runs.close()  # on Ctrl-C: stop the scans in progress now, not at exit
        keep = [printable(s.path) for s in specs]
        protect = [printable(p) for p in found.unlisted]
        if not prune:
            protect += [printable(r) for r in found.roots
                        if not any(_under(s.path, r) for s in specs)]
        removed = store.prune([printable(r) for r in found.roots], keep, protect=protect)
        rows = store.query(paths=keep)
    finally:
        store.close()
        if any(s.remote is not None for s in specs):
            from ..remote import close_sources

            close_sources(specs)
    return FarmResult(store.path, found.roots, rows, sorted(scanned), unchanged, sorted(failed),
                      removed, found.notes, opened, time.perf_counter() - t0)


def _under(path: str, root: str) -> bool:
    root = root.rstrip(os.sep) or os.sep
    return path == root or path.startswith(root + os.sep)


def _progress_reporter(status: FarmProgress, progress: Callable[[FarmProgress], None] | None
                       ) -> Callable[[Any], None] | None:
    """Deep-scan progress inside a checkpoint moves the farm's bytes count (threads
    only: processes and Dask report per checkpoint)."""
    if progress is None:
        return None
    lock = threading.Lock()
    last: dict[int, int] = {}

    def on_deep(p: Any) -> None:
        with lock:
            tid = threading.get_ident()
            status.bytes_done += max(0, p.bytes_done - last.get(tid, 0))
            last[tid] = 0 if p.bytes_done >= p.bytes_total else p.bytes_done
            status.bytes_done = min(status.bytes_done, status.bytes_total)
        progress(status)

    return on_deep


def _run(groups: list[list[CheckpointSpec]], jobs: int | None, deep: bool, io_jobs: int,
         dask: Any, processes: bool, progress: Callable[[Any], None] | None, ray: Any = None,
         remote: RemoteOptions | None = None) -> Generator[list[Outcome], None, None]:
    """Outcomes over `groups` on threads, processes, Dask or Ray, as they complete."""
    from . import engines

    if not groups:
        return
    if ray is not None and ray is not False:
        from ..remote.ray import run_ray

        yield from run_ray(groups, ray, deep, io_jobs, remote)
        return
    if dask is not None:
        yield from engines.run_dask(groups, dask, deep, io_jobs)
        return
    cores = os.cpu_count() or 1
    workers = max(1, min(jobs or (1 if deep else cores), len(groups)))
    deep_jobs = max(1, cores // workers)
    cancel = threading.Event()
    with _deferred_sigint():
        if processes:
            yield from engines.run_processes(groups, workers, deep, io_jobs, deep_jobs, cancel)
        else:
            yield from engines.run_threads(groups, workers, deep, io_jobs, deep_jobs, cancel,
                                           progress)


@contextlib.contextmanager
def _deferred_sigint() -> Iterator[None]:
    """The first Ctrl-C interrupts (KeyboardInterrupt); while the scans in progress
    stop, further Ctrl-Cs are swallowed: the process always exits in order."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    interrupted = False

    def on_sigint(signum: int, frame: Any) -> None:
        nonlocal interrupted
        if interrupted:
            return  # already stopping
        interrupted = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)

