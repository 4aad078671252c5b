"""Findings as GitHub Actions workflow commands (``--format github``): one
``::error`` / ``::warning`` / ``::notice`` line per finding, which GitHub shows
as an annotation on the file (when the file lies in the repository).

Escaping follows the runner's rules: in the message ``%``, CR and LF become
``%25``, ``%0D``, ``%0A``; in property values (``file=``, ``title=``) ``:`` and
``,`` also become ``%3A`` and ``%2C``. Control characters from files are escaped
first (`safe`), so a name cannot inject a command of its own.
"""

from __future__ import annotations

import os

from ..findings import Finding, Severity
from ..result import Report
from .console import safe

LEVEL = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "notice"}


def escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def _file(path: str | None) -> str | None:
    """The path as GitHub matches it: relative to the workspace when under it."""
    if path is None:
        return None
    base = os.environ.get("GITHUB_WORKSPACE") or os.getcwd()
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive (Windows)
        return path
    return path if rel.startswith("..") else rel


def annotation(r: Report, f: Finding) -> str:
    props = []
    file = _file(f.file or r.checkpoint)
    if file:
        props.append(f"file={escape_property(safe(file))}")
    props.append(f"title={escape_property(f'ckptscan {f.code}')}")
    lines = [safe(f.message)]
    if f.tensor:
        lines.append(f"tensor: {safe(f.tensor)}")
    if f.file is None:
        lines.append(f"checkpoint: {safe(r.checkpoint)}")
    for x in f.explains:
        many = f"{x.count:,} x " if x.count > 1 else ""
        lines.append(f"explains {many}{x.code}: {safe(x.message)}")
    return f"::{LEVEL[f.severity]} {','.join(props)}::{escape_data(chr(10).join(lines))}"


def to_github(report: Report | list[Report]) -> str:
    reports = report if isinstance(report, list) else [report]
    return "".join(annotation(r, f) + "\n" for r in reports for f in r.findings)
