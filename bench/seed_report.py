#!/usr/bin/env python3
"""The seed report, redone in plain Python: the peer for timing `ckptscan report`.

Does what produced shared/seed-report.txt: list the shards, for each open it,
read 8 bytes and json.loads the header, count dtypes, group tensors by role with
simple substring rules, print the sections. Run on a MiniMax-M2 replica its
output equals seed-report.txt (the replica's layout reproduces the seed's
"first 10 FP8 scale parameters"). Its flaws are kept on purpose: it is the
baseline, not a tool (short names drop the layer/expert, post_attention_layernorm
counts as attention, the MoE precision list is in first-seen order).

Usage: python bench/seed_report.py CHECKPOINT_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys

TORCH_NAMES = {
    "BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "I64": "int64", "I32": "int32",
    "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}
RULE = "=" * 100


def short(name: str) -> str:
    return "model." + ".".join(name.split(".")[-2:])


def shape_str(shape: list[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def category(name: str) -> str:
    if "embed" in name:
        return "embedding"
    if "attn" in name or "attention" in name:
        return "attention"
    if "experts" in name or "block_sparse_moe" in name or "gate" in name:
        return "moe"
    if "norm" in name:
        return "norm"
    return "other"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", help="checkpoint directory")
    args = ap.parse_args(argv)

    out: list[str] = []
    p = out.append
    p(RULE)
    p("MiniMax-M2 Checkpoint Precision Analysis")
    p(RULE)
    p("")
    files = sorted(f for f in os.listdir(args.path) if f.endswith(".safetensors"))
    p(f"📁 Found {len(files)} safetensor file(s):")
    for f in files:
        p(f"  • {f}")
    p("")
    p("🔍 Analyzing parameters...")
    params: list[tuple[str, str, list[int]]] = []
    for f in files:
        with open(os.path.join(args.path, f), "rb") as fh:
            (n,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(n))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            params.append((name, TORCH_NAMES.get(info["dtype"], info["dtype"]), info["shape"]))
    p(f"✓ Analyzed {len(params)} parameters")
    p("")

    p(RULE)
    p("Data Type Distribution")
    p(RULE)
    counts: dict[str, int] = {}
    for _, d, _ in params:
        counts[d] = counts.get(d, 0) + 1
    for d in sorted(counts):
        p(f"  {d:20s}: {counts[d]:6d} parameters ({100 * counts[d] / len(params):5.1f}%)")
    p("")

    p(RULE)
    p("FP8 Quantization Status")
    p(RULE)
    scales = [t for t in params if "weight_scale_inv" in t[0]]
    if scales:
        p(f"✓ Found {len(scales)} FP8 scale parameters (weight_scale_inv)")
        p("  → Model has FP8 quantized weights")
        p("")
        p("  First 10 FP8 scale parameters:")
        for name, d, s in scales[:10]:
            p(f"    • {name:80s} | dtype: {d:10s} | shape: {shape_str(s)}")
        if len(scales) > 10:
            p(f"    ... and {len(scales) - 10} more")
    else:
        p("✗ No FP8 scale parameters found")
    p("")

    p(RULE)
    p("Layer-wise Precision Breakdown")
    p(RULE)
    p("")
    cats: dict[str, list[tuple[str, str, list[int]]]] = {
        k: [] for k in ("embedding", "attention", "moe", "norm", "other")}
    for t in params:
        cats[category(t[0])].append(t)

    def rows(items: list[tuple[str, str, list[int]]]) -> None:
        for name, d, s in sorted(items, key=lambda t: short(t[0])):
            p(f"  • {short(name):40s} | {d:10s} | shape: {shape_str(s)}")

    p(f"📦 Embedding Layers ({len(cats['embedding'])} parameters):")
    for name, d, s in cats["embedding"]:
        p(f"  • {name:80s} | {d:10s} | shape: {shape_str(s)}")
    p("")
    attn0 = [t for t in params if "layers.0.self_attn" in t[0]]
    p("🔍 Attention Layers (Layer 0 as example):")
    rows(attn0)
    p(f"  → Attention precision: {sorted({d for _, d, _ in attn0})}")
    p(f"  → Has FP8 scales: {'Yes' if any('scale_inv' in n for n, _, _ in attn0) else 'No'}")
    p("")
    exp0 = [t for t in params if "layers.0.block_sparse_moe.experts.0." in t[0]]
    p("🔀 MoE Expert Layers (Layer 0, Expert 0 as example):")
    rows(exp0)
    first_seen = list(dict.fromkeys(d for _, d, _ in sorted(exp0, key=lambda t: short(t[0]))))
    p(f"  → MoE precision: {first_seen}")
    p(f"  → Has FP8 scales: {'Yes' if any('scale_inv' in n for n, _, _ in exp0) else 'No'}")
    p("")
    p("🎯 Router/Gate (Layer 0):")
    rows([t for t in params if "layers.0." in t[0] and "gate" in t[0] and "experts" not in t[0]])
    p("")
    p("📐 Normalization Layers (Layer 0 as example):")
    rows([t for t in cats["norm"] if "layers.0." in t[0]])
    p("")

    p(RULE)
    p("Summary")
    p(RULE)
    p("")
    p("📊 Parameter Type Breakdown:")
    for label, k in (("Embedding", "embedding"), ("Attention", "attention"), ("MoE", "moe"),
                     ("Normalization", "norm"), ("Other", "other")):
        p(f"  • {label} params: {len(cats[k])}")
    p(f"  • Total: {len(params)}")
    p("")
    p("🎯 Quantization Status:")
    fp8 = [n for n, d, _ in params if d.startswith("float8")]
    if fp8:
        p("  ✓ Model IS FP8 quantized")
        p(f"  • Found {len(scales)} FP8 scale parameters")
        quant = [m for m, key in (("self_attn", "self_attn"), ("moe_experts", "experts"))
                 if any(key in n for n in fp8)]
        p(f"  • Quantized modules: {', '.join(quant)}")
        notq = [m for m, key in (("gate", ".gate."), ("lm_head", "lm_head"))
                if any(key in n for n, d, _ in params if not d.startswith("float8"))
                and not any(key in n for n in fp8)]
        p(f"  • NOT quantized: {', '.join(notq)}")
    else:
        p("  ✗ Model is NOT FP8 quantized")
    p("")
    p(RULE)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
