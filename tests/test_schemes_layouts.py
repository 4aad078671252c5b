"""Layouts: stored names, companion dtypes and shapes for several weight shapes
(multiples of the block / group and not), logical shapes of packed containers,
parameters, bits per weight. Expected values are computed here from the formats'
definitions (ceil divisions, bits / values per container), not read back from
the declarations."""

from __future__ import annotations

import math
from typing import Any

import pytest
from ckptscan import schemes as S
from scheme_configs import (
    AWQ,
    BNB,
    DEEPSEEK_V4_Q,
    GPT_OSS,
    GPTQ,
    MINIMAX,
    MLX,
    MODELOPT_HQ,
    W4A16,
)

SHAPES = [(1536, 3072), (3072, 1536), (300, 200), (129, 127), (128, 128), (7, 4096)]


def det_of(config: dict[str, Any] | None, hq: dict[str, Any] | None = None) -> S.Detection:
    det = S.detect(config, hq)
    assert det is not None
    return det


def only(det: S.Detection, name: str, dtype: str) -> S.Layout:
    lay = det.layout_for(name, dtype)
    assert lay is not None, (name, dtype)
    return lay


def group_of(det: S.Detection, module: str) -> str:
    g = det.target(module).group
    assert g is not None, module
    return g.name


def companion(lay: S.Layout, suffix: str) -> S.Companion:
    return next(c for c in lay.companions if c.suffix == suffix)


