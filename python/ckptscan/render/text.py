"""The text report (a terminal, a CI log): what `ckptscan report` prints.

It fits `width` columns (80 by default: the CLI passes the terminal's): the
checkpoint's full path once at the top, every other path relative to it,
tables sized to their content with long names elided in the middle, messages
wrapped. Every string taken from a file (names, paths, messages quoting them)
goes through `safe`: control characters are shown escaped, never sent to a
terminal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..findings import Finding, Severity
from ..result import Count, Report
from .console import DEFAULT_WIDTH, Style, elide, safe, table, wrap


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
    return f"{100 * part / whole:.1f}%" if whole else "-"


def to_text(report: Report | list[Report], color: bool = False, width: int = DEFAULT_WIDTH,
            quiet: bool = False) -> str:
    """The report(s) within `width` columns; `quiet`: the findings only, one
    line each (nothing when there are none)."""
    reports = report if isinstance(report, list) else [report]
    st = Style(color)
    if quiet:
        return "".join(line + "\n" for r in reports for f in r.findings
                       for line in _quiet_lines(r, f, st))
    return "\n".join("\n".join(_text_lines(r, st, width)) + "\n" for r in reports)


def _dtype_table(dtypes: dict[str, Count], total: Count, width: int) -> Iterator[str]:
    rows = [["dtype", "tensors", "%", "parameters", "%", "bytes", "%"]]
    for name, c in sorted(dtypes.items(), key=lambda kv: -kv[1].bytes):
        rows.append([name, f"{c.tensors:,}", _pct(c.tensors, total.tensors),
                     f"{c.parameters:,}", _pct(c.parameters, total.parameters),
                     human_bytes(c.bytes), _pct(c.bytes, total.bytes)])
    need = 2 + sum(max(len(r[i]) for r in rows) for i in range(7)) + 2 * 6
    if need > width:  # narrow: the shares of tensors and parameters go first
        rows = [[r[0], r[1], r[3], r[5], r[6]] for r in rows]
    yield from table(rows, width, right=frozenset(range(1, len(rows[0]))))


def _heading(text: str, st: Style, width: int) -> Iterator[str]:
    for line in wrap(text, width, "  ", ""):
        yield st.bold(line)


def _role_table(r: Report, width: int) -> Iterator[str]:
    rows = [["role", "tensors", "parameters", "bytes", "dtypes"]]
    for role, s in r.roles.items():
        mix = ", ".join(f"{d} x{n:,}" for d, n in sorted(s.dtypes.items(), key=lambda kv: -kv[1]))
        rows.append([role, f"{s.tensors:,}", human_count(s.parameters), human_bytes(s.bytes),
                     mix])
    # The dtype mix goes on its own line(s) when the row would not fit.
    fixed = [max(len(row[i]) for row in rows) for i in range(4)]
    room = width - 2 - sum(fixed) - 2 * 4
    if all(len(row[4]) <= room for row in rows):
        yield from table(rows, width, right=frozenset({1, 2, 3}), shrink=4)
        return
    for line, row in zip(table([row[:4] for row in rows], width, right=frozenset({1, 2, 3})),
                         rows, strict=True):
        yield line
        if row is not rows[0]:
            yield from wrap(row[4], width, "      ")


def where(r: Report, f: Finding) -> str:
    """Where a finding applies: its tensor and file (relative to the checkpoint)."""
    file = r.relative(f.file)
    if f.tensor and file:
        return f"{f.tensor} ({file})"
    return f.tensor or file or ""


def _finding_lines(r: Report, f: Finding, st: Style, width: int) -> Iterator[str]:
    return finding_lines(f, r.relative, st, width)


def finding_lines(f: Finding, relative: Callable[[str | None], str | None], st: Style,
                  width: int) -> Iterator[str]:
    """One finding as the text report prints it (`relative`: file names relative
    to the checkpoint), and the findings it explains."""
    label = f"{str(f.severity).upper():<7}"
    first = wrap(f"{label} {f.code}: {safe(f.message)}", width, " " * 10, "  ")
    yield first[0].replace(label, st.sev(f.severity, label), 1)
    yield from first[1:]
    # Where a finding is: whole (wrapped if need be), it is what the reader acts on.
    file = relative(f.file)
    if f.tensor:
        yield from wrap(safe(f.tensor), width, " " * 13, "          at ")
    if file:
        yield from wrap(safe(file), width, " " * 13, "          in ")
    for x in f.explains:
        many = f"{x.count:,} x " if x.count > 1 else ""
        eg = ", e.g." if x.count > 1 else ":"
        yield from wrap(f"explains {many}{x.code}{eg} {safe(x.message)}", width, " " * 12,
                        " " * 10)


def _quiet_lines(r: Report, f: Finding, st: Style) -> Iterator[str]:
    """``FILE: severity code: message [tensor]`` on one line, as compilers print
    (not wrapped, for grep; FILE: the file the finding is about, else the
    checkpoint), then one indented line per finding it explains."""
    sev = str(f.severity)
    yield (f"{safe(f.file or r.checkpoint)}: {st.sev(f.severity, sev)} {f.code}: "
           f"{safe(f.message)}" + (f" [{safe(f.tensor)}]" if f.tensor else ""))
    for x in f.explains:
        many = f"{x.count:,} x " if x.count > 1 else ""
        yield f"    explains {many}{x.code}: {safe(x.message)}"


def _files(r: Report, st: Style, width: int) -> Iterator[str]:
    yield from _heading(f"Files: {len(r.shards.found)} safetensors shard(s) found"
                        + (f", {len(r.shards.referenced)} referenced by the index"
                           if r.shards.referenced else ""), st, width)
    found = r.shards.found
    shown = found if len(found) <= 6 else [*found[:3], f"... {len(found) - 5} more ...",
                                            *found[-2:]]
    for name in shown:
        yield "  " + elide(safe(name), width - 2)
    marks = ((r.shards.missing, st.sev(Severity.ERROR, "MISSING"), ""),
             (r.shards.rejected, st.sev(Severity.ERROR, "UNREADABLE"), " (not counted below)"),
             (r.shards.copies, "COPY", " (a second copy of the weights, not counted)"))
    for names, mark, note in marks:
        for name in names:
            yield from wrap(f"{mark} {safe(name)}{note}", width, "    ", "  ")


def _text_lines(r: Report, st: Style, width: int) -> Iterator[str]:
    rule = "=" * width
    yield rule
    name = r.checkpoint.rstrip("/").rsplit("/", 1)[-1] or r.checkpoint
    yield st.bold(elide(f"ckptscan report: {safe(name)}", width))
    yield from wrap(safe(r.checkpoint), width, "  ", "")
    src = r.source
    about = [f"{src.kind}, {src.format}"]
    if src.repo:
        at = f" @ {safe(src.revision)}" if src.revision else ""
        about.append(f"repo {safe(src.repo)}{at}")
    if src.component:
        about.append(f"component {safe(src.component)}")
    if src.requests is not None:  # remote: what reading it cost
        about.append(f"{src.requests:,} requests, {human_bytes(src.bytes or 0)} read")
    about += [f"model_type: {safe(r.model_type or '-')}", f"taxonomy: {r.family}"]
    yield from wrap("   ".join(about), width, "  ", "")
    yield rule
    yield ""
    yield from _files(r, st, width)
    yield ""
    t = r.total
    yield from _heading(f"Totals: {t.tensors:,} tensors, {t.parameters:,} parameters "
                        f"({human_count(t.parameters)}), {human_bytes(t.bytes)}", st, width)
    yield ""
    yield st.bold("Data types")
    yield from _dtype_table(r.dtypes, t, width)
    yield ""
    q = r.quantization
    yield st.bold("Quantization")
    if q.is_fp8 or q.method or q.schemes:
        yield from wrap(f"method {safe(str(q.method or '-'))}, format {q.format or '-'}, block "
                        f"size {q.block_size or '-'}"
                        + (f", scale_fmt {safe(q.scale_fmt)}" if q.scale_fmt else ""), width,
                        "    ", "  ")
        for x in q.schemes:
            yield from wrap(f"{safe(str(x['name']))}: {x['weight_format']} weights, "
                            f"{x['scale_format'] or 'no'} scales ({x['granularity']}), "
                            f"{x['bits_per_weight']} bits per weight, {x['parameters']:,} "
                            f"parameters in {x['tensors']:,} tensors ({', '.join(x['roles'])})",
                            width, "    ", "  ")
        yield from wrap(f"{q.fp8_tensors:,} FP8 tensors, {q.scale_tensors:,} scale tensors, "
                        f"{human_bytes(q.overhead_bytes)} of scales and other overhead", width,
                        "    ", "  ")
        yield from wrap(f"quantized roles:     {', '.join(q.quantized_roles) or '-'}", width,
                        " " * 23, "  ")
        yield from wrap(f"not quantized roles: {', '.join(q.unquantized_roles) or '-'}", width,
                        " " * 23, "  ")
        if q.modules_to_not_convert is not None:
            yield from wrap(f"{safe(q.exclusions_key or 'modules_to_not_convert')}: "
                            f"{safe(str(q.modules_to_not_convert))}", width, "    ", "  ")
        tp = r.deployment.tensor_parallel
        if tp is not None:
            sizes = (f"TP {', '.join(map(str, tp['ok']))} (max {tp['max']})" if tp["ok"]
                     else "no TP size splits every quantized linear on block boundaries")
            yield from wrap(f"tensor parallel: {sizes}" + (
                f"; limited by {safe(tp['limiting'][0])}" if tp["limiting"] else ""),
                width, "    ", "  ")
    else:
        yield "  no quantized weights, no quantization scheme declared"
    yield ""
    yield st.bold("Precision by role")
    yield from _role_table(r, width)
    yield ""
    yield from _heading("Layer-wise precision (first layer / first expert of each role)", st,
                        width)
    for role, rows in r.examples.items():
        total = r.roles[role].tensors if role in r.roles else len(rows)
        yield f"  {role} ({total:,} tensors):"
        yield from table([[safe(x.name), x.dtype, str(list(x.shape))] for x in rows], width,
                         indent="    ")
    yield ""
    yield from _heading(f"Findings: {r.count(Severity.ERROR)} error(s), "
                        f"{r.count(Severity.WARNING)} warning(s), {r.count(Severity.INFO)} info",
                        st, width)
    for f in r.findings:
        yield from _finding_lines(r, f, st, width)
    if r.deep is None:
        yield ""
        yield from wrap("Tensor values were not read (header-only scan): --deep reads them "
                        "(NaN/Inf, FP8 codes, scales).", width, "")
    else:
        d = r.deep
        yield ""
        yield st.bold("Deep scan")
        rate = d.bytes / d.seconds / 1e9 if d.seconds else 0.0
        yield from wrap(f"read {d.tensors:,} tensors, {human_bytes(d.bytes)} in "
                        f"{d.seconds:.2f} s ({rate:.2f} GB/s, {d.simd} kernels)", width, "    ",
                        "  ")
        yield from wrap(f"FP8 NaN codes: {d.fp8_nan_codes:,}; float NaN: {d.float_nan:,}; "
                        f"float Inf: {d.float_inf:,}; unreadable tensors: {d.unreadable}",
                        width, "    ", "  ")
    yield rule
