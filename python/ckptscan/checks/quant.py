"""The quantization scheme the checkpoint declares against its tensors.

Driven by the scheme registry (`ckptscan.schemes`) through the scan's
`QuantMap` (weights in their layouts, companions paired by name): every check
works per name template and distinct shape or dtype; findings name the scheme's
own tensor names. Without a declared scheme, FP8 tensors are a warning.

- the detection's own problems (a value loaders cannot use: ``quant-config-invalid``;
  others: ``config-value``), each naming its key and file;
- weights: a dtype that is not the layout's; quantized although excluded or not
  targeted; left in high precision although targeted;
- companions: missing (``fp8-scale-missing`` for an FP8 weight's scale,
  ``companion-missing`` otherwise), orphans, on high-precision weights, shape and
  dtype against the scheme, another convention's scale (``scale-convention-mixed``);
- exclusion entries that match nothing, or only under a wrapper prefix;
- fused siblings (q/k/v, gate/up, w1/w3) whose per-tensor / global scales differ
  (these few scalars are read, through copies);
- tensor-parallel readiness: a warning when TP 8 cannot split every block- or
  group-quantized linear on block boundaries.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from .. import codes, schemes
from ..context import ScanContext
from ..frame import Frame, match_rows
from ..quantmap import (
    CompanionRows,
    Loose,
    PlainLinear,
    QuantMap,
    WeightSet,
    distinct_shapes,
    module_kind,
    named_rows,
)
from ..shard import DTYPE_NAMES
from ..taxonomy import COMPONENT_CODE, DECODER, KIND_CODE, SCALE, WEIGHT
from ..taxonomy.classify import SLOT
from . import data

# The last key components whose bad value leaves loaders without a usable scheme.
_UNUSABLE = frozenset({
    "weight_block_size", "fmt", "quant_algo", "format", "config_groups", "num_bits", "type",
    "strategy", "group_size", "block_structure", "bits", "w_bit", "q_group_size",
    "load_in_4bit", "bnb_4bit_quant_type", "mode", "quantized_layers", "expert_dtype",
    "quantization", "checkpoint_format", "scale_fmt", "weights",
})
_FP8_FORMATS = frozenset({"E4M3", "E5M2", "E4M3FNUZ", "E5M2FNUZ"})
#: per-tensor / global scales read to compare fused siblings: elements per tensor
#: (a scalar, or one per expert) and tensors per scan
FUSED_MAX_ELEMENTS = 4096
FUSED_MAX_READS = 50_000
#: scales judged by the header checks: at most this many values each
SCALAR_MAX_ELEMENTS = 512
_SCALAR_KINDS = frozenset({schemes.GLOBAL_SCALE, schemes.INPUT_SCALE, schemes.KV_SCALE})


def check(ctx: ScanContext) -> None:
    det = ctx.detection
    _problems(ctx, det)
    qm = ctx.quant_map
    if det is None:
        _undeclared_fp8(ctx)
        return
    for ws in qm.sets:
        _weight_set(ctx, qm, ws)
        for cr in ws.companions:
            _companion(ctx, qm, ws, cr)
    _conventions(ctx, qm)
    # a weight gone leaves several companions: the scale among them names it
    for lo in sorted(qm.loose, key=lambda lo: lo.roles[0].companion.kind != schemes.SCALE):
        _loose(ctx, qm, lo)
    _strays(ctx, qm)
    _extras(ctx, qm)
    for pl in qm.plain:
        _plain(ctx, pl)
    _exclusions(ctx, qm)
    _scalars(ctx, qm)
    _fused(ctx, qm)
    _tensor_parallel(ctx, qm)


def _fixed(text: str) -> Callable[[int], str]:
    """A finding message that is the same for every row."""
    def message(i: int) -> str:
        return text
    return message


def _orphan(wname: Callable[[int], str]) -> Callable[[int], str]:
    def message(i: int) -> str:
        return f"no weight {wname(i)} exists"
    return message


def _beside(qm: QuantMap, w_of: dict[int, int], convention: str) -> Callable[[int], str]:
    def message(i: int) -> str:
        w = w_of[i]
        return (f"{convention} scale beside {qm.frame.name(w)}'s own "
                f"({qm.sets[int(qm.set_of[w])].layout.title}): two conventions")
    return message


def _on_plain(frame: Frame, w_of: dict[int, int]) -> Callable[[int], str]:
    def message(i: int) -> str:
        return f"its weight {frame.name(w_of[i])} is {frame.dtype_name(w_of[i])}"
    return message


# ---- the declaration ----------------------------------------------------------------------


def _problems(ctx: ScanContext, det: schemes.Detection | None) -> None:
    if det is None:
        return
    seen = set()
    for p in det.problems:
        seen.add(p.message)
        last = re.sub(r"\W", "", p.key.rpartition(".")[2])
        code = "quant-config-invalid" if last in _UNUSABLE else "config-value"
        ctx.findings.add(codes.finding(code, f"{p.key}: {p.message}", ctx.source_file(p.source),
                                       key=p.key))
    for text in det.exclusions.problems():
        key, _, message = text.partition(": ")
        if message not in seen:
            ctx.findings.add(codes.finding("config-value", text, ctx.where_config, key=key))


def _undeclared_fp8(ctx: ScanContext) -> None:
    frame = ctx.frame
    fp8 = np.isin(frame.dtype, [DTYPE_NAMES.index(d) for d in schemes.FP8_DTYPES])
    if fp8.any():
        ctx.findings.add(codes.finding(
            "fp8-without-config", f"{int(fp8.sum())} FP8 tensors but no quantization scheme is "
            "declared (config.json quantization_config, hf_quant_config.json): loaders will not "
            "know their scales or block size", str(ctx.ckpt.path)))


# ---- weights ---------------------------------------------------------------------------------


def _weight_set(ctx: ScanContext, qm: QuantMap, ws: WeightSet) -> None:
    det, frame, fs = qm.det, ctx.frame, ctx.findings
    assert det is not None
    lay = ws.layout
    if not ws.dtype_ok:
        fp8 = ws.dtype in schemes.FP8_DTYPES and set(lay.weight_dtypes) <= schemes.FP8_DTYPES
        code = "fp8-format-mismatch" if fp8 else "quant-weight-dtype"
        fs.rows(code, ws.rows, lambda i: f"{ws.dtype} ({ws.weight_format}), but {lay.title} "
                f"stores its weights as {' or '.join(lay.weight_dtypes)}")
    kind = "embedding" if module_kind(frame, ws.tid) == "embedding" else "linear"
    for rows, tgt in _targets(ctx, det, ws.module, kind, ws.rows, ws.stem if lay.param_style
                              else None):
        excluded = tgt.excluded_by
        if excluded is not None and excluded.via_prefix is None:
            code = "fp8-not-converted" if ws.weight_format in _FP8_FORMATS else \
                "quantized-excluded"
            why = (f"{det.exclusions.key} lists {excluded.entry!r}" if not excluded.implicit
                   else f"its loaders keep {excluded.entry!r} unquantized by default")
            fs.rows(code, rows, _fixed(f"{ws.weight_format} ({lay.title}) although {why}"))
        elif tgt.group is None:
            fs.rows("quantized-excluded", rows, _fixed(
                f"{ws.weight_format} ({lay.title}) but no quantization group of the config "
                "targets its module"))
        elif ws.dtype_ok and ws.layout not in tgt.group.layouts:
            want = tgt.group.layouts[0]
            target = tgt.group
            fs.rows("quant-weight-dtype", rows, _fixed(
                f"stored as {lay.title}, but the config's group {target.name!r} targets it "
                f"({want.title})"))


def _targets(ctx: ScanContext, det: schemes.Detection, module: str, kind: str,
             rows: np.ndarray, param: str | None = None
             ) -> list[tuple[np.ndarray, schemes.Target]]:
    """The rows of a module template grouped by what the config says about them:
    once per template, per name only when an entry names layer numbers. ``param``:
    the parameter template of a fused expert stack (``experts.gate_up_proj``),
    which an exclusion entry may name instead of its module."""
    numbers = ctx.quant_map.numbers
    tgt = det.target_template(module, kind, numbers)
    extra = det.exclusion_template(param, numbers) if param is not None else None
    if tgt is not None and (extra is None or extra.uniform):
        if extra is not None and tgt.excluded_by is None and extra.hit is not None:
            tgt = schemes.Target(tgt.group, tgt.target, extra.hit)
        return [(rows, tgt)]
    name = named_rows(ctx.frame, module)
    pname = named_rows(ctx.frame, param) if param is not None else None
    by: dict[schemes.Target, list[int]] = defaultdict(list)
    for r in rows.tolist():
        t = det.target(name(r), kind)
        if pname is not None and t.excluded_by is None:
            hit = det.exclusions.match(pname(r))
            if hit is not None:
                t = schemes.Target(t.group, t.target, hit)
        by[t].append(r)
    return [(np.array(v, dtype=np.int64), t) for t, v in by.items()]


def unconverted(ctx: ScanContext) -> list[tuple[np.ndarray, str]]:
    """(rows, why) of the high-precision linear weights that ``unquantized-linear``
    reports: the declared scheme targets their module, no exclusion entry keeps
    them, and the config lists modules it keeps (or the rest of their template
    is quantized). What `ckptscan verify` calls left unquantized."""
    det = ctx.detection
    if det is None:
        return []
    out = []
    for pl in ctx.quant_map.plain:
        holes = any(ws.module == pl.module for ws in ctx.quant_map.sets)
        if not (det.exclusions.entries or holes):
            continue
        for rows, tgt in _targets(ctx, det, pl.module, pl.kind, pl.rows):
            if tgt.group is None or tgt.excluded_by is not None or tgt.target is None:
                continue
            why = (f"{det.exclusions.key} does not list it" if det.exclusions.entries
                   else "the rest of its template is quantized")
            out.append((rows, f"the scheme quantizes {tgt.target.entry}; {why}"))
    return out


def _plain(ctx: ScanContext, pl: PlainLinear) -> None:
    """A high-precision linear the config targets and does not exclude."""
    det, frame = ctx.detection, ctx.frame
    assert det is not None
    # A config that lists nothing keeps some linears in high precision silently
    # (DeepSeek's eh_proj): info; a hole in a template otherwise quantized is not.
    holes = any(ws.module == pl.module for ws in ctx.quant_map.sets)
    code = ("unquantized-linear" if det.exclusions.entries or holes
            else "unquantized-linear-info")
    for rows, tgt in _targets(ctx, det, pl.module, pl.kind, pl.rows):
        if tgt.group is None or tgt.excluded_by is not None or tgt.target is None:
            continue
        entry = tgt.target.entry
        why = (f"{det.exclusions.key} does not list it" if det.exclusions.entries
               else "the config lists no modules kept unquantized")
        tail = f"left in high precision, but the scheme quantizes {entry}; {why}"

        def message(i: int, tail: str = tail) -> str:
            return f"{frame.dtype_name(i)} {pl.kind} weight ({frame.role_name(i)}) {tail}"

        ctx.findings.rows(code, rows, message)


# ---- companions ---------------------------------------------------------------------------


def _companion(ctx: ScanContext, qm: QuantMap, ws: WeightSet, cr: CompanionRows) -> None:
    frame, c = ctx.frame, cr.companion
    dup = ctx.join.dup_of[ws.rows] >= 0  # a second copy of a weight shares its companions
    absent = (cr.rows < 0) & ~dup
    if c.required and absent.any():
        _missing(ctx, ws, cr, np.flatnonzero(absent))
    there = np.flatnonzero(cr.rows >= 0)
    if not len(there):
        return
    crow = cr.rows[there]
    bad = ~np.isin(frame.dtype[crow], [DTYPE_NAMES.index(d) for d in c.dtypes
                                       if d in DTYPE_NAMES])
    if bad.any():
        ctx.findings.rows("scale-dtype", crow[bad], lambda i: (
            f"{frame.dtype_name(i)}, but {ws.layout.title} writes its {c.kind} "
            f"{c.suffix} as {' or '.join(c.dtypes)}"), expected=list(c.dtypes))
    if c.shapes is None:
        return
    cinv, cshapes = distinct_shapes(frame, crow)
    pairs = np.unique(ws.shape_of[there] * len(cshapes) + cinv)  # one int key: a 1-D sort
    for k, j in (divmod(p, len(cshapes)) for p in pairs.tolist()):
        logical = ws.logical[k]
        if logical is None or _shape_fits(ws.layout, c, cshapes[j], logical):
            continue
        rows = crow[(ws.shape_of[there] == k) & (cinv == j)]
        want = c.expected_shapes(logical)
        gran = ws.layout.granularity
        ctx.findings.rows("scale-shape", rows, _fixed(
            f"shape {list(cshapes[j])}, but a {list(logical)} weight ({ws.layout.title}, "
            f"{gran}) needs {' or '.join(str(list(w)) for w in want[:2]) or 'none'}"),
            shape=list(cshapes[j]), expected=[list(w) for w in want[:2]])


def _shape_fits(lay: schemes.Layout, c: schemes.Companion, shape: tuple[int, ...],
                logical: tuple[int, ...]) -> bool:
    """Whether a companion shape fits. Where the producer records the logical
    width beside a packed weight (compressed-tensors' weight_shape: a row of
    ceil(in * bits / 32) words holds up to 32 / bits - 1 values more than the
    width), any width that packs to the same stored row counts."""
    if c.shape_ok(shape, logical):
        return True
    p = lay.packing
    if (p.per_element <= 1 or p.flat or p.blocks or len(logical) < 2
            or not any(x.kind == schemes.SHAPE for x in lay.companions)):
        return False
    stored_last = p.axis in (-1, len(logical) - 1)
    axis = (-2 if stored_last else -1) if p.transposed else (-1 if stored_last else -2)
    for less in range(1, int(math.ceil(p.per_element))):
        alt = list(logical)
        alt[axis] -= less
        if alt[axis] > 0 and c.shape_ok(shape, tuple(alt)):
            return True
    return False


def _missing(ctx: ScanContext, ws: WeightSet, cr: CompanionRows, idx: np.ndarray) -> None:
    """Required companions absent: named as the scheme names them. A scale of
    another convention in its place is that finding instead."""
    frame, fs, c = ctx.frame, ctx.findings, cr.companion
    rows = ws.rows[idx]
    stray = np.full(len(rows), -1, dtype=np.int64)
    stray_suffix: dict[int, str] = {}
    if c.kind == schemes.SCALE:
        for suffix in schemes.SCALE_CONVENTIONS:
            alt = ctx.quant_map.tid(ws.stem + suffix)
            if suffix == c.suffix or alt < 0:
                continue
            got = match_rows(frame, rows, frame.rows_by_template[alt])
            take = (stray < 0) & (got >= 0)
            stray[take] = got[take]
            for r in got[take].tolist():
                stray_suffix[r] = suffix
    elsewhere = set(ctx.index_names) if ctx.partial else set()
    name_of = named_rows(frame, cr.template)
    fp8 = c.kind == schemes.SCALE and ws.weight_format in _FP8_FORMATS
    code = "fp8-scale-missing" if fp8 else "companion-missing"
    for w, s in zip(rows.tolist(), stray.tolist(), strict=True):
        cname = name_of(w)
        if cname in elsewhere:
            continue  # in another shard of this checkpoint, which is not scanned
        wname = frame.name(w)
        if s >= 0:
            sname = frame.name(s)
            fs.missing("scale-convention-mixed", cname, ws.template,
                       f"{wname} has {sname} ({schemes.SCALE_CONVENTIONS[stray_suffix[s]]}) "
                       f"where {ws.layout.title} names its scale {cname}: a loader of this "
                       "scheme does not find it", frame.file(s), tensor=sname)
            continue
        what = ("a loader would use raw codes as weights" if c.kind == schemes.SCALE
                else f"{ws.layout.title} requires it")
        fs.missing(code, cname, ws.template, f"{frame.dtype_name(w)} weight {wname} has no "
                   f"{cname} ({c.kind}): {what}", frame.file(w), tensor=wname, missing=cname)


def _conventions(ctx: ScanContext, qm: QuantMap) -> None:
    """Weights of one group stored in two conventions (FP8_PB_WO's rank-4
    weight_scale and rank-2 weight_scale_inv): the minority is named."""
    by_group: dict[int, dict[str, list[WeightSet]]] = defaultdict(lambda: defaultdict(list))
    for ws in qm.sets:
        if ws.group is not None and ws.layout.convention:
            by_group[id(ws.group)][ws.layout.convention].append(ws)
    for conv in by_group.values():
        if len(conv) < 2:
            continue
        sizes = {k: sum(len(ws.rows) for ws in v) for k, v in conv.items()}
        major = max(sizes, key=lambda k: (sizes[k], k))
        for k, sets in conv.items():
            if k == major:
                continue
            for ws in sets:
                for cr in ws.companions:
                    rows = cr.rows[cr.rows >= 0]
                    if cr.companion.kind == schemes.SCALE and len(rows):
                        n_major = sizes[major]
                        ctx.findings.rows("scale-convention-mixed", rows, _fixed(
                            f"follows {k}, while {n_major} other weights follow {major}: one "
                            "loader reads one convention"))


def _loose(ctx: ScanContext, qm: QuantMap, lo: Loose) -> None:
    """Companion-named rows no weight claimed: an orphan, a scale on a
    high-precision weight, or a second convention beside a quantized weight's own."""
    frame = ctx.frame
    rows = lo.rows
    weight = np.full(len(rows), -1, dtype=np.int64)
    role_of = np.full(len(rows), -1, dtype=np.int64)
    for k, role in enumerate(lo.roles):
        wt = qm.tid(role.layout.weight_name(role.stem))
        if wt < 0:
            continue
        got = match_rows(frame, rows, frame.rows_by_template[wt])
        take = (weight < 0) & (got >= 0)
        weight[take] = got[take]
        role_of[take] = k
    first = lo.roles[0]
    wname = named_rows(frame, first.layout.weight_name(first.stem))
    orphan = _not_elsewhere(ctx, rows[weight < 0], wname)
    ctx.findings.rows("scale-orphan", orphan, lambda i: (
        f"no weight {wname(i)} exists ({first.layout.title})"), absent=wname)
    has = weight >= 0
    quantized = has & (qm.set_of[np.maximum(weight, 0)] >= 0)
    plain = has & ~quantized
    w_of = dict(zip(rows.tolist(), weight.tolist(), strict=True))
    ctx.findings.rows("scale-on-unquantized", rows[plain], lambda i: (
        f"its weight {frame.name(w_of[i])} is {frame.dtype_name(w_of[i])}"))
    ctx.findings.rows("scale-convention-mixed", rows[quantized], lambda i: (
        f"beside {frame.name(w_of[i])}, stored as "
        f"{qm.sets[int(qm.set_of[w_of[i]])].layout.title}: two conventions for one weight"))


