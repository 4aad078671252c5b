"""Real checkpoint layouts (tests/data/layouts, see layout_corpus.py) rebuilt as
full-size sparse replicas: components, roles of hand-checked templates, no
unknown names, the config's numbers per component, and the parameter count
against the index's total_size."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ckptscan import scan
from ckptscan.checkpoint import open_checkpoint
from ckptscan.findings import Severity
from ckptscan.frame import Frame, build_frame
from ckptscan.replica import DTYPE_BITS
from ckptscan.taxonomy import (
    COMPONENT_CODE,
    COMPONENTS,
    DECODER,
    EMBEDDING,
    KIND_CODE,
    LM_HEAD,
    ROLE_CODE,
    WEIGHT,
)
from layout_corpus import CorpusLayout, corpus_paths, load_layout, write_corpus_replica

# Per layout: the family, the components present, and "component part" for
# templates checked by hand against the model's architecture.
EXPECTED: dict[str, tuple[str, set[str], dict[str, str]]] = {
    "bloom-176b": ("bloom", {DECODER}, {
        "word_embeddings.weight": "decoder embedding",
        "word_embeddings_layernorm.weight": "decoder norm",
        "h.{}.self_attention.query_key_value.weight": "decoder attention",
        "h.{}.mlp.dense_h_to_4h.weight": "decoder mlp",
        "h.{}.post_attention_layernorm.bias": "decoder norm",
        "ln_f.weight": "decoder norm",
    }),
    "chatglm3-6b": ("chatglm", {DECODER}, {
        "transformer.embedding.word_embeddings.weight": "decoder embedding",
        "transformer.encoder.layers.{}.self_attention.query_key_value.bias": "decoder attention",
        "transformer.encoder.layers.{}.mlp.dense_4h_to_h.weight": "decoder mlp",
        "transformer.encoder.final_layernorm.weight": "decoder norm",
        "transformer.output_layer.weight": "decoder lm_head",
        "transformer.rotary_pos_emb.inv_freq": "decoder attention",
    }),
    "cosmos-reason2-8b": ("qwen2_vl", {DECODER, "vision"}, {
        "model.language_model.embed_tokens.weight": "decoder embedding",
        "model.language_model.layers.{}.self_attn.q_norm.weight": "decoder attention",
        "lm_head.weight": "decoder lm_head",
        "model.visual.blocks.{}.attn.qkv.weight": "vision attention",
        "model.visual.blocks.{}.mlp.linear_fc1.weight": "vision mlp",
        "model.visual.deepstack_merger_list.{}.linear_fc2.weight": "vision projector",
        "model.visual.pos_embed.weight": "vision position",
    }),
    "deepseek-ocr2": ("deepseek_vl", {DECODER, "vision", "projector"}, {
        "model.layers.{}.mlp.experts.{}.down_proj.weight": "decoder moe_expert",
        "model.layers.{}.mlp.shared_experts.up_proj.weight": "decoder shared_expert",
        "model.layers.{}.mlp.gate.weight": "decoder router",
        "model.layers.{}.mlp.gate_proj.weight": "decoder mlp",
        # the 24-layer Qwen2 encoder and the SAM encoder are the vision tower's
        "model.qwen2_model.model.model.layers.{}.self_attn.q_proj.weight": "vision attention",
        "model.qwen2_model.query_1024.weight": "vision other",
        "model.sam_model.blocks.{}.attn.qkv.weight": "vision attention",
        "model.sam_model.blocks.{}.mlp.lin1.weight": "vision mlp",
        "model.projector.layers.weight": "projector mlp",
        "model.view_seperator": "projector mlp",
    }),
    "dolphin3-r1-mistral-24b": ("llama", {DECODER}, {
        "model.embed_tokens.weight": "decoder embedding",
        "model.layers.{}.self_attn.q_proj.weight": "decoder attention",
        "model.layers.{}.mlp.gate_proj.weight": "decoder mlp",
        "model.layers.{}.post_attention_layernorm.weight": "decoder norm",
        "lm_head.weight": "decoder lm_head",
    }),
    "falcon-180b-chat": ("falcon", {DECODER}, {
        "transformer.word_embeddings.weight": "decoder embedding",
        "transformer.h.{}.self_attention.query_key_value.weight": "decoder attention",
        "transformer.h.{}.self_attention.dense.weight": "decoder attention",
        "transformer.h.{}.ln_attn.weight": "decoder norm",
        "transformer.h.{}.mlp.dense_4h_to_h.weight": "decoder mlp",
        "lm_head.weight": "decoder lm_head",
    }),
    "granite-3.1-1b-a400m-instruct": ("granite_moe", {DECODER}, {
        "model.layers.{}.block_sparse_moe.input_linear.weight": "decoder moe_expert",
        "model.layers.{}.block_sparse_moe.output_linear.weight": "decoder moe_expert",
        "model.layers.{}.block_sparse_moe.router.layer.weight": "decoder router",
        "model.layers.{}.self_attn.k_proj.weight": "decoder attention",
    }),
    "internlm2-7b": ("internlm2", {DECODER}, {
        "model.tok_embeddings.weight": "decoder embedding",
        "model.layers.{}.attention.wqkv.weight": "decoder attention",
        "model.layers.{}.attention_norm.weight": "decoder norm",
        "model.layers.{}.feed_forward.w2.weight": "decoder mlp",
        "model.layers.{}.ffn_norm.weight": "decoder norm",
        "output.weight": "decoder lm_head",
    }),
    "kimi2-pcl": ("deepseek_v3", {DECODER}, {
        "model.layers.{}.mlp.experts.{}.gate_proj.weight": "decoder moe_expert",
        "model.layers.{}.mlp.shared_experts.down_proj.weight": "decoder shared_expert",
        "model.layers.{}.mlp.gate.weight": "decoder router",
        "model.layers.{}.mlp.gate.e_score_correction_bias": "decoder router",
        "model.layers.{}.mlp.up_proj.weight": "decoder mlp",
        "model.layers.{}.self_attn.q_layernorm.weight": "decoder attention",
        "model.layers.{}.self_attn.rotary_emb.inv_freq": "decoder attention",
    }),
    "llama-3.1-8b-bnb-int8": ("llama", {DECODER}, {
        "model.embed_tokens.weight": "decoder embedding",
        "model.layers.{}.self_attn.k_proj.weight": "decoder attention",
        "model.layers.{}.self_attn.k_proj.SCB": "decoder attention",
        "model.layers.{}.mlp.down_proj.weight_format": "decoder mlp",
        "lm_head.weight": "decoder lm_head",
    }),
    "llama3v": ("llama3v", {DECODER, "vision", "projector"}, {
        "llm.model.embed_tokens.weight": "decoder embedding",
        "llm.model.layers.{}.self_attn.k_proj.weight": "decoder attention",
        "llm.lm_head.weight": "decoder lm_head",
        # a SigLIP tower under a misspelt prefix: its patch embedding makes it vision
        "vison.embeddings.patch_embedding.weight": "vision embedding",
        "vison.embeddings.position_embedding.weight": "vision position",
        "vison.encoder.layers.{}.self_attn.out_proj.weight": "vision attention",
        "vison.encoder.layers.{}.mlp.fc2.weight": "vision mlp",
        "vison.post_layernorm.weight": "vision norm",
        "projection.attn.in_proj_weight": "projector attention",
        "projection.kv_proj.weight": "projector mlp",
        "projection.ln_q.weight": "projector norm",
        "projection.query": "projector mlp",
    }),
    "llava-onevision-1.5-8b": ("llava", {DECODER, "vision"}, {
        "model.embed_tokens.weight": "decoder embedding",
        "model.layers.{}.mlp.up_proj.weight": "decoder mlp",
        "visual.blocks.{}.attn.qkv.weight": "vision attention",
        "visual.class_embedding": "vision embedding",
        "visual.merger.mlp.{}.weight": "vision projector",
        "visual.pre_layernorm.weight": "vision norm",
    }),
    "medgemma-27b-it": ("gemma", {DECODER, "vision", "projector"}, {
        "language_model.model.embed_tokens.weight": "decoder embedding",
        "language_model.model.layers.{}.pre_feedforward_layernorm.weight": "decoder norm",
        "language_model.model.layers.{}.self_attn.k_norm.weight": "decoder attention",
        "vision_tower.vision_model.encoder.layers.{}.self_attn.out_proj.weight": "vision attention",
        "vision_tower.vision_model.embeddings.patch_embedding.weight": "vision embedding",
        "vision_tower.vision_model.embeddings.position_embedding.weight": "vision position",
        "multi_modal_projector.mm_input_projection_weight": "projector mlp",
        "multi_modal_projector.mm_soft_emb_norm.weight": "projector norm",
    }),
    "mimo-7b": ("llama", {DECODER, "mtp"}, {
        "model.layers.{}.self_attn.q_proj.bias": "decoder attention",
        "model.mtp_layers.{}.input_proj.weight": "mtp mtp",
        "model.mtp_layers.{}.token_layernorm.weight": "mtp norm",
        "model.mtp_layers.{}.mlp.down_proj.weight": "mtp mlp",
        "model.mtp_layers.{}.self_attn.o_proj.weight": "mtp attention",
    }),
    "minicpm-v-2.6": ("qwen", {DECODER, "vision", "projector"}, {
        "model.layers.{}.self_attn.q_proj.weight": "decoder attention",
        "vpm.encoder.layers.{}.self_attn.q_proj.weight": "vision attention",
        "vpm.encoder.layers.{}.mlp.fc1.weight": "vision mlp",
        "vpm.embeddings.patch_embedding.weight": "vision embedding",
        "vpm.post_layernorm.weight": "vision norm",
        "resampler.attn.in_proj_weight": "projector attention",
        "resampler.kv_proj.weight": "projector mlp",
        "resampler.ln_q.weight": "projector norm",
        "resampler.query": "projector mlp",
    }),
    "molmo-7b-d-nf4": ("olmo", {DECODER, "vision"}, {
        "model.transformer.wte.embedding": "decoder embedding",
        "model.transformer.wte.new_embedding": "decoder embedding",
        "model.transformer.blocks.{}.att_proj.weight": "decoder attention",
        "model.transformer.blocks.{}.attn_out.weight.absmax": "decoder attention",
        "model.transformer.blocks.{}.ff_proj.weight.quant_map": "decoder mlp",
        "model.transformer.blocks.{}.ff_out.weight": "decoder mlp",
        "model.transformer.blocks.{}.attn_norm.weight": "decoder norm",
        "model.transformer.ff_out.weight": "decoder lm_head",
        "model.transformer.ln_f.weight": "decoder norm",
        "model.vision_backbone.image_vit.patch_embedding.weight": "vision embedding",
        "model.vision_backbone.image_vit.transformer.resblocks.{}.attention.wq.weight": (
            "vision attention"),
        "model.vision_backbone.image_vit.transformer.resblocks.{}.feed_forward.w1.weight": (
            "vision mlp"),
        "model.vision_backbone.image_projector.w1.weight": "vision projector",
        "model.vision_backbone.image_pooling_2d.wq.weight": "vision projector",
    }),
    "olmocr-7b": ("qwen2_vl", {DECODER, "vision"}, {
        "model.layers.{}.self_attn.v_proj.bias": "decoder attention",
        "visual.blocks.{}.attn.proj.weight": "vision attention",
        "visual.blocks.{}.norm1.weight": "vision norm",
        "visual.patch_embed.proj.weight": "vision embedding",
        "visual.merger.ln_q.weight": "vision projector",
    }),
    "openpangu-embedded-7b": ("PanguEmbedded", {DECODER}, {
        "model.layers.{}.self_attn.o_proj.bias": "decoder attention",
        "model.layers.{}.self_attn.rotary_emb.inv_freq": "decoder attention",
        "model.layers.{}.mlp.down_proj.weight": "decoder mlp",
        "lm_head.weight": "decoder lm_head",
    }),
    "paligemma-3b-pt-224": ("gemma", {DECODER, "vision", "projector"}, {
        "language_model.model.embed_tokens.weight": "decoder embedding",
        "language_model.model.layers.{}.self_attn.k_proj.weight": "decoder attention",
        "vision_tower.vision_model.embeddings.patch_embedding.weight": "vision embedding",
        "vision_tower.vision_model.encoder.layers.{}.mlp.fc1.weight": "vision mlp",
        "vision_tower.vision_model.post_layernorm.weight": "vision norm",
        "multi_modal_projector.linear.weight": "projector mlp",
    }),
    "phi3-mini-merge": ("phi", {DECODER}, {
        "model.layers.{}.self_attn.qkv_proj.weight": "decoder attention",
        "model.layers.{}.mlp.gate_up_proj.weight": "decoder mlp",
        "model.layers.{}.mlp.down_proj.weight": "decoder mlp",
        "lm_head.weight": "decoder lm_head",
    }),
    "phowhisper-tiny": ("encoder_decoder", {DECODER, "encoder"}, {
        "model.encoder.conv1.weight": "encoder embedding",
        "model.encoder.embed_positions.weight": "encoder position",
        "model.encoder.layers.{}.self_attn.k_proj.weight": "encoder attention",
        "model.encoder.layers.{}.fc1.weight": "encoder mlp",
        "model.encoder.layer_norm.weight": "encoder norm",
        "model.decoder.embed_tokens.weight": "decoder embedding",
        "model.decoder.embed_positions.weight": "decoder position",
        "model.decoder.layers.{}.encoder_attn.q_proj.weight": "decoder attention",
        "model.decoder.layers.{}.encoder_attn_layer_norm.weight": "decoder norm",
        "model.decoder.layers.{}.self_attn.out_proj.weight": "decoder attention",
    }),
    "pythia-1.4b-reward-model": ("gpt_neox", {DECODER}, {
        "gpt_neox.embed_in.weight": "decoder embedding",
        "gpt_neox.layers.{}.attention.query_key_value.weight": "decoder attention",
        "gpt_neox.layers.{}.mlp.dense_h_to_4h.bias": "decoder mlp",
        "gpt_neox.final_layer_norm.weight": "decoder norm",
        "out_proj.weight": "decoder head",
    }),
    "qwen-7b-chat": ("qwen1", {DECODER}, {
        "transformer.wte.weight": "decoder embedding",
        "transformer.h.{}.attn.c_attn.weight": "decoder attention",
        "transformer.h.{}.mlp.w1.weight": "decoder mlp",
        "transformer.h.{}.mlp.c_proj.weight": "decoder mlp",
        "transformer.h.{}.ln_1.weight": "decoder norm",
    }),
    "qwen-vl-chat-int4": ("qwen1", {DECODER, "vision"}, {
        "transformer.h.{}.attn.c_attn.qweight": "decoder attention",
        "transformer.h.{}.mlp.w2.scales": "decoder mlp",
        "transformer.h.{}.mlp.c_proj.g_idx": "decoder mlp",
        "transformer.visual.transformer.resblocks.{}.attn.in_proj.weight": "vision attention",
        "transformer.visual.transformer.resblocks.{}.mlp.c_fc.weight": "vision mlp",
        "transformer.visual.attn_pool.kv_proj.weight": "vision projector",
        "transformer.visual.conv1.weight": "vision embedding",
        "transformer.visual.ln_post.weight": "vision norm",
        "transformer.visual.proj": "vision projector",
        "transformer.visual.positional_embedding": "vision position",
    }),
    "qwen3-1.7b-mlx-bf16": ("qwen", {DECODER}, {
        "model.embed_tokens.weight": "decoder embedding",
        "model.layers.{}.self_attn.q_norm.weight": "decoder attention",
        "model.layers.{}.mlp.gate_proj.weight": "decoder mlp",
    }),
    "qwen3-14b-mlx-4bit": ("qwen", {DECODER}, {
        "model.embed_tokens.weight": "decoder embedding",
        "model.embed_tokens.scales": "decoder embedding",
        "model.layers.{}.self_attn.k_proj.biases": "decoder attention",
        "model.layers.{}.mlp.down_proj.scales": "decoder mlp",
        "lm_head.weight": "decoder lm_head",
    }),
    "qwen3.5-18b-reap-a3b": ("qwen_moe", {DECODER}, {
        "model.language_model.layers.{}.linear_attn.in_proj_qkv.weight": "decoder attention",
        "model.language_model.layers.{}.linear_attn.A_log": "decoder attention",
        "model.language_model.layers.{}.self_attn.q_proj.weight": "decoder attention",
        "model.language_model.layers.{}.mlp.experts.{}.gate_proj.weight": "decoder moe_expert",
        "model.language_model.layers.{}.mlp.shared_expert.up_proj.weight": "decoder shared_expert",
        "model.language_model.layers.{}.mlp.shared_expert_gate.weight": "decoder router",
        "model.language_model.layers.{}.mlp.gate.weight": "decoder router",
    }),
    "redpajama-incite-7b-base": ("gpt_neox", {DECODER}, {
        "gpt_neox.embed_in.weight": "decoder embedding",
        "embed_out.weight": "decoder lm_head",
        "gpt_neox.layers.{}.attention.dense.weight": "decoder attention",
        "gpt_neox.layers.{}.attention.rotary_emb.inv_freq": "decoder attention",
        "gpt_neox.layers.{}.input_layernorm.weight": "decoder norm",
    }),
    "videollama3-7b": ("llava", {DECODER, "vision", "projector"}, {
        "model.layers.{}.self_attn.o_proj.weight": "decoder attention",
        "model.vision_encoder.encoder.layers.{}.self_attn.v_proj.weight": "vision attention",
        "model.vision_encoder.embeddings.patch_embedding.weight": "vision embedding",
        "model.mm_projector.readout.{}.weight": "projector mlp",
    }),
    "wizardlm-2-8x22b": ("mixtral", {DECODER}, {
        "model.layers.{}.block_sparse_moe.experts.{}.w1.weight": "decoder moe_expert",
        "model.layers.{}.block_sparse_moe.gate.weight": "decoder router",
        "model.layers.{}.self_attn.v_proj.weight": "decoder attention",
        "model.norm.weight": "decoder norm",
    }),
}

FLOAT_DTYPES = {"F16", "BF16", "F32"}


@dataclass
class Built:
    layout: CorpusLayout
    path: Path
    frame: Frame


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Built]]:
    built: dict[str, Built] = {}
    with_ckpts = []
    for p in corpus_paths():
        layout = load_layout(p)
        dest = write_corpus_replica(layout, tmp_path_factory.mktemp(layout.name))
        ckpt = open_checkpoint(dest)
        with_ckpts.append(ckpt)
        built[layout.name] = Built(layout, dest, build_frame(ckpt))
    yield built
    for ckpt in with_ckpts:
        ckpt.close()


def test_the_corpus_is_covered_by_expectations() -> None:
    assert {p.stem for p in corpus_paths()} == set(EXPECTED)


NAMES = sorted(EXPECTED)


def _template_row(frame: Frame, template: str) -> int:
    return frame.templates.index(template)


@pytest.mark.parametrize("name", NAMES)
def test_components_and_roles(corpus: dict[str, Built], name: str) -> None:
    family, components, templates = EXPECTED[name]
    b = corpus[name]
    frame = b.frame
    assert frame.taxonomy.family == family
    present = {COMPONENTS[c] for c in np.unique(frame.component).tolist()}
    assert present == components
    for template, want in templates.items():
        cls = frame.table.classes[_template_row(frame, template)]
        assert f"{cls.component} {cls.part}" == want, template
    # Outside the decoder the flat role names the component; inside, it is the part.
    flat = [c.role == (c.part if c.component == DECODER else c.component)
            for c in frame.table.classes]
    assert all(flat)


@pytest.mark.parametrize("name", NAMES)
def test_no_unknown_templates(corpus: dict[str, Built], name: str) -> None:
    assert corpus[name].frame.table.unknown_templates() == []


@pytest.mark.parametrize("name", NAMES)
def test_each_component_against_its_config(corpus: dict[str, Built], name: str) -> None:
    """What the component-aware config checks will do: every component's layer
    grid, the decoder's experts, token embedding and head against the config
    section that describes that component."""
    frame = corpus[name].frame
    tax = frame.taxonomy
    checked = 0
    for comp in COMPONENTS:
        spec = tax.component_spec(comp)
        rows = frame.component == COMPONENT_CODE[comp]
        layers = np.unique(frame.layer[rows & (frame.layer >= 0)])
        if spec.layers is not None and len(layers):
            assert layers.tolist() == list(range(spec.layers)), comp
            checked += 1
    spec = tax.component_spec(DECODER)
    decoder = frame.component == COMPONENT_CODE[DECODER]
    experts = np.unique(frame.expert[decoder & (frame.expert >= 0)])
    if spec.experts is not None and len(experts):
        assert len(experts) == spec.experts
    # The token embedding: the decoder's largest embedding-role matrix.
    weights = decoder & (frame.kind == KIND_CODE[WEIGHT]) & (frame.ndim == 2)
    emb = np.flatnonzero(weights & (frame.part == ROLE_CODE[EMBEDDING]))
    emb = emb[[frame.dtype_name(i) in FLOAT_DTYPES for i in emb.tolist()]]
    if len(emb):
        rows_, width = frame.shape(max(emb.tolist(), key=lambda i: frame.shape(i)[0]))
        assert (rows_, width) == (spec.vocab, spec.hidden)
        checked += 1
    heads = np.flatnonzero(weights & (frame.part == ROLE_CODE[LM_HEAD]))
    for i in heads.tolist():
        if frame.dtype_name(i) in FLOAT_DTYPES:
            assert frame.shape(i) == (spec.vocab, spec.hidden)
    assert checked >= 1


# Packed layouts: their packing facts are recorded with them (``packing``).
PACKED = {p.stem for p in corpus_paths() if load_layout(p).data.get("packing")}


def logical_parameters(layout: CorpusLayout) -> int:
    """Logical parameters from the layout's recorded packing facts, independently
    of ckptscan's scheme declarations: a packed container counts its values, a
    quantization companion counts none."""
    facts = layout.data.get("packing") or {}
    scheme, bits = facts.get("scheme"), int(facts.get("bits", 4))
    total = 0
    for name, dtype, shape in layout.tensors:
        n = math.prod(shape)
        last = name.rsplit(".", 1)[-1]
        if scheme == "mlx":
            total += n * 32 // bits if dtype == "U32" else 0 if last in ("scales", "biases") else n
        elif scheme == "gptq":
            total += (n * 32 // bits if last == "qweight"
                      else 0 if last in ("qzeros", "scales", "g_idx") else n)
        elif scheme == "bitsandbytes":
            # 4-bit: two values per U8 byte; LLM.int8(): one per I8, SCB row scales
            overhead = last in ("absmax", "quant_map", "SCB", "weight_format") or \
                ".quant_state." in name or "nested_" in last
            total += 0 if overhead else n * 2 if dtype == "U8" else n
        else:
            total += n
    return total


@pytest.mark.parametrize(
    "name", [p.stem for p in corpus_paths() if load_layout(p).total_size_checked])
def test_parameter_count_against_total_size(corpus: dict[str, Built], name: str) -> None:
    b = corpus[name]
    report = scan(b.path)
    params = {d: c.parameters for d, c in report.dtypes.items()}
    stored = {d: c.bytes for d, c in report.dtypes.items()}
    if name in PACKED:
        # packed values and overhead tensors: the bytes are the index's, the
        # parameters the logical weights the packing facts give
        assert sum(stored.values()) == b.layout.total_size
        assert report.total.parameters == logical_parameters(b.layout)
        if int(b.layout.data["packing"].get("bits", 4)) < 8:
            assert report.total.parameters > sum(stored.values())  # 4-bit: > 1 per byte
        return
    assert b.layout.index_bytes(params) == b.layout.total_size
    # and the replica's own bytes agree with its headers
    assert sum(stored.values()) == sum(p * DTYPE_BITS[d] // 8 for d, p in params.items())


@pytest.mark.parametrize("name", sorted(PACKED))
def test_packed_layouts_count_logical_weights(corpus: dict[str, Built], name: str) -> None:
    b = corpus[name]
    report = scan(b.path)
    assert report.total.parameters == logical_parameters(b.layout)
    q = report.quantization
    assert q.family == b.layout.data["packing"]["scheme"] and q.schemes
    bits = int(b.layout.data["packing"].get("bits", 4))
    assert q.overhead_bytes > 0 and q.format in (("INT4", "NF4") if bits == 4 else (f"INT{bits}",))
    assert sum(s["parameters"] for s in q.schemes) < report.total.parameters


@pytest.mark.parametrize("name", NAMES)
def test_the_report_has_no_false_finding(corpus: dict[str, Built], name: str) -> None:
    """The whole pipeline on each real layout: no error, no warning (a real
    checkpoint, faithfully rebuilt, has nothing wrong with it) but a deployment
    limit its layout records with the reason (``deployment``): a warning for a
    model of 20 B parameters or more that TP 8 cannot split."""
    report = scan(corpus[name].path)
    bad = [(f.code, f.message) for f in report.findings if f.severity >= Severity.WARNING]
    known = corpus[name].layout.data.get("deployment")
    warned = set()
    if known is not None:
        tp = report.deployment.tensor_parallel
        assert tp is not None and tp["max"] == known["tensor_parallel_max"]
        if tp["max"] < 8 and report.total.parameters >= 20_000_000_000:  # README's rule
            warned = {"tensor-parallel-limit"}
    assert {c for c, _ in bad} == warned, bad
