"""One grouping and de-duplication policy for every finding of a scan.

Checks, the parser's problems and the data checks of ``--deep`` all hand their
findings to a `FindingSet`; `finish()` applies, in this order:

1. **Root causes**: a finding that follows from a file-level problem (a missing,
   truncated, unreadable or rejected shard) is attached to that problem's
   finding instead of standing as its own: either the check names the cause
   (`cause=`), or the finding is about an absent tensor (`absent=`) that the
   broken file held (`lost`).
2. **One defect, one finding**: several checks may notice the same absent
   tensor (a dropped scale is a missing scale, an index entry in no shard and a
   hole in the layer/expert grid); the most specific code keeps it
   (`ABSENCE_PRECEDENCE`).
3. **Collapse**: beyond `COLLAPSE_AFTER` findings of one code and one name
   template (``model.layers.{}.mlp.experts.{}.w1.weight``), one line with the count
   and examples; a dropped pattern does not print 48k lines.
4. **Caps**: beyond `MAX_LINES_PER_CODE` lines of one code, the rest are counted
   in one line (a hostile file cannot make a report of a million lines).
5. **Order**: root causes first (where the trouble starts), then by severity,
   subject and code.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from . import codes
from .findings import Finding

if TYPE_CHECKING:
    from .frame import Frame

COLLAPSE_AFTER = 5
MAX_LINES_PER_CODE = 25
EXAMPLES = 5

# Codes that report an absent tensor, most specific first.
ABSENCE_PRECEDENCE: tuple[str, ...] = (
    "fp8-scale-missing", "tensor-missing-in-grid", "index-tensor-absent", "scale-orphan",
)


@dataclass
class _Entry:
    code: str
    group: str | None        # name template (collapse key), None: never collapsed
    make: Callable[[], Finding]
    absent: str | None = None
    cause: str | None = None
    tensor: str | None = None
    order: int = 0


@dataclass
class _Cause:
    finding: Finding
    explained: dict[str, list[_Entry]] = field(default_factory=lambda: defaultdict(list))


class FindingSet:
    """Collects the findings of one scan. `lost`: absent tensor name -> the key
    (file path) of the root cause that took it along."""

    def __init__(self, frame: Frame | None = None, lost: Mapping[str, str] | None = None) -> None:
        self.frame = frame
        self.lost = dict(lost or {})
        self._causes: dict[str, _Cause] = {}
        self._entries: list[_Entry] = []

    # ---- adding -------------------------------------------------------------
    def root(self, key: str, f: Finding) -> None:
        """A root cause, keyed (usually by its file's path). One per key: a later
        finding for the same key is explained by the first."""
        if key in self._causes:
            self._causes[key].explained[f.code].append(_Entry(f.code, None, lambda: f))
            return
        self._causes[key] = _Cause(f)

    def add(self, f: Finding, *, group: str | None = None, absent: str | None = None,
            cause: str | None = None) -> None:
        self._entries.append(_Entry(f.code, group, lambda: f, absent, cause, f.tensor,
                                    len(self._entries)))

    def rows(self, code: str, rows: Iterable[int] | np.ndarray, message: Callable[[int], str],
             *, absent: Callable[[int], str] | None = None, **detail: Any) -> None:
        """Findings for frame rows (grouped by their name template); `message(row)`
        and the tensor name are only computed for the lines that are shown."""
        frame = self.frame
        assert frame is not None
        for r in np.asarray(rows, dtype=np.int64).tolist():
            def make(r: int = r) -> Finding:
                return codes.finding(code, message(r), frame.file(r), frame.name(r), **detail)

            self._entries.append(_Entry(
                code, frame.templates[int(frame.template[r])], make,
                absent(r) if absent is not None else None, None, None, len(self._entries)))

    def missing(self, code: str, name: str, template: str, message: str, file: str | None,
                tensor: str | None = None, **detail: Any) -> None:
        """A finding about a tensor `name` that should exist and does not (the
        finding names `tensor`, by default the absent one)."""
        self.add(codes.finding(code, message, file, tensor or name, **detail), group=template,
                 absent=name)

    @property
    def cause_keys(self) -> set[str]:
        return set(self._causes)

    def root_causes(self) -> dict[str, Finding]:
        """The root causes added so far, by key (what they explain not attached)."""
        return {k: c.finding for k, c in self._causes.items()}

    # ---- the policy ---------------------------------------------------------
    def finish(self) -> list[Finding]:
        kept = self._attach(self._dedupe(self._entries))
        lines = _cap(_collapse(kept))
        causes = sorted((self._explained(c) for c in self._causes.values()),
                        key=lambda f: (-f.severity, f.file or ""))
        return _cap(causes) + sort_findings(lines)

    def _dedupe(self, entries: list[_Entry]) -> list[_Entry]:
        rank = {c: i for i, c in enumerate(ABSENCE_PRECEDENCE)}
        owner: dict[str, _Entry] = {}
        for e in entries:
            if e.absent is None:
                continue
            best = owner.get(e.absent)
            if best is None or rank.get(e.code, len(rank)) < rank.get(best.code, len(rank)):
                owner[e.absent] = e
        return [e for e in entries if e.absent is None or owner[e.absent] is e]

    def _attach(self, entries: list[_Entry]) -> list[_Entry]:
        out = []
        for e in entries:
            key = e.cause if e.cause in self._causes else self.lost.get(e.absent or "")
            if key is not None and key in self._causes:
                self._causes[key].explained[e.code].append(e)
            else:
                out.append(e)
        return out

    def _explained(self, cause: _Cause) -> Finding:
        if not cause.explained:
            return cause.finding
        summary = []
        for entries in cause.explained.values():
            first = entries[0].make()
            n = sum(x.make().count if x.group is None else 1 for x in entries)
            examples = [t for x in entries[:EXAMPLES] if (t := x.tensor or x.absent)]
            summary.append(replace(first, detail={
                **first.detail, "count": n, **({"examples": examples} if examples else {})}))
        return replace(cause.finding, explains=tuple(summary))


def _collapse(entries: list[_Entry]) -> list[Finding]:
    groups: dict[tuple[str, str | None, int], list[_Entry]] = defaultdict(list)
    for e in entries:
        # Entries without a template never merge: key them apart.
        groups[(e.code, e.group, -1 if e.group is not None else e.order)].append(e)
    out: list[Finding] = []
    for (_, template, _), items in groups.items():
        if len(items) <= COLLAPSE_AFTER:
            out += [e.make() for e in items]
            continue
        first = items[0].make()
        examples = [f.tensor for e in items[:COLLAPSE_AFTER] if (f := e.make()).tensor]
        out.append(replace(first, message=f"{len(items)} tensors like {template}: "
                                          f"{first.message}",
                           detail={**first.detail, "count": len(items), "template": template,
                                   "examples": examples}))
    return out


def _cap(lines: list[Finding]) -> list[Finding]:
    by_code: dict[str, list[Finding]] = defaultdict(list)
    for f in lines:
        by_code[f.code].append(f)
    out: list[Finding] = []
    for code, items in by_code.items():
        if len(items) <= MAX_LINES_PER_CODE:
            out += items
            continue
        out += items[:MAX_LINES_PER_CODE]
        rest = items[MAX_LINES_PER_CODE:]
        total = sum(f.count for f in rest)
        out.append(codes.finding(code, f"... and {len(rest):,} more {code} findings "
                                       f"({total:,} occurrences) not listed",
                                 None, None, count=total, lines=len(rest)))
    return out


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """By severity (worst first), then subject (report order), code, file, tensor."""
    def key(f: Finding) -> tuple[Any, ...]:
        c = codes.CODES.get(f.code)
        subject = codes.SUBJECTS.index(c.subject) if c is not None else len(codes.SUBJECTS)
        return (-f.severity, subject, f.code, f.file or "", f.tensor or "")

    return sorted(findings, key=key)