def _not_elsewhere(ctx: ScanContext, rows: np.ndarray, weight: Callable[[int], str]
                   ) -> np.ndarray:
    """Orphan rows, less those whose weight index.json places in a shard a
    one-shard scan does not read."""
    if not ctx.partial or not len(rows):
        return rows
    elsewhere = set(ctx.index_names)
    return np.array([r for r in rows.tolist() if weight(r) not in elsewhere], dtype=np.int64)


def _strays(ctx: ScanContext, qm: QuantMap) -> None:
    """Scales named after a convention the scheme does not use, whose weight has
    its own scale (the weight without its own is `_missing`'s) or no weight."""
    det, frame = qm.det, ctx.frame
    assert det is not None
    for t, template in enumerate(frame.templates):
        other = det.other_convention(template)
        if other is None or int(frame.table.kind[t]) not in (KIND_CODE[SCALE], KIND_CODE[WEIGHT]):
            continue
        stem, suffix = other
        rows = frame.rows_by_template[t]
        rows = rows[qm.owner[rows] < 0]
        wt = qm.tid(stem + ".weight")
        weight = (match_rows(frame, rows, frame.rows_by_template[wt]) if wt >= 0
                  else np.full(len(rows), -1, dtype=np.int64))
        if suffix != ".scale":  # a norm's .scale is no quantization scale
            wname = named_rows(frame, stem + ".weight")
            ctx.findings.rows("scale-orphan", _not_elsewhere(ctx, rows[weight < 0], wname),
                              _orphan(wname), absent=wname)
        has = weight >= 0
        w_of = dict(zip(rows.tolist(), weight.tolist(), strict=True))
        quantized = has & (qm.set_of[np.maximum(weight, 0)] >= 0)
        own = np.zeros(len(rows), dtype=bool)
        set_of = qm.set_of[np.maximum(weight, 0)]
        for k in np.unique(set_of[quantized]).tolist():
            ws = qm.sets[k]
            sel = np.flatnonzero(quantized & (set_of == k))
            pos = np.searchsorted(ws.rows, weight[sel])
            for cr in ws.companions:
                if cr.companion.kind == schemes.SCALE:
                    own[sel] |= cr.rows[pos] >= 0
        ctx.findings.rows("scale-convention-mixed", rows[quantized & own],
                          _beside(qm, w_of, schemes.SCALE_CONVENTIONS[suffix]))
        plain = has & ~quantized
        if suffix != ".scale":
            ctx.findings.rows("scale-on-unquantized", rows[plain], _on_plain(frame, w_of))


