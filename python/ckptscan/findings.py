"""Findings: what ckptscan has to say about a checkpoint, one stable code each.

`Finding` is one line of a report. A *root cause* (a missing, truncated or
unreadable file, a rejected header ...) carries in `explains` the findings it
accounts for, so that one defect gives one finding. The codes, their severities
and descriptions live in one registry, `ckptscan.codes`.
"""

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
    def parse(cls, text: str | Severity) -> Severity:
        if isinstance(text, Severity):
            return text
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown severity {text!r} (error, warning or info)") from None


@dataclass(frozen=True)
class Finding:
    """One observation. `code` is stable across releases (like a linter's rule id).

    `detail` holds structured facts (counts, shapes, the template and examples of
    a collapsed group); `explains` the findings a root cause accounts for, each
    summarised per code (their own `detail["count"]` says how many).
    """

    code: str
    severity: Severity
    message: str
    file: str | None = None
    tensor: str | None = None
    detail: dict[str, Any] = field(default_factory=dict, compare=False)
    explains: tuple[Finding, ...] = field(default=(), compare=False)

    @property
    def count(self) -> int:
        """How many occurrences this line stands for (a collapsed group: several)."""
        return int(self.detail.get("count", 1))

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
        if self.explains:
            out["explains"] = [f.to_dict() for f in self.explains]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Finding:
        return cls(d["code"], Severity.parse(d["severity"]), d["message"], d.get("file"),
                   d.get("tensor"), d.get("detail") or {},
                   tuple(cls.from_dict(x) for x in d.get("explains") or ()))
