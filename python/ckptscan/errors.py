"""Exceptions and the structured problems they carry."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file, as the C++ parser (or the checkpoint reader) saw it.

    `code` is one of `ckptscan._core.ERROR_CODES` (or a checkpoint-level code such
    as ``index-invalid``); `offset` is a byte offset in the file, when it applies.
    """

    code: str
    message: str
    path: str
    offset: int | None = None
    tensor: str | None = None

    def __str__(self) -> str:
        where = self.path
        if self.offset is not None:
            where += f" @ byte {self.offset}"
        if self.tensor is not None:
            where += f" [{self.tensor}]"
        return f"{where}: {self.code}: {self.message}"


class CkptScanError(Exception):
    """Base class of every error ckptscan raises on purpose."""


class HeaderError(CkptScanError, ValueError):
    """A shard whose header breaks the safetensors format.

    The first problem gives `.code`, `.offset` and `.tensor`; `.problems` holds the
    ones kept (a few per code), `.suppressed` counts the others.
    """

    def __init__(self, path: str, problems: list[Problem], suppressed: int = 0) -> None:
        self.path = path
        self.problems = problems
        self.suppressed = suppressed  # problems counted beyond those in `problems`
        first = problems[0]
        self.code = first.code
        self.offset = first.offset
        self.tensor = first.tensor
        n = len(problems) - 1 + suppressed
        more = f" (and {n:,} more problems)" if n else ""
        super().__init__(f"{first}{more}")


class ShardIOError(CkptScanError, OSError):
    """The operating system refused to open or read a file (missing, permission ...)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path}: {message}")