def _extras(ctx: ScanContext, qm: QuantMap) -> None:
    """KV-cache scales: dtype and shape; absent from an attention module that
    holds quantized weights when the config declares them."""
    det, frame = qm.det, ctx.frame
    assert det is not None
    for er in qm.extras:
        e = er.extra
        bad = ~np.isin(frame.dtype[er.rows], [DTYPE_NAMES.index(d) for d in e.dtypes])
        tail = f"but {e.note or 'the scheme'} writes {e.suffix} as {' or '.join(e.dtypes)}"

        def message(i: int, tail: str = tail) -> str:
            return f"{frame.dtype_name(i)}, {tail}"

        ctx.findings.rows("scale-dtype", er.rows[bad], message)
        if e.shapes is not None:
            inv, shapes = distinct_shapes(frame, er.rows)
            for j, s in enumerate(shapes):
                if s not in e.shapes:
                    ctx.findings.rows("scale-shape", er.rows[inv == j], _fixed(
                        f"shape {list(s)}, but {e.suffix} is one value "
                        f"({' or '.join(str(list(x)) for x in e.shapes or ())})"))
    if ctx.partial:
        return
    for e in det.extras:
        if not e.required:
            continue
        done: set[str] = set()
        for ws in qm.sets:
            if int(frame.component[ws.rows[0]]) != COMPONENT_CODE[DECODER]:
                continue
            owner = _owner(ws.module, e.owner)
            if owner is None or owner in done:
                continue
            done.add(owner)
            etemplate = owner + e.suffix
            et = qm.tid(etemplate)
            if et >= 0 and frame.int_matrix(ws.rows[:1]).shape[1] != frame.int_matrix(
                    frame.rows_by_template[et][:1]).shape[1]:
                continue
            got = (match_rows(frame, ws.rows, frame.rows_by_template[et]) if et >= 0
                   else np.full(len(ws.rows), -1, dtype=np.int64))
            name_of = named_rows(frame, etemplate)
            for w in ws.rows[got < 0].tolist():
                ename = name_of(w)
                ctx.findings.missing("companion-missing", ename, etemplate,
                                     f"{owner.replace(SLOT, '*')} holds quantized weights but "
                                     f"no {e.suffix} ({e.note})", frame.file(w))


