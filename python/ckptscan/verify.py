"""``ckptscan verify CANDIDATE --against SOURCE``: a quantized checkpoint against
the high-precision checkpoint it was made from.

Both sides run the one pipeline (`pipeline.scan_spec`, header checks included);
while both are open, every quantized weight of the candidate that a kernel can
dequantize (its scheme's `QuantMap`: FP8 E4M3 / E5M2 with block, channel,
tensor or group scales of any dtype, MXFP8; NVFP4, MXFP4, gpt-oss MXFP4 and
DeepSeek-V4 FP4 experts through the packed FP4 path, with global scales) is
compared with its source tensor, paired by name (the weight's unquantized name:
``X.weight`` for ``X.weight_packed``, ``experts.gate_up_proj`` for
``gate_up_proj_blocks``), then by `diff.pair_names`' prefix rewrites
(``model.language_model.`` -> ``model.``). A source stored transposed (gpt-oss's
BF16 experts are [E, in, out]) is compared transposed.

One pass per weight (`kernels.dequantize_compare`, SIMD, GIL released) gives,
per block of the scale's granularity, Σr², Σc², Σc·r, Σe², max|e|, max|r| and
the clipped count; from them, per tensor: the relative Frobenius error
‖d - r‖ / ‖r‖, SQNR (dB), cosine similarity, max abs error, the share of
clipped values, and per block the relative error (worst blocks named,
quantiles). Tensors are read in row bands of at most `CHUNK_ELEMENTS`
elements, their mapped pages dropped behind (`Shard.release`): resident memory
stays bounded whatever the model's size. Work fans out over `jobs` threads,
tensors in the candidate's file order; Ctrl-C (`cancel`) stops within a tensor.

Named defects (codes ``verify-*`` in `ckptscan.codes`):

- a scale applied in the wrong direction, block scales transposed or shifted
  by one block: when a tensor's error is above its bound, the other readings
  of its scales (1 / scale, for two-level scales of the block or the global
  scale; the grid transposed; shifted by one along each axis) are evaluated
  from the per-block sums (a second read of the tensor, no dequantization
  needed: ``s'² Σc² - 2 s' Σc·r + Σr²``), and the defect is named only when
  one fits within the bound and at least 2x better in RMS than the scales as
  stored (`FIT_GAIN`);
- values clipped (source values beyond what the block's scale represents),
  dequantized values that are not finite, an error above the format's bound
  (tensor or block), a linear weight left in high precision that the scheme
  converts, tensors missing on either side, weights that could not be compared.

Thresholds (`default_threshold`): the relative error of round to nearest in a
float format with m mantissa bits is at most 2^-(m+1) for every value in its
normal range (half a step over the smallest mantissa), so a tensor's (or a
block's) relative Frobenius error under absmax scaling cannot exceed it
either: E4M3 0.0625 (Gaussian weights measure ~0.025), E5M2 0.125, E2M1 0.25.
Under E8M0 (MX) scales, whose OCP rounding saturates values up to 2^(emax+1),
the bound is at least 1 - max / 2^(emax+1): 0.125 for E4M3. Blocks whose
energy is below 1e-4 of the tensor's mean block energy are not judged (their
rounding is negligible; NVFP4 scales of such groups underflow). `--threshold
FORMAT=VALUE` overrides a format's bound.
"""

from __future__ import annotations

import heapq
import math
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import codes, kernels, schemes
from .checks.data import tile_of
from .context import ScanContext
from .errors import CkptScanError
from .findings import Finding, Severity
from .quantmap import WeightSet
from .shard import Shard
from .taxonomy import ROLES

SCHEMA = "ckptscan.verify/1"
#: elements per kernel call (a band of rows, or whole matrices of an expert stack)
CHUNK_ELEMENTS = 1 << 24
#: a source stored transposed is transposed one matrix at a time, up to this size
MAX_TRANSPOSE_BYTES = 512 << 20
#: a reading of the scales is named when it fits within the bound and its error
#: energy is at least this much lower than the stored scales' (2x in RMS): the
#: scales a weight was quantized with give the least error, so on a clean weight
#: no other reading comes close
FIT_GAIN = 4.0
#: a weight of at most this many blocks keeps its block sums (32 bytes a block)
#: and has its scales' other readings evaluated once, after its pass; a larger
#: one (groups of a large stack) only when its error is above its bound, by a
#: second read
KEEP_BLOCKS = 1 << 18
#: blocks with less energy than this share of the tensor's mean are not judged
BLOCK_ENERGY_FLOOR = 1e-4
WORST_BLOCKS = 5
_POOL = 4096  # blocks above the bound (or clipping) kept per tensor for the report
# per-block relative errors counted in log bins: 50 a decade from 1e-6 to 1e3
# (bin 0: below, the last: above)
_HIST_LO, _HIST_STEP, _HIST_BINS = -6.0, 0.02, 452
_HIST_SAMPLE = 1 << 16  # blocks of a band counted in the histogram, at most

# value formats the kernels dequantize: mantissa bits, largest finite value, half
# the smallest subnormal step (the largest error of what lies below the normal range)
_FORMATS: dict[str, tuple[int, float, float]] = {
    "E4M3": (3, 448.0, 2.0 ** -10), "E5M2": (2, 57344.0, 2.0 ** -17),
    "E4M3FNUZ": (3, 240.0, 2.0 ** -11), "E5M2FNUZ": (2, 57344.0, 2.0 ** -18),
    "E2M1": (1, 6.0, 0.25),
}
#: per element, what a block's error may also hold beyond round to nearest's own:
#: one BF16 rounding (a scale stored in BF16, a quantizer that read FP32 weights)
BOUND_SLACK = 2.0 ** -8
_FP8_DTYPE = {"E4M3": "F8_E4M3", "E5M2": "F8_E5M2", "E4M3FNUZ": "F8_E4M3FNUZ",
              "E5M2FNUZ": "F8_E5M2FNUZ"}
_SCALE_DTYPES = ("F32", "BF16", "F16", "F8_E8M0", "U8", "F8_E4M3")
_REF_DTYPES = ("BF16", "F16", "F32")


# ---------------------------------------------------------------- thresholds


def default_threshold(fmt: str, mx: bool = False) -> float:
    """The largest relative error round to nearest gives in format `fmt` over
    its normal range, u / (1 + u) with u = 2^-(m+1) (half a step over the
    smallest mantissa; reached halfway above a power of two); `mx`: under E8M0
    power-of-two scales, at least 1 - max / 2^(emax+1) (OCP's rounding saturates
    values up to the next power of two)."""
    man, vmax, _ = _FORMATS[fmt]
    u = 2.0 ** -(man + 1)
    bound = u / (1 + u)
    if mx:
        bound = max(bound, 1.0 - vmax / 2.0 ** (math.floor(math.log2(vmax)) + 1))
    return bound


def clip_limit(fmt: str, mx: bool = False) -> float:
    """|r| / s beyond which a value cannot come from round to nearest in `fmt`:
    the largest finite value plus half its step; under E8M0 scales (OCP MX
    rounds the exponent down) the next power of two."""
    man, vmax, _ = _FORMATS[fmt]
    top = math.floor(math.log2(vmax))
    if mx:
        return 2.0 ** (top + 1)
    return vmax + 2.0 ** (top - man) / 2


def round_bound(fmt: str) -> tuple[float, float, float, float]:
    """(vmax, rel, sub, slack) of `kernels.dequantize_compare`: per element, the
    largest error round to nearest into `fmt` allows under the block's scale
    (saturation beyond the largest value, u / (1 + u) relative in the normal
    range, half the smallest subnormal step below it), plus `BOUND_SLACK`."""
    man, vmax, sub = _FORMATS[fmt]
    return vmax, default_threshold(fmt), sub, BOUND_SLACK


def parse_thresholds(values: Sequence[str]) -> dict[str, float]:
    """``--threshold FORMAT=VALUE`` (repeatable, comma-separated): FORMAT as
    configs spell it (``e4m3``, ``float8_e4m3fn``, ``nvfp4`` is E2M1)."""
    out: dict[str, float] = {}
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, number = item.partition("=")
            fmt = schemes.normalize_format(name.strip())
            if not sep or fmt not in _FORMATS:
                raise ValueError(f"--threshold {item!r}: expected FORMAT=VALUE, FORMAT one of "
                                 f"{', '.join(_FORMATS)}")
            try:
                v = float(number)
            except ValueError:
                raise ValueError(f"--threshold {item!r}: {number!r} is not a number") from None
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"--threshold {item!r}: the bound must be a positive number")
            out[fmt] = v
    return out


