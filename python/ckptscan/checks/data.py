"""--deep: what the kernels measured, turned into findings.

The deep driver (`ckptscan.deep`) reads bytes and hands over measurements; the
thresholds and severities live here. Scale shape and dtype are the header
checks' (`checks.quant`): a scale of the wrong shape is not compared block by
block here.

Why max/4 for ``fp8-range-unused``: with absmax scaling (scale_inv = absmax / max)
every non-zero block has a code of magnitude max (448 for e4m3fn); an exporter
that rounds scales up to a power of two (ue8m0) loses less than 2x, so the
largest code stays above max/2. A block below max/4 wastes at least two binades
of its range, or its scale belongs to another (larger) block.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .. import _core, codes, kernels
from ..context import ScanContext

RANGE_FACTOR = 4.0
#: float32 lowest; vLLM fills scale parameters with it before loading.
VLLM_UNFILLED_SCALE = np.float32(np.finfo(np.float32).min)


@dataclass
class Fp8WeightMeasure:
    """One FP8 weight read with its block scale (scale values copied, float32)."""

    row: int
    scale_row: int
    stats: kernels.Fp8Stats
    blocks: kernels.BlockAbsmax
    scale: np.ndarray | None  # float32 in the weight's block grid; None: unusable shape


@dataclass
class BlockClasses:
    """Blocks of one FP8 weight (bool masks in its block grid): with NaN codes,
    all zeros, and non-zero with their largest code below max / RANGE_FACTOR."""

    nan: np.ndarray
    zero: np.ndarray
    low: np.ndarray


@functools.lru_cache(maxsize=8)
def _decode_table(dtype: str) -> np.ndarray:
    table = kernels.fp8_decode_table(dtype)
    table.flags.writeable = False  # shared by every caller
    return table


def block_classes(ba: kernels.BlockAbsmax) -> BlockClasses:
    maxf = float(_core.fp8_traits(ba.dtype)["max_finite"])
    nan = ba.nan > 0
    zero = (ba.codes == 0) & ~nan
    low = ~zero & ~nan & (_decode_table(ba.dtype)[ba.codes] < maxf / RANGE_FACTOR)
    return BlockClasses(nan, zero, low)


def _first_blocks(mask: np.ndarray, k: int = 5) -> list[list[int]]:
    return [[int(i), int(j)] for i, j in np.argwhere(mask)[:k]]


def fp8_weight(ctx: ScanContext, m: Fp8WeightMeasure, ue8m0: bool) -> BlockClasses:
    """Findings of one FP8 weight and its block scale; returns its block classes."""
    fs = ctx.findings
    ba, stats = m.blocks, m.stats
    nblocks = int(ba.codes.size)
    maxf = float(_core.fp8_traits(stats.dtype)["max_finite"])
    table = _decode_table(stats.dtype)
    classes = block_classes(ba)
    nan_blocks = classes.nan
    if stats.nan:
        first = _first_blocks(nan_blocks, 1)[0]
        nb = int(nan_blocks.sum())
        fs.rows("fp8-nan", [m.row], lambda i: f"{stats.nan} NaN codes in {nb} of {nblocks} "
                f"blocks (first block {first})", count=stats.nan, blocks=nb, first_block=first)
    if stats.inf:
        fs.rows("fp8-inf", [m.row], lambda i: f"{stats.inf} Inf codes", count=stats.inf)
    zero_blocks = classes.zero
    if stats.zero == stats.count and stats.count > 0:
        fs.rows("fp8-all-zero", [m.row], lambda i: f"all {stats.count} codes are zero")
    elif zero_blocks.any():
        nz = int(zero_blocks.sum())
        fs.rows("fp8-zero-block", [m.row], lambda i: f"{nz} of {nblocks} blocks are all zeros "
                f"(first {_first_blocks(zero_blocks, 1)[0]})", blocks=nz,
                first_blocks=_first_blocks(zero_blocks))
    low = classes.low
    if low.any():
        nl = int(low.sum())
        fs.rows("fp8-range-unused", [m.row], lambda i: (
            f"{nl} of {nblocks} blocks have their largest |code| below "
            f"{maxf / RANGE_FACTOR:g} (format max {maxf:g}): unused range, or a scale that "
            "belongs to another block"), blocks=nl, first_blocks=_first_blocks(low),
            smallest_absmax=float(table[ba.codes][low].min()))
    if m.scale is not None:
        scale_values(ctx, m.scale_row, m.scale, ue8m0)
    return classes


def scale_values(ctx: ScanContext, row: int, s: np.ndarray, ue8m0: bool) -> None:
    """Per-tensor, per-channel or block scales: finite, positive, loaded."""
    fs = ctx.findings
    s = s.astype(np.float32, copy=False).ravel()
    unfilled = s == VLLM_UNFILLED_SCALE
    nonfinite = ~np.isfinite(s)
    nonpos = (s <= 0) & ~unfilled & ~nonfinite
    subn = (s != 0) & (np.abs(s) < np.finfo(np.float32).tiny) & ~nonpos
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
    good = np.isfinite(s) & (s > 0)
    if ue8m0 and ctx.frame.dtype_name(row) == "F32" and good.any():
        mant, _ = np.frexp(s[good])
        bad = int((mant != 0.5).sum())
        if bad:
            fs.rows("scale-not-pow2", [row], lambda i: f"{bad} scales are not powers of two "
                    "(scale_fmt ue8m0)", count=bad)


def fp8_tensor(ctx: ScanContext, row: int, stats: kernels.Fp8Stats) -> None:
    if stats.nan:
        fs, dtype = ctx.findings, stats.dtype
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


def e8m0_tensor(ctx: ScanContext, row: int, stats: kernels.E8m0Stats) -> None:
    if stats.nan:
        ctx.findings.rows("e8m0-nan", [row], lambda i: f"{stats.nan} NaN codes (0xFF)",
                          count=stats.nan)


def read_failed(ctx: ScanContext, row: int, message: str) -> None:
    """Attached to its file's root cause when there is one (a file that shrank)."""
    frame = ctx.frame
    ctx.findings.add(codes.finding("deep-read-failed", message, frame.file(row),
                                   frame.name(row)),
                     group=frame.templates[int(frame.template[row])], cause=frame.file(row))
