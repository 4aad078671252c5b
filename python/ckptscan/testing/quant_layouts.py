"""Tiny checkpoints in the layouts real quantization producers write.

``write(scheme, dest, plant=(), seed=0, shards=1, **options) -> Written``
writes, with the real ``safetensors`` library, a small model of real structure
(names, dtypes, shapes, config.json / hf_quant_config.json as the producer
writes them) whose quantized data and scales come from random weights through
the quantizers of :mod:`ckptscan.testing.quantizers`. Clean by default;
``plant`` names faults from :data:`FAULTS` (each writer supports the ones in
``SCHEMES[scheme].faults``). :class:`Written` says what was written: the
tensors, the logical parameter count (from the shapes the writer quantized,
not from any scheme declaration), the modules it quantized and where each
fault sits.

Producer sources, one per writer, are in ``SCHEMES[scheme].source`` and at
each writer below.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

from . import quantizers as Q
from .quantizers import Quantized, Stored

FAULTS = (
    "missing_companion",     # a required companion of a quantized weight is gone
    "orphan_companion",      # companions whose weight is gone
    "companion_shape",       # a companion of the wrong shape
    "companion_dtype",       # a companion of a dtype the producer never writes
    "mixed_conventions",     # one weight's scale named after the other convention
    "exclusion_unmatched",   # an exclusion entry that matches no module
    "exclusion_prefix",      # an exclusion entry written with a wrapper prefix
    "quantized_excluded",    # a module quantized although the exclusion list names it
    "unquantized_targeted",  # a targeted module left in BF16
    "fused_scale_mismatch",  # q/k/v (or gate/up) whose global / input scales differ
    "scale_nan_e4m3",        # 0x7F / 0xFF in an E4M3 scale tensor
    "e8m0_nan",              # 0xFF in an E8M0 scale tensor
    "negative_input_scale",  # an input_scale below zero
    "zero_point_range",      # a zero point outside the integer range
    "zero_block",            # a block of zero codes under a nonzero scale
    "clipping_block",        # 30% of one block's codes at +-max
    "all_zero_tensor",       # a weight whose codes are all zero
)
DATA_FAULTS = ("zero_block", "clipping_block", "all_zero_tensor", "scale_nan_e4m3", "e8m0_nan",
               "zero_point_range")
CLIP_SHARE = 0.3

Quantizer = Callable[[np.ndarray, float], Quantized]


@dataclass
class Plant:
    """Where a fault was planted: ``tensor`` (its name), ``file`` (shard file, None
    when the tensor was removed), ``detail`` (block index, values, config entry)."""

    fault: str
    tensor: str | None
    file: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Written:
    """What :func:`write` wrote. ``tensors``: name -> (dtype, shape);
    ``parameters``: logical weights (quantized ones counted unpacked, from the
    shapes the writer quantized); ``quantized``: stem -> the weight's logical
    shape; ``high_precision``: stems of linears stored unquantized."""

    path: Path
    scheme: str
    config: dict[str, Any]
    hf_quant_config: dict[str, Any] | None
    tensors: dict[str, tuple[str, tuple[int, ...]]]
    parameters: int
    quantized: dict[str, tuple[int, ...]]
    high_precision: list[str]
    planted: dict[str, Plant]
    source: str
    options: dict[str, Any] = field(default_factory=dict)
    modules: dict[str, str] = field(default_factory=dict)  # stem -> module
    originals: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


@dataclass
class _Linear:
    stem: str
    shape: tuple[int, ...]
    quantizer: Quantizer | None
    plain_suffix: str = ".weight"
    fused: str | None = None
    input_scale: tuple[str, str, tuple[int, ...], str] | None = None  # suffix, dtype, shape, kind
    quantized: Quantized | None = None

    @property
    def module(self) -> str:
        """The module: the stem, or for a parameter of its own (``experts.gate_up_proj``)
        the stem's parent."""
        return self.stem.rpartition(".")[0] if self.plain_suffix == "" else self.stem


@dataclass
class _Spec:
    """What a scheme writer tells the common code about its producer."""

    config: dict[str, Any]
    hf_quant_config: dict[str, Any] | None = None
    exclusions: list[list[str]] = field(default_factory=list)  # the list(s) to edit
    unmatched_entry: str = ""
    entry_for: Callable[[str], str] = str  # stem -> an entry naming its module
    mixed: tuple[str, str, Callable[[np.ndarray], np.ndarray]] | None = None
    fused: tuple[str, ...] = ()  # companion suffixes fused siblings share


def _fused_key(stem: str) -> str | None:
    head, _, last = stem.rpartition(".")
    for fused, members in (("qkv", ("q_proj", "k_proj", "v_proj")),
                           ("gate_up", ("gate_proj", "up_proj")), ("w13", ("w1", "w3"))):
        if last in members:
            return f"{head}.{fused}"
    return None


class _Builder:
    """Collects a model's tensors; quantization is deferred to :meth:`finish` so
    faults can change what gets quantized."""

    def __init__(self, seed: int, faults: set[str]) -> None:
        self.rng = np.random.default_rng(seed)
        self.faults = faults
        self.tensors: dict[str, Stored] = {}
        self.linears: list[_Linear] = []
        self.parameters = 0
        self.planted: dict[str, Plant] = {}
        self.high: list[_Linear] = []
        self.originals: dict[str, np.ndarray] = {}

    def normal(self, *shape: int, std: float = 0.02) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def plain(self, name: str, arr: np.ndarray, dtype: str = "BF16", param: bool = True) -> None:
        if param:
            self.parameters += int(arr.size)
        self.tensors[name] = _as(dtype, arr)

    def norm(self, name: str, n: int) -> None:
        self.plain(name, 1 + self.normal(n, std=0.1))

    def linear(self, stem: str, out: int, inp: int, quantizer: Quantizer | None, *,
               lead: tuple[int, ...] = (), plain_suffix: str = ".weight",
               input_scale: tuple[str, str, tuple[int, ...], str] | None = None) -> None:
        self.linears.append(_Linear(stem, (*lead, out, inp), quantizer, plain_suffix,
                                    _fused_key(stem), input_scale))

    def victims(self, prefer: Iterable[str]) -> list[_Linear]:
        """Quantized linears, those whose stem contains a preferred part first."""
        q = [lin for lin in self.linears if lin.quantizer is not None]
        order = list(prefer)

        def rank(lin: _Linear) -> tuple[int, str]:
            hits = [i for i, p in enumerate(order) if p in lin.stem]
            return (hits[0] if hits else len(order), lin.stem)

        return sorted(q, key=rank)


def _as(dtype: str, arr: np.ndarray) -> Stored:
    """A float array in a safetensors dtype."""
    a = np.asarray(arr)
    if dtype == "BF16":
        return dtype, a.astype(np.float32).astype(ml_dtypes.bfloat16)
    if dtype == "F16":
        return dtype, a.astype(np.float16)
    if dtype == "F32":
        return dtype, a.astype(np.float32)
    if dtype == "F64":
        return dtype, a.astype(np.float64)
    raise ValueError(dtype)


def _values(stored: Stored) -> np.ndarray:
    """Float values of a stored scale (for re-encoding it in another dtype)."""
    dtype, arr = stored
    if dtype in ("BF16", "F16", "F32", "F64"):
        return np.asarray(arr, np.float32)
    if dtype == "F8_E4M3":
        return Q.e4m3_values(arr.view(np.uint8))
    if dtype in ("F8_E8M0", "U8"):
        return Q.e8m0_values(arr.view(np.uint8))
    return np.asarray(arr).astype(np.float32)


def _wrong_dtype(stored: Stored) -> Stored:
    """The same values in a dtype no producer writes for this companion."""
    dtype, arr = stored
    if dtype in ("BF16", "F16", "F32"):
        return "F64", _values(stored).astype(np.float64)
    if dtype == "F8_E4M3":
        return "BF16", Q.to_bf16(_values(stored))
    if dtype in ("U8", "F8_E8M0"):
        return "I16", arr.view(np.uint8).astype(np.int16)
    return "F32", np.asarray(arr).astype(np.float32)


def _wrong_shape(stored: Stored) -> Stored:
    """One column fewer (a floor instead of a ceil), or one row more."""
    dtype, arr = stored
    a = np.asarray(arr)
    if a.ndim >= 2 and a.shape[-1] > 1:
        return dtype, np.ascontiguousarray(a[..., :-1])
    if a.ndim == 0:
        return dtype, np.ascontiguousarray(np.stack([a, a]))
    return dtype, np.ascontiguousarray(np.concatenate([a, a[:1]], axis=0))


def _act_amax(rng: np.random.Generator) -> float:
    return float(2.0 + rng.random() * 6.0)


def _input_scale(kind: str, amax: float) -> float:
    return {"fp8": amax / Q.E4M3_MAX, "nvfp4": amax / (Q.E2M1_MAX * Q.E4M3_MAX),
            "ct_global": Q.E2M1_MAX * Q.E4M3_MAX / amax}[kind]


def _take(it: Iterator[_Linear], fault: str) -> _Linear:
    lin = next(it, None)
    if lin is None:
        raise ValueError(f"too few quantized weights to plant {fault!r} apart from the other "
                         "faults: plant fewer at once or write more layers")
    return lin


