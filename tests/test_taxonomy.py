"""Taxonomy: real tensor names of each family -> role, kind, projection, layer, expert."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ckptscan.taxonomy import (
    ATTENTION,
    COMMON_RULES,
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