# ---------------------------------------------------------------- results


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


@dataclass
class Metrics:
    """The error of dequantized values d against their source r, over the
    elements where both are finite (``elements``)."""

    elements: int = 0
    ref_sq: float = 0.0    # Σ r²
    err_sq: float = 0.0    # Σ (d - r)²
    deq_sq: float = 0.0    # Σ d² (from the block sums: s² Σc²)
    deq_ref: float = 0.0   # Σ d·r (s Σc·r)
    max_err: float = 0.0
    clipped: int = 0       # |r| beyond what the block's scale represents
    nonfinite: int = 0     # d not finite where r is
    ref_nonfinite: int = 0

    def add(self, m: Metrics) -> None:
        self.elements += m.elements
        self.ref_sq += m.ref_sq
        self.err_sq += m.err_sq
        self.deq_sq += m.deq_sq
        self.deq_ref += m.deq_ref
        self.max_err = max(self.max_err, m.max_err)
        self.clipped += m.clipped
        self.nonfinite += m.nonfinite
        self.ref_nonfinite += m.ref_nonfinite

    @property
    def rel_error(self) -> float:
        """‖d - r‖ / ‖r‖ (relative Frobenius error)."""
        if self.ref_sq > 0:
            return math.sqrt(self.err_sq / self.ref_sq)
        return 0.0 if self.err_sq == 0 else math.inf

    @property
    def sqnr_db(self) -> float:
        """10 log10(Σr² / Σ(d - r)²)."""
        if self.err_sq == 0:
            return math.inf if self.ref_sq > 0 else math.nan
        if self.ref_sq == 0:
            return -math.inf
        return 10.0 * math.log10(self.ref_sq / self.err_sq)

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.deq_sq * self.ref_sq)
        return self.deq_ref / den if den > 0 else math.nan

    @property
    def clipped_share(self) -> float:
        return self.clipped / self.elements if self.elements else 0.0

    @property
    def norm_ratio(self) -> float:
        """‖d‖ / ‖r‖: a scale applied the wrong way gives about 1 / scale²."""
        return math.sqrt(self.deq_sq / self.ref_sq) if self.ref_sq > 0 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"elements": self.elements, "rel_error": _finite(self.rel_error),
                "sqnr_db": _finite(self.sqnr_db), "cosine": _finite(self.cosine),
                "max_abs_error": _finite(self.max_err), "clipped": self.clipped,
                "clipped_share": self.clipped_share, "nonfinite": self.nonfinite,
                "source_nonfinite": self.ref_nonfinite, "norm_ratio": _finite(self.norm_ratio)}


@dataclass
class BlockError:
    """One block of a weight: where (``[expert,] block row, block column``), its
    relative error, max abs error and clipped values."""

    index: tuple[int, ...]
    rel_error: float
    max_err: float
    clipped: int

    def to_dict(self) -> dict[str, Any]:
        return {"index": list(self.index), "rel_error": _finite(self.rel_error),
                "max_abs_error": _finite(self.max_err), "clipped": self.clipped}


@dataclass
class TensorResult:
    """One quantized weight compared with its source."""

    name: str
    source: str
    role: str
    layer: int
    expert: int
    layout: str
    format: str
    granularity: str
    block: tuple[int, int]
    shape: tuple[int, ...]
    threshold: float
    metrics: Metrics
    blocks: int = 0
    blocks_judged: int = 0
    blocks_above: int = 0          # judged blocks whose relative error is above the bound
    blocks_clipped: int = 0
    worst: list[BlockError] = field(default_factory=list)
    quantiles: dict[str, float | None] = field(default_factory=dict)
    source_transposed: bool = False
    defect: str | None = None      # the code of a scale defect found by a reading that fits
    reading: str | None = None     # that reading ("1 / block scale", "shifted down" ...)
    fit_error: float | None = None  # the relative error under it

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "role": self.role,
                "layer": self.layer, "expert": self.expert, "layout": self.layout,
                "format": self.format, "granularity": self.granularity,
                "block": list(self.block), "shape": list(self.shape),
                "threshold": self.threshold, **self.metrics.to_dict(),
                "blocks": self.blocks, "blocks_judged": self.blocks_judged,
                "blocks_above": self.blocks_above, "blocks_clipped": self.blocks_clipped,
                "worst_blocks": [b.to_dict() for b in self.worst],
                "block_quantiles": self.quantiles,
                "source_transposed": self.source_transposed, "defect": self.defect,
                "reading": self.reading, "fit_error": self.fit_error}


@dataclass
class Summary:
    """Metrics over a group of tensors (a role, a layer)."""

    tensors: int = 0
    metrics: Metrics = field(default_factory=Metrics)
    worst: str | None = None        # the tensor with the largest relative error
    worst_error: float = 0.0
    flagged: int = 0                # tensors with a finding

    def add(self, t: TensorResult, flagged: bool) -> None:
        self.tensors += 1
        self.metrics.add(t.metrics)
        err = t.metrics.rel_error
        if self.worst is None or err > self.worst_error:
            self.worst, self.worst_error = t.name, err
        self.flagged += flagged

    def to_dict(self) -> dict[str, Any]:
        return {"tensors": self.tensors, **self.metrics.to_dict(), "worst": self.worst,
                "worst_rel_error": _finite(self.worst_error), "flagged": self.flagged}


@dataclass
class VerifySide:
    """One checkpoint of the comparison, as the pipeline read it."""

    path: str
    tensors: int = 0
    bytes: int = 0
    scheme: str | None = None
    formats: list[str] = field(default_factory=list)
    errors: int = 0     # findings of its own (header-only) report: ckptscan report says more
    warnings: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Verification:
    """What `verify` found: per tensor, per role, per layer, and the findings."""

    candidate: VerifySide
    source: VerifySide
    thresholds: dict[str, float]
    tensors: list[TensorResult] = field(default_factory=list)
    total: Metrics = field(default_factory=Metrics)
    roles: dict[str, Summary] = field(default_factory=dict)
    layers: dict[int, Summary] = field(default_factory=dict)
    grid: dict[tuple[str, int], Summary] = field(default_factory=dict)
    kept: int = 0             # candidate tensors kept in high precision, paired
    unsupported: int = 0      # quantized weights no kernel dequantizes
    findings: list[Finding] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    jobs: int = 1
    simd: str = ""

    def count(self, severity: Severity | str) -> int:
        """Findings (lines) at exactly this severity."""
        sev = Severity.parse(severity)
        return sum(1 for f in self.findings if f.severity == sev)

    def fails(self, level: Severity | str = Severity.ERROR) -> bool:
        """Whether a finding at `level` or above exists (``never``: no), as
        `Report.fails`."""
        if level == "never":
            return False
        lv = Severity.parse(level)
        return any(f.severity >= lv for f in self.findings)

    def relative(self, path: str | None) -> str | None:
        """A file name relative to its side's checkpoint (the candidate's, else
        the source's), or as it is."""
        from .result import relative_path

        if path is None:
            return None
        for root in (self.candidate.path, self.source.path):
            got = relative_path(path, root)
            if got != path:
                return got
        return path

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "candidate": self.candidate.to_dict(), "source": self.source.to_dict(),
            "thresholds": self.thresholds,
            "compared": len(self.tensors), "kept": self.kept, "unsupported": self.unsupported,
            "total": self.total.to_dict(),
            "roles": {k: v.to_dict() for k, v in self.roles.items()},
            "layers": [{"layer": k, **v.to_dict()} for k, v in self.layers.items()],
            "grid": [{"role": r, "layer": la, "rel_error": _finite(v.metrics.rel_error),
                      "tensors": v.tensors} for (r, la), v in self.grid.items()],
            "tensors": [t.to_dict() for t in self.tensors],
            "findings": [f.to_dict() for f in self.findings],
            "counts": {str(s): self.count(s) for s in reversed(Severity)},
            "bytes": self.bytes, "seconds": round(self.seconds, 3), "jobs": self.jobs,
            "simd": self.simd,
        }