def _finish(b: _Builder, spec: _Spec, faults: set[str], prefer: tuple[str, ...]) -> None:
    """Quantize every linear, planting the faults that change what is stored."""
    victims = iter(b.victims(prefer))
    if "unquantized_targeted" in faults:
        lin = _take(victims, "unquantized_targeted")
        lin.quantizer = None
        b.planted["unquantized_targeted"] = Plant("unquantized_targeted",
                                                  lin.stem + lin.plain_suffix, detail={
                                                      "module": lin.module, "stem": lin.stem})
    if "exclusion_prefix" in faults:
        lin = _take(victims, "exclusion_prefix")
        lin.quantizer = None
        entry = "model.language_model." + lin.module.removeprefix("model.")
        for lst in spec.exclusions:
            lst.append(entry)
        b.planted["exclusion_prefix"] = Plant("exclusion_prefix", lin.stem + lin.plain_suffix,
                                              detail={"entry": entry, "module": lin.module,
                                                      "stem": lin.stem})
    # fused siblings share one global amax and one activation amax, as producers make them
    weights = {lin.stem: b.normal(*lin.shape) for lin in b.linears}
    b.originals = weights
    high = b.high
    amax: dict[str, float] = {}
    act: dict[str, float] = {}
    for lin in b.linears:
        key = lin.fused or lin.stem
        amax[key] = max(amax.get(key, 0.0), float(np.abs(weights[lin.stem]).max()))
        act.setdefault(key, _act_amax(b.rng))
    mismatch = None
    if "fused_scale_mismatch" in faults:
        mismatch = next(lin for lin in b.linears if lin.quantizer is not None
                        and lin.stem.endswith(("k_proj", "up_proj", "w3")))
    for lin in b.linears:
        w = weights[lin.stem]
        b.parameters += int(w.size)
        if lin.quantizer is None:
            high.append(lin)
            b.tensors[lin.stem + lin.plain_suffix] = _as("BF16", w)
            continue
        key = lin.fused or lin.stem
        own = lin is mismatch
        g = amax[key]
        if own:  # quantized on its own: its amax, or a smaller one if it holds the group's
            g = min(float(np.abs(w).max()), 0.75 * g)
        lin.quantized = lin.quantizer(w, g)
        if lin.input_scale is not None:
            suffix, dtype, shape, kind = lin.input_scale
            a = act[key] * (1.5 if own else 1.0)
            lin.quantized.scales[suffix] = _as(dtype, np.full(shape, _input_scale(kind, a)))
    if mismatch is not None:
        b.planted["fused_scale_mismatch"] = Plant(
            "fused_scale_mismatch", mismatch.stem + spec.fused[0] if spec.fused else mismatch.stem,
            detail={"module": mismatch.module, "stem": mismatch.stem,
                    "companions": list(spec.fused)})
    _data_faults(b, faults, victims)


def _data_faults(b: _Builder, faults: set[str], victims: Iterator[_Linear]) -> None:
    for fault in DATA_FAULTS:
        if fault not in faults:
            continue
        lin = _take(victims, fault)
        q = lin.quantized
        assert q is not None
        codes = q.codes
        r, c = q.region
        block: tuple[int | slice, ...] = (0,) * (codes.ndim - 2) + (slice(0, r), slice(0, c))
        if fault == "zero_block":
            codes[block] = q.zero
            b.planted[fault] = Plant(fault, None, detail={"module": lin.module, "stem": lin.stem,
                                                          "block": [0, 0], "region": [r, c]})
        elif fault == "clipping_block":
            blk = codes[block]
            n = math.ceil(CLIP_SHARE * blk.size)
            pos = b.rng.choice(blk.size, n, replace=False)
            flat = blk.reshape(-1)
            flat[pos] = np.where(b.rng.random(n) < 0.5, q.pos_max, q.neg_max).astype(flat.dtype)
            codes[block] = flat.reshape(blk.shape)
            b.planted[fault] = Plant(fault, None, detail={"module": lin.module, "stem": lin.stem,
                                                          "block": [0, 0], "region": [r, c],
                                                          "share": n / blk.size})
        elif fault == "all_zero_tensor":
            zp = q.notes.get("zero_points")
            if isinstance(zp, np.ndarray):  # asymmetric: each group's zero point codes zero
                codes[...] = np.repeat(zp, c, axis=-1)[..., : codes.shape[-1]]
            else:
                codes[...] = q.zero
            b.planted[fault] = Plant(fault, None, detail={"module": lin.module, "stem": lin.stem})
        elif fault == "scale_nan_e4m3":
            suffix = next(s for s, (d, _) in q.scales.items() if d == "F8_E4M3")
            raw = q.scales[suffix][1].view(np.uint8).reshape(-1)
            raw[0] = 0x7F
            if raw.size > 1:
                raw[1] = 0xFF
            b.planted[fault] = Plant(fault, lin.stem + suffix, detail={"codes": [0x7F, 0xFF]})
        elif fault == "e8m0_nan":
            suffix = next(s for s, (d, _) in q.scales.items() if d in ("F8_E8M0", "U8"))
            q.scales[suffix][1].view(np.uint8).reshape(-1)[0] = 0xFF
            b.planted[fault] = Plant(fault, lin.stem + suffix, detail={"index": 0, "code": 0xFF})
        elif fault == "zero_point_range":
            suffix = next(s for s in q.scales if s.endswith("zero_point"))
            dtype, zp = q.scales[suffix]
            if dtype != "I8":
                raise ValueError("zero_point_range needs unpacked I8 zero points")
            bits = int(str(q.notes.get("bits", 4)))
            zp.reshape(-1)[0] = 2 ** (bits - 1) + 4
            b.planted[fault] = Plant(fault, lin.stem + suffix,
                                     detail={"value": 2 ** (bits - 1) + 4, "bits": bits})
        if fault in ("zero_block", "clipping_block", "all_zero_tensor"):
            weight = next(iter(q.pack(q.codes)))
            b.planted[fault].tensor = lin.stem + weight


def _tensor_faults(b: _Builder, spec: _Spec, faults: set[str], prefer: tuple[str, ...]) -> None:
    """Faults in the stored tensors and the config."""
    taken = {p.detail.get("stem") for p in b.planted.values()}
    pool = iter([lin for lin in reversed(b.victims(prefer)) if lin.stem not in taken
                 and lin.quantized is not None])
    for fault in ("missing_companion", "orphan_companion", "companion_shape", "companion_dtype",
                  "mixed_conventions", "negative_input_scale"):
        if fault not in faults:
            continue
        lin = _take(pool, fault)
        if fault == "mixed_conventions":
            assert spec.mixed is not None
            while lin.stem + spec.mixed[0] not in b.tensors:
                lin = _take(pool, fault)
        q = lin.quantized
        assert q is not None
        weight = lin.stem + next(iter(q.pack(q.codes)))
        comp = next(iter(q.scales))
        name = lin.stem + comp
        if fault == "missing_companion":
            del b.tensors[name]
            b.planted[fault] = Plant(fault, name, detail={"weight": weight})
        elif fault == "orphan_companion":
            del b.tensors[weight]
            b.planted[fault] = Plant(fault, name, detail={"missing_weight": weight})
        elif fault == "companion_shape":
            before = tuple(b.tensors[name][1].shape)
            b.tensors[name] = _wrong_shape(b.tensors[name])
            b.planted[fault] = Plant(fault, name, detail={
                "shape": list(b.tensors[name][1].shape), "expected": list(before)})
        elif fault == "companion_dtype":
            was = b.tensors[name][0]
            b.tensors[name] = _wrong_dtype(b.tensors[name])
            b.planted[fault] = Plant(fault, name, detail={"dtype": b.tensors[name][0],
                                                          "expected": was})
        elif fault == "mixed_conventions":
            assert spec.mixed is not None
            old, new, reshape = spec.mixed
            dtype, arr = b.tensors.pop(lin.stem + old)
            b.tensors[lin.stem + new] = (dtype, np.ascontiguousarray(reshape(arr)))
            b.planted[fault] = Plant(fault, lin.stem + new, detail={"instead_of": old})
        elif fault == "negative_input_scale":
            suffix = next(s for s in q.scales if "input" in s or "activation" in s)
            dtype, arr = b.tensors[lin.stem + suffix]
            b.tensors[lin.stem + suffix] = (dtype, -arr)
            b.planted[fault] = Plant(fault, lin.stem + suffix, detail={
                "value": float(-_values((dtype, arr)).reshape(-1)[0])})
    if "exclusion_unmatched" in faults:
        for lst in spec.exclusions:
            lst.append(spec.unmatched_entry)
        b.planted["exclusion_unmatched"] = Plant("exclusion_unmatched", None,
                                                 detail={"entry": spec.unmatched_entry})
    if "quantized_excluded" in faults:
        lin = _take(pool, "quantized_excluded")
        entry = spec.entry_for(lin.stem)
        for lst in spec.exclusions:
            lst.append(entry)
        q = lin.quantized
        assert q is not None
        b.planted["quantized_excluded"] = Plant("quantized_excluded",
                                                lin.stem + next(iter(q.pack(q.codes))),
                                                detail={"entry": entry, "module": lin.module,
                                                        "stem": lin.stem})


def _shard_names(n: int) -> list[str]:
    return ["model.safetensors"] if n == 1 else [
        f"model-{k + 1:05d}-of-{n:05d}.safetensors" for k in range(n)]


