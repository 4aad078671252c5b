"""Findings: what ckptscan has to say about a checkpoint, one stable code each."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.IntEnum):
    """Ordered so that `severity >= Severity.WARNING` reads naturally."""

    INFO = 0
    WARNING = 1
    ERROR = 2

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]


@dataclass(frozen=True)
class Finding:
    """One observation. `code` is stable across releases (like a linter's rule id)."""

    code: str
    severity: Severity
    message: str
    file: str | None = None
    tensor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "severity": str(self.severity),
            "message": self.message,
            "file": self.file,
            "tensor": self.tensor,
        }
        if self.detail:
            out["detail"] = self.detail
        return out
