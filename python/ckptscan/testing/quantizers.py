"""Quantizers written from the formats' definitions, for test checkpoints.

Every quantizer returns a :class:`Quantized`: the unpacked codes (one per
logical weight), the scales, the region one scale covers, and how to pack it
all into the tensors a producer stores. Planting a fault in the data (a zero
block, a clipping block) edits the codes before packing.

Casts go through ml_dtypes (round to nearest even): E4M3 values are clamped to
+-448 first (a plain cast of 500 gives NaN), E2M1 casts saturate at +-6.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import numpy.typing as npt

E4M3_MAX = 448.0
E2M1_MAX = 6.0
U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

#: a stored tensor: (safetensors dtype, numpy array with that dtype's layout)
Stored = tuple[str, np.ndarray]


# ---- element formats ---------------------------------------------------------------------


def e4m3_codes(x: np.ndarray) -> U8:
    """e4m3fn byte codes of float values, RNE, saturating at +-448."""
    clamped = np.clip(np.asarray(x, np.float32), -E4M3_MAX, E4M3_MAX)
    return clamped.astype(ml_dtypes.float8_e4m3fn).view(np.uint8)


def e4m3_values(codes: np.ndarray) -> F32:
    out: F32 = np.asarray(codes, np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    return out


def e2m1_codes(x: np.ndarray) -> U8:
    """E2M1 nibble codes (sign in bit 3) of float values, RNE, saturating at +-6."""
    clamped = np.clip(np.asarray(x, np.float32), -E2M1_MAX, E2M1_MAX)
    out: U8 = clamped.astype(ml_dtypes.float4_e2m1fn).view(np.uint8) & np.uint8(0x0F)
    return out


def e2m1_values(codes: np.ndarray) -> F32:
    out: F32 = (np.asarray(codes, np.uint8) & 0x0F).view(ml_dtypes.float4_e2m1fn).astype(np.float32)
    return out


def e8m0_values(codes: np.ndarray) -> F32:
    """2 ** (code - 127); 0xFF is NaN."""
    c = np.asarray(codes, np.int32)
    out: F32 = np.where(c == 255, np.nan, np.ldexp(np.float32(1), c - 127)).astype(np.float32)
    return out


def pack_nibbles(codes: np.ndarray, low_first: bool = True) -> U8:
    """Two 4-bit codes per byte along the last axis (which must be even)."""
    c = np.asarray(codes, np.uint8) & np.uint8(0x0F)
    a, b = c[..., 0::2], c[..., 1::2]
    first, second = (a, b) if low_first else (b, a)
    out: U8 = (first | (second << np.uint8(4))).astype(np.uint8)
    return out


def unpack_nibbles(packed: np.ndarray, low_first: bool = True) -> U8:
    p = np.asarray(packed, np.uint8)
    lo, hi = p & 0x0F, p >> 4
    first, second = (lo, hi) if low_first else (hi, lo)
    out: U8 = np.stack([first, second], axis=-1).reshape(*p.shape[:-1], p.shape[-1] * 2)
    return out


def pack_bits(values: np.ndarray, bits: int, order: tuple[int, ...] | None = None) -> np.ndarray:
    """Unsigned ``bits``-wide values packed densely into uint32 words along the
    last axis, the first value in the least significant bits (compressed-tensors
    ``pack_to_int32``, MLX, GPTQ). ``order`` permutes each word's values first
    (AWQ's [0, 2, 4, 6, 1, 3, 5, 7]). The row is zero-padded to whole words."""
    v = np.asarray(values, np.uint64)
    n = v.shape[-1]
    words = math.ceil(n * bits / 32)
    if order is not None:
        per = 32 // bits
        padded = np.zeros((*v.shape[:-1], words * per), np.uint64)
        padded[..., :n] = v
        grouped = padded.reshape(*v.shape[:-1], words, per)[..., list(order)]
        v, n = grouped.reshape(*v.shape[:-1], words * per), words * per
    out = np.zeros((*v.shape[:-1], words + 1), np.uint64)
    for i in range(n):
        bit = i * bits
        w, off = divmod(bit, 32)
        out[..., w] |= (v[..., i] << np.uint64(off)) & np.uint64(0xFFFFFFFF)
        if off + bits > 32:
            out[..., w + 1] |= v[..., i] >> np.uint64(32 - off)
    return out[..., :words].astype(np.uint32)


def unpack_bits(words: np.ndarray, bits: int, n: int,
                order: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``n`` unsigned values per row."""
    w = np.asarray(words, np.uint32).astype(np.uint64)
    count = w.shape[-1] * 32 // bits if order is None else w.shape[-1] * (32 // bits)
    ext = np.concatenate([w, np.zeros((*w.shape[:-1], 1), np.uint64)], axis=-1)
    mask = np.uint64((1 << bits) - 1)
    out = np.zeros((*w.shape[:-1], count), np.uint64)
    for i in range(count):
        bit = i * bits
        k, off = divmod(bit, 32)
        val = ext[..., k] >> np.uint64(off)
        if off + bits > 32:
            val |= ext[..., k + 1] << np.uint64(32 - off)
        out[..., i] = val & mask
    if order is not None:
        per = 32 // bits
        inverse = np.argsort(order)
        out = out.reshape(*w.shape[:-1], -1, per)[..., list(inverse)].reshape(*w.shape[:-1], -1)
    return out[..., :n]


def to_bf16(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(ml_dtypes.bfloat16)


# ---- the quantized weight ----------------------------------------------------------------


@dataclass
class Quantized:
    """A quantized weight before it is stored.

    ``codes``: one code per logical weight (uint8 byte/nibble codes for float
    formats, int8 values for integer formats). ``region``: rows x cols covered by
    one scale (for planting block faults). ``zero`` / ``pos_max`` / ``neg_max``:
    the codes of 0 and +-max. ``scale_codes``: companion suffix -> (dtype, array)
    of scales already in their stored form. ``pack(codes)`` -> the weight tensors
    (suffix -> Stored)."""

    codes: np.ndarray
    region: tuple[int, int]
    zero: int
    pos_max: int
    neg_max: int
    scales: dict[str, Stored]
    pack: Callable[[np.ndarray], dict[str, Stored]]
    notes: dict[str, object] = field(default_factory=dict)

    def stored(self) -> dict[str, Stored]:
        return {**self.pack(self.codes), **self.scales}


def _blocks(w: F32, rows: int, cols: int) -> tuple[F32, tuple[int, int]]:
    """absmax per (rows x cols) tile of the last two dims (edge tiles partial)."""
    *lead, r, c = w.shape
    nr, nc = -(-r // rows), -(-c // cols)
    pad = np.zeros((*lead, nr * rows, nc * cols), np.float32)
    pad[..., :r, :c] = np.abs(w)
    amax = pad.reshape(*lead, nr, rows, nc, cols).max(axis=(-3, -1))
    return amax.astype(np.float32), (nr, nc)


def _expand(s: np.ndarray, rows: int, cols: int, shape: tuple[int, ...]) -> F32:
    full = np.repeat(np.repeat(np.asarray(s, np.float32), rows, axis=-2), cols, axis=-1)
    out: F32 = full[..., : shape[-2], : shape[-1]]
    return out


def _weight(suffix: str, dtype: str, view: type | None = None
            ) -> Callable[[np.ndarray], dict[str, Stored]]:
    def pack(codes: np.ndarray) -> dict[str, Stored]:
        return {suffix: (dtype, codes if view is None else codes.view(view))}
    return pack


def fp8_block(w: F32, block: tuple[int, int], *, scale_suffix: str = ".weight_scale_inv",
              scale_dtype: str = "F32", pow2: bool = False, rank4: bool = False,
              weight_suffix: str = ".weight") -> Quantized:
    """DeepSeek-style block FP8: ``scale = absmax / 448`` per tile (rounded up to a
    power of two with ``pow2``), ``codes = e4m3(w / scale)``, ``w ~ q * scale``."""
    amax, _ = _blocks(w, *block)
    scale = np.where(amax > 0, amax / E4M3_MAX, 1.0).astype(np.float32)
    if pow2:
        scale = np.exp2(np.ceil(np.log2(scale))).astype(np.float32)
    codes = e4m3_codes(w / _expand(scale, *block, w.shape))
    stored = _scale_array(scale, scale_dtype)
    if rank4:
        *lead, a, b = scale.shape
        stored = (stored[0], stored[1].reshape(*lead, a, 1, b, 1))
    return Quantized(codes, block, 0, 0x7E, 0xFE, {scale_suffix: stored},
                     _weight(weight_suffix, "F8_E4M3", ml_dtypes.float8_e4m3fn))


def _scale_array(scale: np.ndarray, dtype: str) -> Stored:
    s = np.asarray(scale, np.float32)
    if dtype == "F32":
        return "F32", s
    if dtype == "BF16":
        return "BF16", to_bf16(s)
    if dtype == "F16":
        return "F16", s.astype(np.float16)
    if dtype in ("F8_E8M0", "U8"):
        exps = (np.round(np.log2(s)).astype(np.int32) + 127).clip(0, 254).astype(np.uint8)
        return dtype, exps.view(ml_dtypes.float8_e8m0fnu) if dtype == "F8_E8M0" else exps
    if dtype == "F8_E4M3":
        return "F8_E4M3", e4m3_codes(s).view(ml_dtypes.float8_e4m3fn)
    raise ValueError(f"no scale encoding for {dtype}")


def fp8_tensor(w: F32, *, scale_suffix: str, scale_dtype: str = "F32",
               scale_shape: tuple[int, ...] = ()) -> Quantized:
    """One scale for the whole weight: ``absmax / 448``."""
    amax = float(np.abs(w).max())
    s = np.float32(amax / E4M3_MAX if amax > 0 else 1.0)
    codes = e4m3_codes(w / s)
    scale = _scale_array(np.full(scale_shape, s, np.float32), scale_dtype)
    # one scale covers the weight; a block for planting is the 128 x 128 tile kernels scan
    return Quantized(codes, (min(128, w.shape[-2]), min(128, w.shape[-1])), 0, 0x7E, 0xFE,
                     {scale_suffix: scale}, _weight(".weight", "F8_E4M3", ml_dtypes.float8_e4m3fn))


def fp8_channel(w: F32, *, scale_suffix: str = ".weight_scale", scale_dtype: str = "BF16",
                column: bool = True) -> Quantized:
    """One scale per output row: ``absmax(row) / 448``; ``[out, 1]`` or ``[out]``."""
    amax = np.abs(w).max(axis=-1, keepdims=True)
    s = np.where(amax > 0, amax / E4M3_MAX, 1.0).astype(np.float32)
    codes = e4m3_codes(w / s)
    scale = s if column else s[..., 0]
    return Quantized(codes, (1, w.shape[-1]), 0, 0x7E, 0xFE,
                     {scale_suffix: _scale_array(scale, scale_dtype)},
                     _weight(".weight", "F8_E4M3", ml_dtypes.float8_e4m3fn))


def mx(w: F32, elem: str, *, group: int = 32, scale_suffix: str = ".weight_scale",
       scale_dtype: str = "U8", weight_suffix: str = ".weight", container: str = "U8",
       blocks: bool = False, ceil: bool = False) -> Quantized:
    """MX: per ``group`` inputs a shared power-of-two scale stored as E8M0 (bias
    127). The OCP definition (compressed-tensors) takes ``floor(log2(absmax)) -
    emax`` (emax 2 for E2M1, 8 for E4M3), so values in [max, 2 * 2**emax) saturate;
    ``ceil`` takes ``ceil(log2(absmax / max))`` (ModelOpt MXFP8), which never does.
    FP4 codes are packed two per byte, low nibble first; ``blocks`` stores them as
    gpt-oss does, ``[..., in/32, 16]``."""
    emax, vmax = (2, E2M1_MAX) if elem == "E2M1" else (8, E4M3_MAX)
    amax, _ = _blocks(w, 1, group)
    safe = np.maximum(amax, 1e-38)
    raw = np.ceil(np.log2(safe / vmax)) if ceil else np.floor(np.log2(safe)) - emax
    exp = np.where(amax > 0, raw, -127)
    exp = exp.clip(-127, 127).astype(np.int32)
    scale = np.ldexp(np.float32(1), exp).astype(np.float32)
    x = w / _expand(scale, 1, group, w.shape)
    codes = e2m1_codes(x) if elem == "E2M1" else e4m3_codes(x)
    exps = (exp + 127).astype(np.uint8)
    sarr: Stored = ((scale_dtype, exps.view(ml_dtypes.float8_e8m0fnu)) if scale_dtype == "F8_E8M0"
                    else (scale_dtype, exps))

    def pack(c: np.ndarray) -> dict[str, Stored]:
        if elem != "E2M1":
            return {weight_suffix: ("F8_E4M3", c.view(ml_dtypes.float8_e4m3fn))}
        p = pack_nibbles(c)
        if blocks:
            p = p.reshape(*p.shape[:-1], p.shape[-1] // (group // 2), group // 2)
        return {weight_suffix: (container, p.view(np.int8) if container == "I8" else p)}

    pos, neg = (0x7, 0xF) if elem == "E2M1" else (0x7E, 0xFE)
    return Quantized(codes, (1, group), 0, pos, neg, {scale_suffix: sarr}, pack)


def nvfp4(w: F32, *, group: int = 16, convention: str = "modelopt",
          global_amax: float | None = None) -> Quantized:
    """NVFP4: a per-tensor F32 scale ``s2 = amax / (6 * 448)`` and per ``group``
    inputs an E4M3 scale ``absmax(group) / (6 * s2)``; elements are ``w / (scale *
    s2)`` in E2M1, packed two per byte, low nibble first. ModelOpt stores ``s2``
    as ``weight_scale_2``; compressed-tensors stores ``1 / s2`` as
    ``weight_global_scale`` (and names the packed weight ``weight_packed``).
    ``global_amax`` lets fused siblings share one ``s2``."""
    amax = float(np.abs(w).max()) if global_amax is None else global_amax
    s2 = np.float32(amax / (E2M1_MAX * E4M3_MAX) if amax > 0 else 1.0)
    gmax, _ = _blocks(w, 1, group)
    per = gmax / (E2M1_MAX * s2)
    per = np.where(per == 0, 1.0, per).clip(2.0 ** -9, E4M3_MAX)
    scodes = e4m3_codes(per)
    eff = e4m3_values(scodes) * s2
    codes = e2m1_codes(w / _expand(eff, 1, group, w.shape))
    if convention == "modelopt":
        suffix, comps = ".weight", {
            ".weight_scale": ("F8_E4M3", scodes.view(ml_dtypes.float8_e4m3fn)),
            ".weight_scale_2": ("F32", np.array(s2, np.float32))}
    else:
        suffix, comps = ".weight_packed", {
            ".weight_scale": ("F8_E4M3", scodes.view(ml_dtypes.float8_e4m3fn)),
            ".weight_global_scale": ("F32", np.array([1.0 / s2], np.float32))}
    return Quantized(codes, (1, group), 0, 0x7, 0xF, comps,
                     lambda c: {suffix: ("U8", pack_nibbles(c))}, {"s2": float(s2)})


def int_group(w: F32, bits: int, group: int, *, symmetric: bool = True
              ) -> tuple[np.ndarray, F32, np.ndarray]:
    """Integer quantization per ``group`` inputs, compressed-tensors style:
    symmetric ``scale = absmax / ((2**bits - 1) / 2)``, ``q = round(w / scale)``
    clamped to [-2**(bits-1), 2**(bits-1) - 1]; asymmetric ``scale = (max - min) /
    (2**bits - 1)``, ``zp = qmin - min / scale``. Returns (q int8, scale, zp int8)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    *lead, out, inp = w.shape
    g = group if group > 0 else inp
    ng = -(-inp // g)
    pad = np.zeros((*lead, out, ng * g), np.float32)
    pad[..., :inp] = w
    blocks = pad.reshape(*lead, out, ng, g)
    lo = np.minimum(blocks.min(axis=-1), 0)
    hi = np.maximum(blocks.max(axis=-1), 0)
    if symmetric:
        scale = np.maximum(np.abs(lo), np.abs(hi)) / ((qmax - qmin) / 2)
        zp = np.zeros_like(scale)
    else:
        scale = (hi - lo) / (qmax - qmin)
        zp = np.round(qmin - lo / np.where(scale == 0, 1, scale)).clip(qmin, qmax)
    scale = np.where(scale == 0, np.finfo(np.float32).eps, scale).astype(np.float32)
    q = np.round(blocks / scale[..., None] + zp[..., None]).clip(qmin, qmax)
    q = q.reshape(*lead, out, ng * g)[..., :inp].astype(np.int8)
    return q, scale, zp.astype(np.int8)
