"""HTML: one self-contained page per report (or per farm), and a compact
summary for notebooks (`Report._repr_html_`).

Self-contained: the page loads nothing — no script, font, stylesheet or image
from anywhere; charts are inline SVG drawn here; a Content-Security-Policy
forbids every fetch and runs only the page's own script (by its hash). The
page reads without script (filters and sorting are additions) and prints
(a print stylesheet). Every string taken from a file (names, paths, messages
quoting them, config values) goes through `esc`: control characters escaped
as in the terminal, then HTML-escaped, so that a hostile tensor name shows as
text and never becomes markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from ..findings import Finding, Severity
from ..result import CodeHistogram, Count, HeatMap, PrecisionCell, PrecisionGrid, Report
from .console import safe
from .text import human_bytes, human_count

# ---------------------------------------------------------------- small pieces


def esc(text: object) -> str:
    """Text from anywhere (a file above all) as HTML text or attribute value."""
    return html.escape(safe(str(text)), quote=True)


def _n(value: int | float) -> str:
    return f"{int(value):,}"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


_DTYPE_COLORS = {
    "F8_E4M3": "#e8743b", "F8_E5M2": "#f2b134", "F8_E4M3FNUZ": "#d1495b",
    "F8_E5M2FNUZ": "#edae49", "F8_E8M0": "#a6761d", "BF16": "#4c78a8", "F16": "#72b7b2",
    "F32": "#54a24b", "F64": "#2f6b2a", "I8": "#b279a2", "U8": "#9d755d", "I16": "#8c6d8c",
    "U16": "#a58d7a", "I32": "#79706e", "U32": "#9e9894", "I64": "#5e5a58", "U64": "#bab0ac",
    "BOOL": "#d4c9c4", "F4": "#e45756", "F6_E2M3": "#ff9da6", "F6_E3M2": "#ff7f87",
    "I4": "#c44e52", "U4": "#dd8452",
}
_PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2",
            "#ff9da6", "#9d755d", "#bab0ac", "#439894", "#d67195")
# Roles get their own hues, apart from the dtypes' (a role is no dtype).
_ROLE_PALETTE = ("#5b4a8b", "#2a9d8f", "#8d6cab", "#e9c46a", "#264653", "#b5838d",
                 "#6d597a", "#a8dadc", "#457b9d", "#e76f51", "#606c38", "#bc6c25")


def dtype_color(dtype: str) -> str:
    return _DTYPE_COLORS.get(dtype) or _PALETTE[
        int(hashlib.sha1(dtype.encode("utf-8", "replace")).hexdigest(), 16) % len(_PALETTE)]


def _role_color(i: int) -> str:
    return _ROLE_PALETTE[i % len(_ROLE_PALETTE)]


# ---------------------------------------------------------------- page frame

_CSS = """
:root{--fg:#1d2329;--muted:#5d6b78;--line:#d8dee4;--bg:#fff;--soft:#f4f6f8;
--err:#c0392b;--warn:#b9770e;--info:#2471a3;--ok:#1e8449}
*{box-sizing:border-box}
html{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",
"Liberation Sans",sans-serif;color:var(--fg);background:var(--bg)}
body{margin:0 auto;padding:16px 20px 40px;max-width:1260px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:18px;margin:28px 0 8px;padding-bottom:4px;
border-bottom:2px solid var(--line)}h3{font-size:15px;margin:18px 0 6px}
code,.mono{font-family:ui-monospace,"DejaVu Sans Mono","Liberation Mono",monospace;
font-size:12.5px;overflow-wrap:anywhere}
.path{font-size:13px;color:var(--muted);overflow-wrap:anywhere}
.muted{color:var(--muted)}.small{font-size:12px}
nav.toc{margin:10px 0;display:flex;gap:14px;flex-wrap:wrap;font-size:13px}
nav.toc a{color:var(--info);text-decoration:none}
.badges{display:flex;gap:8px;margin:10px 0;flex-wrap:wrap}
.badge{border-radius:12px;padding:2px 11px;font-weight:600;color:#fff;font-size:13px}
.badge.error{background:var(--err)}.badge.warning{background:var(--warn)}
.badge.info{background:var(--info)}.badge.zero{background:#aab4bd}
.badge.mode{background:#566573}
table{border-collapse:collapse;margin:6px 0 10px}
th,td{border-bottom:1px solid var(--line);padding:3px 8px;text-align:left;vertical-align:top}
th{background:var(--soft);font-weight:600;font-size:13px}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
table.kv th{background:none;width:170px;color:var(--muted);font-weight:500}
table.kv td,table.kv th{border:0;padding:2px 8px}
.grid2{display:grid;grid-template-columns:1fr 1fr;gap:10px 28px}
.grid2>div{min-width:0}
.swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px;
vertical-align:baseline}
table.pmap td{padding:3px 6px;min-width:92px;border:1px solid #fff}
table.pmap td.cell{font-size:12px;line-height:1.25}
table.pmap td.cell b{font-weight:600}
table.pmap th.layers{white-space:nowrap}
table.pmap td.empty{background:var(--soft)}
.bpw{color:#35414c}
.sev{font-weight:600;text-transform:uppercase;font-size:11.5px;letter-spacing:.3px}
.sev.error{color:var(--err)}.sev.warning{color:var(--warn)}.sev.info{color:var(--info)}
table.findings{width:100%;table-layout:fixed}
table.findings col.c-sev{width:80px}table.findings col.c-code{width:190px}
table.findings col.c-where{width:31%}
table.findings tbody.group{border-top:2px solid var(--line)}
table.findings tr.explained td{background:#fbfbfc;font-size:12.5px}
table.findings tr.explained td.msg{padding-left:22px}
.filters{display:none;margin:6px 0 8px;padding:8px 10px;background:var(--soft);
border-radius:6px}
html.js .filters{display:block}
.filters fieldset{border:0;margin:0 0 4px;padding:0;display:flex;flex-wrap:wrap;gap:4px 14px}
.filters legend{float:left;font-weight:600;margin-right:10px;font-size:13px}
.filters label{white-space:nowrap;font-size:13px}
figure{margin:8px 0 14px}figcaption{font-size:12.5px;color:var(--muted);margin-top:2px}
.maps{display:flex;flex-wrap:wrap;gap:4px 30px;align-items:flex-start}
.maps figure{margin:6px 0 10px;max-width:100%}
.maps figcaption.t{color:var(--fg);font-weight:600;margin:0 0 3px}
.axes{font-size:12px;color:var(--muted);margin:0 0 4px}
svg text{font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:2px 12px;font-size:12px;color:var(--muted)}
.worst{font-size:12.5px;color:var(--muted);margin:2px 0 0}
.note{background:#fef9e7;border-left:3px solid #f4d03f;padding:6px 10px;margin:8px 0}
details>summary{cursor:pointer;color:var(--info)}
table.sortable th button{all:unset;cursor:pointer}
table.sortable th[aria-sort=ascending] button::after{content:" \\25B2"}
table.sortable th[aria-sort=descending] button::after{content:" \\25BC"}
tr.row-error td:first-child{box-shadow:inset 3px 0 var(--err)}
tr.row-warning td:first-child{box-shadow:inset 3px 0 var(--warn)}
.farmfilter{display:none}html.js .farmfilter{display:block;margin:6px 0}
table.farm{font-size:13px;width:100%}table.farm td.small{max-width:170px}
footer{margin-top:30px;font-size:12px;color:var(--muted)}
@media (max-width:900px){.grid2{grid-template-columns:1fr}}
@media print{
html{font-size:11px}body{max-width:none;padding:0}
nav.toc,.filters,.farmfilter{display:none!important}
h2{break-after:avoid}table,figure,tr{break-inside:avoid}
a{color:inherit;text-decoration:none}
.badge{color:#000;border:1px solid #000;background:none!important}
}
"""

_SCRIPT = """(function(){
var doc=document;doc.documentElement.classList.add('js');
doc.querySelectorAll('div.findings').forEach(function(box){
  var inputs=box.querySelectorAll('input[data-filter]');
  function apply(){
    var on={sev:{},code:{}};
    inputs.forEach(function(i){on[i.dataset.filter][i.value]=i.checked;});
    var shown=0;
    box.querySelectorAll('tbody.group').forEach(function(g){
      var ok=on.sev[g.dataset.sev]&&
        g.dataset.codes.split(' ').some(function(c){return on.code[c];});
      g.hidden=!ok;if(ok){shown++;}
    });
    var out=box.querySelector('.shown');if(out){out.textContent=String(shown);}
  }
  inputs.forEach(function(i){i.addEventListener('change',apply);});
  apply();
});
doc.querySelectorAll('table.sortable').forEach(function(t){
  var heads=t.querySelectorAll('thead th');
  heads.forEach(function(th,col){
    var b=th.querySelector('button');if(!b){return;}
    b.addEventListener('click',function(){
      var desc=th.getAttribute('aria-sort')==='ascending';
      heads.forEach(function(h){h.removeAttribute('aria-sort');});
      th.setAttribute('aria-sort',desc?'descending':'ascending');
      var body=t.tBodies[0],rows=Array.prototype.slice.call(body.rows);
      var num=th.dataset.type==='num';
      function key(r){var c=r.cells[col];var v=c.dataset.v!==undefined?c.dataset.v:c.textContent;
        return num?parseFloat(v):v.toLowerCase();}
      rows.sort(function(a,b){var x=key(a),y=key(b);var r=x<y?-1:x>y?1:0;return desc?-r:r;});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
});
doc.querySelectorAll('input.farmfilter').forEach(function(inp){
  inp.addEventListener('input',function(){
    var q=inp.value.toLowerCase();
    doc.querySelectorAll('table.farm tbody tr').forEach(function(r){
      r.hidden=q!==''&&r.dataset.path.toLowerCase().indexOf(q)<0;});
  });
});
window.addEventListener('beforeprint',function(){
  doc.querySelectorAll('details').forEach(function(d){d.open=true;});
});
})();"""


def _csp() -> str:
    digest = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
    return (f"default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
            f"script-src 'sha256-{digest}'; base-uri 'none'; form-action 'none'")


def _page(title: str, body: str) -> str:
    from .. import __version__

    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{_csp()}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<meta name=\"referrer\" content=\"no-referrer\">\n"
        f"<meta name=\"generator\" content=\"ckptscan {esc(__version__)}\">\n"
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<footer>ckptscan {esc(__version__)} — a self-contained page: nothing is loaded from "
        "anywhere; filters and sorting need script, everything else reads without it."
        f"</footer>\n<script>{_SCRIPT}</script>\n</body>\n</html>\n")


# ---------------------------------------------------------------- charts (SVG)


def _share_bars(items: Sequence[tuple[str, float, str]], total: float, unit: str,
                fmt: Callable[[float], str], width: int = 560) -> str:
    """Horizontal bars, one per (label, value, colour): share of `total`."""
    label_w, value_w, bar_h, gap = 130, 150, 16, 6
    bar_w = width - label_w - value_w
    h = len(items) * (bar_h + gap) + 4
    out = [f'<svg class="bars" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           f'role="img" aria-label="{esc(unit)}">']
    for i, (label, value, color) in enumerate(items):
        y = 2 + i * (bar_h + gap)
        w = 0.0 if not total else max(bar_w * value / total, 1.0 if value else 0.0)
        out.append(
            f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="12">'
            f'{esc(_clip(label, 20))}</text>'
            f'<rect x="{label_w}" y="{y}" width="{bar_w}" height="{bar_h}" fill="#eef1f4"/>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}">'
            f'<title>{esc(label)}: {esc(fmt(value))} ({_pct(value, total)} of {esc(unit)})'
            f'</title></rect>'
            f'<text x="{label_w + bar_w + 6}" y="{y + 12}" font-size="12">'
            f'{_pct(value, total)} · {esc(fmt(value))}</text>')
    out.append("</svg>")
    return "".join(out)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"


# Heat-map colour ramps (light to dark) and the colour of an empty cell.
_REDS = ("#fde0d2", "#fcbba1", "#fc9272", "#fb6a4a", "#de2d26", "#a50f15")
_SEQ = ("#440154", "#46327e", "#365c8d", "#277f8e", "#1fa187", "#4ac16d", "#a0da39", "#fde725")
_ZERO, _NODATA = "#e8edf1", "#ffffff"
_HEAT_CELLS_TITLED = 4096  # up to this many cells, each cell has its own tooltip


class _Ramp:
    """Maps values to colour buckets: counts and shares on a log scale from the
    smallest positive value (zero has its own colour), scale exponents linearly."""

    colors: tuple[str, ...]

    def __init__(self, values: Iterable[float | None], kind: str) -> None:
        self.kind = kind
        vals = [v for v in values if v is not None]
        if kind == "log2":
            self.lo, self.hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
            self.colors = _SEQ
        else:
            pos = [v for v in vals if v > 0]
            self.lo, self.hi = (min(pos), max(pos)) if pos else (0.0, 0.0)
            self.colors = _REDS

    def bucket(self, v: float | None) -> int:
        """-2: no data, -1: zero, else the colour index."""
        if v is None:
            return -2
        n = len(self.colors)
        if self.kind == "log2":
            if self.hi <= self.lo:
                return n // 2
            return min(n - 1, int((v - self.lo) / (self.hi - self.lo) * n))
        if v <= 0:
            return -1
        if self.hi <= self.lo:
            return n - 1
        t = math.log(v / self.lo) / math.log(self.hi / self.lo)
        return min(n - 1, int(t * n))

    def color(self, b: int) -> str:
        return _NODATA if b == -2 else _ZERO if b == -1 else self.colors[b]

    def edges(self, b: int) -> tuple[float, float]:
        n = len(self.colors)
        if self.kind == "log2":
            span = self.hi - self.lo
            return self.lo + span * b / n, self.lo + span * (b + 1) / n
        if self.hi <= self.lo:
            return self.lo, self.hi
        r = self.hi / self.lo
        return self.lo * r ** (b / n), self.lo * r ** ((b + 1) / n)


def _heat_svg(row_labels: Sequence[str], col_labels: Sequence[str],
              values: Sequence[Sequence[float | None]], ramp: _Ramp,
              show: Callable[[float | None], str], row_name: str, col_name: str,
              named_cols: bool) -> str:
    """A heat map: rows down, columns across; cells titled when few, else drawn
    as one path per colour (run-length merged) to keep the page small."""
    nr, nc = len(row_labels), len(col_labels)
    cw = max(3, min(36, 1100 // max(nc, 1)))
    if named_cols:
        cw = max(cw, 96)
    ch = max(4, min(22, 560 // max(nr, 1)))
    left, top = 40, 18
    w, h = left + cw * nc + 4, top + ch * nr + 4
    out = [f'<svg class="heat" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
           f'aria-label="{esc(row_name)} by {esc(col_name)}">']
    step_r = _nice_step(13 / ch)
    for r in range(0, nr, step_r):
        out.append(f'<text x="{left - 4}" y="{top + r * ch + min(ch, 13) / 2 + 4:.1f}" '
                   f'text-anchor="end" font-size="11">{esc(row_labels[r])}</text>')
    if named_cols:
        for c in range(nc):
            out.append(f'<text x="{left + c * cw + cw / 2:.1f}" y="{top - 6}" '
                       f'text-anchor="middle" font-size="11">{esc(_clip(col_labels[c], 15))}'
                       f'</text>')
    else:
        step_c = _nice_step(26 / cw)
        for c in range(0, nc, step_c):
            out.append(f'<text x="{left + c * cw + cw / 2:.1f}" y="{top - 6}" '
                       f'text-anchor="middle" font-size="10">{esc(col_labels[c])}</text>')
    if nr * nc <= _HEAT_CELLS_TITLED:
        for r in range(nr):
            for c in range(nc):
                v = values[r][c]
                out.append(
                    f'<rect x="{left + c * cw}" y="{top + r * ch}" width="{cw - 1}" '
                    f'height="{ch - 1}" fill="{ramp.color(ramp.bucket(v))}"><title>'
                    f'{esc(row_name)} {esc(row_labels[r])}, {esc(col_name)} '
                    f'{esc(col_labels[c])}: {esc(show(v))}</title></rect>')
    else:
        paths: dict[int, list[str]] = {}
        for r in range(nr):
            c = 0
            while c < nc:
                b = ramp.bucket(values[r][c])
                run = c + 1
                while run < nc and ramp.bucket(values[r][run]) == b:
                    run += 1
                paths.setdefault(b, []).append(
                    f"M{left + c * cw} {top + r * ch}h{(run - c) * cw}v{ch}h-{(run - c) * cw}z")
                c = run
        for b, parts in sorted(paths.items()):
            out.append(f'<path fill="{ramp.color(b)}" d="{"".join(parts)}"><title>'
                       f'{esc(_bucket_text(ramp, b, show))}</title></path>')
    out.append("</svg>")
    return "".join(out)


def _nice_step(at_least: float) -> int:
    """The smallest of 1, 2, 4, 8, 16 ... that is at least `at_least` (axis ticks)."""
    step = 1
    while step < at_least:
        step *= 2
    return step


def _bucket_text(ramp: _Ramp, b: int, show: Callable[[float | None], str]) -> str:
    if b == -2:
        return "no data"
    if b == -1:
        return show(0.0)
    lo, hi = ramp.edges(b)
    return f"{show(lo)} to {show(hi)}"


def _legend(ramp: _Ramp, show: Callable[[float | None], str], zero: bool) -> str:
    """Zero's colour, then the ramp from its lowest to its highest value."""
    parts = []
    if zero:
        parts.append(f'<span><span class="swatch" style="background:{_ZERO}"></span>'
                     f"{esc(show(0.0))}</span>")
    if ramp.hi > ramp.lo:
        swatches = "".join(f'<span class="swatch" style="background:{c};margin:0"></span>'
                           for c in ramp.colors)
        parts.append(f"<span>{esc(show(ramp.lo))} {swatches} {esc(show(ramp.hi))}</span>")
    elif ramp.hi > 0 or ramp.kind == "log2":
        c = ramp.color(ramp.bucket(ramp.hi))
        parts.append(f'<span><span class="swatch" style="background:{c}"></span>'
                     f"{esc(show(ramp.hi))}</span>")
    return '<div class="legend">' + "".join(parts) + "</div>"


def _histogram_svg(h: CodeHistogram) -> str:
    """The 256 codes in value order (negative codes from the largest magnitude,
    then positive ones; sign-magnitude formats), log-scaled counts; NaN/Inf
    codes in red."""
    from ..kernels import fp8_decode_table

    try:
        table = [float(v) for v in fp8_decode_table(h.dtype)]
    except (ValueError, KeyError, RuntimeError):  # not an FP8 format: codes only
        table = [float(c if c < 128 else 127 - c) for c in range(256)]
    order = list(range(255, 127, -1)) + list(range(128))
    bw, plot_h, left, top = 2, 140, 40, 8
    w, hgt = left + 256 * bw + 6, top + plot_h + 34
    peak = max(h.counts) if h.counts else 0
    top_log = math.log10(peak + 1) if peak else 1.0
    out = [f'<svg class="hist" width="{w}" height="{hgt}" viewBox="0 0 {w} {hgt}" role="img">']
    for k in range(int(top_log) + 1):  # decades
        y = top + plot_h - plot_h * k / top_log
        out.append(f'<line x1="{left}" x2="{left + 256 * bw}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'stroke="#e3e7eb"/><text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" '
                   f'font-size="10">1e{k}</text>')
    for x, code in enumerate(order):
        n = h.counts[code]
        v = table[code]
        special = not math.isfinite(v)
        bh = plot_h * math.log10(n + 1) / top_log if n else 0.0
        color = "#c0392b" if special else "#4c78a8" if v >= 0 and code < 128 else "#7fa3c9"
        what = "NaN" if math.isnan(v) else f"{v:g}"
        out.append(f'<rect x="{left + x * bw}" y="{top + plot_h - bh:.1f}" width="{bw - 0.4}" '
                   f'height="{max(bh, 0.0):.1f}" fill="{color}"><title>code 0x{code:02x} = '
                   f'{what}: {n:,}</title></rect>')
    base = top + plot_h
    out.append(f'<line x1="{left}" x2="{left + 256 * bw}" y1="{base}" y2="{base}" '
               f'stroke="#5d6b78"/>')
    for x, label, anchor in ((0, "−max", "start"), (128, "0", "middle"),
                             (256, "+max", "end")):
        out.append(f'<text x="{left + x * bw}" y="{base + 14}" text-anchor="{anchor}" '
                   f'font-size="10">{label}</text>')
    out.append(f'<text x="{left}" y="{base + 28}" font-size="10" fill="#5d6b78">codes in value '
               f'order; red: NaN/Inf codes; log scale</text>')
    out.append("</svg>")
    return "".join(out)


# ---------------------------------------------------------------- sections


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    return '<table class="kv">' + "".join(
        f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _identity(r: Report) -> str:
    src, cfg, q = r.source, r.config, r.quantization
    where = f"{esc(src.kind)}, {esc(src.format)}"
    rows = [("checkpoint", f'<code data-k="checkpoint">{esc(r.checkpoint)}</code>'),
            ("source", where)]
    if src.repo:
        rows.append(("repository", f"<code>{esc(src.repo)}</code>" + (
            f" @ <code>{esc(src.revision)}</code>" if src.revision else "")))
    if src.component:
        rows.append(("diffusers component", f"<code>{esc(src.component)}</code>"))
    rows.append(("model type", f'<code data-k="model_type">{esc(r.model_type or "-")}</code> '
                               f'<span class="muted">(taxonomy {esc(r.family)})</span>'))
    if cfg.architectures:
        rows.append(("architectures", ", ".join(f"<code>{esc(a)}</code>"
                                                for a in cfg.architectures)))
    said = [(label, value) for label, value in (
        ("layers", cfg.layers), ("hidden size", cfg.hidden_size),
        ("vocabulary", cfg.vocab_size), ("routed experts", cfg.experts)) if value is not None]
    if said or cfg.torch_dtype:
        text = ", ".join(f'{label} <b data-k="config-{label.replace(" ", "-")}">{_n(v)}</b>'
                         for label, v in said)
        if cfg.torch_dtype:
            text += (", " if text else "") + f"torch_dtype <code>{esc(cfg.torch_dtype)}</code>"
        rows.append(("config.json", text))
    sh = r.shards
    files = (f'<span data-k="shards">{len(sh.found):,}</span> shard file(s) found'
             + (f", {len(sh.referenced):,} referenced by the index" if sh.referenced else ""))
    for label, names in (("missing", sh.missing), ("unreadable", sh.rejected),
                         ("second copy, not counted", sh.copies)):
        if names:
            shown = ", ".join(f"<code>{esc(n)}</code>" for n in names[:8])
            more = f" and {len(names) - 8:,} more" if len(names) > 8 else ""
            files += f'<br><span class="sev error">{label}</span> {shown}{more}'
    rows.append(("files", files))
    t = r.total
    rows.append(("totals", f'<b data-k="tensors">{_n(t.tensors)}</b> tensors, '
                           f'<b data-k="parameters">{_n(t.parameters)}</b> parameters '
                           f'({human_count(t.parameters)}), <b data-k="bytes" '
                           f'title="{_n(t.bytes)} bytes">{human_bytes(t.bytes)}</b>'))
    if q.is_fp8 or q.method:
        quant = (f"method <code>{esc(q.method or '-')}</code>, format "
                 f"<code>{esc(q.format or '-')}</code>, block size "
                 f"{esc('x'.join(map(str, q.block_size)) if q.block_size else '-')}"
                 + (f", scale_fmt <code>{esc(q.scale_fmt)}</code>" if q.scale_fmt else "")
                 + f"<br>{_n(q.fp8_tensors)} FP8 tensors, {_n(q.scale_tensors)} scale tensors"
                 f"<br>quantized roles: {esc(', '.join(q.quantized_roles) or '-')}; "
                 f"not quantized: {esc(', '.join(q.unquantized_roles) or '-')}")
        if q.modules_to_not_convert is not None:
            kept = q.modules_to_not_convert
            listed = ", ".join(f"<code>{esc(m)}</code>" for m in kept[:20])
            quant += f"<br>modules_to_not_convert: {listed or '-'}" + (
                f" and {len(kept) - 20:,} more" if len(kept) > 20 else "")
    else:
        quant = "no FP8 tensors, no quantization_config"
    rows.append(("quantization", quant))
    d = r.deep
    if d is None:
        scan = "header-only: tensor values were not read (<code>--deep</code> reads them)"
    else:
        rate = d.bytes / d.seconds / 1e9 if d.seconds else 0.0
        scan = (f"--deep: read {_n(d.tensors)} tensors, {human_bytes(d.bytes)} in "
                f"{d.seconds:.2f} s ({rate:.2f} GB/s, {esc(d.simd)} kernels); FP8 NaN codes "
                f'<b data-k="fp8_nan_codes">{_n(d.fp8_nan_codes)}</b>, float NaN '
                f'<b data-k="float_nan">{_n(d.float_nan)}</b>, float Inf '
                f'<b data-k="float_inf">{_n(d.float_inf)}</b>, unreadable tensors '
                f"{_n(d.unreadable)}")
    rows.append(("scan", scan))
    return _kv(rows)


def _count_table(first: str, items: Sequence[tuple[str, Count, str]], total: Count,
                 extra: Callable[[str], str] | None = None, key: str = "") -> str:
    head = (f'<table class="counts" data-k="{key}"><thead><tr><th>{first}</th>'
            '<th class="num">tensors</th><th class="num">%</th><th class="num">parameters</th>'
            '<th class="num">%</th><th class="num">bytes</th><th class="num">%</th>'
            + ("<th>dtypes (tensors)</th>" if extra else "") + "</tr></thead><tbody>")
    rows = []
    for name, c, color in items:
        rows.append(
            f'<tr data-name="{esc(name)}"><td><span class="swatch" style="background:{color}">'
            f'</span>{esc(name)}</td><td class="num">{_n(c.tensors)}</td>'
            f'<td class="num">{_pct(c.tensors, total.tensors)}</td>'
            f'<td class="num">{_n(c.parameters)}</td>'
            f'<td class="num">{_pct(c.parameters, total.parameters)}</td>'
            f'<td class="num" title="{_n(c.bytes)} bytes">{human_bytes(c.bytes)}</td>'
            f'<td class="num">{_pct(c.bytes, total.bytes)}</td>'
            + (f"<td>{extra(name)}</td>" if extra else "") + "</tr>")
    return head + "".join(rows) + "</tbody></table>"


def _composition(r: Report) -> str:
    t = r.total
    dtypes = sorted(r.dtypes.items(), key=lambda kv: -kv[1].bytes)
    d_items = [(name, c, dtype_color(name)) for name, c in dtypes]
    roles = list(r.roles.items())
    r_items = [(name, c, _role_color(i)) for i, (name, c) in enumerate(roles)]

    def charts(items: Sequence[tuple[str, Count, str]], what: str) -> str:
        params = _share_bars([(n, c.parameters, col) for n, c, col in items], t.parameters,
                             "parameters", human_count)
        nbytes = _share_bars([(n, c.bytes, col) for n, c, col in items], t.bytes, "bytes",
                             human_bytes)
        return ('<div class="grid2">'
                f'<figure><figcaption class="t">parameters by {what}</figcaption>{params}'
                f'</figure><figure><figcaption class="t">bytes by {what}</figcaption>{nbytes}'
                "</figure></div>")

    def mix(role: str) -> str:
        s = r.roles[role]
        return ", ".join(f'<span class="swatch" style="background:{dtype_color(d)}"></span>'
                         f"{esc(d)} ×{_n(n)}" for d, n in
                         sorted(s.dtypes.items(), key=lambda kv: -kv[1]))

    if not t.tensors:
        return '<p class="muted">No tensors were read.</p>'
    return ("<h3>By data type</h3>" + charts(d_items, "data type")
            + _count_table("dtype", d_items, t, key="dtypes")
            + "<h3>By role</h3>" + charts(r_items, "role")
            + _count_table("role", r_items, t, mix, key="roles"))


def _pcell(c: PrecisionCell | None, column: str) -> str:
    if c is None:
        return '<td class="empty"></td>'
    items = list(c.dtypes.items())
    main = items[0][0] if items else "-"
    color = dtype_color(main)
    others = "".join(f"<br><span class='small'>+{esc(d)}</span>" for d, _ in items[1:3])
    if len(items) > 3:
        others += f"<span class='small'> +{len(items) - 3}</span>"
    detail = (f"{column}: {c.tensors:,} tensors, {c.parameters:,} parameters, "
              f"{c.bytes:,} bytes; " + ", ".join(f"{d} {p:,} weight parameters"
                                                  for d, p in items))
    return (f'<td class="cell" style="background:{color}22;border-left:4px solid {color}" '
            f'data-dtype="{esc(main)}" data-bpw="{c.bits_per_weight:.3f}" title="{esc(detail)}">'
            f'<b>{esc(main)}</b> <span class="bpw">{c.bits_per_weight:.2f} b/w</span>{others}'
            "</td>")


def _precision(r: Report) -> str:
    if not r.precision:
        return '<p class="muted">No tensors were read.</p>'
    out = ['<p class="muted small">Each cell: the dtype holding most of the cell\'s weight '
           "parameters (others below it) and its bits per weight — the bytes of all its "
           "tensors, scales included, per weight parameter. Consecutive layers whose cells are "
           "all equal share a row.</p>"]
    for g in r.precision:
        out.append(_pgrid(g, len(r.precision) > 1))
    used = sorted({d for g in r.precision for row in g.rows for c in row.cells.values()
                   for d in c.dtypes})
    out.append('<div class="legend">' + "".join(
        f'<span><span class="swatch" style="background:{dtype_color(d)}"></span>{esc(d)}</span>'
        for d in used) + "</div>")
    return "".join(out)


def _pgrid(g: PrecisionGrid, titled: bool) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in g.columns)
    rows = []
    for row in g.rows:
        if row.first < 0:
            label = "outside layers"
        elif row.first == row.last:
            label = f"layer {row.first}"
        else:
            label = f"layers {row.first}–{row.last} <span class='muted small'>" \
                    f"({row.last - row.first + 1})</span>"
        cells = "".join(_pcell(row.cells.get(c), c) for c in g.columns)
        rows.append(f'<tr data-first="{row.first}" data-last="{row.last}">'
                    f'<th class="layers">{label}</th>{cells}</tr>')
    more = (f'<p class="muted">{g.more_layers:,} more layers not shown.</p>'
            if g.more_layers else "")
    title = f"<h3>{esc(g.component)}</h3>" if titled else ""
    return (f'{title}<table class="pmap" data-component="{esc(g.component)}"><thead><tr>'
            f"<th>layer</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}")


_METRICS: tuple[tuple[str, str, str, str], ...] = (
    # key, title, kind (count / share of values / share of blocks / log2), unit
    ("nan", "NaN codes and values", "count", "NaN"),
    ("inf", "Inf codes and values", "count", "Inf"),
    ("zero_blocks", "all-zero blocks", "blocks", "of blocks"),
    ("low_blocks", "blocks using under a quarter of the FP8 range", "blocks", "of blocks"),
    ("saturated_ppm", "saturated FP8 codes (largest magnitude)", "ppm", "of codes"),
    ("bad_scales", "bad scales (NaN, Inf, <= 0, unfilled)", "count", "bad scale(s)"),
    ("scale_log2", "scale magnitude (mean log2 of the scales)", "log2", ""),
)


def _metric_values(m: HeatMap, key: str, kind: str) -> list[float | None]:
    """A metric per cell as shown: counts, shares (of blocks; ppm as a share of
    codes), scale exponents; None where the cell has no data for it."""
    raw = m.metric(key)
    if kind in ("log2", "ppm"):
        return [None if v is None else v / 1e6 if kind == "ppm" else float(v) for v in raw]
    tensors = m.metric("tensors")
    if kind == "count":
        return [float(v) if t or v else None for v, t in zip(raw, tensors, strict=True)]
    return [v / d if d else None for v, d in zip(raw, m.metric("blocks"), strict=True)]


def _show_fn(kind: str, unit: str) -> Callable[[float | None], str]:
    def show(v: float | None) -> str:
        if v is None:
            return "no data"
        if kind == "count":
            return f"{v:,.0f} {unit}"
        if kind == "log2":
            return f"2^{v:.2f} ({2.0 ** v:.3g})"
        return f"{100 * v:.3g}% {unit}"
    return show


def _deep(r: Report) -> str:
    d = r.deep
    if d is None:
        return ('<p class="note">Tensor values were not read (a header-only scan): '
                "<code>--deep</code> adds heat maps per layer × expert (NaN codes, zero and "
                "low-range blocks, saturated codes, scale magnitude) and FP8 code histograms."
                "</p>")
    out = []
    experts = [m for m in d.maps if m.experts != [-1]]
    single = [m for m in d.maps if m.experts == [-1]]
    for m in experts:
        out.append(f'<h3>{esc(m.column)}</h3><p class="axes">layers down '
                   f"({len(m.layers):,}), experts across ({len(m.experts):,})</p>")
        out.append(_metric_maps([m], m.layers, [str(e) for e in m.experts], "expert", False))
    if single:
        layers = sorted({x for m in single for x in m.layers})
        out.append(f'<h3>Roles without experts</h3><p class="axes">layers down '
                   f"({len(layers):,}), roles across</p>")
        out.append(_metric_maps(single, layers, [m.column for m in single], "role", True))
    if not d.maps:
        out.append('<p class="muted">No tensor inside the layers was read.</p>')
    if d.histograms:
        out.append('<h3>FP8 code histograms</h3><div class="maps">')
        for h in d.histograms:
            share = _pct(h.sampled, h.total)
            out.append(f'<figure data-column="{esc(h.column)}" data-dtype="{esc(h.dtype)}">'
                       f"{_histogram_svg(h)}<figcaption><b>{esc(h.column)}</b> "
                       f"({esc(h.dtype)}): {h.sampled:,} of {h.total:,} codes counted "
                       f"({share}) in {h.tensors:,} tensors</figcaption></figure>")
        out.append("</div>")
    return "".join(out)


def _metric_maps(maps: Sequence[HeatMap], layers: Sequence[int], cols: Sequence[str],
                 col_name: str, by_column: bool) -> str:
    """One heat map per metric that any cell has data for. `by_column`: each map
    is one column (roles without experts), else one map with its experts."""
    out, quiet = [], []
    for key, title, kind, unit in _METRICS:
        grid: list[list[float | None]] = []
        if by_column:
            per = [dict(zip(m.layers, _metric_values(m, key, kind), strict=True)) for m in maps]
            grid = [[p.get(layer) for p in per] for layer in layers]
        else:
            m = maps[0]
            vals = _metric_values(m, key, kind)
            n = len(m.experts)
            grid = [vals[i * n:(i + 1) * n] for i in range(len(m.layers))]
        flat = [v for row in grid for v in row if v is not None]
        if not flat:
            continue
        show = _show_fn(kind, unit)
        if kind != "log2" and not any(flat):
            quiet.append(f'<span data-metric="{key}">{esc(title)}</span>')
            continue
        ramp = _Ramp(flat, "log2" if kind == "log2" else "count")
        svg = _heat_svg([str(x) for x in layers], cols, grid, ramp, show, "layer", col_name,
                        by_column)
        worst = ""
        if kind != "log2":
            cells = sorted(((v, li, ci) for li, row in enumerate(grid)
                            for ci, v in enumerate(row) if v), key=lambda x: -x[0])
            top = cells[:5 if kind == "count" else 2]
            rest = len(cells) - len(top)
            worst = '<p class="worst">largest: ' + "; ".join(
                f"layer {layers[li]}{'' if by_column else ' expert'} {esc(cols[ci])}: "
                f"{esc(show(v))}" for v, li, ci in top) + (
                f"; {rest:,} more cells" if rest else "") + "</p>"
        out.append(f'<figure data-metric="{key}"><figcaption class="t">{esc(title)}'
                   f"</figcaption>{svg}{_legend(ramp, show, kind != 'log2')}{worst}</figure>")
    none = (f'<p class="small muted">None in any cell: {", ".join(quiet)}.</p>'
            if quiet else "")
    return f'<div class="maps">{"".join(out)}</div>{none}'


def _where(f: Finding, root: str) -> str:
    parts = []
    if f.tensor:
        parts.append(f"<code>{esc(f.tensor)}</code>")
    if f.file:
        name = f.file
        if root and name.startswith(root.rstrip("/") + "/"):
            name = name[len(root.rstrip("/")) + 1:]
        parts.append(f'<span class="muted small">{esc(name)}</span>')
    return "<br>".join(parts)


def _findings(r: Report, prefix: str) -> str:
    return findings_box(r.findings, r.checkpoint, prefix)


def findings_box(findings: Sequence[Finding], root: str, prefix: str) -> str:
    """The findings table grouped by root cause, with its severity and code
    filters (file names relative to `root`; element ids prefixed by `prefix`)."""
    from ..codes import CODES

    if not findings:
        return '<p data-k="no-findings">No findings.</p>'
    sev_counts = {s: sum(1 for f in findings if f.severity == s) for s in reversed(Severity)}
    code_counts: dict[str, int] = {}
    for f in findings:
        for g in (f, *f.explains):
            code_counts[g.code] = code_counts.get(g.code, 0) + 1
    sev_boxes = "".join(
        f'<label><input type="checkbox" data-filter="sev" value="{s}" checked> '
        f'<span class="sev {s}">{s}</span> ({n:,})</label>' for s, n in sev_counts.items())
    code_boxes = "".join(
        f'<label title="{esc(CODES[c].description) if c in CODES else ""}"><input '
        f'type="checkbox" data-filter="code" value="{esc(c)}" checked> <code>{esc(c)}</code> '
        f"({n:,})</label>" for c, n in sorted(code_counts.items()))
    groups = []
    for f in findings:
        codes = " ".join(sorted({f.code, *(x.code for x in f.explains)}))
        rows = [_finding_row(f, root, False)]
        rows += [_finding_row(x, root, True) for x in f.explains]
        groups.append(f'<tbody class="group" data-sev="{f.severity}" data-codes="{esc(codes)}">'
                      + "".join(rows) + "</tbody>")
    return (f'<div class="findings" id="{prefix}findings-box"><div class="filters">'
            f"<fieldset><legend>severity</legend>{sev_boxes}</fieldset>"
            f"<fieldset><legend>code</legend>{code_boxes}</fieldset>"
            f'<span class="small muted"><span class="shown">{len(groups)}</span> of '
            f"{len(groups)} findings shown</span></div>"
            '<table class="findings"><colgroup><col class="c-sev"><col class="c-code"><col>'
            '<col class="c-where"></colgroup><thead><tr><th>severity</th><th>code</th>'
            "<th>message</th><th>where</th></tr></thead>" + "".join(groups) + "</table></div>")


def _finding_row(f: Finding, root: str, explained: bool) -> str:
    many = f" <span class='muted'>(×{f.count:,})</span>" if f.count > 1 else ""
    lead = "explains: " if explained else ""
    return (f'<tr class="{"explained" if explained else "root"}" data-code="{esc(f.code)}" '
            f'data-sev="{f.severity}"><td><span class="sev {f.severity}">{f.severity}</span>'
            f'</td><td><code>{esc(f.code)}</code>{many}</td><td class="msg">{lead}'
            f"{esc(f.message)}</td><td>{_where(f, root)}</td></tr>")


def _examples(r: Report) -> str:
    if not r.examples:
        return ""
    parts = []
    for role, rows in r.examples.items():
        total = r.roles[role].tensors if role in r.roles else len(rows)
        body = "".join(f"<tr><td><code>{esc(x.name)}</code></td><td>{esc(x.dtype)}</td>"
                       f"<td class='mono'>{esc(list(x.shape))}</td><td class='small muted'>"
                       f"{esc(x.file)}</td></tr>" for x in rows)
        parts.append(f"<h3>{esc(role)} <span class='muted small'>({total:,} tensors; first "
                     f"layer / expert)</span></h3><table><thead><tr><th>tensor</th><th>dtype"
                     f"</th><th>shape</th><th>file</th></tr></thead><tbody>{body}</tbody></table>")
    return "<details><summary>Example tensors of each role</summary>" + "".join(parts) + \
        "</details>"


def _badges(r: Report) -> str:
    out = []
    for s in reversed(Severity):
        n = r.count(s)
        label = {"error": "error", "warning": "warning", "info": "info"}[str(s)]
        out.append(f'<span class="badge {s if n else "zero"}" data-k="count-{s}">'
                   f'{n:,} {label}{"s" if n != 1 and str(s) != "info" else ""}</span>')
    out.append(f'<span class="badge mode">{"deep scan" if r.deep else "header-only"}</span>')
    return '<div class="badges">' + "".join(out) + "</div>"


def _article(r: Report, prefix: str, level: int) -> str:
    h = f"h{level}"
    toc = "".join(f'<a href="#{prefix}{k}">{t}</a>' for k, t in (
        ("identity", "Identity"), ("composition", "Composition"), ("precision", "Precision map"),
        ("deep", "Deep scan"), ("findings", "Findings")))
    name = os.path.basename(r.checkpoint.rstrip("/")) or r.checkpoint
    return (
        f'<article id="{prefix}report">'
        f'<{h}>ckptscan report: {esc(name)}</{h}><div class="path">{esc(r.checkpoint)}</div>'
        f'{_badges(r)}<nav class="toc">{toc}</nav>'
        f'<section id="{prefix}identity"><h2>Identity</h2>{_identity(r)}</section>'
        f'<section id="{prefix}composition"><h2>Composition</h2>{_composition(r)}</section>'
        f'<section id="{prefix}precision"><h2>Precision map</h2>{_precision(r)}</section>'
        f'<section id="{prefix}deep"><h2>Deep scan: layer × expert</h2>{_deep(r)}</section>'
        f'<section id="{prefix}findings"><h2>Findings</h2>{_findings(r, prefix)}</section>'
        f"<section>{_examples(r)}</section></article>")


# ---------------------------------------------------------------- entry points


def to_html(report: Report | list[Report], *, back: str | None = None) -> str:
    """One self-contained page: one report, or several (one article each, with
    links at the top). `back`: a relative link shown first (the farm page)."""
    reports = report if isinstance(report, list) else [report]
    back_link = f'<p><a href="{esc(back)}">← all checkpoints</a></p>' if back else ""
    if len(reports) == 1:
        r = reports[0]
        name = os.path.basename(r.checkpoint.rstrip("/")) or r.checkpoint
        return _page(f"ckptscan: {esc(name)}", back_link + _article(r, "", 1))
    index = "".join(
        f'<li><a href="#r{i}-report">{esc(r.checkpoint)}</a> — {r.count(Severity.ERROR):,} '
        f"errors, {r.count(Severity.WARNING):,} warnings</li>" for i, r in enumerate(reports))
    body = (f"{back_link}<h1>ckptscan: {len(reports):,} checkpoints</h1><ol>{index}</ol>"
            + "".join(_article(r, f"r{i}-", 1) for i, r in enumerate(reports)))
    return _page(f"ckptscan: {len(reports):,} checkpoints", body)


def to_html_summary(r: Report) -> str:
    """A compact, script-free summary (what a notebook shows for a Report)."""
    t = r.total
    dtypes = sorted(r.dtypes.items(), key=lambda kv: -kv[1].parameters)
    bar = "".join(
        f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="14" fill="{dtype_color(d)}">'
        f"<title>{esc(d)}: {c.parameters:,} parameters</title></rect>"
        for d, c, x, w in _stack(dtypes, t.parameters, 420))
    rows = "".join(
        f'<tr><td><span class="swatch" style="background:{dtype_color(d)}"></span>{esc(d)}'
        f'</td><td class="num">{c.tensors:,}</td><td class="num">{c.parameters:,}</td>'
        f'<td class="num">{human_bytes(c.bytes)}</td></tr>' for d, c in dtypes)
    roles = ", ".join(f"{esc(k)} {human_count(v.parameters)}" for k, v in r.roles.items())
    finds = "".join(
        f'<li><span class="sev {f.severity}">{f.severity}</span> <code>{esc(f.code)}</code> '
        f"{esc(_clip(f.message, 160))}</li>" for f in r.findings[:8])
    more = (f"<li class='muted'>… {len(r.findings) - 8:,} more</li>"
            if len(r.findings) > 8 else "")
    q = r.quantization
    quant = (f"{esc(q.method or '-')} / {esc(q.format or '-')}"
             + (f" / block {esc('x'.join(map(str, q.block_size)))}" if q.block_size else "")
             if q.is_fp8 or q.method else "none")
    counts = ", ".join(f'<span class="sev {s}">{r.count(s):,} {s}</span>'
                       for s in reversed(Severity))
    css = (".ckptscan-summary{font:13px/1.4 system-ui,sans-serif;max-width:760px}"
           ".ckptscan-summary table{border-collapse:collapse;margin:4px 0}"
           ".ckptscan-summary td,.ckptscan-summary th{padding:1px 8px;text-align:left;"
           "border-bottom:1px solid #e3e7eb}.ckptscan-summary .num{text-align:right}"
           ".ckptscan-summary .swatch{display:inline-block;width:9px;height:9px;"
           "margin-right:4px}.ckptscan-summary .sev{font-weight:600}"
           ".ckptscan-summary .sev.error{color:#c0392b}.ckptscan-summary .sev.warning"
           "{color:#b9770e}.ckptscan-summary .sev.info{color:#2471a3}"
           ".ckptscan-summary .muted{color:#5d6b78}.ckptscan-summary ul{margin:4px 0;"
           "padding-left:18px}")
    return (
        f'<div class="ckptscan-summary"><style>{css}</style>'
        f"<b>ckptscan report</b>: <code>{esc(r.checkpoint)}</code><br>"
        f'<span class="muted">{esc(r.source.kind)}, {esc(r.source.format)}; model_type '
        f"{esc(r.model_type or '-')} ({esc(r.family)}); "
        f"{'deep scan' if r.deep else 'header-only'}</span><br>"
        f"{t.tensors:,} tensors, {t.parameters:,} parameters ({human_count(t.parameters)}), "
        f"{human_bytes(t.bytes)} in {len(r.shards.found):,} shards; quantization {quant}<br>"
        f'<svg width="420" height="14" role="img">{bar}</svg>'
        f"<table><tr><th>dtype</th><th>tensors</th><th>parameters</th><th>bytes</th></tr>"
        f"{rows}</table><span class='muted'>roles:</span> {roles}<br>"
        f"findings: {counts}<ul>{finds}{more}</ul></div>")


def _stack(items: Sequence[tuple[str, Count]], total: int,
           width: float) -> Iterable[tuple[str, Count, float, float]]:
    x = 0.0
    for name, c in items:
        w = width * c.parameters / total if total else 0.0
        yield name, c, x, w
        x += w


# ---------------------------------------------------------------- the farm


_FARM_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    # key, header, numeric
    ("path", "checkpoint", False), ("format", "format", False),
    ("model_type", "model type", False), ("parameters", "params", True),
    ("tensors", "tensors", True), ("bytes", "size", True), ("bpw", "bits/w", True),
    ("main_dtype", "main dtype", False), ("dtypes", "dtype mix (params)", False),
    ("quant", "quantization", False), ("errors", "err", True),
    ("warnings", "warn", True), ("infos", "info", True), ("deep", "deep", False),
)


def page_name(i: int, path: str) -> str:
    """The file name of a farm checkpoint's page (safe on every file system)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(path.rstrip("/")))[:60].strip("-.")
    return f"{i:04d}-{slug or 'checkpoint'}.html"


def farm_html(rows: Sequence[dict[str, Any]], links: Sequence[str | None] | None = None,
              title: str = "ckptscan farm") -> str:
    """The farm page: one row per stored checkpoint (`store.SUMMARY_COLUMNS`
    rows), sortable, each linking to `links[i]` when given."""
    from ..farm.table import dtype_mix

    head = "".join(
        f'<th{" class=num" if num else ""} data-type="{"num" if num else "text"}">'
        f"<button>{label}</button></th>" for _, label, num in _FARM_COLUMNS)
    body = []
    root = _common_root([str(r["path"]) for r in rows])
    for i, row in enumerate(rows):
        href = links[i] if links is not None else None
        path = esc(row["path"])
        shown = esc(os.path.relpath(row["path"], root) if root else row["path"])
        name = f'<a href="{esc(href)}" title="{path}">{shown}</a>' if href else shown
        params, nbytes = int(row["parameters"] or 0), int(row["bytes"] or 0)
        bpw = 8 * nbytes / params if params else 0.0
        quant = " ".join(str(x) for x in (row.get("quant_method"), row.get("quant_format"),
                                          row.get("quant_block")) if x) or "-"
        sev = "error" if row["errors"] else "warning" if row["warnings"] else "ok"
        cells = {
            "path": f"<td>{name}</td>",
            "format": f"<td>{esc(row['format'])}</td>",
            "model_type": f"<td>{esc(row['model_type'] or '-')}</td>",
            "parameters": f'<td class="num" data-v="{params}">{human_count(params)}</td>',
            "tensors": f'<td class="num" data-v="{int(row["tensors"])}">'
                       f"{int(row['tensors']):,}</td>",
            "bytes": f'<td class="num" data-v="{nbytes}">{human_bytes(nbytes)}</td>',
            "bpw": f'<td class="num" data-v="{bpw:.4f}">{bpw:.2f}</td>' if params else
                   '<td class="num" data-v="0">-</td>',
            "main_dtype": f"<td>{esc(row['main_dtype'] or '-')}</td>",
            "dtypes": f"<td class='small'>{esc(dtype_mix(row['dtypes']))}</td>",
            "quant": f"<td>{esc(quant)}</td>",
            "errors": f'<td class="num" data-v="{row["errors"]}">{row["errors"]:,}</td>',
            "warnings": f'<td class="num" data-v="{row["warnings"]}">{row["warnings"]:,}</td>',
            "infos": f'<td class="num" data-v="{row["infos"]}">{row["infos"]:,}</td>',
            "deep": f"<td>{'yes' if row['deep'] else 'no'}</td>",
        }
        body.append(f'<tr class="row-{sev}" data-path="{path}">'
                    + "".join(cells[k] for k, _, _ in _FARM_COLUMNS) + "</tr>")
    n = len(rows)
    bad = sum(1 for r in rows if r["errors"])
    warn = sum(1 for r in rows if r["warnings"] and not r["errors"])
    summary = (f'<p><b data-k="checkpoints">{n:,}</b> checkpoints'
               + (f' under <code data-k="root">{esc(root)}</code>' if root else "")
               + f': <b data-k="with-errors">{bad:,}</b> with errors, <b data-k="with-warnings">'
               f"{warn:,}</b> with warnings only. Click a column to sort; a checkpoint's name "
               "opens its report.</p>")
    filt = ('<input class="farmfilter" type="search" placeholder="filter by path" '
            'aria-label="filter by path">')
    table = (f'<table class="farm sortable"><thead><tr>{head}</tr></thead>'
             f"<tbody>{''.join(body)}</tbody></table>")
    return _page(esc(title), f"<h1>{esc(title)}</h1>{summary}{filt}{table}")


def _common_root(paths: Sequence[str]) -> str:
    """The directory all `paths` are under (shown once, the rows relative to it)."""
    if len(paths) < 2:
        return os.path.dirname(paths[0].rstrip("/")) if paths else ""
    try:
        return os.path.commonpath(paths)
    except ValueError:  # relative and absolute paths mixed
        return ""


def write_farm(rows: Sequence[dict[str, Any]], load: Callable[[str], Report | None],
               path: str) -> list[str]:
    """Writes the farm page to `path` and one page per checkpoint into
    ``path + ".d/"`` (pages of an earlier run there are replaced). Returns the
    files written."""
    folder = path + ".d"
    os.makedirs(folder, exist_ok=True)
    for old in os.listdir(folder):
        if re.fullmatch(r"\d{4,}-[A-Za-z0-9._-]*\.html", old):
            os.remove(os.path.join(folder, old))
    back = "../" + quote(os.path.basename(path))
    links: list[str | None] = []
    written = []
    for i, row in enumerate(rows):
        report = load(row["path"])
        if report is None:
            links.append(None)
            continue
        name = page_name(i, row["path"])
        target = os.path.join(folder, name)
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(to_html(report, back=back))
        written.append(target)
        links.append(quote(os.path.basename(folder)) + "/" + quote(name))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(farm_html(rows, links))
    return [path, *written]


__all__ = ["dtype_color", "esc", "farm_html", "page_name", "to_html", "to_html_summary",
           "write_farm"]
