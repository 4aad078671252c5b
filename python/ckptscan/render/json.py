"""JSON: the Report's `to_dict()` (schema ``ckptscan.report/2``) through orjson."""

from __future__ import annotations

from typing import Any

import orjson

from ..result import Report
from .console import printable


def jsonable(value: Any) -> Any:
    """Strings made serialisable (a file name that is not UTF-8 keeps its bytes
    as \\xNN escapes); everything else as it is."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def to_json(report: Report | list[Report]) -> bytes:
    """One report, or several as ``{"schema": "ckptscan.reports/2", "reports": [...]}``."""
    if isinstance(report, list):
        doc: Any = {"schema": "ckptscan.reports/2", "reports": [r.to_dict() for r in report]}
    else:
        doc = report.to_dict()
    return orjson.dumps(jsonable(doc), option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
