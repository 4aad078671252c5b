"""--deep: what the kernels measured, turned into findings.

The deep driver (`ckptscan.deep`) reads bytes and hands over measurements; the
thresholds and severities live here. Scale shape and dtype are the header
checks' (`checks.quant`): a scale of the wrong shape is not compared block by
block here. Every finding is added through ``ctx.findings.rows``, so deep
findings collapse per name template like the header ones.

Blocks are the scale's granularity: a 128 x 128 block, a group of 16 / 32 / 128
inputs, a channel (one output row), the tensor (or one expert of a stack).

Why max/4 for ``fp8-range-unused``: with absmax scaling (scale = absmax / max)
every non-zero block has a code of magnitude max (448 for e4m3fn); an exporter
that rounds scales to a power of two (ue8m0, MX) loses less than 2x, so the
largest code stays above max/2. A block below max/4 wastes at least two binades
of its range, or its scale belongs to another (larger) block.

Clipping (a share of a block's codes at +-max): under absmax scaling exactly
the block maximum reaches max (and ties), so 5% of a block is far beyond any
properly scaled one. MX scales (E8M0, OCP's floor(log2(absmax)) - emax) put
values of [max, 2^(emax+1)) at max: in clean groups of 32 up to a third of the
codes saturate (measured on Gaussian weights), so only a majority counts there.
Symmetric INT groups saturate a few codes (absmax / 7.5 rounds the top 13% of
the range to +-7): in groups of 128 4-bit codes (64 8-bit ones) at most a tenth
of Gaussian weights do, so a fifth counts; smaller INT4 groups and FP4 groups of
16 / 32 saturate too often to judge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .. import codes, kernels, schemes
from ..context import ScanContext
from ..quantmap import WeightSet
from ..result import DeepSummary
from ..taxonomy import KIND_CODE

RANGE_FACTOR = 4.0
#: float32 lowest; vLLM fills scale parameters with it before loading.
VLLM_UNFILLED_SCALE = np.float32(np.finfo(np.float32).min)
#: share of a block's codes at +-max beyond which it is clipping, by scaling
CLIP_SHARE = 0.05
CLIP_SHARE_MX = 0.5
CLIP_SHARE_INT = 0.2
CLIP_MIN_CODES = 4
CLIP_MIN_INT_GROUP = 64
#: E8M0 scale exponents a weight's scale can plausibly have (code 0 is an
#: all-zero group's); outside: integers stored as exponents, or garbage
E8M0_PLAUSIBLE = (127 - 64, 127 + 32)
_F32_TINY = np.float32(np.finfo(np.float32).tiny)
_FP8_FORMATS = frozenset({"E4M3", "E5M2", "E4M3FNUZ", "E5M2FNUZ"})


@lru_cache(maxsize=8)
def decode_table(dtype: str) -> np.ndarray:
    """float64[256]: every code's value (built once per format, not per tensor)."""
    return kernels.fp8_decode_table(dtype)


@lru_cache(maxsize=8)
def max_code(dtype: str) -> int:
    """The magnitude code (0..0x7F) of the format's largest finite value."""
    table = decode_table(dtype)[:128]
    finite = np.where(np.isfinite(table), table, -np.inf)
    return int(np.argmax(finite))


@lru_cache(maxsize=8)
def _format_max(dtype: str) -> float:
    """The format's largest finite value."""
    return float(decode_table(dtype)[max_code(dtype)])


@lru_cache(maxsize=8)
def _low_code(dtype: str) -> int:
    """The smallest magnitude code from which every finite code's value is at
    least max / RANGE_FACTOR: a block whose largest code is at least this one is
    not low (a block's largest code is a finite one)."""
    table = decode_table(dtype)
    bound = table[max_code(dtype)] / RANGE_FACTOR
    c = 0x80
    while c > 0 and (not np.isfinite(table[c - 1]) or table[c - 1] >= bound):
        c -= 1
    return c


