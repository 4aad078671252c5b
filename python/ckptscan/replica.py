"""Full-size sparse replicas of real checkpoint layouts.

A replica has every tensor name, dtype and shape of a real checkpoint, in real
shard files with real-size headers, but its data region is a sparse hole made
with ``os.truncate``: a 230 GB checkpoint costs a few megabytes of disk. The
data reads back as zeros.

Layouts are data (:class:`Layout`), built by functions from the model's config
numbers. ``LAYOUTS`` maps a name to the function that builds it::

    from ckptscan.replica import LAYOUTS, write_replica
    path = write_replica("minimax_m2", tmp_path / "m2")

Shard headers are written the way the safetensors writer (Rust crate 0.8.0)
writes them: compact JSON, ``__metadata__`` first, then the tensors sorted by
dtype (descending, in the crate's enum order: F32 before BF16 before F8_E4M3)
and by name, with contiguous ``data_offsets`` in that order, padded with spaces
to a multiple of 8.

``rewrite_shard`` rewrites one shard's header (for planting faults in copies),
``copy_replica`` copies a replica and keeps it sparse (``shutil.copytree`` would
write every byte of the holes), ``rebuild_index`` rewrites
``model.safetensors.index.json`` from the headers.

Pure Python: stdlib + orjson (numpy is not needed here).
"""

from __future__ import annotations

import math
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "DTYPE_BITS",
    "LAYOUTS",
    "Entry",
    "Layout",
    "build_layout",
    "copy_replica",
    "deepseek_v3",
    "llama_bf16",
    "minimax_m2",
    "qwen3_moe_fp8",
    "read_header",
    "read_entries",
    "rebuild_index",
    "rewrite_shard",
    "scale_shape",
    "write_header_bytes",
    "write_replica",
    "writer_order",
]

Shape = tuple[int, ...]
TensorSpec = tuple[str, str, Shape]

#: bits per element of every safetensors dtype string (FORMAT-FACTS.md)
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

# The safetensors crate's Dtype enum order; its writer sorts tensors by dtype
# descending in this order, then by name (checked against safetensors 0.8.0 for
# every dtype numpy/ml_dtypes can make; the place of F4/F6/E8M0/FNUZ is taken
# from their bit widths).
_ENUM_ORDER = [
    "BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
    "F8_E4M3FNUZ", "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32",
    "C64", "F64", "I64", "U64",
]
_ENUM_RANK = {d: i for i, d in enumerate(_ENUM_ORDER)}

INDEX_NAME = "model.safetensors.index.json"


def nbytes_of(dtype: str, shape: Sequence[int]) -> int:
    """Bytes of a tensor: prod(shape) * bits / 8 (bits must come out whole)."""
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8:
        raise ValueError(f"{dtype}{list(shape)}: {bits} bits is not a whole number of bytes")
    return bits // 8


