"""Scheme detection: every family from every place its producer declares it
(config.json ``quantization_config``, ``text_config.quantization_config``,
``hf_quant_config.json``, the safetensors ``__metadata__``), config problems
named by their key, and format names normalised.

The configs are the producers' own (sources at each case)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from ckptscan import schemes as S
from hypothesis import given, settings
from hypothesis import strategies as st
from scheme_configs import (
    AWQ,
    BNB,
    DEEPSEEK_V3,
    DEEPSEEK_V4_Q,
    GPT_OSS,
    GPTQ,
    MINIMAX,
    MLX,
    MODELOPT_CFG,
    MODELOPT_HQ,
    TORCHAO,
    W4A16,
)


def in_text_config(q: dict[str, Any]) -> dict[str, Any]:
    return {"model_type": "llava", "text_config": {"quantization_config": q}}


CASES = [
    ("minimax", {"quantization_config": MINIMAX}, "hf-fp8", "fp8"),
    ("deepseek-v3", {"quantization_config": DEEPSEEK_V3}, "hf-fp8", "fp8"),
    ("deepseek-v4", {"expert_dtype": "fp4", "quantization_config": DEEPSEEK_V4_Q},
     "deepseek-v4", "fp8+fp4-experts"),
    ("deepseek-v4-fp8", {"model_type": "deepseek_v4", "quantization_config": DEEPSEEK_V4_Q},
     "deepseek-v4", "fp8+fp8-experts"),
    ("w4a16", {"quantization_config": W4A16}, "compressed-tensors",
     "compressed-tensors/pack-quantized"),
    ("modelopt-config", {"quantization_config": MODELOPT_CFG}, "modelopt", "modelopt/NVFP4"),
    ("gpt-oss", {"quantization_config": GPT_OSS}, "gpt-oss-mxfp4", "mxfp4"),
    ("gptq", {"quantization_config": GPTQ}, "gptq", "gptq/4bit"),
    ("awq", {"quantization_config": AWQ}, "awq", "awq/gemm"),
    ("bnb", {"quantization_config": BNB}, "bitsandbytes", "bitsandbytes/4bit"),
    ("mlx", {"quantization": MLX, "quantization_config": MLX}, "mlx", "mlx/affine"),
    ("torchao", {"quantization_config": TORCHAO}, "torchao", "torchao"),
]


@pytest.mark.parametrize(("case", "config", "family", "method"), CASES, ids=[c[0] for c in CASES])
def test_detected_from_quantization_config(case: str, config: dict[str, Any], family: str,
                                           method: str) -> None:
    det = S.detect(config)
    assert det is not None
    assert (det.family, det.method) == (family, method)
    assert det.problems == ()
    assert det.source.startswith("config.json")
    assert det.layouts


@pytest.mark.parametrize(("case", "config", "family", "method"),
                         [c for c in CASES if "quantization_config" in c[1]
                          and c[0] not in ("deepseek-v4", "deepseek-v4-fp8", "mlx")],
                         ids=lambda c: c if isinstance(c, str) else "")
def test_detected_from_text_config(case: str, config: dict[str, Any], family: str,
                                   method: str) -> None:
    det = S.detect(in_text_config(dict(config["quantization_config"])))
    assert det is not None and (det.family, det.method) == (family, method)
    assert det.source == "config.json: text_config.quantization_config"


def test_deepseek_v4_in_a_multimodal_wrapper() -> None:
    det = S.detect({"text_config": {"expert_dtype": "fp4", "quantization_config": DEEPSEEK_V4_Q}})
    assert det is not None and det.family == "deepseek-v4" and det.method == "fp8+fp4-experts"


def test_modelopt_from_hf_quant_config_alone() -> None:
    det = S.detect({"architectures": ["LlamaForCausalLM"]}, hf_quant_config=MODELOPT_HQ)
    assert det is not None and det.family == "modelopt" and det.method == "modelopt/NVFP4"
    assert det.source == "hf_quant_config.json: quantization"
    assert det.exclusions.entries == ("lm_head",)
    assert det.exclusions.key == "quantization.exclude_modules"
    assert [e.suffix for e in det.extras] == [".k_scale", ".v_scale"]


def test_modelopt_config_json_ignore_list() -> None:
    det = S.detect({"quantization_config": MODELOPT_CFG}, hf_quant_config=MODELOPT_HQ)
    assert det is not None and det.exclusions.key == "quantization_config.ignore"


def test_modelopt_config_and_hf_quant_config_disagreeing() -> None:
    hq = {**MODELOPT_HQ, "quantization": {**MODELOPT_HQ["quantization"],  # type: ignore[dict-item]
                                          "quant_algo": "FP8", "exclude_modules": []}}
    det = S.detect({"quantization_config": MODELOPT_CFG}, hf_quant_config=hq)
    assert det is not None and det.method == "modelopt/NVFP4"
    keys = {p.key for p in det.problems if p.source == "hf_quant_config.json"}
    assert keys == {"quantization.quant_algo", "quantization.exclude_modules"}


def test_modelopt_lower_case_quant_algo() -> None:
    # process_layer_quant_config writes {"quant_algo": "fp8_pb_wo"} as it is
    hq = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "fp8_pb_wo"}}
    det = S.detect(None, hf_quant_config=hq)
    assert det is not None and det.method == "modelopt/FP8_PB_WO" and det.problems == ()


def test_torchao_from_metadata() -> None:
    meta = {"tensor_names": json.dumps(["model.layers.0.q_proj.weight", "model.norm.weight"]),
            "model.layers.0.q_proj.weight": json.dumps({"_type": "Float8Tensor", "_data": {},
                                                        "_tensor_data_names": ["qdata", "scale"]}),
            "model.norm.weight": json.dumps({"_type": "Tensor"})}
    det = S.detect(None, metadata=meta)
    assert det is not None and det.family == "torchao" and det.source == "safetensors __metadata__"
    assert det.target("model.layers.7.q_proj").quantized  # the template is what counts
    assert not det.target("model.norm").quantized


def test_nothing_to_detect() -> None:
    assert S.detect(None) is None
    assert S.detect({"model_type": "llama"}) is None
    assert S.detect({"quantization_config": {"quant_method": "unknown-method"}}) is None
    assert S.detect(None, metadata={"format": "pt"}) is None


def test_registry_is_discovered_in_priority_order() -> None:
    names = [f.name for f in S.FAMILIES]
    assert set(names) == {"hf-fp8", "deepseek-v4", "compressed-tensors", "modelopt",
                          "gpt-oss-mxfp4", "gptq", "awq", "bitsandbytes", "mlx", "torchao"}
    assert names.index("deepseek-v4") < names.index("hf-fp8")  # both read quant_method fp8
    deep = {f.name for f in S.FAMILIES if f.depth == "deep"}
    assert deep == {"hf-fp8", "deepseek-v4", "compressed-tensors", "modelopt", "gpt-oss-mxfp4"}


def test_detect_all_reports_every_claim() -> None:
    both = S.detect_all({"quantization_config": MINIMAX}, hf_quant_config=MODELOPT_HQ)
    assert [d.family for d in both] == ["modelopt", "hf-fp8"]


# ---- problems name the key ------------------------------------------------------------------

PROBLEMS = [
    ({"quantization_config": {**MINIMAX, "weight_block_size": [0, 128]}},
     "quantization_config.weight_block_size", "zero"),
    ({"quantization_config": {**MINIMAX, "weight_block_size": 128}},
     "quantization_config.weight_block_size", "not two integers"),
    ({"quantization_config": {**MINIMAX, "fmt": "int8"}}, "quantization_config.fmt",
     "not an FP8 format"),
    ({"quantization_config": {**MINIMAX, "scale_fmt": "pow2"}}, "quantization_config.scale_fmt",
     "not a known scale format"),
    ({"quantization_config": {**MINIMAX, "modules_to_not_convert": "lm_head"}},
     "quantization_config.modules_to_not_convert", "a string"),
    ({"quantization_config": {**W4A16, "config_groups": {"group_0": {
        **W4A16["config_groups"]["group_0"],  # type: ignore[index]
        "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": [128]}}}}},
     "quantization_config.config_groups.group_0.weights.group_size", "a list"),
    ({"quantization_config": {**W4A16, "config_groups": {"group_0": {
        "targets": ["Linear"], "weights": {"num_bits": 4, "type": "int",
                                           "strategy": "block", "block_structure": [128, 0]}}}}},
     "quantization_config.config_groups.group_0.weights.block_structure", "zero"),
    ({"quantization_config": {**W4A16, "ignore": ["re:model.layers.(0"]}},
     "quantization_config.ignore", "not a valid regular expression"),
    ({"quantization_config": {**W4A16, "format": "pack-quantised"}},
     "quantization_config.format", "not a compressed-tensors format"),
    ({"quantization_config": {**W4A16, "config_groups": {"g": {"targets": ["LlamaDecoderLayer"],
                                                              "weights": {"num_bits": 8}}}}},
     "quantization_config.config_groups.g.targets", "cannot be told"),
    ({"quantization_config": {**GPTQ, "bits": 5}}, "quantization_config.bits",
     "not a GPTQ bit width"),
    ({"quantization_config": {**BNB, "load_in_8bit": True}}, "quantization_config.load_in_4bit",
     "exactly one"),
    ({"quantization": {"group_size": 0, "bits": 4}}, "quantization.group_size",
     "not a group size"),
    ({"expert_dtype": "fp2", "quantization_config": DEEPSEEK_V4_Q}, "expert_dtype",
     "neither 'fp4' nor 'fp8'"),
]


@pytest.mark.parametrize(("config", "key", "words"), PROBLEMS, ids=[p[1] + ":" + p[2]
                                                                   for p in PROBLEMS])
def test_config_problems_name_their_key(config: dict[str, Any], key: str, words: str) -> None:
    det = S.detect(config)
    assert det is not None
    hits = [p for p in det.problems if p.key == key]
    assert hits, det.problems
    assert words in hits[0].message
    assert str(hits[0]).startswith(f"config.json: {key}: ")


def test_modelopt_problem_names_the_file() -> None:
    hq = {"producer": {"name": "modelopt"}, "quantization": {"quant_algo": "FP4_MAGIC",
                                                             "group_size": "sixteen"}}
    det = S.detect(None, hf_quant_config=hq)
    assert det is not None
    keys = {(p.source, p.key) for p in det.problems}
    assert ("hf_quant_config.json", "quantization.quant_algo") in keys
    assert ("hf_quant_config.json", "quantization.group_size") in keys


# ---- format names ------------------------------------------------------------------------------

@pytest.mark.parametrize(("spelling", "name"), [
    ("e4m3", "E4M3"), ("float8_e4m3fn", "E4M3"), ("torch.float8_e4m3fn", "E4M3"),
    ("F8_E4M3", "E4M3"), ("E4M3", "E4M3"), ("fp8", "E4M3"), ("e5m2", "E5M2"),
    ("float8_e5m2", "E5M2"), ("float8_e4m3fnuz", "E4M3FNUZ"), ("ue8m0", "E8M0"),
    ("float8_e8m0fnu", "E8M0"), ("F8_E8M0", "E8M0"), ("fp4", "E2M1"), ("float4_e2m1fn_x2", "E2M1"),
    ("nvfp4", "E2M1"), ("nf4", "NF4"), ("int4", "INT4"), ("bfloat16", "BF16"), ("BF16", "BF16"),
    ("half", "F16"), ("float32", "F32"), ("e3m4", None), ("", None), (None, None), (8, None),
])
def test_format_names_are_normalised(spelling: object, name: str | None) -> None:
    assert S.normalize_format(spelling) == name


def test_same_format_in_two_spellings_is_one_layout() -> None:
    a = S.detect({"quantization_config": {**DEEPSEEK_V3, "fmt": "e4m3"}})
    b = S.detect({"quantization_config": {**DEEPSEEK_V3, "fmt": "float8_e4m3fn"}})
    assert a is not None and b is not None
    assert [lay.name for lay in a.layouts] == [lay.name for lay in b.layouts]
    assert a.layouts[0].weight_dtypes == ("F8_E4M3",)


def test_format_table_matches_ml_dtypes() -> None:
    ml_dtypes = pytest.importorskip("ml_dtypes")
    import numpy as np

    for name, dt in (("E4M3", ml_dtypes.float8_e4m3fn), ("E5M2", ml_dtypes.float8_e5m2),
                     ("E4M3FNUZ", ml_dtypes.float8_e4m3fnuz), ("E2M1", ml_dtypes.float4_e2m1fn)):
        fmt = S.FORMATS[name]
        assert fmt.max == float(ml_dtypes.finfo(dt).max)
        if fmt.bits == 8:
            values = np.arange(256, dtype=np.uint8).view(dt).astype(np.float32)
            assert sorted(np.flatnonzero(np.isnan(values)).tolist()) == sorted(fmt.nan_codes)
            assert sorted(np.flatnonzero(np.isinf(values)).tolist()) == sorted(fmt.inf_codes)
    e8 = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e8m0fnu).astype(np.float32)
    assert np.flatnonzero(np.isnan(e8)).tolist() == list(S.FORMATS["E8M0"].nan_codes)
    assert e8[S.FORMATS["E8M0"].bias] == 1.0


def test_torch_dtype_strings() -> None:
    assert S.torch_dtype_to_safetensors("torch.float8_e4m3fn") == "F8_E4M3"
    assert S.torch_dtype_to_safetensors("torch.uint8") == "U8"
    assert S.torch_dtype_to_safetensors("int8") == "I8"
    assert S.torch_dtype_to_safetensors("torch.nonsense") is None


# ---- hostile configs: problems, never exceptions ---------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 300) | st.floats(allow_nan=True)
    | st.sampled_from(["", "re:(", "re:.*", "*", "fp8", "e4m3", "group", "tensor", "Linear",
                       "torch.uint8", "lm_head", "int", "float", "local", "mixed-precision"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["num_bits", "type", "strategy", "group_size", "block_structure",
                         "targets", "weights", "input_activations", "dynamic", "symmetric",
                         "actorder", "scale_dtype", "format", "group_0", "quant_algo", "bits"]),
        inner, max_size=5),
    max_leaves=12)
_methods = st.sampled_from(["fp8", "compressed-tensors", "modelopt", "mxfp4", "gptq", "awq",
                            "bitsandbytes", "torchao", "FP8"])
_keys = st.sampled_from(["fmt", "weight_block_size", "scale_fmt", "activation_scheme",
                         "modules_to_not_convert", "ignored_layers", "format", "config_groups",
                         "ignore", "kv_cache_scheme", "quant_algo", "group_size",
                         "exclude_modules", "quantized_layers", "bits", "dynamic", "lm_head",
                         "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type",
                         "llm_int8_skip_modules", "version", "quantization"])


@settings(max_examples=300, deadline=None)
@given(method=_methods, body=st.dictionaries(_keys, _json, max_size=6),
       top=st.dictionaries(st.sampled_from(["expert_dtype", "model_type", "quantization",
                                            "architectures"]), _json, max_size=2))
def test_hostile_configs_give_problems_not_exceptions(method: str, body: dict[str, Any],
                                                      top: dict[str, Any]) -> None:
    config = {**top, "quantization_config": {**body, "quant_method": method}}
    for det in S.detect_all(config, hf_quant_config={"quantization": body}):
        for p in det.problems:
            assert p.key and p.message
        for module in ("model.layers.0.mlp.down_proj", "lm_head", "model.layers.{}.mlp.gate"):
            det.target(module)
            det.target_template(module)
        for lay in det.layouts:
            lay.bits_per_weight()
            for c in lay.companions:
                c.expected_shapes((256, 512))