@dataclass
class VerifyProgress:
    """Passed to ``progress`` after each tensor (the fields `DeepProgressBar` reads)."""

    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int


# ---------------------------------------------------------------- the scales


def _scale_view(raw: np.ndarray, dtype: str) -> np.ndarray:
    """A copied scale's bytes as its stored numbers (E8M0 / E4M3 codes as uint8)."""
    if dtype == "F32":
        return raw.view(np.float32)
    if dtype == "BF16":
        return raw.view(np.uint16)
    if dtype == "F16":
        return raw.view(np.float16)
    return raw


def _to_f32(v: np.ndarray, dtype: str) -> np.ndarray:
    """Stored scale numbers (any shape) as float32: E8M0 2^(c - 127) (0xFF NaN),
    E4M3 as NVFP4 stores it."""
    out: np.ndarray
    if dtype == "F32":
        out = np.asarray(v, np.float32)
    elif dtype == "BF16":
        out = (v.astype(np.uint32) << 16).view(np.float32)
    elif dtype == "F16":
        out = v.astype(np.float32)
    elif dtype == "F8_E4M3":
        out = kernels.fp8_decode_table("F8_E4M3").astype(np.float32)[v]
    else:
        out = _e8m0(v)
    return out


def _e8m0(v: np.ndarray) -> np.ndarray:
    """2^(code - 127), 0xFF NaN."""
    out: np.ndarray
    with np.errstate(over="ignore"):
        out = np.ldexp(np.float32(1.0), v.astype(np.int32) - 127).astype(np.float32)
    out[v == 0xFF] = np.nan
    return out


class _Grid:
    """A weight's scales in its block grid [E, nbr, nbc] (E = 1 for a matrix):
    the block scales (stored numbers, converted per slice) times, or divided by,
    a global scale (per tensor or per expert). Slices past the grid's edges are
    NaN (the neighbours a shifted reading has not)."""

    def __init__(self, block: np.ndarray, dtype: str, shape: tuple[int, int, int],
                 glob: np.ndarray | None = None, divides: bool = False,
                 uniform: bool = False) -> None:
        self.block = block  # stored numbers, broadcast to `shape`
        self.dtype = dtype
        self.shape = shape
        self.glob = glob    # float32 [E] or None
        self.divides = divides
        self.uniform = uniform  # one value per matrix (per-tensor scales in tiles)

    def values(self, e: tuple[int, int], r: tuple[int, int], c: tuple[int, int],
               block_power: int = 1, global_power: int = 1) -> np.ndarray:
        """float32 scales for experts e[0]:e[1], block rows r, block columns c;
        ``*_power`` -1 reads that level of scales the other way round."""
        n_e, nbr, nbc = self.shape
        lo = (max(e[0], 0), max(r[0], 0), max(c[0], 0))
        hi = (min(e[1], n_e), min(r[1], nbr), min(c[1], nbc))
        inside = lo == (e[0], r[0], c[0]) and hi == (e[1], r[1], c[1])
        if not inside and any(h <= low for low, h in zip(lo, hi, strict=True)):
            return np.full((e[1] - e[0], r[1] - r[0], c[1] - c[0]), np.nan, np.float32)
        part = _to_f32(self.block[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], self.dtype)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if block_power < 0:
                part = (np.float32(1.0) / part).astype(np.float32)
            if self.glob is not None:
                g = self.glob[lo[0]:hi[0]].reshape(-1, 1, 1)
                multiply = (global_power > 0) != self.divides
                part = (part * g if multiply else part / g).astype(np.float32)
        if inside:
            return part
        out = np.full((e[1] - e[0], r[1] - r[0], c[1] - c[0]), np.nan, np.float32)
        out[lo[0] - e[0]:hi[0] - e[0], lo[1] - r[0]:hi[1] - r[0],
            lo[2] - c[0]:hi[2] - c[0]] = part
        return out

    def readings(self) -> list[tuple[str, str, Callable[[tuple[int, int], tuple[int, int]],
                                                        np.ndarray]]]:
        """The other ways the stored scales could have been meant: (code, what,
        values(e, r) for whole block rows)."""
        n_e, nbr, nbc = self.shape
        full = (0, nbc)
        out: list[tuple[str, str, Callable[[tuple[int, int], tuple[int, int]],
                                           np.ndarray]]] = []
        if self.glob is None:
            out.append(("verify-scale-inverted", "1 / scale",
                        lambda e, r: self.values(e, r, full, block_power=-1)))
        else:
            out.append(("verify-scale-inverted", "1 / block scale",
                        lambda e, r: self.values(e, r, full, block_power=-1)))
            out.append(("verify-scale-inverted", "the global scale the other way round",
                        lambda e, r: self.values(e, r, full, global_power=-1)))
            out.append(("verify-scale-inverted", "both scales the other way round",
                        lambda e, r: self.values(e, r, full, -1, -1)))
        if self.uniform:  # one scale per matrix: only its direction, and the experts'
            nbr = nbc = 1
        if nbr == nbc > 1:
            out.append(("verify-scale-transposed", "the block grid transposed",
                        lambda e, r: self.values(e, (0, nbr), r).transpose(0, 2, 1)))
        shifted = "verify-scale-shifted"
        taken = "each block's scale taken from the block"
        if nbr > 1:
            out.append((shifted, f"{taken} row above",
                        lambda e, r: self.values(e, (r[0] - 1, r[1] - 1), full)))
            out.append((shifted, f"{taken} row below",
                        lambda e, r: self.values(e, (r[0] + 1, r[1] + 1), full)))
        if nbc > 1:
            out.append((shifted, f"{taken} column to its left",
                        lambda e, r: self.values(e, r, (-1, nbc - 1))))
            out.append((shifted, f"{taken} column to its right",
                        lambda e, r: self.values(e, r, (1, nbc + 1))))
        if n_e > 1:
            out.append((shifted, "each expert's scales taken from the previous expert",
                        lambda e, r: self.values((e[0] - 1, e[1] - 1), r, full)))
            out.append((shifted, "each expert's scales taken from the next expert",
                        lambda e, r: self.values((e[0] + 1, e[1] + 1), r, full)))
        return out


@dataclass
class _Scales:
    """Where a weight's scales are (read by the worker that measures it, so that
    only the weights in flight hold theirs): the block scale, stored `mode`
    ``grid`` (in the block grid), ``transposed`` ([nbc, nbr]) or ``tensor`` (one
    per matrix, or one for all), and a global scale (per tensor or per matrix)."""

    shard: Shard
    name: str
    dtype: str
    mode: str
    shape: tuple[int, int, int]
    glob: tuple[Shard, str, str] | None = None
    divides: bool = False
    uniform: bool = False

    def grid(self) -> _Grid:
        batch, nbr, nbc = self.shape
        stored = _scale_view(kernels.copy_tensor(self.shard, self.name).data, self.dtype)
        if self.mode == "transposed":
            grid = stored.reshape(batch, nbc, nbr).transpose(0, 2, 1)
        elif self.mode == "tensor":
            grid = np.broadcast_to(stored.reshape(-1, 1, 1), self.shape)
        else:
            grid = stored.reshape(self.shape)
        glob = None
        if self.glob is not None:
            shard, name, dtype = self.glob
            raw = kernels.copy_tensor(shard, name).data
            glob = _to_f32(_scale_view(raw, dtype), dtype).reshape(-1)
            glob = np.broadcast_to(glob, (batch,)) if glob.size == 1 else glob
        return _Grid(grid, self.dtype, self.shape, glob, self.divides, self.uniform)


# ---------------------------------------------------------------- what to compare


