"""--deep, summarised for the HTML report: per column (a role of the decoder,
"component role" elsewhere), per layer x expert, what the kernels measured
(`HeatMap`), and how often each FP8 code occurs (`CodeHistogram`).

The deep driver hands every measurement to `DeepMaps` on its judging thread.
Bounds: a column's map has at most `MAX_CELLS` cells (distinct layers x
distinct experts; real MoE models have < 30k), a histogram 256 bins per column
and format. The histograms count a bounded sample of each FP8 tensor
(`sample_spans`: all of a tensor up to 64 KiB, else 4 spans of 16 KiB spread
over it), because a full byte histogram runs at a fifth of the speed of the
statistics kernels; the page says how many codes were sampled. Measured on
MiniMax-M2-shaped experts (4.5 MiB each, pages mapped): the sample costs
~20 us a tensor (counted in the block-statistics call of an FP8 weight), the
block statistics ~170 us.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from . import _core, kernels
from .checks.data import BlockClasses
from .frame import Frame
from .overview import column_name
from .result import CodeHistogram, HeatMap
from .taxonomy import COMPONENTS, ROLES

#: cells of one column's map (layers x experts); a larger column gets no map.
MAX_CELLS = 1 << 16
#: bytes of one tensor the code histogram counts, in SAMPLE_SPANS spans.
SAMPLE_BYTES = 64 << 10
SAMPLE_SPANS = 4

_COUNTS = ("tensors", "codes", "nan", "inf", "blocks", "zero_blocks", "low_blocks",
           "saturated", "bad_scales")


def sample_spans(n: int) -> list[tuple[int, int]]:
    """The byte ranges [start, end) of an n-byte tensor that its histogram counts:
    all of it up to SAMPLE_BYTES, else SAMPLE_SPANS spans of SAMPLE_BYTES /
    SAMPLE_SPANS bytes, evenly spaced, the first at 0 and the last ending at n."""
    if n <= SAMPLE_BYTES:
        return [(0, n)]
    piece = SAMPLE_BYTES // SAMPLE_SPANS
    last = n - piece
    return [(s, s + piece) for s in (k * last // (SAMPLE_SPANS - 1)
                                     for k in range(SAMPLE_SPANS))]


def sample_histogram(raw: np.ndarray) -> np.ndarray:
    """uint64[256]: code counts over `sample_spans` of a tensor's bytes (the core's
    histogram kernel over all spans in one call: the per-call cost of the general
    `kernels.fp8_histogram` is larger than a span's)."""
    return _core.histogram(raw, sample_spans(int(raw.size)))


def _dense(values: list[Any]) -> list[Any]:
    """A metric as stored: [] when it is zero (or None) in every cell."""
    return values if any(v is not None and v != 0 for v in values) else []


@dataclass
class _Map:
    column: str
    layers: list[int]
    experts: list[int]
    counts: dict[str, list[int]]
    log2_sum: list[float]
    log2_n: list[int]


@dataclass
class _Hist:
    counts: np.ndarray = field(default_factory=lambda: np.zeros(256, np.uint64))
    tensors: int = 0
    sampled: int = 0
    total: int = 0