def _save(dest: Path, tensors: dict[str, Stored], shards: int,
          metadata: dict[str, str] | None) -> dict[str, str]:
    """The tensors in ``shards`` files (even split by bytes, in name order) with
    the safetensors library, plus index.json when sharded. Returns name -> file."""
    dest.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    sizes = [int(tensors[n][1].nbytes) for n in names]
    total, files = sum(sizes), _shard_names(shards)
    where: dict[str, str] = {}
    acc = 0
    for n, size in zip(names, sizes, strict=True):
        k = min(shards - 1, acc * shards // max(total, 1))
        where[n] = files[k]
        acc += size
    for f in files:
        # np.require keeps 0-d arrays 0-d (ascontiguousarray would make them [1])
        part = {n: np.require(tensors[n][1], requirements="C") for n in names if where[n] == f}
        save_file(part, str(dest / f), metadata={"format": "pt", **(metadata or {})})
    if shards > 1:
        (dest / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {"total_size": total}, "weight_map": where}, indent=2))
    return where


# ---- model skeletons --------------------------------------------------------------------


@dataclass(frozen=True)
class Dims:
    hidden: int = 256
    inter: int = 512
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 64
    vocab: int = 512
    experts: int = 4


def _llama(b: _Builder, d: Dims, q: Callable[[str, int, int], Quantizer | None],
           input_scale: Callable[[str], tuple[str, str, tuple[int, ...], str] | None] = (
               lambda s: None),
           lm_head: bool = False, embedding: Quantizer | None = None) -> None:
    """Llama-style dense decoder (transformers names)."""
    if embedding is None:
        b.plain("model.embed_tokens.weight", b.normal(d.vocab, d.hidden))
    else:
        b.linear("model.embed_tokens", d.vocab, d.hidden, embedding)
    qd, kvd = d.heads * d.head_dim, d.kv_heads * d.head_dim
    for i in range(d.layers):
        p = f"model.layers.{i}"
        for proj, out, inp in (("q_proj", qd, d.hidden), ("k_proj", kvd, d.hidden),
                               ("v_proj", kvd, d.hidden), ("o_proj", d.hidden, qd)):
            stem = f"{p}.self_attn.{proj}"
            b.linear(stem, out, inp, q(stem, out, inp), input_scale=input_scale(stem))
        for proj, out, inp in (("gate_proj", d.inter, d.hidden), ("up_proj", d.inter, d.hidden),
                               ("down_proj", d.hidden, d.inter)):
            stem = f"{p}.mlp.{proj}"
            b.linear(stem, out, inp, q(stem, out, inp), input_scale=input_scale(stem))
        b.norm(f"{p}.input_layernorm.weight", d.hidden)
        b.norm(f"{p}.post_attention_layernorm.weight", d.hidden)
    b.norm("model.norm.weight", d.hidden)
    b.linear("lm_head", d.vocab, d.hidden, q("lm_head", d.vocab, d.hidden) if lm_head else None)


def _llama_config(d: Dims, quant: dict[str, Any] | None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": d.hidden, "intermediate_size": d.inter, "num_hidden_layers": d.layers,
        "num_attention_heads": d.heads, "num_key_value_heads": d.kv_heads,
        "head_dim": d.head_dim, "vocab_size": d.vocab, "torch_dtype": "bfloat16",
        "tie_word_embeddings": False, **extra,
    }
    if quant is not None:
        cfg["quantization_config"] = quant
    return cfg


def _into_text_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """A multimodal wrapper's config: the language model's settings (and its
    quantization_config) under text_config."""
    q = cfg.pop("quantization_config", None)
    text = {k: cfg.pop(k) for k in list(cfg) if k not in ("architectures",)}
    text["quantization_config"] = q
    return {"architectures": cfg["architectures"], "model_type": "llava",
            "text_config": text}


# ---- HF fine-grained FP8 ------------------------------------------------------------------

HF_FP8_SOURCE = ("transformers integrations/finegrained_fp8.py (FP8Linear.weight_scale_inv, "
                 "FP8Experts.gate_up_proj_scale_inv); MiniMax-M2 / DeepSeek-V3 configs")


def _hf_fp8_quantizer(block: tuple[int, int] | None, pow2: bool, scale_dtype: str,
                      suffix: str = ".weight_scale_inv", weight: str = ".weight") -> Quantizer:
    def q(w: np.ndarray, _g: float) -> Quantized:
        if block is None:
            shape = w.shape[:-2] + ((1, 1) if w.ndim == 3 else ())
            return Q.fp8_tensor(w, scale_suffix=suffix, scale_dtype=scale_dtype,
                                scale_shape=shape)
        return Q.fp8_block(w, block, scale_suffix=suffix, scale_dtype=scale_dtype, pow2=pow2,
                           weight_suffix=weight)
    return q


def write_hf_fp8_block(b: _Builder, *, hidden: int = 320, inter: int = 192, layers: int = 2,
                       experts: int = 4, block: tuple[int, int] = (128, 128),
                       fmt: str = "float8_e4m3fn", scale_fmt: str | None = None,
                       scale_dtype: str = "F32") -> _Spec:
    """MiniMax-M2's layout: FP8 attention and w1/w2/w3 experts with F32
    weight_scale_inv per 128x128 block, BF16 norms / embeddings / lm_head, F32
    router and e_score_correction_bias; dims that are not multiples of 128."""
    pow2 = scale_fmt == "ue8m0"
    q = _hf_fp8_quantizer(block, pow2, scale_dtype)
    d = Dims(hidden=hidden, inter=inter, layers=layers, heads=4, kv_heads=2, head_dim=48,
             vocab=1000, experts=experts)
    b.plain("model.embed_tokens.weight", b.normal(d.vocab, d.hidden))
    qd, kvd = d.heads * d.head_dim, d.kv_heads * d.head_dim
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj, out, inp in (("q_proj", qd, hidden), ("k_proj", kvd, hidden),
                               ("v_proj", kvd, hidden), ("o_proj", hidden, qd)):
            b.linear(f"{p}.self_attn.{proj}", out, inp, q)
        b.norm(f"{p}.self_attn.q_norm.weight", qd)
        b.norm(f"{p}.self_attn.k_norm.weight", kvd)
        b.norm(f"{p}.input_layernorm.weight", hidden)
        b.norm(f"{p}.post_attention_layernorm.weight", hidden)
        b.plain(f"{p}.block_sparse_moe.gate.weight", b.normal(experts, hidden), "F32")
        b.plain(f"{p}.block_sparse_moe.e_score_correction_bias", b.normal(experts, std=0.5), "F32")
        for e in range(experts):
            ex = f"{p}.block_sparse_moe.experts.{e}"
            b.linear(f"{ex}.w1", inter, hidden, q)
            b.linear(f"{ex}.w3", inter, hidden, q)
            b.linear(f"{ex}.w2", hidden, inter, q)
    b.norm("model.norm.weight", hidden)
    b.plain("lm_head.weight", b.normal(d.vocab, hidden))
    ntc = ["gate", "e_score_correction_bias", "lm_head"]
    quant: dict[str, Any] = {"quant_method": "fp8", "fmt": fmt, "activation_scheme": "dynamic",
                             "weight_block_size": list(block), "modules_to_not_convert": ntc}
    if scale_fmt is not None:
        quant["scale_fmt"] = scale_fmt
    config = {"architectures": ["MiniMaxM2ForCausalLM"], "model_type": "minimax_m2",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
              "num_local_experts": experts, "num_attention_heads": d.heads,
              "num_key_value_heads": d.kv_heads, "head_dim": d.head_dim, "vocab_size": d.vocab,
              "torch_dtype": "bfloat16", "quantization_config": quant}
    return _Spec(config, exclusions=[ntc], unmatched_entry="model.layers.7.mlp",
                 entry_for=lambda s: s,
                 mixed=(".weight_scale_inv", ".weight_scale", lambda a: a))


def write_hf_fp8_tensor(b: _Builder, *, dims: Dims = Dims(), static: bool = False,
                        text_config: bool = False) -> _Spec:
    """Per-tensor FP8 (``weight_block_size: null``): a scalar weight_scale_inv per
    weight; ``static`` adds the activation_scale transformers reads."""
    q = _hf_fp8_quantizer(None, False, "F32")
    act = ((lambda s: (".activation_scale", "F32", (), "fp8")) if static else (lambda s: None))
    _llama(b, dims, lambda s, o, i: q, act)
    ntc = ["lm_head"]
    quant = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": None,
             "activation_scheme": "static" if static else "dynamic",
             "modules_to_not_convert": ntc}
    cfg = _llama_config(dims, quant)
    return _Spec(_into_text_config(cfg) if text_config else cfg, exclusions=[ntc],
                 unmatched_entry="model.layers.9.self_attn", entry_for=lambda s: s,
                 mixed=(".weight_scale_inv", ".weight_scale", lambda a: a),
                 fused=(".activation_scale",) if static else ())


