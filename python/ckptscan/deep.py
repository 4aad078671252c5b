"""--deep: read every tensor's bytes and hand the measurements to `checks.data`.

What is read, and how, follows the scan's `QuantMap` (the declared scheme):

- an FP8 quantized weight is read with its scale, block by block at the scale's
  granularity (128 x 128 block, group, channel, tensor; an expert stack [E, R, C]
  expert by expert): block maxima, NaN / Inf counts, saturated codes per block;
- a packed FP4 / INT weight (two E2M1 per byte, INT4 / INT8 in I32 words) is
  unpacked from a copy group by group (zero groups, all-zero weights, clipping
  where its scaling makes that measurable);
- everything else by dtype: FP8 tensors through the FP8 statistics, BF16 / F16 /
  F32 / F64 through the float statistics, F8_E8M0 through theirs; a companion's
  values (scales, global and input scales, E8M0 exponents in U8, unpacked zero
  points) are read as copies for the scale checks.

Only readable shards are in the frame (a rejected header is never deep-read),
and every read is bounded by the file's size. Work fans out over a thread pool
(the kernels release the GIL), one worker per core by default, tensors in file
order, consecutive small tensors of mapped files handed to a worker together
(one hand-over for up to 8 of them or 16 MiB); `cancel` stops it between
tensors.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import _core, kernels, schemes
from .checks import data
from .context import ScanContext
from .deepmap import DeepMaps, sample_histogram, sample_spans
from .errors import CkptScanError
from .quantmap import WeightSet
from .result import DeepSummary
from .shard import Shard
from .taxonomy import KIND_CODE

FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")
# F64 is read in pieces of this many bytes (the kernels know no F64).
_F64_PIECE = 64 << 20
# A worker is handed up to this many consecutive tensors, of up to this many bytes.
_BATCH_TENSORS = 8
_BATCH_BYTES = 16 << 20
# Packed weights are unpacked this many stored bytes at a time.
_PACKED_PIECE = 16 << 20
# Companion kinds whose values are scales (finite, positive); offsets (MLX
# biases), zero points, g_idx and shapes are not.
_SCALE_KINDS = frozenset({schemes.SCALE, schemes.GLOBAL_SCALE, schemes.INPUT_SCALE,
                          schemes.KV_SCALE})


@dataclass
class DeepProgress:
    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int


class Cancelled(CkptScanError):
    """The deep scan was stopped (Ctrl-C)."""


class ReadBudgetExceeded(CkptScanError):
    """A deep scan would read more bytes than allowed (`max_bytes`): refused
    before anything was read."""


def check_environment() -> None:
    """A CKPTSCAN_SIMD the CPU or build cannot honour is the user's setting to fix,
    not a finding about any checkpoint."""
    err = kernels.simd_info().get("error")
    if err:
        raise CkptScanError(f"CKPTSCAN_SIMD={os.environ.get('CKPTSCAN_SIMD', '')!r}: {err}")


@dataclass
class _Measured:
    """What a worker read of one tensor (at most one field set)."""

    row: int
    weight: data.Fp8WeightMeasure | None = None
    packed: data.PackedMeasure | None = None
    fp8: kernels.Fp8Stats | None = None
    hist: np.ndarray | None = None  # FP8: sampled code histogram (deepmap)
    floats: kernels.FloatStats | None = None
    scale: np.ndarray | None = None
    e8m0: np.ndarray | None = None  # E8M0 exponent codes (F8_E8M0 or U8), copied
    ints: np.ndarray | None = None  # unpacked integer zero points, copied
    failed: str | None = None


@dataclass
class _Task:
    row: int
    scale_row: int  # -1: none
    nbytes: int
    weight: WeightSet | None = None  # a quantized weight read with its scale
    logical: tuple[int, ...] | None = None  # the weight's logical shape (None: none)


def _copy(shard: Shard, name: str) -> np.ndarray:
    """A tensor's bytes as a fresh array (what the scale checks inspect), copied
    under the fault guard: a file that shrank is an OSError, not SIGBUS."""
    return _core.copy_guarded(shard.raw(name))


def _scale_f32(raw: np.ndarray, dtype: str) -> np.ndarray | None:
    """Scale values as float32 (None for a dtype that is no scale's). U8 is read
    as E8M0 exponents (MX scales)."""
    if dtype == "F32":
        return np.asarray(raw.view(np.float32))
    if dtype == "BF16":
        return np.asarray((raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32))
    if dtype == "F16":
        return np.asarray(raw.view(np.float16).astype(np.float32))
    if dtype in ("F8_E8M0", "U8"):
        with np.errstate(over="ignore"):
            vals: np.ndarray = np.ldexp(np.float32(1.0), raw.astype(np.int32) - 127).astype(
                np.float32)
        vals[raw == 0xFF] = np.nan
        return vals
    if dtype == "F8_E4M3":
        return np.asarray(kernels.fp8_decode_table("F8_E4M3")[raw].astype(np.float32))
    return None


def scale_values(shard: Shard, name: str, dtype: str) -> np.ndarray | None:
    """A small scale tensor's values (float32), read through a copy; None when
    its dtype holds no scale or it cannot be read."""
    try:
        return _scale_f32(_copy(shard, name), dtype)
    except (CkptScanError, OSError, ValueError, RuntimeError, KeyError):
        return None


def _f64_stats(shard: Shard, name: str) -> kernels.FloatStats:
    raw = shard.raw(name)
    nan = pinf = ninf = zero = sub = 0
    lo, hi, amax = np.inf, -np.inf, 0.0
    tiny = np.finfo(np.float64).tiny
    for start in range(0, raw.size, _F64_PIECE):
        v = _core.copy_guarded(raw[start:start + _F64_PIECE]).view(np.float64)
        isnan = np.isnan(v)
        nan += int(isnan.sum())
        pinf += int((v == np.inf).sum())
        ninf += int((v == -np.inf).sum())
        fin = v[np.isfinite(v)]
        zero += int((fin == 0).sum())
        sub += int(((fin != 0) & (np.abs(fin) < tiny)).sum())
        if fin.size:
            lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
            amax = max(amax, float(np.abs(fin).max()))
    count = raw.size // 8
    finite = count - nan - pinf - ninf
    return kernels.FloatStats("F64", count, nan, pinf, ninf, zero, sub, finite,
                              amax if finite else float("nan"),
                              lo if finite else float("nan"), hi if finite else float("nan"))


def _scale_companion(ws: WeightSet, pos: int) -> int:
    """The row of a weight's scale (the first scale-kind companion present), or -1."""
    for cr in ws.companions:
        if cr.companion.kind == schemes.SCALE and cr.rows[pos] >= 0:
            return int(cr.rows[pos])
    return -1


def _tasks(ctx: ScanContext) -> list[_Task]:
    """What to read, in file order. A scale read with its weight is not read again."""
    frame, qm = ctx.frame, ctx.quant_map
    pair = np.full(len(frame), -1, dtype=np.int64)
    weight_of: dict[int, tuple[WeightSet | None, tuple[int, ...] | None]] = {}
    for ws in qm.sets:
        if not (data.fp8_weight_set(ws) or data.packed_weight_set(ws)):
            continue
        for pos, (r, k) in enumerate(zip(ws.rows.tolist(), ws.shape_of.tolist(), strict=True)):
            weight_of[r] = ws, ws.logical[k]
            pair[r] = _scale_companion(ws, pos)
    covered = np.zeros(len(frame), dtype=bool)
    covered[pair[pair >= 0]] = True
    rows = np.flatnonzero(~covered & (frame.nbytes > 0))
    order = np.lexsort((frame.row_of[rows], frame.shard_of[rows]))
    nbytes = frame.nbytes
    out = []
    for r in rows[order].tolist():
        p = int(pair[r])
        weight, logical = weight_of.get(r, (None, None))
        out.append(_Task(r, p, int(nbytes[r]) + (int(nbytes[p]) if p >= 0 else 0), weight,
                         logical))
    return out


def deep_scan(ctx: ScanContext, jobs: int | None = None,
              progress: Callable[[DeepProgress], None] | None = None,
              cancel: threading.Event | None = None,
              max_bytes: int | None = None) -> DeepSummary:
    """Reads every tensor of the readable shards; findings go to ``ctx.findings``.
    Shards read through a source (remote) are fetched ahead in large ranges
    (`ckptscan.remote.deep`). `max_bytes`: refuse, before reading, a scan that
    would read more."""
    check_environment()
    frame = ctx.frame
    qm = ctx.quant_map
    tasks = _tasks(ctx)
    shards = frame.shards
    cancel = cancel or threading.Event()
    ckind = qm.companion_kinds()
    e8m0 = qm.e8m0_templates()
    feed = None
    if any(s.remote for s in shards):
        from .remote.deep import feed_for

        feed = feed_for(shards, tasks, frame)
    planned = feed.planned if feed is not None else sum(t.nbytes for t in tasks)
    if max_bytes is not None and planned > max_bytes:
        if feed is not None:
            feed.close()
        raise ReadBudgetExceeded(
            f"--deep would read {planned:,} bytes of tensor data ({len(tasks):,} tensors), "
            f"more than --max-bytes {max_bytes:,}: nothing was read")

    def run(task: _Task) -> _Measured:
        """Reads one tensor (in a worker thread)."""
        if cancel.is_set():
            return _Measured(task.row)
        i = task.row
        shard = shards[int(frame.shard_of[i])]
        name, dtype = frame.name(i), frame.dtype_name(i)
        try:
            if task.weight is not None:
                return _weight(ctx, task)
            if dtype in kernels.FP8_DTYPES:
                return _Measured(i, fp8=kernels.fp8_stats(shard, name),
                                 hist=sample_histogram(shard.raw(name)))
            kind = ckind.get(int(frame.template[i]))
            if dtype in FLOAT_DTYPES:
                fl = _f64_stats(shard, name) if dtype == "F64" else kernels.float_stats(
                    shard, name)
                scale_like = kind in _SCALE_KINDS or (
                    kind is None and frame.kind[i] == KIND_CODE["scale"])
                vals = _scale_f32(_copy(shard, name), dtype) if scale_like else None
                return _Measured(i, floats=fl, scale=vals)
            if dtype == "F8_E8M0" or (dtype == "U8" and int(frame.template[i]) in e8m0):
                return _Measured(i, e8m0=_copy(shard, name))
            if kind == schemes.ZERO_POINT and dtype in ("I8", "U8"):
                return _Measured(i, ints=_copy(shard, name))
            return _Measured(i)
        except (CkptScanError, OSError, ValueError, RuntimeError) as exc:
            return _Measured(i, failed=str(exc))

    summary = DeepSummary(simd=str(kernels.simd_info().get("active", "")))
    maps = DeepMaps(frame)

    def judge(m: _Measured) -> None:
        """Measurements to findings, on the caller's thread, in file order."""
        if m.weight is not None:
            w = m.weight
            summary.fp8_nan_codes += w.stats.nan
            classes = data.fp8_weight(ctx, w, summary)
            # the maps count the blocks of weights read with their block scale
            maps.fp8(m.row, w.stats, m.hist, classes if w.scale_row >= 0 else None)
            if w.scale is not None:
                maps.scales(w.scale_row, w.scale)
        elif m.packed is not None:
            data.packed_weight(ctx, m.packed)
            if m.packed.scale is not None:
                maps.scales(m.packed.scale_row, m.packed.scale)
        elif m.fp8 is not None:
            summary.fp8_nan_codes += m.fp8.nan
            data.fp8_tensor(ctx, m.row, m.fp8, summary)
            maps.fp8(m.row, m.fp8, m.hist, None)
        elif m.floats is not None:
            summary.float_nan += m.floats.nan
            summary.float_inf += m.floats.pos_inf + m.floats.neg_inf
            if m.scale is not None:  # a scale's NaN/Inf is a bad scale: one finding
                if m.row not in ctx.scales_read:
                    data.scale_values(ctx, m.row, m.scale)
                maps.scales(m.row, m.scale)
            else:
                data.float_tensor(ctx, m.row, m.floats)
                maps.floats(m.row, m.floats)
        elif m.e8m0 is not None:
            data.e8m0_codes(ctx, m.row, m.e8m0)
            maps.e8m0(m.row, data.e8m0_stats(m.e8m0))
        elif m.ints is not None:
            data.zero_points(ctx, m.row, m.ints)
        elif m.failed is not None:
            summary.unreadable += 1
            data.read_failed(ctx, m.row, m.failed)

    started = time.perf_counter()
    total_bytes = sum(t.nbytes for t in tasks)
    workers = max(1, jobs or os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-deep")
    pending: deque[tuple[list[_Task], Future[list[_Measured]]]] = deque()
    queue = iter(tasks)

    def run_batch(batch: list[_Task]) -> list[_Measured]:
        return [run(task) for task in batch]

    # Consecutive small tensors of mapped files go to a worker together: one
    # hand-over each way for several of them (a remote feed keeps its window of
    # single tensors, which bounds the bytes it holds).
    per_batch = _BATCH_TENSORS if feed is None else 1

    def submit_next() -> None:
        batch: list[_Task] = []
        size = 0
        while len(batch) < per_batch and size < _BATCH_BYTES:
            task = next(queue, None)
            if task is None:
                break
            batch.append(task)
            size += task.nbytes
        if batch:
            pending.append((batch, pool.submit(run_batch, batch)))

    try:
        # A bounded window in flight: Ctrl-C stops after at most a window of batches.
        for _ in range(4 * workers):
            submit_next()
        done = done_bytes = 0
        while pending:
            batch, fut = pending.popleft()
            for task, measured in zip(batch, fut.result(), strict=True):
                judge(measured)
                if feed is not None:
                    feed.done(task.row)
                done += 1
                done_bytes += task.nbytes
                if progress is not None:
                    progress(DeepProgress(done, len(tasks), done_bytes, total_bytes))
                if cancel.is_set():
                    raise Cancelled("deep scan interrupted")
            submit_next()
    except BaseException:
        cancel.set()
        raise
    finally:
        # On Ctrl-C the queued batches are cancelled and the ones in flight (one
        # per worker; their tensors not yet begun are skipped) finish: no thread is
        # left inside a kernel at exit.
        pool.shutdown(wait=True, cancel_futures=True)
        if feed is not None:
            feed.close()
    summary.tensors = len(tasks) - summary.unreadable
    summary.maps, summary.histograms = maps.finish()
    summary.bytes = total_bytes
    summary.seconds = time.perf_counter() - started
    return summary


# ---- quantized weights ------------------------------------------------------------------


def _weight(ctx: ScanContext, task: _Task) -> _Measured:
    """A quantized weight with its scale (the scale's values copied)."""
    frame = ctx.frame
    ws = task.weight
    assert ws is not None
    i, s = task.row, task.scale_row
    shard = frame.shards[int(frame.shard_of[i])]
    name = frame.name(i)
    logical = task.logical
    if logical is None or len(logical) < 1:
        return _Measured(i, fp8=kernels.fp8_stats(shard, name)) if data.fp8_weight_set(ws) \
            else _Measured(i)
    tile = data.tile_of(ws.layout, logical)
    raw_scale = sdtype = None
    if s >= 0:
        raw_scale = _copy(frame.shards[int(frame.shard_of[s])], frame.name(s))
        sdtype = frame.dtype_name(s)
    if data.fp8_weight_set(ws):
        # the code histogram's sample is counted in the same call (one GIL hand-over)
        m = kernels.fp8_block_stats(shard, name, tile,
                                    sample=sample_spans(int(frame.nbytes[i])))
        scale = _grid(raw_scale, sdtype, m.absmax_codes.shape,
                      ws.layout.granularity.kind == "tensor")
        return _Measured(i, weight=data.Fp8WeightMeasure(
            i, s, m, tile, scale, raw_scale if sdtype in ("F8_E8M0", "U8") else None,
            ws.layout), hist=m.sample)
    groups = _packed_groups(shard, name, ws.layout, logical, tile[1], ws.dtype)
    scale = _grid(raw_scale, sdtype, groups.zero.shape)
    return _Measured(i, packed=data.PackedMeasure(i, s, ws.layout, groups, scale, raw_scale,
                                                  sdtype))


def _grid(raw: np.ndarray | None, dtype: str | None, grid: tuple[int, ...],
          per_tensor: bool = False) -> np.ndarray | None:
    """Scale values (float32) in the weight's block grid (a per-tensor scale, one
    per expert of a stack, spread over its tiles), or None when the scale has
    another number of values (its shape is the header checks' finding)."""
    if raw is None or dtype is None:
        return None
    vals = _scale_f32(raw, dtype)
    if vals is None:
        return None
    if per_tensor and len(grid) in (2, 3) and vals.size == (grid[0] if len(grid) == 3 else 1):
        lead = grid[:1] if len(grid) == 3 else ()
        return np.broadcast_to(vals.reshape(*lead, 1, 1), grid)
    if vals.size != math.prod(grid):
        return None
    return vals.reshape(grid)


def _packed_groups(shard: Shard, name: str, lay: schemes.Layout, logical: tuple[int, ...],
                   size: int, dtype: str) -> data.GroupStats:
    """Per group of ``size`` inputs of an FP4 / INT weight (E2M1 two per byte, low
    nibble first; INT in I32 words from the least significant bits, offset by
    2^(bits-1); INT in I8, two's complement): all codes zero, codes at +-max.
    Read from copies of a few MiB of rows at a time."""
    raw = shard.raw(name)
    *lead, out, inp = logical
    rows = max(1, math.prod(lead) * out)
    row_bytes = raw.size // rows
    per = int(lay.packing.per_element)
    zero: tuple[int, ...]
    top: tuple[int, ...]
    if lay.weight_format == "E2M1":
        zero, top = (0, 8), (7, 15)
    elif per == 1:  # two's complement bytes; +-(2^(k-1) - 1) and -2^(k-1) at the ends
        half = 1 << (int(lay.weight_format[3:]) - 1)
        zero, top = (0,), (half - 1, 256 - (half - 1), 256 - half)
    else:  # stored as q + 2^(k-1)
        bits = 32 // per
        zero, top = (1 << (bits - 1),), (0, 1, (1 << bits) - 1)
    step = max(1, _PACKED_PIECE // max(row_bytes, 1))
    parts = []
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        chunk = np.array(raw[r0 * row_bytes:r1 * row_bytes], copy=True)
        if per == 1:
            vals = chunk[:, None]
        elif dtype in ("I32", "U32"):
            bits = 32 // per
            shifts = np.arange(per, dtype=np.uint32) * np.uint32(bits)
            vals = (chunk.view(np.uint32)[:, None] >> shifts) & np.uint32((1 << bits) - 1)
        else:
            vals = np.stack([chunk & 0x0F, chunk >> 4], axis=1)
        codes = vals.astype(np.uint8).reshape(r1 - r0, -1)[:, :inp]
        parts.append(data.group_stats(codes, size, zero, top))
    zeros = np.concatenate([p.zero for p in parts]).reshape(*lead, out, -1)
    sats = np.concatenate([p.saturated for p in parts]).reshape(*lead, out, -1)
    return data.GroupStats(zeros, sats, np.broadcast_to(parts[0].elements[0], zeros.shape))


__all__ = ["Cancelled", "DeepProgress", "ReadBudgetExceeded", "check_environment", "deep_scan",
           "scale_values"]
