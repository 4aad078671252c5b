"""Parameter counts of published layouts: logical weights, packed containers
counted by their values, scales / zero points / shapes not counted.

Each layout is built here from the model's published config numbers and
tensor layout (sources at each builder); the expected count is computed in the
test from the *unpacked* shapes, independently of the scheme declarations,
and must also round to the figure the Hub publishes. The declarations are
asked once per (name template, dtype, shape), as a vectorised checks layer would."""

from __future__ import annotations

import math
from collections import Counter

from ckptscan import schemes as S
from ckptscan.replica import minimax_m2
from ckptscan.taxonomy import template_of
from scheme_configs import GPT_OSS, MINIMAX, W4A16

Tensor = tuple[str, str, tuple[int, ...]]


def count(det: S.Detection, tensors: list[Tensor]) -> int:
    """Logical parameters, one declaration call per distinct (template, dtype, shape)."""
    groups = Counter((template_of(n)[0], d, s) for n, d, s in tensors)
    assert len(groups) < 60  # a few dozen templates, whatever the model size
    return sum(det.parameters(t, d, s) * k for (t, d, s), k in groups.items())


def gpt_oss(layers: int, experts: int) -> tuple[list[Tensor], int]:
    """openai/gpt-oss-20b / -120b headers (hidden 2880, 64 query / 8 KV heads of 64,
    vocab 201088, expert width 2880): (stored tensors, logical parameters)."""
    h, inter, heads, kv, hd, vocab = 2880, 2880, 64, 8, 64, 201088
    out: list[Tensor] = [("model.embed_tokens.weight", "BF16", (vocab, h)),
                         ("lm_head.weight", "BF16", (vocab, h)),
                         ("model.norm.weight", "BF16", (h,))]
    logical = 2 * vocab * h + h
    for i in range(layers):
        p = f"model.layers.{i}"
        for proj, o, n in (("q_proj", heads * hd, h), ("k_proj", kv * hd, h),
                           ("v_proj", kv * hd, h), ("o_proj", h, heads * hd)):
            out += [(f"{p}.self_attn.{proj}.weight", "BF16", (o, n)),
                    (f"{p}.self_attn.{proj}.bias", "BF16", (o,))]
            logical += o * n + o
        out += [(f"{p}.self_attn.sinks", "BF16", (heads,)),
                (f"{p}.mlp.router.weight", "BF16", (experts, h)),
                (f"{p}.mlp.router.bias", "BF16", (experts,)),
                (f"{p}.input_layernorm.weight", "BF16", (h,)),
                (f"{p}.post_attention_layernorm.weight", "BF16", (h,))]
        logical += heads + experts * h + experts + 2 * h
        for proj, rows, cols in (("gate_up_proj", 2 * inter, h), ("down_proj", h, inter)):
            out += [(f"{p}.mlp.experts.{proj}_blocks", "U8", (experts, rows, cols // 32, 16)),
                    (f"{p}.mlp.experts.{proj}_scales", "U8", (experts, rows, cols // 32)),
                    (f"{p}.mlp.experts.{proj}_bias", "BF16", (experts, rows))]
            logical += experts * rows * cols + experts * rows  # unpacked values + bias
    return out, logical


def test_gpt_oss_20b() -> None:
    det = S.detect({"quantization_config": GPT_OSS})
    assert det is not None
    tensors, logical = gpt_oss(24, 32)
    got = count(det, tensors)
    assert got == logical
    assert round(got / 1e9, 1) == 20.9
    stored = sum(math.prod(s) for _, _, s in tensors)
    assert stored / 1e9 < 13  # what counting bytes as parameters (and scales) would print


def test_gpt_oss_120b() -> None:
    det = S.detect({"quantization_config": GPT_OSS})
    assert det is not None
    tensors, logical = gpt_oss(36, 128)
    got = count(det, tensors)
    assert got == logical
    assert round(got / 1e9, 1) == 116.8


def llama_31_8b_w4a16() -> tuple[list[Tensor], int]:
    """RedHatAI Meta-Llama-3.1-8B-Instruct-quantized.w4a16 (compressed-tensors
    pack-quantized, group 128, lm_head ignored): 32 layers, hidden 4096,
    intermediate 14336, 32 / 8 heads of 128, vocab 128256."""
    h, inter, vocab, kv = 4096, 14336, 128256, 8 * 128
    out: list[Tensor] = [("model.embed_tokens.weight", "BF16", (vocab, h)),
                         ("lm_head.weight", "BF16", (vocab, h)),
                         ("model.norm.weight", "BF16", (h,))]
    logical = 2 * vocab * h + h
    for i in range(32):
        p = f"model.layers.{i}"
        for mod, o, n in (("self_attn.q_proj", h, h), ("self_attn.k_proj", kv, h),
                          ("self_attn.v_proj", kv, h), ("self_attn.o_proj", h, h),
                          ("mlp.gate_proj", inter, h), ("mlp.up_proj", inter, h),
                          ("mlp.down_proj", h, inter)):
            out += [(f"{p}.{mod}.weight_packed", "I32", (o, n * 4 // 32)),
                    (f"{p}.{mod}.weight_scale", "BF16", (o, n // 128)),
                    (f"{p}.{mod}.weight_shape", "I64", (2,))]
            logical += o * n
        out += [(f"{p}.input_layernorm.weight", "BF16", (h,)),
                (f"{p}.post_attention_layernorm.weight", "BF16", (h,))]
        logical += 2 * h
    return out, logical


def test_llama_31_8b_w4a16() -> None:
    det = S.detect({"quantization_config": W4A16})
    assert det is not None
    tensors, logical = llama_31_8b_w4a16()
    got = count(det, tensors)
    assert got == logical == 8_030_261_248
    assert round(got / 1e9, 1) == 8.0
    naive = sum(math.prod(s) for _, _, s in tensors)
    assert round(naive / 1e9) == 2  # the Hub's figure before huggingface.js #1770


def test_minimax_m2_unchanged() -> None:
    det = S.detect({"quantization_config": MINIMAX})
    assert det is not None
    tensors = [(n, d, tuple(s)) for n, d, s in minimax_m2().tensors]
    h, layers, experts, inter, vocab, q, kv = 3072, 62, 256, 1536, 200064, 48 * 128, 8 * 128
    per_layer = (q * h + 2 * kv * h + h * q + q + kv + 2 * h + experts * h + experts
                 + experts * 3 * inter * h)
    logical = layers * per_layer + 2 * vocab * h + h
    got = count(det, tensors)
    assert got == logical
    assert round(got / 1e9, 1) == 228.7
    scales = sum(math.prod(s) for n, _, s in tensors if n.endswith("weight_scale_inv"))
    assert scales > 0 and got == sum(math.prod(s) for _, _, s in tensors) - scales


def test_deepseek_v4_fp4_experts_count_two_per_byte() -> None:
    det = S.detect({"expert_dtype": "fp4", "quantization_config": {
        "quant_method": "fp8", "fmt": "e4m3", "scale_fmt": "ue8m0",
        "weight_block_size": [128, 128]}})
    assert det is not None
    h, inter, e = 7168, 3072, 4
    tensors: list[Tensor] = []
    for x in range(e):
        for w, o, n in (("w1", inter, h), ("w3", inter, h), ("w2", h, inter)):
            tensors += [(f"layers.0.ffn.experts.{x}.{w}.weight", "I8", (o, n // 2)),
                        (f"layers.0.ffn.experts.{x}.{w}.scale", "F8_E8M0", (o, n // 32))]
    tensors += [("layers.0.attn.wq_a.weight", "F8_E4M3", (1536, h)),
                ("layers.0.attn.wq_a.scale", "F8_E8M0", (12, 56))]
    assert count(det, tensors) == e * 3 * inter * h + 1536 * h