def write_hf_fp8_fused(b: _Builder, *, hidden: int = 256, inter: int = 192, layers: int = 2,
                       experts: int = 4) -> _Spec:
    """Qwen3-MoE as transformers v5 saves FP8 fused experts: ``mlp.experts.gate_up_proj``
    F8_E4M3 [E, 2I, H] with ``gate_up_proj_scale_inv`` [E, ceil(2I/128), ceil(H/128)]."""
    d = Dims(hidden=hidden, inter=inter, layers=layers, heads=4, kv_heads=2, head_dim=64,
             vocab=512, experts=experts)
    q = _hf_fp8_quantizer((128, 128), False, "F32")
    qf = _hf_fp8_quantizer((128, 128), False, "F32", suffix="_scale_inv", weight="")
    b.plain("model.embed_tokens.weight", b.normal(d.vocab, hidden))
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj, out, inp in (("q_proj", 256, hidden), ("k_proj", 128, hidden),
                               ("v_proj", 128, hidden), ("o_proj", hidden, 256)):
            b.linear(f"{p}.self_attn.{proj}", out, inp, q)
        b.norm(f"{p}.self_attn.q_norm.weight", d.head_dim)
        b.norm(f"{p}.self_attn.k_norm.weight", d.head_dim)
        b.norm(f"{p}.input_layernorm.weight", hidden)
        b.norm(f"{p}.post_attention_layernorm.weight", hidden)
        b.plain(f"{p}.mlp.gate.weight", b.normal(experts, hidden))
        b.linear(f"{p}.mlp.experts.gate_up_proj", 2 * inter, hidden, qf, lead=(experts,),
                 plain_suffix="")
        b.linear(f"{p}.mlp.experts.down_proj", hidden, inter, qf, lead=(experts,),
                 plain_suffix="")
    b.norm("model.norm.weight", hidden)
    b.plain("lm_head.weight", b.normal(d.vocab, hidden))
    ntc = ["lm_head", "mlp.gate"]
    config = {"architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
              "hidden_size": hidden, "moe_intermediate_size": inter, "num_hidden_layers": layers,
              "num_experts": experts, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 64, "vocab_size": d.vocab, "torch_dtype": "bfloat16",
              "quantization_config": {"quant_method": "fp8", "fmt": "e4m3",
                                      "activation_scheme": "dynamic",
                                      "weight_block_size": [128, 128],
                                      "modules_to_not_convert": ntc}}
    return _Spec(config, exclusions=[ntc], unmatched_entry="mlp.shared_expert_gate",
                 entry_for=lambda s: s,
                 mixed=(".weight_scale_inv", ".weight_scale", lambda a: a))


# ---- DeepSeek-V4 ---------------------------------------------------------------------------

DSV4_SOURCE = ("DeepSeek-V4 inference/model.py Linear (weight + scale; FP4 experts "
               "float4_e2m1fn_x2 with float8_e8m0fnu scale per 32); huggingface.js expert_dtype")


def write_deepseek_v4(b: _Builder, *, hidden: int = 256, inter: int = 128, layers: int = 2,
                      experts: int = 4, expert_dtype: str = "fp4") -> _Spec:
    """DeepSeek-V4's own names: FP8 dense linears with an E8M0 ``.scale`` per
    128x128 tile; routed experts in FP4 (I8, two per byte) with an E8M0 ``.scale``
    per 32 inputs when ``expert_dtype`` is fp4."""
    dense = _hf_fp8_quantizer((128, 128), True, "F8_E8M0", suffix=".scale")

    def fp4(w: np.ndarray, _g: float) -> Quantized:
        return Q.mx(w, "E2M1", group=32, scale_suffix=".scale", scale_dtype="F8_E8M0",
                    container="I8", ceil=True)

    routed = fp4 if expert_dtype == "fp4" else dense
    vocab, qlora, heads, hd = 512, 128, 4, 64
    b.plain("embed.weight", b.normal(vocab, hidden))
    for i in range(layers):
        p = f"layers.{i}"
        b.linear(f"{p}.attn.wq_a", qlora, hidden, dense)
        b.norm(f"{p}.attn.q_norm.weight", qlora)
        b.linear(f"{p}.attn.wq_b", heads * hd, qlora, dense)
        b.linear(f"{p}.attn.wkv", hd, hidden, dense)
        b.linear(f"{p}.attn.wo", hidden, heads * hd, dense)
        b.norm(f"{p}.attn_norm.weight", hidden)
        b.norm(f"{p}.ffn_norm.weight", hidden)
        b.plain(f"{p}.ffn.gate.weight", b.normal(experts, hidden))
        b.plain(f"{p}.ffn.gate.bias", b.normal(experts, std=0.5), "F32")
        for e in range(experts):
            ex = f"{p}.ffn.experts.{e}"
            b.linear(f"{ex}.w1", inter, hidden, routed)
            b.linear(f"{ex}.w3", inter, hidden, routed)
            b.linear(f"{ex}.w2", hidden, inter, routed)
        for w, out, inp in (("w1", inter, hidden), ("w3", inter, hidden), ("w2", hidden, inter)):
            b.linear(f"{p}.ffn.shared_experts.{w}", out, inp, dense)
    b.norm("norm.weight", hidden)
    b.plain("head.weight", b.normal(vocab, hidden))
    config = {"architectures": ["DeepseekV4ForCausalLM"], "model_type": "deepseek_v4",
              "hidden_size": hidden, "moe_intermediate_size": inter, "num_hidden_layers": layers,
              "n_routed_experts": experts, "n_shared_experts": 1, "vocab_size": vocab,
              "q_lora_rank": qlora, "num_attention_heads": heads, "head_dim": hd,
              "expert_dtype": expert_dtype, "torch_dtype": "bfloat16",
              "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3",
                                      "quant_method": "fp8", "scale_fmt": "ue8m0",
                                      "weight_block_size": [128, 128]}}
    return _Spec(config)


# ---- compressed-tensors --------------------------------------------------------------------

CT_SOURCE = ("compressed-tensors quant_scheme.py presets, lifecycle/initialize.py "
             "(scale shapes), compressors/ (pack_to_int32, pack_fp4_to_uint8, mx scales)")


def _ct_args(num_bits: int, typ: str, strategy: str | None, *, group_size: int | None = None,
             block: list[int] | None = None, dynamic: bool | str = False, symmetric: bool = True,
             actorder: str | None = None, scale_dtype: str | None = None,
             observer: str | None = "minmax") -> dict[str, Any]:
    """QuantizationArgs as compressed-tensors serialises them."""
    return {"actorder": actorder, "block_structure": block, "dynamic": dynamic,
            "group_size": group_size, "num_bits": num_bits, "observer": observer,
            "observer_kwargs": {}, "scale_dtype": scale_dtype, "strategy": strategy,
            "symmetric": symmetric, "type": typ,
            "zp_dtype": None if symmetric else "torch.int8"}


def _ct_config(groups: dict[str, Any], fmt: str, ignore: list[str],
               kv: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"config_groups": groups, "format": fmt, "global_compression_ratio": None,
            "ignore": ignore, "kv_cache_scheme": kv, "quant_method": "compressed-tensors",
            "quantization_status": "compressed", "sparsity_config": {},
            "transform_config": {}, "version": "0.12.2"}


def _ct_fp8(strategy: str) -> Quantizer:
    def q(w: np.ndarray, _g: float) -> Quantized:
        if strategy == "channel":
            return Q.fp8_channel(w, scale_dtype="BF16")
        if strategy == "tensor":
            return Q.fp8_tensor(w, scale_suffix=".weight_scale", scale_dtype="BF16",
                                scale_shape=(1,))
        block = (1, 128) if strategy == "group" else (128, 128)  # a group is a 1 x 128 block
        return Q.fp8_block(w, block, scale_suffix=".weight_scale", scale_dtype="BF16")
    return q


def _ct_spec(cfg: dict[str, Any], ignore: list[str], text_config: bool = False,
             **kw: Any) -> _Spec:
    return _Spec(_into_text_config(cfg) if text_config else cfg, exclusions=[ignore],
                 unmatched_entry="re:.*mlp\\.shared_expert$", entry_for=lambda s: s, **kw)


def write_ct_fp8(b: _Builder, *, dims: Dims = Dims(), strategy: str = "channel",
                 text_config: bool = False) -> _Spec:
    """llm-compressor FP8: ``channel`` (FP8_DYNAMIC: weight_scale [out, 1]),
    ``tensor`` (FP8: weight_scale [1] + static input_scale [1]), ``block``
    (FP8_BLOCK: weight_scale [ceil(out/128), ceil(in/128)], named weight_scale) or
    ``group`` (weight_scale [out, ceil(in/128)])."""
    static = strategy == "tensor"
    _llama(b, dims, lambda s, o, i: _ct_fp8(strategy),
           (lambda s: (".input_scale", "BF16", (1,), "fp8")) if static else (lambda s: None))
    weights = _ct_args(8, "float", strategy, block=[128, 128] if strategy == "block" else None,
                       group_size=128 if strategy == "group" else None)
    inputs = (_ct_args(8, "float", "tensor", observer="static_minmax") if static else
              _ct_args(8, "float", "group" if strategy == "block" else "token",
                       group_size=128 if strategy == "block" else None, dynamic=True,
                       observer=None))
    ignore = ["lm_head"]
    group = {"input_activations": inputs, "output_activations": None, "targets": ["Linear"],
             "weights": weights, "format": "float-quantized"}
    cfg = _llama_config(dims, _ct_config({"group_0": group}, "float-quantized", ignore))
    return _ct_spec(cfg, ignore, text_config,
                    mixed=(".weight_scale", ".weight_scale_inv", lambda a: a),
                    fused=(".input_scale",) if static else ())


