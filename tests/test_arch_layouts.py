"""Tensor-name layouts of architectures the real-file corpus lacks, as
transformers 5.24 saves them (``save_pretrained`` of the named model class,
tiny dimensions, the real module structure), rebuilt as sparse replicas: no
unknown template, the right component and part for the names ckptscan once got
wrong, no error or warning from the whole pipeline, and the config checks
still firing on a planted fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ckptscan import scan
from ckptscan.checkpoint import open_checkpoint
from ckptscan.findings import Severity
from ckptscan.frame import build_frame
from ckptscan.replica import build_layout, write_replica

H, V, L, E = 64, 512, 2, 4  # hidden, vocabulary, layers, experts

Row = tuple[str, tuple[int, ...]]
Tensor = tuple[str, str, tuple[int, ...]]


def _expand(rows: list[Row], layers: int = L, experts: int = E) -> list[Tensor]:
    """``{L}`` / ``{E}`` in a template run over the layers / experts."""
    out = []
    for template, shape in rows:
        for layer in range(layers if "{L}" in template else 1):
            for expert in range(experts if "{E}" in template else 1):
                name = template.replace("{L}", str(layer)).replace("{E}", str(expert))
                out.append((name, "BF16", shape))
    return out


def _attention(prefix: str) -> list[Row]:
    return [(f"{prefix}.self_attn.{p}_proj.weight", (H, H)) for p in "qkvo"]


def _llama_tail(prefix: str = "model") -> list[Row]:
    return [(f"{prefix}.embed_tokens.weight", (V, H)), (f"{prefix}.norm.weight", (H,)),
            (f"{prefix}.layers.{{L}}.input_layernorm.weight", (H,)),
            (f"{prefix}.layers.{{L}}.post_attention_layernorm.weight", (H,)),
            *_attention(f"{prefix}.layers.{{L}}")]


def _experts(prefix: str, inter: int = 32) -> list[Row]:
    return [(f"{prefix}.{{E}}.gate_proj.weight", (inter, H)),
            (f"{prefix}.{{E}}.up_proj.weight", (inter, H)),
            (f"{prefix}.{{E}}.down_proj.weight", (H, inter))]


def _decoder_config(model_type: str, arch: str, **kw: Any) -> dict[str, Any]:
    return {"model_type": model_type, "architectures": [arch], "hidden_size": H,
            "num_hidden_layers": L, "vocab_size": V, "tie_word_embeddings": False, **kw}


# name -> (config, rows, {template: "component part"} for the names once misread)
LAYOUTS: dict[str, tuple[dict[str, Any], list[Row], dict[str, str]]] = {
    # OlmoeForCausalLM: the OLMo rules once read mlp.gate / mlp.experts as a dense MLP.
    "olmoe": (_decoder_config("olmoe", "OlmoeForCausalLM", num_experts=E), [
        *_llama_tail(), ("lm_head.weight", (V, H)),
        ("model.layers.{L}.self_attn.q_norm.weight", (H,)),
        ("model.layers.{L}.mlp.gate.weight", (E, H)),
        *_experts("model.layers.{L}.mlp.experts"),
    ], {
        "model.layers.{}.mlp.gate.weight": "decoder router",
        "model.layers.{}.mlp.experts.{}.up_proj.weight": "decoder moe_expert",
    }),
    # GraniteMoeSharedForCausalLM (and GraniteMoeHybrid): the shared expert is shared_mlp.
    "granitemoeshared": (_decoder_config("granitemoeshared", "GraniteMoeSharedForCausalLM",
                                         num_local_experts=E), [
        *_llama_tail(), ("lm_head.weight", (V, H)),
        ("model.layers.{L}.block_sparse_moe.input_linear.weight", (E, 64, H)),
        ("model.layers.{L}.block_sparse_moe.output_linear.weight", (E, H, 32)),
        ("model.layers.{L}.block_sparse_moe.router.layer.weight", (E, H)),
        ("model.layers.{L}.shared_mlp.input_linear.weight", (128, H)),
        ("model.layers.{L}.shared_mlp.output_linear.weight", (H, 64)),
    ], {
        "model.layers.{}.shared_mlp.input_linear.weight": "decoder shared_expert",
        "model.layers.{}.block_sparse_moe.router.layer.weight": "decoder router",
    }),
    # HunYuanMoEV1ForCausalLM: mlp.gate.wg is the router, mlp.shared_mlp the shared expert.
    "hunyuan_v1_moe": (_decoder_config("hunyuan_v1_moe", "HunYuanMoEV1ForCausalLM",
                                       num_experts=E), [
        *_llama_tail(), ("lm_head.weight", (V, H)),
        ("model.layers.{L}.mlp.gate.wg.weight", (E, H)),
        ("model.layers.{L}.mlp.shared_mlp.gate_proj.weight", (32, H)),
        ("model.layers.{L}.mlp.shared_mlp.up_proj.weight", (32, H)),
        ("model.layers.{L}.mlp.shared_mlp.down_proj.weight", (H, 32)),
        *_experts("model.layers.{L}.mlp.experts"),
    ], {
        "model.layers.{}.mlp.gate.wg.weight": "decoder router",
        "model.layers.{}.mlp.shared_mlp.down_proj.weight": "decoder shared_expert",
    }),
    # LongcatFlashForCausalLM: two MLA sublayers and two dense MLPs (mlps.{}) per layer.
    "longcat_flash": (_decoder_config("longcat_flash", "LongcatFlashForCausalLM",
                                      n_routed_experts=E, zero_expert_num=2), [
        ("model.embed_tokens.weight", (V, H)), ("model.norm.weight", (H,)),
        ("lm_head.weight", (V, H)),
        ("model.layers.{L}.input_layernorm.0.weight", (H,)),
        ("model.layers.{L}.input_layernorm.1.weight", (H,)),
        ("model.layers.{L}.self_attn.0.q_a_proj.weight", (32, H)),
        ("model.layers.{L}.self_attn.1.q_a_proj.weight", (32, H)),
        ("model.layers.{L}.mlp.router.classifier.weight", (E + 2, H)),
        ("model.layers.{L}.mlp.router.e_score_correction_bias", (E + 2,)),
        ("model.layers.{L}.mlps.0.gate_proj.weight", (128, H)),
        ("model.layers.{L}.mlps.1.down_proj.weight", (H, 128)),
        *_experts("model.layers.{L}.mlp.experts"),
    ], {
        "model.layers.{}.mlps.{}.gate_proj.weight": "decoder mlp",
        "model.layers.{}.mlp.router.classifier.weight": "decoder router",
    }),
    # BertForPreTraining: the masked-LM transform / bias and the next-sentence head.
    "bert": ({"model_type": "bert", "architectures": ["BertForPreTraining"], "hidden_size": H,
              "num_hidden_layers": L, "vocab_size": V}, [
        ("bert.embeddings.word_embeddings.weight", (V, H)),
        ("bert.embeddings.position_embeddings.weight", (128, H)),
        ("bert.embeddings.token_type_embeddings.weight", (2, H)),
        ("bert.embeddings.LayerNorm.weight", (H,)),
        ("bert.encoder.layer.{L}.attention.self.query.weight", (H, H)),
        ("bert.encoder.layer.{L}.attention.output.dense.weight", (H, H)),
        ("bert.encoder.layer.{L}.attention.output.LayerNorm.weight", (H,)),
        ("bert.encoder.layer.{L}.intermediate.dense.weight", (128, H)),
        ("bert.encoder.layer.{L}.output.dense.weight", (H, 128)),
        ("bert.pooler.dense.weight", (H, H)),
        ("cls.predictions.bias", (V,)),
        ("cls.predictions.transform.dense.weight", (H, H)),
        ("cls.predictions.transform.LayerNorm.weight", (H,)),
        ("cls.seq_relationship.weight", (2, H)),
    ], {
        "cls.predictions.bias": "decoder lm_head",
        "cls.predictions.transform.dense.weight": "decoder head",
        "cls.predictions.transform.LayerNorm.weight": "decoder norm",
        "cls.seq_relationship.weight": "decoder head",
        "bert.embeddings.LayerNorm.weight": "decoder norm",
    }),
    # ModernBertForMaskedLM: head.dense is the transform, decoder.bias the tied head's bias
    # (once read as an lm_head of hidden_size rows: a false config-vocab warning).
    "modernbert": ({"model_type": "modernbert", "architectures": ["ModernBertForMaskedLM"],
                    "hidden_size": H, "num_hidden_layers": L, "vocab_size": V}, [
        ("model.embeddings.tok_embeddings.weight", (V, H)),
        ("model.embeddings.norm.weight", (H,)),
        ("model.layers.{L}.attn.Wqkv.weight", (3 * H, H)),
        ("model.layers.{L}.attn.Wo.weight", (H, H)),
        ("model.layers.{L}.mlp.Wi.weight", (256, H)),
        ("model.layers.{L}.mlp.Wo.weight", (H, 128)),
        ("model.layers.{L}.mlp_norm.weight", (H,)),
        ("model.final_norm.weight", (H,)),
        ("head.dense.weight", (H, H)), ("head.norm.weight", (H,)), ("decoder.bias", (V,)),
    ], {
        "head.dense.weight": "decoder head",
        "decoder.bias": "decoder lm_head",
    }),
    # MllamaForConditionalGeneration: cross-attention gates, gated position tables, and an
    # embedding 8 rows past vocab_size (image tokens) while lm_head has vocab_size rows.
    "mllama": ({"model_type": "mllama", "architectures": ["MllamaForConditionalGeneration"],
                "text_config": {"model_type": "mllama_text_model", "hidden_size": H,
                                "num_hidden_layers": L, "vocab_size": V},
                "vision_config": {"model_type": "mllama_vision_model", "num_hidden_layers": 1,
                                  "num_global_layers": 1}}, [
        ("language_model.model.embed_tokens.weight", (V + 8, H)),
        ("language_model.model.norm.weight", (H,)),
        ("language_model.lm_head.weight", (V, H)),
        ("language_model.model.layers.{L}.input_layernorm.weight", (H,)),
        *_attention("language_model.model.layers.0"),
        ("language_model.model.layers.1.cross_attn.q_proj.weight", (H, H)),
        ("language_model.model.layers.1.cross_attn_attn_gate", (1,)),
        ("language_model.model.layers.1.cross_attn_mlp_gate", (1,)),
        ("language_model.model.layers.{L}.mlp.gate_proj.weight", (128, H)),
        ("multi_modal_projector.weight", (H, 32)),
        ("vision_model.patch_embedding.weight", (32, 3, 14, 14)),
        ("vision_model.gated_positional_embedding.embedding", (17, 32)),
        ("vision_model.gated_positional_embedding.gate", (1,)),
        ("vision_model.transformer.layers.0.mlp.fc1.weight", (64, 32)),
        ("vision_model.global_transformer.layers.0.gate_attn", (1,)),
        ("vision_model.global_transformer.layers.0.gate_ffn", (1,)),
    ], {
        "language_model.model.layers.{}.cross_attn_attn_gate": "decoder attention",
        "language_model.model.layers.{}.cross_attn_mlp_gate": "decoder mlp",
        "vision_model.gated_positional_embedding.embedding": "vision position",
        "vision_model.global_transformer.layers.{}.gate_attn": "vision attention",
        "vision_model.global_transformer.layers.{}.gate_ffn": "vision mlp",
        "multi_modal_projector.weight": "projector mlp",
    }),
    # Phi4MultimodalForCausalLM: towers under *_embed wrappers; their projections out.
    "phi4_multimodal": (_decoder_config("phi4_multimodal", "Phi4MultimodalForCausalLM"), [
        *_llama_tail(), ("lm_head.weight", (V, H)),
        ("model.embed_tokens_extend.image_embed.img_processor.encoder.layers.0.mlp.fc1.weight",
         (64, 32)),
        ("model.embed_tokens_extend.image_embed.img_processor.embeddings.patch_embedding.weight",
         (32, 3, 14, 14)),
        ("model.embed_tokens_extend.image_embed.img_projection_up.weight", (H, 32)),
        ("model.embed_tokens_extend.audio_embed.encoder.encoders.0.feed_forward_in.gate_up_proj"
         ".weight", (64, 32)),
        ("model.embed_tokens_extend.audio_embed.encoder.encoders.0.self_attn.linear_q.weight",
         (32, 32)),
        ("model.embed_tokens_extend.audio_embed.up_proj_for_speech.weight", (H, 32)),
    ], {
        "model.embed_tokens_extend.image_embed.img_processor.encoder.layers.{}.mlp.fc1.weight":
            "vision mlp",
        "model.embed_tokens_extend.image_embed.img_projection_up.weight": "vision projector",
        "model.embed_tokens_extend.audio_embed.encoder.encoders.{}.feed_forward_in.gate_up_proj"
        ".weight": "audio mlp",
        "model.embed_tokens_extend.audio_embed.encoder.encoders.{}.self_attn.linear_q.weight":
            "audio attention",
        "model.embed_tokens_extend.audio_embed.up_proj_for_speech.weight": "audio projector",
    }),
    # Mistral3ForConditionalGeneration (Pixtral tower) and Qwen2AudioForConditionalGeneration.
    "mistral3": ({"model_type": "mistral3", "architectures": ["Mistral3ForConditionalGeneration"],
                  "text_config": {"model_type": "mistral", "hidden_size": H,
                                  "num_hidden_layers": L, "vocab_size": V},
                  "vision_config": {"model_type": "pixtral", "num_hidden_layers": 1}}, [
        *_llama_tail("language_model.model"), ("language_model.lm_head.weight", (V, H)),
        ("vision_tower.patch_conv.weight", (32, 3, 14, 14)),
        ("vision_tower.ln_pre.weight", (32,)),
        ("vision_tower.transformer.layers.0.attention.q_proj.weight", (32, 32)),
        ("multi_modal_projector.patch_merger.merging_layer.weight", (32, 128)),
        ("multi_modal_projector.linear_1.weight", (H, 32)),
    ], {
        "vision_tower.patch_conv.weight": "vision embedding",
        "multi_modal_projector.patch_merger.merging_layer.weight": "projector mlp",
    }),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = {}
    for name, (config, rows, _) in LAYOUTS.items():
        lay = build_layout(name, _expand(rows), config, n_shards=2,
                           shard_name=lambda k, n: f"model-{k + 1:05d}-of-{n:05d}.safetensors")
        out[name] = write_replica(lay, tmp_path_factory.mktemp(name))
    return out


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_names_components_and_parts(built: dict[str, Path], name: str) -> None:
    with open_checkpoint(built[name]) as ckpt:
        frame = build_frame(ckpt)
    assert frame.table.unknown_templates() == []
    for template, want in LAYOUTS[name][2].items():
        cls = frame.table.classes[frame.templates.index(template)]
        assert f"{cls.component} {cls.part}" == want, template


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_no_false_finding(built: dict[str, Path], name: str) -> None:
    report = scan(built[name])
    assert [(f.code, f.message) for f in report.findings if f.severity >= Severity.WARNING] == []


def test_olmoe_experts_are_counted(tmp_path: Path) -> None:
    """Once OLMoE's experts are experts, the config's expert count is checked."""
    config, rows, _ = LAYOUTS["olmoe"]
    lay = build_layout("olmoe", _expand(rows), dict(config, num_experts=E + 2), n_shards=1,
                       shard_name=lambda k, n: "model.safetensors")
    report = scan(write_replica(lay, tmp_path / "olmoe", index=False))
    assert [f.detail.get("expected") for f in report.findings if f.code == "config-experts"] \
        == [E + 2]


@pytest.mark.parametrize(("head_rows", "flagged"), [(V, False), (V + 8, True), (None, True)])
def test_input_only_embedding_rows(tmp_path: Path, head_rows: int | None, flagged: bool) -> None:
    """An embedding past vocab_size is fine when lm_head has exactly vocab_size rows
    (tokens the model reads but never predicts); not when the head is missing
    (tied) or has the embedding's rows too."""
    rows: list[Row] = [("model.embed_tokens.weight", (V + 8, H)), ("model.norm.weight", (H,)),
                       *_attention("model.layers.{L}")]
    if head_rows is not None:
        rows.append(("lm_head.weight", (head_rows, H)))
    lay = build_layout("x", _expand(rows), _decoder_config("llama", "LlamaForCausalLM"),
                       n_shards=1, shard_name=lambda k, n: "model.safetensors")
    report = scan(write_replica(lay, tmp_path / "x", index=False))
    msgs = [f.message for f in report.findings if f.code == "config-vocab"]
    assert any("embedding" in m for m in msgs) == flagged, msgs
