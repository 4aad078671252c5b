"""--deep: read every tensor's bytes with the SIMD kernels.

FP8 weights with their block scale go through `kernels.check_fp8_weight` (NaN
codes, bad scales, unused range); other FP8 tensors through the FP8 statistics;
BF16 / F16 / F32 tensors through the float statistics (NaN, Inf); F8_E8M0 scales
through theirs. The work fans out over a thread pool (the kernels release the
GIL), one worker per core by default; tensors are visited in file order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from . import checks, kernels
from .checkpoint import Checkpoint
from .errors import CkptScanError
from .findings import Finding
from .frame import Frame
from .result import DeepSummary
from .shard import DTYPE_NAMES


@dataclass
class _Task:
    row: int
    scale_row: int  # -1: none


@dataclass
class _Outcome:
    findings: list[Finding]
    nbytes: int = 0
    fp8_nan: int = 0
    float_nan: int = 0
    float_inf: int = 0
    failed: bool = False


def _tasks(frame: Frame, with_blocks: bool) -> list[_Task]:
    """What to read, in file order. An FP8 weight goes with its block scale
    (weight_scale_inv) through the block checks, when the config gives a block
    size (it is never guessed from shapes); a block scale read that way is not
    read again. Multipliers (weight_scale: per tensor or per channel) and every
    other tensor are read on their own, for NaN / Inf."""
    scale_of, _ = checks.scale_pairs(frame)
    fp8 = np.isin(frame.dtype, [DTYPE_NAMES.index(d) for d in kernels.FP8_DTYPES])
    with_scale = np.flatnonzero((scale_of >= 0) & fp8 & (frame.ndim == 2))
    if with_blocks:
        with_scale = with_scale[checks.block_scale_rows(frame, scale_of[with_scale])]
    else:
        with_scale = with_scale[:0]
    covered = np.zeros(len(frame), dtype=bool)
    covered[scale_of[with_scale]] = True
    pair = np.full(len(frame), -1, dtype=np.int64)
    pair[with_scale] = scale_of[with_scale]
    # Data past the end of a truncated shard is reported already; do not read it.
    ends = np.concatenate([s.core.ends for s in frame.shards]) if frame.shards else np.zeros(0)
    sizes = np.array([s.file_size for s in frame.shards], dtype=np.uint64)
    readable = ends <= sizes[frame.shard_of] if len(frame) else np.zeros(0, bool)
    rows = np.flatnonzero(readable & ~covered & (frame.nbytes > 0))
    order = np.lexsort((frame.row_of[rows], frame.shard_of[rows]))
    return [_Task(int(r), int(pair[r])) for r in rows[order].tolist()]


def deep_scan(ckpt: Checkpoint, frame: Frame, jobs: int | None = None,
              progress: Callable[[int, int], None] | None = None
              ) -> tuple[list[Finding], DeepSummary]:
    qc = checks.quant_config(ckpt.config)
    block = qc.block if qc is not None else None
    ue8m0 = qc is not None and (qc.scale_fmt or "").lower() == "ue8m0"
    scale_dtypes = ("F32", "F8_E8M0") if ue8m0 else ("F32",)
    tasks = _tasks(frame, with_blocks=block is not None)
    names = frame.names

    def run(task: _Task) -> _Outcome:
        i = task.row
        shard = frame.shards[int(frame.shard_of[i])]
        name, dtype = names[i], frame.dtype_name(i)
        try:
            if task.scale_row >= 0:
                s = task.scale_row
                sshard = frame.shards[int(frame.shard_of[s])]
                assert block is not None  # only paired when the config gives one
                res = kernels.check_fp8_weight(shard, name, names[s], block,
                                               scale_source=sshard,
                                               scale_dtype_expected=scale_dtypes, ue8m0=ue8m0)
                nan = res.summary.nan_codes if res.summary is not None else 0
                return _Outcome(res.findings, int(frame.nbytes[i] + frame.nbytes[s]), fp8_nan=nan)
            stats = kernels.tensor_stats(shard, name)
            out = _Outcome([], int(frame.nbytes[i]))
            if isinstance(stats, kernels.Fp8Stats):
                out.fp8_nan = stats.nan
                if stats.nan:
                    out.findings.append(checks.finding(
                        "fp8-nan", f"{stats.nan} NaN codes in {dtype} tensor", shard.path, name,
                        count=stats.nan))
            elif isinstance(stats, kernels.FloatStats):
                out.float_nan, out.float_inf = stats.nan, stats.pos_inf + stats.neg_inf
                if stats.nan:
                    out.findings.append(checks.finding(
                        "float-nan", f"{stats.nan} NaN of {stats.count} values", shard.path,
                        name, count=stats.nan))
                if out.float_inf:
                    out.findings.append(checks.finding(
                        "float-inf", f"{stats.pos_inf} +Inf and {stats.neg_inf} -Inf of "
                        f"{stats.count} values", shard.path, name,
                        pos=stats.pos_inf, neg=stats.neg_inf))
            elif isinstance(stats, kernels.E8m0Stats) and stats.nan:
                out.findings.append(checks.finding(
                    "e8m0-nan", f"{stats.nan} NaN codes (0xFF)", shard.path, name,
                    count=stats.nan))
            return out
        except (CkptScanError, OSError, ValueError, RuntimeError) as exc:
            return _Outcome([checks.finding("deep-read-failed", str(exc), shard.path, name)],
                            failed=True)

    started = time.perf_counter()
    summary = DeepSummary(simd=str(kernels.simd_info().get("active", "")))
    findings: list[Finding] = []
    workers = max(1, jobs or os.cpu_count() or 1)
    with ThreadPoolExecutor(workers, thread_name_prefix="ckptscan-deep") as pool:
        for done, out in enumerate(pool.map(run, tasks), 1):
            findings += out.findings
            summary.tensors += 0 if out.failed else 1
            summary.bytes += out.nbytes
            summary.fp8_nan_codes += out.fp8_nan
            summary.float_nan += out.float_nan
            summary.float_inf += out.float_inf
            summary.unreadable += int(out.failed)
            if progress is not None:
                progress(done, len(tasks))
    summary.seconds = time.perf_counter() - started
    return findings, summary