def write_ct_int8(b: _Builder, *, dims: Dims = Dims(), bits: int = 8, group: int = 0,
                  symmetric: bool = True) -> _Spec:
    """W8A8 INT8 (int-quantized): I8 weights, BF16 weight_scale [out, 1], dynamic
    per-token int8 activations. With ``bits`` < 8 (and a ``group``) the integers
    are stored unpacked in I8 (naive-quantized, weight-only), asymmetric ones with
    an I8 weight_zero_point of the scale's shape."""
    naive = bits < 8
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def q(w: np.ndarray, _g: float) -> Quantized:
        size = group or w.shape[-1]
        qv, scale, zp = Q.int_group(w, bits, size, symmetric=symmetric)
        scales: dict[str, Stored] = {".weight_scale": _as("BF16", scale)}
        notes: dict[str, object] = {"bits": bits}
        if not symmetric:
            scales[".weight_zero_point"] = ("I8", zp.astype(np.int8))
            notes["zero_points"] = zp
        return Quantized(qv, (1, size), 0 if symmetric else int(zp.reshape(-1)[0]), qmax, qmin,
                         scales, lambda c: {".weight": ("I8", c.astype(np.int8))}, notes)
    _llama(b, dims, lambda s, o, i: q)
    ignore = ["lm_head"]
    strategy = "group" if group else "channel"
    fmt = "naive-quantized" if naive else "int-quantized"
    inputs = None if naive else _ct_args(8, "int", "token", dynamic=True, observer=None)
    grp = {"input_activations": inputs, "output_activations": None, "targets": ["Linear"],
           "weights": _ct_args(bits, "int", strategy, group_size=group or None,
                               symmetric=symmetric), "format": fmt}
    return _ct_spec(_llama_config(dims, _ct_config({"group_0": grp}, fmt, ignore)), ignore)


def _ct_pack(bits: int, group: int, symmetric: bool, actorder: bool, zp_layout: str,
             shape_dtype: str, rng: np.random.Generator) -> Quantizer:
    """compressed-tensors pack-quantized: q + 2**(bits-1) packed LSB-first into I32
    words along the input; zero points packed along the rows."""
    def q(w: np.ndarray, _g: float) -> Quantized:
        out, inp = w.shape[-2:]
        perm = rng.permutation(inp) if actorder else np.arange(inp)
        qv, scale, zp = Q.int_group(w[..., perm], bits, group, symmetric=symmetric)
        inv = np.argsort(perm)
        qv = np.ascontiguousarray(qv[..., inv])
        scales: dict[str, Stored] = {".weight_scale": _as("BF16", scale),
                                     ".weight_shape": (shape_dtype, np.array(
                                         w.shape, np.int64 if shape_dtype == "I64" else np.int32))}
        if not symmetric:
            if zp_layout == "packed":
                words = Q.pack_bits((zp.astype(np.int32) + 2 ** (bits - 1)).T, bits).T
                scales[".weight_zero_point"] = ("I32", np.ascontiguousarray(words.view(np.int32)))
            else:
                scales[".weight_zero_point"] = ("I8", zp.astype(np.int8))
        if actorder:
            gidx = np.empty(inp, np.int32)
            gidx[perm] = np.arange(inp) // group
            scales[".weight_g_idx"] = ("I32", gidx)

        def pack(c: np.ndarray) -> dict[str, Stored]:
            words = Q.pack_bits(c.astype(np.int32) + 2 ** (bits - 1), bits)
            return {".weight_packed": ("I32", words.view(np.int32))}

        zero = 0 if symmetric else int(zp.reshape(-1)[0])
        notes: dict[str, object] = {"bits": bits}
        if not symmetric:
            notes["zero_points"] = zp
        return Quantized(qv, (1, group), zero, 2 ** (bits - 1) - 1, -(2 ** (bits - 1)), scales,
                         pack, notes)
    return q


def write_ct_w4a16(b: _Builder, *, dims: Dims = Dims(), bits: int = 4, group: int = 128,
                   symmetric: bool = True, actorder: bool = False, zp_layout: str = "packed",
                   shape_dtype: str = "I64", text_config: bool = False) -> _Spec:
    """W4A16 (pack-quantized): weight_packed I32 [out, in*bits/32], BF16
    weight_scale [out, in/group], weight_shape I64 [2]; asymmetric adds packed
    zero points (or the legacy unpacked I8 ones), actorder the weight_g_idx."""
    _llama(b, dims, lambda s, o, i: _ct_pack(bits, group, symmetric, actorder, zp_layout,
                                             shape_dtype, b.rng))
    ignore = ["lm_head"]
    weights = _ct_args(bits, "int", "group", group_size=group, symmetric=symmetric,
                       actorder="group" if actorder else None)
    grp = {"input_activations": None, "output_activations": None, "targets": ["Linear"],
           "weights": weights, "format": "pack-quantized"}
    cfg = _llama_config(dims, _ct_config({"group_0": grp}, "pack-quantized", ignore))
    return _ct_spec(cfg, ignore, text_config)


def write_ct_nvfp4(b: _Builder, *, dims: Dims = Dims()) -> _Spec:
    """NVFP4 (nvfp4-pack-quantized): weight_packed U8 [out, in/2], F8_E4M3
    weight_scale [out, in/16], weight_global_scale F32 [1] (fused siblings share
    it) and input_global_scale F32 [1]."""
    def q(w: np.ndarray, g: float) -> Quantized:
        return Q.nvfp4(w, convention="ct", global_amax=g)
    _llama(b, dims, lambda s, o, i: q, lambda s: (".input_global_scale", "F32", (1,), "ct_global"))
    ignore = ["lm_head"]
    weights = _ct_args(4, "float", "tensor_group", group_size=16,
                       scale_dtype="torch.float8_e4m3fn")
    inputs = _ct_args(4, "float", "tensor_group", group_size=16, dynamic="local",
                      scale_dtype="torch.float8_e4m3fn", observer="static_minmax")
    grp = {"input_activations": inputs, "output_activations": None, "targets": ["Linear"],
           "weights": weights, "format": "nvfp4-pack-quantized"}
    cfg = _llama_config(dims, _ct_config({"group_0": grp}, "nvfp4-pack-quantized", ignore))
    return _ct_spec(cfg, ignore, fused=(".weight_global_scale", ".input_global_scale"))


def write_ct_mx(b: _Builder, *, dims: Dims = Dims(), elem: str = "E2M1") -> _Spec:
    """MXFP4A16 (mxfp4-pack-quantized: weight_packed U8 [out, in/2]) or MXFP8A16
    (mxfp8-quantized: weight F8_E4M3) with U8 E8M0 weight_scale [out, in/32]."""
    fp4 = elem == "E2M1"

    def q(w: np.ndarray, _g: float) -> Quantized:
        return Q.mx(w, elem, weight_suffix=".weight_packed" if fp4 else ".weight")
    _llama(b, dims, lambda s, o, i: q)
    ignore = ["lm_head"]
    fmt = "mxfp4-pack-quantized" if fp4 else "mxfp8-quantized"
    grp = {"input_activations": None, "output_activations": None, "targets": ["Linear"],
           "weights": _ct_args(4 if fp4 else 8, "float", "group", group_size=32,
                               scale_dtype="torch.uint8"), "format": fmt}
    return _ct_spec(_llama_config(dims, _ct_config({"group_0": grp}, fmt, ignore)), ignore)


def write_ct_mixed(b: _Builder, *, dims: Dims = Dims()) -> _Spec:
    """Several config_groups (format mixed-precision): FP8 per channel on the
    attention projections, W4A16 on the MLP, an FP8 KV cache (self_attn.k_scale /
    v_scale [1])."""
    def q(stem: str, o: int, i: int) -> Quantizer:
        if ".self_attn." in stem:
            return _ct_fp8("channel")
        return _ct_pack(4, 128, True, False, "packed", "I64", b.rng)
    _llama(b, dims, q)
    for i in range(dims.layers):
        for kv in ("k", "v"):
            b.plain(f"model.layers.{i}.self_attn.{kv}_scale",
                    np.array([_act_amax(b.rng) / Q.E4M3_MAX]), param=False)
    ignore = ["lm_head"]
    groups = {
        "group_0": {"input_activations": _ct_args(8, "float", "token", dynamic=True,
                                                  observer=None),
                    "output_activations": None,
                    "targets": ["re:.*self_attn\\.(q|k|v|o)_proj$"],
                    "weights": _ct_args(8, "float", "channel"), "format": "float-quantized"},
        "group_1": {"input_activations": None, "output_activations": None,
                    "targets": ["re:.*mlp\\.(gate|up|down)_proj$"],
                    "weights": _ct_args(4, "int", "group", group_size=128),
                    "format": "pack-quantized"},
    }
    kv_args = _ct_args(8, "float", "tensor", observer="minmax")
    return _ct_spec(_llama_config(dims, _ct_config(groups, "mixed-precision", ignore, kv_args)),
                    ignore)


# ---- NVIDIA ModelOpt -----------------------------------------------------------------------

MODELOPT_SOURCE = ("ModelOpt export/unified_export_hf.py _export_quantized_weight, "
                   "export/quant_utils.py, export/convert_hf_config.py; vLLM modelopt.py")