class DeepMaps:
    """Accumulates one deep scan's measurements by tensor row of `frame`."""

    def __init__(self, frame: Frame) -> None:
        self.frame = frame
        n = len(frame)
        comp = frame.component.astype(np.int64)
        col = comp * len(ROLES) + frame.part
        layer, expert = frame.layer, frame.expert
        self.col = col
        self.map_of = np.full(n, -1, dtype=np.int64)
        self.cell_of = np.zeros(n, dtype=np.int64)
        self.maps: list[_Map] = []
        in_layer = layer >= 0
        for c in np.unique(col[in_layer]).tolist():
            rows = np.flatnonzero(in_layer & (col == c))
            name = self._column(c)
            layers, li = np.unique(layer[rows], return_inverse=True)
            experts, ei = np.unique(expert[rows], return_inverse=True)
            cells = len(layers) * len(experts)
            if cells > MAX_CELLS:
                continue
            self.map_of[rows] = len(self.maps)
            self.cell_of[rows] = li * len(experts) + ei
            self.maps.append(_Map(name, layers.tolist(), experts.tolist(),
                                  {k: [0] * cells for k in _COUNTS}, [0.0] * cells,
                                  [0] * cells))
        self.hists: dict[tuple[str, str], _Hist] = {}

    @staticmethod
    @cache  # a small, fixed set: components x roles
    def _column(c: int) -> str:
        comp, part = divmod(c, len(ROLES))
        return column_name(COMPONENTS[comp], ROLES[part])

    def _cell(self, row: int) -> tuple[_Map, int] | None:
        m = int(self.map_of[row])
        return None if m < 0 else (self.maps[m], int(self.cell_of[row]))

    def fp8(self, row: int, stats: kernels.Fp8Stats, hist: np.ndarray | None,
            blocks: BlockClasses | None) -> None:
        """One FP8 tensor: its statistics, its sampled code histogram, and its
        block classes when it was read with a block scale."""
        if hist is not None:
            key = (self._column(int(self.col[row])), stats.dtype)
            h = self.hists.get(key)
            if h is None:
                h = self.hists[key] = _Hist()
            h.counts += hist
            h.tensors += 1
            h.sampled += int(hist.sum())
            h.total += stats.count
        at = self._cell(row)
        if at is None:
            return
        m, i = at
        c = m.counts
        c["tensors"][i] += 1
        c["codes"][i] += stats.count
        c["nan"][i] += stats.nan
        c["inf"][i] += stats.inf
        c["saturated"][i] += stats.saturated
        if blocks is not None:
            c["blocks"][i] += blocks.blocks
            c["zero_blocks"][i] += blocks.zero
            c["low_blocks"][i] += blocks.low

    def floats(self, row: int, stats: kernels.FloatStats) -> None:
        at = self._cell(row)
        if at is None:
            return
        m, i = at
        c = m.counts
        c["tensors"][i] += 1
        c["nan"][i] += stats.nan
        c["inf"][i] += stats.pos_inf + stats.neg_inf

    def scales(self, row: int, values: np.ndarray) -> None:
        """Scale values (float32) of the tensor at `row` (a scale tensor's row,
        which sits in its weight's cell)."""
        at = self._cell(row)
        if at is None:
            return
        m, i = at
        v = values.ravel()
        # all good (the usual case: two reductions, a NaN fails the first) is v itself
        ok = bool(v.size) and bool(v.min() > 0) and bool(np.isfinite(v.max()))
        good = v if ok else v[np.isfinite(v) & (v > 0)]
        m.counts["bad_scales"][i] += int(v.size - good.size)
        if good.size:
            m.log2_sum[i] += float(np.log2(good.astype(np.float64)).sum())
            m.log2_n[i] += int(good.size)

    def e8m0(self, row: int, stats: kernels.E8m0Stats) -> None:
        """An F8_E8M0 scale read on its own: its NaN codes are bad scales."""
        at = self._cell(row)
        if at is not None:
            at[0].counts["bad_scales"][at[1]] += stats.nan

    def finish(self) -> tuple[list[HeatMap], list[CodeHistogram]]:
        maps = []
        for m in self.maps:
            c = m.counts
            if not any(c["tensors"]) and not any(m.log2_n) and not any(c["bad_scales"]):
                continue  # nothing of this column was measured (e.g. zero-size tensors)
            mean = [round(s / n, 2) if n else None
                    for s, n in zip(m.log2_sum, m.log2_n, strict=True)]
            ppm = [round(1e6 * s / n) if n else None
                   for s, n in zip(c["saturated"], c["codes"], strict=True)]
            maps.append(HeatMap(
                m.column, m.layers, m.experts, **{k: _dense(c[k]) for k in (
                    "tensors", "nan", "inf", "blocks", "zero_blocks", "low_blocks",
                    "bad_scales")},
                saturated_ppm=_dense(ppm), scale_log2=_dense(mean)))
        hists = [CodeHistogram(col, dtype, [int(x) for x in h.counts.tolist()], h.tensors,
                               h.sampled, h.total)
                 for (col, dtype), h in self.hists.items()]
        order = {name: i for i, name in enumerate(m.column for m in self.maps)}
        hists.sort(key=lambda h: (order.get(h.column, len(order)), h.column, h.dtype))
        return maps, hists


__all__ = ["MAX_CELLS", "SAMPLE_BYTES", "SAMPLE_SPANS", "DeepMaps", "sample_histogram",
           "sample_spans"]
