"""FP8 and float kernels on tensor bytes: statistics, histograms, per-block
absmax, one-pass FP8 block statistics, block dequantization, guarded copies of
small tensors, and the data checks of one FP8 weight + scale.

Every function takes a *tensor source*, one of:

- a shard (``ckptscan.open_shard(path)``) and a tensor name: ``fp8_stats(shard, "x.weight")``;
- a mapping ``{name: array}`` and a name (what tests and callers holding arrays use);
- an array with no name: a typed numpy / ml_dtypes array (``float8_e4m3fn``,
  ``bfloat16``, ``float16``, ``float32`` ...) or raw ``uint8`` bytes with ``dtype=``
  (a safetensors dtype string: ``"F8_E4M3"``, ``"BF16"`` ...);
- a `RawTensor` (bytes, dtype, shape).

The work is done by ``ckptscan._core`` (C++, SIMD, GIL released); this module only
resolves sources and shapes results. All SIMD paths give identical results; pick
one with `set_simd` (or ``CKPTSCAN_SIMD=scalar|avx2|avx512|neon``), see `simd_info`.

FP8 classification (per byte ``b``, ``mag = b & 0x7F``; see `Fp8Stats`):

==========  ===========================  ==============  =========  ==========
format      NaN                          Inf             max        saturated
==========  ===========================  ==============  =========  ==========
F8_E4M3     0x7F, 0xFF                   none            448        0x7E, 0xFE
F8_E5M2     0x7D-0x7F, 0xFD-0xFF         0x7C, 0xFC      57344      0x7B, 0xFB
F8_E4M3FNUZ 0x80                         none            240        0x7F, 0xFF
F8_E5M2FNUZ 0x80                         none            57344      0x7F, 0xFF
==========  ===========================  ==============  =========  ==========

These functions return measurements only: what a finding is, and how severe,
is decided by the checks (`ckptscan.checks.data`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _core

__all__ = [
    "FP8_DTYPES",
    "FLOAT_DTYPES",
    "RawTensor",
    "Fp8Stats",
    "FloatStats",
    "E8m0Stats",
    "BlockAbsmax",
    "Fp8BlockStats",
    "simd_info",
    "set_simd",
    "available_simd",
    "using_simd",
    "raw_tensor",
    "fp8_decode",
    "fp8_decode_table",
    "fp8_stats",
    "fp8_histogram",
    "block_absmax",
    "fp8_block_stats",
    "copy_tensor",
    "float_stats",
    "e8m0_stats",
    "tensor_stats",
    "dequantize",
    "dequantize_array",
    "dequantize_fp4",
    "BlockErrors",
    "dequantize_compare",
    "FP4_CODES",
    "SCALE_DTYPES",
    "read_probe",
]

FP8_DTYPES: tuple[str, ...] = ("F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")
FLOAT_DTYPES: tuple[str, ...] = ("BF16", "F16", "F32")


# numpy dtype name -> safetensors dtype
_FROM_NUMPY = {
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0", "bfloat16": "BF16",
    "float16": "F16", "float32": "F32",
}
_WIDTH = {"BF16": 2, "F16": 2, "F32": 4}
_FP8_COUNTS = ("nan", "inf", "zero", "neg_zero", "subnormal", "saturated", "negative")


# ---- SIMD selection ---------------------------------------------------------------
def simd_info() -> dict[str, Any]:
    """CPU features, compiled / available implementations, the active one, and the
    selection error if ``CKPTSCAN_SIMD`` named one this build or CPU cannot run
    (kernel calls then raise RuntimeError until `set_simd` succeeds)."""
    return dict(_core.simd_info())


def available_simd() -> list[str]:
    """Implementations this CPU can run, reference (``scalar``) first, best last."""
    return list(_core.simd_info()["available"])


def set_simd(name: str) -> str:
    """Selects an implementation (``"auto"`` = best); returns the active name.

    ValueError for an unknown name or one the CPU lacks; the current one stays."""
    return str(_core.set_simd(name))


@contextmanager
def using_simd(name: str) -> Iterator[str]:
    """``with using_simd("avx2"): ...`` then back to what was active before.

    The selection is process-wide: do not use concurrently from several threads."""
    before = _core.simd_info()["active"] or "auto"
    active = set_simd(name)
    try:
        yield active
    finally:
        _core.set_simd(before)


# ---- tensor sources -------------------------------------------------------------------
@dataclass(frozen=True)
class RawTensor:
    """A tensor as bytes: ``data`` is a C-contiguous 1-D uint8 array."""

    data: np.ndarray
    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def raw_tensor(source: Any, name: str | None = None, *, dtype: str | None = None,
               shape: Sequence[int] | None = None) -> RawTensor:
    """Resolves a tensor source (see the module docstring) to its bytes, dtype and shape."""
    if name is not None:
        if hasattr(source, "raw"):  # a shard: its pages mapped by the kernel's own faults
            info = source[name]
            return RawTensor(source.raw(name), str(info.dtype), tuple(info.shape))
        if isinstance(source, Mapping):
            return raw_tensor(source[name], None, dtype=dtype, shape=shape)
        raise TypeError(f"a tensor name ({name!r}) needs a shard or a mapping as source")
    if isinstance(source, RawTensor):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        arr = np.frombuffer(source, dtype=np.uint8)
    else:
        arr = np.asarray(source)
    if dtype is None:
        dtype = _FROM_NUMPY.get(arr.dtype.name)
        if dtype is None:
            raise TypeError(f"cannot tell the tensor dtype of a {arr.dtype} array: pass dtype=")
    if shape is None:
        if arr.dtype == np.uint8 and dtype in _WIDTH:
            shape = (arr.size // _WIDTH[dtype],)
        else:
            shape = arr.shape
    data = np.ascontiguousarray(arr).reshape(-1).view(np.uint8)
    return RawTensor(data, dtype, tuple(int(s) for s in shape))


def _fp8(t: RawTensor) -> str:
    if t.dtype not in FP8_DTYPES:
        raise ValueError(f"not an FP8 tensor: {t.dtype} (expected one of {', '.join(FP8_DTYPES)})")
    return t.dtype


def _matrix(t: RawTensor) -> tuple[int, int]:
    if len(t.shape) == 2:
        return t.shape[0], t.shape[1]
    if len(t.shape) == 1:
        return 1, t.shape[0]
    if len(t.shape) == 0:
        return 1, 1
    raise ValueError(f"block kernels need a 1-D or 2-D tensor, got shape {list(t.shape)}")


def _chunks(data: np.ndarray, threads: int) -> list[np.ndarray]:
    n = data.size
    if threads <= 1 or n < (1 << 22):
        return [data]
    step = -(-n // threads)
    step += -step % 4096  # page-aligned pieces
    return [data[i:i + step] for i in range(0, n, step)]


def _map(fn: Any, parts: list[np.ndarray]) -> list[Any]:
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(len(parts)) as pool:
        return list(pool.map(fn, parts))


# ---- FP8 ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Fp8Stats:
    """Counts over an FP8 tensor's codes.

    ``zero`` counts +0 and -0 (``neg_zero`` the -0 alone; F8_*FNUZ have no -0).
    ``negative`` counts values < 0: sign bit set, not NaN and not -0 (-Inf counts).
    ``saturated`` counts codes of the largest finite magnitude, either sign.
    ``absmax_code`` is the magnitude code (``b & 0x7F``) of the finite element of
    largest magnitude (0 when there is none) and ``absmax`` its value.
    """

    dtype: str
    count: int
    nan: int
    inf: int
    zero: int
    neg_zero: int
    subnormal: int
    saturated: int
    negative: int
    absmax_code: int
    absmax: float

    @property
    def finite(self) -> int:
        return self.count - self.nan - self.inf


def fp8_decode(code: int, dtype: str = "F8_E4M3") -> float:
    """The exact value of one FP8 code (NaN for NaN codes, +/-inf for E5M2 Inf)."""
    return float(_core.fp8_decode(int(code), dtype))


_DECODE_TABLES: dict[str, np.ndarray] = {}
_F32_TABLES: dict[str, np.ndarray] = {}


def fp8_decode_table(dtype: str = "F8_E4M3") -> np.ndarray:
    """float64[256]: the value of every code. Built once per format and shared:
    the array is read-only."""
    table = _DECODE_TABLES.get(dtype)
    if table is None:
        table = np.array([_core.fp8_decode(c, dtype) for c in range(256)], dtype=np.float64)
        table.setflags(write=False)
        _DECODE_TABLES[dtype] = table
    return table


def _fp8_f32_table(dtype: str) -> np.ndarray:
    """float32[256]: every code as the dequantization kernels decode it (NaN codes:
    the quiet NaN 0x7FC00000 with the code's sign, as ml_dtypes)."""
    table = _F32_TABLES.get(dtype)
    if table is None:
        values = fp8_decode_table(dtype)
        bits = values.astype(np.float32).view(np.uint32)
        codes = np.arange(256, dtype=np.uint32)
        bits = np.where(np.isnan(values), 0x7FC00000 | ((codes & 0x80) << 24), bits)
        table = bits.astype(np.uint32).view(np.float32)
        table.setflags(write=False)
        _F32_TABLES[dtype] = table
    return table


def fp8_stats(source: Any, name: str | None = None, *, dtype: str | None = None,
              threads: int = 1) -> Fp8Stats:
    """NaN / Inf / zero / subnormal / saturated / negative counts and absmax of an FP8
    tensor, at memory speed. ``threads`` > 1 splits a large tensor across threads."""
    t = raw_tensor(source, name, dtype=dtype)
    fmt = _fp8(t)
    parts = _map(lambda d: _core.fp8_stats(d, fmt), _chunks(t.data, threads))
    total = {k: sum(int(p[k]) for p in parts) for k in ("count", *_FP8_COUNTS)}
    code = max(int(p["absmax_code"]) for p in parts)
    return Fp8Stats(dtype=fmt, absmax_code=code, absmax=fp8_decode(code, fmt), **total)


def fp8_histogram(source: Any, name: str | None = None, *, dtype: str | None = None,
                  threads: int = 1) -> np.ndarray:
    """uint64[256]: how many times each code (byte value) occurs."""
    if dtype is None and name is None and _is_bytes(source):
        dtype = "U8"  # plain bytes: any 8-bit code
    t = raw_tensor(source, name, dtype=dtype)
    parts: list[np.ndarray] = _map(_core.histogram, _chunks(t.data, threads))
    if len(parts) == 1:
        return parts[0]
    return np.asarray(np.sum(parts, axis=0, dtype=np.uint64))


def _is_bytes(source: Any) -> bool:
    return isinstance(source, (bytes, bytearray, memoryview)) or (
        isinstance(source, np.ndarray) and source.dtype == np.uint8)


@dataclass(frozen=True)
class BlockAbsmax:
    """Per-block results for a [rows, cols] FP8 tensor with block (br, bc).

    ``codes[bi, bj]`` is the largest finite magnitude code (``b & 0x7F``) in the
    block (NaN and Inf excluded; 0 for an all-zero or all-NaN block) and
    ``nan[bi, bj]`` the block's NaN count; shape [ceil(rows/br), ceil(cols/bc)].
    """

    dtype: str
    shape: tuple[int, int]
    block: tuple[int, int]
    codes: np.ndarray
    nan: np.ndarray

    @property
    def values(self) -> np.ndarray:
        """float64 value of each block's absmax code."""
        out: np.ndarray = fp8_decode_table(self.dtype)[self.codes]
        return out


def _block(block: Sequence[int]) -> tuple[Any, Any]:
    """The two block dimensions as given: the core checks them (ValueError for a
    zero, a negative, a non-integer or a value past 2**64 - 1)."""
    if len(block) != 2:
        raise ValueError(f"block must be (block_rows, block_cols), got {block!r}")
    return block[0], block[1]


def block_absmax(source: Any, name: str | None = None, block: tuple[int, int] = (128, 128), *,
                 dtype: str | None = None) -> BlockAbsmax:
    """Largest finite magnitude code and NaN count of every (br, bc) block."""
    t = raw_tensor(source, name, dtype=dtype)
    fmt = _fp8(t)
    rows, cols = _matrix(t)
    br, bc = _block(block)
    codes, nan = _core.fp8_block_absmax(t.data, rows, cols, br, bc, fmt)
    return BlockAbsmax(fmt, (rows, cols), (operator.index(br), operator.index(bc)), codes, nan)


def _batched(t: RawTensor) -> tuple[int, int, int]:
    """(batch, rows, cols) of a weight: [E, rows, cols] (fused MoE experts), a
    matrix, a vector (one row) or a scalar."""
    if len(t.shape) == 3:
        return t.shape[0], t.shape[1], t.shape[2]
    return (1, *_matrix(t))


def _logical(t: RawTensor, shape: tuple[int, ...]) -> RawTensor:
    return RawTensor(t.data, t.dtype, shape)


@dataclass(frozen=True)
class Fp8BlockStats:
    """What one pass over an FP8 weight measures (`fp8_block_stats`).

    ``stats`` covers the whole tensor. Per block, in arrays shaped [batch, nbr, nbc]
    for a 3-D weight [batch, rows, cols] (blocks never straddle two matrices) and
    [nbr, nbc] otherwise, nbr = ceil(rows / br), nbc = ceil(cols / bc):

    - ``absmax_codes`` (uint8): the largest finite magnitude code (``b & 0x7F``),
      0 when the block has none;
    - ``nan``, ``inf`` (F8_E5M2 only, zeros elsewhere) and ``saturated`` (codes
      of magnitude the format max, either sign): counts, in the smallest unsigned
      dtype that holds a block's element count (uint8 for 1 x 32 groups, uint16
      for 128 x 128 blocks).

    ``sample``: counts of the 256 byte values over the byte ranges asked for
    (``fp8_block_stats(..., sample=...)``), None when none were.
    """

    dtype: str
    shape: tuple[int, ...]
    block: tuple[int, int]
    stats: Fp8Stats
    absmax_codes: np.ndarray
    nan: np.ndarray
    inf: np.ndarray
    saturated: np.ndarray
    sample: np.ndarray | None = None

    @property
    def absmax(self) -> np.ndarray:
        """float64 value of each block's absmax code."""
        out: np.ndarray = fp8_decode_table(self.dtype)[self.absmax_codes]
        return out

    @property
    def elements(self) -> np.ndarray:
        """int64 element count of each block (edge blocks are partial)."""
        batch, rows, cols = _batched(RawTensor(np.empty(0, np.uint8), self.dtype, self.shape))
        br, bc = self.block
        per_row = _block_sizes(rows, br)
        per_col = _block_sizes(cols, bc)
        out: np.ndarray = np.broadcast_to(np.outer(per_row, per_col), self.nan.shape)
        return out

    @property
    def saturated_share(self) -> np.ndarray:
        """float64 share of each block's codes at +/- the format max."""
        out: np.ndarray = self.saturated / self.elements
        return out


def _block_sizes(n: int, b: int) -> np.ndarray:
    """Lengths of the ceil(n / b) pieces of n in blocks of b: all b but the last."""
    k = -(-n // b)
    out = np.full(k, min(b, n), np.int64)
    if k:
        out[-1] = n - (k - 1) * b
    return out


def fp8_block_stats(source: Any, name: str | None = None, block: tuple[int, int] = (128, 128),
                    *, dtype: str | None = None,
                    sample: Sequence[tuple[int, int]] | None = None) -> Fp8BlockStats:
    """Whole-tensor `Fp8Stats` and, per (br, bc) block, the largest finite code and
    the NaN, Inf and saturated counts of an FP8 weight, in one pass over its bytes.

    A 3-D weight [E, rows, cols] (fused MoE experts) is E matrices cut into blocks
    separately. A block larger than the tensor is one partial block. `sample`:
    byte ranges [(start, stop), ...] whose byte histogram the same call counts
    (``.sample``). Measurements only: what they mean is the checks' business."""
    t = raw_tensor(source, name, dtype=dtype)
    fmt = _fp8(t)
    batch, rows, cols = _batched(t)
    br, bc = _block(block)
    d, codes, nan, inf, sat, hist = _core.fp8_block_stats(t.data, rows, cols, br, bc, fmt,
                                                          batch, sample or ())
    if len(t.shape) == 3 and batch == 1:  # the core drops a batch of 1
        codes, nan, inf, sat = (a.reshape(1, *a.shape) for a in (codes, nan, inf, sat))
    stats = Fp8Stats(dtype=fmt, absmax=float(d["absmax"]),
                     **{k: int(d[k]) for k in _FP8_COUNTS + ("count", "absmax_code")})
    return Fp8BlockStats(fmt, tuple(t.shape), (operator.index(br), operator.index(bc)), stats,
                         codes, nan, inf, sat, hist if sample is not None else None)


def copy_tensor(source: Any, name: str | None = None, *, dtype: str | None = None) -> RawTensor:
    """A tensor source's bytes copied into a fresh array under the fault guard:
    OSError, not a crash, when the file shrank under its mapping. For the small
    tensors (scales) that numpy then reads directly."""
    t = raw_tensor(source, name, dtype=dtype)
    return RawTensor(_core.copy_guarded(t.data), t.dtype, t.shape)


# ---- BF16 / F16 / F32 / E8M0 ------------------------------------------------------
@dataclass(frozen=True)
class FloatStats:
    """NaN / Inf / zero / subnormal counts and the finite range of a float tensor.

    ``absmax``, ``min`` and ``max`` cover finite elements only (NaN when there is none).
    """

    dtype: str
    count: int
    nan: int
    pos_inf: int
    neg_inf: int
    zero: int
    subnormal: int
    finite: int
    absmax: float
    min: float
    max: float


def float_stats(source: Any, name: str | None = None, *, dtype: str | None = None,
                threads: int = 1) -> FloatStats:
    """Statistics of a BF16, F16 or F32 tensor."""
    t = raw_tensor(source, name, dtype=dtype)
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"not a float tensor: {t.dtype} (expected BF16, F16 or F32)")
    fmt = t.dtype
    parts = _map(lambda d: _core.float_stats(d, fmt), _chunks(t.data, threads))
    tot = {k: sum(int(p[k]) for p in parts)
           for k in ("count", "nan", "pos_inf", "neg_inf", "zero", "subnormal", "finite")}
    fin = [p for p in parts if p["finite"]]
    nan = float("nan")
    return FloatStats(
        dtype=fmt, **tot,
        absmax=max((p["absmax"] for p in fin), default=nan),
        min=min((p["min"] for p in fin), default=nan),
        max=max((p["max"] for p in fin), default=nan),
    )


@dataclass(frozen=True)
class E8m0Stats:
    """F8_E8M0 scales (value 2^(code-127), 0xFF NaN): NaN count and code range."""

    count: int
    nan: int
    min_code: int  # over non-NaN codes; 255 when all are NaN
    max_code: int  # 0 when all are NaN

    @property
    def min(self) -> float:
        return math.ldexp(1.0, self.min_code - 127) if self.count > self.nan else math.nan

    @property
    def max(self) -> float:
        return math.ldexp(1.0, self.max_code - 127) if self.count > self.nan else math.nan


def e8m0_stats(source: Any, name: str | None = None) -> E8m0Stats:
    t = raw_tensor(source, name, dtype="F8_E8M0")
    if t.dtype != "F8_E8M0":
        raise ValueError(f"not an F8_E8M0 tensor: {t.dtype}")
    d = _core.e8m0_stats(t.data)
    return E8m0Stats(int(d["count"]), int(d["nan"]), int(d["min_code"]), int(d["max_code"]))


def tensor_stats(source: Any, name: str | None = None, *,
                 dtype: str | None = None) -> Fp8Stats | FloatStats | E8m0Stats | None:
    """The statistics that fit the tensor's dtype, or None for dtypes without any."""
    t = raw_tensor(source, name, dtype=dtype)
    if t.dtype in FP8_DTYPES:
        return fp8_stats(t)
    if t.dtype in FLOAT_DTYPES:
        return float_stats(t)
    if t.dtype == "F8_E8M0":
        return e8m0_stats(t)
    return None


def read_probe(data: Any) -> int:
    """Sum of the uint64 words of a buffer: reads it at memory speed (benchmarks)."""
    return int(_core.read_probe(data))


# ---- dequantization ---------------------------------------------------------------------
def _out_kind(dtype: str) -> str:
    d = dtype.lower()
    if d in ("bfloat16", "bf16"):
        return "BF16"
    if d in ("float32", "f32"):
        return "F32"
    raise ValueError(f"dequantize dtype must be 'bfloat16' or 'float32', not {dtype!r}")


SCALE_DTYPES: tuple[str, ...] = ("F32", "BF16", "F16", "F8_E8M0", "F8_E4M3")


def _scale_f32(t: RawTensor) -> np.ndarray:
    """A scale tensor as a fresh, aligned float32 array in its shape (F32, BF16, F16,
    F8_E8M0 = 2^(code - 127) with 0xFF NaN, or F8_E4M3 as NVFP4 stores it). Its
    bytes are copied under the fault guard first: a scale may sit at any offset of
    a file that may shrink."""
    if t.dtype not in SCALE_DTYPES:
        raise ValueError(f"cannot use a {t.dtype} tensor as scale "
                         f"(expected one of {', '.join(SCALE_DTYPES)})")
    raw = _core.copy_guarded(t.data)
    if t.dtype == "F32":
        vals = raw.view(np.float32)
    elif t.dtype == "BF16":
        vals = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
    elif t.dtype == "F16":
        vals = raw.view(np.float16).astype(np.float32)
    elif t.dtype == "F8_E4M3":
        vals = _fp8_f32_table("F8_E4M3")[raw]
    else:  # 2^(c - 127) is float32 exponent field c; c = 0 is the subnormal 2^-127
        bits = raw.astype(np.uint32) << 23
        bits[raw == 0] = 0x00400000
        bits[raw == 0xFF] = 0x7FC00000
        vals = bits.view(np.float32)
    out: np.ndarray = vals.reshape(t.shape)
    return out


def dequantize_array(q: Any, scale_inv: Any, block: tuple[int, int] = (128, 128),
                     dtype: str = "bfloat16", *, fp8_dtype: str | None = None,
                     out: np.ndarray | None = None) -> np.ndarray:
    """``w[i, j] = decode(q[i, j]) * scale_inv[i // br, j // bc]`` (float32 product).

    ``q`` is an FP8 tensor source (ml_dtypes array, or uint8 bytes with ``fp8_dtype``
    and a 2-D shape), ``scale_inv`` a float32 array (or any tensor source of F32,
    BF16, F16 or F8_E8M0). A 3-D ``q`` [E, rows, cols] (fused MoE experts) takes a
    scale [E, ceil(rows / br), ceil(cols / bc)]. ``dtype="float32"`` returns
    float32; ``"bfloat16"`` rounds the float32 product to nearest even (NaN stays a
    quiet NaN) and returns ``ml_dtypes.bfloat16`` when ml_dtypes is importable, else
    the raw bits as uint16. A NaN code gives its own NaN whatever the scale.
    """
    qt = raw_tensor(q, dtype=fp8_dtype)
    st = raw_tensor(scale_inv)
    return _dequantize(qt, st, block, dtype, out)


def _dequantize(qt: RawTensor, st: RawTensor, block: tuple[int, int], dtype: str,
                out: np.ndarray | None) -> np.ndarray:
    fmt = _fp8(qt)
    batch, rows, cols = _batched(qt)
    kind = _out_kind(dtype)
    br, bc = _block(block)
    scale = _scale_f32(st)
    srows, scols = (1, scale.size) if scale.ndim <= 1 else scale.shape[-2:]
    shape = (batch, rows, cols) if len(qt.shape) == 3 else (rows, cols)
    out_np = np.float32 if kind == "F32" else np.uint16
    if out is None:
        out = np.empty(shape, dtype=out_np)
        target = out
    else:
        target = out.view(out_np) if out.dtype != out_np else out
        if target.shape != shape or not target.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous {list(shape)} array")
    _core.fp8_dequantize(qt.data, rows, cols, fmt, scale, srows, scols, br, bc, target, kind,
                         batch)
    if kind == "BF16" and out is target:
        try:
            import ml_dtypes
        except ImportError:
            return target
        return target.view(ml_dtypes.bfloat16)
    return out


def dequantize(source: Any, weight_name: str, scale_name: str,
               block: tuple[int, int] = (128, 128), dtype: str = "bfloat16", *,
               scale_source: Any = None, out: np.ndarray | None = None) -> np.ndarray:
    """Dequantizes ``weight_name`` with ``scale_name`` (DeepSeek-V3 convention) from a
    shard or a ``{name: array}`` mapping; ``scale_source`` when the scale lives in
    another shard. See `dequantize_array` for the arithmetic and the output type."""
    qt = raw_tensor(source, weight_name)
    st = raw_tensor(source if scale_source is None else scale_source, scale_name)
    return _dequantize(qt, st, block, dtype, out)


FP4_CODES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                      -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], np.float32)


