"""Where the scans of a farm run: threads (default), worker processes, or a Dask
cluster. Each runs `scan_group` (the one pipeline over checkpoints that share
files) and yields its outcomes as they complete; the caller's thread writes them.

Ctrl-C: the caller sets `cancel`; thread workers stop their deep scans at the
next tensor and are waited for (well under a second); process workers are
terminated (they hold no store); Dask futures are cancelled.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from typing import Any

from ..layout import CheckpointSpec
from ..pipeline import Outcome, ScanOptions, scan_spec


def scan_group(specs: Sequence[CheckpointSpec], deep: bool = False, io_jobs: int = 16,
               deep_jobs: int | None = None, cancel: threading.Event | None = None,
               progress: Callable[[Any], None] | None = None) -> list[Outcome]:
    """Scans checkpoints that share files (usually just one): each shared file is
    parsed once. Never raises for a checkpoint: a failure becomes its finding."""
    cache: dict[Any, Any] = {}
    options = ScanOptions(deep=deep, jobs=deep_jobs, io_jobs=io_jobs, progress=progress,
                          cancel=cancel)
    return [scan_spec(spec, options, cache) for spec in specs]


def run_threads(groups: list[list[CheckpointSpec]], workers: int, deep: bool, io_jobs: int,
                deep_jobs: int, cancel: threading.Event,
                progress: Callable[[Any], None] | None) -> Iterator[list[Outcome]]:
    from concurrent.futures import ThreadPoolExecutor

    ex = ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-farm")
    yield from _drive(ex, groups, workers, lambda g: ex.submit(
        scan_group, g, deep, io_jobs, deep_jobs, cancel, progress), cancel, lambda: None)


def run_processes(groups: list[list[CheckpointSpec]], workers: int, deep: bool,
                  io_jobs: int, deep_jobs: int,
                  cancel: threading.Event) -> Iterator[list[Outcome]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
        else "spawn"
    ex = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method),
                             initializer=_ignore_sigint)

    def terminate() -> None:
        stop = getattr(ex, "terminate_workers", None)  # Python 3.14
        if stop is not None:
            stop()
            return
        for proc in list(getattr(ex, "_processes", {}).values()):
            proc.terminate()

    yield from _drive(ex, groups, workers, lambda g: ex.submit(
        scan_group, g, deep, io_jobs, deep_jobs), cancel, terminate)


def _drive(ex: Executor, groups: list[list[CheckpointSpec]], workers: int,
           submit: Callable[[list[CheckpointSpec]], Future[list[Outcome]]],
           cancel: threading.Event, terminate: Callable[[], None]) -> Iterator[list[Outcome]]:
    """A bounded number of groups in flight; results as they complete. On any
    exit before the end (Ctrl-C), nothing more starts and running scans stop."""
    pending: set[Future[list[Outcome]]] = set()
    finished = False
    try:
        queue = iter(groups)
        for g in queue:
            pending.add(submit(g))
            if len(pending) >= 2 * workers:
                break
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                nxt = next(queue, None)
                if nxt is not None and not cancel.is_set():
                    pending.add(submit(nxt))
                yield fut.result()
        finished = True
    finally:
        if not finished:
            cancel.set()
            for fut in pending:
                fut.cancel()
            terminate()
        # Thread workers see `cancel` between tensors: waiting is short.
        ex.shutdown(wait=True, cancel_futures=True)


def _ignore_sigint() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_dask(groups: list[list[CheckpointSpec]], dask: Any, deep: bool,
             io_jobs: int) -> Iterator[list[Outcome]]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        from ..errors import CkptScanError

        raise CkptScanError("--dask needs dask.distributed: pip install 'ckptscan[dask]'") from None
    own = not isinstance(dask, Client)
    client = Client(dask, set_as_default=False) if own else dask  # type: ignore[no-untyped-call]
    futures: list[Any] = []
    try:
        futures = [client.submit(scan_group, g, deep, io_jobs, None, pure=False,
                                 key=f"ckptscan-farm-{i}-{os.getpid()}-{time.time_ns()}")
                   for i, g in enumerate(groups)]
        for fut in as_completed(futures, loop=client.loop):  # type: ignore[no-untyped-call]
            result = fut.result()
            fut.release()
            yield result
    finally:
        live = [f for f in futures if f.status == "pending"]
        if live:
            client.cancel(live)
        if own:
            client.close()