@dataclass
class _Plan:
    """One quantized weight to compare: where its codes, scales and source are,
    and how to read them."""

    row: int
    src_row: int
    name: str
    src_name: str
    q_shard: Shard
    ref_shard: Shard
    ref_dtype: str
    fp4: bool
    fmt: str
    fp8_dtype: str | None
    batch: int
    rows: int
    cols: int
    lead: tuple[int, ...]     # the logical shape's leading dims (an expert stack's E)
    block: tuple[int, int]
    scales: _Scales           # read by the worker (`_Scales.grid`)
    clip: float
    bound: float              # the tensor's relative-error bound
    round_bound: tuple[float, float, float, float]
    transposed: bool          # the source is stored [.., in, out]
    nbytes: int
    ws: WeightSet
    transposed_scales: tuple[int, ...] | None = None  # stored [nbc, nbr]: read transposed back

    @property
    def grid_shape(self) -> tuple[int, int, int]:
        return self.scales.shape

    @property
    def q_row_bytes(self) -> int:
        return self.cols // 2 if self.fp4 else self.cols

    @property
    def ref_width(self) -> int:
        return 4 if self.ref_dtype == "F32" else 2

    def chunks(self) -> Iterator[tuple[int, int, int, int]]:
        """(e0, e1, r0, r1): experts e0..e1 whole (r0 = 0, r1 = rows), or rows
        r0..r1 (whole block rows) of expert e0; at most CHUNK_ELEMENTS each."""
        br = self.block[0]
        plane = self.rows * self.cols
        if self.transposed or plane <= CHUNK_ELEMENTS:
            per = 1 if self.transposed else max(1, CHUNK_ELEMENTS // max(plane, 1))
            for e in range(0, self.batch, per):
                yield e, min(self.batch, e + per), 0, self.rows
            return
        band = max(1, CHUNK_ELEMENTS // max(self.cols * br, 1)) * br
        for e in range(self.batch):
            for r in range(0, self.rows, band):
                yield e, e + 1, r, min(self.rows, r + band)


def _source_name(ws: WeightSet, template: str) -> str:
    """The unquantized weight's name template for a weight set's template: the
    stem's ``.weight``, or the stem itself for a parameter of its own (fused
    experts, gpt-oss); torchao flattens ``M.weight`` into ``M._weight_qdata``."""
    stem = ws.layout.weight_stem(template)
    assert stem is not None
    if not ws.layout.param_style:
        return stem + ".weight"
    head, dot, last = stem.rpartition(".")
    return head + dot + last[1:] if last.startswith("_") else stem


def _dequantizable(ws: WeightSet) -> bool:
    lay, p = ws.layout, ws.layout.packing
    if lay.granularity.kind not in ("block", "group", "channel", "tensor"):
        return False
    if not ws.dtype_ok:
        return ws.dtype in _FP8_DTYPE.values()
    if ws.weight_format in _FP8_DTYPE:
        return ws.dtype in schemes.FP8_DTYPES
    return (lay.weight_format == "E2M1" and ws.dtype in ("U8", "I8") and p.per_element == 2
            and p.order == "low-nibble-first" and not p.flat and not p.transposed)


# ---------------------------------------------------------------- the measurement


@dataclass
class _Pass:
    """What a pass over one weight measured (the worker's result)."""

    metrics: Metrics = field(default_factory=Metrics)
    blocks: int = 0
    judged: int = 0
    hist: np.ndarray = field(default_factory=lambda: np.zeros(_HIST_BINS, np.int64))
    # blocks kept for the report: (relative error, index, Σe², Σr², max|e|, clipped, Σb²)
    pool: list[tuple[float, int, float, float, float, int, float]] = field(default_factory=list)
    clipped_blocks: int = 0
    bytes: int = 0
    # readings: code, what -> [alternative err, err as stored, ref energy] on their blocks
    readings: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    kept: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # block sums per chunk


class _Reader:
    """Bytes of one tensor in row bands: from a local file's mapping, its pages
    mapped per band and dropped behind; from a remote source, one range request
    per band."""

    def __init__(self, shard: Shard, name: str) -> None:
        self.shard, self.name = shard, name
        self.data = None if shard.remote else shard.raw(name)

    def take(self, start: int, stop: int) -> np.ndarray:
        if self.data is None:
            from .remote.shard import RemoteShard

            assert isinstance(self.shard, RemoteShard)
            return self.shard.read(self.name, start, stop)
        self.shard.populate(self.name, start, stop)
        return self.data[start:stop]

    def drop(self, start: int, stop: int) -> None:
        if self.data is not None:
            self.shard.release(self.name, start, stop)


def _measure(plan: _Plan, grid: _Grid, cancel: threading.Event,
             readings: bool = False) -> _Pass:
    """One pass over a weight and its source: the metrics, and the error of
    each other reading of its scales when it keeps its block sums; with
    `readings`, those readings alone, chunk by chunk (a second pass)."""
    out = _Pass()
    q, ref = _Reader(plan.q_shard, plan.name), _Reader(plan.ref_shard, plan.src_name)
    br, bc = plan.block
    n_e, nbr, nbc = grid.shape
    alts = grid.readings() if readings else []
    keep = not readings and n_e * nbr * nbc <= KEEP_BLOCKS
    plane = plan.rows * plan.cols
    for e0, e1, r0, r1 in plan.chunks():
        if cancel.is_set():
            from .deep import Cancelled

            raise Cancelled("verify interrupted")
        qa = (e0 * plane + r0 * plan.cols) * plan.q_row_bytes // plan.cols
        qb = qa + (e1 - e0) * (r1 - r0) * plan.q_row_bytes
        ra = (e0 * plane + r0 * plan.cols) * plan.ref_width
        rb = ra + (e1 - e0) * (r1 - r0) * plan.cols * plan.ref_width
        if plan.transposed:
            src = kernels.copy_tensor(ref.take(ra, rb), dtype="U8").data
            w = plan.ref_width
            typed = src.view({2: np.uint16, 4: np.uint32}[w]).reshape(plan.cols, plan.rows)
            ref_bytes = np.ascontiguousarray(typed.T).view(np.uint8).reshape(-1)
        else:
            ref_bytes = ref.take(ra, rb)
        shape = ((e1 - e0, r1 - r0, plan.cols) if plan.lead else (r1 - r0, plan.cols))
        qshape = shape[:-1] + (plan.cols // 2,) if plan.fp4 else shape
        b0, b1 = r0 // br, -(-r1 // br)
        scale = grid.values((e0, e1), (b0, b1), (0, nbc))
        if not plan.lead:
            scale = scale[0]
        be = kernels.dequantize_compare(
            kernels.RawTensor(q.take(qa, qb), "U8" if plan.fp4 else str(plan.fp8_dtype), qshape),
            scale, kernels.RawTensor(ref_bytes, plan.ref_dtype, shape), plan.block,
            clip=plan.clip, bound=plan.round_bound)
        q.drop(qa, qb)
        if not plan.transposed:
            ref.drop(ra, rb)
        out.bytes += (qb - qa) + (rb - ra)
        if alts:
            _add_readings(out, be, scale, alts, (e0, e1), (b0, b1), plan.lead)
            continue
        _add_blocks(out, be, scale, (e0 * nbr + b0) * nbc, (e1 - e0) * (r1 - r0) * plan.cols)
        if keep:
            out.kept.append((be.code_sq, be.dot, be.ref_sq, be.err_sq))
    if keep and out.kept:
        _readings_of_kept(out, grid)
    return out


def _add_blocks(out: _Pass, be: kernels.BlockErrors, scale: np.ndarray, first: int,
                elements: int) -> None:
    """One chunk's blocks into the weight's metrics: sums, the histogram of
    relative errors (of every block, or of an evenly spaced sample of at most
    `_HIST_SAMPLE` of them), and into the pool the blocks above their bound, with
    clipped values, and the chunk's worst few (every step O(blocks))."""
    m = out.metrics
    n = be.err_sq.size
    if not n:
        return
    sv = scale.reshape(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        if not np.isfinite(sv).all():
            sv = np.where(np.isfinite(sv), sv, np.float32(0))
        s64 = sv.astype(np.float64)
        m.deq_ref += float(np.dot(s64, be.dot.reshape(-1)))
        s64 *= s64
        m.deq_sq += float(np.dot(s64, be.code_sq.reshape(-1)))
    bad = int(be.bad.sum())
    ref_bad = int(be.ref_bad.sum())
    m.elements += elements - bad
    m.nonfinite += bad - ref_bad
    m.ref_nonfinite += ref_bad
    c, e = be.ref_sq.reshape(-1), be.err_sq.reshape(-1)
    m.ref_sq += float(c.sum())
    m.err_sq += float(e.sum())
    m.max_err = max(m.max_err, float(be.max_err.max()))
    clipped = be.clipped.reshape(-1)
    nclip = int(np.count_nonzero(clipped))
    if nclip:
        m.clipped += int(clipped.sum())
        out.clipped_blocks += nclip
    out.blocks += n
    has = c > 0
    out.judged += int(np.count_nonzero(has))
    rel2 = np.zeros(n)
    np.divide(e, c, out=rel2, where=has)  # 0 where the source block is all zeros
    step = -(-n // _HIST_SAMPLE)
    sample = rel2[::step][has[::step]]
    if sample.size:
        with np.errstate(divide="ignore"):
            lg = np.log10(sample)
        bins = np.clip(np.nan_to_num((lg * 0.5 - _HIST_LO) / _HIST_STEP + 1, neginf=0.0),
                       0, _HIST_BINS - 1).astype(np.int64)
        out.hist += np.bincount(bins, minlength=_HIST_BINS) * step
    bound = be.bound_sq.reshape(-1)
    pick = np.flatnonzero(e > bound)
    if nclip:
        pick = np.union1d(pick, np.flatnonzero(clipped))
    k = min(WORST_BLOCKS, n)
    worst = np.argpartition(rel2, n - k)[n - k:] if n > k else np.arange(n)
    pick = np.union1d(pick, worst)
    if len(pick) > _POOL:
        pick = pick[np.argpartition(e[pick], len(pick) - _POOL)[len(pick) - _POOL:]]
    maxe = be.max_err.reshape(-1)
    for j in pick.tolist():
        cj, ej = float(c[j]), float(e[j])
        rel = math.sqrt(ej / cj) if cj > 0 else (math.inf if ej > 0 else 0.0)
        item = (rel, first + j, ej, cj, float(maxe[j]), int(clipped[j]), float(bound[j]))
        if len(out.pool) < _POOL:
            heapq.heappush(out.pool, item)
        elif item > out.pool[0]:
            heapq.heapreplace(out.pool, item)


def _readings_of_kept(out: _Pass, grid: _Grid) -> None:
    """The other readings of a weight's scales over all its blocks at once,
    from the block sums it kept."""
    code_sq, dot, ref_sq, err_sq = (np.concatenate([c[i].reshape(-1) for c in out.kept])
                                    for i in range(4))
    out.kept = []
    n_e, nbr, nbc = grid.shape
    stored = grid.values((0, n_e), (0, nbr), (0, nbc)).reshape(-1)
    for code, what, values in grid.readings():
        alt = values((0, n_e), (0, nbr)).reshape(-1)
        _reading(out, code, what, alt, stored, code_sq, dot, ref_sq, err_sq)


def _reading(out: _Pass, code: str, what: str, alt: np.ndarray, stored: np.ndarray,
             code_sq: np.ndarray, dot: np.ndarray, ref_sq: np.ndarray,
             err_sq: np.ndarray) -> None:
    """Σ(c s' - r)² = s'² Σc² - 2 s' Σc·r + Σr² over the blocks where both
    readings have a scale, beside the stored error over the same blocks."""
    with np.errstate(invalid="ignore", over="ignore"):
        a = alt.astype(np.float64)
        err = np.maximum(a * a * code_sq - 2.0 * a * dot + ref_sq, 0.0)
        ok = np.isfinite(a) & np.isfinite(stored) & np.isfinite(err)
    acc = out.readings.setdefault((code, what), [0.0, 0.0, 0.0])
    acc[0] += float(err[ok].sum())
    acc[1] += float(err_sq[ok].sum())
    acc[2] += float(ref_sq[ok].sum())


def _add_readings(out: _Pass, be: kernels.BlockErrors, scale: np.ndarray,
                  alts: list[tuple[str, str, Callable[[tuple[int, int], tuple[int, int]],
                                                      np.ndarray]]],
                  e: tuple[int, int], r: tuple[int, int], lead: tuple[int, ...]) -> None:
    """The error of each other reading of the scales over one chunk's blocks."""
    for code, what, values in alts:
        alt = values(e, r)
        if not lead:
            alt = alt[0]
        _reading(out, code, what, alt.reshape(-1), scale.reshape(-1),
                 be.code_sq.reshape(-1), be.dot.reshape(-1), be.ref_sq.reshape(-1),
                 be.err_sq.reshape(-1))


def _quantiles(hist: np.ndarray) -> dict[str, float | None]:
    """p50 / p90 / p99 of the per-block relative errors: the upper edge of the
    log bin holding each (within 5%; over an evenly spaced sample of at most
    65,536 blocks per band of a weight with more)."""
    total = int(hist.sum())
    out: dict[str, float | None] = {}
    if not total:
        return out
    cum = np.cumsum(hist)
    for q in (0.5, 0.9, 0.99):
        k = int(np.searchsorted(cum, q * total))
        out[f"p{round(q * 100)}"] = (None if k >= _HIST_BINS - 1 else
                                     10.0 ** (_HIST_LO + k * _HIST_STEP))
    return out


# ---------------------------------------------------------------- the comparison


@dataclass
class _Names:
    """Expected source names of the candidate's rows, as pairing reads them."""

    names: list[str]
    templates: list[str]
    template: np.ndarray
    ints: list[tuple[int, ...]]
    rows: list[int]  # candidate row of each


def _ints(frame: Any, i: int) -> tuple[int, ...]:
    return tuple(int(x) for x in frame.ints[frame.int_starts[i]:frame.int_starts[i + 1]])


def _fill(template: str, ints: Sequence[int]) -> str:
    parts = template.split("{}")
    return "".join(p + (str(ints[i]) if i < len(ints) else "") for i, p in enumerate(parts))


def _side_columns(frame: Any) -> _Names:
    n = len(frame)
    return _Names(frame.names if n else [], list(frame.templates),
                  np.asarray(frame.template, np.int64), [_ints(frame, i) for i in range(n)],
                  list(range(n)))


class _Verifier:
    """Both sides open (inside the pipeline's `inspect` hooks): pairs, plans,
    measures, judges; findings go to the candidate's FindingSet."""

    def __init__(self, cand: ScanContext, src: ScanContext, thresholds: Mapping[str, float],
                 jobs: int | None, progress: Callable[[Any], None] | None,
                 cancel: threading.Event) -> None:
        self.c, self.s = cand, src
        self.thresholds = dict(thresholds)
        self.jobs = max(1, jobs or os.cpu_count() or 1)
        self.progress = progress
        self.cancel = cancel
        self.flagged: set[str] = set()  # weights with a finding of their own
        self.rewrites: list[tuple[str, str]] = []  # prefix rewrites of the pairing

    # ---- pairing ------------------------------------------------------------------------

    def _expected(self) -> tuple[_Names, dict[int, WeightSet]]:
        """The candidate's rows that stand for a source tensor (its weights under
        their unquantized names, and every other non-overhead tensor)."""
        frame, qm = self.c.frame, self.c.quant_map
        set_of: dict[int, WeightSet] = {}
        for ws in qm.sets:
            for r in ws.rows.tolist():
                set_of[r] = ws
        templates: list[str] = []
        tid: dict[str, int] = {}
        names, tpl, ints, rows = [], [], [], []
        for i in range(len(frame)):
            got = set_of.get(i)
            if got is None and qm.overhead[i]:
                continue
            own = frame.templates[int(frame.template[i])]
            t = _source_name(got, own) if got is not None else own
            k = tid.setdefault(t, len(templates))
            if k == len(templates):
                templates.append(t)
            v = _ints(frame, i)
            names.append(_fill(t, v))
            tpl.append(k)
            ints.append(v)
            rows.append(i)
        return _Names(names, templates, np.asarray(tpl, np.int64), ints, rows), set_of

    # ---- run ---------------------------------------------------------------------------

    def run(self) -> Verification:
        from .diff import pair_names

        t0 = time.perf_counter()
        cf, sf = self.c.frame, self.s.frame
        expected, set_of = self._expected()
        pairs, rules = pair_names(expected, _side_columns(sf))
        self.rewrites = sorted({r for r in rules if r is not None}, key=lambda r: -len(r[0]))
        fs = self.c.findings
        plans: list[_Plan] = []
        result = Verification(self._side(self.c), self._side(self.s), {})
        paired_src: set[int] = set()
        for k, cand_row in enumerate(expected.rows):
            src_row = pairs.get(k, -1)
            ws = set_of.get(cand_row)
            if src_row >= 0:
                paired_src.add(src_row)
            if ws is None:
                if src_row < 0:
                    self._missing_in_source(cand_row, expected.names[k], None)
                elif self._outside_scheme(cand_row, src_row):
                    result.unsupported += 1
                else:
                    result.kept += 1
                continue
            if not _dequantizable(ws):
                result.unsupported += 1
                fs.rows("verify-unsupported", [cand_row], _fixed(
                    f"{ws.weight_format} ({ws.layout.title}): no kernel dequantizes it; "
                    "not compared"))
                continue
            if src_row < 0:
                self._missing_in_source(cand_row, expected.names[k], ws)
                continue
            plan = self._plan(cand_row, src_row, ws, result)
            if plan is not None:
                plans.append(plan)
        self._missing_in_candidate(paired_src)
        for rows, why in _unconverted(self.c):
            fs.rows("verify-not-quantized", rows, _left_unquantized(cf, why))
        for plan, got in self._measure_all(plans):  # judged as they come, in order
            result.tensors.append(self._judge(plan, got))
            result.bytes += got.bytes
        self._summaries(result)
        result.thresholds = self.thresholds_used(plans)
        result.jobs = self.jobs
        result.simd = str(kernels.simd_info().get("active", ""))
        result.seconds = time.perf_counter() - t0
        for key, f in self.s.findings.root_causes().items():
            fs.root(key, f)
        return result

    def thresholds_used(self, plans: Sequence[_Plan]) -> dict[str, float]:
        out: dict[str, float] = {}
        for p in plans:
            key = p.fmt + (" (E8M0 scales)" if p.scales.dtype in ("U8", "F8_E8M0") and
                           p.fmt not in self.thresholds else "")
            out[key] = p.bound
        return dict(sorted(out.items()))

    def _side(self, ctx: ScanContext) -> VerifySide:
        frame, qm = ctx.frame, ctx.quant_map
        return VerifySide(str(ctx.ckpt.path), len(frame), int(frame.nbytes.sum()),
                          qm.det.method if qm.det is not None else None, qm.formats())

    def _outside_scheme(self, row: int, src_row: int) -> bool:
        """A tensor stored in another (non-float) dtype than its source although
        no declared scheme quantizes it: named, not compared."""
        cf, sf = self.c.frame, self.s.frame
        dtype, src = cf.dtype_name(row), sf.dtype_name(src_row)
        if dtype == src or dtype in schemes.FLOAT_DTYPES:
            return False
        self.c.findings.rows("verify-unsupported", [row], _fixed(
            f"{dtype} where the source has {src}, outside any quantization scheme the "
            "config declares: not compared"))
        return True

    def _missing_in_source(self, row: int, expected: str, ws: WeightSet | None) -> None:
        cf = self.c.frame
        what = (f"quantized weight ({ws.weight_format}): it cannot be verified"
                if ws is not None else f"{cf.dtype_name(row)} tensor")
        cause = self.s.lost.get(expected)
        f = codes.finding("verify-missing-in-source", f"{what}; the source has no {expected}",
                          cf.file(row), cf.name(row), expected=expected)
        self.c.findings.add(f, group=cf.templates[int(cf.template[row])], cause=cause)

    def _source_of_lost(self, name: str) -> str:
        """The source name a candidate tensor a broken file took along stands
        for: its unquantized name, through the pairing's prefix rewrites."""
        from .taxonomy import template_of

        det = self.c.detection
        roles = det.weight_roles(name) if det is not None else []
        if roles:
            stem = roles[0].stem
            head, dot, last = stem.rpartition(".")
            if not roles[0].layout.param_style:
                name = stem + ".weight"
            else:
                name = head + dot + last[1:] if last.startswith("_") else stem
        template, ints = template_of(name)
        for pa, pb in self.rewrites:
            if template.startswith(pa):
                return _fill(pb + template[len(pa):], ints)
        return name

    def _missing_in_candidate(self, paired: set[int]) -> None:
        sf = self.s.frame
        lost = {self._source_of_lost(name): key for name, key in self.c.lost.items()}
        tied = _tied_embeddings(self.c.ckpt.config)
        for j in range(len(sf)):
            if j in paired:
                continue
            name = sf.name(j)
            if tied and name.endswith("lm_head.weight"):
                continue  # tie_word_embeddings: loaders take the embedding's
            f = codes.finding("verify-missing-in-candidate",
                              f"{sf.dtype_name(j)} {list(sf.shape(j))} ({sf.role_name(j)}) is "
                              f"in the source ({os.path.basename(sf.file(j))}) but not in the "
                              "candidate", None, name)
            self.c.findings.add(f, group=sf.templates[int(sf.template[j])],
                                cause=lost.get(name))

    # ---- plans --------------------------------------------------------------------------

    def _plan(self, row: int, src_row: int, ws: WeightSet, result: Verification
              ) -> _Plan | None:
        cf, sf, fs = self.c.frame, self.s.frame, self.c.findings
        logical = ws.logical[int(ws.shape_of[ws.position(row)])]
        src_dtype = sf.dtype_name(src_row)
        src_shape = sf.shape(src_row)

        def skip(why: str, cause: str | None = None) -> None:
            if cause is None:
                fs.rows("verify-not-compared", [row], _fixed(why))
            else:
                fs.add(codes.finding("verify-not-compared", why, cf.file(row), cf.name(row)),
                       group=cf.templates[int(cf.template[row])], cause=cause)

        if logical is None or len(logical) not in (2, 3):
            skip(f"stored shape {list(cf.shape(row))} is no {ws.layout.title} weight")
            return None
        if src_dtype not in _REF_DTYPES:
            skip(f"its source {sf.name(src_row)} is {src_dtype}, not BF16, F16 or F32")
            return None
        swapped = (*logical[:-2], logical[-1], logical[-2])
        if tuple(src_shape) not in (tuple(logical), swapped):
            fs.rows("verify-shape-mismatch", [row], _fixed(
                f"logical shape {list(logical)}, but its source {sf.name(src_row)} is "
                f"{list(src_shape)}"))
            return None
        # square matrices: as the layout's producers store the unquantized parameter
        transposed = tuple(src_shape) != tuple(logical) or (
            swapped == tuple(logical) and ws.layout.source_transposed)
        *lead, rows, cols = logical
        batch = int(np.prod(lead)) if lead else 1
        if transposed and rows * cols * (4 if src_dtype == "F32" else 2) > MAX_TRANSPOSE_BYTES:
            skip(f"its source is stored transposed and one matrix is larger than "
                 f"{MAX_TRANSPOSE_BYTES >> 20} MiB")
            return None
        fmt = ws.weight_format
        if fmt not in _FORMATS:
            skip(f"{fmt}: no kernel dequantizes it")
            return None
        scale_row = glob_row = -1
        divides = False
        for cr in ws.companions:
            r = int(cr.rows[ws.position(row)])
            if cr.companion.kind == schemes.SCALE and scale_row < 0 and r >= 0:
                scale_row = r
            elif cr.companion.kind == schemes.GLOBAL_SCALE and glob_row < 0 and r >= 0:
                glob_row, divides = r, cr.companion.divides
        if scale_row < 0:
            stem = ws.layout.weight_stem(cf.name(row))
            names = [ws.layout.companion_name(stem, cr.companion) for cr in ws.companions
                     if cr.companion.kind == schemes.SCALE] if stem is not None else []
            cause = next((self.c.lost[n] for n in names if n in self.c.lost), None)
            skip("its scale is missing (companion-missing / fp8-scale-missing in ckptscan "
                 "report)", cause)
            return None
        block = tile_of(ws.layout, (rows, cols))
        nbr, nbc = -(-rows // block[0]), -(-cols // block[1])
        sdtype = cf.dtype_name(scale_row)
        if sdtype not in _SCALE_DTYPES:
            skip(f"its scale {cf.name(scale_row)} is {sdtype}, which holds no scale")
            return None
        count = int(cf.numel[scale_row])
        grid_shape = (batch, nbr, nbc)
        mode = ""
        if count == batch * nbr * nbc:
            sshape = tuple(cf.shape(scale_row))
            fits = [c for c in ws.companions if c.companion.kind == schemes.SCALE]
            expected = fits[0].companion.expected_shapes(tuple(logical)) if fits else ()
            mode = "transposed" if nbr != nbc and sshape not in expected and _squeezed(
                sshape) == _squeezed((*lead, nbc, nbr)) else "grid"
        elif count in (1, batch) and ws.layout.granularity.kind == "tensor":
            mode = "tensor"
        else:
            skip(f"its scale {cf.name(scale_row)} {list(cf.shape(scale_row))} does not fit "
                 f"the {nbr} x {nbc} grid of {block[0]} x {block[1]} blocks")
            return None
        glob = None
        if glob_row >= 0:
            gdtype = cf.dtype_name(glob_row)
            if gdtype not in ("F32", "BF16", "F16"):
                skip(f"its global scale {cf.name(glob_row)} is {gdtype}")
                return None
            if int(cf.numel[glob_row]) not in (1, batch):
                skip(f"its global scale has {int(cf.numel[glob_row])} values for {batch} "
                     "matrices")
                return None
            glob = (cf.shards[int(cf.shard_of[glob_row])], cf.name(glob_row), gdtype)
        mx = sdtype in ("U8", "F8_E8M0")
        bound = self.thresholds.get(fmt, default_threshold(fmt, mx))
        fp4 = fmt == "E2M1"
        q_shard = cf.shards[int(cf.shard_of[row])]
        ref_shard = sf.shards[int(sf.shard_of[src_row])]
        scales = _Scales(cf.shards[int(cf.shard_of[scale_row])], cf.name(scale_row), sdtype,
                         mode, grid_shape, glob, divides,
                         ws.layout.granularity.kind == "tensor")
        return _Plan(
            row, src_row, cf.name(row), sf.name(src_row), q_shard, ref_shard, src_dtype, fp4,
            fmt, None if fp4 else ws.dtype, batch, rows, cols, tuple(lead), block, scales,
            clip_limit(fmt, mx), bound, round_bound(fmt), transposed,
            int(cf.nbytes[row]) + int(sf.nbytes[src_row]), ws,
            cf.shape(scale_row) if mode == "transposed" else None)

    # ---- measuring ---------------------------------------------------------------------

    def _measure_all(self, plans: list[_Plan]) -> Iterator[tuple[_Plan, _Pass]]:
        """Every plan on the pool, a bounded window in flight, in order."""
        from .deep import Cancelled

        total = sum(p.nbytes for p in plans)
        pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="ckptscan-verify")
        pending: list[tuple[_Plan, Future[_Pass]]] = []
        queue = iter(plans)
        done = done_bytes = 0

        def submit() -> None:
            plan = next(queue, None)
            if plan is not None:
                pending.append((plan, pool.submit(self._one, plan)))

        try:
            for _ in range(2 * self.jobs):
                submit()
            while pending:
                plan, fut = pending.pop(0)
                yield plan, fut.result()
                done += 1
                done_bytes += plan.nbytes
                if self.progress is not None:
                    self.progress(VerifyProgress(done, len(plans), done_bytes, total))
                if self.cancel.is_set():
                    raise Cancelled("verify interrupted")
                submit()
        except BaseException:
            self.cancel.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _one(self, plan: _Plan) -> _Pass:
        """A worker: the metrics, then, for a weight above its bound, its scales'
        other readings (a second read)."""
        from .deep import Cancelled

        try:
            grid = plan.scales.grid()
            got = _measure(plan, grid, self.cancel)
            if not got.readings and _above(plan, got):
                got.readings = _measure(plan, grid, self.cancel, readings=True).readings
            return got
        except Cancelled:
            raise
        except (CkptScanError, OSError, ValueError, RuntimeError) as exc:
            failed = _Pass()
            failed.readings = {("failed", str(exc)): []}
            return failed

    # ---- judging -----------------------------------------------------------------------

    def _judge(self, plan: _Plan, got: _Pass) -> TensorResult:
        cf, fs = self.c.frame, self.c.findings
        row = plan.row
        ws = plan.ws
        t = TensorResult(
            plan.name, plan.src_name, cf.role_name(row), int(cf.layer[row]),
            int(cf.expert[row]), ws.layout.name, plan.fmt, str(ws.layout.granularity),
            plan.block, (*plan.lead, plan.rows, plan.cols), plan.bound, got.metrics,
            got.blocks, got.judged, source_transposed=plan.transposed)
        failed = [what for code, what in got.readings if code == "failed"]
        if failed:
            fs.rows("verify-not-compared", [row], _fixed(f"its data could not be read: "
                                                          f"{failed[0]}"))
            return t
        m = got.metrics
        mean = m.ref_sq / got.blocks if got.blocks else 0.0
        floor = BLOCK_ENERGY_FLOOR * mean
        blocks = []
        for _, k, e, c, maxe, clipped, b in got.pool:
            judged = math.sqrt(e / max(c, floor)) if (c > 0 or floor > 0) else (
                0.0 if e == 0 else math.inf)
            blocks.append((judged, k, maxe, clipped, e > b and c >= floor))
        # above: more error than round to nearest allows for the block's values
        above = [x for x in blocks if x[4]]
        t.blocks_above = len(above)
        t.blocks_clipped = got.clipped_blocks
        blocks.sort(key=lambda b: (-b[0], b[1]))
        t.worst = [BlockError(_block_index(plan, k), judged, maxe, clipped)
                   for judged, k, maxe, clipped, _ in blocks[:WORST_BLOCKS]]
        t.quantiles = _quantiles(got.hist)
        if blocks:
            t.quantiles["max"] = _finite(blocks[0][0])
        if plan.transposed_scales:
            t.defect, t.reading = "verify-scale-transposed", "stored transposed"
            fs.rows("verify-scale-transposed", [row], _fixed(
                f"its scale is stored {list(plan.transposed_scales)}, transposed for a "
                f"{plan.grid_shape[1]} x {plan.grid_shape[2]} block grid: read transposed "
                f"back, the weight's relative error is {_pct(m.rel_error)}"))
            self.flagged.add(plan.name)
        high = m.rel_error > plan.bound or t.blocks_above > 0
        fit = _best_reading(got.readings, plan.bound)
        where = _ratio_text(m)
        if fit is not None:
            code, what, err = fit
            t.defect, t.reading, t.fit_error = code, what, err
            lead = {"verify-scale-inverted": "scale applied in the wrong direction",
                    "verify-scale-transposed": "block scales transposed",
                    "verify-scale-shifted": "block scales shifted"}[code]
            fs.rows(code, [row], _fixed(
                f"{lead}: relative error {_pct(m.rel_error)} with the scales as stored "
                f"({where}), {_pct(err)} with {what} (bound {_pct(plan.bound)})"))
        elif m.clipped:
            extra = (f"; the tensor's relative error {_pct(m.rel_error)} is above its "
                     f"bound {_pct(plan.bound)}" if m.rel_error > plan.bound else "")
            worst = t.worst[0] if t.worst else None
            fs.rows("verify-clipped", [row], _fixed(
                f"{m.clipped:,} source values ({m.clipped_share:.2%}) in {t.blocks_clipped:,} "
                f"of {t.blocks:,} blocks are beyond what their block's scale represents "
                f"(|r| > {plan.clip:g} x scale): the scale is too small for them"
                + (f"; worst block {list(worst.index)}: relative error "
                   f"{_pct(worst.rel_error)}" if worst is not None else "") + extra))
            unclipped = [x for x in above if x[3] == 0]
            if unclipped:
                self._error_high(t, plan, m, unclipped)
        elif high:
            self._error_high(t, plan, m, above)
        if m.nonfinite:
            fs.rows("verify-nonfinite", [row], _fixed(
                f"{m.nonfinite:,} dequantized values are NaN or Inf where the source is "
                "finite"))
        if fit is not None or m.clipped or high or m.nonfinite:
            self.flagged.add(plan.name)
        return t

    def _error_high(self, t: TensorResult, plan: _Plan, m: Metrics,
                    above: list[tuple[float, int, float, int, bool]]) -> None:
        parts = []
        if m.rel_error > plan.bound:
            parts.append(f"relative error {_pct(m.rel_error)} ({_ratio_text(m)}, SQNR "
                         f"{m.sqnr_db:.1f} dB), above the {plan.fmt} bound {_pct(plan.bound)}")
        if above:
            worst = sorted(above, key=lambda b: (-b[0], b[1]))[0]
            parts.append(f"{len(above):,} of {t.blocks_judged:,} blocks with more error than "
                         f"round to nearest allows for their values, worst "
                         f"{list(_block_index(plan, worst[1]))} at {_pct(worst[0])}")
        self.c.findings.rows("verify-error-high", [plan.row], _fixed(
            f"{'; '.join(parts)}; no other reading of its scales fits"))

    # ---- summaries ---------------------------------------------------------------------

    def _summaries(self, result: Verification) -> None:
        flagged = self.flagged
        roles: dict[str, Summary] = defaultdict(Summary)
        layers: dict[int, Summary] = defaultdict(Summary)
        grid: dict[tuple[str, int], Summary] = defaultdict(Summary)
        for t in result.tensors:
            bad = t.name in flagged
            result.total.add(t.metrics)
            roles[t.role].add(t, bad)
            layers[t.layer].add(t, bad)
            grid[(t.role, t.layer)].add(t, bad)
        result.roles = {r: roles[r] for r in sorted(roles, key=lambda r: (
            ROLES.index(r) if r in ROLES else len(ROLES), r))}
        result.layers = {k: layers[k] for k in sorted(layers)}
        result.grid = {k: grid[k] for k in sorted(grid, key=lambda rl: (
            ROLES.index(rl[0]) if rl[0] in ROLES else len(ROLES), rl))}



def _tied_embeddings(config: Mapping[str, Any] | None) -> bool:
    """config.json (or its text_config) says tie_word_embeddings."""
    for section in (config, (config or {}).get("text_config")):
        if isinstance(section, Mapping) and section.get("tie_word_embeddings") is True:
            return True
    return False


def _unconverted(ctx: ScanContext) -> list[tuple[np.ndarray, str]]:
    from .checks.quant import unconverted

    return unconverted(ctx)


def _left_unquantized(frame: Any, why: str) -> Callable[[int], str]:
    def message(i: int) -> str:
        return (f"{frame.dtype_name(i)} linear weight ({frame.role_name(i)}) left in high "
                f"precision; {why}")
    return message


def _squeezed(shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(x) for x in shape if x != 1)


def _fixed(text: str) -> Callable[[int], str]:
    return lambda _i: text


def _pct(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "inf"
    return f"{x:.2%}" if x < 10 else f"{x:,.3g}x"


def _ratio_text(m: Metrics) -> str:
    r = m.norm_ratio
    if not math.isfinite(r) or 0.5 <= r <= 2:
        return f"cosine {m.cosine:.4f}" if math.isfinite(m.cosine) else "no cosine"
    return f"dequantized values {r:,.3g}x the source's size"


def _block_index(plan: _Plan, k: int) -> tuple[int, ...]:
    _, nbr, nbc = plan.grid_shape
    e, rest = divmod(k, nbr * nbc)
    i, j = divmod(rest, nbc)
    return (e, i, j) if plan.lead else (i, j)


def _above(plan: _Plan, got: _Pass) -> bool:
    """Whether a weight's error calls for its scales' other readings."""
    m = got.metrics
    if m.rel_error > plan.bound:
        return True
    floor = BLOCK_ENERGY_FLOOR * m.ref_sq / got.blocks if got.blocks else 0.0
    return any(e > b and c >= floor for _, _, e, c, _, clipped, b in got.pool if clipped == 0)


def _best_reading(readings: Mapping[tuple[str, str], list[float]], bound: float
                  ) -> tuple[str, str, float] | None:
    """The reading of the scales that fits within the bound and FIT_GAIN times
    better than the stored one, the best first; None when none does."""
    best = None
    for (code, what), (alt, stored, energy) in readings.items():
        if code == "failed" or energy <= 0:
            continue
        err = math.sqrt(alt / energy)
        if err <= bound and alt * FIT_GAIN <= stored and (best is None or err < best[2]):
            best = (code, what, err)
    return best


# ---------------------------------------------------------------- entry point


def verify(candidate: str | os.PathLike[str], against: str | os.PathLike[str], *,
           jobs: int | None = None, thresholds: Mapping[str, float] | None = None,
           progress: Callable[[Any], None] | None = None,
           cancel: threading.Event | None = None, revision: str | None = None,
           against_revision: str | None = None, follow_symlinks: bool = False,
           max_requests: int | None = None) -> Verification:
    """Compares the quantized checkpoint `candidate` with `against`, the
    high-precision checkpoint it was made from (any path ``ckptscan report``
    takes that holds one checkpoint, URLs included). `jobs`: threads (default one
    per core); `thresholds`: format -> relative-error bound (``{"E4M3": 0.05}``,
    see `default_threshold`); `progress` gets a `VerifyProgress` after each
    tensor; `cancel` stops it within a tensor (`deep.Cancelled`). Raises
    `CkptScanError` for a path that holds no single safetensors checkpoint."""
    from .deep import check_environment
    from .pipeline import ScanOptions, scan_spec

    check_environment()
    bounds: dict[str, float] = {}
    for name, v in (thresholds or {}).items():
        fmt = schemes.normalize_format(name)
        if fmt not in _FORMATS:
            raise CkptScanError(f"threshold for {name!r}: not a format the kernels dequantize "
                                f"({', '.join(_FORMATS)})")
        bounds[fmt] = float(v)
    cancel = cancel or threading.Event()
    specs = [_one_spec(p, rev, follow_symlinks, max_requests, what)
             for p, rev, what in ((candidate, revision, "CANDIDATE"),
                                  (against, against_revision, "--against"))]
    state: dict[str, Any] = {}

    def on_source(src: ScanContext) -> None:
        try:
            state["result"] = _Verifier(state["candidate"], src, bounds, jobs, progress,
                                        cancel).run()
        except Exception as exc:  # noqa: BLE001 - the pipeline would make it a finding
            state["error"] = exc
            raise

    def on_candidate(cand: ScanContext) -> None:
        state["candidate"] = cand
        try:
            state["source_report"] = scan_spec(specs[1], ScanOptions(inspect=on_source)).report
        except Exception as exc:  # noqa: BLE001
            state.setdefault("error", exc)
            raise

    try:
        report = scan_spec(specs[0], ScanOptions(inspect=on_candidate)).report
    finally:
        _close(specs)
    if "error" in state:
        raise state["error"]
    result: Verification = state["result"]
    result.candidate.path, result.source.path = specs[0].path, specs[1].path
    own = [f for f in report.findings if f.code.startswith("verify-") or codes.is_root(f.code)]
    result.findings = own
    for side, rep, mine in ((result.candidate, report, True),
                            (result.source, state["source_report"], False)):
        header = [f for f in rep.findings if not (mine and f.code.startswith("verify-"))]
        side.errors = sum(f.count for f in header if f.severity == Severity.ERROR)
        side.warnings = sum(f.count for f in header if f.severity == Severity.WARNING)
    return result


def _one_spec(path: str | os.PathLike[str], revision: str | None, follow_symlinks: bool,
              max_requests: int | None, what: str) -> Any:
    from .layout import LayoutError, is_url, resolve

    text = os.fspath(path)
    remote = None
    if is_url(text):
        from .remote import RemoteOptions

        remote = RemoteOptions(max_requests=max_requests)
    try:
        specs = resolve(text, revision=revision, follow_symlinks=follow_symlinks, remote=remote)
    except LayoutError as exc:
        raise CkptScanError(str(exc)) from None
    if len(specs) != 1:
        _close(specs)
        raise CkptScanError(f"{what} {text} holds {len(specs)} checkpoints: verify compares "
                            "one with one")
    if specs[0].format != "safetensors":
        _close(specs)
        raise CkptScanError(f"{what} {text}: a {specs[0].format} checkpoint; verify reads "
                            "safetensors only")
    return specs[0]


def _close(specs: Sequence[Any]) -> None:
    if any(getattr(s, "remote", None) is not None for s in specs):
        from .remote import close_sources

        close_sources(list(specs))


__all__ = ["BlockError", "CHUNK_ELEMENTS", "Metrics", "SCHEMA", "Summary", "TensorResult",
           "Verification", "VerifyProgress", "VerifySide", "clip_limit", "default_threshold",
           "parse_thresholds", "verify"]