def dequantize_fp4(packed: Any, scale: Any, block: tuple[int, int] = (1, 32),
                   dtype: str = "float32", *, global_scale: float | None = None,
                   out: np.ndarray | None = None) -> np.ndarray:
    """Packed FP4 E2M1 weights (two codes per byte, low nibble first; code c is
    ``FP4_CODES[c]``) times a per-block scale: ``w[i, j] = decode(q[i, j]) *
    s[i // br, j // bc]`` in float32, with ``s = float32(scale) * global_scale``.

    ``packed`` is a uint8 / int8 array [..., cols / 2] (or a `RawTensor` of dtype U8,
    I8, or F4 with the logical shape); 3-D [E, rows, cols / 2] is a batch of
    experts with a scale [E, ...]. ``scale`` is any tensor source of F8_E4M3
    (NVFP4, groups of 16 with ``block=(1, 16)`` and the F32 global scale), F8_E8M0
    (MXFP4, groups of 32), F32, BF16 or F16. ``dtype``: "float32" or "bfloat16"
    (as `dequantize_array`)."""
    if isinstance(packed, np.ndarray) and packed.dtype in (np.uint8, np.int8):
        t = raw_tensor(packed, dtype="U8")
    else:
        t = raw_tensor(packed)
    if t.dtype in ("U8", "I8"):
        if not t.shape:
            raise ValueError("packed FP4 needs at least one dimension")
        t = _logical(t, (*t.shape[:-1], 2 * t.shape[-1]))
    elif t.dtype != "F4":
        raise ValueError(f"not packed FP4: {t.dtype} (expected U8, I8 or F4)")
    batch, rows, cols = _batched(t)
    kind = _out_kind(dtype)
    br, bc = _block(block)
    s = _scale_f32(raw_tensor(scale))
    if global_scale is not None:
        s = (s * np.float32(global_scale)).astype(np.float32)
    srows, scols = (1, s.size) if s.ndim <= 1 else s.shape[-2:]
    shape = (batch, rows, cols) if len(t.shape) == 3 else (rows, cols)
    out_np = np.float32 if kind == "F32" else np.uint16
    if out is None:
        out = np.empty(shape, dtype=out_np)
    target = out.view(out_np) if out.dtype != out_np else out
    if target.shape != shape or not target.flags.c_contiguous:
        raise ValueError(f"out must be a C-contiguous {list(shape)} array")
    _core.fp4_dequantize(t.data, rows, cols, np.ascontiguousarray(s), srows, scols, br, bc,
                         target, kind, batch)
    if kind == "BF16" and out.dtype == np.uint16:
        try:
            import ml_dtypes
        except ImportError:
            return out
        return out.view(ml_dtypes.bfloat16)
    return out


