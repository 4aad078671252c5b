"""Sparse full-size replicas: checked against the real safetensors library and
against the facts in FORMAT-FACTS.md / seed-report.txt (numbers restated here)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import struct
from collections import Counter
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
import safetensors
import safetensors.numpy
from ckptscan import replica
from ckptscan.replica import (
    LAYOUTS,
    Entry,
    copy_replica,
    read_entries,
    rebuild_index,
    rewrite_shard,
    write_header_bytes,
    write_replica,
)
from safetensors import safe_open

BITS = {"BF16": 16, "F32": 32, "F8_E4M3": 8, "F16": 16, "I64": 64, "U8": 8, "F64": 64}


def parse_dir(d: Path) -> dict[str, dict]:
    """Independent pure-Python parse of every shard: json (not orjson), with the
    structural checks of the format."""
    out = {}
    for p in sorted(d.glob("*.safetensors")):
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            raw = f.read(n)
        assert n % 8 == 0 and raw.rstrip(b" ") == raw.rstrip()  # space padding only
        h = json.loads(raw)
        assert h.pop("__metadata__") == {"format": "pt"}
        pos = 0
        for name, e in sorted(h.items(), key=lambda kv: kv[1]["data_offsets"]):
            b, end = e["data_offsets"]
            assert b == pos, (p.name, name)
            assert end - b == math.prod(e["shape"]) * BITS[e["dtype"]] // 8
            pos = end
        assert p.stat().st_size == 8 + n + pos
        out[p.name] = h
    return out


def check_index(d: Path, headers: dict[str, dict]) -> None:
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    where = {t: f for f, h in headers.items() for t in h}
    assert idx["weight_map"] == where
    assert idx["metadata"]["total_size"] == sum(
        e["data_offsets"][1] - e["data_offsets"][0] for h in headers.values() for e in h.values()
    )


def check_with_library(path: Path, header: dict) -> None:
    with safe_open(str(path), "numpy") as f:
        assert sorted(f.keys()) == sorted(header)
        assert f.metadata() == {"format": "pt"}
        for k in header:
            sl = f.get_slice(k)
            assert sl.get_shape() == header[k]["shape"]
            assert sl.get_dtype() == header[k]["dtype"]


def disk_bytes(d: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in d.iterdir())


# ------------------------------------------------------------------ MiniMax-M2

SEED_FIRST_SCALES = [
    f"model.layers.0.block_sparse_moe.experts.{e}.{w}.weight_scale_inv"
    for e in (0, 1, 10, 100, 101)
    for w in ("w1", "w3")
]


@pytest.fixture(scope="module")
def minimax_headers(minimax_replica: Path) -> dict[str, dict]:
    return parse_dir(minimax_replica)


def test_minimax_totals(minimax_replica: Path, minimax_headers: dict[str, dict]) -> None:
    h = minimax_headers
    assert list(h) == [f"model-{k:05d}-of-00130.safetensors" for k in range(125)]
    dt = Counter(e["dtype"] for s in h.values() for e in s.values())
    assert sum(dt.values()) == 96_103
    assert dt == {"BF16": 251, "F32": 47_988, "F8_E4M3": 47_864}
    params = sum(math.prod(e["shape"]) for s in h.values() for e in s.values())
    assert round(params / 1e9, 1) == 228.7
    total = sum(p.stat().st_size for p in minimax_replica.glob("*.safetensors"))
    assert 213 * 2**30 < total < 216 * 2**30  # "214 GB"
    check_index(minimax_replica, h)
    assert disk_bytes(minimax_replica) < 64 * 2**20  # sparse


def test_minimax_shapes(minimax_headers: dict[str, dict]) -> None:
    allt = {k: (e["dtype"], e["shape"]) for s in minimax_headers.values() for k, e in s.items()}
    assert allt["model.embed_tokens.weight"] == ("BF16", [200064, 3072])
    assert allt["lm_head.weight"] == ("BF16", [200064, 3072])
    assert allt["model.norm.weight"] == ("BF16", [3072])
    # the seed report's layer-0 examples
    p = "model.layers.0."
    expect = {
        "self_attn.k_norm.weight": ("BF16", [1024]),
        "self_attn.k_proj.weight": ("F8_E4M3", [1024, 3072]),
        "self_attn.k_proj.weight_scale_inv": ("F32", [8, 24]),
        "self_attn.o_proj.weight": ("F8_E4M3", [3072, 6144]),
        "self_attn.o_proj.weight_scale_inv": ("F32", [24, 48]),
        "self_attn.q_norm.weight": ("BF16", [6144]),
        "self_attn.q_proj.weight": ("F8_E4M3", [6144, 3072]),
        "self_attn.q_proj.weight_scale_inv": ("F32", [48, 24]),
        "self_attn.v_proj.weight": ("F8_E4M3", [1024, 3072]),
        "self_attn.v_proj.weight_scale_inv": ("F32", [8, 24]),
        "block_sparse_moe.experts.0.w1.weight": ("F8_E4M3", [1536, 3072]),
        "block_sparse_moe.experts.0.w1.weight_scale_inv": ("F32", [12, 24]),
        "block_sparse_moe.experts.0.w2.weight": ("F8_E4M3", [3072, 1536]),
        "block_sparse_moe.experts.0.w2.weight_scale_inv": ("F32", [24, 12]),
        "block_sparse_moe.experts.0.w3.weight": ("F8_E4M3", [1536, 3072]),
        "block_sparse_moe.experts.0.w3.weight_scale_inv": ("F32", [12, 24]),
        "block_sparse_moe.gate.weight": ("F32", [256, 3072]),
        "block_sparse_moe.e_score_correction_bias": ("F32", [256]),
        "input_layernorm.weight": ("BF16", [3072]),
        "post_attention_layernorm.weight": ("BF16", [3072]),
    }
    for k, v in expect.items():
        assert allt[p + k] == v, k
    # every layer has the same 1,550 tensors; every FP8 weight its ceil-shaped scale
    per_layer = Counter(re.match(r"model\.layers\.(\d+)\.", k).group(1)  # type: ignore[union-attr]
                        for k in allt if k.startswith("model.layers."))
    assert per_layer == {str(i): 1550 for i in range(62)}
    for k, (d, s) in allt.items():
        if d == "F8_E4M3":
            assert allt[k + "_scale_inv"] == ("F32", [-(-s[0] // 128), -(-s[1] // 128)])
    assert not any("mtp" in k for k in allt)  # declared in config, absent in files


def test_minimax_seed_report_details(minimax_replica: Path,
                                     minimax_headers: dict[str, dict]) -> None:
    first = minimax_headers["model-00000-of-00130.safetensors"]
    assert [k for k in first if "weight_scale_inv" in k][:10] == SEED_FIRST_SCALES
    # layers and weight/scale pairs straddle shards somewhere
    where = {t: f for f, s in minimax_headers.items() for t in s}
    assert any(where[k] != where[k[: -len("_scale_inv")]] for k in where
               if k.endswith("_scale_inv"))
    cfg = json.loads((minimax_replica / "config.json").read_text())
    assert cfg["model_type"] == "minimax_m2"
    assert cfg["num_mtp_modules"] == 3 and cfg["use_mtp"] is True
    assert cfg["quantization_config"]["modules_to_not_convert"] == [
        "gate", "e_score_correction_bias", "lm_head"]


def test_minimax_library_reads(minimax_replica: Path, minimax_headers: dict[str, dict]) -> None:
    for k in (0, 61, 124):
        name = f"model-{k:05d}-of-00130.safetensors"
        check_with_library(minimax_replica / name, minimax_headers[name])
    # data reads back as zeros from the hole
    with safe_open(str(minimax_replica / "model-00000-of-00130.safetensors"), "numpy") as f:
        t = f.get_tensor("model.layers.0.block_sparse_moe.experts.0.w1.weight_scale_inv")
        assert t.shape == (12, 24) and t.dtype == np.float32 and not t.any()


def test_minimax_layout_object() -> None:
    lay = LAYOUTS["minimax_m2"]()
    assert lay.num_tensors == 96_103
    assert lay.dtype_counts() == {"BF16": 251, "F32": 47_988, "F8_E4M3": 47_864}
    assert len(lay.shard_names) == 125


# ------------------------------------------------------------------ DeepSeek-V3


def test_deepseek(deepseek_replica: Path) -> None:
    h = parse_dir(deepseek_replica)
    assert list(h) == [f"model-{k:05d}-of-000163.safetensors" for k in range(1, 164)]
    check_index(deepseek_replica, h)
    allt = {k: (e["dtype"], e["shape"]) for s in h.values() for k, e in s.items()}
    dt = Counter(d for d, _ in allt.values())
    # 3 dense layers x 20 + 58 MoE layers x 1558 + MTP layer (1558 + 6) + 3 = 91,991
    assert len(allt) == 91_991
    assert dt == {"BF16": 316, "F32": 45_867, "F8_E4M3": 45_808}
    a = "model.layers.5.self_attn."
    assert allt[a + "q_a_proj.weight"] == ("F8_E4M3", [1536, 7168])
    assert allt[a + "q_a_proj.weight_scale_inv"] == ("F32", [12, 56])
    assert allt[a + "q_b_proj.weight_scale_inv"] == ("F32", [192, 12])
    assert allt[a + "kv_a_proj_with_mqa.weight"] == ("F8_E4M3", [576, 7168])
    assert allt[a + "kv_a_proj_with_mqa.weight_scale_inv"] == ("F32", [5, 56])
    assert allt[a + "kv_b_proj.weight_scale_inv"] == ("F32", [256, 4])
    assert allt[a + "o_proj.weight_scale_inv"] == ("F32", [56, 128])
    assert allt[a + "kv_a_layernorm.weight"] == ("BF16", [512])
    assert allt["model.layers.2.mlp.gate_proj.weight"] == ("F8_E4M3", [18432, 7168])
    assert "model.layers.2.mlp.gate.weight" not in allt
    assert allt["model.layers.3.mlp.gate.weight"] == ("BF16", [256, 7168])
    assert allt["model.layers.3.mlp.gate.e_score_correction_bias"] == ("F32", [256])
    assert allt["model.layers.3.mlp.experts.255.down_proj.weight"] == ("F8_E4M3", [7168, 2048])
    assert allt["model.layers.3.mlp.shared_experts.up_proj.weight"] == ("F8_E4M3", [2048, 7168])
    m = "model.layers.61."
    assert allt[m + "eh_proj.weight"] == ("BF16", [7168, 14336])
    assert allt[m + "shared_head.head.weight"] == ("BF16", [129280, 7168])
    assert allt[m + "embed_tokens.weight"] == ("BF16", [129280, 7168])
    for n in ("enorm", "hnorm", "shared_head.norm"):
        assert allt[m + n + ".weight"] == ("BF16", [7168])
    assert "model.layers.62.input_layernorm.weight" not in allt
    params = sum(math.prod(s) for _, s in allt.values())
    assert 684e9 < params < 686e9  # "685B" incl. the MTP module
    cfg = json.loads((deepseek_replica / "config.json").read_text())
    assert "modules_to_not_convert" not in cfg["quantization_config"]
    assert cfg["num_hidden_layers"] == 61 and cfg["num_nextn_predict_layers"] == 1
    for k in (1, 163):
        name = f"model-{k:05d}-of-000163.safetensors"
        check_with_library(deepseek_replica / name, h[name])
    assert disk_bytes(deepseek_replica) < 64 * 2**20


# ------------------------------------------------------------------ Llama / Qwen3


def test_llama(llama_replica: Path) -> None:
    h = parse_dir(llama_replica)
    assert list(h) == [f"model-{k:05d}-of-00004.safetensors" for k in range(1, 5)]
    check_index(llama_replica, h)
    allt = {k: (e["dtype"], e["shape"]) for s in h.values() for k, e in s.items()}
    assert len(allt) == 291 and {d for d, _ in allt.values()} == {"BF16"}
    assert allt["model.layers.31.self_attn.k_proj.weight"] == ("BF16", [1024, 4096])
    assert allt["model.layers.0.mlp.down_proj.weight"] == ("BF16", [4096, 14336])
    assert sum(math.prod(s) for _, s in allt.values()) == 8_030_261_248  # Llama-3-8B
    for name in h:
        check_with_library(llama_replica / name, h[name])


def test_qwen3_moe_fp8(tmp_path: Path) -> None:
    d = write_replica("qwen3_moe_fp8", tmp_path / "q")
    h = parse_dir(d)
    check_index(d, h)
    allt = {k: (e["dtype"], e["shape"]) for s in h.values() for k, e in s.items()}
    assert len(allt) == 37_491
    assert Counter(d for d, _ in allt.values()) == {"BF16": 243, "F32": 18_624,
                                                    "F8_E4M3": 18_624}
    assert allt["model.layers.0.mlp.gate.weight"] == ("BF16", [128, 2048])
    assert allt["model.layers.0.mlp.experts.0.down_proj.weight_scale_inv"] == ("F32", [16, 6])
    assert allt["model.layers.0.self_attn.k_proj.weight_scale_inv"] == ("F32", [4, 16])
    assert json.loads((d / "config.json").read_text())["model_type"] == "qwen3_moe"
    first = sorted(h)[0]
    check_with_library(d / first, h[first])


# ------------------------------------------------------------------ writer fidelity


def test_header_bytes_equal_safetensors_writer(tmp_path: Path) -> None:
    """Our shard writer produces byte-for-byte the header the real library writes."""
    specs = [
        ("z.scale", "F32", (3, 5), np.float32),
        ("a.w", "F8_E4M3", (7, 9), ml_dtypes.float8_e4m3fn),
        ("m.norm", "BF16", (11,), ml_dtypes.bfloat16),
        ("b.idx", "I64", (2,), np.int64),
        ("c.half", "F16", (4, 4), np.float16),
        ("k.bytes", "U8", (13,), np.uint8),
        ("s.scalar", "F32", (), np.float32),
        ("e.empty", "BF16", (0, 3), ml_dtypes.bfloat16),
    ]
    ref = tmp_path / "ref.safetensors"
    safetensors.numpy.save_file({n: np.zeros(s, t) for n, _, s, t in specs}, str(ref),
                                metadata={"format": "pt"})
    lay = replica.Layout("t", [(n, d, s) for n, d, s, _ in specs], [0] * len(specs),
                         ["mine.safetensors"], {})
    write_replica(lay, tmp_path / "r")
    assert (tmp_path / "r" / "mine.safetensors").read_bytes() == ref.read_bytes()


# ------------------------------------------------------------------ fault planting


def test_rewrite_shard_faults(tmp_path: Path) -> None:
    d = write_replica("llama_bf16", tmp_path / "l")
    s1, s2 = d / "model-00001-of-00004.safetensors", d / "model-00002-of-00004.safetensors"
    size1 = s1.stat().st_size
    victim = "model.layers.0.mlp.up_proj.weight"

    rewrite_shard(s1, lambda es: [e for e in es if e.name != victim])
    with safe_open(str(s1), "numpy") as f:
        assert victim not in set(f.keys())
    # size shrank by the tensor's bytes (up to header length change)
    assert size1 - s1.stat().st_size > 14336 * 4096 * 2 - 200

    rewrite_shard(s1, lambda es: [dataclasses.replace(e, shape=(14336, 4095))
                                  if e.name == "model.layers.0.mlp.gate_proj.weight" else e
                                  for e in es])
    with safe_open(str(s1), "numpy") as f:
        assert f.get_slice("model.layers.0.mlp.gate_proj.weight").get_shape() == [14336, 4095]

    dup = Entry("model.embed_tokens.weight", "BF16", (128256, 4096))
    rewrite_shard(s2, lambda es: [*es, dup], sort=True)
    ents, meta = read_entries(s2)
    assert dup in ents and meta == {"format": "pt"}
    assert [e.name for e in ents] == [e.name for e in replica.writer_order(ents)]
    parse_dir(d)  # both files are still structurally valid

    rebuild_index(d)
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    assert victim not in idx["weight_map"]


def test_rewrite_shard_keep_data(tmp_path: Path) -> None:
    p = tmp_path / "x.safetensors"
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(5, dtype=np.int64)
    c = np.full(7, 3, np.uint8)
    safetensors.numpy.save_file({"a": a, "b": b, "c": c}, str(p))
    rewrite_shard(p, lambda es: [e for e in es if e.name != "b"], keep_data=True)
    got = safetensors.numpy.load_file(str(p))
    assert set(got) == {"a", "c"}
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["c"], c)


def test_truncate_and_bad_length(tmp_path: Path) -> None:
    d = write_replica("llama_bf16", tmp_path / "l")
    s = d / "model-00004-of-00004.safetensors"
    os.truncate(s, s.stat().st_size - 1)
    with pytest.raises(Exception, match="(?i)incomplete|not fully covered"):
        safe_open(str(s), "numpy")
    bad = write_header_bytes(tmp_path / "bad.safetensors", b'{"__metadata__":{}}     ', 0,
                             length=10**9)
    with pytest.raises(Exception, match="(?i)header"):
        safe_open(str(bad), "numpy")


def test_copy_replica_stays_sparse(llama_replica: Path, tmp_path: Path) -> None:
    d = copy_replica(llama_replica, tmp_path / "c")
    for p in llama_replica.iterdir():
        q = d / p.name
        assert q.stat().st_size == p.stat().st_size
    assert parse_dir(d) == parse_dir(llama_replica)
    assert disk_bytes(d) < 4 * 2**20
