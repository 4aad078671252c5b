"""Renderers of a `ckptscan.diff.Diff`: text (within a width), JSON (schema
``ckptscan.diff/1`` plus the ``--allow`` verdict), Markdown, and one
self-contained HTML page (`to_html`: the HTML report's page, CSP and escaping).
Lists longer than `LIST_MAX` are cut in text and Markdown, `HTML_LIST_MAX` on
the page (the JSON lists everything)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import orjson

from ..diff import Diff, Rule, Side, ValueChange
from .console import DEFAULT_WIDTH, Style, elide, safe, table, wrap
from .json import jsonable
from .markdown import cell, code
from .text import human_bytes

LIST_MAX = 20


def verdict(d: Diff, rules: Sequence[Rule]) -> str:
    if not d.differs and not (d.deep and d.of("bytes")):
        return "identical" + (" (bytes compared)" if d.deep else "")
    left = d.violations(rules)
    if not left:
        return "they differ only as --allow allows" if rules else "they differ"
    return "they differ: " + ", ".join(left)


def to_json(d: Diff, rules: Sequence[Rule] = ()) -> bytes:
    doc = d.to_dict() | {"allow": [str(r) for r in rules], "violations": d.violations(rules)}
    return orjson.dumps(jsonable(doc), option=orjson.OPT_INDENT_2) + b"\n"


def _value(v: Any, width: int) -> str:
    try:
        text = orjson.dumps(v).decode()
    except TypeError:
        text = repr(v)
    return elide(safe(text), width)


def _side(label: str, s: Side) -> str:
    about = f"{s.tensors:,} tensors, {human_bytes(s.bytes)}, {s.shards} file" + \
        ("s" if s.shards != 1 else "")
    if s.model_type:
        about += f", {s.model_type}"
    return f"{label}: {safe(s.path)} ({about})"


def _tensors(n: int) -> str:
    return f"{n:,} tensor{'s' * (n != 1)}"


def _more(n: int, shown: int) -> Iterator[str]:
    if n > shown:
        yield f"  ... and {n - shown:,} more (--format json lists all)"


def _values(title: str, changes: list[ValueChange], st: Style, width: int) -> Iterator[str]:
    yield ""
    yield st.bold(f"{title}: {len(changes)} difference{'s' * (len(changes) != 1)}")
    room = max(20, width - 6)
    for v in changes[:LIST_MAX]:
        key = safe(v.key)
        if v.kind == "added":
            yield st.added(elide(f"  + {key}: {_value(v.b, room)}", width))
        elif v.kind == "removed":
            yield st.removed(elide(f"  - {key}: {_value(v.a, room)}", width))
        else:
            line = f"  ~ {key}: {_value(v.a, room // 2)} -> {_value(v.b, room // 2)}"
            yield from wrap(line, width, "      ", "")
    yield from _more(len(changes), LIST_MAX)


def to_text(d: Diff, rules: Sequence[Rule] = (), color: bool = False,
            width: int = DEFAULT_WIDTH) -> str:
    return "\n".join(_lines(d, rules, Style(color), width)) + "\n"


def _lines(d: Diff, rules: Sequence[Rule], st: Style, width: int) -> Iterator[str]:
    ruler = "=" * width
    yield ruler
    yield st.bold("ckptscan diff")
    yield from wrap(_side("A", d.a), width, "     ", "  ")
    yield from wrap(_side("B", d.b), width, "     ", "  ")
    for label, s in (("A", d.a), ("B", d.b)):
        for p in s.problems:
            yield from wrap(f"{label} not compared: {safe(p)}", width, "      ",
                            "  " + st.sev("warning", "!") + " ")
    yield ruler
    yield ""
    n_dtype, n_shape, n_scheme = (len(d.of(w)) for w in ("dtype", "shape", "scheme"))
    yield st.bold(f"Tensors: {d.same_name:,} same name, {len(d.renamed):,} renamed, "
                  f"{len(d.removed):,} removed, {len(d.added):,} added")
    yield (f"  changed: {n_dtype:,} dtype, {n_shape:,} shape, {n_scheme:,} scheme"
           + (f", {len(d.of('bytes')):,} bytes" if d.deep else ""))
    if d.renamed:
        yield ""
        yield st.bold(f"Renamed: {_tensors(len(d.renamed))}")
        for g in d.rename_groups[:LIST_MAX]:
            yield from wrap(f"{safe(g.rule)} ({_tensors(g.tensors)})", width, "      ", "  ")
            eg = next((rn for rn in d.renamed if rn.why == g.rule), None) or next(
                (rn for rn in d.renamed if g.rule in rn.why.split("; ")), None)
            if eg is not None:
                yield "    e.g. " + elide(safe(eg.a), width - 9)
                yield "      -> " + elide(safe(eg.b), width - 9)
        if len(d.rename_groups) > LIST_MAX:
            yield f"  ... and {len(d.rename_groups) - LIST_MAX:,} more rules"
    for title, items, mark, paint in (("Removed", d.removed, "-", st.removed),
                                      ("Added", d.added, "+", st.added)):
        if not items:
            continue
        yield ""
        yield st.bold(f"{title}: {_tensors(len(items))}")
        rows = [[f"{mark} {safe(t.name)}", t.dtype, str(list(t.shape))]
                for t in items[:LIST_MAX]]
        for line in table(rows, width):
            yield paint(line)
        yield from _more(len(items), LIST_MAX)
    changed = [c for c in d.changes if c.what != "bytes"]
    if changed:
        yield ""
        yield st.bold(f"Changed: {len(changed):,} dtype / shape / scheme changes")
        rows = [[safe(c.b), c.what, f"{c.before} -> {c.after}"] for c in changed[:LIST_MAX]]
        yield from table(rows, width)
        yield from _more(len(changed), LIST_MAX)
    moved = {r: x for r, x in d.roles.items() if x.changed}
    if moved:
        yield ""
        yield st.bold("By role")
        rows = [["role", "A", "B", "added", "removed", "renamed", "shape"]]
        rows += [[r, f"{x.tensors_a:,}", f"{x.tensors_b:,}", f"{x.added:,}", f"{x.removed:,}",
                  f"{x.renamed:,}", f"{x.shape:,}"] for r, x in moved.items()]
        if d.deep:
            rows[0].append("bytes")
            for row, x in zip(rows[1:], moved.values(), strict=True):
                row.append(f"{x.bytes:,}")
        yield from table(rows, width, right=frozenset(range(1, len(rows[0]))))
        for r, x in moved.items():
            mix = [f"dtype {k} x{n:,}" for k, n in x.dtype.items()]
            mix += [f"scheme {k} x{n:,}" for k, n in x.scheme.items()]
            if mix:
                yield from wrap(f"{r}: {'; '.join(mix)}", width, "      ", "  ")
    if d.config:
        yield from _values("config.json", d.config, st, width)
    if d.quantization:
        yield from _values("quantization_config", d.quantization, st, width)
    if d.deep is not None:
        dd = d.deep
        differ = d.of("bytes")
        yield ""
        yield st.bold(f"Bytes (--deep, {dd.to_dict()['hash']}): {dd.compared:,} pairs of equal "
                      f"dtype and shape, {human_bytes(dd.bytes)}")
        yield f"  {dd.equal:,} equal, {len(differ):,} differ ({dd.seconds:.2f} s)"
        for c in differ[:LIST_MAX]:
            yield "  " + elide(safe(c.b), width - 2)
        yield from _more(len(differ), LIST_MAX)
        for u in dd.unreadable[:LIST_MAX]:
            yield from wrap(f"unreadable: {safe(u)}", width, "      ", "  ")
    yield ""
    v = verdict(d, rules)
    ok = not d.violations(rules)
    yield from wrap("Result: " + v, width, "  ", "")
    if rules:
        yield from wrap("allowed: " + ", ".join(safe(str(r)) for r in rules), width, "  ",
                        "  ")
    yield ruler if ok else st.sev("error", ruler)


def to_markdown(d: Diff, rules: Sequence[Rule] = ()) -> str:
    out = ["# ckptscan diff", "",
           f"- A: {code(d.a.path)}: {d.a.tensors:,} tensors, {human_bytes(d.a.bytes)}, "
           f"{d.a.shards} file{'s' * (d.a.shards != 1)}",
           f"- B: {code(d.b.path)}: {d.b.tensors:,} tensors, {human_bytes(d.b.bytes)}, "
           f"{d.b.shards} file{'s' * (d.b.shards != 1)}"]
    for label, s in (("A", d.a), ("B", d.b)):
        out += [f"- {label} not compared: {cell(p)}" for p in s.problems]
    out += [f"- **{cell(verdict(d, rules))}**", "",
            "| same name | renamed | removed | added | dtype | shape | scheme | bytes |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
            (f"| {d.same_name:,} | {len(d.renamed):,} | {len(d.removed):,} | {len(d.added):,} "
            f"| {len(d.of('dtype')):,} | {len(d.of('shape')):,} | {len(d.of('scheme')):,} | "
            + (f"{len(d.of('bytes')):,} |" if d.deep else "- |")),
            ""]
    if d.rename_groups:
        out += ["## Renamed", ""] + [f"- {code(g.rule)}: {g.tensors:,} tensors"
                                     for g in d.rename_groups] + [""]
    for title, items in (("Removed", d.removed), ("Added", d.added)):
        if items:
            out += [f"## {title}", "", "| tensor | dtype | shape |", "|---|---|---|"]
            out += [f"| {code(t.name)} | {t.dtype} | {list(t.shape)} |"
                    for t in items[:LIST_MAX]]
            out += _md_more(len(items)) + [""]
    if d.changes:
        out += ["## Changed", "", "| tensor | what | A | B |", "|---|---|---|---|"]
        out += [f"| {code(c.b)} | {c.what} | {cell(c.before)} | {cell(c.after)} |"
                for c in d.changes[:LIST_MAX]]
        out += _md_more(len(d.changes)) + [""]
    moved = {r: x for r, x in d.roles.items() if x.changed}
    if moved:
        out += ["## By role", "", "| role | added | removed | renamed | dtype | shape | scheme "
                "| bytes |", "|---|---:|---:|---:|---|---:|---|---:|"]
        for r, x in moved.items():
            dt = ", ".join(f"{k} x{n:,}" for k, n in x.dtype.items())
            sc = ", ".join(f"{k} x{n:,}" for k, n in x.scheme.items())
            out.append(f"| {r} | {x.added:,} | {x.removed:,} | {x.renamed:,} | {cell(dt)} | "
                       f"{x.shape:,} | {cell(sc)} | {x.bytes:,} |")
        out.append("")
    for title, changes in (("config.json", d.config), ("quantization_config", d.quantization)):
        if changes:
            out += [f"## {title}", "", "| key | A | B |", "|---|---|---|"]
            out += [f"| {code(v.key)} | {_md_value(v.a, v.kind != 'added')} | "
                    f"{_md_value(v.b, v.kind != 'removed')} |" for v in changes[:LIST_MAX]]
            out += _md_more(len(changes)) + [""]
    return "\n".join(out) + "\n"


def _md_value(v: Any, present: bool) -> str:
    return code(orjson.dumps(v).decode()) if present else "(absent)"


def _md_more(n: int) -> list[str]:
    return ["", f"... and {n - LIST_MAX:,} more (the JSON output lists all)"] \
        if n > LIST_MAX else []


# ---------------------------------------------------------------- HTML

HTML_LIST_MAX = 500  # rows per list on the page (the JSON lists everything)
_KINDS = (("added", "#54a24b"), ("removed", "#e45756"), ("renamed", "#4c78a8"),
          ("dtype", "#f58518"), ("shape", "#b279a2"), ("scheme", "#eeca3b"),
          ("bytes", "#9d755d"))


def _role_counts(x: Any) -> dict[str, int]:
    return {"added": x.added, "removed": x.removed, "renamed": x.renamed,
            "dtype": sum(x.dtype.values()), "shape": x.shape,
            "scheme": sum(x.scheme.values()), "bytes": x.bytes}


def _role_bars(d: Diff, width: int = 640) -> str:
    """Per role with changes: one stacked bar of its tensors added, removed,
    renamed and changed (dtype, shape, scheme, bytes), drawn to a common scale."""
    from .html import esc

    moved = [(r, _role_counts(x)) for r, x in d.roles.items() if x.changed]
    if not moved:
        return ""
    label_w, value_w, bar_h, gap = 130, 70, 16, 6
    bar_w = width - label_w - value_w
    top = max(sum(c.values()) for _, c in moved) or 1
    h = len(moved) * (bar_h + gap) + 4
    out = [f'<svg class="bars" width="{width}" height="{h}" viewBox="0 0 {width} {h}" '
           'role="img" aria-label="changes per role">']
    for i, (role, counts) in enumerate(moved):
        y = 2 + i * (bar_h + gap)
        out.append(f'<text x="{label_w - 6}" y="{y + 12}" text-anchor="end" font-size="12">'
                   f"{esc(role)}</text>")
        x = float(label_w)
        for kind, color in _KINDS:
            n = counts[kind]
            if not n:
                continue
            w = max(bar_w * n / top, 1.0)
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" '
                       f'fill="{color}" data-kind="{kind}"><title>{esc(role)}: {n:,} {kind}'
                       "</title></rect>")
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + 12}" font-size="12">'
                   f"{sum(counts.values()):,}</text>")
    out.append("</svg>")
    legend = "".join(f'<span><span class="swatch" style="background:{c}"></span>{k}</span>'
                     for k, c in _KINDS)
    return f'<figure>{"".join(out)}<div class="legend">{legend}</div></figure>'


def _list_table(head: Sequence[str], rows: list[list[str]], total: int,
                numeric: int = 1 << 30) -> str:
    """Rows already escaped; sortable by any column; columns from `numeric` on
    are numbers (right-aligned, sorted as numbers)."""
    th = "".join(f'<th class="num" data-type="num"><button>{h}</button></th>' if i >= numeric
                 else f"<th><button>{h}</button></th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(
        f"<td class='num' data-v='{c.replace(',', '')}'>{c}</td>" if i >= numeric
        else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    more = (f"<p class='muted small'>{total - len(rows):,} more (the JSON lists all).</p>"
            if total > len(rows) else "")
    return (f'<table class="sortable"><thead><tr>{th}</tr></thead><tbody>{body}</tbody>'
            f"</table>{more}")


def _json_cell(v: Any, present: bool) -> str:
    from .html import esc

    if not present:
        return '<span class="muted">(absent)</span>'
    try:
        text = orjson.dumps(v).decode()
    except TypeError:
        text = repr(v)
    return f"<code>{esc(text)}</code>"


def to_html(d: Diff, rules: Sequence[Rule] = ()) -> str:
    """The comparison as one self-contained page (the HTML report's page: no
    network, every string escaped, a CSP that allows only its own script)."""
    from .html import _kv, _page, esc

    def name(s: Side) -> str:
        return os.path.basename(s.path.rstrip("/")) or s.path

    ok = not d.violations(rules)
    v = verdict(d, rules)
    badge = (f'<span class="badge {"mode" if ok else "error"}" data-k="verdict">'
             f"{esc(v)}</span>")
    sides = []
    for label, s in (("A", d.a), ("B", d.b)):
        about = (f"{s.tensors:,} tensors, {esc(human_bytes(s.bytes))}, {s.shards} "
                 f"file{'s' * (s.shards != 1)}" + (f", <code>{esc(s.model_type)}</code>"
                                                   if s.model_type else ""))
        problems = "".join(f"<br><span class='sev warning'>not compared</span> {esc(p)}"
                           for p in s.problems)
        sides.append((label, f'<code data-k="{label.lower()}">{esc(s.path)}</code><br>'
                             f'<span class="muted">{about}</span>{problems}'))
    counts = [("same name", d.same_name), ("renamed", len(d.renamed)),
              ("removed", len(d.removed)), ("added", len(d.added)),
              ("dtype", len(d.of("dtype"))), ("shape", len(d.of("shape"))),
              ("scheme", len(d.of("scheme")))] + ([("bytes", len(d.of("bytes")))]
                                                  if d.deep else [])
    count_table = ("<table><thead><tr>" + "".join(f"<th class='num'>{k}</th>" for k, _ in counts)
                   + "</tr></thead><tbody><tr>" + "".join(
                       f"<td class='num' data-k='n-{k.replace(' ', '-')}'>{n:,}</td>"
                       for k, n in counts) + "</tr></tbody></table>")
    parts = [f"<h1>ckptscan diff: {esc(name(d.a))} → {esc(name(d.b))}</h1>",
             f'<div class="badges">{badge}</div>',
             '<section id="summary"><h2>Summary</h2>', _kv(sides), count_table]
    if rules:
        parts.append("<p>allowed: " + ", ".join(f"<code>{esc(str(r))}</code>" for r in rules)
                     + "</p>")
    parts.append("</section>")
    moved = {r: x for r, x in d.roles.items() if x.changed}
    if moved:
        rows = [[esc(r), f"{x.tensors_a:,}", f"{x.tensors_b:,}"]
                + [f"{_role_counts(x)[k]:,}" for k, _ in _KINDS] for r, x in moved.items()]
        parts += ['<section id="roles"><h2>By role</h2>', _role_bars(d),
                  _list_table(["role", "A", "B"] + [k for k, _ in _KINDS], rows, len(rows), 1),
                  "</section>"]
    if d.rename_groups:
        rows = []
        for g in d.rename_groups[:HTML_LIST_MAX]:
            eg = next((rn for rn in d.renamed if rn.why == g.rule), None) or next(
                (rn for rn in d.renamed if g.rule in rn.why.split("; ")), None)
            rows.append([f"<code>{esc(g.rule)}</code>", f"{g.tensors:,}",
                         f"<code>{esc(eg.a)}</code> → <code>{esc(eg.b)}</code>"
                         if eg is not None else ""])
        parts += ['<section id="renamed"><h2>Renamed</h2>',
                  _list_table(["rule", "tensors", "example"], rows, len(d.rename_groups)),
                  "</section>"]
    for key, title, items in (("removed", "Removed (in A only)", d.removed),
                              ("added", "Added (in B only)", d.added)):
        if items:
            rows = [[f"<code>{esc(t.name)}</code>", esc(t.role), esc(t.dtype),
                     esc(str(list(t.shape)))] for t in items[:HTML_LIST_MAX]]
            parts += [f'<section id="{key}"><h2>{title}: {len(items):,}</h2>',
                      _list_table(["tensor", "role", "dtype", "shape"], rows, len(items)),
                      "</section>"]
    if d.changes:
        rows = [[f"<code>{esc(c.b)}</code>" + (f"<br><span class='small muted'>A: "
                                                 f"<code>{esc(c.a)}</code></span>"
                                                 if c.a != c.b else ""),
                 esc(c.role), esc(c.what), f"<code>{esc(c.before)}</code>",
                 f"<code>{esc(c.after)}</code>"] for c in d.changes[:HTML_LIST_MAX]]
        parts += [f'<section id="changed"><h2>Changed: {len(d.changes):,}</h2>',
                  _list_table(["tensor", "role", "what", "A", "B"], rows, len(d.changes)),
                  "</section>"]
    for key, title, changes in (("config", "config.json", d.config),
                                ("quantization", "quantization_config", d.quantization)):
        if changes:
            rows = [[f"<code>{esc(c.key)}</code>", esc(c.kind),
                     _json_cell(c.a, c.kind != "added"), _json_cell(c.b, c.kind != "removed")]
                    for c in changes[:HTML_LIST_MAX]]
            parts += [f'<section id="{key}"><h2>{title}: {len(changes):,} differences</h2>',
                      _list_table(["key", "kind", "A", "B"], rows, len(changes)),
                      "</section>"]
    if d.deep is not None:
        dd = d.deep
        parts += ['<section id="bytes"><h2>Bytes (--deep)</h2>',
                  f"<p>{dd.compared:,} pairs of equal dtype and shape, "
                  f"{esc(human_bytes(dd.bytes))} ({esc(dd.to_dict()['hash'])}): "
                  f"<b data-k='equal'>{dd.equal:,}</b> equal, "
                  f"<b data-k='differ'>{len(d.of('bytes')):,}</b> differ, in "
                  f"{dd.seconds:.2f} s.</p>"]
        parts += [f"<p class='small'>unreadable: {esc(u)}</p>" for u in dd.unreadable[:50]]
        parts.append("</section>")
    if not d.differs and not (d.deep and d.of("bytes")):
        parts.append('<p data-k="identical">No difference.</p>')
    return _page(f"ckptscan diff: {esc(name(d.a))} vs {esc(name(d.b))}",
                 '<article id="diff">' + "".join(parts) + "</article>")
