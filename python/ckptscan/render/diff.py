"""Renderers of a `ckptscan.diff.Diff`: text (within a width), JSON (schema
``ckptscan.diff/1`` plus the ``--allow`` verdict), Markdown. Lists longer than
`LIST_MAX` are cut in text and Markdown (the JSON lists everything)."""

from __future__ import annotations

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