# ---- HF fine-grained FP8 ----------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
def test_hf_fp8_block_scale_shape(shape: tuple[int, int]) -> None:
    det = det_of({"quantization_config": MINIMAX})
    name = "model.layers.{}.block_sparse_moe.experts.{}.w1.weight"
    lay = only(det, name, "F8_E4M3")
    assert lay.logical_shape(shape) == shape
    assert lay.parameters(shape) == shape[0] * shape[1]
    c = companion(lay, ".weight_scale_inv")
    want = (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
    assert c.expected_shapes(shape) == (want,)
    assert c.shape_ok(want, shape)
    assert not c.shape_ok((shape[0] // 128, shape[1] // 128), shape) or shape[0] % 128 == 0 == \
        shape[1] % 128
    assert lay.companion_name(lay.weight_stem(name) or "", c) == name[:-6] + "weight_scale_inv"
    assert c.dtype_ok("F32") and c.dtype_ok("BF16") and c.dtype_ok("F16")
    assert not c.dtype_ok("F8_E8M0")  # only with scale_fmt ue8m0
    assert not c.is_parameter


def test_hf_fp8_ue8m0_accepts_e8m0_scales_and_other_blocks() -> None:
    det = det_of({"quantization_config": {**MINIMAX, "scale_fmt": "ue8m0",
                                          "weight_block_size": [64, 32]}})
    lay = only(det, "x.weight", "F8_E4M3")
    c = companion(lay, ".weight_scale_inv")
    assert c.dtype_ok("F8_E8M0")
    assert c.expected_shapes((100, 100)) == ((2, 4),)
    assert lay.scale_format == "UE8M0" and str(lay.granularity) == "64x32 block"


def test_hf_fp8_per_tensor() -> None:
    det = det_of({"quantization_config": {**MINIMAX, "weight_block_size": None}})
    lay = only(det, "model.layers.{}.self_attn.q_proj.weight", "F8_E4M3")
    assert companion(lay, ".weight_scale_inv").expected_shapes((512, 256)) == ((), (1,))
    assert str(lay.granularity) == "per tensor"
    fused = only(det, "model.layers.{}.mlp.experts.gate_up_proj", "F8_E4M3")
    assert companion(fused, "_scale_inv").shape_ok((8, 1, 1), (8, 384, 256))


@pytest.mark.parametrize(("e", "rows", "cols"), [(8, 384, 256), (128, 1536, 2048), (4, 130, 70)])
def test_hf_fp8_fused_experts(e: int, rows: int, cols: int) -> None:
    det = det_of({"quantization_config": MINIMAX})
    name = "model.layers.{}.mlp.experts.gate_up_proj"
    lay = only(det, name, "F8_E4M3")
    assert lay.param_style
    assert lay.module_of(lay.weight_stem(name) or "") == "model.layers.{}.mlp.experts"
    c = companion(lay, "_scale_inv")
    assert lay.companion_name(name, c) == name + "_scale_inv"
    assert c.expected_shapes((e, rows, cols)) == ((e, math.ceil(rows / 128),
                                                   math.ceil(cols / 128)),)
    assert det.parameters(name, "F8_E4M3", (e, rows, cols)) == e * rows * cols
    assert det.parameters(name + "_scale_inv", "F32", (e, 3, 2)) == 0
    # a BF16 fused stack (left unquantized) is not this layout
    assert det.layout_for(name, "BF16") is None
    assert det.parameters(name, "BF16", (e, rows, cols)) == e * rows * cols


# ---- DeepSeek-V4 ---------------------------------------------------------------------------------

def test_deepseek_v4_dense_and_fp4_experts() -> None:
    det = det_of({"expert_dtype": "fp4", "quantization_config": DEEPSEEK_V4_Q})
    dense = only(det, "layers.{}.attn.wq_a.weight", "F8_E4M3")
    scale = companion(dense, ".scale")
    assert scale.dtypes[0] == "F8_E8M0"
    assert scale.expected_shapes((1536, 7168)) == ((12, 56),)
    assert scale.expected_shapes((1000, 300)) == ((8, 3),)
    expert = "layers.{}.ffn.experts.{}.w1.weight"
    fp4 = only(det, expert, "I8")
    for out, packed in ((3072, 3584), (2048, 3584), (100, 48)):
        logical = fp4.logical_shape((out, packed))
        assert logical == (out, 2 * packed)
        assert companion(fp4, ".scale").expected_shapes(logical) == ((out, math.ceil(
            2 * packed / 32)),)
        assert det.parameters(expert, "I8", (out, packed)) == out * packed * 2
    assert det.parameters("layers.{}.ffn.experts.{}.w1.scale", "F8_E8M0", (3072, 224)) == 0
    # routed experts go to the fp4 group, shared experts and attention to the fp8 one
    assert group_of(det, "layers.3.ffn.experts.17.w2") == "routed-experts"
    assert group_of(det, "layers.3.ffn.shared_experts.w2") == "dense"
    assert det.target("layers.3.ffn.gate").excluded_by is not None
    assert fp4.packing.order == "low-nibble-first"


def test_deepseek_v4_fp8_experts_are_dense_layouts() -> None:
    det = det_of({"expert_dtype": "fp8", "quantization_config": DEEPSEEK_V4_Q})
    lay = only(det, "layers.{}.ffn.experts.{}.w1.weight", "F8_E4M3")
    assert lay.weight_format == "E4M3" and det.layout_for("layers.0.ffn.experts.0.w1.weight",
                                                          "I8") is None


# ---- compressed-tensors ------------------------------------------------------------------------

def ct(weights: dict[str, Any], fmt: str, inputs: dict[str, Any] | None = None,
       **extra: Any) -> S.Detection:
    group = {"targets": ["Linear"], "weights": weights, "input_activations": inputs}
    return det_of({"quantization_config": {"quant_method": "compressed-tensors", "format": fmt,
                                           "config_groups": {"group_0": group},
                                           "ignore": ["lm_head"], **extra}})


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize(("strategy", "extra", "want"), [
    ("tensor", {}, lambda o, i: [(1,), ()]),
    ("channel", {}, lambda o, i: [(o, 1)]),
    ("group", {"group_size": 128}, lambda o, i: [(o, math.ceil(i / 128))]),
    ("block", {"block_structure": [128, 128]},
     lambda o, i: [(math.ceil(o / 128), math.ceil(i / 128))]),
])
def test_ct_float_quantized_scale_by_strategy(shape: tuple[int, int], strategy: str,
                                              extra: dict[str, Any], want: Any) -> None:
    det = ct({"num_bits": 8, "type": "float", "strategy": strategy, **extra}, "float-quantized",
             {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True})
    lay = only(det, "model.layers.{}.mlp.down_proj.weight", "F8_E4M3")
    c = companion(lay, ".weight_scale")
    assert sorted(c.expected_shapes(shape)) == sorted(want(*shape))
    assert c.dtypes == ("BF16", "F16", "F32")  # the weight's original dtype
    assert [x.suffix for x in lay.companions] == [".weight_scale"]  # dynamic inputs: nothing


def test_ct_static_fp8_input_scale_and_asymmetric_int8() -> None:
    det = ct({"num_bits": 8, "type": "float", "strategy": "tensor"}, "float-quantized",
             {"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False})
    lay = only(det, "x.weight", "F8_E4M3")
    inp = companion(lay, ".input_scale")
    assert inp.kind == S.INPUT_SCALE and inp.fused_equal and inp.expected_shapes((8, 8)) == (
        (1,), ())
    det = ct({"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": False},
             "int-quantized", {"num_bits": 8, "type": "int", "strategy": "token", "dynamic": True})
    lay = only(det, "x.weight", "I8")
    zp = companion(lay, ".weight_zero_point")
    assert zp.dtypes == ("I8",) and zp.expected_shapes((300, 200)) == ((300, 1),)


@pytest.mark.parametrize(("out", "inp", "bits", "group"), [
    (4096, 4096, 4, 128), (14336, 4096, 4, 128), (4096, 14336, 4, 128), (100, 300, 4, 128),
    (4096, 4096, 8, 128), (512, 256, 2, 64), (96, 320, 4, 32)])
def test_ct_pack_quantized(out: int, inp: int, bits: int, group: int) -> None:
    det = ct({"num_bits": bits, "type": "int", "strategy": "group", "group_size": group,
              "symmetric": False, "actorder": "group"}, "pack-quantized")
    name = "model.layers.{}.self_attn.q_proj.weight_packed"
    lay = only(det, name, "I32")
    stored = (out, math.ceil(inp * bits / 32))
    logical = lay.logical_shape(stored)
    assert logical is not None and logical[0] == out
    assert inp <= logical[1] < inp + 32 // bits  # a packed row's capacity
    assert companion(lay, ".weight_scale").expected_shapes(logical) == (
        (out, math.ceil(inp / group)),)
    assert companion(lay, ".weight_shape").expected_shapes(logical) == ((2,),)
    assert companion(lay, ".weight_shape").dtypes == ("I64", "I32")
    assert companion(lay, ".weight_g_idx").expected_shapes(logical) == ((logical[1],),)
    zp = companion(lay, ".weight_zero_point")
    assert zp.shape_ok((math.ceil(out * bits / 32), math.ceil(inp / group)), logical)
    assert zp.shape_ok((out, math.ceil(inp / group)), logical)  # before compressed-tensors #296
    assert det.parameters(name, "I32", stored) == out * (stored[1] * 32 // bits)
    assert det.parameters(name.replace("packed", "shape"), "I64", (2,)) == 0
    assert det.parameters(name.replace("packed", "g_idx"), "I32", (inp,)) == 0


def test_ct_nvfp4_mxfp4_mxfp8() -> None:
    nv = ct({"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
             "scale_dtype": "torch.float8_e4m3fn"}, "nvfp4-pack-quantized",
            {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
             "dynamic": "local"})
    lay = only(nv, "x.weight_packed", "U8")
    assert lay.logical_shape((4096, 2048)) == (4096, 4096)
    assert companion(lay, ".weight_scale").expected_shapes((4096, 4096)) == ((4096, 256),)
    assert companion(lay, ".weight_scale").dtypes == ("F8_E4M3",)
    assert companion(lay, ".weight_global_scale").fused_equal
    assert companion(lay, ".input_global_scale").expected_shapes((8, 32)) == ((1,), ())
    assert str(lay.granularity) == "group of 16 + per-tensor global"
    mx4 = ct({"num_bits": 4, "type": "float", "strategy": "group", "group_size": 32,
              "scale_dtype": "torch.uint8"}, "mxfp4-pack-quantized")
    lay = only(mx4, "x.weight_packed", "U8")
    assert companion(lay, ".weight_scale").expected_shapes((2880, 2880)) == ((2880, 90),)
    assert lay.scale_format == "E8M0" and lay.weight_format == "E2M1"
    mx8 = ct({"num_bits": 8, "type": "float", "strategy": "group", "group_size": 32,
              "scale_dtype": "torch.uint8"}, "mxfp8-quantized")
    lay = only(mx8, "x.weight", "F8_E4M3")
    assert companion(lay, ".weight_scale").dtypes == ("U8",)
    assert companion(lay, ".weight_scale").expected_shapes((64, 96)) == ((64, 3),)


def test_ct_several_config_groups_with_their_own_targets() -> None:
    groups = {
        "group_0": {"targets": ["re:.*self_attn\\.(q|k|v|o)_proj$"], "format": "float-quantized",
                    "weights": {"num_bits": 8, "type": "float", "strategy": "channel"}},
        "group_1": {"targets": ["re:.*mlp\\.(gate|up|down)_proj$"], "format": "pack-quantized",
                    "weights": {"num_bits": 4, "type": "int", "group_size": 128}},
        "group_2": {"targets": ["model.layers.0.mlp.down_proj"], "format": "pack-quantized",
                    "weights": {"num_bits": 8, "type": "int", "group_size": 64}},
    }
    det = det_of({"quantization_config": {"quant_method": "compressed-tensors",
                                          "format": "mixed-precision", "config_groups": groups,
                                          "ignore": ["lm_head"]}})
    assert group_of(det, "model.layers.3.self_attn.k_proj") == "group_0"
    assert group_of(det, "model.layers.3.mlp.down_proj") == "group_1"
    # an exact name is more specific than a regex
    t = det.target("model.layers.0.mlp.down_proj")
    assert t.group is not None and t.group.name == "group_2" and t.target is not None
    assert t.target.rule == "exact"
    w8 = det.layout_for("model.layers.0.mlp.down_proj.weight_packed", "I32")
    assert w8 is not None and w8.weight_format == "INT8"
    assert w8.logical_shape((256, 128)) == (256, 512)  # 4 int8 per I32 word
    w4 = det.layout_for("model.layers.1.mlp.down_proj.weight_packed", "I32")
    assert w4 is not None and w4.logical_shape((256, 64)) == (256, 512)
    assert not det.target("lm_head").quantized


def test_ct_preset_group_by_name_and_kv_cache() -> None:
    det = det_of({"quantization_config": {
        "quant_method": "compressed-tensors", "format": "pack-quantized",
        "config_groups": {"W4A16": ["Linear"]}, "ignore": ["lm_head"],
        "kv_cache_scheme": {"num_bits": 8, "type": "float", "strategy": "tensor",
                            "dynamic": False}}})
    lay = only(det, "x.weight_packed", "I32")
    assert lay.weight_format == "INT4" and str(lay.granularity) == "group of 128"
    extra = det.extra_of("model.layers.{}.self_attn.k_scale")
    assert extra is not None and extra[1] == "model.layers.{}.self_attn"
    assert extra[0].kind == S.KV_SCALE and extra[0].shapes == ((1,), ())
    assert det.extra_of("model.layers.{}.mlp.k_scale") is None
    assert det.parameters("model.layers.{}.self_attn.v_scale", "BF16", (1,)) == 0


# ---- ModelOpt ----------------------------------------------------------------------------------

def mo(algo: str, **quant: Any) -> S.Detection:
    return det_of(None, {"producer": {"name": "modelopt"},
                         "quantization": {"quant_algo": algo, **quant}})


def test_modelopt_nvfp4() -> None:
    det = mo("NVFP4", group_size=16, exclude_modules=["lm_head"])
    lay = only(det, "model.layers.{}.mlp.up_proj.weight", "U8")
    assert lay.logical_shape((14336, 2048)) == (14336, 4096)
    assert companion(lay, ".weight_scale").expected_shapes((14336, 4096)) == ((14336, 256),)
    assert companion(lay, ".weight_scale").dtypes == ("F8_E4M3",)
    ws2 = companion(lay, ".weight_scale_2")
    assert ws2.kind == S.GLOBAL_SCALE and ws2.fused_equal and ws2.expected_shapes((8, 32)) == (
        (), (1,))
    assert companion(lay, ".input_scale").fused_equal
    w4a16 = only(mo("W4A16_NVFP4"), "x.weight", "U8")
    assert ".input_scale" not in [c.suffix for c in w4a16.companions]


def test_fused_companions() -> None:
    assert mo("NVFP4").fused_companions() == (".weight_scale_2", ".input_scale")
    assert mo("W4A16_NVFP4").fused_companions() == (".weight_scale_2",)
    assert det_of({"quantization_config": W4A16}).fused_companions() == ()
    nv = ct({"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16},
            "nvfp4-pack-quantized", {"num_bits": 4, "type": "float",
                                     "strategy": "tensor_group", "group_size": 16,
                                     "dynamic": "local"})
    assert nv.fused_companions() == (".weight_global_scale", ".input_global_scale")


def test_modelopt_nvfp4_expert_stacks() -> None:
    # BMM-style experts (Llama4, gpt-oss) keep [E, out, in] stacks: one weight_scale_2 per
    # expert, or one for the stack
    lay = only(mo("NVFP4"), "m.experts.gate_up_proj.weight", "U8")
    logical = lay.logical_shape((8, 256, 64))
    assert logical == (8, 256, 128)
    assert companion(lay, ".weight_scale").expected_shapes(logical) == ((8, 256, 8),)
    ws2 = companion(lay, ".weight_scale_2")
    assert all(ws2.shape_ok(s, logical) for s in ((8,), (8, 1), (8, 1, 1), (), (1,)))
    assert not ws2.shape_ok((4,), logical)


def test_modelopt_fp8_variants() -> None:
    fp8 = only(mo("FP8"), "x.weight", "F8_E4M3")
    assert [c.suffix for c in fp8.companions] == [".weight_scale", ".input_scale"]
    assert companion(fp8, ".weight_scale").expected_shapes((64, 64)) == ((), (1,))
    pc = only(mo("FP8_PER_CHANNEL_PER_TOKEN"), "x.weight", "F8_E4M3")
    assert companion(pc, ".weight_scale").expected_shapes((300, 64)) == ((300,), (300, 1))
    mx8 = only(mo("MXFP8"), "x.weight", "F8_E4M3")
    assert companion(mx8, ".weight_scale").expected_shapes((256, 512)) == ((256, 16),)


def test_modelopt_fp8_pb_wo_two_conventions() -> None:
    det = mo("FP8_PB_WO")
    rank4, rank2 = det.groups[0].layouts
    assert companion(rank4, ".weight_scale").expected_shapes((300, 512)) == ((3, 1, 4, 1),)
    assert companion(rank2, ".weight_scale_inv").expected_shapes((300, 512)) == ((3, 4),)
    assert "vLLM" in rank4.convention and "#54126" in rank2.convention
    have_inv = {"a.weight_scale_inv"}
    chosen = det.layout_for("a.weight", "F8_E4M3", have=have_inv.__contains__)
    assert chosen is rank2
    have_rank4 = {"a.weight_scale"}
    assert det.layout_for("a.weight", "F8_E4M3", have=have_rank4.__contains__) is rank4


def test_modelopt_mixed_precision_targets_exact_layers() -> None:
    det = mo("MIXED_PRECISION", quantized_layers={
        "model.layers.0.self_attn.q_proj": {"quant_algo": "FP8"},
        "model.layers.0.mlp.up_proj": {"quant_algo": "NVFP4", "group_size": 16}})
    assert group_of(det, "model.layers.0.self_attn.q_proj") == "FP8"
    assert group_of(det, "model.layers.0.mlp.up_proj") == "NVFP4-g16"
    assert not det.target("model.layers.1.mlp.up_proj").quantized
    assert det.target_template("model.layers.{}.mlp.up_proj") is None  # varies with the layer
    assert det.layout_for("model.layers.0.mlp.up_proj.weight", "U8") is not None


def test_modelopt_kv_scales_sit_on_k_and_v_proj() -> None:
    det = mo("FP8", kv_cache_quant_algo="FP8")
    assert det.extra_of("model.layers.{}.self_attn.k_proj.k_scale") is not None
    assert det.extra_of("model.layers.{}.self_attn.q_proj.k_scale") is None
    assert det.extra_of("model.layers.{}.self_attn.v_proj.v_scale") is not None


# ---- gpt-oss -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("e", "rows", "hidden"), [(32, 5760, 2880), (128, 2880, 2880),
                                                   (4, 128, 64)])
def test_gpt_oss_blocks_and_scales(e: int, rows: int, hidden: int) -> None:
    det = det_of({"quantization_config": GPT_OSS})
    name = "model.layers.{}.mlp.experts.gate_up_proj_blocks"
    lay = only(det, name, "U8")
    blocks = (e, rows, hidden // 32, 16)
    logical = lay.logical_shape(blocks)
    assert logical == (e, rows, hidden)
    sc = companion(lay, "_scales")
    assert sc.expected_shapes(logical) == (blocks[:-1],)  # blocks.shape[:-1] == scales.shape
    assert lay.companion_name(lay.weight_stem(name) or "", sc) == \
        "model.layers.{}.mlp.experts.gate_up_proj_scales"
    assert lay.module_of(lay.weight_stem(name) or "") == "model.layers.{}.mlp.experts"
    assert det.parameters(name, "U8", blocks) == e * rows * hidden
    assert det.parameters(name.replace("blocks", "scales"), "U8", blocks[:-1]) == 0
    assert det.parameters("model.layers.{}.mlp.experts.gate_up_proj_bias", "BF16", (e, rows)) == \
        e * rows
    # a block that is not 16 bytes cannot pair with its scales
    odd = lay.logical_shape((e, rows, hidden // 32, 8))
    assert odd is not None and not sc.shape_ok(blocks[:-1], odd)


# ---- recognised schemes ------------------------------------------------------------------------

def test_gptq_qweight_is_packed_along_the_input() -> None:
    det = det_of({"quantization_config": GPTQ})
    lay = only(det, "model.layers.{}.mlp.down_proj.qweight", "I32")
    stored = (14336 * 4 // 32, 4096)  # [in * bits / 32, out]
    logical = lay.logical_shape(stored)
    assert logical == (4096, 14336)
    assert companion(lay, ".scales").expected_shapes(logical) == ((112, 4096),)
    assert companion(lay, ".qzeros").expected_shapes(logical) == ((112, 512),)
    assert companion(lay, ".g_idx").expected_shapes(logical) == ((14336,),)
    assert not companion(lay, ".g_idx").required
    assert det.parameters("model.layers.{}.mlp.down_proj.qweight", "I32", stored) == 4096 * 14336
    assert det.parameters("model.layers.{}.mlp.down_proj.qzeros", "I32", (112, 512)) == 0
    assert not det.target("lm_head").quantized
    det8 = det_of({"quantization_config": {**GPTQ, "bits": 8, "group_size": -1, "lm_head": True}})
    lay8 = only(det8, "lm_head.qweight", "I32")
    assert lay8.logical_shape((1024, 4096)) == (4096, 4096)
    assert companion(lay8, ".scales").expected_shapes((4096, 4096)) == ((1, 4096),)
    assert det8.target("lm_head").quantized


def test_awq_gemm() -> None:
    det = det_of({"quantization_config": AWQ})
    lay = only(det, "x.qweight", "I32")
    assert lay.packing.order == "awq-interleaved"
    logical = lay.logical_shape((4096, 14336 // 8))  # [in, out * bits / 32]
    assert logical == (14336, 4096)
    assert companion(lay, ".scales").expected_shapes(logical) == ((32, 14336),)
    assert companion(lay, ".qzeros").expected_shapes(logical) == ((32, 1792),)


def test_bitsandbytes_4bit_counts_the_flattened_values() -> None:
    det = det_of({"quantization_config": BNB})
    lay = only(det, "model.layers.{}.mlp.up_proj.weight", "U8")
    n = 14336 * 4096
    stored = (n // 2, 1)
    assert lay.logical_shape(stored) == (n,)
    assert det.parameters("model.layers.{}.mlp.up_proj.weight", "U8", stored) == n
    absmax = companion(lay, ".weight.absmax")
    assert absmax.dtypes == ("U8", "F32") and absmax.shape_ok((n // 64,), (n,))
    assert companion(lay, ".weight.nested_quant_map").shape_ok((256,), (n,))
    state = "model.layers.{}.mlp.up_proj.weight.quant_state.bitsandbytes__nf4"
    roles = det.companion_roles(state)
    assert roles and roles[0].stem == "model.layers.{}.mlp.up_proj"
    assert det.parameters(state, "U8", (120,)) == 0
    assert det.parameters("model.layers.{}.mlp.up_proj.weight.absmax", "U8", (n // 64,)) == 0
    assert lay.weight_format == "NF4"
    det8 = det_of({"quantization_config": {**BNB, "load_in_4bit": False, "load_in_8bit": True}})
    lay8 = only(det8, "x.weight", "I8")
    assert companion(lay8, ".SCB").expected_shapes((300, 200)) == ((300,),)


def test_mlx_u32_weights_and_per_module_overrides() -> None:
    q = {**MLX, "model.layers.0.mlp.down_proj": {"group_size": 32, "bits": 8},
         "model.layers.1.mlp.gate": False}
    det = det_of({"quantization": q})
    lay = only(det, "model.layers.{}.self_attn.q_proj.weight", "U32")
    assert lay.logical_shape((4096, 512)) == (4096, 4096)
    assert companion(lay, ".scales").expected_shapes((4096, 4096)) == ((4096, 64),)
    assert companion(lay, ".biases").kind == S.OFFSET
    t = det.target("model.layers.0.mlp.down_proj")
    assert t.group is not None and t.group.layouts[0].weight_format == "INT8"
    assert t.group.layouts[0].logical_shape((64, 128)) == (64, 512)
    assert det.target("model.embed_tokens", "embedding").quantized  # MLX quantizes embeddings
    gate = det.target("model.layers.1.mlp.gate")
    assert gate.excluded_by is not None and gate.excluded_by.entry == "model.layers.1.mlp.gate"
    mx = det_of({"quantization": {"mode": "mxfp4", "group_size": 32, "bits": 4}})
    mx_lay = only(mx, "x.weight", "U32")
    assert [c.suffix for c in mx_lay.companions] == [".scales"] and mx_lay.weight_format == "E2M1"


def test_torchao_names_and_counts() -> None:
    import json
    meta = {"tensor_names": json.dumps(["m.q_proj.weight", "m.k_proj.weight"]),
            "m.q_proj.weight": json.dumps({"_type": "Int4Tensor", "_tensor_data_names": [
                "qdata", "scale", "zero_point"]}),
            "m.k_proj.weight": json.dumps({"_type": "Float8Tensor"})}
    det = S.detect(None, metadata=meta)
    assert det is not None
    int4 = only(det, "m.q_proj._weight_qdata", "U8")
    assert int4.module_of(int4.weight_stem("m.q_proj._weight_qdata") or "") == "m.q_proj"
    assert det.parameters("m.q_proj._weight_qdata", "U8", (256, 128)) == 256 * 256
    assert det.parameters("m.k_proj._weight_qdata", "F8_E4M3", (256, 256)) == 256 * 256
    assert det.parameters("m.q_proj._weight_scale", "BF16", (2, 256)) == 0
    assert det.parameters("m.q_proj._weight_zero_point", "BF16", (2, 256)) == 0
    roles = det.companion_roles("m.q_proj._weight_zero_point")
    assert any(r.stem == "m.q_proj._weight" for r in roles)


# ---- bits per weight and statements ------------------------------------------------------------

BITS = [  # (config, hf_quant_config, weight name, dtype, bits per weight at 4096 x 4096)
    ({"quantization_config": MINIMAX}, None, "x.weight", "F8_E4M3", 8 + 32 / (128 * 128)),
    ({"expert_dtype": "fp4", "quantization_config": DEEPSEEK_V4_Q}, None,
     "layers.0.attn.wq_a.weight", "F8_E4M3", 8 + 8 / (128 * 128)),
    ({"expert_dtype": "fp4", "quantization_config": DEEPSEEK_V4_Q}, None,
     "layers.0.ffn.experts.0.w1.weight", "I8", 4 + 8 / 32),
    ({"quantization_config": W4A16}, None, "x.weight_packed", "I32",
     4 + 16 / 128 + 2 * 64 / 4096 ** 2),
    (None, MODELOPT_HQ, "x.weight", "U8", 4 + 8 / 16 + 2 * 32 / 4096 ** 2),
    ({"quantization_config": GPT_OSS}, None, "m.experts.down_proj_blocks", "U8", 4 + 8 / 32),
    ({"quantization_config": GPTQ}, None, "x.qweight", "I32", 4 + 16 / 128 + 4 / 128),
    ({"quantization_config": AWQ}, None, "x.qweight", "I32", 4 + 16 / 128 + 4 / 128),
    ({"quantization_config": {**BNB, "bnb_4bit_use_double_quant": False}}, None, "x.weight",
     "U8", 4 + 32 / 64 + 16 * 32 / 4096 ** 2),
    ({"quantization": MLX}, None, "x.weight", "U32", 4 + 16 / 64 + 16 / 64),
]


@pytest.mark.parametrize(("config", "hq", "name", "dtype", "bits"), BITS)
def test_bits_per_weight(config: dict[str, Any] | None, hq: dict[str, Any] | None, name: str,
                         dtype: str, bits: float) -> None:
    det = det_of(config, hq)
    lay = only(det, name, dtype)
    assert lay.bits_per_weight() == pytest.approx(bits, rel=1e-12)
    st = lay.statement()
    assert st["scheme"] == lay.name and st["bits_per_weight"] == round(bits, 3)
    assert st["granularity"] == str(lay.granularity)


def test_bits_per_weight_includes_partial_blocks() -> None:
    lay = only(det_of({"quantization_config": MINIMAX}), "x.weight", "F8_E4M3")
    # 300 x 200 needs 3 x 2 F32 scales: 6 * 32 extra bits over 60000 weights
    assert lay.bits_per_weight((300, 200)) == pytest.approx(8 + 6 * 32 / 60000)
