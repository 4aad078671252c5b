"""Will it load: tensor-parallel readiness from the headers, on layouts whose
limits users hit (computed by hand below, per rank and per block), and the
--deep figures (power-of-two block scales, 0x80 codes in F8_E4M3 tensors)
against numbers counted here from the written files."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest
from ckptscan import scan
from ckptscan.findings import Severity
from ckptscan.replica import build_layout, scale_shape, write_replica
from ckptscan.testing import quant_layouts as QL

FP8_BLOCK = {"quant_method": "fp8", "fmt": "e4m3", "activation_scheme": "dynamic",
             "weight_block_size": [128, 128]}


def fp8(out: list[tuple[str, str, tuple[int, ...]]], name: str, *shape: int,
        suffix: str = ".weight") -> None:
    """An FP8 weight with its F32 128 x 128 block scales (stacks: per expert)."""
    out.append((name + suffix, "F8_E4M3", shape))
    scale = (*shape[:-2], *scale_shape(shape[-2:]))
    out.append((name + ("_scale_inv" if suffix == "" else ".weight_scale_inv"), "F32", scale))


def replica(tmp_path: Path, tensors: list[tuple[str, str, tuple[int, ...]]],
            config: dict[str, Any]) -> Path:
    layout = build_layout("tp", tensors, config, n_shards=1,
                          shard_name=lambda k, n: "model.safetensors")
    return write_replica(layout, tmp_path / "ckpt")


@pytest.mark.parametrize(("layers", "experts"), [(48, 256), (2, 8)])
def test_fused_moe_gate_up_640_wide(tmp_path: Path, layers: int, experts: int) -> None:
    """vllm #54178: experts 640 wide, fused gate+up [E, 2 x 640, H] with 128 x 128
    blocks. Per rank, gate and up hold 640 / TP rows each: 640 at TP 1 (5 blocks),
    320 at TP 2 (2.5 blocks): only TP 1 loads; down_proj's 640 inputs split the same.
    48 layers of 256 experts are 24.2 B parameters (a model served on 8 GPUs: the
    warning); 2 layers of 8 are a test model's 40 M (the same readiness, no warning)."""
    h, inter = 1024, 640
    t: list[tuple[str, str, tuple[int, ...]]] = [("model.embed_tokens.weight", "BF16", (512, h))]
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj, rows, cols in (("q_proj", 8 * 128, h), ("k_proj", 4 * 128, h),
                                 ("v_proj", 4 * 128, h), ("o_proj", h, 8 * 128)):
            fp8(t, f"{p}.self_attn.{proj}", rows, cols)
        fp8(t, f"{p}.mlp.experts.gate_up_proj", experts, 2 * inter, h, suffix="")
        fp8(t, f"{p}.mlp.experts.down_proj", experts, h, inter, suffix="")
        t += [(f"{p}.mlp.gate.weight", "BF16", (experts, h)),
              (f"{p}.input_layernorm.weight", "BF16", (h,))]
    config = {"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"],
              "hidden_size": h, "num_hidden_layers": layers, "num_attention_heads": 8,
              "num_key_value_heads": 4, "head_dim": 128, "moe_intermediate_size": inter,
              "num_experts": experts, "vocab_size": 512,
              "quantization_config": {**FP8_BLOCK, "modules_to_not_convert": ["mlp.gate"]}}
    report = scan(replica(tmp_path, t, config))
    tp = report.deployment.tensor_parallel
    assert tp == {"ok": [1], "max": 1, "limiting": ["model.layers.0.mlp.experts.down_proj",
                                                    "model.layers.0.mlp.experts.gate_up_proj"]}
    per_layer = experts * 3 * inter * h + h * (8 + 4 + 4 + 8) * 128 + experts * h + h
    assert report.total.parameters == layers * per_layer + 512 * h  # from the shapes
    warnings = [f for f in report.findings if f.severity >= Severity.WARNING]
    if report.total.parameters < 20_000_000_000:
        assert warnings == []
        return
    # 8 heads split 8 ways, so the blocks are what stops TP 8: a warning naming them
    (warn,) = warnings
    assert warn.code == "tensor-parallel-limit"
    assert warn.tensor == "model.layers.0.mlp.experts.down_proj"


