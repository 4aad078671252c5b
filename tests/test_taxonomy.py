"""Taxonomy: real tensor names of each family -> role, kind, projection, layer, expert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ckptscan.taxonomy import (
    ATTENTION,
    COMMON_RULES,
    COMPONENT_CODE,
    COMPONENTS,
    DECODER,
    EMBEDDING,
    FAMILIES,
    KINDS,
    LM_HEAD,
    MLP,
    MOE_EXPERT,
    MTP,
    MTP_MARKERS,
    NORM,
    OTHER,
    ROLE_CODE,
    ROLES,
    ROUTER,
    SHARED_EXPERT,
    VISION,
    Taxonomy,
    is_linear,
    template_of,
)

MINIMAX_M2: dict[str, Any] = {
    "model_type": "minimax_m2",
    "architectures": ["MiniMaxM2ForCausalLM"],
    "num_hidden_layers": 62,
    "num_mtp_modules": 3,  # declared, but the checkpoint holds none
}
DEEPSEEK_V3: dict[str, Any] = {
    "model_type": "deepseek_v3",
    "architectures": ["DeepseekV3ForCausalLM"],
    "num_hidden_layers": 61,
    "num_nextn_predict_layers": 1,
    "first_k_dense_replace": 3,
}
QWEN2 = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "num_hidden_layers": 28}
QWEN3 = {"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"], "num_hidden_layers": 36}
QWEN2_MOE = {"model_type": "qwen2_moe", "architectures": ["Qwen2MoeForCausalLM"]}
QWEN3_MOE = {"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"]}
LLAMA = {"model_type": "llama", "architectures": ["LlamaForCausalLM"]}
MISTRAL = {"model_type": "mistral", "architectures": ["MistralForCausalLM"]}
MIXTRAL = {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"]}
GPT_OSS = {"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"]}
QWEN2_VL = {
    "model_type": "qwen2_vl",
    "architectures": ["Qwen2VLForConditionalGeneration"],
    "num_hidden_layers": 28,
}
LLAVA = {
    "model_type": "llava",
    "architectures": ["LlavaForConditionalGeneration"],
    "text_config": {"model_type": "llama", "num_hidden_layers": 32},
}

# Real names per family -> "role kind projection layer expert" ("-" is None).
NAMES: list[tuple[dict[str, Any] | None, dict[str, str]]] = [
    (
        MINIMAX_M2,
        {
            "model.embed_tokens.weight": "embedding weight embed_tokens - -",
            "model.layers.0.self_attn.q_proj.weight": "attention weight q_proj 0 -",
            "model.layers.0.self_attn.q_proj.weight_scale_inv": "attention scale q_proj 0 -",
            "model.layers.7.self_attn.o_proj.weight": "attention weight o_proj 7 -",
            "model.layers.5.self_attn.q_norm.weight": "attention weight q_norm 5 -",
            "model.layers.5.self_attn.k_norm.weight": "attention weight k_norm 5 -",
            "model.layers.0.input_layernorm.weight": "norm weight input_layernorm 0 -",
            # Layer 61 is an ordinary one of MiniMax-M2's 62.
            "model.layers.61.post_attention_layernorm.weight": (
                "norm weight post_attention_layernorm 61 -"
            ),
            "model.layers.0.block_sparse_moe.gate.weight": "router weight gate 0 -",
            "model.layers.0.block_sparse_moe.e_score_correction_bias": "router bias - 0 -",
            "model.layers.0.block_sparse_moe.experts.12.w1.weight": "moe_expert weight w1 0 12",
            "model.layers.3.block_sparse_moe.experts.255.w2.weight_scale_inv": (
                "moe_expert scale w2 3 255"
            ),
            "model.layers.61.block_sparse_moe.experts.0.w3.weight": "moe_expert weight w3 61 0",
            "model.norm.weight": "norm weight norm - -",
            "lm_head.weight": "lm_head weight lm_head - -",
            "model.layers.0.frobnicator.weight": "other weight frobnicator 0 -",
        },
    ),
    # MLA, three dense layers then MoE, and the MTP module at layer 61.
    (
        DEEPSEEK_V3,
        {
            "model.embed_tokens.weight": "embedding weight embed_tokens - -",
            "model.layers.0.self_attn.q_a_proj.weight": "attention weight q_a_proj 0 -",
            "model.layers.0.self_attn.q_a_proj.weight_scale_inv": "attention scale q_a_proj 0 -",
            "model.layers.0.self_attn.q_a_layernorm.weight": "attention weight q_a_layernorm 0 -",
            "model.layers.0.self_attn.q_b_proj.weight": "attention weight q_b_proj 0 -",
            "model.layers.0.self_attn.kv_a_proj_with_mqa.weight": (
                "attention weight kv_a_proj_with_mqa 0 -"
            ),
            "model.layers.0.self_attn.kv_a_layernorm.weight": "attention weight kv_a_layernorm 0 -",
            "model.layers.0.self_attn.kv_b_proj.weight": "attention weight kv_b_proj 0 -",
            "model.layers.0.self_attn.o_proj.weight": "attention weight o_proj 0 -",
            "model.layers.0.mlp.gate_proj.weight": "mlp weight gate_proj 0 -",
            "model.layers.2.mlp.up_proj.weight": "mlp weight up_proj 2 -",
            "model.layers.2.mlp.down_proj.weight_scale_inv": "mlp scale down_proj 2 -",
            "model.layers.3.mlp.gate.weight": "router weight gate 3 -",
            "model.layers.3.mlp.gate.e_score_correction_bias": "router bias gate 3 -",
            "model.layers.3.mlp.experts.0.gate_proj.weight": "moe_expert weight gate_proj 3 0",
            "model.layers.60.mlp.experts.255.down_proj.weight_scale_inv": (
                "moe_expert scale down_proj 60 255"
            ),
            "model.layers.3.mlp.shared_experts.up_proj.weight": "shared_expert weight up_proj 3 -",
            "model.layers.60.input_layernorm.weight": "norm weight input_layernorm 60 -",
            "model.layers.61.enorm.weight": "mtp weight enorm 61 -",
            "model.layers.61.hnorm.weight": "mtp weight hnorm 61 -",
            "model.layers.61.eh_proj.weight": "mtp weight eh_proj 61 -",
            "model.layers.61.embed_tokens.weight": "mtp weight embed_tokens 61 -",
            "model.layers.61.shared_head.norm.weight": "mtp weight norm 61 -",
            "model.layers.61.shared_head.head.weight": "mtp weight head 61 -",
            "model.layers.61.self_attn.kv_b_proj.weight_scale_inv": "mtp scale kv_b_proj 61 -",
            "model.layers.61.mlp.experts.17.down_proj.weight": "mtp weight down_proj 61 17",
            "model.layers.61.mlp.gate.e_score_correction_bias": "mtp bias gate 61 -",
            "model.norm.weight": "norm weight norm - -",
            "lm_head.weight": "lm_head weight lm_head - -",
        },
    ),
    (
        QWEN2,
        {  # biases on q/k/v
            "model.layers.0.self_attn.q_proj.bias": "attention bias q_proj 0 -",
            "model.layers.0.self_attn.v_proj.weight": "attention weight v_proj 0 -",
            "model.layers.27.mlp.gate_proj.weight": "mlp weight gate_proj 27 -",
            "model.layers.27.mlp.down_proj.weight": "mlp weight down_proj 27 -",
            "model.norm.weight": "norm weight norm - -",
        },
    ),
    (
        QWEN3,
        {
            "model.layers.0.self_attn.q_norm.weight": "attention weight q_norm 0 -",
            "model.layers.0.self_attn.k_proj.weight_scale_inv": "attention scale k_proj 0 -",
            "model.layers.35.post_attention_layernorm.weight": (
                "norm weight post_attention_layernorm 35 -"
            ),
            "lm_head.weight": "lm_head weight lm_head - -",
        },
    ),
    (
        QWEN2_MOE,
        {  # one shared expert with its own sigmoid gate
            "model.layers.0.mlp.experts.59.gate_proj.weight": "moe_expert weight gate_proj 0 59",
            "model.layers.0.mlp.gate.weight": "router weight gate 0 -",
            "model.layers.0.mlp.shared_expert.down_proj.weight": (
                "shared_expert weight down_proj 0 -"
            ),
            "model.layers.0.mlp.shared_expert_gate.weight": "router weight shared_expert_gate 0 -",
        },
    ),
    (
        QWEN3_MOE,
        {
            "model.layers.47.mlp.experts.127.up_proj.weight": "moe_expert weight up_proj 47 127",
            "model.layers.47.mlp.gate.weight": "router weight gate 47 -",
            "model.layers.47.self_attn.k_norm.weight": "attention weight k_norm 47 -",
        },
    ),
    (
        LLAMA,
        {  # compressed-tensors FP8 and KV-cache scales
            "model.layers.0.mlp.gate_proj.weight": "mlp weight gate_proj 0 -",
            "model.layers.0.mlp.up_proj.weight_scale": "mlp scale up_proj 0 -",
            "model.layers.0.self_attn.q_proj.input_scale": "attention scale q_proj 0 -",
            "model.layers.0.self_attn.k_scale": "attention scale - 0 -",
            "model.layers.31.input_layernorm.weight": "norm weight input_layernorm 31 -",
        },
    ),
    (
        MISTRAL,
        {
            "model.layers.0.self_attn.o_proj.weight": "attention weight o_proj 0 -",
            "model.embed_tokens.weight": "embedding weight embed_tokens - -",
        },
    ),
    (
        MIXTRAL,
        {
            "model.layers.0.block_sparse_moe.gate.weight": "router weight gate 0 -",
            "model.layers.31.block_sparse_moe.experts.7.w3.weight": "moe_expert weight w3 31 7",
            "model.layers.0.block_sparse_moe.experts.0.w2.weight": "moe_expert weight w2 0 0",
        },
    ),
    # Fused MXFP4 experts (no expert index), router with a bias, attention sinks.
    (
        GPT_OSS,
        {
            "model.layers.0.mlp.experts.gate_up_proj_blocks": "moe_expert weight gate_up_proj 0 -",
            "model.layers.0.mlp.experts.gate_up_proj_scales": "moe_expert scale gate_up_proj 0 -",
            "model.layers.0.mlp.experts.gate_up_proj_bias": "moe_expert bias gate_up_proj 0 -",
            "model.layers.23.mlp.experts.down_proj_blocks": "moe_expert weight down_proj 23 -",
            "model.layers.23.mlp.experts.down_proj_scales": "moe_expert scale down_proj 23 -",
            "model.layers.23.mlp.experts.down_proj_bias": "moe_expert bias down_proj 23 -",
            # as transformers saves it once dequantized
            "model.layers.0.mlp.experts.gate_up_proj": "moe_expert weight gate_up_proj 0 -",
            "model.layers.0.mlp.router.weight": "router weight router 0 -",
            "model.layers.0.mlp.router.bias": "router bias router 0 -",
            "model.layers.0.self_attn.sinks": "attention other - 0 -",
            "model.layers.0.self_attn.q_proj.bias": "attention bias q_proj 0 -",
            "model.embed_tokens.weight": "embedding weight embed_tokens - -",
        },
    ),
    # Qwen2-VL's tower has more blocks (32) than the language model has layers (28).
    (
        QWEN2_VL,
        {
            "visual.blocks.31.attn.qkv.weight": "vision weight qkv 31 -",
            "visual.blocks.0.norm1.weight": "vision weight norm1 0 -",
            "visual.patch_embed.proj.weight": "vision weight proj - -",
            "visual.merger.mlp.0.weight": "vision weight - - -",
            "model.layers.0.self_attn.q_proj.bias": "attention bias q_proj 0 -",
        },
    ),
    (
        LLAVA,
        {
            "vision_tower.vision_model.encoder.layers.23.self_attn.q_proj.weight": (
                "vision weight q_proj 23 -"
            ),
            "vision_tower.vision_model.embeddings.patch_embedding.weight": (
                "vision weight patch_embedding - -"
            ),
            "multi_modal_projector.linear_1.weight": "projector weight linear_1 - -",
            "language_model.model.layers.31.self_attn.q_proj.weight": (
                "attention weight q_proj 31 -"
            ),
            "language_model.lm_head.weight": "lm_head weight lm_head - -",
        },
    ),
    # Generic fallback: GPT-2 (with and without "transformer."), Mistral's consolidated files.
    (
        None,
        {
            "h.0.attn.c_attn.weight": "attention weight c_attn 0 -",
            "h.0.attn.c_proj.bias": "attention bias c_proj 0 -",
            "h.11.mlp.c_fc.weight": "mlp weight c_fc 11 -",
            "h.11.mlp.c_proj.weight": "mlp weight c_proj 11 -",
            "h.0.ln_1.weight": "norm weight ln_1 0 -",
            "ln_f.bias": "norm bias ln_f - -",
            "transformer.wte.weight": "embedding weight wte - -",
            "transformer.wpe.weight": "position weight wpe - -",
            "transformer.h.3.attn.c_attn.weight": "attention weight c_attn 3 -",
            "lm_head.weight": "lm_head weight lm_head - -",
            "tok_embeddings.weight": "embedding weight tok_embeddings - -",
            "layers.0.attention.wq.weight": "attention weight wq 0 -",
            "layers.0.attention_norm.weight": "norm weight attention_norm 0 -",
            "layers.0.feed_forward.w1.weight": "mlp weight w1 0 -",
            "norm.weight": "norm weight norm - -",
            "output.weight": "lm_head weight output - -",
            # Unknown names are kept, as "other".
            "model.layers.0.frobnicator.weight": "other weight frobnicator 0 -",
            "some_buffer": "other other - - -",
            "": "other other - - -",
            "0": "other other - - -",
        },
    ),
]
CASES = [(config, name, spec) for config, names in NAMES for name, spec in names.items()]


def _parse(spec: str) -> tuple[str | int | None, ...]:
    role, kind, projection, layer, expert = spec.split()
    assert role in ROLES
    assert kind in KINDS
    return (
        role,
        kind,
        None if projection == "-" else projection,
        None if layer == "-" else int(layer),
        None if expert == "-" else int(expert),
    )


@pytest.mark.parametrize(("config", "name", "spec"), CASES, ids=[c[1] or "''" for c in CASES])
def test_real_names(config: dict[str, Any] | None, name: str, spec: str) -> None:
    got = Taxonomy.from_config(config).resolve(name)
    cls = got.tensor_class
    assert (got.role, cls.kind, cls.projection, got.layer, got.expert) == _parse(spec)


def test_family_names_are_covered_by_their_own_table() -> None:
    """Known families classify their decoders' real names by their table, not the
    generic heuristics (towers are classified by the generic rules on purpose)."""
    for config, name, spec in CASES:
        if config is None or spec.startswith(OTHER):
            continue
        tax = Taxonomy.from_config(config)
        family = next(f for f in FAMILIES if f.name == tax.family)
        own = {p for p, _ in (*COMMON_RULES, *family.rules)} | set(MTP_MARKERS)
        cls = tax.resolve(name).tensor_class
        if cls.component in (DECODER, MTP):
            assert cls.rule in own, (tax.family, name, cls.rule)


@pytest.mark.parametrize(
    ("config", "family"),
    [
        (MINIMAX_M2, "minimax_m2"),
        (DEEPSEEK_V3, "deepseek_v3"),
        ({"model_type": "kimi_k2", "architectures": ["DeepseekV3ForCausalLM"]}, "deepseek_v3"),
        ({"architectures": ["DeepseekV3ForCausalLM"]}, "deepseek_v3"),
        ({"model_type": "someone_else", "architectures": ["MixtralForCausalLM"]}, "mixtral"),
        (QWEN2, "qwen"),
        (QWEN3, "qwen"),
        (QWEN2_MOE, "qwen_moe"),
        (QWEN3_MOE, "qwen_moe"),
        (LLAMA, "llama"),
        (MISTRAL, "llama"),
        (GPT_OSS, "gpt_oss"),
        (QWEN2_VL, "qwen2_vl"),
        (LLAVA, "llava"),
        ({"model_type": "new_vlm", "text_config": {"model_type": "qwen3_moe"}}, "qwen_moe"),
        ({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}, "gpt2"),
        # An unknown model_type is kept as the family name, with the generic rules.
        ({"model_type": "brand_new_lm"}, "brand_new_lm"),
        ({"model_type": 3, "architectures": "LlamaForCausalLM"}, "generic"),
        ({}, "generic"),
        (None, "generic"),
    ],
)
def test_family_selection(config: dict[str, Any] | None, family: str) -> None:
    assert Taxonomy.from_config(config).family == family


def test_mtp_layer_needs_declared_mtp() -> None:
    assert Taxonomy.from_config(DEEPSEEK_V3).mtp_first_layer == 61
    assert Taxonomy.from_config(MINIMAX_M2).mtp_first_layer == 62
    no_mtp = {**DEEPSEEK_V3, "num_nextn_predict_layers": 0}
    assert Taxonomy.from_config(no_mtp).mtp_first_layer is None
    assert Taxonomy.from_config(no_mtp).resolve("model.layers.61.mlp.gate.weight").role == ROUTER


def test_mtp_parts_keep_their_role_inside_the_module() -> None:
    tax = Taxonomy.from_config(DEEPSEEK_V3)
    parts = {
        "model.layers.61.enorm.weight": NORM,
        "model.layers.61.hnorm.weight": NORM,
        "model.layers.61.eh_proj.weight": MTP,
        "model.layers.61.embed_tokens.weight": EMBEDDING,
        "model.layers.61.shared_head.norm.weight": NORM,
        "model.layers.61.shared_head.head.weight": LM_HEAD,
        "model.layers.61.self_attn.q_a_proj.weight": ATTENTION,
        "model.layers.61.mlp.gate.weight": ROUTER,
        "model.layers.61.mlp.experts.3.gate_proj.weight": MOE_EXPERT,
        "model.layers.61.mlp.shared_experts.down_proj.weight": SHARED_EXPERT,
        "model.layers.61.input_layernorm.weight": NORM,
    }
    for name, part in parts.items():
        got = tax.resolve(name)
        assert (got.role, got.tensor_class.part) == (MTP, part), name


@pytest.mark.parametrize(
    ("config", "name", "part"),
    [
        # Qwen3-Next / Qwen3.5: a separate "mtp." tree.
        ({"model_type": "qwen3_next", "mtp_num_hidden_layers": 1}, "mtp.fc.weight", MTP),
        ({"model_type": "qwen3_next"}, "mtp.pre_fc_norm_embedding.weight", NORM),
        ({"model_type": "qwen3_next"}, "mtp.layers.0.self_attn.q_proj.weight", ATTENTION),
        ({"model_type": "qwen3_next"}, "mtp.layers.0.mlp.experts.511.down_proj.weight", MOE_EXPERT),
        ({"model_type": "qwen3_next"}, "mtp.norm.weight", NORM),
        (None, "model.mtp.layers.0.eh_proj.weight", MTP),
        # MiMo: model.mtp_layers.{}
        (None, "model.mtp_layers.0.token_layernorm.weight", NORM),
        # GLM-4.5: DeepSeek-style module after its 92 layers.
        (
            {"model_type": "glm4_moe", "num_hidden_layers": 92, "num_nextn_predict_layers": 1},
            "model.layers.92.mlp.experts.0.up_proj.weight",
            MOE_EXPERT,
        ),
    ],
)
def test_mtp_by_name(config: dict[str, Any] | None, name: str, part: str) -> None:
    got = Taxonomy.from_config(config).resolve(name)
    assert (got.role, got.tensor_class.part) == (MTP, part)


def test_layer_rule_spares_vision_blocks() -> None:
    # A declared MTP module must not swallow vision blocks numbered past the decoder stack.
    tax = Taxonomy.from_config({**QWEN2_VL, "num_nextn_predict_layers": 1})
    assert tax.resolve("visual.blocks.31.mlp.fc1.weight").role == VISION
    assert tax.resolve("model.layers.28.mlp.up_proj.weight").role == MTP
    assert tax.resolve("model.layers.27.mlp.up_proj.weight").role == MLP


TEMPLATE_CASES = [
    (
        "model.layers.0.block_sparse_moe.experts.12.w1.weight",
        ("model.layers.{}.block_sparse_moe.experts.{}.w1.weight", (0, 12)),
    ),
    ("h.0.mlp.fc1.weight", ("h.{}.mlp.fc1.weight", (0,))),
    ("w1", ("w1", ())),
    ("layer0.10", ("layer0.{}", (10,))),
    ("a.007.00.0", ("a.007.00.{}", (0,))),  # leading zeros would not round-trip
    ("a.999999999999999999.1000000000000000000", ("a.{}.1000000000000000000", (10**18 - 1,))),
    ("a.\u00b2.-1.1e3.+1. 1", ("a.\u00b2.-1.1e3.+1. 1", ())),  # ASCII digits only
    ("a..1.", ("a..{}.", (1,))),
    ("", ("", ())),
]


@pytest.mark.parametrize(("name", "expected"), TEMPLATE_CASES)
def test_template_of(name: str, expected: tuple[str, tuple[int, ...]]) -> None:
    assert template_of(name) == expected


@pytest.mark.parametrize(("name", "expected"), TEMPLATE_CASES)
def test_template_of_matches_core(name: str, expected: tuple[str, tuple[int, ...]]) -> None:
    core = pytest.importorskip("ckptscan._core")
    assert core.name_template(name) == expected


def test_is_linear() -> None:
    tax = Taxonomy.from_config(DEEPSEEK_V3)
    linear = [
        "model.layers.0.self_attn.q_a_proj.weight",
        "model.layers.0.self_attn.kv_b_proj.weight",
        "model.layers.0.mlp.down_proj.weight",
        "model.layers.3.mlp.experts.0.up_proj.weight",
        "model.layers.3.mlp.shared_experts.gate_proj.weight",
        "model.layers.3.mlp.gate.weight",
        "model.layers.61.eh_proj.weight",
        "model.layers.61.shared_head.head.weight",
        "lm_head.weight",
    ]
    not_linear = [
        "model.embed_tokens.weight",
        "model.layers.61.embed_tokens.weight",
        "model.layers.0.self_attn.q_a_layernorm.weight",
        "model.layers.0.input_layernorm.weight",
        "model.layers.61.enorm.weight",
        "model.norm.weight",
        "model.layers.3.mlp.gate.e_score_correction_bias",
        "model.layers.0.self_attn.q_a_proj.weight_scale_inv",
        "model.layers.0.frobnicator.weight",
    ]
    assert [n for n in linear if not is_linear(tax.resolve(n).tensor_class)] == []
    assert [n for n in not_linear if is_linear(tax.resolve(n).tensor_class)] == []
    others = Taxonomy()
    assert is_linear(others.resolve("visual.blocks.0.attn.qkv.weight").tensor_class)
    assert is_linear(others.resolve("model.layers.0.mlp.experts.gate_up_proj_blocks").tensor_class)
    assert not is_linear(others.resolve("visual.patch_embed.proj.weight").tensor_class)
    assert not is_linear(others.resolve("model.layers.0.self_attn.sinks").tensor_class)
    assert not is_linear(others.resolve("model.layers.0.self_attn.q_proj.bias").tensor_class)


def _columns(names: list[str]) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """What the C++ core hands over: templates, template ids, integers and their starts."""
    ids: dict[str, int] = {}
    template_ids = np.empty(len(names), dtype=np.uint32)
    ints: list[int] = []
    int_starts = np.zeros(len(names) + 1, dtype=np.uint64)
    for i, name in enumerate(names):
        template, numbers = template_of(name)
        template_ids[i] = ids.setdefault(template, len(ids))
        ints += numbers
        int_starts[i + 1] = len(ints)
    return list(ids), template_ids, np.array(ints, dtype=np.int64), int_starts


def _minimax_m2_names() -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for layer in range(62):
        p = f"model.layers.{layer}"
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            names += [f"{p}.self_attn.{proj}.weight", f"{p}.self_attn.{proj}.weight_scale_inv"]
        names += [
            f"{p}.self_attn.q_norm.weight",
            f"{p}.self_attn.k_norm.weight",
            f"{p}.input_layernorm.weight",
            f"{p}.post_attention_layernorm.weight",
            f"{p}.block_sparse_moe.gate.weight",
            f"{p}.block_sparse_moe.e_score_correction_bias",
        ]
        for expert in range(256):
            for w in ("w1", "w2", "w3"):
                e = f"{p}.block_sparse_moe.experts.{expert}.{w}"
                names += [f"{e}.weight", f"{e}.weight_scale_inv"]
    return names


def _deepseek_v3_names() -> list[str]:
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for layer in range(62):  # 61 layers + the MTP module
        p = f"model.layers.{layer}"
        names += [
            f"{p}.self_attn.{m}.weight"
            for m in (
                "q_a_proj",
                "q_a_layernorm",
                "q_b_proj",
                "kv_a_proj_with_mqa",
                "kv_a_layernorm",
                "kv_b_proj",
                "o_proj",
            )
        ]
        names += [f"{p}.input_layernorm.weight", f"{p}.post_attention_layernorm.weight"]
        if layer < 3:
            names += [f"{p}.mlp.{m}.weight" for m in ("gate_proj", "up_proj", "down_proj")]
            continue
        names += [f"{p}.mlp.gate.weight", f"{p}.mlp.gate.e_score_correction_bias"]
        names += [f"{p}.mlp.shared_experts.{m}.weight" for m in ("gate_proj", "up_proj")]
        names += [
            f"{p}.mlp.experts.{e}.{m}.weight_scale_inv"
            for e in range(16)
            for m in ("gate_proj", "up_proj", "down_proj")
        ]
    names += [
        f"model.layers.61.{m}.weight"
        for m in (
            "enorm",
            "hnorm",
            "eh_proj",
            "embed_tokens",
            "shared_head.norm",
            "shared_head.head",
        )
    ]
    return names


@pytest.mark.parametrize(
    ("config", "make_names"),
    [
        (MINIMAX_M2, _minimax_m2_names),
        (DEEPSEEK_V3, _deepseek_v3_names),
    ],
)
def test_vectorised_equals_per_name(config: dict[str, Any], make_names: Any) -> None:
    names: list[str] = make_names()
    templates, template_ids, ints, int_starts = _columns(names)
    tax = Taxonomy.from_config(config)
    table = tax.table(templates)
    layers = table.layer_index(template_ids, ints, int_starts)
    experts = table.expert_index(template_ids, ints, int_starts)
    roles = tax.roles_for(templates, template_ids, layers)
    # Classified once per template, not per tensor.
    assert tax.cache_size == len(templates) < 50

    expected = [tax.resolve(n) for n in names]
    assert tax.cache_size == len(templates)
    assert roles.tolist() == [ROLE_CODE[r.role] for r in expected]
    assert layers.tolist() == [-1 if r.layer is None else r.layer for r in expected]
    assert experts.tolist() == [-1 if r.expert is None else r.expert for r in expected]
    assert table.part[template_ids].tolist() == [ROLE_CODE[r.tensor_class.part] for r in expected]
    assert table.linear[template_ids].tolist() == [is_linear(r.tensor_class) for r in expected]


def test_minimax_m2_counts() -> None:
    names = _minimax_m2_names()
    assert len(names) == 96_103  # the seed report's count
    templates, template_ids, ints, int_starts = _columns(names)
    tax = Taxonomy.from_config(MINIMAX_M2)
    table = tax.table(templates)
    roles = table.roles(template_ids, table.layer_index(template_ids, ints, int_starts))
    counts = dict(zip(ROLES, np.bincount(roles, minlength=len(ROLES)).tolist(), strict=True))
    assert counts == {
        OTHER: 0,
        EMBEDDING: 1,
        ATTENTION: 62 * 10,
        MOE_EXPERT: 62 * 256 * 6,
        SHARED_EXPERT: 0,
        ROUTER: 62 * 2,
        MLP: 0,
        NORM: 62 * 2 + 1,
        LM_HEAD: 1,
        MTP: 0,
        **dict.fromkeys(ROLES[ROLES.index(VISION) :], 0),
    }


def test_empty_inputs() -> None:
    table = Taxonomy().table([])
    ids = np.empty(0, dtype=np.uint32)
    layers = table.layer_index(ids, np.empty(0, dtype=np.int64), np.zeros(1, dtype=np.uint64))
    assert layers.shape == (0,)
    assert table.roles(ids, layers).shape == (0,)


# ---- components -------------------------------------------------------------------------
# Layouts the corpus (tests/data/layouts) has no index.json for: names as the
# models' public implementations write them (transformers' M2M100 / T5 / ViT /
# CLIP / SigLIP / Qwen2.5-Omni classes, mlx-lm's switch_mlp, xgen-mm), checked by
# hand. "component part" per name.

M2M100 = {"model_type": "m2m_100", "architectures": ["M2M100ForConditionalGeneration"],
          "is_encoder_decoder": True, "encoder_layers": 24, "decoder_layers": 24,
          "num_hidden_layers": 24, "d_model": 1024, "vocab_size": 128112}
T5 = {"model_type": "t5", "architectures": ["T5ForConditionalGeneration"], "num_layers": 24,
      "num_decoder_layers": 24, "d_model": 1024, "vocab_size": 32128, "is_encoder_decoder": True}
VIT = {"model_type": "vit", "architectures": ["ViTForImageClassification"],
       "num_hidden_layers": 12, "hidden_size": 768}
CLIP = {"model_type": "clip", "architectures": ["CLIPModel"],
        "text_config": {"num_hidden_layers": 12}, "vision_config": {"num_hidden_layers": 24}}
SIGLIP = {"model_type": "siglip", "architectures": ["SiglipModel"]}
QWEN25_OMNI = {
    "model_type": "qwen2_5_omni", "architectures": ["Qwen2_5OmniForConditionalGeneration"],
    "thinker_config": {
        "text_config": {"num_hidden_layers": 28, "hidden_size": 3584, "vocab_size": 152064},
        "audio_config": {"encoder_layers": 32, "d_model": 1280},
        "vision_config": {"depth": 32},
    },
}
QWEN3_MOE_MLX = {"model_type": "qwen3_moe", "num_experts": 128,
                 "quantization": {"group_size": 64, "bits": 4}}
XGEN_MM = {"model_type": "xgenmm", "architectures": ["XGenMMModelForConditionalGeneration"]}

COMPONENT_NAMES: list[tuple[dict[str, Any] | None, dict[str, str]]] = [
    (M2M100, {
        "model.shared.weight": "decoder embedding",
        "model.encoder.embed_tokens.weight": "encoder embedding",
        "model.encoder.embed_positions.weights": "encoder position",
        "model.encoder.layers.3.self_attn.k_proj.weight": "encoder attention",
        "model.encoder.layers.3.self_attn_layer_norm.weight": "encoder norm",
        "model.encoder.layers.3.fc1.weight": "encoder mlp",
        "model.encoder.layer_norm.bias": "encoder norm",
        "model.decoder.embed_tokens.weight": "decoder embedding",
        "model.decoder.layers.5.encoder_attn.v_proj.weight": "decoder attention",
        "model.decoder.layers.5.encoder_attn_layer_norm.bias": "decoder norm",
        "model.decoder.layers.5.self_attn.out_proj.bias": "decoder attention",
        "model.decoder.layers.5.fc2.weight": "decoder mlp",
        "model.decoder.layer_norm.weight": "decoder norm",
        "lm_head.weight": "decoder lm_head",
    }),
    (T5, {
        "shared.weight": "decoder embedding",
        "encoder.embed_tokens.weight": "encoder embedding",
        "encoder.block.0.layer.0.SelfAttention.q.weight": "encoder attention",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight": (
            "encoder attention"),
        "encoder.block.0.layer.0.layer_norm.weight": "encoder norm",
        "encoder.block.7.layer.1.DenseReluDense.wi_0.weight": "encoder mlp",
        "encoder.final_layer_norm.weight": "encoder norm",
        "decoder.block.3.layer.1.EncDecAttention.k.weight": "decoder attention",
        "decoder.block.3.layer.2.DenseReluDense.wo.weight": "decoder mlp",
        "decoder.final_layer_norm.weight": "decoder norm",
        "lm_head.weight": "decoder lm_head",
    }),
    (VIT, {
        "vit.embeddings.cls_token": "vision embedding",
        "vit.embeddings.patch_embeddings.projection.weight": "vision embedding",
        "vit.embeddings.position_embeddings": "vision position",
        "vit.encoder.layer.0.attention.attention.query.weight": "vision attention",
        "vit.encoder.layer.0.attention.output.dense.weight": "vision attention",
        "vit.encoder.layer.0.intermediate.dense.weight": "vision mlp",
        "vit.encoder.layer.0.output.dense.weight": "vision mlp",
        "vit.encoder.layer.0.layernorm_before.weight": "vision norm",
        "vit.layernorm.bias": "vision norm",
        "classifier.weight": "vision head",
        # ViTModel saved without the "vit." prefix
        "encoder.layer.11.output.dense.bias": "vision mlp",
        "pooler.dense.weight": "vision head",
    }),
    (CLIP, {
        "text_model.embeddings.token_embedding.weight": "encoder embedding",
        "text_model.embeddings.position_embedding.weight": "encoder position",
        "text_model.encoder.layers.0.self_attn.q_proj.weight": "encoder attention",
        "text_model.final_layer_norm.weight": "encoder norm",
        "vision_model.embeddings.class_embedding": "vision embedding",
        "vision_model.encoder.layers.23.mlp.fc1.weight": "vision mlp",
        "vision_model.pre_layrnorm.weight": "vision norm",
        "visual_projection.weight": "projector mlp",
        "text_projection.weight": "projector mlp",
        "logit_scale": "decoder head",
    }),
    (SIGLIP, {
        "vision_model.head.probe": "vision head",
        "vision_model.head.attention.in_proj_weight": "vision attention",
        "vision_model.head.mlp.fc1.weight": "vision mlp",
        "vision_model.post_layernorm.weight": "vision norm",
    }),
    (QWEN25_OMNI, {
        "thinker.model.embed_tokens.weight": "decoder embedding",
        "thinker.model.layers.27.self_attn.q_proj.bias": "decoder attention",
        "thinker.lm_head.weight": "decoder lm_head",
        "thinker.audio_tower.conv1.weight": "audio embedding",
        "thinker.audio_tower.layers.31.self_attn.k_proj.weight": "audio attention",
        "thinker.audio_tower.layers.31.fc1.weight": "audio mlp",
        "thinker.audio_tower.ln_post.weight": "audio norm",
        "thinker.audio_tower.proj.weight": "audio other",
        "thinker.visual.blocks.31.attn.qkv.weight": "vision attention",
        "thinker.visual.merger.mlp.0.weight": "vision projector",
        "talker.model.layers.0.mlp.up_proj.weight": "aux mlp",
        "talker.codec_head.weight": "aux other",
        "token2wav.code2wav_dit_model.transformer_blocks.0.attn.to_q.weight": "aux attention",
    }),
    (QWEN3_MOE_MLX, {
        "model.layers.0.mlp.switch_mlp.gate_proj.weight": "decoder moe_expert",
        "model.layers.0.mlp.switch_mlp.down_proj.scales": "decoder moe_expert",
        "model.layers.47.mlp.switch_mlp.up_proj.biases": "decoder moe_expert",
        "model.layers.0.mlp.gate.weight": "decoder router",
    }),
    (XGEN_MM, {
        "vlm.vision_encoder.vision_model.encoder.layers.0.self_attn.q_proj.weight": (
            "vision attention"),
        "vlm.vision_tokenizer.latents": "projector mlp",
        "vlm.lang_model.model.embed_tokens.weight": "decoder embedding",
        "vlm.lang_model.model.embed_tokens.additional_embedding.weight": "decoder embedding",
        "vlm.lang_model.lm_head.weight": "decoder lm_head",
        "vlm.lang_model.lm_head.additional_fc.weight": "decoder lm_head",
    }),
    # compressed-tensors packs int4 weights as weight_packed with weight_scale / weight_shape.
    ({"model_type": "llama"}, {
        "model.layers.0.self_attn.q_proj.weight_packed": "decoder attention",
        "model.layers.0.mlp.down_proj.weight_scale": "decoder mlp",
        "model.layers.0.mlp.down_proj.weight_shape": "decoder mlp",
    }),
    # GLM-4 in transformers (Glm4ForCausalLM): Llama names plus two extra norms.
    ({"model_type": "glm4"}, {
        "model.layers.0.mlp.gate_up_proj.weight": "decoder mlp",
        "model.layers.0.post_self_attn_layernorm.weight": "decoder norm",
        "model.layers.0.post_mlp_layernorm.weight": "decoder norm",
    }),
]
COMPONENT_CASES = [(c, n, s) for c, names in COMPONENT_NAMES for n, s in names.items()]


@pytest.mark.parametrize(("config", "name", "spec"), COMPONENT_CASES)
def test_component_and_part(config: dict[str, Any] | None, name: str, spec: str) -> None:
    got = Taxonomy.from_config(config).resolve(name)
    cls = got.tensor_class
    assert f"{got.component} {cls.part}" == spec
    assert got.role == (cls.part if got.component == DECODER else got.component)


def test_kinds_of_weights_not_named_weight() -> None:
    tax = Taxonomy.from_config({"model_type": "molmo"})
    assert tax.resolve("model.transformer.wte.embedding").tensor_class.kind == "weight"
    assert tax.resolve("resampler.attn.in_proj_weight").tensor_class.kind == "weight"
    assert tax.resolve("resampler.attn.in_proj_bias").tensor_class.kind == "bias"
    # bitsandbytes state hangs under the weight; the projection is still the module's
    absmax = tax.resolve("model.transformer.blocks.0.att_proj.weight.absmax").tensor_class
    assert (absmax.kind, absmax.projection) == ("other", "att_proj")


# Real template names of a multi-omics MiniCPM-V (index.json of OpenBMB/Scicore-Omics):
# two towers no marker names, each with its own layer grid.
SCICORE_TEMPLATES = [
    "llm.model.embed_tokens.weight", "llm.model.layers.{}.self_attn.q_proj.weight",
    "llm.model.layers.{}.mlp.up_proj.weight", "llm.model.norm.weight", "llm.lm_head.weight",
    "vpm.encoder.layers.{}.self_attn.q_proj.weight", "resampler.kv_proj.weight",
    "gene_projector.proj.{}.weight", "gene_qformer.blocks.{}.cross_attn.in_proj_weight",
    "gene_qformer.blocks.{}.ffn.{}.weight", "gene_qformer.blocks.{}.norm_q1.weight",
    "gene_qformer.query_tokens", "gene_qformer.out_norm.weight",
    "nicheformer.embeddings.weight", "nicheformer.encoder.layers.{}.linear1.weight",
    "nicheformer.encoder.layers.{}.self_attn.in_proj_weight",
    "nicheformer.encoder_layer.norm1.weight", "nicheformer.pos",
]


def test_stacks_the_config_does_not_describe_are_towers() -> None:
    tax = Taxonomy.from_config({"model_type": "minicpmv", "num_hidden_layers": 28})
    table = tax.table(SCICORE_TEMPLATES)
    got = {c.template: f"{c.component} {c.part}" for c in table.classes}
    assert got == {
        "llm.model.embed_tokens.weight": "decoder embedding",
        "llm.model.layers.{}.self_attn.q_proj.weight": "decoder attention",
        "llm.model.layers.{}.mlp.up_proj.weight": "decoder mlp",
        "llm.model.norm.weight": "decoder norm",
        "llm.lm_head.weight": "decoder lm_head",
        "vpm.encoder.layers.{}.self_attn.q_proj.weight": "vision attention",
        "resampler.kv_proj.weight": "projector mlp",
        "gene_projector.proj.{}.weight": "projector mlp",
        "gene_qformer.blocks.{}.cross_attn.in_proj_weight": "aux attention",
        "gene_qformer.blocks.{}.ffn.{}.weight": "aux mlp",
        "gene_qformer.blocks.{}.norm_q1.weight": "aux norm",
        "gene_qformer.query_tokens": "aux other",
        "gene_qformer.out_norm.weight": "aux norm",
        "nicheformer.embeddings.weight": "aux embedding",
        "nicheformer.encoder.layers.{}.linear1.weight": "aux mlp",
        "nicheformer.encoder.layers.{}.self_attn.in_proj_weight": "aux attention",
        "nicheformer.encoder_layer.norm1.weight": "aux norm",
        "nicheformer.pos": "aux other",
    }
    assert list(table.component) == [COMPONENT_CODE[c.component] for c in table.classes]
    assert table.unknown_templates() == []
    # One name at a time, without the other templates, there is no stack to compare with.
    assert tax.resolve("gene_qformer.blocks.0.norm_q1.weight").component == DECODER


@pytest.mark.parametrize("patch", ["patch_embedding", "patch_embed", "patch_embeddings"])
def test_an_unnamed_tower_that_embeds_patches_is_vision(patch: str) -> None:
    """llama3v's SigLIP sits under a misspelt ``vison.*``: no marker names it, its
    patch embedding does; a stack beside it without one stays ``aux``."""
    templates = ["llm.model.embed_tokens.weight", "llm.model.layers.{}.mlp.up_proj.weight",
                 f"vison.embeddings.{patch}.weight", "vison.encoder.layers.{}.mlp.fc1.weight",
                 "vison.post_layernorm.weight", "qformer.blocks.{}.mlp.fc1.weight",
                 "qformer.query_tokens", "projection.query", "projection.kv_proj.weight"]
    got = {c.template: c.component for c in Taxonomy().table(templates).classes}
    assert got == {
        "llm.model.embed_tokens.weight": DECODER, "llm.model.layers.{}.mlp.up_proj.weight": DECODER,
        f"vison.embeddings.{patch}.weight": "vision",
        "vison.encoder.layers.{}.mlp.fc1.weight": "vision", "vison.post_layernorm.weight": "vision",
        "qformer.blocks.{}.mlp.fc1.weight": "aux", "qformer.query_tokens": "aux",
        "projection.query": "projector", "projection.kv_proj.weight": "projector",
    }


@pytest.mark.parametrize(
    ("templates", "decoder_stack"),
    [
        # beside the token embedding, whatever its depth or size
        (["model.embed_tokens.weight", "model.layers.{}.mlp.up_proj.weight",
          "model.qwen2_model.model.model.layers.{}.mlp.up_proj.weight",
          "model.qwen2_model.model.model.layers.{}.self_attn.q_proj.weight"], "model.layers"),
        # no embedding beside either: the shallower
        (["a.layers.{}.mlp.up_proj.weight", "a.b.layers.{}.mlp.up_proj.weight"], "a.layers"),
    ],
)
def test_decoder_stack_choice(templates: list[str], decoder_stack: str) -> None:
    classes = Taxonomy().table(templates).classes
    for c in classes:
        inside = c.template.startswith(decoder_stack + ".")
        assert (c.component == DECODER) == (inside or ".layers." not in c.template), c.template


def test_components_per_tensor_follow_the_mtp_layer_rule() -> None:
    tax = Taxonomy.from_config(DEEPSEEK_V3)
    names = ["model.layers.60.mlp.gate.weight", "model.layers.61.mlp.gate.weight",
             "model.layers.61.eh_proj.weight"]
    templates, template_ids, ints, int_starts = _columns(names)
    table = tax.table(templates)
    layers = table.layer_index(template_ids, ints, int_starts)
    comps = [COMPONENTS[c] for c in table.components(template_ids, layers)]
    assert comps == [DECODER, MTP, MTP]


def test_component_config_sections() -> None:
    omni = Taxonomy.from_config(QWEN25_OMNI)
    thinker = QWEN25_OMNI["thinker_config"]
    assert omni.component_config(DECODER) is thinker["text_config"]
    assert omni.component_config("audio") is thinker["audio_config"]
    assert omni.component_config("vision") is thinker["vision_config"]
    assert omni.component_config("aux") is None
    assert omni.component_spec(DECODER).layers == 28
    assert omni.component_spec(DECODER).vocab == 152064
    assert omni.component_spec("audio").layers == 32
    assert omni.component_spec("vision").layers == 32
    # an encoder-decoder's top level describes both stacks
    m2m = Taxonomy.from_config({**M2M100, "encoder_layers": 12, "decoder_layers": 6})
    assert m2m.component_spec(DECODER).layers == 6
    assert m2m.component_spec("encoder").layers == 12
    assert m2m.component_spec(DECODER).hidden == 1024
    # a plain model's decoder section is the top level; no tower section, no tower numbers
    plain = Taxonomy.from_config({"model_type": "llama", "num_hidden_layers": 32})
    assert plain.component_config(DECODER) == {"model_type": "llama", "num_hidden_layers": 32}
    assert plain.component_spec("vision").layers is None
    assert Taxonomy().component_config(DECODER) is None
    # ChatGLM's vocabulary is padded_vocab_size, its depth num_layers
    glm = Taxonomy.from_config({"model_type": "chatglm", "num_layers": 28,
                                "padded_vocab_size": 65024, "vocab_size": 65024 - 1})
    assert (glm.component_spec(DECODER).layers, glm.component_spec(DECODER).vocab) == (28, 65024)


def test_a_known_model_type_never_gives_generic() -> None:
    for family in FAMILIES:
        for model_type in family.model_types:
            assert Taxonomy.from_config({"model_type": model_type}).family == family.name
    assert Taxonomy.from_config({"model_type": "a" * 200}).family == "generic"
    assert Taxonomy.from_config({"model_type": "bad name!"}).family == "generic"


@pytest.mark.parametrize(
    ("config", "name", "spec"),
    [
        # Phi-3-vision / Phi-4-multimodal
        ({"model_type": "phi3_v"},
         "model.vision_embed_tokens.img_processor.vision_model.encoder.layers.0.mlp.fc1.weight",
         "vision mlp"),
        ({"model_type": "phi3_v"}, "model.vision_embed_tokens.img_projection.0.weight",
         "vision projector"),
        ({"model_type": "phi4mm"},
         "model.embed_tokens_extend.image_embed.img_processor.encoder.layers.0.mlp.fc2.bias",
         "vision mlp"),
        ({"model_type": "phi4mm"},
         "model.embed_tokens_extend.audio_embed.encoder.encoders.0.feed_forward_in.net.0"
         ".linear.weight", "audio mlp"),
        ({"model_type": "phi4mm"}, "model.layers.0.self_attn.qkv_proj.base_layer.weight",
         "decoder attention"),
        # InternVL, Idefics3 / SmolVLM, MiniCPM-o
        ({"model_type": "internvl_chat"}, "mlp1.1.weight", "projector mlp"),
        ({"model_type": "idefics3"}, "model.connector.modality_projection.proj.weight",
         "projector mlp"),
        ({"model_type": "minicpmo"}, "audio_projection_layer.linear1.weight", "projector mlp"),
        ({"model_type": "minicpmo"}, "apm.layers.0.self_attn.q_proj.weight", "audio attention"),
        # State-space mixers and RWKV's head
        ({"model_type": "mamba"}, "backbone.layers.0.mixer.in_proj.weight", "decoder attention"),
        ({"model_type": "nemotron_h"}, "backbone.layers.1.mixer.up_proj.weight", "decoder mlp"),
        ({"model_type": "jamba"}, "model.layers.0.mamba.A_log", "decoder attention"),
        ({"model_type": "rwkv"}, "head.weight", "decoder lm_head"),
    ],
)
def test_more_towers_and_mixers(config: dict[str, Any], name: str, spec: str) -> None:
    got = Taxonomy.from_config(config).resolve(name)
    assert f"{got.component} {got.tensor_class.part}" == spec


def test_a_towers_root_takes_its_unmarked_neighbours() -> None:
    # Phi-3-vision's arrangement under a wrapper no marker names: the tower's
    # stack sits deep under the wrapper, its projection beside it.
    templates = [
        "model.embed_tokens.weight", "model.layers.{}.self_attn.qkv_proj.weight",
        "model.wrapper.img_processor.vision_model.encoder.layers.{}.mlp.fc1.weight",
        "model.wrapper.img_projection.{}.weight", "model.wrapper.glb_GN",
    ]
    got = [c.component for c in Taxonomy().table(templates).classes]
    assert got == [DECODER, DECODER, "vision", "vision", "vision"]
