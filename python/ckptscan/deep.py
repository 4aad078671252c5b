"""--deep: read every tensor's bytes with the SIMD kernels and hand the
measurements to `checks.data`.

FP8 weights with their block scale (when the config gives a block size: it is
never guessed from shapes) go through the block kernels; other FP8 tensors
through the FP8 statistics; BF16 / F16 / F32 / F64 tensors through the float
statistics (NaN, Inf); F8_E8M0 scales through theirs; every other scale's values
are read as a copy for the scale checks. Only readable shards are in the frame
(a rejected header is never deep-read), and every read is bounded by the file's
size. Work fans out over a thread pool (the kernels release the GIL), one worker
per core by default, tensors in file order; `cancel` stops it between tensors.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import _core, kernels
from .checks import data
from .context import ScanContext
from .deepmap import DeepMaps, sample_histogram
from .errors import CkptScanError
from .result import DeepSummary
from .shard import Shard
from .taxonomy import KIND_CODE

FLOAT_DTYPES = ("BF16", "F16", "F32", "F64")
# F64 is read in pieces of this many bytes (the kernels know no F64).
_F64_PIECE = 64 << 20


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
    fp8: kernels.Fp8Stats | None = None
    hist: np.ndarray | None = None  # FP8: sampled code histogram (deepmap)
    floats: kernels.FloatStats | None = None
    scale: np.ndarray | None = None
    e8m0: kernels.E8m0Stats | None = None
    failed: str | None = None


@dataclass
class _Task:
    row: int
    scale_row: int  # -1: none
    nbytes: int


def _tasks(ctx: ScanContext, block: tuple[int, int] | None) -> list[_Task]:
    """What to read, in file order. A block scale read with its weight is not
    read again."""
    frame = ctx.frame
    scale_of, _ = ctx.scale_pairs
    with_scale = np.flatnonzero((scale_of >= 0) & ctx.fp8 & (frame.ndim == 2))
    if block is not None and len(with_scale):
        with_scale = with_scale[ctx.block_scale_template[frame.template[scale_of[with_scale]]]]
    else:
        with_scale = with_scale[:0]
    covered = np.zeros(len(frame), dtype=bool)
    covered[scale_of[with_scale]] = True
    pair = np.full(len(frame), -1, dtype=np.int64)
    pair[with_scale] = scale_of[with_scale]
    rows = np.flatnonzero(~covered & (frame.nbytes > 0))
    order = np.lexsort((frame.row_of[rows], frame.shard_of[rows]))
    nbytes = frame.nbytes
    out = []
    for r in rows[order].tolist():
        p = int(pair[r])
        out.append(_Task(r, p, int(nbytes[r]) + (int(nbytes[p]) if p >= 0 else 0)))
    return out


def _copy(shard: Shard, name: str) -> np.ndarray:
    """A tensor's bytes as a fresh array (what the scale checks inspect), copied
    under the fault guard: a file that shrank is an OSError, not SIGBUS."""
    return kernels.copy_tensor(shard, name).data


def _scale_f32(raw: np.ndarray, dtype: str) -> np.ndarray | None:
    """Scale values as float32 (None for a dtype that is no scale's)."""
    if dtype == "F32":
        return np.asarray(raw.view(np.float32))
    if dtype == "BF16":
        return np.asarray((raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32))
    if dtype == "F16":
        return np.asarray(raw.view(np.float16).astype(np.float32))
    if dtype == "F8_E8M0":
        vals: np.ndarray = np.ldexp(np.float32(1.0), raw.astype(np.int32) - 127).astype(
            np.float32)
        vals[raw == 0xFF] = np.nan
        return vals
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
    qc = ctx.quant
    block = qc.block if qc is not None else None
    ue8m0 = qc is not None and qc.ue8m0
    tasks = _tasks(ctx, block)
    shards = frame.shards
    cancel = cancel or threading.Event()
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
            if task.scale_row >= 0:
                assert block is not None
                s = task.scale_row
                return _Measured(i, weight=_fp8_weight(
                    shard, name, shards[int(frame.shard_of[s])], frame.name(s),
                    frame.dtype_name(s), frame.shape(s), i, s, block),
                    hist=sample_histogram(shard.raw(name)))
            if dtype in kernels.FP8_DTYPES:
                return _Measured(i, fp8=kernels.fp8_stats(shard, name),
                                 hist=sample_histogram(shard.raw(name)))
            if dtype in FLOAT_DTYPES:
                fl = _f64_stats(shard, name) if dtype == "F64" else kernels.float_stats(
                    shard, name)
                vals = (_scale_f32(_copy(shard, name), dtype)
                        if frame.kind[i] == KIND_CODE["scale"] else None)
                return _Measured(i, floats=fl, scale=vals)
            if dtype == "F8_E8M0":
                return _Measured(i, e8m0=kernels.e8m0_stats(shard, name))
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
            maps.fp8(m.row, w.stats, m.hist, data.fp8_weight(ctx, w, ue8m0))
            if w.scale is not None:
                maps.scales(w.scale_row, w.scale)
        elif m.fp8 is not None:
            summary.fp8_nan_codes += m.fp8.nan
            data.fp8_tensor(ctx, m.row, m.fp8)
            maps.fp8(m.row, m.fp8, m.hist, None)
        elif m.floats is not None:
            summary.float_nan += m.floats.nan
            summary.float_inf += m.floats.pos_inf + m.floats.neg_inf
            if m.scale is not None:  # a scale's NaN/Inf is a bad scale: one finding
                data.scale_values(ctx, m.row, m.scale, False)
                maps.scales(m.row, m.scale)
            else:
                data.float_tensor(ctx, m.row, m.floats)
                maps.floats(m.row, m.floats)
        elif m.e8m0 is not None:
            data.e8m0_tensor(ctx, m.row, m.e8m0)
            maps.e8m0(m.row, m.e8m0)
        elif m.failed is not None:
            summary.unreadable += 1
            data.read_failed(ctx, m.row, m.failed)

    started = time.perf_counter()
    total_bytes = sum(t.nbytes for t in tasks)
    workers = max(1, jobs or os.cpu_count() or 1)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-deep")
    pending: deque[tuple[_Task, Future[_Measured]]] = deque()
    queue = iter(tasks)

    def submit_next() -> None:
        task = next(queue, None)
        if task is not None:
            pending.append((task, pool.submit(run, task)))

    try:
        # A bounded window in flight: Ctrl-C stops after at most a window of tensors.
        for _ in range(4 * workers):
            submit_next()
        done = done_bytes = 0
        while pending:
            task, fut = pending.popleft()
            judge(fut.result())
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
        # On Ctrl-C the queued tensors are cancelled and the ones in flight (one
        # per worker) finish: no thread is left inside a kernel at exit.
        pool.shutdown(wait=True, cancel_futures=True)
        if feed is not None:
            feed.close()
    summary.tensors = len(tasks) - summary.unreadable
    summary.maps, summary.histograms = maps.finish()
    summary.bytes = total_bytes
    summary.seconds = time.perf_counter() - started
    return summary


def _fp8_weight(shard: Shard, name: str, sshard: Shard, sname: str, sdtype: str,
                sshape: tuple[int, ...], row: int, srow: int,
                block: tuple[int, int]) -> data.Fp8WeightMeasure:
    ba = kernels.block_absmax(shard, name, block)
    stats = kernels.fp8_stats(shard, name)
    scale = None
    if sshape == tuple(ba.codes.shape):
        vals = _scale_f32(_copy(sshard, sname), sdtype)
        scale = vals.reshape(sshape) if vals is not None else None
    return data.Fp8WeightMeasure(row, srow, stats, ba, scale)


__all__ = ["Cancelled", "DeepProgress", "ReadBudgetExceeded", "check_environment", "deep_scan"]