def test_deepseek_r1_like_stops_at_16(tmp_path: Path) -> None:
    """sglang #3345: DeepSeek-R1 at TP 32. Per rank at 32: the dense MLP's 18432
    rows are 576 (4.5 blocks), the experts' and shared experts' 2048 are 64; at 16
    they are 1152 (9 blocks) and 128 (1 block). q_b (24576 = 128 heads x 192),
    kv_b (32768) and o_proj (16384 inputs) split into whole blocks up to 32; the
    low-rank q_a / kv_a projections are replicated, not split."""
    h, dense, moe, heads = 7168, 18432, 2048, 128
    t: list[tuple[str, str, tuple[int, ...]]] = [("model.embed_tokens.weight", "BF16",
                                                  (1024, h))]
    for i in range(2):
        p = f"model.layers.{i}"
        fp8(t, f"{p}.self_attn.q_a_proj", 1536, h)
        fp8(t, f"{p}.self_attn.q_b_proj", heads * 192, 1536)
        fp8(t, f"{p}.self_attn.kv_a_proj_with_mqa", 576, h)
        fp8(t, f"{p}.self_attn.kv_b_proj", heads * 256, 512)
        fp8(t, f"{p}.self_attn.o_proj", h, heads * 128)
        if i == 0:
            for proj, rows, cols in (("gate_proj", dense, h), ("up_proj", dense, h),
                                     ("down_proj", h, dense)):
                fp8(t, f"{p}.mlp.{proj}", rows, cols)
        else:
            for e in range(2):
                for proj, rows, cols in (("gate_proj", moe, h), ("up_proj", moe, h),
                                         ("down_proj", h, moe)):
                    fp8(t, f"{p}.mlp.experts.{e}.{proj}", rows, cols)
            for proj, rows, cols in (("gate_proj", moe, h), ("up_proj", moe, h),
                                     ("down_proj", h, moe)):
                fp8(t, f"{p}.mlp.shared_experts.{proj}", rows, cols)
            t.append((f"{p}.mlp.gate.weight", "BF16", (2, h)))
    config = {"model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
              "hidden_size": h, "num_hidden_layers": 2, "num_attention_heads": heads,
              "num_key_value_heads": heads, "intermediate_size": dense,
              "moe_intermediate_size": moe, "n_routed_experts": 2, "first_k_dense_replace": 1,
              "q_lora_rank": 1536, "kv_lora_rank": 512, "vocab_size": 1024,
              "quantization_config": FP8_BLOCK}
    report = scan(replica(tmp_path, t, config))
    tp = report.deployment.tensor_parallel
    assert tp is not None and tp["ok"] == [1, 2, 4, 8, 16] and tp["max"] == 16
    at_32 = {"model.layers.0.mlp.gate_proj.weight", "model.layers.0.mlp.up_proj.weight",
             "model.layers.0.mlp.down_proj.weight"}
    at_32 |= {f"model.layers.1.mlp.{m}.{p}.weight" for m in ("experts.0", "shared_experts")
              for p in ("gate_proj", "up_proj", "down_proj")}
    assert len(tp["limiting"]) == 5 and set(tp["limiting"]) <= at_32
    assert [f.code for f in report.findings if f.code == "tensor-parallel-limit"] == []


