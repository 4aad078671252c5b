"""The farm's terminal output: rows as a table, JSON, JSON Lines or CSV; the
progress line; the summary after a run."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ..render.console import safe

if TYPE_CHECKING:
    from . import FarmProgress, FarmResult


class FarmProgressBar:
    """One line on stderr (the CLI shows it only on a terminal), drawn by the
    console's `ProgressLine`: callable from several threads, redrawn at most
    ten times a second, and on completion."""

    def __init__(self, stream: Any) -> None:
        from ..render.console import ProgressLine

        self.line = ProgressLine(stream, "farm")

    def __call__(self, p: FarmProgress) -> None:
        from ..render.text import human_bytes

        todo = p.checkpoints_total - p.unchanged
        self.line.update(p.bytes_done, p.bytes_total,
                         f"{p.checkpoints_done:,}/{todo:,} checkpoints, {p.shards_done:,}/"
                         f"{p.shards_total:,} shards, {human_bytes(p.bytes_done)}/"
                         f"{human_bytes(p.bytes_total)} ({p.unchanged:,} unchanged)",
                         final=p.checkpoints_done >= todo)


_TABLE = (("path", "PATH"), ("model_type", "MODEL"), ("shards", "SHARDS"),
          ("tensors", "TENSORS"), ("parameters", "PARAMS"), ("bytes", "SIZE"),
          ("dtypes", "DTYPES (by parameters)"), ("quant", "QUANT"), ("errors", "ERR"),
          ("warnings", "WARN"))
_FINDINGS_TABLE = (("severity", "SEVERITY"), ("code", "CODE"), ("checkpoint", "CHECKPOINT"),
                   ("where", "FILE / TENSOR"), ("message", "MESSAGE"))
_RIGHT = {"shards", "tensors", "parameters", "bytes", "errors", "warnings"}


def dtype_mix(dtypes_json: str, top: int = 3) -> str:
    """'F8_E4M3 99.4%, BF16 0.6%' from the stored dtype counts (share of parameters)."""
    import orjson

    d = orjson.loads(dtypes_json) if dtypes_json else {}
    total = sum(v["parameters"] for v in d.values())
    if not total:
        return "-"
    items = sorted(d.items(), key=lambda kv: -kv[1]["parameters"])
    parts = [f"{k} {100 * v['parameters'] / total:.1f}%" for k, v in items[:top]]
    if len(items) > top:
        parts.append(f"+{len(items) - top}")
    return ", ".join(parts)


def _quant(row: dict[str, Any]) -> str:
    parts = [row.get("quant_method"), row.get("quant_format"), row.get("quant_block")]
    return " ".join(str(p) for p in parts if p) or "-"


def format_rows(rows: list[dict[str, Any]], fmt: str, findings: bool = False,
                color: bool = False) -> str:
    """Store rows (checkpoints or findings) as a table, JSON, JSON Lines or CSV."""
    import orjson

    from .store import SCHEMA_NAME

    if fmt in ("json", "jsonl"):
        objs = [_decoded(r) for r in rows]
        if fmt == "jsonl":
            return "".join(orjson.dumps(o).decode() + "\n" for o in objs)
        key = "findings" if findings else "checkpoints"
        return orjson.dumps({"schema": SCHEMA_NAME, key: objs},
                            option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "csv":
        import csv
        import io

        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        return buf.getvalue()
    return _table(rows, findings, color)


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    import orjson

    out = dict(row)
    for k in ("dtypes", "detail"):
        if isinstance(out.get(k), str):
            out[k] = orjson.loads(out[k])
    if "deep" in out:
        out["deep"] = bool(out["deep"])
    return out


def _table(rows: list[dict[str, Any]], findings: bool, color: bool) -> str:
    from ..render.console import Style
    from ..render.text import human_bytes, human_count

    cols: tuple[tuple[str, str], ...]
    if findings:
        cols = _FINDINGS_TABLE
        cells = [[r["severity"], r["code"], r["checkpoint"],
                  " ".join(x for x in (os.path.basename(r["file"] or ""), r["tensor"] or "") if x),
                  r["message"]] for r in rows]
    else:
        cols = _TABLE
        cells = [[r["path"], r["model_type"] or "-", f"{r['shards']:,}", f"{r['tensors']:,}",
                  human_count(r["parameters"]), human_bytes(r["bytes"]),
                  dtype_mix(r["dtypes"]), _quant(r), str(r["errors"]), str(r["warnings"])]
                 for r in rows]
    if not cells:
        return "(no rows)\n"
    cells = [[safe(c) for c in row] for row in cells]  # strings from files reach a terminal
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, (_, h) in enumerate(cols)]
    widths[-1] = len(cols[-1][1]) if findings else widths[-1]

    def line(values: list[str]) -> str:
        out = []
        for (key, _), v, w in zip(cols, values, widths, strict=True):
            out.append(v.rjust(w) if key in _RIGHT else v.ljust(w))
        return "  ".join(out).rstrip()

    st = Style(color)
    lines = [line([h for _, h in cols])]
    for r, c in zip(rows, cells, strict=True):
        text = line(c)
        bad = r["severity"] == "error" if findings else r["errors"] > 0
        warn = r["severity"] == "warning" if findings else r["warnings"] > 0
        if bad or warn:
            text = st.sev("error" if bad else "warning", text)
        lines.append(text)
    return "\n".join(lines) + "\n"


def summary_lines(result: FarmResult, max_notes: int = 20) -> list[str]:
    """The summary the CLI prints on stderr after the rows."""
    n = len(result.rows)
    bad = sum(1 for r in result.rows if r["errors"])
    warn = sum(1 for r in result.rows if r["warnings"] and not r["errors"])
    out = [f"{n:,} checkpoints: {len(result.scanned):,} scanned, {len(result.unchanged):,} "
           f"unchanged ({result.shards_opened:,} shards opened) in {result.seconds:.2f} s; "
           f"{bad:,} with errors, {warn:,} with warnings only; store: {safe(result.db)}"]
    if result.failed:
        out.append(f"{len(result.failed):,} checkpoints could not be scanned (see their "
                   "findings); they will be tried again next time")
    if result.removed:
        out.append(f"{len(result.removed):,} checkpoints gone from disk removed from the store")
    for note in result.notes[:max_notes]:
        out.append(f"note: {safe(str(note))}")
    if len(result.notes) > max_notes:
        out.append(f"note: ... and {len(result.notes) - max_notes:,} more")
    return out
