"""What the checkpoint's quantization scheme says about every tensor of a scan.

Computed once per scan (`ScanContext.quant_map`) from the scheme registry
(`ckptscan.schemes`), per name template and distinct shape, never per tensor:

- which rows are quantized weights, in which layout (`WeightSet`: the rows of
  one template in one layout and dtype) and which rows are their companions,
  paired by the integers of their names (`CompanionRows`);
- module-level quantization tensors (KV-cache scales: `ExtraRows`), and the
  companion-named rows no weight claimed (orphans, or another convention's);
- the high-precision linear weights (`PlainLinear`), for the targeting checks;
- per row: logical parameters (a packed container counts its values; companions,
  zero points, global scales, g_idx, weight_shape, E8M0 tensors count none) and
  whether the row is quantization overhead.

The checks (`checks.quant`), the deep pass and the report read it; judging what
it relates is theirs.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from . import schemes as S
from .frame import Frame, match_rows
from .shard import DTYPE_NAMES
from .taxonomy import COMPONENT_CODE, DECODER, EMBEDDING, KIND_CODE, ROLE_CODE, ROLES, SCALE, WEIGHT

I64 = npt.NDArray[np.int64]
Shape = tuple[int, ...]

_FLOAT_CODES = frozenset(DTYPE_NAMES.index(d) for d in S.FLOAT_DTYPES)
_FP8_CODES = frozenset(DTYPE_NAMES.index(d) for d in S.FP8_DTYPES)
_SCALE_ONLY_CODES = frozenset(DTYPE_NAMES.index(d) for d in S.SCALE_ONLY_DTYPES)

#: tensor-parallel sizes the report judges
TP_SIZES = (1, 2, 4, 8, 16, 32)
# Projections the serving engines shard by output rows (column parallel) or by
# input columns (row parallel); the number of equal parts a fused one holds.
_COLUMN: Mapping[str, int] = {
    "q_proj": 1, "k_proj": 1, "v_proj": 1, "gate_proj": 1, "up_proj": 1, "w1": 1, "w3": 1,
    "wq": 1, "wk": 1, "wv": 1, "wq_b": 1, "q_b_proj": 1, "kv_b_proj": 1, "c_fc": 1, "fc1": 1,
    "dense_h_to_4h": 1, "qkv_proj": 1, "query_key_value": 1, "wqkv": 1, "c_attn": 1,
    "gate_up_proj": 2, "w13": 2, "w13_weight": 2,
}
_ROW = frozenset({"o_proj", "down_proj", "w2", "wo", "dense_4h_to_h", "c_proj", "out_proj",
                  "fc2", "w2_weight", "attn_out", "ff_out"})
_KV = frozenset({"k_proj", "v_proj", "wk", "wv"})


def module_kind(frame: Frame, t: int) -> str:
    """The module kind the producers' target rules ask for: embedding, linear, other."""
    if int(frame.table.part[t]) == ROLE_CODE[EMBEDDING]:
        return "embedding"
    return "linear" if bool(frame.table.linear[t]) else "other"


def scheme_kinds(det: S.Detection | None, templates: list[str],
                 kinds: npt.NDArray[np.uint8]) -> dict[int, str]:
    """Kinds the scheme decides over the names' (``taxonomy.with_kinds``): its
    companions and module-level tensors are scales (overhead, never weights), its
    packed weights (``_qdata``) weights."""
    if det is None:
        return {}
    out: dict[int, str] = {}
    for t, template in enumerate(templates):
        if det.weight_roles(template):
            if int(kinds[t]) == KIND_CODE["other"]:
                out[t] = WEIGHT
        elif int(kinds[t]) != KIND_CODE[SCALE] and (
                det.companion_roles(template) or det.extra_of(template) is not None):
            out[t] = SCALE
    return out