def _smallest_block(shape: tuple[int, ...], block: tuple[int, int]) -> int:
    """Elements of the smallest block of a weight cut into (br, bc) blocks (the
    last row and column of blocks may be partial; kernels.Fp8BlockStats.elements)."""
    rows, cols = (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[-1] if shape else 1)

    def last(n: int, b: int) -> int:
        return n - (-(-n // b) - 1) * b if n else 0
    return last(rows, block[0]) * last(cols, block[1])


def fp8_weight_set(ws: WeightSet) -> bool:
    """An FP8 weight read by blocks (its dtype an FP8 one, its format FP8)."""
    return ws.dtype_ok and ws.dtype in schemes.FP8_DTYPES and ws.weight_format in _FP8_FORMATS


def packed_weight_set(ws: WeightSet) -> bool:
    """An FP4 / INT weight whose codes can be read without its zero points: E2M1
    two per byte (NVFP4, MXFP4, gpt-oss, DeepSeek-V4 experts), symmetric INT in
    I32 words packed from the least significant bits (compressed-tensors) or one
    per I8 (int-quantized, naive-quantized)."""
    lay, p = ws.layout, ws.layout.packing
    if not ws.dtype_ok or p.flat or p.transposed:
        return False
    if lay.weight_format == "E2M1":
        return p.per_element == 2 and p.order == "low-nibble-first"
    if not lay.weight_format.startswith("INT") or any(
            c.kind == schemes.ZERO_POINT for c in lay.companions):
        return False
    if p.per_element == 1:
        return ws.dtype == "I8"
    return p.order == "lsb-first" and ws.dtype == "I32"


#: the blocks a per-tensor-scaled weight is judged by (zeros, clipping)
TENSOR_TILE = (128, 128)


def tile_of(lay: schemes.Layout, logical: tuple[int, ...]) -> tuple[int, int]:
    """(rows, cols) of the blocks a weight is judged by: what one scale covers
    (block, group, channel); 128 x 128 tiles under one per-tensor scale."""
    g = lay.granularity
    rows, cols = (logical[-2], logical[-1]) if len(logical) >= 2 else (1, logical[-1])
    if g.kind == "block" and g.block is not None:
        return g.block
    if g.kind == "group" and g.size:
        return 1, g.size
    if g.kind == "channel":
        return 1, max(cols, 1)
    return min(TENSOR_TILE[0], max(rows, 1)), min(TENSOR_TILE[1], max(cols, 1))


@dataclass
class Fp8WeightMeasure:
    """One FP8 weight read block by block with its scale (values copied)."""

    row: int
    scale_row: int
    blocks: kernels.Fp8BlockStats  # whole-tensor stats; per block codes and counts
    tile: tuple[int, int]
    scale: np.ndarray | None  # float32 in the block grid; None: no usable scale
    e8m0: np.ndarray | None   # the scale's E8M0 exponent codes when stored so
    layout: schemes.Layout

    @property
    def stats(self) -> kernels.Fp8Stats:
        return self.blocks.stats

    @property
    def codes(self) -> np.ndarray:
        """The largest finite magnitude code per block."""
        return self.blocks.absmax_codes


@dataclass
class BlockClasses:
    """How many blocks one FP8 weight has, how many are all zeros, and how many
    are non-zero with their largest code below max / RANGE_FACTOR (what the deep
    maps of the HTML report count)."""

    blocks: int
    zero: int
    low: int


@dataclass
class GroupStats:
    """Per group of a packed weight: all codes zero, codes at +-max, elements."""

    zero: np.ndarray
    saturated: np.ndarray
    elements: np.ndarray


@dataclass
class PackedMeasure:
    row: int
    scale_row: int
    layout: schemes.Layout
    groups: GroupStats
    scale: np.ndarray | None       # float32 in the group grid; None: no usable scale
    scale_raw: np.ndarray | None   # the scale's bytes (copied)
    scale_dtype: str | None


def _first(mask: np.ndarray, k: int = 5) -> list[list[int]]:
    return [[int(x) for x in idx] for idx in np.argwhere(mask)[:k]]


def _clip_share(lay: schemes.Layout) -> float:
    return CLIP_SHARE_MX if lay.scale_format == "E8M0" else CLIP_SHARE


def fp8_weight(ctx: ScanContext, m: Fp8WeightMeasure, summary: DeepSummary) -> BlockClasses:
    """Findings of one FP8 weight and its scale; returns its block classes."""
    fs = ctx.findings
    stats = m.stats
    nblocks = int(m.codes.size)
    if stats.dtype == "F8_E4M3":
        summary.e4m3_negative_zero += stats.neg_zero
    maxf = _format_max(stats.dtype)
    if stats.nan:
        nan_blocks = m.blocks.nan > 0
        first = _first(nan_blocks, 1)[0]
        nb = int(nan_blocks.sum())
        fs.rows("fp8-nan", [m.row], lambda i: f"{stats.nan} NaN codes in {nb} of {nblocks} "
                f"blocks (first block {first})", count=stats.nan, blocks=nb, first_block=first)
    if stats.inf:
        fs.rows("fp8-inf", [m.row], lambda i: f"{stats.inf} Inf codes", count=stats.inf)
    # under one per-tensor scale a tile's maximum may be anything below the tensor's
    per_tile = m.layout.granularity.kind != "tensor"
    # A weight without NaN codes whose every block's largest code is non-zero and at
    # least max / RANGE_FACTOR (the usual one) has no zero and no low block: one
    # reduction tells, instead of the masks.
    lowest = int(m.codes.min()) if nblocks else 0
    if stats.nan or lowest == 0 or (per_tile and lowest < _low_code(stats.dtype)):
        classes = _block_classes(ctx, m, decode_table(stats.dtype), maxf, per_tile)
    else:
        classes = BlockClasses(nblocks, 0, 0)
    # A block clips with more saturated codes than its limit, which grows with its
    # size: none does when the most any block has is within the smallest one's limit.
    saturated, share = m.blocks.saturated, _clip_share(m.layout)
    if stats.saturated > CLIP_MIN_CODES and int(saturated.max()) > max(
            CLIP_MIN_CODES, math.ceil(share * _smallest_block(m.blocks.shape, m.blocks.block))):
        _clipping(ctx, "fp8-clipping", m.row, saturated, m.blocks.elements, share,
                  f"+-{maxf:g}")
    if m.e8m0 is not None:
        e8m0_codes(ctx, m.scale_row, m.e8m0)
    elif m.scale is not None and m.scale_row not in ctx.scales_read:
        ue8m0 = m.layout.scale_format == "UE8M0"
        scale_values(ctx, m.scale_row, m.scale if per_tile else m.scale[..., :1, :1], ue8m0)
    if m.scale is not None and m.layout.granularity.kind == "block":
        s = m.scale if _positive_finite(m.scale) else m.scale[
            np.isfinite(m.scale) & (m.scale > 0)]
        summary.block_scales += int(m.scale.size)
        summary.block_scales_pow2 += int((np.frexp(s)[0] == 0.5).sum())
    return classes


def _block_classes(ctx: ScanContext, m: Fp8WeightMeasure, table: np.ndarray, maxf: float,
                   per_tile: bool) -> BlockClasses:
    """Zero and low blocks of an FP8 weight, block by block, with their findings."""
    fs = ctx.findings
    stats = m.stats
    nblocks = int(m.codes.size)
    nan_blocks = m.blocks.nan > 0
    zero_blocks = (m.codes == 0) & ~nan_blocks
    all_zero = zero_blocks.copy()
    if m.scale is not None:
        zero_blocks &= m.scale != 0
    nonzero = (m.codes != 0) & ~nan_blocks
    if stats.zero == stats.count and stats.count > 0:
        fs.rows("fp8-all-zero", [m.row], lambda i: f"all {stats.count} codes are zero")
    elif zero_blocks.any():
        nz = int(zero_blocks.sum())
        fs.rows("fp8-zero-block", [m.row], lambda i: (
            f"{nz} of {nblocks} blocks ({m.tile[0]} x {m.tile[1]}) are all zeros under a "
            f"nonzero scale (first {_first(zero_blocks, 1)[0]}): lost data"), blocks=nz,
            first_blocks=_first(zero_blocks))
    low = nonzero & (table[m.codes] < maxf / RANGE_FACTOR) & per_tile
    if low.any():
        nl = int(low.sum())
        fs.rows("fp8-range-unused", [m.row], lambda i: (
            f"{nl} of {nblocks} blocks have their largest |code| below "
            f"{maxf / RANGE_FACTOR:g} (format max {maxf:g}): unused range, or a scale that "
            "belongs to another block"), blocks=nl, first_blocks=_first(low),
            smallest_absmax=float(table[m.codes][low].min()))
    return BlockClasses(nblocks, int(all_zero.sum()), int(low.sum()))


def _positive_finite(s: np.ndarray) -> bool:
    """Every value finite and > 0 (a NaN makes the minimum NaN, so False)."""
    return bool(s.size) and bool(s.min() > 0) and bool(np.isfinite(s.max()))


def _clipping(ctx: ScanContext, code: str, row: int, saturated: np.ndarray,
              elements: np.ndarray, share: float, at: str) -> None:
    limit = np.maximum(CLIP_MIN_CODES, np.ceil(share * elements))
    clip = saturated > limit
    if not clip.any():
        return
    shares = saturated / np.maximum(elements, 1)
    worst = float(shares[clip].max())
    first = _first(clip, 1)[0]
    n = int(clip.sum())
    ctx.findings.rows(code, [row], lambda i: (
        f"{n} blocks have more than {share:.0%} of their codes at {at} (block {first}: "
        f"{float(shares[tuple(first)]):.0%}): clipping, the scale is too small"),
        blocks=n, first_block=first, share=round(worst, 4))


def packed_weight(ctx: ScanContext, m: PackedMeasure) -> None:
    """Zero groups under a nonzero scale, an all-zero weight, clipping (INT), and
    the scale read with it: E8M0 exponents, E4M3 block scales, float scales."""
    _packed_scale(ctx, m)
    g = m.groups
    zero = g.zero.copy()
    n = int(zero.size)
    if n and zero.all():
        ctx.findings.rows("fp8-all-zero", [m.row], lambda i: (
            f"all codes of this {m.layout.weight_format} weight are zero"))
        return
    if m.scale is not None:
        zero &= m.scale != 0
    if zero.any():
        nz = int(zero.sum())
        ctx.findings.rows("fp8-zero-block", [m.row], lambda i: (
            f"{nz} of {n} groups of {m.layout.weight_format} codes are all zeros under a "
            f"nonzero scale (first {_first(zero, 1)[0]}): lost data"), blocks=nz,
            first_blocks=_first(zero))
    lay = m.layout
    if lay.weight_format.startswith("INT"):
        bits = int(lay.weight_format[3:])
        size = lay.granularity.size or int(g.elements.max(initial=0))
        if size >= (CLIP_MIN_INT_GROUP if bits >= 8 else 2 * CLIP_MIN_INT_GROUP):
            top = 2 ** (bits - 1) - 1
            _clipping(ctx, "fp8-clipping", m.row, g.saturated, g.elements, CLIP_SHARE_INT,
                      f"+-{top} (or {-top - 1})")


def _packed_scale(ctx: ScanContext, m: PackedMeasure) -> None:
    raw, dtype, row = m.scale_raw, m.scale_dtype, m.scale_row
    if raw is None or dtype is None or row in ctx.scales_read:
        return
    if dtype == "F8_E8M0" or (dtype == "U8" and m.layout.scale_format == "E8M0"):
        e8m0_codes(ctx, row, raw)
    elif dtype == "F8_E4M3":
        e4m3_scales(ctx, row, raw)
    elif m.scale is not None:
        scale_values(ctx, row, m.scale)


def e4m3_scales(ctx: ScanContext, row: int, raw: np.ndarray) -> None:
    """E4M3 block scales (NVFP4): NaN bytes (0x7F, 0xFF: what an FP32 -> E4M3 cast
    of an out-of-range scale writes) and negative scales."""
    b = raw.reshape(-1)
    nan = int(((b & 0x7F) == 0x7F).sum())
    neg = int(((b & 0x80) != 0).sum()) - int((b == 0xFF).sum()) - int((b == 0x80).sum())
    if nan:
        ctx.findings.rows("scale-nan-e4m3", [row], lambda i: (
            f"{nan} NaN codes (0x7F / 0xFF) among {b.size} E4M3 scales"), count=nan)
    if neg:
        ctx.findings.rows("scale-nonpositive", [row], lambda i: f"{neg} E4M3 scales are "
                          "negative", count=neg)


def group_stats(codes: np.ndarray, size: int, zero_codes: tuple[int, ...],
                max_codes: tuple[int, ...]) -> GroupStats:
    """Per group of ``size`` consecutive inputs of unpacked codes [..., out, in]."""
    *lead, inp = codes.shape
    ng = -(-inp // size)
    pad = ng * size - inp
    is_zero = np.isin(codes, zero_codes)
    is_max = np.isin(codes, max_codes)
    if pad:
        width = [(0, 0)] * (codes.ndim - 1) + [(0, pad)]
        is_zero = np.pad(is_zero, width, constant_values=True)
        is_max = np.pad(is_max, width)
    shape = (*lead, ng, size)
    elements = np.full(ng, size, np.int64)
    if pad:
        elements[-1] = size - pad
    return GroupStats(np.asarray(is_zero.reshape(shape).all(axis=-1)),
                      np.asarray(is_max.reshape(shape).sum(axis=-1)),
                      np.broadcast_to(elements, (*lead, ng)))


def scale_values(ctx: ScanContext, row: int, s: np.ndarray, ue8m0: bool = False) -> None:
    """Block, group, channel, tensor, global and input scales: finite, positive,
    loaded."""
    fs = ctx.findings
    s = s.astype(np.float32, copy=False).ravel()
    # all of them normal and positive (the usual case: two reductions) is none of these
    normal = not s.size or bool(s.min() >= _F32_TINY) and bool(np.isfinite(s.max()))
    if not normal:
        _bad_scales(ctx, row, s)
    if ue8m0 and s.size and ctx.frame.dtype_name(row) == "F32":
        good = s if normal else s[np.isfinite(s) & (s > 0)]
        if not good.size:
            return
        mant, _ = np.frexp(good)
        bad = int((mant != 0.5).sum())
        if bad:
            fs.rows("scale-not-pow2", [row], lambda i: f"{bad} scales are not powers of two "
                    "(scale_fmt ue8m0)", count=bad)


def _bad_scales(ctx: ScanContext, row: int, s: np.ndarray) -> None:
    """Unfilled, NaN / Inf, non-positive and subnormal scales among float32 s."""
    fs = ctx.findings
    unfilled = s == VLLM_UNFILLED_SCALE
    nonfinite = ~np.isfinite(s)
    nonpos = (s <= 0) & ~unfilled & ~nonfinite
    subn = (s != 0) & (np.abs(s) < _F32_TINY) & ~nonpos
    if unfilled.any():
        n = int(unfilled.sum())
        fs.rows("scale-unfilled", [row], lambda i: f"{n} scales are -3.4028235e38, vLLM's "
                "never-loaded sentinel: the scale was not exported", count=n)
    if nonfinite.any():
        n = int(nonfinite.sum())
        fs.rows("scale-nonfinite", [row], lambda i: f"{n} scales are NaN or Inf", count=n)
    if nonpos.any():
        n, low = int(nonpos.sum()), float(s[nonpos].min())
        fs.rows("scale-nonpositive", [row], lambda i: f"{n} scales are <= 0 (min {low:g})",
                count=n)
    if subn.any():
        n = int(subn.sum())
        fs.rows("scale-subnormal", [row], lambda i: f"{n} scales are float32 subnormals",
                count=n)


def fp8_tensor(ctx: ScanContext, row: int, stats: kernels.Fp8Stats,
               summary: DeepSummary) -> None:
    """An FP8 tensor read whole: a weight's NaN codes, or an E4M3 scale's (NVFP4
    block scales: NaN bytes 0x7F / 0xFF, negative scales)."""
    fs, dtype = ctx.findings, stats.dtype
    if dtype == "F8_E4M3":
        summary.e4m3_negative_zero += stats.neg_zero
    if ctx.frame.kind[row] == KIND_CODE["scale"]:
        if stats.nan:
            fs.rows("scale-nan-e4m3", [row], lambda i: f"{stats.nan} NaN codes (0x7F / 0xFF) "
                    f"among {stats.count} {dtype} scales", count=stats.nan)
        if stats.negative:
            fs.rows("scale-nonpositive", [row], lambda i: f"{stats.negative} scales are "
                    "negative", count=stats.negative)
        return
    if stats.nan:
        fs.rows("fp8-nan", [row], lambda i: f"{stats.nan} NaN codes in {dtype} tensor",
                count=stats.nan)


def float_tensor(ctx: ScanContext, row: int, stats: kernels.FloatStats) -> None:
    fs = ctx.findings
    if stats.nan:
        fs.rows("float-nan", [row], lambda i: f"{stats.nan} NaN of {stats.count} values",
                count=stats.nan)
    if stats.pos_inf or stats.neg_inf:
        fs.rows("float-inf", [row], lambda i: f"{stats.pos_inf} +Inf and {stats.neg_inf} -Inf "
                f"of {stats.count} values", pos=stats.pos_inf, neg=stats.neg_inf)


def e8m0_codes(ctx: ScanContext, row: int, raw: np.ndarray) -> None:
    """E8M0 exponents (F8_E8M0, or U8 in MX schemes): NaN (0xFF) and exponents
    no weight scale has."""
    codes_ = raw.reshape(-1)
    nan = int((codes_ == 0xFF).sum())
    if nan:
        ctx.findings.rows("e8m0-nan", [row], lambda i: f"{nan} NaN codes (0xFF) of "
                          f"{codes_.size} E8M0 scales", count=nan)
    lo, hi = E8M0_PLAUSIBLE
    odd = (codes_ != 0) & (codes_ != 0xFF) & ((codes_ < lo) | (codes_ > hi))
    if odd.any():
        n = int(odd.sum())
        vals = codes_[odd].astype(np.int64) - 127
        ctx.findings.rows("e8m0-implausible", [row], lambda i: (
            f"{n} E8M0 scales are 2^{int(vals.min())} .. 2^{int(vals.max())}, outside "
            f"2^{lo - 127} .. 2^{hi - 127}"), count=n)


def e8m0_stats(raw: np.ndarray) -> kernels.E8m0Stats:
    """The kernels' E8M0 statistics of copied exponent codes (U8 scales too)."""
    c = raw.reshape(-1)
    ok = c[c != 0xFF]
    return kernels.E8m0Stats(int(c.size), int(c.size - ok.size),
                             int(ok.min()) if ok.size else 255, int(ok.max()) if ok.size else 0)


def zero_points(ctx: ScanContext, row: int, raw: np.ndarray) -> None:
    """Unpacked integer zero points within the range of their weight's bits."""
    qm, frame = ctx.quant_map, ctx.frame
    owner = int(qm.owner[row])
    if owner < 0 or qm.set_of[owner] < 0:
        return
    fmt = qm.sets[int(qm.set_of[owner])].layout.weight_format
    if not fmt.startswith("INT") or not fmt[3:].isdigit():
        return
    bits = int(fmt[3:])
    signed = frame.dtype_name(row) == "I8"
    vals = raw.view(np.int8 if signed else np.uint8).astype(np.int64)
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2 ** bits - 1)
    bad = (vals < lo) | (vals > hi)
    if bad.any():
        n = int(bad.sum())
        ctx.findings.rows("zero-point-range", [row], lambda i: (
            f"{n} zero points outside [{lo}, {hi}] of {fmt} (e.g. {int(vals[bad][0])})"),
            count=n)


def read_failed(ctx: ScanContext, row: int, message: str) -> None:
    """Attached to its file's root cause when there is one (a file that shrank)."""
    frame = ctx.frame
    ctx.findings.add(codes.finding("deep-read-failed", message, frame.file(row),
                                   frame.name(row)),
                     group=frame.templates[int(frame.template[row])], cause=frame.file(row))


__all__ = [
    "CLIP_SHARE", "E8M0_PLAUSIBLE", "RANGE_FACTOR", "VLLM_UNFILLED_SCALE", "BlockClasses",
    "Fp8WeightMeasure", "GroupStats", "PackedMeasure", "decode_table", "e8m0_codes",
    "e8m0_stats", "float_tensor", "fp8_tensor", "fp8_weight", "fp8_weight_set", "group_stats",
    "max_code", "packed_weight", "packed_weight_set", "read_failed", "scale_values", "tile_of",
    "zero_points",
]
