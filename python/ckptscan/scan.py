"""`scan(path)`: open a checkpoint, classify its tensors, run every check, and
build the one `Report` that all renderers read."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from . import checks
from .checkpoint import Checkpoint, open_checkpoint
from .frame import Frame, build_frame
from .result import Count, Quantization, Report, RoleSummary, Shards, TensorRow
from .shard import DTYPE_NAMES
from .taxonomy import KIND_CODE, MOE_EXPERT, ROLES

EXAMPLES_PER_ROLE = 16

Progress = Callable[[int, int], None]


def scan(path: str | os.PathLike[str], deep: bool = False, jobs: int | None = None,
         progress: Progress | None = None) -> Report:
    """Scans a checkpoint directory or file. `deep` reads every tensor's data
    with the SIMD kernels (NaN/Inf, FP8 codes, block scales)."""
    with open_checkpoint(path) as ckpt:
        frame = build_frame(ckpt)
        findings = checks.run_all(ckpt, frame)
        deep_summary = None
        if deep:
            from .deep import deep_scan

            deep_findings, deep_summary = deep_scan(ckpt, frame, jobs=jobs, progress=progress)
            # The kernels re-check scale shape and dtype; the header checks said it first.
            seen = {(f.code, f.tensor) for f in findings}
            findings = checks.sort_findings(
                findings + [f for f in deep_findings if (f.code, f.tensor) not in seen])
        return build_report(ckpt, frame, findings, deep_summary)


def build_report(ckpt: Checkpoint, frame: Frame, findings: list[Any],
                 deep: Any = None) -> Report:
    config = ckpt.config or {}
    numel = frame.numel.astype(np.float64)
    nbytes = frame.nbytes.astype(np.float64)
    nd = len(DTYPE_NAMES)

    def bins(key: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.bincount(key, minlength=size), np.bincount(key, numel, minlength=size),
                np.bincount(key, nbytes, minlength=size))

    t, p, b = bins(frame.dtype.astype(np.int64), nd)
    dtypes = {DTYPE_NAMES[d]: Count(int(t[d]), int(p[d]), int(b[d]))
              for d in np.flatnonzero(t).tolist()}
    role_key = frame.role.astype(np.int64) * nd + frame.dtype
    rt, rp, rb = bins(role_key, len(ROLES) * nd)
    roles: dict[str, RoleSummary] = {}
    for key in np.flatnonzero(rt).tolist():
        r, d = divmod(key, nd)
        summary = roles.setdefault(ROLES[r], RoleSummary())
        summary.tensors += int(rt[key])
        summary.parameters += int(rp[key])
        summary.bytes += int(rb[key])
        summary.dtypes[DTYPE_NAMES[d]] = int(rt[key])
    return Report(
        checkpoint=str(ckpt.path),
        model_type=config.get("model_type") if isinstance(config.get("model_type"), str) else None,
        family=frame.taxonomy.family,
        shards=Shards(ckpt.files, ckpt.referenced, ckpt.missing),
        total=Count(len(frame), int(frame.numel.sum()), int(frame.nbytes.sum())),
        dtypes=dtypes,
        roles=dict(sorted(roles.items(), key=lambda kv: ROLES.index(kv[0]))),
        quantization=_quantization(ckpt, frame),
        examples=_examples(frame),
        findings=findings,
        deep=deep,
    )


def _quantization(ckpt: Checkpoint, frame: Frame) -> Quantization:
    qc = checks.quant_config(ckpt.config)
    fp8_codes = [DTYPE_NAMES.index(d) for d in checks.FP8_DTYPES]
    is_fp8 = np.isin(frame.dtype, fp8_codes)
    weights = frame.kind == KIND_CODE["weight"]
    fp8_roles = set(np.unique(frame.role[is_fp8 & weights]).tolist())
    weight_roles = set(np.unique(frame.role[weights]).tolist())
    quantized = [ROLES[r] for r in sorted(fp8_roles)]
    unquantized = [ROLES[r] for r in sorted(weight_roles - fp8_roles)]
    return Quantization(
        method=qc.method if qc else None,
        format=qc.fmt if qc else (sorted({DTYPE_NAMES[c] for c in frame.dtype[is_fp8].tolist()})
                                  or [None])[0],
        block_size=list(qc.block) if qc and qc.block else None,
        scale_tensors=int((frame.kind == KIND_CODE["scale"]).sum()),
        fp8_tensors=int(is_fp8.sum()),
        quantized_roles=quantized,
        unquantized_roles=unquantized,
        modules_to_not_convert=qc.not_convert if qc else None,
        scale_fmt=qc.scale_fmt if qc else None,
    )


def _examples(frame: Frame) -> dict[str, list[TensorRow]]:
    """Per role, the tensors of its first layer (and first expert): what a user
    reads to see how one block of the model is stored."""
    out: dict[str, list[TensorRow]] = {}
    role, layer, expert = frame.role, frame.layer, frame.expert
    name = frame.name
    for r in np.unique(role).tolist():
        rows = np.flatnonzero(role == r)
        lay = layer[rows]
        if (lay >= 0).any():
            rows = rows[lay == lay[lay >= 0].min()]
        if ROLES[r] == MOE_EXPERT:
            ex = expert[rows]
            if (ex >= 0).any():
                rows = rows[ex == ex[ex >= 0].min()]
        # Name order among the first few in file order: no 96k-name list needed.
        named = {i: name(i) for i in rows[:4 * EXAMPLES_PER_ROLE].tolist()}
        picked = sorted(named, key=named.__getitem__)[:EXAMPLES_PER_ROLE]
        out[ROLES[r]] = [TensorRow(named[i], frame.dtype_name(i), frame.shape(i),
                                   os.path.basename(frame.file(i))) for i in picked]
    return dict(sorted(out.items(), key=lambda kv: ROLES.index(kv[0])))