def scale_shape(shape: Sequence[int], block: Sequence[int] = (128, 128)) -> Shape:
    """Shape of a block-scale tensor: ceil(rows/br) x ceil(cols/bc)."""
    r, c = shape
    return (-(-r // block[0]), -(-c // block[1]))


@dataclass(frozen=True)
class Entry:
    """One header entry of a shard, as ``rewrite_shard`` hands them out."""

    name: str
    dtype: str
    shape: Shape

    @property
    def nbytes(self) -> int:
        return nbytes_of(self.dtype, self.shape)


def writer_order(entries: Iterable[Entry]) -> list[Entry]:
    """Entries in the order the safetensors writer lays them out."""
    return sorted(entries, key=lambda e: (-_ENUM_RANK[e.dtype], e.name))


@dataclass
class Layout:
    """A checkpoint layout: tensors in the real checkpoint's order and a shard each."""

    name: str
    tensors: list[TensorSpec]
    shard_of: list[int]  # shard index per tensor, same length as tensors
    shard_names: list[str]
    config: dict[str, Any]
    metadata: dict[str, str] | None = field(default_factory=lambda: {"format": "pt"})
    notes: str = ""

    def __post_init__(self) -> None:
        if len(self.shard_of) != len(self.tensors):
            raise ValueError("shard_of and tensors differ in length")
        seen = set(self.shard_of)
        if seen != set(range(len(self.shard_names))):
            raise ValueError(f"{self.name}: shards without tensors or without names")

    @property
    def num_tensors(self) -> int:
        return len(self.tensors)

    def nbytes(self) -> list[int]:
        return [nbytes_of(d, s) for _, d, s in self.tensors]

    @property
    def total_bytes(self) -> int:
        return sum(self.nbytes())

    @property
    def num_params(self) -> int:
        return sum(math.prod(s) for _, _, s in self.tensors)

    def dtype_counts(self) -> dict[str, int]:
        return dict(Counter(d for _, d, _ in self.tensors))

    def shard_entries(self, k: int) -> list[Entry]:
        """The entries of shard k, in file (writer) order."""
        return writer_order(
            Entry(n, d, s)
            for (n, d, s), sk in zip(self.tensors, self.shard_of, strict=True)
            if sk == k
        )

    def weight_map(self) -> dict[str, str]:
        return {n: self.shard_names[k]
                for (n, _, _), k in zip(self.tensors, self.shard_of, strict=True)}


# --------------------------------------------------------------------------- writing


def _header_bytes(entries: Sequence[Entry], metadata: dict[str, str] | None) -> tuple[bytes, int]:
    """Padded header JSON for entries laid out contiguously in the given order."""
    h: dict[str, Any] = {}
    if metadata is not None:
        h["__metadata__"] = metadata
    off = 0
    for e in entries:
        end = off + e.nbytes
        h[e.name] = {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [off, end]}
        off = end
    js = orjson.dumps(h)
    js += b" " * (-len(js) % 8)
    return js, off


def write_header_bytes(path: str | os.PathLike[str], header: bytes, data_len: int,
                       *, length: int | None = None) -> Path:
    """Write a shard from raw header bytes (no padding added) and a sparse data
    region of ``data_len`` bytes. ``length`` overrides the 8-byte N (for planting
    bad lengths). Returns the path."""
    p = Path(path)
    n = len(header) if length is None else length
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", n))
        f.write(header)
    os.truncate(p, 8 + len(header) + data_len)
    return p


def _write_shard(path: Path, entries: Sequence[Entry], metadata: dict[str, str] | None) -> int:
    header, data_len = _header_bytes(entries, metadata)
    write_header_bytes(path, header, data_len)
    return data_len


def write_replica(layout: str | Layout, dest: str | os.PathLike[str], *,
                  index: bool = True, config: bool = True) -> Path:
    """Write every shard of ``layout`` (a name in LAYOUTS or a Layout) into
    ``dest`` (created), plus ``model.safetensors.index.json`` and ``config.json``.
    Data regions are sparse holes. Returns ``dest`` as a Path."""
    lay = LAYOUTS[layout]() if isinstance(layout, str) else layout
    d = Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    per_shard: list[list[Entry]] = [[] for _ in lay.shard_names]
    for (n, dt, s), k in zip(lay.tensors, lay.shard_of, strict=True):
        per_shard[k].append(Entry(n, dt, s))
    total = 0
    for k, ents in enumerate(per_shard):
        total += _write_shard(d / lay.shard_names[k], writer_order(ents), lay.metadata)
    if index:
        idx = {"metadata": {"total_size": total}, "weight_map": lay.weight_map()}
        (d / INDEX_NAME).write_bytes(orjson.dumps(idx, option=orjson.OPT_INDENT_2))
    if config:
        (d / "config.json").write_bytes(orjson.dumps(lay.config, option=orjson.OPT_INDENT_2))
    return d


# --------------------------------------------------------------------------- reading / faults


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed JSON header of one shard (pure Python, no validation)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return orjson.loads(f.read(n))  # type: ignore[no-any-return]


def read_entries(path: str | os.PathLike[str]) -> tuple[list[Entry], dict[str, str] | None]:
    """(entries in file order, __metadata__) of one shard."""
    h = read_header(path)
    meta = h.pop("__metadata__", None)
    ents = [Entry(k, v["dtype"], tuple(v["shape"])) for k, v in h.items()]
    return ents, meta


def rewrite_shard(path: str | os.PathLike[str],
                  mutate: Callable[[list[Entry]], Iterable[Entry]], *,
                  keep_data: bool = False, sort: bool = False) -> list[Entry]:
    """Rewrite one shard's header with ``mutate(entries)`` and recompute the
    offsets (contiguous, in the returned order; ``sort=True`` puts them in
    writer order) and the file size. Entries are frozen; build new ones with
    ``dataclasses.replace(e, shape=...)`` or ``Entry(...)``.

    With ``keep_data=False`` (replicas) the new data region is a sparse hole.
    With ``keep_data=True`` (real small files) each entry whose name exists in
    the old file with the same byte size keeps its old bytes; other entries get
    zeros. The index is left untouched (use ``rebuild_index`` to resync it).
    Returns the new entries."""
    p = Path(path)
    old, meta = read_entries(p)
    new = list(mutate(list(old)))
    if sort:
        new = writer_order(new)
    header, data_len = _header_bytes(new, meta)
    if not keep_data:
        write_header_bytes(p, header, data_len)
        return new
    hdr = read_header(p)
    with open(p, "rb") as f:
        (n_old,) = struct.unpack("<Q", f.read(8))
        base = 8 + n_old
        chunks = []
        for e in new:
            info = hdr.get(e.name)
            b, end = info["data_offsets"] if isinstance(info, dict) else (0, -1)
            if end - b == e.nbytes:
                f.seek(base + b)
                chunks.append(f.read(e.nbytes))
            else:
                chunks.append(bytes(e.nbytes))
    with open(p, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for c in chunks:
            f.write(c)
    return new


def copy_replica(src: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """Copy a replica directory keeping it sparse: each shard's 8 + N header bytes
    are copied and the rest re-created as a hole (a replica's data is all zeros).
    Other files (index.json, config.json) are copied. Never ``shutil.copytree`` a
    replica: that writes the full 200+ GB of zeros."""
    s, d = Path(src), Path(dest)
    d.mkdir(parents=True, exist_ok=True)
    for p in sorted(s.iterdir()):
        if not p.is_file():
            continue
        if p.suffix == ".safetensors":
            size = p.stat().st_size
            with open(p, "rb") as f:
                head = f.read(8)
                (n,) = struct.unpack("<Q", head) if len(head) == 8 else (0,)
                head += f.read(min(n, max(size - 8, 0)))
            (d / p.name).write_bytes(head)
            os.truncate(d / p.name, size)
        else:
            (d / p.name).write_bytes(p.read_bytes())
    return d


def rebuild_index(dest: str | os.PathLike[str]) -> Path:
    """Rewrite model.safetensors.index.json from the shard headers in ``dest``
    (total_size = sum of the tensors' bytes). Returns the index path."""
    d = Path(dest)
    wm: dict[str, str] = {}
    total = 0
    for p in sorted(d.glob("*.safetensors")):
        ents, _ = read_entries(p)
        for e in ents:
            wm[e.name] = p.name
            total += e.nbytes
    out = d / INDEX_NAME
    out.write_bytes(orjson.dumps({"metadata": {"total_size": total}, "weight_map": wm},
                                 option=orjson.OPT_INDENT_2))
    return out


# --------------------------------------------------------------------------- shard assignment


def assign_even(nbytes: Sequence[int], n_shards: int) -> list[int]:
    """Tensors in order into exactly ``n_shards`` shards of about equal bytes:
    Hugging Face's greedy sharding (``assign_max``) with the smallest size limit
    that yields ``n_shards`` shards."""
    lo, hi = max(nbytes), sum(nbytes)
    if len(nbytes) < n_shards:
        raise ValueError("fewer tensors than shards")
    while lo < hi:  # smallest limit giving <= n_shards shards
        mid = (lo + hi) // 2
        if assign_max(nbytes, mid)[-1] + 1 <= n_shards:
            hi = mid
        else:
            lo = mid + 1
    out = assign_max(nbytes, lo)
    if out[-1] + 1 != n_shards:
        raise ValueError(f"cannot split into exactly {n_shards} shards")
    return out


def assign_max(nbytes: Sequence[int], max_bytes: int) -> list[int]:
    """Hugging Face ``save_pretrained`` sharding: tensors in order, a new shard
    when adding the next tensor would pass ``max_bytes``."""
    out = []
    k, cur = 0, 0
    for b in nbytes:
        if cur and cur + b > max_bytes:
            k, cur = k + 1, 0
        out.append(k)
        cur += b
    return out


def build_layout(name: str, tensors: list[TensorSpec], config: dict[str, Any], *,
                 n_shards: int | None = None, max_shard_bytes: int | None = None,
                 shard_name: Callable[[int, int], str], notes: str = "") -> Layout:
    """A Layout from tensors in order, with shards either ``n_shards`` equal
    parts or HF-style ``max_shard_bytes``; ``shard_name(k, n)`` names shard k of n."""
    nb = [nbytes_of(d, s) for _, d, s in tensors]
    names = [t[0] for t in tensors]
    if len(set(names)) != len(names):
        raise ValueError(f"{name}: duplicate tensor names")
    if n_shards is not None:
        shard_of = assign_even(nb, n_shards)
    elif max_shard_bytes is not None:
        shard_of = assign_max(nb, max_shard_bytes)
    else:
        shard_of = [0] * len(tensors)
    n = max(shard_of) + 1
    return Layout(name, tensors, shard_of, [shard_name(k, n) for k in range(n)], config,
                  notes=notes)


def _fp8_linear(out: list[TensorSpec], name: str, rows: int, cols: int,
                block: Sequence[int] = (128, 128)) -> None:
    out.append((f"{name}.weight", "F8_E4M3", (rows, cols)))
    out.append((f"{name}.weight_scale_inv", "F32", scale_shape((rows, cols), block)))


def _hf_name(k: int, n: int) -> str:
    return f"model-{k + 1:05d}-of-{n:05d}.safetensors"


# --------------------------------------------------------------------------- MiniMax-M2


def minimax_m2_config() -> dict[str, Any]:
    return {
        "architectures": ["MiniMaxM2ForCausalLM"],
        "model_type": "minimax_m2",
        "num_hidden_layers": 62,
        "hidden_size": 3072,
        "intermediate_size": 1536,
        "num_local_experts": 256,
        "num_experts_per_tok": 8,
        "num_attention_heads": 48,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 200064,
        "max_position_embeddings": 196608,
        "rms_norm_eps": 1e-06,
        "scoring_func": "sigmoid",
        "use_routing_bias": True,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "num_mtp_modules": 3,
        "use_mtp": True,
        "quantization_config": {
            "quant_method": "fp8",
            "fmt": "float8_e4m3fn",
            "activation_scheme": "dynamic",
            "weight_block_size": [128, 128],
            "modules_to_not_convert": ["gate", "e_score_correction_bias", "lm_head"],
        },
    }


def minimax_m2() -> Layout:
    """MiniMax-M2 (FORMAT-FACTS.md, seed-report.txt): 96,103 tensors = 251 BF16 +
    47,988 F32 + 47,864 F8_E4M3 in 125 files model-00000-of-00130 ..
    model-00124-of-00130, ~230e9 bytes (214 GiB)."""
    c = minimax_m2_config()
    H, FF, E = c["hidden_size"], c["intermediate_size"], c["num_local_experts"]
    hd = c["head_dim"]
    q_dim, kv_dim = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    blk = tuple(c["quantization_config"]["weight_block_size"])
    t: list[TensorSpec] = []
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}"
        _fp8_linear(t, f"{p}.self_attn.q_proj", q_dim, H, blk)
        _fp8_linear(t, f"{p}.self_attn.k_proj", kv_dim, H, blk)
        _fp8_linear(t, f"{p}.self_attn.v_proj", kv_dim, H, blk)
        _fp8_linear(t, f"{p}.self_attn.o_proj", H, q_dim, blk)
        t.append((f"{p}.self_attn.q_norm.weight", "BF16", (q_dim,)))
        t.append((f"{p}.self_attn.k_norm.weight", "BF16", (kv_dim,)))
        t.append((f"{p}.input_layernorm.weight", "BF16", (H,)))
        t.append((f"{p}.post_attention_layernorm.weight", "BF16", (H,)))
        t.append((f"{p}.block_sparse_moe.gate.weight", "F32", (E, H)))
        t.append((f"{p}.block_sparse_moe.e_score_correction_bias", "F32", (E,)))
        moe = f"{p}.block_sparse_moe.experts"
        for e in range(E):
            _fp8_linear(t, f"{moe}.{e}.w1", FF, H, blk)
            _fp8_linear(t, f"{moe}.{e}.w3", FF, H, blk)
        for e in range(E):
            _fp8_linear(t, f"{moe}.{e}.w2", H, FF, blk)
    V = c["vocab_size"]
    t.append(("model.embed_tokens.weight", "BF16", (V, H)))
    t.append(("model.norm.weight", "BF16", (H,)))
    t.append(("lm_head.weight", "BF16", (V, H)))
    notes = (
        "Order of tensors across shards is a guess: per layer attention, norms, router, "
        "then every expert's w1/w3, then every expert's w2; embed_tokens/norm/lm_head last. "
        "With headers in writer order this reproduces the seed report's 'first 10 FP8 scale "
        "parameters' (experts 0,1,10,100,101 w1/w3 of layer 0 in shard 0). No MTP tensors "
        "although config declares num_mtp_modules=3."
    )
    return build_layout(
        "minimax_m2", t, c, n_shards=125,
        shard_name=lambda k, n: f"model-{k:05d}-of-00130.safetensors", notes=notes,
    )


# --------------------------------------------------------------------------- DeepSeek-V3


def deepseek_v3_config() -> dict[str, Any]:
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "model_type": "deepseek_v3",
        "hidden_size": 7168,
        "intermediate_size": 18432,
        "moe_intermediate_size": 2048,
        "num_hidden_layers": 61,
        "num_nextn_predict_layers": 1,
        "num_attention_heads": 128,
        "num_key_value_heads": 128,
        "n_shared_experts": 1,
        "n_routed_experts": 256,
        "routed_scaling_factor": 2.5,
        "kv_lora_rank": 512,
        "q_lora_rank": 1536,
        "qk_rope_head_dim": 64,
        "v_head_dim": 128,
        "qk_nope_head_dim": 128,
        "topk_method": "noaux_tc",
        "n_group": 8,
        "topk_group": 4,
        "num_experts_per_tok": 8,
        "moe_layer_freq": 1,
        "first_k_dense_replace": 3,
        "norm_topk_prob": True,
        "scoring_func": "sigmoid",
        "vocab_size": 129280,
        "max_position_embeddings": 163840,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "quantization_config": {
            "quant_method": "fp8",
            "fmt": "e4m3",
            "activation_scheme": "dynamic",
            "weight_block_size": [128, 128],
        },
    }


def deepseek_v3() -> Layout:
    """DeepSeek-V3 (671B): 61 layers (3 dense + 58 MoE) + MTP layer 61 in 163 files
    model-00001-of-000163 .. model-00163-of-000163. 91,991 tensors =
    316 BF16 + 45,867 F32 + 45,808 F8_E4M3."""
    c = deepseek_v3_config()
    H, V = c["hidden_size"], c["vocab_size"]
    nh = c["num_attention_heads"]
    qk_head = c["qk_nope_head_dim"] + c["qk_rope_head_dim"]
    blk = tuple(c["quantization_config"]["weight_block_size"])
    t: list[TensorSpec] = []

    def layer(li: int) -> None:
        p = f"model.layers.{li}"
        t.append((f"{p}.input_layernorm.weight", "BF16", (H,)))
        a = f"{p}.self_attn"
        _fp8_linear(t, f"{a}.q_a_proj", c["q_lora_rank"], H, blk)
        t.append((f"{a}.q_a_layernorm.weight", "BF16", (c["q_lora_rank"],)))
        _fp8_linear(t, f"{a}.q_b_proj", nh * qk_head, c["q_lora_rank"], blk)
        _fp8_linear(t, f"{a}.kv_a_proj_with_mqa", c["kv_lora_rank"] + c["qk_rope_head_dim"],
                    H, blk)
        t.append((f"{a}.kv_a_layernorm.weight", "BF16", (c["kv_lora_rank"],)))
        _fp8_linear(t, f"{a}.kv_b_proj", nh * (c["qk_nope_head_dim"] + c["v_head_dim"]),
                    c["kv_lora_rank"], blk)
        _fp8_linear(t, f"{a}.o_proj", H, nh * c["v_head_dim"], blk)
        t.append((f"{p}.post_attention_layernorm.weight", "BF16", (H,)))

        def mlp(prefix: str, inter: int) -> None:
            _fp8_linear(t, f"{prefix}.gate_proj", inter, H, blk)
            _fp8_linear(t, f"{prefix}.up_proj", inter, H, blk)
            _fp8_linear(t, f"{prefix}.down_proj", H, inter, blk)

        if li < c["first_k_dense_replace"]:
            mlp(f"{p}.mlp", c["intermediate_size"])
        else:
            E, mi = c["n_routed_experts"], c["moe_intermediate_size"]
            t.append((f"{p}.mlp.gate.weight", "BF16", (E, H)))
            t.append((f"{p}.mlp.gate.e_score_correction_bias", "F32", (E,)))
            for e in range(E):
                mlp(f"{p}.mlp.experts.{e}", mi)
            mlp(f"{p}.mlp.shared_experts", mi * c["n_shared_experts"])

    t.append(("model.embed_tokens.weight", "BF16", (V, H)))
    L = c["num_hidden_layers"]
    for li in range(L):
        layer(li)
    t.append(("model.norm.weight", "BF16", (H,)))
    t.append(("lm_head.weight", "BF16", (V, H)))
    for li in range(L, L + c["num_nextn_predict_layers"]):
        p = f"model.layers.{li}"
        t.append((f"{p}.embed_tokens.weight", "BF16", (V, H)))
        t.append((f"{p}.enorm.weight", "BF16", (H,)))
        t.append((f"{p}.hnorm.weight", "BF16", (H,)))
        t.append((f"{p}.eh_proj.weight", "BF16", (H, 2 * H)))
        layer(li)
        t.append((f"{p}.shared_head.norm.weight", "BF16", (H,)))
        t.append((f"{p}.shared_head.head.weight", "BF16", (V, H)))
    notes = (
        "MTP layer 61 holds embed_tokens, enorm, hnorm, eh_proj [7168, 14336] (BF16), a full "
        "MoE decoder layer, shared_head.norm and shared_head.head (BF16). Routers mlp.gate.weight "
        "BF16, e_score_correction_bias F32. Shards split evenly by bytes in this order "
        "(the real checkpoint's split differs)."
    )
    return build_layout(
        "deepseek_v3", t, c, n_shards=163,
        shard_name=lambda k, n: f"model-{k + 1:05d}-of-{n:06d}.safetensors", notes=notes,
    )


# --------------------------------------------------------------------------- Llama-3-8B BF16


def llama_bf16_config() -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 128256,
        "max_position_embeddings": 8192,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }


def llama_bf16() -> Layout:
    """Llama-3-8B shape, all BF16: 291 tensors, 4 shards (HF 5 GB sharding)."""
    c = llama_bf16_config()
    H, FF, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    hd = c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    t: list[TensorSpec] = [("model.embed_tokens.weight", "BF16", (V, H))]
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}"
        t += [
            (f"{p}.self_attn.q_proj.weight", "BF16", (q, H)),
            (f"{p}.self_attn.k_proj.weight", "BF16", (kv, H)),
            (f"{p}.self_attn.v_proj.weight", "BF16", (kv, H)),
            (f"{p}.self_attn.o_proj.weight", "BF16", (H, q)),
            (f"{p}.mlp.gate_proj.weight", "BF16", (FF, H)),
            (f"{p}.mlp.up_proj.weight", "BF16", (FF, H)),
            (f"{p}.mlp.down_proj.weight", "BF16", (H, FF)),
            (f"{p}.input_layernorm.weight", "BF16", (H,)),
            (f"{p}.post_attention_layernorm.weight", "BF16", (H,)),
        ]
    t += [("model.norm.weight", "BF16", (H,)), ("lm_head.weight", "BF16", (V, H))]
    return build_layout("llama_bf16", t, c, max_shard_bytes=5 * 10**9, shard_name=_hf_name)