@dataclass(eq=False)
class CompanionRows:
    """One companion of a weight set: its name template (``tid`` -1 when no
    tensor has it) and, per weight row, the companion's row (-1: absent)."""

    companion: S.Companion
    template: str
    tid: int
    rows: I64


@dataclass(eq=False)
class WeightSet:
    """The rows of one name template stored in one layout and dtype.

    ``dtype_ok`` is False when the naming is the layout's but the dtype is not
    (an E5M2 weight in an E4M3 scheme): the set is then checked with the layout
    its naming gives. ``shapes`` are the distinct stored shapes (``shape_of``:
    each row's index into them) and ``logical`` their logical shapes (None: the
    stored shape can be no weight of this layout)."""

    tid: int
    template: str
    layout: S.Layout
    group: S.Group | None
    stem: str
    module: str
    dtype: str
    dtype_ok: bool
    rows: I64
    shape_of: I64
    shapes: list[Shape]
    logical: list[Shape | None]
    companions: list[CompanionRows] = field(default_factory=list)

    @property
    def weight_format(self) -> str:
        """The format the rows hold: the layout's, or their own dtype's when it differs."""
        if self.dtype_ok:
            return self.layout.weight_format
        return S.DTYPE_FORMAT.get(self.dtype, self.dtype)

    def position(self, row: int) -> int:
        """Where a row of this set is in ``rows`` (ascending, as the frame's)."""
        return int(np.searchsorted(self.rows, row))

    def parameters(self) -> I64:
        """Logical parameters per row."""
        per_shape = np.array([math.prod(lg) if lg is not None else
                              self.layout.parameters(s) for s, lg in
                              zip(self.shapes, self.logical, strict=True)], dtype=np.int64)
        out: I64 = per_shape[self.shape_of]
        return out


@dataclass(eq=False)
class ExtraRows:
    """A module-level quantization tensor (KV-cache scale) template."""

    extra: S.Extra
    tid: int
    owner: str
    rows: I64


@dataclass(eq=False)
class PlainLinear:
    """The high-precision (float) linear or embedding weights of one template."""

    tid: int
    module: str
    kind: str
    rows: I64


@dataclass(eq=False)
class Loose:
    """Rows of a companion-named template that no weight claimed: ``roles`` are
    the (layout, companion, stem) its naming fits."""

    tid: int
    roles: list[S.CompanionRole]
    rows: I64


def distinct_shapes(frame: Frame, rows: I64) -> tuple[I64, list[Shape]]:
    """(index into the distinct shapes per row, the distinct shapes) of some rows,
    by numpy over the shape columns (a template has one or a few)."""
    ndim = frame.ndim[rows]
    inverse = np.zeros(len(rows), dtype=np.int64)
    shapes: list[Shape] = []
    for k in np.unique(ndim).tolist():
        sel = np.flatnonzero(ndim == k)
        if k == 0:
            inverse[sel] = len(shapes)
            shapes.append(())
            continue
        starts = frame.shape_starts[rows[sel]]
        dims = frame.dims[starts[:, None] + np.arange(k)]
        width = max(1, int(dims.max()).bit_length())
        if width * k <= 63:  # one int64 key per shape: a 1-D unique, not a row sort
            key = np.zeros(len(sel), dtype=np.int64)
            for j in range(k):
                key = (key << width) | dims[:, j]
            _, first, inv = np.unique(key, return_index=True, return_inverse=True)
            uniq = dims[first]
        else:
            uniq, inv = np.unique(dims, axis=0, return_inverse=True)
        inverse[sel] = inv.reshape(-1) + len(shapes)
        shapes += [tuple(int(x) for x in u) for u in uniq]
    return inverse, shapes


