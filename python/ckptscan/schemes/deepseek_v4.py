"""DeepSeek-V4 style FP8 + FP4 (``quant_method: "fp8"`` with ``scale_fmt: ue8m0``
and a top-level ``expert_dtype``).

Layout (DeepSeek-V4 ``inference/model.py`` ``Linear``: a ``scale`` parameter
next to ``weight``; huggingface.js parse-safetensors-metadata.ts ``expert_dtype``;
vLLM PR #42970):

- dense linears (attention ``attn.wq_a`` ..., shared experts, MTP projections):
  ``X.weight`` F8_E4M3 ``[out, in]`` and ``X.scale`` **F8_E8M0** ``[ceil(out/128),
  ceil(in/128)]`` (one power-of-two scale per 128x128 tile; note ``.scale``, not
  ``.weight_scale_inv``).
- routed experts (``ffn.experts.E.w1/w2/w3``) when ``expert_dtype`` is ``fp4``:
  ``X.weight`` **I8** ``[out, in/2]``, two E2M1 values per byte (torch
  ``float4_e2m1fn_x2``: the first value in the low nibble), and ``X.scale``
  F8_E8M0 ``[out, in/32]`` (one scale per 32 inputs). With ``expert_dtype: fp8``
  (or absent) the experts are stored like the dense linears.

Which modules: every linear layer; the router (``ffn.gate``), ``head`` and
``embed`` stay BF16/F32 by the producer's default.
"""

from __future__ import annotations

from fractions import Fraction

from ._core import (
    CONFIG,
    SCALE,
    Companion,
    Detection,
    Family,
    Granularity,
    Group,
    Layout,
    Packing,
    PerBlock,
    PerGroup,
    Problem,
    Sources,
    block_pair,
)
from ._match import DOTTED, Rules, Targets

NAME = "deepseek-v4"
SOURCE = "DeepSeek-V4 inference/model.py (Linear.scale); huggingface.js expert_dtype"


def is_v4(src: Sources) -> bool:
    arch = src.top("architectures")
    archs = arch if isinstance(arch, list) else []
    return (src.top("expert_dtype") is not None
            or src.top("model_type") == "deepseek_v4"
            or any(isinstance(a, str) and a.startswith("DeepseekV4") for a in archs))


def routed_expert(name: str, kind: str) -> bool:
    parts = name.split(".")
    return kind == "linear" and "experts" in parts


def dense_linear(name: str, kind: str) -> bool:
    return kind == "linear" and "experts" not in name.split(".")


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "fp8" or not is_v4(src):
        return None
    _, q, where = found
    problems: list[Problem] = []
    raw = src.top("expert_dtype")
    if raw is None:
        raw = q.get("expert_dtype")
    if raw is not None and raw not in ("fp4", "fp8"):
        problems.append(Problem(CONFIG, "expert_dtype", f"{raw!r} is neither 'fp4' nor 'fp8'"))
    fp4 = raw == "fp4"
    block = (128, 128)
    if q.get("weight_block_size") is not None:
        block = block_pair(q["weight_block_size"], f"{where}.weight_block_size",
                           problems) or block
    fmt = q.get("fmt", "e4m3")
    if str(fmt).lower() not in ("e4m3", "float8_e4m3fn"):
        problems.append(Problem(CONFIG, f"{where}.fmt", f"{fmt!r}: DeepSeek-V4 stores e4m3"))
    scale_fmt = q.get("scale_fmt")
    if scale_fmt is not None and str(scale_fmt).lower() != "ue8m0":
        problems.append(Problem(CONFIG, f"{where}.scale_fmt",
                                f"{scale_fmt!r}: DeepSeek-V4 scales are ue8m0"))
    dense = Layout(
        name=f"{NAME}/E4M3/block{block[0]}x{block[1]}",
        title=f"DeepSeek-V4 FP8 (E4M3, .scale E8M0 per {block[0]}x{block[1]} block)",
        family=NAME, weight_suffix=".weight", weight_dtypes=("F8_E4M3",), weight_format="E4M3",
        scale_format="E8M0", granularity=Granularity("block", block=block),
        companions=(Companion(".scale", SCALE, ("F8_E8M0", "F32"), PerBlock(*block)),),
        source=SOURCE,
    )
    experts = Layout(
        name=f"{NAME}/E2M1/group32",
        title="DeepSeek-V4 FP4 experts (E2M1 two per byte in I8, .scale E8M0 per 32 inputs)",
        family=NAME, weight_suffix=".weight", weight_dtypes=("I8", "U8"), weight_format="E2M1",
        scale_format="E8M0", granularity=Granularity("group", size=32),
        packing=Packing(Fraction(2), order="low-nibble-first"),
        companions=(Companion(".scale", SCALE, ("F8_E8M0",), PerGroup(32)),),
        source=SOURCE,
    )
    groups = (
        Group("routed-experts", (experts,) if fp4 else (dense,),
              Targets(default=routed_expert, default_label="routed experts (ffn.experts.*)")),
        Group("dense", (dense,), Targets(default=dense_linear, default_label="every linear layer")),
    )
    return Detection(
        family=NAME, method=f"fp8+{'fp4' if fp4 else 'fp8'}-experts", source=f"{CONFIG}: {where}",
        config=q, groups=groups,
        exclusions=Rules("(DeepSeek-V4 keeps these in BF16/F32)", (), DOTTED,
                         defaults=("head", "gate", "embed")),
        problems=tuple(problems),
    )


FAMILY = Family(NAME, "DeepSeek-V4 FP8 + FP4 experts", "deep", 40, detect)
