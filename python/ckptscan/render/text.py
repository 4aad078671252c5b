"""The text report (a terminal, a CI log): what `ckptscan report` prints.

Every string taken from a file (names, paths, messages quoting them) goes
through `safe`: control characters are shown escaped, never sent to a terminal.
"""

from __future__ import annotations

from collections.abc import Iterator

from ..findings import Finding, Severity
from ..result import Count, Report, TensorRow
from .console import safe

RULE = "=" * 100


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(int(n))


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "  -  "


class _Style:
    """ANSI colour for severities, only when asked (a terminal, no NO_COLOR)."""

    CODES = {Severity.ERROR: "31;1", Severity.WARNING: "33", Severity.INFO: "36"}

    def __init__(self, color: bool) -> None:
        self.color = color

    def sev(self, s: Severity, text: str) -> str:
        return f"\x1b[{self.CODES[s]}m{text}\x1b[0m" if self.color else text

    def bold(self, text: str) -> str:
        return f"\x1b[1m{text}\x1b[0m" if self.color else text


def to_text(report: Report | list[Report], color: bool = False) -> str:
    reports = report if isinstance(report, list) else [report]
    return "".join("\n".join(_text_lines(r, _Style(color))) + "\n" for r in reports)


def _dtype_table(dtypes: dict[str, Count], total: Count) -> Iterator[str]:
    yield (f"  {'dtype':<14}{'tensors':>10} {'%':>6} {'parameters':>18} {'%':>6} "
           f"{'bytes':>14} {'%':>6}")
    for name, c in sorted(dtypes.items(), key=lambda kv: -kv[1].bytes):
        yield (f"  {name:<14}{c.tensors:>10,} {_pct(c.tensors, total.tensors)} "
               f"{c.parameters:>18,} {_pct(c.parameters, total.parameters)} "
               f"{human_bytes(c.bytes):>14} {_pct(c.bytes, total.bytes)}")


def _row(r: TensorRow, width: int) -> str:
    return f"    {safe(r.name):<{width}} {r.dtype:<12} {list(r.shape)}"


def _finding_lines(f: Finding, style: _Style) -> Iterator[str]:
    where = f.tensor or f.file or ""
    if f.tensor and f.file:
        where = f"{f.tensor} ({f.file})"
    yield (f"  {style.sev(f.severity, f'{str(f.severity).upper():<7}')} {f.code}: "
           f"{safe(f.message)}")
    if where:
        yield f"          at {safe(where)}"
    for x in f.explains:
        many = f"{x.count:,} x " if x.count > 1 else ""
        eg = ", e.g." if x.count > 1 else ":"
        yield f"          explains {many}{x.code}{eg} {safe(x.message)}"


def _text_lines(r: Report, st: _Style) -> Iterator[str]:
    yield RULE
    yield st.bold(f"ckptscan report: {safe(r.checkpoint)}")
    src = r.source
    where = [src.kind, src.format]
    if src.repo:
        at = f" @ {safe(src.revision)}" if src.revision else ""
        where.append(f"repo {safe(src.repo)}{at}")
    if src.component:
        where.append(f"component {safe(src.component)}")
    if src.requests is not None:  # remote: what reading it cost
        where.append(f"{src.requests:,} requests, {human_bytes(src.bytes or 0)} read")
    yield f"{', '.join(where)}   model_type: {safe(r.model_type or '-')}   taxonomy: {r.family}"
    yield RULE
    yield ""
    yield st.bold(f"Files: {len(r.shards.found)} safetensors shard(s) found"
                  + (f", {len(r.shards.referenced)} referenced by the index"
                     if r.shards.referenced else ""))
    found = r.shards.found
    shown = found if len(found) <= 6 else [*found[:3], f"... {len(found) - 5} more ...",
                                            *found[-2:]]
    for name in shown:
        yield f"  {safe(name)}"
    for name in r.shards.missing:
        yield f"  {st.sev(Severity.ERROR, 'MISSING')} {safe(name)}"
    for name in r.shards.rejected:
        yield f"  {st.sev(Severity.ERROR, 'UNREADABLE')} {safe(name)} (not counted below)"
    for name in r.shards.copies:
        yield f"  COPY {safe(name)} (a second copy of the weights, not counted)"
    yield ""
    t = r.total
    yield st.bold(f"Totals: {t.tensors:,} tensors, {t.parameters:,} parameters "
                  f"({human_count(t.parameters)}), {human_bytes(t.bytes)}")
    yield ""
    yield st.bold("Data types")
    yield from _dtype_table(r.dtypes, t)
    yield ""
    q = r.quantization
    yield st.bold("FP8 quantization")
    if q.is_fp8 or q.method:
        yield (f"  method {q.method or '-'}, format {q.format or '-'}, block size "
               f"{q.block_size or '-'}" + (f", scale_fmt {q.scale_fmt}" if q.scale_fmt else ""))
        yield f"  {q.fp8_tensors:,} FP8 tensors, {q.scale_tensors:,} scale tensors"
        yield f"  quantized roles:     {', '.join(q.quantized_roles) or '-'}"
        yield f"  not quantized roles: {', '.join(q.unquantized_roles) or '-'}"
        if q.modules_to_not_convert is not None:
            yield f"  modules_to_not_convert: {safe(str(q.modules_to_not_convert))}"
    else:
        yield "  no FP8 tensors, no quantization_config"
    yield ""
    yield st.bold("Precision by role")
    yield f"  {'role':<15}{'tensors':>10} {'parameters':>18} {'bytes':>12}  dtypes"
    for role, s in r.roles.items():
        mix = ", ".join(f"{d} x{n:,}" for d, n in sorted(s.dtypes.items(), key=lambda kv: -kv[1]))
        yield f"  {role:<15}{s.tensors:>10,} {s.parameters:>18,} {human_bytes(s.bytes):>12}  {mix}"
    yield ""
    yield st.bold("Layer-wise precision (first layer / first expert of each role)")
    for role, rows in r.examples.items():
        total = r.roles[role].tensors if role in r.roles else len(rows)
        yield f"  {role} ({total:,} tensors):"
        width = max((len(safe(x.name)) for x in rows), default=10)
        for row in rows:
            yield _row(row, width)
    yield ""
    yield st.bold(f"Findings: {r.count(Severity.ERROR)} error(s), "
                  f"{r.count(Severity.WARNING)} warning(s), {r.count(Severity.INFO)} info")
    for f in r.findings:
        yield from _finding_lines(f, st)
    if r.deep is None:
        yield ""
        yield ("Tensor values were not read (header-only scan): --deep reads them "
               "(NaN/Inf, FP8 codes, scales).")
    else:
        d = r.deep
        yield ""
        yield st.bold("Deep scan")
        rate = d.bytes / d.seconds / 1e9 if d.seconds else 0.0
        yield (f"  read {d.tensors:,} tensors, {human_bytes(d.bytes)} in {d.seconds:.2f} s "
               f"({rate:.2f} GB/s, {d.simd} kernels)")
        yield (f"  FP8 NaN codes: {d.fp8_nan_codes:,}; float NaN: {d.float_nan:,}; "
               f"float Inf: {d.float_inf:,}; unreadable tensors: {d.unreadable}")
    yield RULE
