"""Markdown (a CI summary, an issue): every string taken from a file is a
`cell` — control characters escaped and Markdown/HTML markup neutralised."""

from __future__ import annotations

import re

from ..findings import Severity
from ..result import Report
from .console import safe
from .text import human_bytes

_MARKUP = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def cell(text: str) -> str:
    """Text from a file, safe inside a Markdown table cell or a paragraph."""
    return _MARKUP.sub(r"\\\1", safe(text))


def code(text: str) -> str:
    """Text from a file as inline code (backticks inside cannot close it)."""
    t = safe(text).replace("|", "\\|")
    fence = "``" if "`" in t else "`"
    return f"{fence} {t} {fence}" if fence == "``" else f"`{t}`"


def to_markdown(report: Report | list[Report]) -> str:
    reports = report if isinstance(report, list) else [report]
    return "\n".join(_one(r) for r in reports)


def _one(r: Report) -> str:
    src = r.source
    origin = f"{src.kind}, {src.format}"
    if src.repo:
        origin += f", repo {code(src.repo)}" + (f" @ {code(src.revision)}" if src.revision
                                                else "")
    if src.component:
        origin += f", component {code(src.component)}"
    if src.requests is not None:  # remote: what reading it cost
        origin += f", {src.requests:,} requests, {src.bytes or 0:,} bytes read"
    out = [f"# ckptscan report: {code(r.checkpoint)}", "",
           f"- {origin}",
           f"- model_type: {code(r.model_type or '-')} (taxonomy `{r.family}`)",
           f"- shards: {len(r.shards.found)} found, {len(r.shards.referenced)} referenced, "
           f"{len(r.shards.missing)} missing, {len(r.shards.rejected)} unreadable",
           f"- {r.total.tensors:,} tensors, {r.total.parameters:,} parameters, "
           f"{human_bytes(r.total.bytes)}",
           f"- findings: {r.count(Severity.ERROR)} errors, {r.count(Severity.WARNING)} warnings, "
           f"{r.count(Severity.INFO)} info",
           "- tensor values read (--deep)" if r.values_read else
           "- tensor values not read (header-only scan; --deep reads them)", "",
           "## Data types", "", "| dtype | tensors | parameters | bytes |", "|---|---:|---:|---:|"]
    for name, c in sorted(r.dtypes.items(), key=lambda kv: -kv[1].bytes):
        out.append(f"| {name} | {c.tensors:,} | {c.parameters:,} | {human_bytes(c.bytes)} |")
    q = r.quantization
    out += ["", "## Quantization", "",
            f"- method {code(str(q.method))}, format {code(str(q.format))}, block size "
            f"`{q.block_size}`",
            *(f"- {code(str(x['name']))}: {x['weight_format']} weights, "
              f"{x['scale_format'] or 'no'} scales ({x['granularity']}), "
              f"{x['bits_per_weight']} bits per weight, {x['parameters']:,} parameters"
              for x in q.schemes),
            f"- {q.fp8_tensors:,} FP8 tensors, {q.scale_tensors:,} scale tensors, "
            f"{human_bytes(q.overhead_bytes)} of quantization overhead",
            f"- quantized roles: {', '.join(q.quantized_roles) or '-'}",
            f"- not quantized roles: {', '.join(q.unquantized_roles) or '-'}",
            "", "## Roles", "", "| role | tensors | parameters | bytes | dtypes |",
            "|---|---:|---:|---:|---|"]
    for role, s in r.roles.items():
        mix = ", ".join(f"{d} x{n:,}" for d, n in s.dtypes.items())
        out.append(f"| {role} | {s.tensors:,} | {s.parameters:,} | {human_bytes(s.bytes)} "
                   f"| {mix} |")
    out += ["", "## Layer-wise precision", ""]
    for role, rows in r.examples.items():
        out += [f"### {role}", "", "| tensor | dtype | shape |", "|---|---|---|"]
        out += [f"| {code(x.name)} | {x.dtype} | {list(x.shape)} |" for x in rows]
        out.append("")
    out += ["## Findings", ""]
    if r.findings:
        out += ["| severity | code | message | tensor | file |", "|---|---|---|---|---|"]
        for f in r.findings:
            msg = cell(f.message)
            if f.explains:
                msg += "<br>" + "<br>".join(
                    f"explains {x.count:,} x `{x.code}`, e.g. {cell(x.message)}"
                    for x in f.explains)
            out.append(f"| {f.severity} | `{f.code}` | {msg} | "
                       f"{code(f.tensor) if f.tensor else ''} | "
                       f"{cell(r.relative(f.file) or '')} |")
    else:
        out.append("No findings.")
    return "\n".join(out) + "\n"
