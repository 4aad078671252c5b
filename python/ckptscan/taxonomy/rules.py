"""The taxonomy's data: roles, kinds, components, name rules, families, config keys.

Everything that names a model's conventions lives here as tables; the code in
``classify.py`` and ``components.py`` only walks them.

Patterns are dotted components matched as whole components, contiguously,
anywhere in a template ("mlp.gate" matches "model.layers.{}.mlp.gate.weight"
but not "...mlp.gate_proj.weight"). "*" inside a component matches any run of
characters except "."; a leading "^" anchors the pattern at the start.
Rule tables are ordered: the first match wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

# ---- roles -------------------------------------------------------------------------

OTHER: Final = "other"
EMBEDDING: Final = "embedding"
ATTENTION: Final = "attention"
MOE_EXPERT: Final = "moe_expert"
SHARED_EXPERT: Final = "shared_expert"
ROUTER: Final = "router"
MLP: Final = "mlp"
NORM: Final = "norm"
LM_HEAD: Final = "lm_head"
MTP: Final = "mtp"
VISION: Final = "vision"
AUDIO: Final = "audio"
PROJECTOR: Final = "projector"
ENCODER: Final = "encoder"
AUX: Final = "aux"
HEAD: Final = "head"  # a task head that is not the vocabulary projection (score, classifier)
POSITION: Final = "position"  # learned position tables (wpe, embed_positions): not the vocabulary

# OTHER first so that code 0 (numpy's zero fill) means "unknown". The first
# eleven codes are those of the taxonomy before components; new ones are appended.
# A tensor's ``role`` is its role in the decoder, or its component's name
# (vision, audio, projector, encoder, aux, mtp) outside it; ``part`` is its role
# within its component (see ``classify.TensorClass``).
ROLES: Final[tuple[str, ...]] = (
    OTHER,
    EMBEDDING,
    ATTENTION,
    MOE_EXPERT,
    SHARED_EXPERT,
    ROUTER,
    MLP,
    NORM,
    LM_HEAD,
    MTP,
    VISION,
    AUDIO,
    PROJECTOR,
    ENCODER,
    AUX,
    HEAD,
    POSITION,
)
ROLE_CODE: Final[Mapping[str, int]] = {role: code for code, role in enumerate(ROLES)}

# ---- kinds -------------------------------------------------------------------------

WEIGHT: Final = "weight"
SCALE: Final = "scale"
BIAS: Final = "bias"
KINDS: Final[tuple[str, ...]] = (OTHER, WEIGHT, SCALE, BIAS)
KIND_CODE: Final[Mapping[str, int]] = {kind: code for code, kind in enumerate(KINDS)}

# Parameter (last component) -> kind; first match wins, no match is OTHER.
PARAM_KINDS: Final[tuple[tuple[str, str], ...]] = (
    ("weight", WEIGHT),
    ("bias", BIAS),
    ("*_scale", SCALE),  # weight_scale, input_scale, k_scale, v_scale
    ("*_scale_inv", SCALE),  # DeepSeek / MiniMax block scales
    ("*_scale_2", SCALE),  # NVFP4
    ("*_scales", SCALE),  # GPT-OSS MXFP4 exponents
    ("scales", SCALE),  # GPTQ / AWQ / MLX group scales
    ("scale_weight", SCALE),
    ("*_blocks", WEIGHT),  # GPT-OSS MXFP4 payload
    ("*_proj", WEIGHT),  # fused expert parameters named after the projection
    ("qweight", WEIGHT),
    ("weight_packed", WEIGHT),
    ("*_weight", WEIGHT),  # in_proj_weight (nn.MultiheadAttention), mm_input_projection_weight
    # Embedding tables stored under their own name (Molmo's wte.embedding / new_embedding).
    ("embedding", WEIGHT),
    ("*_embedding", WEIGHT),
    ("*_bias", BIAS),  # e_score_correction_bias, gate_up_proj_bias, in_proj_bias
)

# ---- components ----------------------------------------------------------------------

DECODER: Final = "decoder"
# Code 0 is the decoder (the language model): numpy's zero fill.
COMPONENTS: Final[tuple[str, ...]] = (DECODER, VISION, AUDIO, PROJECTOR, MTP, ENCODER, AUX)
COMPONENT_CODE: Final[Mapping[str, int]] = {c: code for code, c in enumerate(COMPONENTS)}

# Name components that open a component other than the decoder. The leftmost
# match in a template wins (visual.merger.* is the vision tower's, not a projector).
COMPONENT_MARKERS: Final[tuple[tuple[str, str], ...]] = (
    ("visual", VISION),  # Qwen2-VL / 2.5-VL / 3-VL, LLaVA-OneVision-1.5, Qwen2.5-Omni
    ("vision_tower", VISION),  # LLaVA, Gemma 3, PaliGemma
    ("vision_model", VISION),  # Mllama, Idefics, Llama 4, CLIP / SigLIP
    ("vision_encoder", VISION),  # VideoLLaMA3, xgen-mm
    ("vision_backbone", VISION),  # Molmo
    ("vision", VISION),  # GLM-4V
    ("vpm", VISION),  # MiniCPM-V
    ("vision_embed_tokens", VISION),  # Phi-3-vision
    ("image_embed", VISION),  # Phi-4-multimodal
    ("audio_embed", AUDIO),
    ("sam_model", VISION),  # DeepSeek-OCR
    ("image_encoder", VISION),
    ("vit", VISION),  # ViT, InternVL
    ("audio_tower", AUDIO),  # Qwen2-Audio, Qwen2.5-Omni
    ("audio_model", AUDIO),
    ("audio_encoder", AUDIO),
    ("apm", AUDIO),  # MiniCPM-o
    ("multi_modal_projector", PROJECTOR),
    ("mm_projector", PROJECTOR),
    ("*_projector", PROJECTOR),  # gene_projector, image_projector outside a tower
    ("projector", PROJECTOR),  # DeepSeek-VL2 / OCR
    ("resampler", PROJECTOR),  # MiniCPM-V
    ("^projection", PROJECTOR),  # llama3v's resampler
    ("vision_tokenizer", PROJECTOR),  # xgen-mm's perceiver resampler
    ("connector", PROJECTOR),  # Idefics3 / SmolVLM
    ("^mlp1", PROJECTOR),  # InternVL
    ("*_projection_layer", PROJECTOR),  # MiniCPM-o audio_projection_layer
    ("image_newline", PROJECTOR),  # LLaVA-NeXT
    ("view_seperator", PROJECTOR),  # DeepSeek-VL2 / OCR (sic)
    ("mtp", MTP),  # Qwen3-Next: mtp.layers.{}.*, mtp.fc
    ("mtp_*", MTP),  # MiMo: model.mtp_layers.{}.*
    ("talker", AUX),  # Qwen2.5-Omni's speech generator
    ("token2wav", AUX),
)

# A tower no marker names (llama3v's misspelt ``vison.*``) is a vision tower when
# one of its modules embeds image patches.
PATCH_EMBEDDINGS: Final[frozenset[str]] = frozenset(
    {"patch_embed", "patch_embedding", "patch_embeddings", "patch_conv"}
)

# Only in an encoder-decoder: the encoder's stack.
ENCODER_MARKERS: Final[tuple[str, ...]] = ("encoder",)

# Components that name an MTP module's own parts wherever they sit (DeepSeek-V3 /
# GLM-4.5 put them inside model.layers.{num_hidden_layers}).
MTP_MARKERS: Final[tuple[str, ...]] = (
    "mtp",
    "mtp_*",
    "eh_proj",
    "enorm",
    "hnorm",
    "shared_head",
)

# The integer after one of these is the layer / expert index.
LAYER_CONTAINERS: Final[frozenset[str]] = frozenset(
    {"layers", "layer", "h", "blocks", "block", "resblocks", "mtp_layers"}
)
EXPERT_CONTAINERS: Final[frozenset[str]] = frozenset({"experts"})

# Modules that own loose parameters (sinks, e_score_correction_bias, A_log) but
# are not themselves a projection.
CONTAINERS: Final[frozenset[str]] = frozenset(
    {"model", "self_attn", "attn", "attention", "linear_attn", "mlp", "block_sparse_moe",
     "moe", "experts", "feed_forward", "ffn"}
)
# Modules a quantizer hangs its state under (bitsandbytes: att_proj.weight.absmax).
QUANT_STATE_MODULES: Final[frozenset[str]] = frozenset({"weight", "quant_state"})

# ---- role rules ------------------------------------------------------------------------
Rule = tuple[str, str]

# Checked first in every family: conventions of converters, not of a model.
COMMON_RULES: Final[tuple[Rule, ...]] = (
    ("switch_mlp", MOE_EXPERT),  # MLX: experts stacked in one tensor per projection
)

# The tail every decoder-only family of the Llama lineage shares.
_DECODER_TAIL: Final[tuple[Rule, ...]] = (
    ("self_attn", ATTENTION),  # q/k/v/o, q_norm/k_norm, MLA, sinks
    ("embed_tokens", EMBEDDING),
    ("*norm", NORM),  # input/post_attention/pre_feedforward/final, enorm
    ("mlp", MLP),  # dense gate/up/down, Phi-3's fused gate_up_proj
    ("lm_head", LM_HEAD),
    ("shared_head.head", LM_HEAD),  # DeepSeek MTP's own output head
)

_DEEPSEEK_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.gate", ROUTER),  # gate.weight and gate.e_score_correction_bias
    ("mlp.shared_experts", SHARED_EXPERT),
    ("mlp.experts", MOE_EXPERT),
    *_DECODER_TAIL,
)

_BLOCK_SPARSE_MOE_RULES: Final[tuple[Rule, ...]] = (
    ("block_sparse_moe.gate", ROUTER),  # the router; a dense MLP's is gate_proj
    ("block_sparse_moe.router", ROUTER),  # Granite-MoE: router.layer
    ("block_sparse_moe.e_score_correction_bias", ROUTER),
    ("block_sparse_moe.experts", MOE_EXPERT),
    ("block_sparse_moe", MOE_EXPERT),  # Granite-MoE: fused input_linear / output_linear
    ("shared_mlp", SHARED_EXPERT),  # Granite-MoE-Shared / 4.0: beside block_sparse_moe
    *_DECODER_TAIL,
)

_QWEN_MOE_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.shared_expert_gate", ROUTER),
    ("mlp.shared_expert", SHARED_EXPERT),
    ("mlp.gate", ROUTER),
    ("mlp.experts", MOE_EXPERT),
    ("linear_attn", ATTENTION),  # Qwen3-Next / Qwen3.5 gated DeltaNet layers
    *_DECODER_TAIL,
)

_GPT_OSS_RULES: Final[tuple[Rule, ...]] = (
    ("mlp.router", ROUTER),
    ("mlp.experts", MOE_EXPERT),  # fused: experts.gate_up_proj_blocks, no expert index
    *_DECODER_TAIL,
)

# Qwen 1: transformer.h.{}.attn.c_attn, mlp.w1/w2/c_proj, wte.
_QWEN1_RULES: Final[tuple[Rule, ...]] = (
    ("attn", ATTENTION),
    ("mlp", MLP),
    ("ln_*", NORM),
    ("wte", EMBEDDING),
    ("lm_head", LM_HEAD),
)

# Falcon, Bloom, GPT-NeoX, ChatGLM: fused query_key_value, dense_h_to_4h / dense_4h_to_h.
_FUSED_QKV_RULES: Final[tuple[Rule, ...]] = (
    ("self_attention", ATTENTION),  # Falcon, Bloom, ChatGLM
    ("attention", ATTENTION),  # GPT-NeoX
    ("*norm*", NORM),  # before embeddings: Bloom's word_embeddings_layernorm
    ("ln_*", NORM),  # Falcon ln_attn / ln_mlp / ln_f
    ("mlp", MLP),
    ("word_embeddings", EMBEDDING),
    ("embed_in", EMBEDDING),  # GPT-NeoX
    ("embed_out", LM_HEAD),  # GPT-NeoX
    ("output_layer", LM_HEAD),  # ChatGLM 2/3, GLM-4
    ("rotary_pos_emb", ATTENTION),  # ChatGLM's inv_freq buffer
    ("lm_head", LM_HEAD),
)

# InternLM2: attention.wqkv / wo, feed_forward.w1/w2/w3, tok_embeddings, output.
_INTERNLM2_RULES: Final[tuple[Rule, ...]] = (
    ("attention", ATTENTION),
    ("feed_forward", MLP),
    ("*norm", NORM),
    ("tok_embeddings", EMBEDDING),
    ("^output", LM_HEAD),
)

# Molmo / OLMo: blocks.{}.att_proj / attn_out / ff_proj / ff_out, wte.embedding,
# the head is transformer.ff_out outside the blocks.
_OLMO_RULES: Final[tuple[Rule, ...]] = (
    ("transformer.ff_out", LM_HEAD),
    ("att_proj", ATTENTION),
    ("attn_out", ATTENTION),
    ("ff_proj", MLP),
    ("ff_out", MLP),
    ("*_norm", NORM),
    ("ln_f", NORM),
    ("wte", EMBEDDING),
    ("mlp.gate", ROUTER),  # OLMoE: mlp.gate / mlp.experts.{}, else the Llama names
    ("mlp.experts", MOE_EXPERT),
    *_DECODER_TAIL,  # OLMo 2 / OLMoE in transformers use the Llama names
)

# Encoder-decoders: M2M100 / NLLB / BART / Whisper (self_attn, encoder_attn,
# fc1/fc2, shared) and T5 (SelfAttention, EncDecAttention, DenseReluDense).
_ENCODER_DECODER_RULES: Final[tuple[Rule, ...]] = (
    ("*norm*", NORM),  # self_attn_layer_norm, encoder_attn_layer_norm, final_layer_norm
    ("self_attn", ATTENTION),
    ("encoder_attn", ATTENTION),  # cross-attention
    ("SelfAttention", ATTENTION),
    ("EncDecAttention", ATTENTION),
    ("DenseReluDense", MLP),
    ("fc1", MLP),
    ("fc2", MLP),
    ("shared", EMBEDDING),
    ("embed_tokens", EMBEDDING),
    ("embed_positions", POSITION),
    ("conv1", EMBEDDING),  # Whisper's audio stem
    ("conv2", EMBEDDING),
    ("lm_head", LM_HEAD),
    ("^proj_out", LM_HEAD),  # Whisper
    ("final_logits_bias", LM_HEAD),
)

# Heuristics for names no family table covers, and for every tower: the
# conventions of GPT-2, GPT-NeoX, Mistral's consolidated files, DBRX, Llama 4,
# Jamba, BERT / ViT / CLIP / SigLIP and the like.
GENERIC_RULES: Final[tuple[Rule, ...]] = (
    # A bare "gate" is a router only as the direct child of an MoE block.
    ("block_sparse_moe.gate", ROUTER),
    ("mlp.gate", ROUTER),
    ("moe.gate", ROUTER),
    ("router", ROUTER),
    ("shared_expert_gate", ROUTER),
    ("e_score_correction_bias", ROUTER),
    ("shared_experts", SHARED_EXPERT),
    ("shared_expert", SHARED_EXPERT),
    ("mlp.shared_mlp", SHARED_EXPERT),  # Hunyuan-MoE: the MoE block's always-on MLP
    ("experts", MOE_EXPERT),
    ("block_sparse_moe", MOE_EXPERT),
    ("self_attn", ATTENTION),
    ("self_attention", ATTENTION),
    ("cross_attn", ATTENTION),
    # Mllama's tanh gates on the cross-attention layers' and the vision encoder's branches
    ("cross_attn_mlp_gate", MLP),
    ("cross_attn_*", ATTENTION),
    ("gate_attn", ATTENTION),
    ("gate_ffn", MLP),
    ("attn", ATTENTION),
    ("attention", ATTENTION),
    ("linear_attn", ATTENTION),
    ("rotary_emb", ATTENTION),
    ("rotary_pos_emb", ATTENTION),
    # State-space token mixers stand where attention stands (Mamba, Jamba, Nemotron-H).
    ("mixer.up_proj", MLP),
    ("mixer.down_proj", MLP),
    ("mamba", ATTENTION),
    ("mixer", ATTENTION),
    # Before embeddings: pre_fc_norm_embedding, layernorm_embedding are norms.
    ("*norm*", NORM),
    ("*Norm*", NORM),  # BERT's LayerNorm
    ("ln", NORM),
    ("ln_*", NORM),
    # Masked-LM heads: BERT's cls.predictions (its bias is the tied decoder's),
    # ModernBERT's head.dense + decoder.bias; next-sentence / pooling heads
    ("cls.predictions.transform", HEAD),
    ("cls.predictions", LM_HEAD),
    ("^cls", HEAD),
    ("^head.dense", HEAD),
    ("^decoder.bias", LM_HEAD),
    ("lm_head", LM_HEAD),
    ("shared_head.head", LM_HEAD),
    ("embed_out", LM_HEAD),
    ("output_layer", LM_HEAD),
    ("^output", LM_HEAD),
    ("^proj_out", LM_HEAD),
    ("^score", HEAD),
    ("^classifier", HEAD),
    ("^out_proj", HEAD),  # GPT-NeoX reward models
    ("^v_head", HEAD),
    ("pooler", HEAD),
    # Position tables before token embeddings: a vocabulary check must not read them.
    ("embed_positions", POSITION),
    ("wpe", POSITION),
    ("position_embedding*", POSITION),
    ("*positional_embedding*", POSITION),  # Llama 4's _vlm, Mllama's gated / tile tables
    ("pos_embed", POSITION),
    ("*pos_emb", POSITION),
    ("embed_tokens", EMBEDDING),
    ("embed_in", EMBEDDING),
    ("tok_embeddings", EMBEDDING),
    ("wte", EMBEDDING),
    ("shared", EMBEDDING),
    # MLP blocks before the embedding globs: a wrapper named *_embed (Phi-4-mm's
    # image_embed) holds whole towers.
    ("mlp", MLP),
    ("mlps", MLP),  # LongCat-Flash: two dense MLPs per layer, mlps.{}
    ("feed_forward*", MLP),
    ("ffn", MLP),
    ("fc1", MLP),
    ("fc2", MLP),
    ("linear1", MLP),  # nn.TransformerEncoderLayer
    ("linear2", MLP),
    ("intermediate", MLP),  # BERT / ViT: intermediate.dense, then output.dense
    ("layer.{}.output", MLP),
    ("*embeddings", EMBEDDING),
    ("*embedding", EMBEDDING),
    ("*embed", EMBEDDING),  # patch_embed
    ("*_emb", EMBEDDING),
    ("cls_token", EMBEDDING),
    ("^head", LM_HEAD),  # RWKV
    ("head", HEAD),  # what is left of a head module: SigLIP's MAP head probe
)

# Checked first inside a tower (vision, audio, aux): the tower's own way out to
# the decoder (patch merger, pooling, projector) is its projector part.
TOWER_RULES: Final[tuple[Rule, ...]] = (
    ("merger", PROJECTOR),  # Qwen2-VL / RiceViT patch merger
    ("*merger*", PROJECTOR),  # Qwen3-VL deepstack_merger_list
    ("*_projector", PROJECTOR),  # Molmo image_projector
    ("projector", PROJECTOR),
    ("attn_pool", PROJECTOR),  # Qwen-VL
    ("image_pooling_2d", PROJECTOR),  # Molmo
    ("visual.proj", PROJECTOR),  # Qwen-VL: the tower's output projection (a bare parameter)
    ("downsample", PROJECTOR),  # GLM-4.1V: the conv that merges patches before the merger
    ("img_projection*", PROJECTOR),  # Phi-4-multimodal: image_embed.img_projection_up / _down
    ("*_proj_for_*speech", PROJECTOR),  # Phi-4-multimodal: audio_embed.up_proj_for_speech, ...
    ("conv1", EMBEDDING),  # CLIP-style patch stem; Whisper-style audio stem conv1 / conv2
    ("conv2", EMBEDDING),
    ("patch_conv", EMBEDDING),  # Pixtral
)

# Parts a tensor gets when no rule knows it, per component: a projector's
# unnamed parameters are its projection.
DEFAULT_PARTS: Final[Mapping[str, str]] = {PROJECTOR: MLP}


# Parts whose weights can be linear layers, and module names that never are.
LINEAR_PARTS: Final[frozenset[str]] = frozenset(
    {ATTENTION, MOE_EXPERT, SHARED_EXPERT, ROUTER, MLP, LM_HEAD, MTP, PROJECTOR, HEAD}
)
NON_LINEAR_MODULES: Final[tuple[str, ...]] = ("*norm*", "*Norm*", "ln", "ln_*", "*embed*",
                                               "*conv*")


# ---- families ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    """A model family: how to recognise its config, and its decoder rule table.

    ``components`` are extra name markers of this family's own towers;
    ``encoder_decoder`` says that its ``encoder`` stack is an encoder component.
    """

    name: str
    model_types: frozenset[str]
    architectures: frozenset[str]
    rules: tuple[Rule, ...]
    components: tuple[tuple[str, str], ...] = ()
    encoder_decoder: bool = False


def _family(name: str, model_types: str, architectures: str, rules: tuple[Rule, ...],
            **kw: object) -> Family:
    return Family(name, frozenset(model_types.split()), frozenset(architectures.split()),
                  rules, **kw)  # type: ignore[arg-type]


FAMILIES: Final[tuple[Family, ...]] = (
    _family("deepseek_v3", "deepseek_v3 deepseek_v2 kimi_k2",
            "DeepseekV3ForCausalLM DeepseekV2ForCausalLM", _DEEPSEEK_RULES),
    _family("glm4_moe", "glm4_moe", "Glm4MoeForCausalLM", _DEEPSEEK_RULES),
    _family("deepseek_vl", "deepseek_vl_v2 deepseek_vl deepseek_ocr",
            "DeepseekOCRForCausalLM DeepseekOCR2ForCausalLM DeepseekVLV2ForCausalLM",
            _DEEPSEEK_RULES,
            # DeepSeek-OCR 2's vision encoder is a Qwen2 stack under model.qwen2_model.
            components=(("qwen2_model", VISION),)),
    _family("minimax_m2", "minimax_m2", "MiniMaxM2ForCausalLM", _BLOCK_SPARSE_MOE_RULES),
    _family("minimax", "minimax_m1 minimax minimax_text_01",
            "MiniMaxM1ForCausalLM MiniMaxText01ForCausalLM", _BLOCK_SPARSE_MOE_RULES),
    _family("mixtral", "mixtral", "MixtralForCausalLM", _BLOCK_SPARSE_MOE_RULES),
    _family("granite_moe", "granitemoe granitemoeshared granitemoehybrid",
            "GraniteMoeForCausalLM GraniteMoeSharedForCausalLM", _BLOCK_SPARSE_MOE_RULES),
    _family("qwen_moe", "qwen2_moe qwen3_moe qwen3_next qwen3_5_moe qwen3_5_moe_text qwen3_vl_moe",
            "Qwen2MoeForCausalLM Qwen3MoeForCausalLM Qwen3NextForCausalLM "
            "Qwen3_5MoeForConditionalGeneration Qwen3VLMoeForConditionalGeneration",
            _QWEN_MOE_RULES),
    _family("gpt_oss", "gpt_oss", "GptOssForCausalLM", _GPT_OSS_RULES),
    _family("qwen", "qwen2 qwen3 qwen3_5 qwen3_5_text",
            "Qwen2ForCausalLM Qwen3ForCausalLM", _DECODER_TAIL),
    _family("qwen1", "qwen", "QWenLMHeadModel", _QWEN1_RULES),
    _family("llama", "llama mistral mistral3 granite cohere cohere2 starcoder2 smollm3 "
            "mimo exaone4 seed_oss hunyuan_v1_dense ernie4_5 apertus",
            "LlamaForCausalLM MistralForCausalLM GraniteForCausalLM MiMoForCausalLM",
            _DECODER_TAIL),
    _family("gemma", "gemma gemma2 gemma3 gemma3_text gemma3n gemma3n_text gemma4 "
            "gemma4_text paligemma",
            "GemmaForCausalLM Gemma2ForCausalLM Gemma3ForCausalLM "
            "Gemma3ForConditionalGeneration PaliGemmaForConditionalGeneration",
            _DECODER_TAIL),
    _family("phi", "phi phi3 phimoe phi4_multimodal",
            "PhiForCausalLM Phi3ForCausalLM PhiMoEForCausalLM",
            _BLOCK_SPARSE_MOE_RULES),
    _family("qwen2_vl", "qwen2_vl qwen2_5_vl qwen3_vl qwen2_5_omni qwen2_5_omni_thinker "
            "qwen3_omni_moe qwen2_audio",
            "Qwen2VLForConditionalGeneration Qwen2_5_VLForConditionalGeneration "
            "Qwen3VLForConditionalGeneration Qwen2_5OmniForConditionalGeneration",
            _QWEN_MOE_RULES),
    _family("llava", "llava llava_next llava_onevision llava_next_video llava_onevision1_5 "
            "videollama3_qwen2 minicpmv mllama idefics3 smolvlm internvl_chat internvl "
            "xgenmm blip_3 molmo2",
            "LlavaForConditionalGeneration LlavaNextForConditionalGeneration "
            "LlavaOnevisionForConditionalGeneration LLaVAOneVision1_5_ForConditionalGeneration "
            "MiniCPMV Videollama3Qwen2ForCausalLM",
            _QWEN_MOE_RULES),
    _family("falcon", "falcon RefinedWeb RefinedWebModel", "FalconForCausalLM RWForCausalLM",
            _FUSED_QKV_RULES),
    _family("bloom", "bloom", "BloomForCausalLM", _FUSED_QKV_RULES),
    _family("gpt_neox", "gpt_neox gpt_neox_reward_model gpt_neox_japanese",
            "GPTNeoXForCausalLM GPTNeoXRewardModel", _FUSED_QKV_RULES),
    _family("chatglm", "chatglm glm glm4 glm4v", "ChatGLMModel ChatGLMForConditionalGeneration "
            "GlmForCausalLM Glm4ForCausalLM",
            # ChatGLM's decoder stack is transformer.encoder.layers; GLM-4 (HF) uses Llama names.
            (*_FUSED_QKV_RULES, *_DECODER_TAIL)),
    _family("internlm2", "internlm2 internlm3 internlm", "InternLM2ForCausalLM",
            (*_INTERNLM2_RULES, *_DECODER_TAIL)),
    _family("olmo", "molmo olmo olmo2 olmo3 olmoe hf_olmo",
            "MolmoForCausalLM OLMoForCausalLM Olmo2ForCausalLM OlmoeForCausalLM",
            _OLMO_RULES),
    _family("encoder_decoder", "m2m_100 nllb_moe bart mbart marian pegasus t5 mt5 umt5 "
            "whisper longt5 switch_transformers",
            "M2M100ForConditionalGeneration T5ForConditionalGeneration "
            "WhisperForConditionalGeneration BartForConditionalGeneration",
            _ENCODER_DECODER_RULES, encoder_decoder=True),
    _family("vision_encoder", "vit clip siglip siglip2 clip_vision_model siglip_vision_model "
            "dinov2 deit beit",
            "ViTModel ViTForImageClassification CLIPModel SiglipModel",
            (("logit_scale", HEAD), ("logit_bias", HEAD)),
            components=(("vit", VISION), ("^embeddings", VISION), ("^encoder", VISION),
                        ("^layernorm", VISION), ("^pooler", VISION), ("^classifier", VISION),
                        ("text_model", ENCODER), ("*_projection", PROJECTOR))),
    _family("gpt2", "gpt2 gpt_bigcode gptj codegen", "GPT2LMHeadModel", ()),
)
GENERIC: Final = Family("generic", frozenset(), frozenset(), ())

# ---- config keys --------------------------------------------------------------------------

# Config keys that count MTP modules (DeepSeek/GLM/MiMo, MiniMax-M2, Qwen3-Next).
MTP_COUNT_KEYS: Final[tuple[str, ...]] = (
    "num_nextn_predict_layers",
    "num_mtp_modules",
    "mtp_num_hidden_layers",
)

# Where each component's own config section sits: (path of keys), tried in order.
# A wrapper's decoder section is its text config; a plain model's is the top level.
CONFIG_SECTIONS: Final[Mapping[str, tuple[tuple[str, ...], ...]]] = {
    DECODER: (("text_config",), ("language_config",), ("llm_config",),
              ("thinker_config", "text_config"), ("text_model_config",)),
    VISION: (("vision_config",), ("vision_encoder_config",), ("visual",), ("vit_config",),
             ("thinker_config", "vision_config")),
    AUDIO: (("audio_config",), ("thinker_config", "audio_config")),
    PROJECTOR: (("projector_config",),),
    MTP: (),
    ENCODER: (("encoder_config",), ("encoder",)),
    AUX: (),
}

# What the config says of a component, key by key (first present wins).
LAYER_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    DECODER: ("num_hidden_layers", "n_layer", "num_layers", "n_layers"),
    VISION: ("num_hidden_layers", "depth", "num_layers", "layers"),
    AUDIO: ("num_hidden_layers", "encoder_layers", "num_layers"),
    ENCODER: ("encoder_layers", "num_layers", "num_hidden_layers"),
}
# An encoder-decoder's top level describes both stacks.
ENC_DEC_DECODER_LAYER_KEYS: Final[tuple[str, ...]] = (
    "decoder_layers", "num_decoder_layers", "num_hidden_layers", "num_layers")
HIDDEN_KEYS: Final[tuple[str, ...]] = ("hidden_size", "n_embd", "n_embed", "d_model")
VOCAB_KEYS: Final[tuple[str, ...]] = ("padded_vocab_size", "vocab_size")
EXPERT_KEYS: Final[tuple[str, ...]] = (
    "n_routed_experts", "num_local_experts", "num_experts", "moe_num_experts")
