"""HF fine-grained FP8 (``quant_method: "fp8"``): DeepSeek-V3/R1, MiniMax-M2, Qwen3-FP8.

Layout (transformers ``integrations/finegrained_fp8.py``: ``FP8Linear`` and
``FP8Experts``; DeepSeek-V3's and MiniMax-M2's published headers):

- ``X.weight`` F8_E4M3 ``[out, in]`` and ``X.weight_scale_inv`` ``[ceil(out/b0),
  ceil(in/b1)]`` for ``weight_block_size: [b0, b1]``; a scalar ``[]`` when
  ``weight_block_size`` is null (per tensor). The scale multiplies:
  ``w = q * scale_inv[i // b0, j // b1]``. F32 in DeepSeek / MiniMax; BF16 in
  Qwen3-FP8 dense models and F16 in Qwen3-4B-Instruct-2507-FP8 (loaders'
  issues: HabanaAI/vllm-fork #2141, InternLM/lmdeploy #4276); F8_E8M0 only with
  ``scale_fmt: ue8m0`` (power-of-two scales, DeepSeek-V3.1).
- fused expert stacks (transformers v5): ``...experts.gate_up_proj`` F8_E4M3
  ``[E, 2I, H]`` with ``gate_up_proj_scale_inv`` ``[E, ceil(2I/b0), ceil(H/b1)]``
  (``[E, 1, 1]`` per tensor), same for ``down_proj``.
- ``activation_scheme: static`` adds ``activation_scale`` (``input_scale`` in
  vLLM's naming).

Which modules: every linear layer, except ``modules_to_not_convert`` (vLLM
also reads ``ignored_layers``) and ``lm_head`` (transformers keeps it by default).
Entries match whole dotted components (``gate`` is MiniMax's
``block_sparse_moe.gate``, never a ``gate_proj``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._core import (
    CONFIG,
    INPUT_SCALE,
    SCALE,
    Companion,
    Detection,
    Family,
    Granularity,
    Group,
    Layout,
    PerBlock,
    PerTensor,
    Problem,
    Sources,
    block_pair,
    linear_modules,
    string_list,
)
from ._formats import normalize_format
from ._match import DOTTED, Rules, Targets

NAME = "hf-fp8"
SOURCE = "transformers integrations/finegrained_fp8.py (FP8Linear, FP8Experts)"
FORMAT_DTYPES = {"E4M3": "F8_E4M3", "E5M2": "F8_E5M2", "E4M3FNUZ": "F8_E4M3FNUZ",
                 "E5M2FNUZ": "F8_E5M2FNUZ"}
FUSED_PARAM = r"[A-Za-z0-9_]*_proj"


def weight_dtype(q: Mapping[str, Any], where: str, problems: list[Problem]) -> tuple[str, str]:
    """(safetensors dtype, format name) for ``fmt`` (default e4m3)."""
    raw = q.get("fmt", "e4m3")
    fmt = normalize_format(raw)
    if fmt not in FORMAT_DTYPES:
        problems.append(Problem(CONFIG, f"{where}.fmt", f"{raw!r} is not an FP8 format "
                                "(e4m3 / float8_e4m3fn / e5m2)"))
        fmt = "E4M3"
    return FORMAT_DTYPES[fmt], fmt


def block_size(q: Mapping[str, Any], where: str, problems: list[Problem]
               ) -> tuple[int, int] | None:
    """``weight_block_size``: None (per tensor) only when written as null;
    transformers' default is [128, 128]."""
    if "weight_block_size" not in q:
        return 128, 128
    v = q["weight_block_size"]
    if v is None:
        return None
    return block_pair(v, f"{where}.weight_block_size", problems) or (128, 128)


def ue8m0(q: Mapping[str, Any], where: str, problems: list[Problem]) -> bool:
    v = q.get("scale_fmt")
    if v is None:
        return False
    if isinstance(v, str) and v.strip().lower() == "ue8m0":
        return True
    problems.append(Problem(CONFIG, f"{where}.scale_fmt",
                            f"{v!r} is not a known scale format (ue8m0)"))
    return False


def static_activations(q: Mapping[str, Any], where: str, problems: list[Problem]) -> bool:
    v = q.get("activation_scheme", "dynamic")
    if v in ("dynamic", "static", None):
        return bool(v == "static")
    problems.append(Problem(CONFIG, f"{where}.activation_scheme",
                            f"{v!r} is neither 'dynamic' nor 'static'"))
    return False


def layouts(family: str, dtype: str, fmt: str, block: tuple[int, int] | None, pow2: bool,
            static: bool) -> tuple[Layout, Layout]:
    """The ``.weight`` layout and the fused-expert-stack layout."""
    scale_dtypes = ("F32", "BF16", "F16") + (("F8_E8M0",) if pow2 else ())
    gran = (Granularity("block", block=block) if block is not None
            else Granularity("tensor"))
    tag = f"block{block[0]}x{block[1]}" if block is not None else "tensor"
    scale_fmt = "UE8M0" if pow2 else "F32"
    act = (Companion(".activation_scale", INPUT_SCALE, ("F32",), PerTensor(), required=False,
                     fused_equal=True, note="static activation_scheme"),
           Companion(".input_scale", INPUT_SCALE, ("F32",), PerTensor(), required=False,
                     fused_equal=True, note="vLLM's name for the static activation scale"),
           ) if static else ()
    std = Layout(
        name=f"{family}/{fmt}/{tag}",
        title=f"HF fine-grained FP8 ({fmt}, weight_scale_inv {gran})",
        family=family, weight_suffix=".weight", weight_dtypes=(dtype,), weight_format=fmt,
        scale_format=scale_fmt, granularity=gran,
        companions=(Companion(".weight_scale_inv", SCALE, scale_dtypes,
                              PerBlock(*block) if block else PerTensor()), *act),
        source=SOURCE,
    )
    fused = Layout(
        name=f"{family}/{fmt}/{tag}/fused-experts",
        title=f"HF fine-grained FP8 fused experts ({fmt}, *_scale_inv {gran})",
        family=family, weight_suffix="", weight_dtypes=(dtype,), weight_format=fmt,
        scale_format=scale_fmt, granularity=gran, param_style=True, param_pattern=FUSED_PARAM,
        ranks=(3,),
        companions=(Companion("_scale_inv", SCALE, scale_dtypes,
                              PerBlock(*block) if block else PerTensor(per_lead=True)),
                    *((Companion("_activation_scale", INPUT_SCALE, ("F32",),
                                 PerTensor(per_lead=True), required=False),) if static else ())),
        source=SOURCE,
    )
    return std, fused


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "fp8":
        return None
    _, q, where = found
    problems: list[Problem] = []
    dtype, fmt = weight_dtype(q, where, problems)
    block = block_size(q, where, problems)
    std, fused = layouts(NAME, dtype, fmt, block, ue8m0(q, where, problems),
                         static_activations(q, where, problems))
    key = "modules_to_not_convert" if "modules_to_not_convert" in q else "ignored_layers"
    entries = string_list(q.get(key), f"{where}.{key}", problems)
    exclusions = Rules(f"{where}.{key}", entries, DOTTED, defaults=("lm_head",))
    targets = Targets(default=linear_modules, default_label="every linear layer")
    return Detection(
        family=NAME, method="fp8", source=f"{CONFIG}: {where}", config=q,
        groups=(Group("fp8", (std, fused), targets),), exclusions=exclusions,
        problems=tuple(problems),
    )


FAMILY = Family(NAME, "HF fine-grained FP8", "deep", 50, detect)