def _modelopt_quantizer(algo: str, scale_layout: str) -> Quantizer:
    def q(w: np.ndarray, g: float) -> Quantized:
        if algo == "FP8":
            return Q.fp8_tensor(w, scale_suffix=".weight_scale", scale_dtype="F32")
        if algo == "FP8_PER_CHANNEL_PER_TOKEN":
            return Q.fp8_channel(w, scale_dtype="F32", column=False)
        if algo == "FP8_PB_WO":
            if scale_layout == "rank2":
                return Q.fp8_block(w, (128, 128), scale_suffix=".weight_scale_inv")
            return Q.fp8_block(w, (128, 128), scale_suffix=".weight_scale", rank4=True)
        if algo in ("NVFP4", "W4A16_NVFP4"):
            return Q.nvfp4(w, convention="modelopt", global_amax=g)
        if algo == "MXFP8":
            return Q.mx(w, "E4M3", ceil=True)
        raise ValueError(algo)
    return q


def write_modelopt(b: _Builder, *, dims: Dims = Dims(), algo: str = "NVFP4",
                   config_in: str = "both", kv_cache: bool = True,
                   scale_layout: str = "rank4") -> _Spec:
    """A ModelOpt unified checkpoint: ``algo`` one of FP8, FP8_PER_CHANNEL_PER_TOKEN,
    FP8_PB_WO (``scale_layout`` rank4 weight_scale or rank2 weight_scale_inv),
    NVFP4, W4A16_NVFP4, MXFP8, MIXED_PRECISION (NVFP4 MLP + FP8 attention).
    ``config_in``: ``hf_quant_config`` (older exports), ``config`` or ``both``."""
    static = algo in ("FP8", "NVFP4")

    def quant_for(stem: str) -> str:
        if algo != "MIXED_PRECISION":
            return algo
        return "FP8" if ".self_attn." in stem else "NVFP4"

    def inp(stem: str) -> tuple[str, str, tuple[int, ...], str] | None:
        a = quant_for(stem)
        return (".input_scale", "F32", (), "nvfp4" if a == "NVFP4" else "fp8") if a in (
            "FP8", "NVFP4") else None

    _llama(b, dims, lambda s, o, i: _modelopt_quantizer(quant_for(s), scale_layout), inp)
    if kv_cache:
        for i in range(dims.layers):
            for kv in ("k", "v"):
                b.plain(f"model.layers.{i}.self_attn.{kv}_proj.{kv}_scale",
                        np.array(_act_amax(b.rng) / Q.E4M3_MAX), "F32", param=False)
    exclude = ["lm_head"]
    written_algo = "fp8_pb_wo" if algo == "FP8_PB_WO" else algo  # ModelOpt writes it lower case
    inner: dict[str, Any] = {"quant_algo": written_algo,
                             "kv_cache_quant_algo": "FP8" if kv_cache else None}
    if algo in ("NVFP4", "W4A16_NVFP4"):
        inner["group_size"] = 16
    if algo == "MXFP8":
        inner["group_size"] = 32
    if algo == "MIXED_PRECISION":
        exclude = []
        layers = {}
        for lin in b.linears:
            if lin.stem == "lm_head":
                continue
            a = quant_for(lin.stem)
            layers[lin.stem] = ({"quant_algo": a} if a == "FP8"
                                else {"quant_algo": a, "group_size": 16})
        inner["quantized_layers"] = layers
    inner["exclude_modules"] = exclude
    hf_quant = {"producer": {"name": "modelopt", "version": "0.37.0"}, "quantization": inner}
    cfg_q: dict[str, Any] = {"ignore": exclude, "quant_algo": written_algo,
                             "producer": hf_quant["producer"], "quant_method": "modelopt"}
    if kv_cache:
        cfg_q["kv_cache_scheme"] = {"dynamic": False, "num_bits": 8, "type": "float"}
    if algo == "MIXED_PRECISION":
        cfg_q["quantized_layers"] = inner["quantized_layers"]
    cfg = _llama_config(dims, cfg_q if config_in in ("config", "both") else None)
    mixed = None
    if algo == "FP8_PB_WO":
        mixed = ((".weight_scale", ".weight_scale_inv", lambda a: a.reshape(a.shape[0], a.shape[2]))
                 if scale_layout == "rank4" else
                 (".weight_scale_inv", ".weight_scale",
                  lambda a: a.reshape(a.shape[0], 1, a.shape[1], 1)))
    fused = ((".weight_scale_2", ".input_scale") if algo == "NVFP4" else
             (".weight_scale_2",) if algo == "W4A16_NVFP4" else
             (".input_scale",) if static else ())
    return _Spec(cfg, hf_quant if config_in in ("hf_quant_config", "both") else None,
                 exclusions=[exclude], unmatched_entry="model.layers.9*", entry_for=lambda s: s,
                 mixed=mixed, fused=fused)


# ---- gpt-oss MXFP4 -------------------------------------------------------------------------

GPT_OSS_SOURCE = "transformers integrations/mxfp4.py; openai/gpt-oss-20b config and headers"


def write_gpt_oss(b: _Builder, *, hidden: int = 128, inter: int = 64, layers: int = 2,
                  experts: int = 4) -> _Spec:
    """gpt-oss: BF16 attention (with biases and sinks), router and embeddings;
    MoE experts as ``gate_up_proj_blocks`` U8 [E, 2I, H/32, 16] + ``_scales`` U8
    [E, 2I, H/32] + ``_bias`` BF16, the same for ``down_proj``."""
    def q(w: np.ndarray, _g: float) -> Quantized:
        return Q.mx(w, "E2M1", scale_suffix="_scales", weight_suffix="_blocks", blocks=True)
    heads, kv, hd, vocab = 4, 2, 32, 512
    b.plain("model.embed_tokens.weight", b.normal(vocab, hidden))
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj, out, inp in (("q_proj", heads * hd, hidden), ("k_proj", kv * hd, hidden),
                               ("v_proj", kv * hd, hidden), ("o_proj", hidden, heads * hd)):
            b.linear(f"{p}.self_attn.{proj}", out, inp, None)
            b.plain(f"{p}.self_attn.{proj}.bias", b.normal(out))
        b.plain(f"{p}.self_attn.sinks", b.normal(heads))
        b.plain(f"{p}.mlp.router.weight", b.normal(experts, hidden))
        b.plain(f"{p}.mlp.router.bias", b.normal(experts))
        b.linear(f"{p}.mlp.experts.gate_up_proj", 2 * inter, hidden, q, lead=(experts,),
                 plain_suffix="")
        b.plain(f"{p}.mlp.experts.gate_up_proj_bias", b.normal(experts, 2 * inter))
        b.linear(f"{p}.mlp.experts.down_proj", hidden, inter, q, lead=(experts,), plain_suffix="")
        b.plain(f"{p}.mlp.experts.down_proj_bias", b.normal(experts, hidden))
        b.norm(f"{p}.input_layernorm.weight", hidden)
        b.norm(f"{p}.post_attention_layernorm.weight", hidden)
    b.norm("model.norm.weight", hidden)
    b.plain("lm_head.weight", b.normal(vocab, hidden))
    ntc = ["model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens",
           "lm_head"]
    config = {"architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
              "num_local_experts": experts, "num_attention_heads": heads,
              "num_key_value_heads": kv, "head_dim": hd, "vocab_size": vocab,
              "torch_dtype": "bfloat16",
              "quantization_config": {"modules_to_not_convert": ntc, "quant_method": "mxfp4"}}
    return _Spec(config, exclusions=[ntc], unmatched_entry="model.layers.*.mlp.shared_expert",
                 entry_for=lambda s: s.rpartition(".")[0])


# ---- recognised schemes ----------------------------------------------------------------------

GPTQ_SOURCE = "AutoGPTQ QuantLinear pack(): qweight / qzeros (zero - 1) / scales / g_idx"
AWQ_SOURCE = "AutoAWQ WQLinear_GEMM.from_linear: AWQ order [0, 2, 4, 6, 1, 3, 5, 7]"
BNB_SOURCE = "bitsandbytes Params4bit / QuantState.as_dict(packed=True), Linear8bitLt"
MLX_SOURCE = "mlx nn.QuantizedLinear / mx.quantize (affine); mlx-lm convert config"
TORCHAO_SOURCE = "pytorch/ao prototype/safetensors flatten_tensor_state_dict"