# ---- dequantize and compare -------------------------------------------------------------
@dataclass(frozen=True)
class BlockErrors:
    """One dequantize-and-compare pass (`dequantize_compare`), per block, in arrays
    shaped [batch, nbr, nbc] for a 3-D weight and [nbr, nbc] otherwise. With c the
    decoded code (unscaled), s the block's scale, d = float32(c * s) the
    dequantized value, r the reference and e = d - r (float32), over the elements
    whose e is finite:

    - ``ref_sq`` Σr², ``code_sq`` Σc², ``dot`` Σc·r, ``err_sq`` Σe² (float64);
    - ``max_err`` max|e| (float32);
    - ``clipped``: elements with |r| > clip * s (beyond what the block's scale can
      represent), ``bad``: elements left out (e not finite: d or r not finite, or
      their difference overflows), ``ref_bad``: those whose r is not finite
      (uint64);
    - ``bound_sq``: Σb², b the largest error round to nearest into the format
      allows for r under s (`dequantize_compare`'s ``bound``; zeros without one).

    Σc², Σc·r and Σr² give the error of any other scale s' of a block without
    reading it again (``s'² Σc² - 2 s' Σc·r + Σr²``: `err_sq_with`). The sums are
    bit-identical on every SIMD path (kernels.h defines their order)."""

    block: tuple[int, int]
    bound_sq: np.ndarray
    ref_sq: np.ndarray
    code_sq: np.ndarray
    dot: np.ndarray
    err_sq: np.ndarray
    max_err: np.ndarray
    clipped: np.ndarray
    bad: np.ndarray
    ref_bad: np.ndarray

    def err_sq_with(self, scale: np.ndarray) -> np.ndarray:
        """Σ(c·s' - r)² per block for other block scales s' (float64, exact
        arithmetic on the sums; NaN where s' is NaN)."""
        s = np.asarray(scale, np.float64)
        out: np.ndarray = np.maximum((s * s) * self.code_sq - 2.0 * s * self.dot + self.ref_sq,
                                     0.0)
        return out


