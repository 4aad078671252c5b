"""Plain paths behind the same seam (the pipeline maps local shards with the
C++ core; this source makes the seam complete, and is what a remote read is
compared against)."""

from __future__ import annotations

import builtins
import os
import stat
from pathlib import Path

from .base import Entry, Source, SourceError
from .retry import RetryPolicy


class LocalSource(Source):
    """A directory (or one file, listed as its only entry). A "request" is one
    pread; the version tag is the file's mtime and size."""

    kind = "local"

    def __init__(self, path: str | os.PathLike[str], *, max_requests: int | None = None,
                 retry: RetryPolicy | None = None) -> None:
        p = Path(os.fspath(path).removeprefix("file://")).absolute()
        self.single: str | None = None
        if p.is_file():
            self.single, p = p.name, p.parent
        elif not p.is_dir():
            raise SourceError("not-found", str(p), "no such file or directory")
        self.root = p
        super().__init__(str(p), max_requests=max_requests, retry=retry)

    def url_of(self, name: str) -> str:
        return str(self.root / name)

    def list(self, recursive: bool = True) -> list[Entry]:
        if self.single is not None:
            return [self.entry(self.single)]
        found: builtins.list[Entry] = []
        stack = [""]
        while stack:
            rel = stack.pop()
            try:
                with os.scandir(self.root / rel) as it:
                    for e in it:
                        name = f"{rel}{e.name}"
                        if e.is_dir():
                            if recursive:
                                stack.append(f"{name}/")
                        elif e.is_file():
                            found.append(_entry(name, e.stat()))
            except OSError as exc:
                raise SourceError("not-found" if isinstance(exc, FileNotFoundError)
                                  else "forbidden", str(self.root / rel),
                                  exc.strerror or str(exc)) from None
        found.sort(key=lambda e: e.name)
        self._remember(*found)
        return found

    def _stat(self, name: str) -> Entry:
        try:
            st = os.stat(self.root / name)
        except OSError as exc:
            raise _error(exc, self.url_of(name)) from None
        return _entry(name, st)

    def _read(self, name: str, start: int, end: int, *, head: bool) -> tuple[memoryview, int]:
        path = self.root / name
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as exc:
            raise _error(exc, str(path)) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):  # a FIFO would block the read
                raise SourceError("invalid", str(path), "not a regular file")
            self._check(name, st)
            want = max(0, min(end, st.st_size) - start)
            buf = bytearray(want)
            got = 0
            with self.slots.slot():
                while got < want:
                    n = os.preadv(fd, [memoryview(buf)[got:]], start + got)
                    if n == 0:
                        break
                    got += n
            self.stats.add(requests=1, nbytes=got)
        except SourceError:
            raise
        except OSError as exc:
            raise _error(exc, str(path)) from None
        finally:
            os.close(fd)
        if got < end - start and not head:
            raise SourceError("truncated", str(path), f"the file is {st.st_size:,} bytes; "
                              f"bytes {start:,}-{end - 1:,} asked")
        return memoryview(buf)[:got], st.st_size

    def _check(self, name: str, st: os.stat_result) -> None:
        known = self._known(name)
        now = _entry(name, st)
        if known is None:
            self._remember(now)
        elif known.version != now.version:
            raise SourceError("changed", self.url_of(name), f"modified since listed "
                              f"({known.version} -> {now.version})")


def _entry(name: str, st: os.stat_result) -> Entry:
    return Entry(name, st.st_size, f"{st.st_mtime_ns}-{st.st_size}")


def _error(exc: OSError, where: str) -> SourceError:
    code = {FileNotFoundError: "not-found", PermissionError: "forbidden"}.get(
        type(exc), "io-error")
    return SourceError(code, where, exc.strerror or str(exc))