class QuantMap:
    """The scheme's view of one frame (see the module docstring). ``det`` None:
    no scheme declared; the map then only counts parameters honestly."""

    def __init__(self, frame: Frame, det: S.Detection | None) -> None:
        self.frame = frame
        self.det = det
        n = len(frame)
        self.sets: list[WeightSet] = []
        self.extras: list[ExtraRows] = []
        self.plain: list[PlainLinear] = []
        self.loose: list[Loose] = []
        self.owner = np.full(n, -1, dtype=np.int64)   # companion row -> its weight row
        self.set_of = np.full(n, -1, dtype=np.int64)  # weight row -> its set
        self.params = frame.numel.astype(np.int64)
        self.overhead = np.zeros(n, dtype=bool)
        self._tid = {t: i for i, t in enumerate(frame.templates)}
        #: the integers the names hold: what template probes may fill slots with
        self.numbers = frozenset(str(v) for v in np.unique(frame.ints).tolist())
        self._ckind: dict[int, str] = {}
        self._e8m0: set[int] = set()  # companion templates holding E8M0 exponents
        self._build()

    def tid(self, template: str) -> int:
        return self._tid.get(template, -1)

    def e8m0_templates(self) -> set[int]:
        """Companion templates whose bytes are E8M0 exponents (MX scales, also in U8)."""
        return set(self._e8m0)

    def companion_kinds(self) -> dict[int, str]:
        """Template id -> companion kind (scale, zero_point, offset ...) of the
        templates the scheme names as companions or module-level tensors."""
        return dict(self._ckind)

    # ---- building ---------------------------------------------------------------------------

    def _build(self) -> None:
        frame, det = self.frame, self.det
        aux = np.array([t.rpartition(".")[2] in S.AUXILIARY_PARAMS for t in frame.templates],
                       dtype=bool)
        by_t = frame.rows_by_template
        companion_like: dict[int, list[S.CompanionRole]] = {}
        for t, template in enumerate(frame.templates):
            rows = by_t[t]
            if not len(rows):
                continue
            if det is not None:
                roles = det.companion_roles(template)
                extra = det.extra_of(template)
                if self._weights(t, template, rows):
                    continue
                if extra is not None:
                    self._ckind[t] = extra[0].kind
                    self.extras.append(ExtraRows(extra[0], t, extra[1], rows))
                    self._no_params(rows)
                    continue
                if roles:
                    self._ckind[t] = roles[0].companion.kind
                    if roles[0].layout.scale_format == "E8M0" and \
                            roles[0].companion.kind == S.SCALE:
                        self._e8m0.add(t)
                    companion_like[t] = roles
                    self._no_params(rows)
                    continue
            if aux[t]:
                self._no_params(rows)
            self._plain(t, template, rows)
        scale_only = np.isin(frame.dtype, list(_SCALE_ONLY_CODES))
        self._no_params(np.flatnonzero(scale_only))
        for ws in self.sets:
            self._pair(ws)
        for t, roles in companion_like.items():
            rows = by_t[t]
            free = rows[self.owner[rows] < 0]
            if len(free):
                self.loose.append(Loose(t, roles, free))

    def _no_params(self, rows: I64) -> None:
        self.params[rows] = 0
        self.overhead[rows] = True

    def _weights(self, t: int, template: str, rows: I64) -> bool:
        """The template's rows that are quantized weights become sets (per dtype);
        True when the template is a weight naming of the scheme."""
        det, frame = self.det, self.frame
        assert det is not None
        named = det.weight_roles(template)
        if not named:
            return False
        kind = "embedding" if module_kind(frame, t) == "embedding" else "linear"
        plain: list[I64] = []
        for sel, lay, ok, target in self._layouts(template, rows, named, kind):
            if lay is None:
                plain.append(sel)
                continue
            stem = lay.weight_stem(template)
            assert stem is not None
            group = next((r.group for r in named if r.layout is lay), None)
            if target is not None and lay in target.layouts:
                group = target
            shape_of, shapes = distinct_shapes(frame, sel)
            ws = WeightSet(t, template, lay, group, stem, lay.module_of(stem),
                           DTYPE_NAMES[int(frame.dtype[sel[0]])], ok, sel, shape_of, shapes,
                           [lay.logical_shape(s) for s in shapes])
            self.set_of[sel] = len(self.sets)
            self.sets.append(ws)
            self.params[sel] = ws.parameters()
        if plain:
            self._plain(t, template, np.concatenate(plain), named)
        return True

    def _layouts(self, template: str, rows: I64, named: list[S.WeightRole], kind: str
                 ) -> list[tuple[I64, S.Layout | None, bool, S.Group | None]]:
        """(rows, layout, dtype fits, the group targeting them) per dtype, and per
        target group where the
        config targets the template's names differently (an override for one layer)."""
        det, frame = self.det, self.frame
        assert det is not None
        have = self._tid.__contains__
        module = named[0].layout.module_of(named[0].stem)
        parts: list[tuple[I64, S.Group | None]] = []
        tgt = det.target_template(module, kind, self.numbers)
        if tgt is not None:
            parts.append((rows, tgt.group))
        else:
            name = named_rows(frame, module)
            by: dict[int, tuple[S.Group | None, list[int]]] = {}
            for r in rows.tolist():
                g = det.target(name(r), kind).group
                by.setdefault(id(g), (g, []))[1].append(r)
            parts += [(np.array(v, dtype=np.int64), g) for g, v in by.values()]
        out: list[tuple[I64, S.Layout | None, bool, S.Group | None]] = []
        for part, group in parts:
            dtypes = frame.dtype[part]
            for code in np.unique(dtypes).tolist():
                sel = part[dtypes == code]
                dname = DTYPE_NAMES[code]
                lay = group.layout_for(template, dname, have) if group is not None else None
                if lay is None:
                    lay = det.layout_for(template, dname, have, kind)
                ok = lay is not None
                if lay is None and code not in _FLOAT_CODES:
                    lay = (group.layout_for(template, None, have) if group is not None
                           else None) or det.layout_for(template, None, have, kind)
                out.append((sel, lay, ok, group))
        return out

    def _plain(self, t: int, template: str, rows: I64,
               named: list[S.WeightRole] | None = None) -> None:
        """High-precision linear / embedding weights (for the targeting checks)."""
        frame = self.frame
        if int(frame.table.kind[t]) != KIND_CODE[WEIGHT]:
            return
        kind = module_kind(frame, t)
        if kind == "other":
            return
        rows = rows[np.isin(frame.dtype[rows], list(_FLOAT_CODES))]
        if not len(rows):
            return
        if named:
            module = named[0].layout.module_of(named[0].stem)
        else:
            module = template.rpartition(".")[0] or template
        self.plain.append(PlainLinear(t, module, kind, rows))

    def _pair(self, ws: WeightSet) -> None:
        frame = self.frame
        for c in ws.layout.companions:
            ctemplate = ws.layout.companion_name(ws.stem, c)
            ct = self.tid(ctemplate)
            if ct < 0:
                rows = np.full(len(ws.rows), -1, dtype=np.int64)
            else:
                self._ckind[ct] = c.kind
                if ws.layout.scale_format == "E8M0" and c.kind == S.SCALE:
                    self._e8m0.add(ct)
                rows = match_rows(frame, ws.rows, frame.rows_by_template[ct])
                got = rows >= 0
                self.owner[rows[got]] = ws.rows[got]
                self._no_params(rows[got])
            ws.companions.append(CompanionRows(c, ctemplate, ct, rows))

    # ---- what the report says ---------------------------------------------------------------

    def logical_shape(self, row: int) -> Shape:
        """A row's logical shape: a quantized weight's unpacked one, else its own."""
        k = int(self.set_of[row])
        if k >= 0:
            ws = self.sets[k]
            got = ws.logical[int(ws.shape_of[ws.position(row)])]
            if got is not None:
                return got
        return self.frame.shape(row)

    def scale_rows(self) -> I64:
        """Per row: the row of its scale (a quantized weight's first scale-kind
        companion), -1 elsewhere."""
        out = np.full(len(self.frame), -1, dtype=np.int64)
        for ws in self.sets:
            for cr in ws.companions:
                if cr.companion.kind == S.SCALE:
                    free = out[ws.rows] < 0
                    out[ws.rows[free]] = cr.rows[free]
        return out

    def quantized_rows(self) -> I64:
        if not self.sets:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([ws.rows for ws in self.sets])

    def formats(self) -> list[str]:
        """The normalised formats of the quantized weights (of the FP8 weights
        when no scheme is declared), most parameters first."""
        frame = self.frame
        counts: Counter[str] = Counter()
        for ws in self.sets:
            counts[ws.weight_format] += int(self.params[ws.rows].sum())
        if self.det is None:
            fp8 = np.isin(frame.dtype, list(_FP8_CODES)) & (frame.kind == KIND_CODE[WEIGHT])
            for code in np.unique(frame.dtype[fp8]).tolist():
                counts[S.DTYPE_FORMAT[DTYPE_NAMES[code]]] += int(
                    self.params[fp8 & (frame.dtype == code)].sum())
        return [f for f, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]

    def main_format(self) -> str | None:
        """The logical format holding most of the decoder's weight parameters."""
        frame = self.frame
        weights = (frame.kind == KIND_CODE[WEIGHT]) & (frame.component == COMPONENT_CODE[DECODER])
        if not weights.any():
            weights = frame.kind == KIND_CODE[WEIGHT]
        counts: Counter[str] = Counter()
        in_set = self.set_of >= 0
        for ws in self.sets:
            sel = ws.rows[weights[ws.rows]]
            counts[ws.weight_format] += int(self.params[sel].sum())
        rest = weights & ~in_set
        for code in np.unique(frame.dtype[rest]).tolist():
            name = DTYPE_NAMES[code]
            counts[S.DTYPE_FORMAT.get(name, name)] += int(
                self.params[rest & (frame.dtype == code)].sum())
        best = max(counts.items(), key=lambda kv: (kv[1], kv[0]), default=None)
        return best[0] if best is not None and best[1] > 0 else None

    def schemes(self) -> list[dict[str, Any]]:
        """Per layout in use: what it stores and how much of the model."""
        frame = self.frame
        by_layout: dict[str, list[WeightSet]] = defaultdict(list)
        for ws in self.sets:
            by_layout[ws.layout.name].append(ws)
        out: list[tuple[int, dict[str, Any]]] = []
        for name, sets in by_layout.items():
            lay = sets[0].layout
            rows = np.concatenate([ws.rows for ws in sets])
            comp = np.concatenate([c.rows[c.rows >= 0] for ws in sets for c in ws.companions]
                                  or [np.zeros(0, np.int64)])
            params = int(self.params[rows].sum())
            stored = int(frame.nbytes[rows].sum()) + int(frame.nbytes[comp].sum())
            roles = sorted({ROLES[r] for r in np.unique(frame.role[rows]).tolist()},
                           key=ROLES.index)
            formats = sorted({ws.weight_format for ws in sets})
            out.append((params, {
                "name": name, "title": lay.title, "family": lay.family,
                "weight_format": formats[0] if len(formats) == 1 else
                "mixed: " + ", ".join(formats),
                "scale_format": lay.scale_format, "granularity": str(lay.granularity),
                "bits_per_weight": round(stored * 8 / params, 4) if params else None,
                "roles": roles, "tensors": len(rows), "companions": len(comp),
                "parameters": params, "convention": lay.convention or None,
            }))
        out.sort(key=lambda pd: -pd[0])
        return [d for _, d in out]

    def overhead_bytes(self) -> int:
        return int(self.frame.nbytes[self.overhead].sum())

    def bits_per_weight(self) -> float | None:
        """Stored bits per logical parameter over the whole checkpoint."""
        params = int(self.params.sum())
        return round(int(self.frame.nbytes.sum()) * 8 / params, 4) if params else None

    # ---- will it load: tensor parallelism ---------------------------------------------------

    def tensor_parallel(self, config: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The serving engines' rule for every block- or group-quantized linear:
        a column-parallel layer's output rows per rank (each part of a fused
        gate/up) must be a multiple of the block's rows, a row-parallel layer's
        input columns per rank a multiple of its columns (vLLM
        ``validate_fp8_block_shape``, the GPTQ/AWQ/compressed-tensors group
        check). MX layouts (E8M0 scales per group, FP4 experts) are left out: the
        engines pad their MoE widths. None when nothing is block/group quantized."""
        kv_heads = _kv_heads(config)
        judged = False
        fails: dict[int, list[str]] = defaultdict(list)
        for ws in self.sets:
            tile = _tile(ws.layout)
            if tile is None:
                continue
            proj = ws.stem.rpartition(".")[2]
            if proj not in _COLUMN and proj not in _ROW:
                proj = ws.module.rpartition(".")[2]
            if proj not in _COLUMN and proj not in _ROW:
                continue
            for k, logical in enumerate(ws.logical):
                if logical is None or len(logical) < 2:
                    continue
                judged = True
                out, inp = logical[-2], logical[-1]
                first = int(ws.rows[np.flatnonzero(ws.shape_of == k)[0]])
                for tp in TP_SIZES:
                    if not _splits(proj, out, inp, tp, tile, kv_heads):
                        fails[tp].append(self.frame.name(first))
        if not judged:
            return None
        ok = [tp for tp in TP_SIZES if tp not in fails]
        smallest = min(fails, default=None)
        return {"ok": ok, "max": max(ok) if ok else None,
                "limiting": sorted(set(fails[smallest]))[:5] if smallest else []}


def _tile(lay: S.Layout) -> tuple[int, int] | None:
    g = lay.granularity
    if lay.packing.flat:
        return None
    if g.kind == "block" and g.block is not None:
        return g.block
    if g.kind == "group" and g.size and lay.scale_format != "E8M0":
        return 1, g.size
    return None


def _kv_heads(config: Mapping[str, Any] | None) -> int | None:
    if not isinstance(config, Mapping):
        return None
    for section in (config, config.get("text_config")):
        if isinstance(section, Mapping):
            v = section.get("num_key_value_heads")
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _splits(proj: str, out: int, inp: int, tp: int, tile: tuple[int, int],
            kv_heads: int | None) -> bool:
    """Whether a projection of logical [out, in] splits over ``tp`` ranks on block
    boundaries (tile = block rows, block cols)."""
    br, bc = tile
    if tp == 1 and _COLUMN.get(proj, 1) == 1:  # one rank holds it whole: nothing is split
        return True
    if proj in _ROW:
        return inp % tp == 0 and (inp // tp) % bc == 0
    if proj in _KV and kv_heads and out % kv_heads == 0 and (
            kv_heads % tp == 0 or tp % kv_heads == 0):
        per_rank = (out // kv_heads) * max(1, kv_heads // tp)  # heads replicate past kv_heads
        return per_rank % br == 0
    parts = _COLUMN[proj]
    if out % (parts * tp):
        return False
    return (out // (parts * tp)) % br == 0  # a fused layer splits at its parts even at TP 1


def named_rows(frame: Frame, template: str) -> Callable[[int], str]:
    """row -> the name ``template`` has for that row's integers."""
    parts = template.split("{}")

    def name(r: int) -> str:
        ints = frame.ints[frame.int_starts[r]:frame.int_starts[r + 1]].tolist()
        return "".join(p + (str(ints[i]) if i < len(ints) else "") for i, p in enumerate(parts))
    return name


__all__ = ["CompanionRows", "ExtraRows", "Loose", "PlainLinear", "QuantMap", "TP_SIZES",
           "WeightSet", "distinct_shapes", "module_kind", "named_rows",
           "scheme_kinds"]