def dequantize_compare(q: Any, scale: Any, ref: Any, block: tuple[int, int] = (128, 128), *,
                       clip: float, bound: tuple[float, float, float, float] | None = None,
                       fp8_dtype: str | None = None,
                       global_scale: float | None = None) -> BlockErrors:
    """Dequantizes a quantized weight and compares it with the high-precision
    tensor it was made from, in one pass (see `BlockErrors`).

    ``q``: FP8 codes (any FP8 tensor source; uint8 bytes with ``fp8_dtype``) or
    packed FP4 E2M1 (a uint8 / int8 array [..., cols / 2], or a `RawTensor` of
    dtype U8, I8 or F4 with the logical shape; two codes per byte, low nibble
    first); [E, rows, cols] is a batch of matrices. ``scale``: float32 in the
    block grid [E,] ceil(rows / br), ceil(cols / bc) (or any scale source:
    F32, BF16, F16, F8_E8M0, F8_E4M3), times ``global_scale`` when given.
    ``ref``: BF16, F16 or F32 in the weight's logical shape. ``clip``: the
    largest |r| / s a block represents (the format's max plus half its top
    step for round to nearest). ``bound``: (vmax, rel, sub, slack) of the error
    round to nearest allows per element, in float32: with t = |r|, m = vmax * s,
    b = t - m + slack * t beyond m, else max((rel + slack) * t, sub * s)."""
    fp4 = False
    if isinstance(q, np.ndarray) and q.dtype in (np.uint8, np.int8) and fp8_dtype is None:
        t = raw_tensor(q, dtype="U8")
    else:
        t = raw_tensor(q, dtype=fp8_dtype)
    if t.dtype in ("U8", "I8", "F4"):
        fp4 = True
        if t.dtype != "F4":
            if not t.shape:
                raise ValueError("packed FP4 needs at least one dimension")
            t = _logical(t, (*t.shape[:-1], 2 * t.shape[-1]))
    else:
        _fp8(t)
    batch, rows, cols = _batched(t)
    br, bc = _block(block)
    s = scale if isinstance(scale, np.ndarray) and scale.dtype == np.float32 else \
        _scale_f32(raw_tensor(scale))
    if global_scale is not None:
        s = (s * np.float32(global_scale)).astype(np.float32)
    s = np.ascontiguousarray(s, np.float32)
    srows, scols = (1, s.size) if s.ndim <= 1 else s.shape[-2:]
    r = raw_tensor(ref)
    if r.dtype not in FLOAT_DTYPES:
        raise ValueError(f"the reference must be BF16, F16 or F32, not {r.dtype}")
    if r.numel != batch * rows * cols:
        raise ValueError(f"reference of shape {list(r.shape)} for a weight of shape "
                         f"{list(t.shape)}")
    if fp4:
        d = _core.fp4_compare(t.data, rows, cols, s, srows, scols, br, bc, r.data, r.dtype,
                              float(clip), bound, batch)
    else:
        d = _core.fp8_compare(t.data, rows, cols, t.dtype, s, srows, scols, br, bc, r.data,
                              r.dtype, float(clip), bound, batch)
    if len(t.shape) == 3 and batch == 1:  # the core drops a batch of 1
        d = {k: v.reshape(1, *v.shape) for k, v in d.items()}
    return BlockErrors((operator.index(br), operator.index(bc)), **d)