# --------------------------------------------------------------------------- Qwen3-30B-A3B-FP8


def qwen3_moe_fp8_config() -> dict[str, Any]:
    return {
        "architectures": ["Qwen3MoeForCausalLM"],
        "model_type": "qwen3_moe",
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "moe_intermediate_size": 768,
        "num_hidden_layers": 48,
        "num_attention_heads": 32,
        "num_key_value_heads": 4,
        "head_dim": 128,
        "num_experts": 128,
        "num_experts_per_tok": 8,
        "decoder_sparse_step": 1,
        "mlp_only_layers": [],
        "norm_topk_prob": True,
        "vocab_size": 151936,
        "max_position_embeddings": 40960,
        "rms_norm_eps": 1e-06,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "quantization_config": {
            "quant_method": "fp8",
            "fmt": "e4m3",
            "activation_scheme": "dynamic",
            "weight_block_size": [128, 128],
        },
    }


def qwen3_moe_fp8() -> Layout:
    """Qwen3-30B-A3B-FP8 shape: 37,491 tensors = 243 BF16 + 18,624 F32 +
    18,624 F8_E4M3; HF sharding at 4 GB."""
    c = qwen3_moe_fp8_config()
    H, V, E, mi = c["hidden_size"], c["vocab_size"], c["num_experts"], c["moe_intermediate_size"]
    hd = c["head_dim"]
    q, kv = c["num_attention_heads"] * hd, c["num_key_value_heads"] * hd
    blk = tuple(c["quantization_config"]["weight_block_size"])
    t: list[TensorSpec] = [("model.embed_tokens.weight", "BF16", (V, H))]
    for li in range(c["num_hidden_layers"]):
        p = f"model.layers.{li}"
        _fp8_linear(t, f"{p}.self_attn.q_proj", q, H, blk)
        _fp8_linear(t, f"{p}.self_attn.k_proj", kv, H, blk)
        _fp8_linear(t, f"{p}.self_attn.v_proj", kv, H, blk)
        _fp8_linear(t, f"{p}.self_attn.o_proj", H, q, blk)
        t.append((f"{p}.self_attn.q_norm.weight", "BF16", (hd,)))
        t.append((f"{p}.self_attn.k_norm.weight", "BF16", (hd,)))
        t.append((f"{p}.mlp.gate.weight", "BF16", (E, H)))
        for e in range(E):
            _fp8_linear(t, f"{p}.mlp.experts.{e}.gate_proj", mi, H, blk)
            _fp8_linear(t, f"{p}.mlp.experts.{e}.up_proj", mi, H, blk)
            _fp8_linear(t, f"{p}.mlp.experts.{e}.down_proj", H, mi, blk)
        t.append((f"{p}.input_layernorm.weight", "BF16", (H,)))
        t.append((f"{p}.post_attention_layernorm.weight", "BF16", (H,)))
    t += [("model.norm.weight", "BF16", (H,)), ("lm_head.weight", "BF16", (V, H))]
    return build_layout("qwen3_moe_fp8", t, c, max_shard_bytes=4 * 10**9, shard_name=_hf_name)


LAYOUTS: dict[str, Callable[[], Layout]] = {
    "minimax_m2": minimax_m2,
    "deepseek_v3": deepseek_v3,
    "llama_bf16": llama_bf16,
    "qwen3_moe_fp8": qwen3_moe_fp8,
}