def _owner(module: str, pattern: str) -> str | None:
    """The module itself or the deepest parent of it that fullmatches ``pattern``."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        cand = ".".join(parts[:k])
        if re.fullmatch(pattern, cand):
            return cand
    return None


# ---- exclusion lists ----------------------------------------------------------------------


def _exclusions(ctx: ScanContext, qm: QuantMap) -> None:
    """Every exclusion entry must match some tensor or its module as its producer's
    loader matches names; one that only matches with a wrapper prefix added or
    removed is named with the tensor it was meant for. Names are probed per
    template (with the numbers the checkpoint's names hold), screened against all
    entries at once; an entry's own numbers are then checked on the real names."""
    det, frame = qm.det, ctx.frame
    assert det is not None
    rules = det.exclusions
    entries = rules.entries[:MAX_ENTRIES_JUDGED]
    if not entries or not len(frame):
        return
    order = sorted(range(len(frame.templates)),  # linears first: what an entry is meant for
                   key=lambda t: (not bool(frame.table.linear[t]),
                                  int(frame.table.kind[t]) != KIND_CODE[WEIGHT], t))
    probes = [(t, n) for t in order
              for n in schemes.probe_names(frame.templates[t], entries, qm.numbers)]
    direct = _hits(ctx, rules, entries, probes, True)
    left = [e for e in entries if e not in direct]
    prefixed = _hits(ctx, rules, tuple(left), probes, False) if left else {}
    for entry in left:
        hit = prefixed.get(entry)
        if hit is None:
            if ctx.partial:
                continue  # the module may be in a shard a one-shard scan does not read
            ctx.findings.add(codes.finding(
                "exclusion-unmatched", f"{rules.key} entry {entry!r} matches no module of this "
                f"checkpoint ({rules.style.description})", ctx.where_config, key=rules.key,
                entry=entry))
        else:
            tensor, via = hit
            ctx.findings.add(codes.finding(
                "exclusion-prefix", f"{rules.key} entry {entry!r} matches {tensor} only with "
                f"the wrapper prefix {via!r} added or removed: the producer's loader "
                f"({rules.style.description}) does not match it", ctx.where_config, tensor,
                key=rules.key, entry=entry, via_prefix=via))


def _spellings(name: str, direct: bool) -> list[tuple[str, str]]:
    """A tensor name and its module (what loaders match entries against), as
    written (direct) or under the wrapper respellings (with the prefix that differs)."""
    subs = [name] + ([name.rpartition(".")[0]] if "." in name else [])
    if direct:
        return [(x, "") for x in subs]
    return [alt for x in subs for alt in schemes.respellings(x)]


def _hits(ctx: ScanContext, rules: schemes.Rules, entries: tuple[str, ...],
          probes: list[tuple[int, str]], direct: bool) -> dict[str, tuple[str, str]]:
    """entry -> (a real tensor it matches, the wrapper prefix needed) for the
    entries that match some probe name's spelling: the spellings are screened
    against all entries at once, entries tried only on the few that pass."""
    style = rules.style
    out: dict[str, tuple[str, str]] = {}
    tried: set[tuple[int, str]] = set()
    for t, probe in probes:
        for spelled, via in _spellings(probe, direct):
            if (t, spelled) in tried:
                continue
            tried.add((t, spelled))
            if style.first(entries, spelled) is None:  # screened: no entry matches
                continue
            for entry in entries:
                if entry not in out and _matches(style, entry, spelled):
                    real = _real_name(ctx, style, entry, t, direct)
                    if real is not None:
                        out[entry] = real if direct else (real[0], via)
    return out


def _real_name(ctx: ScanContext, style: schemes.Style, entry: str, t: int,
               direct: bool) -> tuple[str, str] | None:
    """A real tensor of template ``t`` the entry matches (an entry's own numbers
    must be some name's: layer 9 of a 2-layer model is no module)."""
    frame = ctx.frame
    rows = frame.rows_by_template[t]
    if not any(ch.isdigit() for ch in entry) or SLOT not in frame.templates[t].split("."):
        return frame.name(int(rows[0])), ""
    for r in rows[:_MAX_NAMES].tolist():
        name = frame.name(r)
        got = next((via for alt, via in _spellings(name, direct)
                    if _matches(style, entry, alt)), None)
        if got is not None:
            return name, got
    return (frame.name(int(rows[0])), "") if len(rows) > _MAX_NAMES else None


#: tensor-parallel-limit warns from this many logical parameters: the class of
#: models served on 8 GPUs (Qwen3-30B-A3B, whose 768-wide experts stop TP 8 on
#: 128-row blocks, and up); smaller ones fit on fewer, and a test model's tiny
#: layers never split 8 ways
TP_WARN_MIN_PARAMETERS = 20_000_000_000
_MAX_NAMES = 20_000
#: exclusion entries judged for matching nothing (real lists name a few hundred)
MAX_ENTRIES_JUDGED = 1024


def _matches(style: schemes.Style, entry: str, name: str) -> bool:
    return style.rule(entry, name) is not None


# ---- fused siblings -----------------------------------------------------------------------


def _fused(ctx: ScanContext, qm: QuantMap) -> None:
    """Per-tensor / global scales of siblings a loader fuses must be equal."""
    det, frame = qm.det, ctx.frame
    assert det is not None
    suffixes = det.fused_companions()
    if not suffixes:
        return
    groups: dict[tuple[str, str, int], dict[str, WeightSet]] = defaultdict(dict)
    for ws in qm.sets:
        sib = schemes.fused_sibling(ws.module if not ws.layout.param_style else ws.stem)
        if sib is not None:
            groups[(sib[0], ws.layout.name, len(frame.int_matrix(ws.rows[:1])[0]))][sib[1]] = ws
    reads = 0
    for (fused, _, _), members in groups.items():
        if len(members) < 2:
            continue
        order = [m for _, ms in schemes.FUSED_SIBLINGS for m in ms if m in members]
        base = members[order[0]]
        for suffix in suffixes:
            cols = []
            for m in order:
                ws = members[m]
                cr = next((c for c in ws.companions if c.companion.suffix == suffix), None)
                if cr is None:
                    break
                at = match_rows(frame, base.rows, ws.rows)
                pos = np.full(len(at), -1, dtype=np.int64)
                ok = at >= 0
                index = {r: k for k, r in enumerate(ws.rows.tolist())}
                pos[ok] = [index[r] for r in at[ok].tolist()]
                cols.append(np.where(pos >= 0, cr.rows[np.maximum(pos, 0)], -1))
            if len(cols) != len(order):
                continue
            table = np.stack(cols, axis=1)
            table = table[(table >= 0).all(axis=1)]
            reads += table.size
            if reads > FUSED_MAX_READS:
                return
            for line in table.tolist():
                _compare(ctx, fused, order, line)


def _compare(ctx: ScanContext, fused: str, members: list[str], rows: list[int]) -> None:
    values = [_small_values(ctx, r) for r in rows]
    if any(v is None for v in values):
        return
    keys = [v.tobytes() for v in values if v is not None]
    if len(set(keys)) == 1:
        return
    counts = Counter(keys)
    ref = max(keys, key=lambda k: (counts[k], -keys.index(k)))
    frame = ctx.frame
    ref_row = rows[keys.index(ref)]
    ref_val = values[keys.index(ref)]
    assert ref_val is not None
    for r, k, v in zip(rows, keys, values, strict=True):
        if k == ref or v is None:
            continue
        others = ", ".join(frame.name(x) for x in rows if x != r)
        ctx.findings.rows("fused-scale-mismatch", [r], _fixed(
            f"{_show(v)}, while its fused siblings ({others}) hold {_show(ref_val)}: a loader "
            f"fusing them into {fused.rpartition('.')[2]} takes the max"),
            sibling=frame.name(ref_row))


def _show(v: np.ndarray) -> str:
    return f"{float(v.reshape(-1)[0]):.6g}" if v.size == 1 else f"[{v.size} values]"


def _small_values(ctx: ScanContext, row: int) -> np.ndarray | None:
    """A small scale's values, read through a copy once per scan (None: too large
    or not readable)."""
    if row in ctx.small_values:
        return ctx.small_values[row]
    from ..deep import scale_values

    frame = ctx.frame
    shard = frame.shards[int(frame.shard_of[row])]
    vals = None
    # a remote shard would answer each with a request: its values wait for --deep
    if int(frame.numel[row]) <= FUSED_MAX_ELEMENTS and not shard.remote:
        vals = scale_values(shard, frame.name(row), frame.dtype_name(row))
    ctx.small_values[row] = vals
    return vals


def _scalars(ctx: ScanContext, qm: QuantMap) -> None:
    """Per-tensor, global, input and KV-cache scales are a few numbers each: their
    values are judged here (finite, positive, loaded), not only with --deep."""
    frame = ctx.frame
    scalar = {cr.tid for ws in qm.sets for cr in ws.companions if cr.tid >= 0 and (
        cr.companion.kind in _SCALAR_KINDS or ws.layout.granularity.kind == "tensor")}
    scalar |= {er.tid for er in qm.extras if er.extra.kind in _SCALAR_KINDS}
    floats = [DTYPE_NAMES.index(d) for d in ("F32", "BF16", "F16")]
    rows = np.flatnonzero(np.isin(frame.template, list(scalar))
                          & (frame.numel <= SCALAR_MAX_ELEMENTS)
                          & np.isin(frame.dtype, floats))
    for r in rows[:FUSED_MAX_READS].tolist():
        vals = _small_values(ctx, r)
        if vals is not None:
            ctx.scales_read.add(r)
            data.scale_values(ctx, r, vals)


# ---- will it load ----------------------------------------------------------------------------


def _tensor_parallel(ctx: ScanContext, qm: QuantMap) -> None:
    tp = ctx.tensor_parallel
    if tp is None or 8 in tp["ok"]:
        return
    if int(qm.params.sum()) < TP_WARN_MIN_PARAMETERS:
        return  # not a model anyone spreads over 8 GPUs: deployment.tensor_parallel says it
    section = ctx.frame.taxonomy.component_config(DECODER) or {}
    heads = section.get("num_attention_heads")
    if isinstance(heads, int) and not isinstance(heads, bool) and heads > 0 and heads % 8:
        return  # its attention heads do not split 8 ways: the blocks are not what limits it
    limiting = tp["limiting"]
    largest = tp["max"]
    ctx.findings.add(codes.finding(
        "tensor-parallel-limit", f"tensor parallelism of 8 cannot split "
        f"{', '.join(limiting[:3])} on their quantization blocks (a column-parallel layer's "
        f"rows per rank, a row-parallel layer's columns per rank must be whole blocks); "
        f"the largest size that loads is {largest} (MoE experts: or expert parallelism)",
        ctx.frame.file(0) if len(ctx.frame) else
        None, limiting[0] if limiting else None, ok=tp["ok"], limiting=limiting))


__all__ = ["check"]
