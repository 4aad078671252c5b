"""Farm scans on a Ray cluster (``ckptscan farm --ray ADDRESS``).

One Ray task per scan group (the same `scan_group` the threads, processes and
Dask run, so the store is the same); results come back as they complete. Every
remote request of every worker first takes a slot of one `RequestBudget`
actor, so that `--max-requests` bounds the whole cluster's requests in flight
(a Hub rate limit or an S3 prefix's throughput is one budget, not one per
worker). Specs travel without live sources: a worker opens its own and adopts
the listing the driver made.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import CkptScanError
from ..sources.base import DEFAULT_MAX_REQUESTS, set_shared_limiter

if TYPE_CHECKING:
    from ..layout import CheckpointSpec
    from ..pipeline import Outcome
    from .refs import RemoteOptions


class RequestBudget:
    """A semaphore in a Ray actor (async: waiting callers do not block it)."""

    def __init__(self, slots: int) -> None:
        self._sem = asyncio.Semaphore(slots)
        self.in_flight = 0
        self.peak = 0

    async def acquire(self) -> None:
        await self._sem.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)

    async def release(self) -> None:
        self.in_flight -= 1
        self._sem.release()

    async def stats(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "peak": self.peak}


class _Limiter:
    """The shared budget as a worker's sources see it (`sources.base.SharedLimiter`)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def acquire(self) -> None:
        import ray

        ray.get(self.actor.acquire.remote())

    def release(self) -> None:
        self.actor.release.remote()  # no need to wait for it


def scan_group_with_budget(group: list[CheckpointSpec], deep: bool, io_jobs: int,
                           budget: Any) -> list[Outcome]:
    """`scan_group` in a Ray worker, its requests within the shared budget."""
    from ..farm.engines import scan_group

    set_shared_limiter(_Limiter(budget))
    try:
        return scan_group(group, deep, io_jobs)
    finally:
        set_shared_limiter(None)


def run_ray(groups: list[list[CheckpointSpec]], address: Any, deep: bool, io_jobs: int,
            remote: RemoteOptions | None = None) -> Iterator[list[Outcome]]:
    """Outcomes of `groups` scanned on Ray, as they complete. `address`: True
    (or None) for the Ray instance this process already started, ``"local"`` to
    start one, else what `ray.init` takes (``"auto"``, ``"ray://host:10001"``)."""
    try:
        import ray
    except ImportError:
        raise CkptScanError("--ray needs Ray: pip install 'ckptscan[ray]'") from None
    own = not ray.is_initialized()
    if own:
        ray.init(address=None if address in (True, None, "local") else address,
                 include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    slots = (remote.max_requests if remote is not None and remote.max_requests
             else DEFAULT_MAX_REQUESTS)
    budget: Any = ray.remote(RequestBudget).options(max_concurrency=10_000).remote(slots)
    task = ray.remote(scan_group_with_budget).options(max_retries=0)
    pending = [task.remote(g, deep, io_jobs, budget) for g in groups]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        ray.kill(budget)
        if own:
            ray.shutdown()


__all__ = ["RequestBudget", "run_ray", "scan_group_with_budget"]