def write_gptq(b: _Builder, *, dims: Dims = Dims(), bits: int = 4, group: int = 128) -> _Spec:
    """AutoGPTQ v1: qweight I32 [in*bits/32, out], qzeros I32 [in/g, out*bits/32]
    holding zero - 1, F16 scales [in/g, out], g_idx I32 [in]; F16 model."""
    def q(w: np.ndarray, _g: float) -> Quantized:
        qv, scale, _ = Q.int_group(w, bits, group)
        off = 2 ** (bits - 1)
        out, inp = w.shape
        ng = -(-inp // group)
        zeros = np.full((ng, out), off - 1, np.uint32)
        scales = {".scales": ("F16", scale.T.astype(np.float16)),
                  ".qzeros": ("I32", Q.pack_bits(zeros, bits).view(np.int32)),
                  ".g_idx": ("I32", (np.arange(inp) // group).astype(np.int32))}
        return Quantized(qv, (1, group), 0, off - 1, -off, scales, lambda c: {
            ".qweight": ("I32", np.ascontiguousarray(
                Q.pack_bits(c.astype(np.int32) + off, bits).T).view(np.int32))}, {"bits": bits})
    _llama(b, dims, lambda s, o, i: q)
    quant = {"quant_method": "gptq", "bits": bits, "group_size": group, "desc_act": False,
             "sym": True, "damp_percent": 0.01, "true_sequential": True,
             "checkpoint_format": "gptq", "model_name_or_path": None,
             "model_file_base_name": None}
    return _Spec(_llama_config(dims, quant, torch_dtype="float16"))


def write_awq(b: _Builder, *, dims: Dims = Dims(), group: int = 128) -> _Spec:
    """AutoAWQ GEMM: qweight I32 [in, out/8] in AWQ's nibble order, qzeros I32
    [in/g, out/8], F16 scales [in/g, out] (asymmetric, zero_point: true)."""
    order = (0, 2, 4, 6, 1, 3, 5, 7)

    def q(w: np.ndarray, _g: float) -> Quantized:
        qv, scale, zp = Q.int_group(w, 4, group, symmetric=False)
        zeros = (zp.astype(np.int32) + 8).T.astype(np.uint32)
        scales = {".scales": ("F16", scale.T.astype(np.float16)),
                  ".qzeros": ("I32", Q.pack_bits(zeros, 4, order).view(np.int32))}
        return Quantized(qv, (1, group), int(zp.reshape(-1)[0]), 7, -8, scales, lambda c: {
            ".qweight": ("I32", Q.pack_bits((c.astype(np.int32) + 8).T, 4, order)
                         .view(np.int32))}, {"bits": 4, "zero_points": zp})
    _llama(b, dims, lambda s, o, i: q)
    ntc: list[str] = []
    quant = {"quant_method": "awq", "bits": 4, "group_size": group, "zero_point": True,
             "version": "gemm", "modules_to_not_convert": ntc}
    return _Spec(_llama_config(dims, quant, torch_dtype="float16"), exclusions=[ntc],
                 unmatched_entry="vision_tower", entry_for=lambda s: s)


NF4 = np.array([-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
                -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
                0.07958029955625534, 0.16093020141124725, 0.24611230194568634,
                0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
                0.7229568362236023, 1.0], np.float32)


def write_bnb(b: _Builder, *, dims: Dims = Dims(), bits: int = 4, double_quant: bool = False
              ) -> _Spec:
    """bitsandbytes: 4-bit NF4 (U8 [n/2, 1], high nibble first; absmax per 64,
    quant_map, quant_state JSON) or 8-bit LLM.int8() (I8 + SCB [out])."""
    def q4(w: np.ndarray, _g: float) -> Quantized:
        flat = w.reshape(-1)
        nb = -(-flat.size // 64)
        pad = np.zeros(nb * 64, np.float32)
        pad[: flat.size] = flat
        absmax = np.abs(pad.reshape(nb, 64)).max(axis=1)
        normed = pad.reshape(nb, 64) / np.where(absmax == 0, 1, absmax)[:, None]
        codes = np.abs(normed[..., None] - NF4).argmin(-1).astype(np.uint8).reshape(-1)
        state = {"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16",
                 "shape": list(w.shape)}
        scales: dict[str, Stored] = {}
        if double_quant:
            offset = float(absmax.mean())
            state["nested_blocksize"], state["nested_offset"] = 256, offset
            a = absmax - offset
            nn = -(-nb // 256)
            apad = np.zeros(nn * 256, np.float32)
            apad[:nb] = a
            nabs = np.abs(apad.reshape(nn, 256)).max(axis=1)
            nmap = np.linspace(-1, 1, 256).astype(np.float32)
            idx = np.abs((apad.reshape(nn, 256) / np.where(nabs == 0, 1, nabs)[:, None])[..., None]
                         - nmap).argmin(-1).astype(np.uint8).reshape(-1)[:nb]
            scales[".weight.absmax"] = ("U8", idx)
            scales[".weight.nested_absmax"] = ("F32", nabs)
            scales[".weight.nested_quant_map"] = ("F32", nmap)
        else:
            scales[".weight.absmax"] = ("F32", absmax)
        scales[".weight.quant_map"] = ("F32", NF4.copy())
        blob = np.frombuffer(json.dumps(state).encode(), np.uint8).copy()
        scales[".weight.quant_state.bitsandbytes__nf4"] = ("U8", blob)
        n = w.size

        def pack(c: np.ndarray) -> dict[str, Stored]:
            cc = np.zeros(-(-n // 2) * 2, np.uint8)
            cc[:n] = c[:n]
            return {".weight": ("U8", Q.pack_nibbles(cc, low_first=False).reshape(-1, 1))}
        return Quantized(codes[:n], (1, 64), 7, 15, 0, scales, pack)

    def q8(w: np.ndarray, _g: float) -> Quantized:
        scb = np.abs(w).max(axis=-1)
        qv = np.round(w * 127 / np.where(scb == 0, 1, scb)[:, None]).clip(-127, 127).astype(np.int8)
        return Quantized(qv, (1, w.shape[-1]), 0, 127, -127,
                         {".SCB": ("F32", scb.astype(np.float32)),
                          ".weight_format": ("U8", np.array(0, np.uint8))},
                         lambda c: {".weight": ("I8", c.astype(np.int8))})
    _llama(b, dims, lambda s, o, i: q4 if bits == 4 else q8)
    skip: list[str] = ["lm_head"]
    quant = {"quant_method": "bitsandbytes", "load_in_4bit": bits == 4, "load_in_8bit": bits == 8,
             "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": double_quant,
             "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "uint8",
             "llm_int8_threshold": 6.0, "llm_int8_skip_modules": skip,
             "llm_int8_has_fp16_weight": False, "llm_int8_enable_fp32_cpu_offload": False}
    return _Spec(_llama_config(dims, quant), exclusions=[skip], unmatched_entry="vision_tower",
                 entry_for=lambda s: s)


def write_mlx(b: _Builder, *, dims: Dims = Dims(), bits: int = 4, group: int = 64) -> _Spec:
    """mlx-lm affine quantization: U32 weights (32/bits per word, LSB first), BF16
    scales and biases [out, in/group] for every Linear and the embedding; one
    8-bit override for layer 0's down_proj, as mixed recipes write."""
    override = "model.layers.0.mlp.down_proj"

    def quantizer(nbits: int) -> Quantizer:
        def q(w: np.ndarray, _g: float) -> Quantized:
            out, inp = w.shape
            g = w.reshape(out, inp // group, group)
            lo, hi = g.min(-1), g.max(-1)
            scale = np.where(hi > lo, (hi - lo) / (2 ** nbits - 1), 1.0).astype(np.float32)
            codes = np.round((g - lo[..., None]) / scale[..., None]).clip(0, 2 ** nbits - 1)
            codes = codes.reshape(out, inp).astype(np.uint8)
            return Quantized(codes, (1, group), 0, 2 ** nbits - 1, 0,
                             {".scales": _as("BF16", scale), ".biases": _as("BF16", lo)},
                             lambda c: {".weight": ("U32", Q.pack_bits(c, nbits))}, {"bits": nbits})
        return q
    # MLX quantizes the embedding and lm_head too
    _llama(b, dims, lambda s, o, i: quantizer(8 if s == override else bits), lm_head=True,
           embedding=quantizer(bits))
    q = {"group_size": group, "bits": bits, "mode": "affine",
         override: {"group_size": group, "bits": 8}}
    return _Spec(_llama_config(dims, dict(q), quantization=q))


def write_torchao(b: _Builder, *, dims: Dims = Dims()) -> _Spec:
    """torchao Float8Tensor (per row) saved with its safetensors support:
    ``M._weight_qdata`` F8_E4M3 + ``M._weight_scale`` F32 [out, 1], the subclass
    described in ``__metadata__``."""
    def q(w: np.ndarray, _g: float) -> Quantized:
        return Q.fp8_channel(w, scale_suffix="._weight_scale", scale_dtype="F32")
    _llama(b, dims, lambda s, o, i: q)
    config = _llama_config(dims, {
        "quant_method": "torchao", "modules_to_not_convert": ["lm_head"],
        "quant_type": {"default": {"_type": "Float8DynamicActivationFloat8WeightConfig",
                                   "_data": {"granularity": [{"_type": "PerRow", "_data": {}},
                                                             {"_type": "PerRow", "_data": {}}]}}}})
    return _Spec(config)


def _torchao_rename(b: _Builder) -> dict[str, str]:
    """Stores torchao's names (``M._weight_qdata``) and returns the metadata."""
    meta: dict[str, str] = {}
    names: list[str] = []
    for lin in b.linears:
        q = lin.quantized
        logical = lin.stem + ".weight"
        names.append(logical)
        if q is None:
            meta[logical] = json.dumps({"_type": "Tensor"})
            continue
        stored = b.tensors.pop(lin.stem + ".weight")
        b.tensors[lin.stem + "._weight_qdata"] = stored
        meta[logical] = json.dumps({
            "_type": "Float8Tensor",
            "_data": {"block_size": [1, lin.shape[-1]],
                      "dtype": {"_type": "torch.dtype", "_data": "bfloat16"}},
            "_tensor_data_names": ["qdata", "scale"]})
    for name in b.tensors:
        if name.endswith((".weight", ".bias")) and name not in meta:
            meta[name] = json.dumps({"_type": "Tensor"})
            names.append(name)
    meta["tensor_names"] = json.dumps(names)
    return meta


# ---- the registry and the entry point ------------------------------------------------------


@dataclass(frozen=True)
class SchemeWriter:
    """One writer: ``fn(builder, **options) -> _Spec``, the faults it can plant,
    the options a fault needs (``requires``: planting ``negative_input_scale`` in
    ct-fp8 writes static FP8 activations), the stems it prefers as fault victims,
    and the producer source it follows."""

    fn: Callable[..., _Spec]
    faults: frozenset[str]
    source: str
    requires: dict[str, dict[str, Any]] = field(default_factory=dict)
    prefer: tuple[str, ...] = ("layers.1.mlp.down_proj", "layers.1.mlp.up_proj",
                               "layers.1.self_attn.o_proj", "layers.1.self_attn.q_proj",
                               "layers.0.mlp.down_proj", "layers.0.mlp.gate_proj",
                               "layers.0.self_attn.o_proj", "layers.0.self_attn.v_proj")


_COMMON = frozenset({"missing_companion", "orphan_companion", "companion_shape",
                     "companion_dtype", "unquantized_targeted", "zero_block", "clipping_block",
                     "all_zero_tensor"})
_EXCL = frozenset({"exclusion_unmatched", "exclusion_prefix", "quantized_excluded"})
_MOE_PREFER = ("layers.1.block_sparse_moe.experts.1.w2", "layers.1.block_sparse_moe.experts.2.w1",
               "layers.1.block_sparse_moe.experts.3.w3", "layers.0.block_sparse_moe.experts.1.w2",
               "layers.0.block_sparse_moe.experts.2.w1", "layers.1.self_attn.o_proj",
               "layers.0.self_attn.o_proj", "layers.0.self_attn.q_proj",
               "layers.1.ffn.experts.1.w2", "layers.1.ffn.experts.2.w1",
               "layers.1.ffn.shared_experts.w2", "layers.0.ffn.experts.3.w3",
               "layers.0.ffn.shared_experts.w1", "layers.1.attn.wo", "layers.0.attn.wq_b",
               "layers.1.mlp.experts.down_proj", "layers.1.mlp.experts.gate_up_proj",
               "layers.0.mlp.experts.down_proj", "layers.0.mlp.experts.gate_up_proj")

SCHEMES: dict[str, SchemeWriter] = {
    "hf-fp8-block": SchemeWriter(write_hf_fp8_block, _COMMON | _EXCL | {"mixed_conventions"},
                                 HF_FP8_SOURCE, prefer=_MOE_PREFER),
    "hf-fp8-tensor": SchemeWriter(write_hf_fp8_tensor, _COMMON | _EXCL | {
        "mixed_conventions", "fused_scale_mismatch", "negative_input_scale"}, HF_FP8_SOURCE,
        {"fused_scale_mismatch": {"static": True}, "negative_input_scale": {"static": True}}),
    "hf-fp8-fused": SchemeWriter(write_hf_fp8_fused, _COMMON | _EXCL | {"mixed_conventions"},
                                 HF_FP8_SOURCE, prefer=_MOE_PREFER),
    "deepseek-v4": SchemeWriter(write_deepseek_v4, _COMMON | {"e8m0_nan"}, DSV4_SOURCE,
                                prefer=_MOE_PREFER),
    "ct-fp8": SchemeWriter(write_ct_fp8, _COMMON | _EXCL | {
        "mixed_conventions", "fused_scale_mismatch", "negative_input_scale"}, CT_SOURCE,
        {"fused_scale_mismatch": {"strategy": "tensor"},
         "negative_input_scale": {"strategy": "tensor"}}),
    "ct-int8": SchemeWriter(write_ct_int8, _COMMON | _EXCL | {"zero_point_range"}, CT_SOURCE,
                            {"zero_point_range": {"bits": 4, "group": 128, "symmetric": False}}),
    "ct-w4a16": SchemeWriter(write_ct_w4a16, _COMMON | _EXCL | {"zero_point_range"}, CT_SOURCE,
                             {"zero_point_range": {"symmetric": False, "zp_layout": "unpacked"}}),
    "ct-nvfp4": SchemeWriter(write_ct_nvfp4, _COMMON | _EXCL | {
        "fused_scale_mismatch", "scale_nan_e4m3"}, CT_SOURCE),
    "ct-mxfp4": SchemeWriter(partial(write_ct_mx, elem="E2M1"), _COMMON | _EXCL | {"e8m0_nan"},
                             CT_SOURCE),
    "ct-mxfp8": SchemeWriter(partial(write_ct_mx, elem="E4M3"), _COMMON | _EXCL | {"e8m0_nan"},
                             CT_SOURCE),
    "ct-mixed": SchemeWriter(write_ct_mixed, _COMMON | _EXCL, CT_SOURCE),
    "modelopt-fp8": SchemeWriter(partial(write_modelopt, algo="FP8"), _COMMON | _EXCL | {
        "fused_scale_mismatch", "negative_input_scale"}, MODELOPT_SOURCE),
    "modelopt-fp8-pc-pt": SchemeWriter(partial(write_modelopt, algo="FP8_PER_CHANNEL_PER_TOKEN"),
                                       _COMMON | _EXCL, MODELOPT_SOURCE),
    "modelopt-fp8-pb-wo": SchemeWriter(partial(write_modelopt, algo="FP8_PB_WO"),
                                       _COMMON | _EXCL | {"mixed_conventions"}, MODELOPT_SOURCE),
    "modelopt-nvfp4": SchemeWriter(partial(write_modelopt, algo="NVFP4"), _COMMON | _EXCL | {
        "fused_scale_mismatch", "scale_nan_e4m3", "negative_input_scale"}, MODELOPT_SOURCE),
    "modelopt-w4a16-nvfp4": SchemeWriter(partial(write_modelopt, algo="W4A16_NVFP4"),
                                         _COMMON | _EXCL | {"fused_scale_mismatch",
                                                            "scale_nan_e4m3"}, MODELOPT_SOURCE),
    "modelopt-mxfp8": SchemeWriter(partial(write_modelopt, algo="MXFP8"),
                                   _COMMON | _EXCL | {"e8m0_nan"}, MODELOPT_SOURCE),
    "modelopt-mixed": SchemeWriter(partial(write_modelopt, algo="MIXED_PRECISION"),
                                   _COMMON | {"scale_nan_e4m3"}, MODELOPT_SOURCE),
    "gpt-oss": SchemeWriter(write_gpt_oss, _COMMON | {"e8m0_nan", "exclusion_unmatched",
                                                      "quantized_excluded"},
                            GPT_OSS_SOURCE, prefer=_MOE_PREFER),
    "gptq": SchemeWriter(write_gptq, _COMMON, GPTQ_SOURCE),
    "awq": SchemeWriter(write_awq, _COMMON | _EXCL, AWQ_SOURCE),
    "bnb-4bit": SchemeWriter(partial(write_bnb, bits=4), _COMMON - {"zero_block",
                                                                    "clipping_block"} | _EXCL,
                             BNB_SOURCE),
    "bnb-8bit": SchemeWriter(partial(write_bnb, bits=8), _COMMON | _EXCL, BNB_SOURCE),
    "mlx": SchemeWriter(write_mlx, _COMMON - {"zero_block", "clipping_block", "all_zero_tensor"},
                        MLX_SOURCE),
    "torchao": SchemeWriter(write_torchao, frozenset(), TORCHAO_SOURCE),
}


def write(scheme: str, dest: str | os.PathLike[str], *, plant: Iterable[str] | str = (),
          seed: int = 0, shards: int = 1, **options: Any) -> Written:
    """Write a small checkpoint of ``scheme`` (a key of :data:`SCHEMES`) to ``dest``."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; known: {sorted(SCHEMES)}")
    writer = SCHEMES[scheme]
    faults = {plant} if isinstance(plant, str) else set(plant)
    if unknown := faults - writer.faults:
        raise ValueError(f"{scheme} cannot plant {sorted(unknown)}; it can: "
                         f"{sorted(writer.faults)}")
    for fault in sorted(faults):
        for key, value in writer.requires.get(fault, {}).items():
            if options.setdefault(key, value) != value:
                raise ValueError(f"{fault} needs {key}={value!r}, not {options[key]!r}")
    b = _Builder(seed, faults)
    spec = writer.fn(b, **options)
    _finish(b, spec, faults, writer.prefer)
    for lin in b.linears:
        if lin.quantized is not None:
            for suffix, stored in lin.quantized.stored().items():
                b.tensors[lin.stem + suffix] = stored
    _tensor_faults(b, spec, faults, writer.prefer)
    metadata = _torchao_rename(b) if scheme == "torchao" else None
    path = Path(dest)
    where = _save(path, b.tensors, shards, metadata)
    (path / "config.json").write_text(json.dumps(spec.config, indent=2))
    if spec.hf_quant_config is not None:
        (path / "hf_quant_config.json").write_text(json.dumps(spec.hf_quant_config, indent=2))
    for p in b.planted.values():
        p.file = where.get(p.tensor) if p.tensor else None
    return Written(
        path=path, scheme=scheme, config=spec.config, hf_quant_config=spec.hf_quant_config,
        tensors={n: (d, tuple(int(x) for x in a.shape)) for n, (d, a) in b.tensors.items()},
        parameters=b.parameters,
        quantized={lin.stem: lin.shape for lin in b.linears if lin.quantized is not None},
        high_precision=[lin.stem for lin in b.high], planted=b.planted, source=writer.source,
        options=options, originals=b.originals,
        modules={lin.stem: lin.module for lin in b.linears},
    )
