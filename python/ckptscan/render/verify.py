"""Renderers of a `ckptscan.verify.Verification`: text (within a width), JSON
(schema ``ckptscan.verify/1``), Markdown, and one self-contained HTML page (the
HTML report's page, CSP and escaping; per-role and per-layer error charts as
inline SVG). Tables of tensors are cut at `LIST_MAX` rows in text and Markdown
(the JSON lists every tensor)."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import orjson

from ..findings import Severity
from ..verify import Metrics, Summary, TensorResult, Verification, VerifySide
from .console import DEFAULT_WIDTH, Style, elide, safe, table, wrap
from .json import jsonable
from .markdown import cell, code
from .text import finding_lines, human_bytes

LIST_MAX = 20
HTML_TENSORS_MAX = 2000  # the page's full tensor table (beyond: the worst ones)


def pct(x: float | None) -> str:
    """A relative error as a percentage (x-fold beyond 10)."""
    if x is None or not math.isfinite(x):
        return "inf"
    if x >= 10:
        return f"{x:,.3g}x"
    return f"{100 * x:.2f}%" if x >= 1e-4 else f"{100 * x:.2g}%"


def db(x: float) -> str:
    return "-" if math.isnan(x) else "inf" if math.isinf(x) else f"{x:.1f}"


def cos(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.6f}"


def num(x: float) -> str:
    return "inf" if not math.isfinite(x) else f"{x:.3g}"


def verdict(v: Verification) -> str:
    e, w = v.count(Severity.ERROR), v.count(Severity.WARNING)
    if not v.findings:
        return f"{len(v.tensors):,} quantized weights match their source within their bounds"
    return f"{e} error{'s' * (e != 1)}, {w} warning{'s' * (w != 1)}"


def to_json(v: Verification) -> bytes:
    return orjson.dumps(jsonable(v.to_dict()), option=orjson.OPT_INDENT_2) + b"\n"


def _about(s: VerifySide) -> str:
    scheme = f"{s.scheme} ({', '.join(s.formats)})" if s.scheme else "no quantization scheme"
    about = f"{s.tensors:,} tensors, {human_bytes(s.bytes)}, {scheme}"
    if s.errors or s.warnings:
        about += (f"; its own report (ckptscan report): {s.errors} error"
                  f"{'s' * (s.errors != 1)}, {s.warnings} warning{'s' * (s.warnings != 1)}")
    return about


def _side(label: str, s: VerifySide) -> str:
    return f"{label}: {safe(s.path)} ({_about(s)})"


def _kept(v: Verification) -> str:
    return (f"{v.kept:,} tensor{'s' * (v.kept != 1)} kept in high precision; "
            f"{v.unsupported:,} not dequantizable")


def _overall(m: Metrics) -> str:
    return (f"relative error {pct(m.rel_error)}, SQNR {db(m.sqnr_db)} dB, cosine "
            f"{cos(m.cosine)}, max abs error {num(m.max_err)}, clipped {m.clipped:,} "
            f"({m.clipped_share:.3%})")


def _bounds(v: Verification) -> str:
    return ", ".join(f"{k} {pct(b)}" for k, b in v.thresholds.items()) or "-"


def _summary_rows(first: str, items: Sequence[tuple[str, Summary]]) -> list[list[str]]:
    rows = [[first, "tensors", "rel err", "SQNR dB", "cosine", "max abs", "flagged"]]
    for label, s in items:
        m = s.metrics
        rows.append([label, f"{s.tensors:,}", pct(m.rel_error), db(m.sqnr_db), cos(m.cosine),
                     num(m.max_err), f"{s.flagged:,}"])
    return rows


def _layer_label(layer: int) -> str:
    return "outside layers" if layer < 0 else str(layer)


def worst_tensors(v: Verification, n: int) -> list[TensorResult]:
    return sorted(v.tensors, key=lambda t: (-t.metrics.rel_error, t.name))[:n]


def to_text(v: Verification, color: bool = False, width: int = DEFAULT_WIDTH,
            quiet: bool = False) -> str:
    st = Style(color)
    if quiet:
        return "".join(
            f"{safe(f.file or v.candidate.path)}: {st.sev(f.severity, str(f.severity))} "
            f"{f.code}: {safe(f.message)}" + (f" [{safe(f.tensor)}]" if f.tensor else "")
            + "\n" for f in v.findings)
    return "\n".join(_lines(v, st, width)) + "\n"


def _lines(v: Verification, st: Style, width: int) -> Iterator[str]:
    rule = "=" * width
    yield rule
    name = os.path.basename(v.candidate.path.rstrip("/")) or v.candidate.path
    yield st.bold(elide(f"ckptscan verify: {safe(name)}", width))
    yield from wrap(_side("candidate", v.candidate), width, "    ", "  ")
    yield from wrap(_side("source", v.source), width, "    ", "  ")
    yield rule
    rate = v.bytes / v.seconds / 1e9 if v.seconds else 0.0
    yield from wrap(f"Compared {len(v.tensors):,} quantized weights "
                    f"({v.total.elements:,} values; {human_bytes(v.bytes)} read in "
                    f"{v.seconds:.2f} s, {rate:.2f} GB/s, {v.jobs} thread"
                    f"{'s' * (v.jobs != 1)}, {v.simd or '-'} kernels); {_kept(v)}", width, "  ", "")
    yield from wrap(f"overall: {_overall(v.total)}", width, "    ", "  ")
    yield from wrap(f"bounds (relative error): {_bounds(v)}", width, "    ", "  ")
    if v.roles:
        yield ""
        yield st.bold("Per role")
        yield from table(_summary_rows("role", list(v.roles.items())), width,
                         right=frozenset(range(1, 7)))
    if len(v.layers) > 1:
        yield ""
        yield st.bold("Per layer")
        items = [(_layer_label(k), s) for k, s in v.layers.items()]
        if len(items) > LIST_MAX:
            worst = sorted(items, key=lambda kv: -kv[1].metrics.rel_error)[:LIST_MAX]
            keep = {id(s) for _, s in worst}
            items = [kv for kv in items if id(kv[1]) in keep]
            yield f"  ({LIST_MAX} of {len(v.layers):,} layers: the largest errors)"
        yield from table(_summary_rows("layer", items), width, right=frozenset(range(1, 7)))
    if v.tensors:
        yield ""
        yield st.bold("Largest relative errors")
        rows = [["rel err", "SQNR dB", "max abs", "worst block", "tensor"]]
        for t in worst_tensors(v, 10):
            w = t.worst[0] if t.worst else None
            rows.append([pct(t.metrics.rel_error), db(t.metrics.sqnr_db), num(t.metrics.max_err),
                         f"{list(w.index)} {pct(w.rel_error)}" if w else "-", safe(t.name)])
        yield from table(rows, width, right=frozenset({0, 1, 2}), shrink=4)
    yield ""
    yield st.bold(f"Findings: {verdict(v)}")
    for f in v.findings:
        yield from finding_lines(f, v.relative, st, width)
    yield rule


def to_markdown(v: Verification) -> str:
    out = [f"# ckptscan verify: {code(v.candidate.path)}", "",
           f"- {cell(_side('candidate', v.candidate))}",
           f"- {cell(_side('source', v.source))}",
           f"- compared {len(v.tensors):,} quantized weights ({v.total.elements:,} values); "
           f"{_kept(v)}",
           f"- overall: {_overall(v.total)}",
           f"- bounds (relative error): {_bounds(v)}",
           f"- findings: {verdict(v)}", "", "## Per role", "",
           "| role | tensors | rel err | SQNR dB | cosine | max abs | flagged |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for label, s in v.roles.items():
        m = s.metrics
        out.append(f"| {cell(label)} | {s.tensors:,} | {pct(m.rel_error)} | {db(m.sqnr_db)} | "
                   f"{cos(m.cosine)} | {num(m.max_err)} | {s.flagged:,} |")
    out += ["", "## Largest relative errors", "",
            "| tensor | rel err | SQNR dB | cosine | max abs | clipped | worst block |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for t in worst_tensors(v, LIST_MAX):
        m = t.metrics
        w = t.worst[0] if t.worst else None
        out.append(f"| {code(t.name)} | {pct(m.rel_error)} | {db(m.sqnr_db)} | {cos(m.cosine)} "
                   f"| {num(m.max_err)} | {m.clipped:,} | "
                   f"{f'{list(w.index)} {pct(w.rel_error)}' if w else '-'} |")
    out += ["", "## Findings", ""]
    if v.findings:
        out += ["| severity | code | message | tensor |", "|---|---|---|---|"]
        for f in v.findings:
            msg = cell(f.message)
            if f.explains:
                msg += "<br>" + "<br>".join(f"explains {x.count:,} x `{x.code}`, e.g. "
                                            f"{cell(x.message)}" for x in f.explains)
            out.append(f"| {f.severity} | `{f.code}` | {msg} | "
                       f"{code(f.tensor) if f.tensor else ''} |")
    else:
        out.append("No findings.")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- HTML


def _tick(k: int) -> str:
    """10^k as a relative error: 0.1%, 1%, 10%, 100%, 10x, 1e3x ..."""
    if k < 0:
        return f"{10.0 ** (k + 2):g}%"
    return "100%" if k == 0 else f"{10 ** k}x" if k < 3 else f"1e{k}x"


def _log_axis(values: Sequence[float], bounds: Sequence[float]) -> tuple[int, int]:
    """Decades of a relative-error axis: from 1e-3 (or lower) to the largest."""
    finite = [x for x in (*values, *bounds) if x > 0 and math.isfinite(x)]
    lo = math.floor(math.log10(min(finite))) if finite else -3
    hi = math.ceil(math.log10(max(finite))) if finite else 0
    lo = min(lo, -3)
    return lo, max(hi, lo + 1)


def _error_bars(items: Sequence[tuple[str, float, int]], bounds: Sequence[float],
                width: int = 620) -> str:
    """Horizontal bars of relative errors on a log axis (one per (label, error,
    flagged)), the bounds as dashed lines."""
    from .html import esc

    label_w, value_w, bar_h, gap, top = 150, 80, 16, 5, 16
    bar_w = width - label_w - value_w
    lo, hi = _log_axis([e for _, e, _ in items], bounds)

    def x(v: float) -> float:
        if not v > 0:
            return 0.0
        t = (min(math.log10(v), hi) - lo) / (hi - lo) if math.isfinite(v) else 1.0
        return label_w + bar_w * max(0.0, min(1.0, t))

    h = top + len(items) * (bar_h + gap) + 4
    out = [f'<svg class="errbars" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           f'role="img" aria-label="relative error">']
    every = max(1, math.ceil(46 / (bar_w / (hi - lo))))  # labels ~46 px apart
    for k in range(lo, hi + 1):
        xx = label_w + bar_w * (k - lo) / (hi - lo)
        out.append(f'<line x1="{xx:.1f}" y1="{top - 2}" x2="{xx:.1f}" y2="{h - 2}" '
                   f'stroke="#e1e6ea"/>')
        if (k - lo) % every == 0:
            out.append(f'<text x="{xx:.1f}" y="{top - 5}" font-size="10" '
                       f'text-anchor="middle">{esc(_tick(k))}</text>')
    for i, (label, err, flagged) in enumerate(items):
        y = top + i * (bar_h + gap)
        color = "#c0392b" if flagged else "#4c78a8"
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="12">'
                   f'{esc(label if len(label) <= 22 else label[:21] + "…")}</text>'
                   f'<rect x="{label_w}" y="{y}" width="{max(x(err) - label_w, 0):.1f}" '
                   f'height="{bar_h}" fill="{color}"><title>{esc(label)}: relative error '
                   f'{esc(pct(err))}</title></rect><text x="{width - value_w + 6}" '
                   f'y="{y + 12}" font-size="12">{esc(pct(err))}</text>')
    for b in bounds:
        xx = x(b)
        out.append(f'<line x1="{xx:.1f}" y1="{top - 2}" x2="{xx:.1f}" y2="{h - 2}" '
                   f'stroke="#b9770e" stroke-dasharray="4 3"><title>bound {esc(pct(b))}'
                   f'</title></line>')
    out.append("</svg>")
    return "".join(out)


def _layer_chart(v: Verification, width: int = 1100, height: int = 180) -> str:
    """Relative error per layer, one column each (log axis), the bounds dashed."""
    from .html import esc

    items = [(k, s) for k, s in v.layers.items()]
    if not items:
        return ""
    left, bottom, top = 50, 20, 10
    plot_h = height - top - bottom
    n = len(items)
    cw = min(40.0, max(1.0, (width - left - 10) / n))
    lo, hi = _log_axis([s.metrics.rel_error for _, s in items], list(v.thresholds.values()))

    def y(val: float) -> float:
        if not val > 0:
            return top + plot_h
        t = (min(math.log10(val), hi) - lo) / (hi - lo) if math.isfinite(val) else 1.0
        return top + plot_h * (1 - max(0.0, min(1.0, t)))

    out = [f'<svg class="layers" width="{width}" height="{height}" viewBox="0 0 {width} '
           f'{height}" role="img" aria-label="relative error per layer">']
    every = max(1, math.ceil(14 / (plot_h / (hi - lo))))
    for k in range(lo, hi + 1):
        yy = top + plot_h * (1 - (k - lo) / (hi - lo))
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - 10}" y2="{yy:.1f}" '
                   f'stroke="#e1e6ea"/>')
        if (k - lo) % every == 0:
            out.append(f'<text x="{left - 4}" y="{yy + 4:.1f}" font-size="10" '
                       f'text-anchor="end">{esc(_tick(k))}</text>')
    step = max(1, int(math.ceil(24 / cw)))
    for i, (layer, s) in enumerate(items):
        err = s.metrics.rel_error
        yy = y(err)
        color = "#c0392b" if s.flagged else "#4c78a8"
        out.append(f'<rect x="{left + i * cw:.1f}" y="{yy:.1f}" width="{max(cw - 1, 1):.1f}" '
                   f'height="{top + plot_h - yy:.1f}" fill="{color}"><title>layer '
                   f'{esc(_layer_label(layer))}: relative error {esc(pct(err))}, '
                   f'{s.tensors:,} tensors, worst {esc(s.worst or "-")}</title></rect>')
        if i % step == 0:
            out.append(f'<text x="{left + i * cw + cw / 2:.1f}" y="{height - 6}" '
                       f'font-size="10" text-anchor="middle">'
                       f'{esc("out" if layer < 0 else layer)}</text>')
    for b in v.thresholds.values():
        yy = y(b)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{width - 10}" y2="{yy:.1f}" '
                   f'stroke="#b9770e" stroke-dasharray="4 3"><title>bound {esc(pct(b))}'
                   f'</title></line>')
    out.append("</svg>")
    return "".join(out)


def _grid_map(v: Verification) -> str:
    """Layers down, roles across: each cell the relative error of its weights."""
    from .html import _heat_svg, _legend, _Ramp

    roles = list(v.roles)
    layers = list(v.layers)
    if not roles or not layers:
        return ""
    cells = [[v.grid[(r, la)].metrics.rel_error if (r, la) in v.grid else None for r in roles]
             for la in layers]
    flat = [c for row in cells for c in row if c is not None]
    ramp = _Ramp([c if math.isfinite(c) else 1e9 for c in flat], "count")

    def show(x: float | None) -> str:
        return "-" if x is None else pct(x)

    grid = [[None if c is None else (c if math.isfinite(c) else 1e9) for c in row]
            for row in cells]
    svg = _heat_svg([_layer_label(x) for x in layers], roles, grid, ramp, show, "layer",
                    "role", True)
    return f"<figure>{svg}{_legend(ramp, show, True)}</figure>"


def _tensor_table(tensors: Sequence[TensorResult], flagged: set[str]) -> str:
    from .html import esc

    head = ("<thead><tr><th><button>tensor</button></th><th><button>role</button></th>"
            '<th data-type="num"><button>layer</button></th><th><button>format</button></th>'
            + "".join(f'<th class="num" data-type="num"><button>{h}</button></th>' for h in (
                "rel err", "SQNR dB", "cosine", "max abs", "clipped %", "worst block"))
            + "</tr></thead>")
    rows = []
    for t in tensors:
        m = t.metrics
        w = t.worst[0] if t.worst else None
        cls = ' class="row-error"' if t.name in flagged else ""
        rows.append(
            f'<tr{cls} data-name="{esc(t.name)}"><td><code>{esc(t.name)}</code>'
            + (f'<br><span class="small muted">source <code>{esc(t.source)}</code>'
               + (" (transposed)" if t.source_transposed else "") + "</span>"
               if t.source != t.name or t.source_transposed else "")
            + f"</td><td>{esc(t.role)}</td><td class='num'>{t.layer}</td>"
            f"<td>{esc(t.format)} <span class='small muted'>{esc(t.granularity)}</span></td>"
            f"<td class='num' data-v='{_sortable(m.rel_error)}' data-k='rel'>"
            f"{esc(pct(m.rel_error))}</td>"
            f"<td class='num' data-v='{_sortable(m.sqnr_db)}'>{esc(db(m.sqnr_db))}</td>"
            f"<td class='num' data-v='{_sortable(m.cosine)}'>{esc(cos(m.cosine))}</td>"
            f"<td class='num' data-v='{_sortable(m.max_err)}'>{esc(num(m.max_err))}</td>"
            f"<td class='num' data-v='{m.clipped_share}'>{100 * m.clipped_share:.3f}</td>"
            f"<td class='num' data-v='{_sortable(w.rel_error if w else 0.0)}'>"
            + (f"{esc(list(w.index))} {esc(pct(w.rel_error))}" if w else "-") + "</td></tr>")
    return (f'<table class="sortable tensors">{head}<tbody>{"".join(rows)}</tbody></table>')


def _sortable(x: float) -> str:
    if math.isnan(x):
        return "-1e308"
    return "1e308" if x == math.inf else "-1e308" if x == -math.inf else repr(x)


def to_html(v: Verification) -> str:
    """One self-contained page (see the module's docstring)."""
    from .html import _kv, _page, esc, findings_box

    name = os.path.basename(v.candidate.path.rstrip("/")) or v.candidate.path
    flagged = {f.tensor for f in v.findings if f.tensor} | {
        x for f in v.findings for x in f.detail.get("examples", [])}
    badges = []
    for s in reversed(Severity):
        n = v.count(s)
        badges.append(f'<span class="badge {s if n else "zero"}" data-k="count-{s}">{n:,} '
                      f'{s}{"s" if n != 1 and str(s) != "info" else ""}</span>')
    badges.append(f'<span class="badge mode" data-k="compared">{len(v.tensors):,} weights '
                  "compared</span>")
    rate = v.bytes / v.seconds / 1e9 if v.seconds else 0.0
    t = v.total
    ident = _kv([
        ("candidate", f'<code data-k="candidate">{esc(v.candidate.path)}</code><br>'
                      f'<span class="muted">{esc(_about(v.candidate))}</span>'),
        ("source", f'<code data-k="source">{esc(v.source.path)}</code><br>'
                   f'<span class="muted">{esc(_about(v.source))}</span>'),
        ("compared", f'<b data-k="tensors">{len(v.tensors):,}</b> quantized weights, '
                     f"{t.elements:,} values; {esc(_kept(v))}"),
        ("relative error", f'<b data-k="rel_error">{esc(pct(t.rel_error))}</b> '
                           f'<span class="muted">(‖dequantized − source‖ / ‖source‖)</span>'),
        ("SQNR", f'<span data-k="sqnr">{esc(db(t.sqnr_db))}</span> dB'),
        ("cosine similarity", f'<span data-k="cosine">{esc(cos(t.cosine))}</span>'),
        ("max abs error", f'<span data-k="max_abs">{esc(num(t.max_err))}</span>'),
        ("clipped values", f'<span data-k="clipped">{t.clipped:,}</span> '
                           f"({t.clipped_share:.3%})"),
        ("bounds", esc(_bounds(v))),
        ("run", f"{esc(human_bytes(v.bytes))} read in {v.seconds:.2f} s ({rate:.2f} GB/s), "
                f"{v.jobs} thread{'s' * (v.jobs != 1)}, {esc(v.simd or '-')} kernels"),
    ])
    roles = _error_bars([(r, s.metrics.rel_error, s.flagged) for r, s in v.roles.items()],
                        list(v.thresholds.values()))
    role_rows = "".join(
        f'<tr data-role="{esc(r)}"><td>{esc(r)}</td><td class="num">{s.tensors:,}</td>'
        f'<td class="num" data-k="role-rel">{esc(pct(s.metrics.rel_error))}</td>'
        f'<td class="num">{esc(db(s.metrics.sqnr_db))}</td>'
        f'<td class="num">{esc(cos(s.metrics.cosine))}</td>'
        f'<td class="num">{esc(num(s.metrics.max_err))}</td>'
        f'<td class="num">{s.flagged:,}</td><td><code>{esc(s.worst or "-")}</code></td></tr>'
        for r, s in v.roles.items())
    role_table = ("<table><thead><tr><th>role</th><th class='num'>tensors</th><th class='num'>"
                  "rel err</th><th class='num'>SQNR dB</th><th class='num'>cosine</th>"
                  "<th class='num'>max abs</th><th class='num'>flagged</th><th>worst tensor"
                  f"</th></tr></thead><tbody>{role_rows}</tbody></table>")
    shown = v.tensors if len(v.tensors) <= HTML_TENSORS_MAX else worst_tensors(
        v, HTML_TENSORS_MAX)
    note = ("" if len(shown) == len(v.tensors) else
            f"<p class='muted small'>The {len(shown):,} largest errors of {len(v.tensors):,} "
            "tensors (the JSON lists all).</p>")
    toc = "".join(f'<a href="#{k}">{t}</a>' for k, t in (
        ("summary", "Summary"), ("roles", "Per role"), ("layers", "Per layer"),
        ("findings", "Findings"), ("tensors", "Tensors")))
    body = (
        f'<article id="verify"><h1>ckptscan verify: {esc(name)}</h1>'
        f'<div class="path">{esc(v.candidate.path)} against {esc(v.source.path)}</div>'
        f'<div class="badges">{"".join(badges)}</div><nav class="toc">{toc}</nav>'
        f'<section id="summary"><h2>Summary</h2>{ident}</section>'
        f'<section id="roles"><h2>Per role</h2><figure>{roles}<figcaption>Relative error of '
        "each role's quantized weights (‖dequantized − source‖ / ‖source‖ over all of them; "
        "log scale); red: a role with findings; dashed: the bounds.</figcaption></figure>"
        f"{role_table}</section>"
        f'<section id="layers"><h2>Per layer</h2><figure>{_layer_chart(v)}<figcaption>'
        "Relative error per layer (log scale; red: a layer with findings).</figcaption>"
        f"</figure><h3>Layers × roles</h3>{_grid_map(v)}</section>"
        f'<section id="findings"><h2>Findings</h2>'
        f'{findings_box(v.findings, v.candidate.path, "")}</section>'
        f'<section id="tensors"><h2>Tensors</h2>{note}{_tensor_table(shown, flagged)}'
        "</section></article>")
    return _page(f"ckptscan verify: {esc(name)}", body)


__all__ = ["to_html", "to_json", "to_markdown", "to_text", "verdict"]
