"""Which findings count: ``--select`` / ``--ignore`` by code or prefix (like a
linter's rule selectors), and a baseline of accepted findings (so that
``--fail-on warning`` can guard a CI job on a checkpoint with known warnings).

A selector is a code (``scale-shape``) or a prefix of codes: ``scale-`` (or
``scale``) selects every ``scale-*`` code. A selector that names no code is an
error (a typo would otherwise select nothing, silently).

Selection applies to the findings of a report as listed: a root cause is kept
or dropped by its own code, and what it explains goes with it.

A baseline holds, per accepted finding, its code, its file relative to the
checkpoint and its tensor (never the message, so that a reworded message still
matches); a collapsed group (``N tensors like model.layers.{}.x``) is held as
its code, name template and count, and accepts the group while it does not
grow, and any single tensor of that template. A baseline file is what
``--write-baseline`` writes (schema ``ckptscan.baseline/1``) or a JSON report
(``--format json``, one report or several).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .findings import Finding
    from .result import Report

SCHEMA = "ckptscan.baseline/1"


def split_codes(values: Iterable[str] | None) -> list[str]:
    """``["a,b", "c"]`` (repeated options, comma lists) -> ``["a", "b", "c"]``."""
    return [v.strip() for value in values or () for v in value.split(",") if v.strip()]


def matches(code: str, selector: str) -> bool:
    return code == selector or code.startswith(selector if selector.endswith("-")
                                               else selector + "-")


def check_selectors(selectors: Sequence[str]) -> None:
    """Raises ValueError for a selector that names no registered code."""
    from .codes import CODES

    for s in selectors:
        if not any(matches(code, s) for code in CODES):
            near = sorted(c for c in CODES if s.strip("-") in c)[:5]
            hint = f" (did you mean {', '.join(near)}?)" if near else " (ckptscan codes lists them)"
            raise ValueError(f"unknown finding code or prefix {s!r}{hint}")


def selected(code: str, select: Sequence[str], ignore: Sequence[str]) -> bool:
    return ((not select or any(matches(code, s) for s in select))
            and not any(matches(code, s) for s in ignore))


@dataclass(frozen=True)
class Accepted:
    """One accepted finding: `template` and `count` for a collapsed group."""

    code: str
    file: str | None
    tensor: str | None
    template: str | None = None
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "file": self.file, "tensor": self.tensor}
        if self.template is not None:
            out |= {"template": self.template, "count": self.count}
        return out


def accepted_of(report: Report, f: Finding) -> Accepted:
    template = f.detail.get("template")
    if isinstance(template, str):
        return Accepted(f.code, None, None, template, f.count)
    return Accepted(f.code, report.relative(f.file), f.tensor)


class Baseline:
    """Findings accepted as they are (see the module's docstring)."""

    def __init__(self, entries: Iterable[Accepted] = (), path: str | None = None) -> None:
        self.entries = list(entries)
        self.path = path
        self._exact = {(a.code, a.file, a.tensor) for a in self.entries if a.template is None}
        self._groups: dict[tuple[str, str], int] = {}
        for a in self.entries:
            if a.template is not None:
                key = (a.code, a.template)
                self._groups[key] = max(self._groups.get(key, 0), a.count)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        where = f" from {self.path!r}" if self.path else ""
        return f"<Baseline {len(self)} accepted findings{where}>"

    @classmethod
    def from_reports(cls, reports: Iterable[Report]) -> Baseline:
        seen: dict[Accepted, None] = {}
        for r in reports:
            for f in r.findings:
                seen.setdefault(accepted_of(r, f))
        return cls(seen)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Baseline:
        """A baseline file or a JSON report; ValueError names what is wrong."""
        import orjson

        from .result import Report

        where = os.fspath(path)
        try:
            with open(where, "rb") as fh:
                doc = orjson.loads(fh.read())
        except OSError as exc:
            raise ValueError(f"baseline {where}: cannot read: {exc.strerror or exc}") from None
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"baseline {where}: not valid JSON: {exc}") from None
        schema = doc.get("schema") if isinstance(doc, dict) else None
        try:
            if schema == SCHEMA:
                return cls((Accepted(e["code"], e.get("file"), e.get("tensor"),
                                     e.get("template"), int(e.get("count", 1)))
                            for e in doc["findings"]), where)
            if isinstance(schema, str) and schema.startswith("ckptscan.reports/"):
                reports = [Report.from_dict(d) for d in doc["reports"]]
            elif isinstance(schema, str) and schema.startswith("ckptscan.report/"):
                reports = [Report.from_dict(doc)]
            else:
                raise ValueError(f"schema {schema!r}")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"baseline {where}: not a ckptscan baseline or JSON report "
                             f"({type(exc).__name__}: {exc})") from None
        base = cls.from_reports(reports)
        base.path = where
        return base

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "findings": [a.to_dict() for a in self.entries]}

    def accepts(self, report: Report, f: Finding) -> bool:
        a = accepted_of(report, f)
        if a.template is not None:
            return self._groups.get((a.code, a.template), -1) >= a.count
        if (a.code, a.file, a.tensor) in self._exact:
            return True
        if a.tensor is not None and self._groups:
            from .taxonomy import template_of

            return (a.code, template_of(a.tensor)[0]) in self._groups
        return False


def filter_findings(report: Report, select: Sequence[str] = (), ignore: Sequence[str] = (),
                    baseline: Baseline | None = None) -> list[Finding]:
    return [f for f in report.findings
            if selected(f.code, select, ignore)
            and not (baseline is not None and baseline.accepts(report, f))]


__all__ = ["Accepted", "Baseline", "check_selectors", "filter_findings", "matches",
           "selected", "split_codes"]
