"""Small checkpoints with real data, for the demo, tests and benchmarks.

Pure numpy + orjson (no ml_dtypes, no safetensors, no torch), so that
``ckptscan demo`` works with the package's own dependencies only.

- :func:`encode_e4m3fn` / :func:`decode_e4m3fn`: float32 <-> FP8 e4m3fn codes
  (safetensors ``F8_E4M3``), round to nearest even.
- :func:`bf16_from_f32` / :func:`f32_from_bf16`: float32 <-> bfloat16 bits, RNE.
- :func:`quantize_blockwise`: DeepSeek-V3-style 128x128 block quantization with
  absmax scaling, ``w ~= decode(codes) * scale_inv[i // br, j // bc]``.
- :func:`write_safetensors`: a small pure-Python safetensors writer.
- :func:`write_small_minimax`: a MiniMax-M2-shaped FP8 checkpoint with real
  random weights and optional planted defects.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from .replica import DTYPE_BITS, INDEX_NAME, Entry, assign_even, writer_order

__all__ = [
    "E4M3_MAX",
    "PLANTS",
    "SENTINEL_SCALE",
    "bf16_from_f32",
    "decode_e4m3fn",
    "encode_e4m3fn",
    "f32_from_bf16",
    "quantize_blockwise",
    "write_safetensors",
    "write_small_minimax",
]

E4M3_MAX = 448.0
#: what vLLM pre-fills unloaded scales with; in a file it means a broken export
SENTINEL_SCALE = np.float32(-3.4028235e38)


# --------------------------------------------------------------------------- FP8 e4m3fn


def _e4m3_table() -> np.ndarray:
    t = np.empty(256, np.float32)
    for c in range(256):
        s = -1.0 if c & 0x80 else 1.0
        e = (c >> 3) & 0xF
        m = c & 7
        if e == 0xF and m == 7:
            t[c] = np.nan
        elif e == 0:
            t[c] = s * m * 2.0**-9
        else:
            t[c] = s * (1 + m / 8) * 2.0 ** (e - 7)
    return t


_E4M3 = _e4m3_table()


def decode_e4m3fn(codes: np.ndarray) -> np.ndarray:
    """float32 values of e4m3fn codes (uint8); 0x7F and 0xFF decode to NaN."""
    return _E4M3[np.asarray(codes, dtype=np.uint8)]


def encode_e4m3fn(x: np.ndarray, *, saturate: bool = True) -> np.ndarray:
    """e4m3fn codes (uint8) of float32 values, rounding to nearest, ties to even.

    Values whose rounded magnitude is above 448 (0x7E), and +/-Inf:
    ``saturate=True`` (default, what quantizers do: they clamp before the cast)
    gives +/-448; ``saturate=False`` gives NaN with the input's sign (0x7F/0xFF),
    like a plain cast in torch and ml_dtypes. NaN always gives 0x7F, or 0xFF when
    its sign bit is set. -0.0 gives 0x80.
    """
    x = np.asarray(x, dtype=np.float32)
    bits = x.view(np.uint32)
    sign = ((bits >> 24) & 0x80).astype(np.uint8)
    mag = bits & np.uint32(0x7FFFFFFF)
    a = mag.view(np.float32)
    # normals: round the float32 mantissa to 3 bits (RNE) in integer space
    lsb = (mag >> 20) & np.uint32(1)
    r = (mag + np.uint32(0x7FFFF) + lsb) >> 20  # (exp32 << 3) | m3, may carry
    normal = r.astype(np.int64) - ((127 - 7) << 3)
    # subnormals (|x| < 2^-6): multiples of 2^-9, np.rint is ties-to-even
    small = a < np.float32(2.0**-6)  # False for NaN
    sub = np.rint(np.where(small, a, 0).astype(np.float64) * 512.0).astype(np.int64)
    code = np.where(small, sub, normal)
    over = (code > 0x7E) | np.isinf(a)
    code = np.where(over, 0x7E if saturate else 0x7F, code)
    code = np.where(np.isnan(a), 0x7F, code)
    return (code.astype(np.uint8) | sign).reshape(x.shape)


# --------------------------------------------------------------------------- bfloat16


def bf16_from_f32(x: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of float32 values, round to nearest even;
    overflow rounds to Inf; NaN stays NaN (quiet bit set, sign kept)."""
    x = np.asarray(x, dtype=np.float32)
    b = x.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = ((b >> 16) | 0x40).astype(np.uint16)
    return np.where(np.isnan(x), nan, r)