def test_group_quantized_row_parallel_inputs(tmp_path: Path) -> None:
    """A GPTQ down_proj of 11008 inputs in groups of 128 (Qwen-7B): 5504 per rank
    at TP 2 (43 groups), 2752 at TP 4 (21.5): TP 2 at most. Column-parallel layers
    split their outputs, which groups of inputs do not constrain."""
    h, inter = 4096, 11008
    t: list[tuple[str, str, tuple[int, ...]]] = []
    for proj, out, inp in (("gate_proj", inter, h), ("up_proj", inter, h),
                           ("down_proj", h, inter)):
        t += [(f"model.layers.0.mlp.{proj}.qweight", "I32", (inp // 8, out)),
              (f"model.layers.0.mlp.{proj}.qzeros", "I32", (math.ceil(inp / 128), out // 8)),
              (f"model.layers.0.mlp.{proj}.scales", "F16", (math.ceil(inp / 128), out)),
              (f"model.layers.0.mlp.{proj}.g_idx", "I32", (inp,))]
    config = {"model_type": "llama", "hidden_size": h, "num_hidden_layers": 1,
              "num_attention_heads": 32, "intermediate_size": inter,
              "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
                                      "desc_act": False, "sym": True}}
    report = scan(replica(tmp_path, t, config))
    assert report.deployment.tensor_parallel == {
        "ok": [1, 2], "max": 2, "limiting": ["model.layers.0.mlp.down_proj.qweight"]}
    # the 7 B class fits on one GPU: TP 2 at most is a figure, not a warning
    assert [f.code for f in report.findings if f.severity >= Severity.WARNING] == []


def test_nothing_block_quantized_has_no_tensor_parallel_figure(llama_replica: Path) -> None:
    assert scan(llama_replica).deployment.tensor_parallel is None


def _tensors(path: Path, dtype: str, suffix: str = "") -> list[np.ndarray]:
    """The bytes of every tensor of a dtype (names ending with ``suffix``), read by
    the format's definition: an 8-byte header length, the JSON header, the data."""
    out = []
    for f in sorted(path.glob("*.safetensors")):
        raw = f.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + n])
        for name, e in header.items():
            if name != "__metadata__" and e["dtype"] == dtype and name.endswith(suffix):
                b, end = e["data_offsets"]
                out.append(np.frombuffer(raw[8 + n + b:8 + n + end], np.uint8))
    return out


@pytest.mark.parametrize("scale_fmt", [None, "ue8m0"])
def test_deep_figures_pow2_scales_and_negative_zeros(tmp_path: Path,
                                                     scale_fmt: str | None) -> None:
    w = QL.write("hf-fp8-block", tmp_path / "ckpt", scale_fmt=scale_fmt)
    report = scan(w.path, deep=True)
    assert [f for f in report.findings if f.severity >= Severity.WARNING] == []
    d = report.deployment
    scales = np.concatenate([a.view(np.float32).astype(np.float64)
                             for a in _tensors(w.path, "F32", ".weight_scale_inv")])
    mant, _ = np.frexp(scales[scales > 0])
    pow2 = float((mant == 0.5).sum()) / scales.size
    assert d.block_scales_pow2 == pytest.approx(pow2, abs=1e-6)
    if scale_fmt == "ue8m0":
        assert d.block_scales_pow2 == 1.0
    neg_zero = sum(int((a == 0x80).sum()) for a in _tensors(w.path, "F8_E4M3"))
    assert d.e4m3_negative_zero == neg_zero > 0  # a cast of -0.0 weights writes 0x80


def test_header_scans_leave_the_deep_figures_out(tmp_path: Path) -> None:
    w = QL.write("hf-fp8-block", tmp_path / "ckpt")
    d = scan(w.path).deployment
    assert d.block_scales_pow2 is None and d.e4m3_negative_zero is None
    assert d.tensor_parallel is not None


def test_e4m3_negative_zero_counts_only_e4m3(tmp_path: Path) -> None:
    """0x80 is -0 in e4m3fn (NaN in e4m3fnuz): counted in F8_E4M3 tensors only."""
    from safetensors.numpy import save_file

    q = np.zeros((128, 128), np.uint8)
    q[0, :7] = 0x80
    e5 = np.zeros((4, 4), np.uint8)
    e5[0, 0] = 0x80
    save_file({"x.weight": q.view(ml_dtypes.float8_e4m3fn),
               "y.weight": e5.view(ml_dtypes.float8_e5m2)}, str(tmp_path / "m.safetensors"))
    report = scan(tmp_path / "m.safetensors", deep=True)
    assert report.deployment.e4m3_negative_zero == 7


def test_one_rank_always_loads_an_unfused_layer(tmp_path: Path) -> None:
    """At TP 1 nothing is split: a 192-wide projection with 128 x 128 blocks loads
    (its last block padded), and only larger TP sizes are limited (192 / 2 = 96)."""
    t: list[tuple[str, str, tuple[int, ...]]] = []
    for proj, rows, cols in (("q_proj", 192, 256), ("k_proj", 192, 256),
                             ("v_proj", 192, 256), ("o_proj", 256, 192)):
        fp8(t, f"model.layers.0.self_attn.{proj}", rows, cols)
    config = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 1,
              "num_key_value_heads": 2, "quantization_config": FP8_BLOCK}
    tp = scan(replica(tmp_path, t, config)).deployment.tensor_parallel
    assert tp is not None and tp["ok"] == [1] and tp["max"] == 1
