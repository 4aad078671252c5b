"""NVIDIA ModelOpt unified HF checkpoints (``quant_method: "modelopt"`` or
``hf_quant_config.json``).

Declared in ``hf_quant_config.json`` (``{"producer": {"name": "modelopt"},
"quantization": {"quant_algo", "kv_cache_quant_algo", "group_size",
"exclude_modules", "quantized_layers"}}``) and/or config.json's
``quantization_config`` (ModelOpt ``export/convert_hf_config.py``:
``{"quant_method": "modelopt", "quant_algo", "config_groups", "ignore",
"kv_cache_scheme", "producer", "quantized_layers"}``; vLLM reads ``ignore``
there and ``exclude_modules`` in the other file).

Layout (ModelOpt ``export/unified_export_hf.py`` ``_export_quantized_weight``,
``export/quant_utils.py``, ``qtensor/nvfp4_tensor.py``, ``qtensor/mxfp8_tensor.py``;
vLLM ``quantization/modelopt.py`` for what loaders allocate):

- FP8: ``X.weight`` F8_E4M3, ``X.weight_scale`` F32 ``[]`` (amax / 448),
  ``X.input_scale`` F32 ``[]``.
- FP8_PER_CHANNEL_PER_TOKEN: ``X.weight_scale`` F32 ``[out]``, no input_scale.
- FP8_PB_WO (ModelOpt may write it lower case): 128x128 blocks; ModelOpt exports
  ``X.weight_scale`` rank 4 ``[out/128, 1, in/128, 1]`` (what vLLM's
  ``ModelOptFp8PbWoLinearMethod`` allocates); some exports write the DeepSeek /
  transformers convention instead, ``X.weight_scale_inv`` rank 2
  ``[out/128, in/128]``, which vLLM's ModelOpt loader does not look for (#54126).
- NVFP4: ``X.weight`` **U8** ``[out, in/2]`` (E2M1, low nibble first),
  ``X.weight_scale`` F8_E4M3 ``[out, in/16]``, ``X.weight_scale_2`` F32 ``[]``
  (amax / (6 * 448)), ``X.input_scale`` F32 ``[]``; W4A16_NVFP4 without
  input_scale. ModelOpt makes fused siblings (q/k/v, gate/up) share
  ``weight_scale_2`` and ``input_scale``; vLLM warns and takes the max otherwise.
- MXFP8: ``X.weight`` F8_E4M3 + ``X.weight_scale`` U8 ``[out, in/32]`` (E8M0).
- MIXED_PRECISION: ``quantized_layers: {module: {quant_algo, group_size}}``.
- KV cache (``kv_cache_quant_algo``): ``self_attn.k_proj.k_scale``,
  ``self_attn.v_proj.v_scale`` F32 ``[]``.

Which modules: every linear layer except ``exclude_modules``, matched as vLLM
does: the exact name, a substring (exports before ModelOpt 0.39 relied on it,
also after dropping ``language_model.``), or an fnmatch glob; vision towers are
never quantized.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ._core import (
    CONFIG,
    GLOBAL_SCALE,
    HF_QUANT_CONFIG,
    INPUT_SCALE,
    KV_SCALE,
    SCALE,
    Companion,
    Detection,
    Extra,
    Family,
    Granularity,
    Group,
    Layout,
    Packing,
    PerBlock,
    PerChannel,
    PerGroup,
    PerTensor,
    Problem,
    Sources,
    is_int,
    linear_modules,
    string_list,
)
from ._match import EXACT, MODELOPT, Rules, Targets

NAME = "modelopt"
SOURCE = "ModelOpt export/unified_export_hf.py; vLLM quantization/modelopt.py"
ALGOS = ("FP8", "FP8_PER_CHANNEL_PER_TOKEN", "FP8_PB_WO", "NVFP4", "W4A16_NVFP4", "MXFP8",
         "MIXED_PRECISION")
OTHER_ALGOS = ("W4A16_AWQ", "W4A8_AWQ", "NVFP4_AWQ", "NVFP4_SVD", "W8A16", "W8A8_SQ_PER_CHANNEL",
               "MXFP4", "W4A8_MXFP4_FP8", "W4A8_NVFP4_FP8")
SCALAR = PerTensor(per_lead=True, single=True)  # per expert for BMM-style expert stacks


def _layout(algo: str, title: str, weight_dtypes: tuple[str, ...], wfmt: str,
            scale_fmt: str, gran: Granularity, comps: tuple[Companion, ...],
            packing: Packing | None = None, suffix: str = "", convention: str = "") -> Layout:
    extra: dict[str, Any] = {} if packing is None else {"packing": packing}
    return Layout(
        name=f"{NAME}/{algo}{suffix}", title=title, family=NAME, weight_suffix=".weight",
        weight_dtypes=weight_dtypes, weight_format=wfmt, scale_format=scale_fmt,
        granularity=gran, companions=comps, convention=convention, source=SOURCE, **extra,
    )


def layouts_for(algo: str, group_size: int | None) -> tuple[Layout, ...]:
    """The stored forms of one quant_algo (alternatives: FP8_PB_WO's two conventions)."""
    input_scale = Companion(".input_scale", INPUT_SCALE, ("F32",), SCALAR, fused_equal=True)
    if algo == "FP8":
        return (_layout(algo, "ModelOpt FP8 (E4M3, per-tensor weight_scale and input_scale)",
                        ("F8_E4M3",), "E4M3", "F32", Granularity("tensor"),
                        (Companion(".weight_scale", SCALE, ("F32",), SCALAR), input_scale)),)
    if algo == "FP8_PER_CHANNEL_PER_TOKEN":
        return (_layout(algo, "ModelOpt FP8 per channel (E4M3, weight_scale [out])",
                        ("F8_E4M3",), "E4M3", "F32", Granularity("channel"),
                        (Companion(".weight_scale", SCALE, ("F32",),
                                   PerChannel(("flat", "col"))),)),)
    if algo == "FP8_PB_WO":
        b = group_size or 128
        gran = Granularity("block", block=(b, b))
        return (
            _layout(algo, f"ModelOpt FP8_PB_WO (weight_scale rank 4 per {b}x{b} block)",
                    ("F8_E4M3",), "E4M3", "F32", gran,
                    (Companion(".weight_scale", SCALE, ("F32",), PerBlock(b, b, rank4=True)),),
                    convention="rank-4 weight_scale [out/b, 1, in/b, 1]: ModelOpt's export and "
                               "vLLM's ModelOptFp8PbWoLinearMethod"),
            _layout(algo, f"ModelOpt FP8_PB_WO (weight_scale_inv rank 2 per {b}x{b} block)",
                    ("F8_E4M3",), "E4M3", "F32", gran,
                    (Companion(".weight_scale_inv", SCALE, ("F32",), PerBlock(b, b)),),
                    suffix="/scale_inv",
                    convention="rank-2 weight_scale_inv [out/b, in/b]: the DeepSeek / transformers "
                               "FP8Linear convention; vLLM's ModelOpt loader looks for "
                               "weight_scale (vllm #54126)"),
        )
    if algo in ("NVFP4", "W4A16_NVFP4"):
        g = group_size or 16
        comps: tuple[Companion, ...] = (
            Companion(".weight_scale", SCALE, ("F8_E4M3",), PerGroup(g)),
            Companion(".weight_scale_2", GLOBAL_SCALE, ("F32",), SCALAR, fused_equal=True,
                      note="amax / (6 * 448)"))
        if algo == "NVFP4":
            comps += (input_scale,)
        return (_layout(algo, f"ModelOpt {algo} (E2M1 in U8, E4M3 scale per {g} + weight_scale_2)",
                        ("U8",), "E2M1", "E4M3", Granularity("group", size=g, two_level=True),
                        comps, Packing(Fraction(2), order="low-nibble-first")),)
    if algo == "MXFP8":
        g = group_size or 32
        return (_layout(algo, f"ModelOpt MXFP8 (E4M3, E8M0 weight_scale per {g})", ("F8_E4M3",),
                        "E4M3", "E8M0", Granularity("group", size=g),
                        (Companion(".weight_scale", SCALE, ("U8", "F8_E8M0"), PerGroup(g)),)),)
    return ()


def _settings(src: Sources, problems: list[Problem]
              ) -> tuple[str, Mapping[str, Any], str, str] | None:
    """(source file, the quantization mapping, its key path, exclusion key)."""
    found = src.quant_method()
    if found is not None and found[0].startswith("modelopt"):
        _, q, where = found
        inner = q.get("quantization")
        if isinstance(inner, Mapping):  # the hf_quant_config layout inside config.json
            return CONFIG, inner, f"{where}.quantization", "exclude_modules"
        return CONFIG, q, where, "ignore"
    h = src.hf_quant_config
    if isinstance(h, Mapping):
        producer = h.get("producer")
        name = producer.get("name") if isinstance(producer, Mapping) else None
        inner = h.get("quantization")
        if isinstance(inner, Mapping) and (name is None or str(name).lower() == "modelopt"):
            return HF_QUANT_CONFIG, inner, "quantization", "exclude_modules"
        if isinstance(name, str) and name.lower() == "modelopt":
            problems.append(Problem(HF_QUANT_CONFIG, "quantization", "missing or not a mapping"))
    return None


def _algo(q: Mapping[str, Any], where: str, source: str, problems: list[Problem]) -> str:
    raw = q.get("quant_algo")
    algo = str(raw).upper() if isinstance(raw, str) else ""
    if algo not in ALGOS:
        detail = ("is recognised but its layout is not declared" if algo in OTHER_ALGOS
                  else f"is not one of {', '.join(ALGOS)}")
        problems.append(Problem(source, f"{where}.quant_algo", f"{raw!r} {detail}"))
    return algo


def _group_size(v: object, key: str, source: str, problems: list[Problem]) -> int | None:
    if v is None:
        return None
    if is_int(v) and v > 0:
        return v
    problems.append(Problem(source, key, f"{v!r} is not a positive group size"))
    return None


def _disagreements(q: Mapping[str, Any], ex_key: str, h: object) -> list[Problem]:
    """config.json and hf_quant_config.json must say the same (loaders read one
    or the other)."""
    inner = h.get("quantization") if isinstance(h, Mapping) else None
    if not isinstance(inner, Mapping):
        return []
    out = []
    a, b = str(q.get("quant_algo", "")).upper(), str(inner.get("quant_algo", "")).upper()
    if a != b:
        out.append(Problem(HF_QUANT_CONFIG, "quantization.quant_algo",
                           f"{b!r} but config.json says {a!r}"))
    mine, theirs = q.get(ex_key), inner.get("exclude_modules")
    if isinstance(mine, list) and isinstance(theirs, list) and sorted(map(str, mine)) != sorted(
            map(str, theirs)):
        out.append(Problem(HF_QUANT_CONFIG, "quantization.exclude_modules",
                           f"differs from config.json's {ex_key} ({len(theirs)} entries against "
                           f"{len(mine)})"))
    return out


def kv_extras(algo: object) -> tuple[Extra, ...]:
    if not algo:
        return ()
    return (Extra(".k_scale", KV_SCALE, ("F32",), r"(?:.*\.)?k_proj", ((), (1,)),
                  note=f"kv_cache_quant_algo {algo}"),
            Extra(".v_scale", KV_SCALE, ("F32",), r"(?:.*\.)?v_proj", ((), (1,)),
                  note=f"kv_cache_quant_algo {algo}"))


def detect(src: Sources) -> Detection | None:
    problems: list[Problem] = []
    found = _settings(src, problems)
    if found is None:
        return None
    source, q, where, ex_key = found
    algo = _algo(q, where, source, problems)
    if source == CONFIG:
        problems += _disagreements(q, ex_key, src.hf_quant_config)
    gs = _group_size(q.get("group_size"), f"{where}.group_size", source, problems)
    vision = ("vision_tower", "vision_model", "visual")
    groups: list[Group] = []
    if algo == "MIXED_PRECISION":
        layers = q.get("quantized_layers")
        if not isinstance(layers, Mapping) or not layers:
            problems.append(Problem(source, f"{where}.quantized_layers",
                                    "MIXED_PRECISION needs a mapping of module -> quant_algo"))
            layers = {}
        by_algo: dict[tuple[str, int | None], list[str]] = {}
        for module, cfg in layers.items():
            lkey = f"{where}.quantized_layers.{module}"
            if not isinstance(cfg, Mapping):
                problems.append(Problem(source, lkey, f"{cfg!r} is not a mapping"))
                continue
            a = _algo(cfg, lkey, source, problems)
            by_algo.setdefault((a, _group_size(cfg.get("group_size"), f"{lkey}.group_size",
                                               source, problems)), []).append(str(module))
        for (a, g), modules in by_algo.items():
            lays = layouts_for(a, g)
            if lays:
                groups.append(Group(f"{a}" + (f"-g{g}" if g else ""), lays,
                                    Targets(tuple(modules), EXACT)))
    else:
        lays = layouts_for(algo, gs)
        if lays:
            groups.append(Group(algo, lays, Targets(default=linear_modules,
                                                    default_label="every linear layer")))
    ex_key = ex_key if ex_key in q else ("exclude_modules" if "exclude_modules" in q else ex_key)
    entries = string_list(q.get(ex_key), f"{where}.{ex_key}", problems, source)
    kv_algo = q.get("kv_cache_quant_algo")
    if kv_algo is None and isinstance(q.get("kv_cache_scheme"), Mapping | str):
        kv_algo = "FP8"
    return Detection(
        family=NAME, method=f"{NAME}/{algo or q.get('quant_algo')}", source=f"{source}: {where}",
        config=q, groups=tuple(groups),
        exclusions=Rules(f"{where}.{ex_key}", entries, MODELOPT, defaults=vision),
        extras=kv_extras(kv_algo), problems=tuple(problems),
    )


FAMILY = Family(NAME, "NVIDIA ModelOpt", "deep", 10, detect)