def f32_from_bf16(h: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (np.asarray(h, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


# --------------------------------------------------------------------------- block quantization


def quantize_blockwise(w: np.ndarray, block: tuple[int, int] = (128, 128), *,
                       zero_block_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Quantize a 2-D float32 weight per (br, bc) block with absmax scaling.

    Returns ``(codes uint8[R, C], scale_inv float32[ceil(R/br), ceil(C/bc)])`` with
    ``scale_inv = absmax(block) / 448`` and ``codes = e4m3fn(w / scale_inv)``
    (saturating), so ``w ~= decode(codes) * scale_inv[i // br, j // bc]``. Edge
    blocks are the partial blocks (as if zero-padded: padding does not change an
    absmax). An all-zero block gets ``zero_block_scale`` (1.0; its codes are all
    0 whatever the scale; exporters that divide by the absmax without a floor
    would write NaN/Inf there instead).
    """
    w = np.asarray(w, dtype=np.float32)
    R, C = w.shape
    br, bc = block
    nr, nc = -(-R // br), -(-C // bc)
    pad = np.zeros((nr * br, nc * bc), np.float32)
    pad[:R, :C] = w
    absmax = np.abs(pad.reshape(nr, br, nc, bc)).max(axis=(1, 3))
    scale = (absmax / np.float32(E4M3_MAX)).astype(np.float32)
    scale[absmax == 0] = np.float32(zero_block_scale)
    full = np.repeat(np.repeat(scale, br, axis=0), bc, axis=1)[:R, :C]
    codes = encode_e4m3fn(w / full, saturate=True)
    return codes, scale


def dequantize_blockwise(codes: np.ndarray, scale_inv: np.ndarray,
                         block: tuple[int, int] = (128, 128)) -> np.ndarray:
    """float32 ``decode(codes) * scale_inv[i // br, j // bc]``."""
    R, C = codes.shape
    full = np.repeat(np.repeat(scale_inv, block[0], axis=0), block[1], axis=1)[:R, :C]
    out: np.ndarray = decode_e4m3fn(codes) * full
    return out


# --------------------------------------------------------------------------- safetensors writer

TensorData = tuple[str, tuple[int, ...] | list[int], Any]


def _as_bytes(data: Any) -> memoryview:
    if isinstance(data, np.ndarray | np.generic):  # any dtype, ml_dtypes ones too
        flat = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        return memoryview(flat)  # type: ignore[arg-type]
    return memoryview(data).cast("B")


def write_safetensors(path: str | os.PathLike[str], tensors: Mapping[str, TensorData],
                      metadata: Mapping[str, str] | None = None, *,
                      order: str = "insertion") -> Path:
    """Write a safetensors file: ``tensors`` maps name -> (dtype string, shape,
    bytes-like or numpy array). Offsets are contiguous in insertion order
    (``order="writer"``: the safetensors writer's order, dtype then name). The
    header is compact JSON padded with spaces to a multiple of 8. Checks each
    buffer's length against dtype and shape."""
    items = [(n, d, tuple(int(v) for v in s), _as_bytes(b)) for n, (d, s, b) in tensors.items()]
    if order == "writer":
        ents = writer_order(Entry(n, d, s) for n, d, s, _ in items)
        rank = {e.name: i for i, e in enumerate(ents)}
        items.sort(key=lambda t: rank[t[0]])
    elif order != "insertion":
        raise ValueError(f"order must be 'insertion' or 'writer', not {order!r}")
    h: dict[str, Any] = {}
    if metadata is not None:
        h["__metadata__"] = dict(metadata)
    off = 0
    for n, d, s, b in items:
        want = math.prod(s) * DTYPE_BITS[d] // 8
        if b.nbytes != want:
            raise ValueError(f"{n}: {b.nbytes} bytes given, {d}{list(s)} needs {want}")
        h[n] = {"dtype": d, "shape": list(s), "data_offsets": [off, off + want]}
        off += want
    js = orjson.dumps(h)
    js += b" " * (-len(js) % 8)
    p = Path(path)
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(js)))
        f.write(js)
        for _, _, _, b in items:
            f.write(b)
    return p


# --------------------------------------------------------------------------- small MiniMax-M2

#: defects write_small_minimax can plant, each in its own tensor
PLANTS = (
    "nan_code", "sentinel_scale", "zero_scale", "bf16_nan", "dropped_scale",
    "scale_shape", "stale_scale", "all_zero_block",
)


def write_small_minimax(dest: str | os.PathLike[str], *, layers: int = 2, experts: int = 4,
                        hidden: int = 320, inter: int = 192, heads: int = 4, kv_heads: int = 2,
                        head_dim: int = 48, vocab: int = 1000, block: tuple[int, int] = (128, 128),
                        seed: int = 0, plant: str | Iterable[str] | None = None,
                        shards: int = 2) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Write a small MiniMax-M2-shaped FP8 checkpoint with real data to ``dest``.

    Same tensor names, dtypes and roles as MiniMax-M2 (FP8 attention and expert
    weights with F32 ``weight_scale_inv`` per 128x128 block, BF16 norms, F32
    router and e_score_correction_bias, BF16 embed_tokens / norm / lm_head), with
    dimensions that are not multiples of 128 by default (320, 192), weights drawn
    from N(0, 0.02) and quantized with :func:`quantize_blockwise`. Shards are named
    zero-based like MiniMax-M2 (``model-00000-of-0000N.safetensors``), headers in
    the safetensors writer's order; plus index.json and config.json.

    ``plant`` names defects from :data:`PLANTS` (or ``"all"``). Returns
    ``(dest, planted)`` where ``planted[defect] = {"tensor": name, "file": shard
    file name (None if the tensor was dropped), "detail": {...}}``.
    """
    want: set[str]
    if plant is None:
        want = set()
    elif isinstance(plant, str):
        want = set(PLANTS) if plant == "all" else {plant}
    else:
        want = set(plant)
    unknown = want - set(PLANTS)
    if unknown:
        raise ValueError(f"unknown defects {sorted(unknown)}; known: {PLANTS}")
    if layers < 2 or experts < 4:
        raise ValueError("need layers >= 2 and experts >= 4 to plant defects apart")

    rng = np.random.default_rng(seed)
    H, FF, E = hidden, inter, experts
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    tensors: dict[str, TensorData] = {}
    planted: dict[str, dict[str, Any]] = {}

    def normal(*shape: int, std: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    def bf16(name: str, arr: np.ndarray) -> None:
        tensors[name] = ("BF16", arr.shape, bf16_from_f32(arr))

    def fp8(name: str, rows: int, cols: int) -> None:
        codes, scale = quantize_blockwise(normal(rows, cols), block)
        tensors[f"{name}.weight"] = ("F8_E4M3", codes.shape, codes)
        tensors[f"{name}.weight_scale_inv"] = ("F32", scale.shape, scale)

    bf16("model.embed_tokens.weight", normal(vocab, H))
    for li in range(layers):
        p = f"model.layers.{li}"
        fp8(f"{p}.self_attn.q_proj", q_dim, H)
        fp8(f"{p}.self_attn.k_proj", kv_dim, H)
        fp8(f"{p}.self_attn.v_proj", kv_dim, H)
        fp8(f"{p}.self_attn.o_proj", H, q_dim)
        bf16(f"{p}.self_attn.q_norm.weight", 1 + normal(q_dim, std=0.1))
        bf16(f"{p}.self_attn.k_norm.weight", 1 + normal(kv_dim, std=0.1))
        bf16(f"{p}.input_layernorm.weight", 1 + normal(H, std=0.1))
        bf16(f"{p}.post_attention_layernorm.weight", 1 + normal(H, std=0.1))
        g = normal(E, H)
        tensors[f"{p}.block_sparse_moe.gate.weight"] = ("F32", g.shape, g)
        b = normal(E, std=0.5)
        tensors[f"{p}.block_sparse_moe.e_score_correction_bias"] = ("F32", b.shape, b)
        for e in range(E):
            fp8(f"{p}.block_sparse_moe.experts.{e}.w1", FF, H)
            fp8(f"{p}.block_sparse_moe.experts.{e}.w3", FF, H)
        for e in range(E):
            fp8(f"{p}.block_sparse_moe.experts.{e}.w2", H, FF)
    bf16("model.norm.weight", 1 + normal(H, std=0.1))
    bf16("lm_head.weight", normal(vocab, H))

    def arr(name: str) -> np.ndarray:
        return tensors[name][2]  # type: ignore[no-any-return]

    ex = "model.layers.{}.block_sparse_moe.experts.{}.{}"
    if "nan_code" in want:
        n = ex.format(1, 2, "w3") + ".weight"
        arr(n)[5, 7] = 0x7F
        planted["nan_code"] = {"tensor": n, "detail": {"index": [5, 7], "code": 0x7F}}
    if "sentinel_scale" in want:
        n = ex.format(0, 1, "w2") + ".weight_scale_inv"
        arr(n)[1, 0] = SENTINEL_SCALE
        planted["sentinel_scale"] = {"tensor": n, "detail": {"block": [1, 0],
                                                             "value": float(SENTINEL_SCALE)}}
    if "zero_scale" in want:
        n = ex.format(1, 0, "w1") + ".weight_scale_inv"
        arr(n)[0, 2] = 0.0
        planted["zero_scale"] = {"tensor": n, "detail": {"block": [0, 2], "value": 0.0}}
    if "bf16_nan" in want:
        n = "model.layers.1.post_attention_layernorm.weight"
        arr(n)[3] = 0x7FC0
        planted["bf16_nan"] = {"tensor": n, "detail": {"index": [3]}}
    if "dropped_scale" in want:
        w = ex.format(1, 3, "w1") + ".weight"
        n = w + "_scale_inv"
        del tensors[n]
        planted["dropped_scale"] = {"tensor": n, "detail": {"weight": w}}
    if "scale_shape" in want:
        n = "model.layers.0.self_attn.o_proj.weight_scale_inv"
        s = arr(n)
        wrong = (H // block[0], q_dim // block[1])  # floor instead of ceil
        if wrong == s.shape:
            wrong = (s.shape[0] + 1, s.shape[1])
        fixed = np.zeros(wrong, np.float32)
        rr, cc = min(wrong[0], s.shape[0]), min(wrong[1], s.shape[1])
        fixed[:rr, :cc] = s[:rr, :cc]
        fixed[fixed == 0] = s.max()
        tensors[n] = ("F32", wrong, fixed)
        planted["scale_shape"] = {"tensor": n, "detail": {"shape": list(wrong),
                                                          "expected": list(s.shape)}}
    if "stale_scale" in want:
        # block (0, 1) of one expert's w3 re-quantized with 64x its absmax scale:
        # dequantization stays close, but its largest code is ~7.0 (0x3F), not 448
        n = ex.format(0, 2, "w3")
        s = arr(n + ".weight_scale_inv")
        codes = arr(n + ".weight")
        br, bc = block
        sl = (slice(0, br), slice(bc, 2 * bc))
        w_blk = decode_e4m3fn(codes[sl]) * s[0, 1]
        s[0, 1] *= np.float32(64)
        codes[sl] = encode_e4m3fn(w_blk / s[0, 1])
        planted["stale_scale"] = {"tensor": n + ".weight_scale_inv",
                                  "detail": {"block": [0, 1], "factor": 64,
                                             "weight": n + ".weight",
                                             "max_code": int((codes[sl] & 0x7F).max())}}
    if "all_zero_block" in want:
        n = ex.format(1, 1, "w2")
        codes = arr(n + ".weight")
        br, bc = block
        r0 = br  # block (1, 0); H rows: block row 1 exists since H > 128
        codes[r0:r0 + br, 0:bc] = 0
        arr(n + ".weight_scale_inv")[1, 0] = np.float32(1.0)
        planted["all_zero_block"] = {"tensor": n + ".weight",
                                     "detail": {"block": [1, 0], "scale_inv": 1.0}}

    # shards: state order, HF greedy split into `shards` equal parts
    names = list(tensors)
    nbytes = [math.prod(tensors[n][1]) * DTYPE_BITS[tensors[n][0]] // 8 for n in names]
    shard_of = assign_even(nbytes, shards)
    shard_names = [f"model-{k:05d}-of-{shards:05d}.safetensors" for k in range(shards)]
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    for k, sname in enumerate(shard_names):
        part = {n: tensors[n] for n, sk in zip(names, shard_of, strict=True) if sk == k}
        write_safetensors(d / sname, part, {"format": "pt"}, order="writer")
        weight_map.update(dict.fromkeys(part, sname))
    total = sum(nbytes)
    (d / INDEX_NAME).write_bytes(orjson.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map},
        option=orjson.OPT_INDENT_2))
    config = {
        "architectures": ["MiniMaxM2ForCausalLM"],
        "model_type": "minimax_m2",
        "num_hidden_layers": layers,
        "hidden_size": H,
        "intermediate_size": FF,
        "num_local_experts": E,
        "num_experts_per_tok": min(2, E),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "vocab_size": vocab,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "num_mtp_modules": 0,
        "use_mtp": False,
        "quantization_config": {
            "quant_method": "fp8",
            "fmt": "float8_e4m3fn",
            "activation_scheme": "dynamic",
            "weight_block_size": list(block),
            "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"],
        },
    }
    (d / "config.json").write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))
    for rec in planted.values():
        rec["file"] = weight_map.get(rec["tensor"])
    return d, planted
