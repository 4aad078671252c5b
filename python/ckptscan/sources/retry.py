"""Retries: exponential backoff with jitter, and the waits servers ask for.

A request that fails in a way that may pass (timeout, reset, 5xx, 429) raises
`Retryable`; `with_retries` sleeps and tries again. Transient failures get
`attempts` tries; throttling (429) is retried until `max_wait` seconds have
gone by, sleeping what `Retry-After` or a `RateLimit` header says when there is
one. A server asking for a wait beyond that is given up on at once, and the
error says so.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .base import Stats

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a request is retried, and its timeouts (seconds)."""

    attempts: int = 5          # tries of a transiently failing request
    backoff: float = 0.25      # the first wait; doubled each failure, jittered
    max_backoff: float = 8.0
    max_wait: float = 120.0    # total time a request may spend waiting on 429/503
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # between two bytes of a response, not the whole of it

    def backoff_delay(self, failures: int) -> float:
        """Exponential backoff with "equal jitter": half the step fixed, half
        random, so that many clients failing together spread out but still back off."""
        step = min(self.max_backoff, self.backoff * 2.0 ** max(0, failures - 1))
        return step / 2 + random.uniform(0, step / 2)


class Retryable(Exception):
    """An attempt that failed in a way that may pass. `code` is the SourceError
    code to raise when retries run out; `wait` what the server asked for."""

    def __init__(self, code: str, message: str, *, wait: float | None = None,
                 throttled: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.wait = wait
        self.throttled = throttled


def with_retries(attempt: Callable[[], T], policy: RetryPolicy, url: str, stats: Stats, *,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> T:
    """`attempt()` until it returns, retrying `Retryable` failures per `policy`;
    a `SourceError` naming `url` when they run out."""
    from .base import SourceError

    start = clock()
    failures = 0
    while True:
        try:
            return attempt()
        except Retryable as exc:
            failures += 1
            elapsed = clock() - start
            wait = exc.wait if exc.wait is not None else policy.backoff_delay(failures)
            if exc.throttled or exc.wait is not None:
                if elapsed + wait > policy.max_wait:
                    asked = (f"; the server asked to wait {exc.wait:,.0f} s more"
                             if exc.wait is not None else "")
                    code = "rate-limited" if exc.throttled else exc.code
                    raise SourceError(code, url, (
                        f"{exc.message}: {failures} responses over {elapsed:.1f} s, gave up "
                        f"(waiting is limited to {policy.max_wait:g} s{asked})")) from None
            elif failures >= policy.attempts:
                raise SourceError(exc.code, url,
                                  f"{exc.message} ({failures} attempts)") from None
            stats.add(retries=1)
            sleep(wait)


# ---------------------------------------------------------------- what servers ask for

_PARAM = re.compile(r"""([A-Za-z][\w-]*)\s*=\s*("[^"]*"|[^;,\s]+)""")


def ratelimit(headers: Mapping[str, str]) -> tuple[int | None, float | None]:
    """(remaining, seconds to reset) from the IETF RateLimit headers: the
    structured `RateLimit: "name";r=0;t=30` (several policies: the spent one
    wins), the older `RateLimit: limit=.., remaining=0, reset=30`, or separate
    `RateLimit-Remaining` / `RateLimit-Reset`. (None, None) when absent or unreadable."""
    value = headers.get("RateLimit") or headers.get("ratelimit")
    remaining: int | None = None
    reset: float | None = None
    if value:
        items = [value] if "limit=" in value else value.split(",")
        for item in items:
            params = {k.lower(): v.strip('"') for k, v in _PARAM.findall(item)}
            r = _number(params.get("r", params.get("remaining")))
            t = _number(params.get("t", params.get("reset")))
            if r is None:
                continue
            if remaining is None or r < remaining or (r == remaining and (t or 0) > (reset or 0)):
                remaining, reset = int(r), t
    else:
        r = _number(headers.get("RateLimit-Remaining"))
        remaining = None if r is None else int(r)
        reset = _number(headers.get("RateLimit-Reset"))
    return remaining, reset


def server_wait(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks a client to wait: `Retry-After` (seconds or an
    HTTP date), or the reset of a spent RateLimit window; the longer of the two."""
    waits: list[float] = []
    after = (headers.get("Retry-After") or "").strip()
    if after:
        seconds = _number(after)
        if seconds is None:
            try:
                when = parsedate_to_datetime(after).timestamp()
            except (TypeError, ValueError, IndexError):
                when = None
            if when is not None:
                seconds = when - (time.time() if now is None else now)
        if seconds is not None:
            waits.append(max(0.0, seconds))
    remaining, reset = ratelimit(headers)
    if remaining == 0 and reset is not None:
        waits.append(max(0.0, reset))
    return max(waits) if waits else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value < float("inf") else None  # NaN fails both
