"""MLX (config.json ``"quantization": {"group_size", "bits", "mode", <module>:
{...} | false}``; mlx-lm writes the same map as ``quantization_config`` too, without
a ``quant_method``). Recognised: counts and companion pairing.

Layout (mlx ``nn.QuantizedLinear`` / ``QuantizedEmbedding``, ``mx.quantize``;
mlx ``nn/layers/quantized.py`` mode defaults):

- ``mode: affine`` (default; group 64, 4 bits): ``X.weight`` **U32**
  ``[out, in * bits / 32]`` (32/bits values per word from the least significant
  bits), ``X.scales`` and ``X.biases`` in the model dtype ``[out, in / group]``:
  ``w = scales * q + biases``.
- ``mode: mxfp4`` (group 32), ``mxfp8`` (group 32, 8 bits), ``nvfp4`` (group 16):
  ``X.scales`` U8 (E8M0 exponents, E4M3 for nvfp4), no biases.

Which modules: every Linear and Embedding by default; a module key mapping to
``{bits, group_size}`` overrides them, ``false`` keeps the module unquantized
(exact module names).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ._core import (
    CONFIG,
    OFFSET,
    SCALE,
    Companion,
    Detection,
    Family,
    Granularity,
    Group,
    Layout,
    Packing,
    PerGroup,
    Problem,
    Sources,
    is_int,
)
from ._match import EXACT, Rules, Targets

NAME = "mlx"
SOURCE = "mlx nn.QuantizedLinear / mx.quantize"
MODES = {"affine": (64, 4), "mxfp4": (32, 4), "nvfp4": (16, 4), "mxfp8": (32, 8)}


def layout(mode: str, group: int, bits: int) -> Layout:
    affine = mode == "affine"
    wfmt = f"INT{bits}" if affine else {"mxfp4": "E2M1", "nvfp4": "E2M1", "mxfp8": "E4M3"}[mode]
    scales = ("BF16", "F16", "F32") if affine else ("U8",)
    comps = [Companion(".scales", SCALE, scales, PerGroup(group))]
    if affine:
        comps.append(Companion(".biases", OFFSET, scales, PerGroup(group)))
    return Layout(
        name=f"{NAME}/{mode}/{wfmt}/group{group}",
        title=f"MLX {mode} ({wfmt} in U32, scales per {group})",
        family=NAME, weight_suffix=".weight", weight_dtypes=("U32",), weight_format=wfmt,
        scale_format=("BF16" if affine else "E4M3" if mode == "nvfp4" else "E8M0"),
        granularity=Granularity("group", size=group),
        packing=Packing(Fraction(32, bits), order="lsb-first"), companions=tuple(comps),
        source=SOURCE,
    )


def _settings(src: Sources) -> tuple[Mapping[str, Any], str] | None:
    cfg = src.config
    if isinstance(cfg, Mapping) and isinstance(cfg.get("quantization"), Mapping):
        return cfg["quantization"], "quantization"
    for where, q in src.quantization_configs():
        if "quant_method" not in q and "bits" in q and "group_size" in q:
            return q, where
    return None


def _params(d: Mapping[str, Any], key: str, base: tuple[str, int, int],
            problems: list[Problem]) -> tuple[str, int, int]:
    mode = d.get("mode", base[0])
    if mode not in MODES:
        problems.append(Problem(CONFIG, f"{key}.mode",
                                f"{mode!r} is not one of {', '.join(MODES)}"))
        mode = "affine"
    group, bits = d.get("group_size", base[1]), d.get("bits", base[2])
    if not (is_int(group) and group > 0):
        problems.append(Problem(CONFIG, f"{key}.group_size", f"{group!r} is not a group size"))
        group = MODES[mode][0]
    if not (is_int(bits) and 1 <= bits <= 8):
        problems.append(Problem(CONFIG, f"{key}.bits", f"{bits!r} is not a bit width 1-8"))
        bits = MODES[mode][1]
    return str(mode), int(group), int(bits)


def _default(name: str, kind: str) -> bool:
    return kind in ("linear", "embedding")


def detect(src: Sources) -> Detection | None:
    found = _settings(src)
    if found is None:
        return None
    q, where = found
    problems: list[Problem] = []
    mode = q.get("mode", "affine")
    base = _params(q, where, (str(mode), *MODES.get(str(mode), MODES["affine"])), problems)
    groups: list[Group] = []
    skipped: list[str] = []
    overrides: dict[tuple[str, int, int], list[str]] = {}
    for key, value in q.items():
        if key in ("group_size", "bits", "mode", "quant_method"):
            continue
        if value is False:
            skipped.append(str(key))
        elif isinstance(value, Mapping):
            overrides.setdefault(_params(value, f"{where}.{key}", base, problems),
                                 []).append(str(key))
        elif value is not True:
            problems.append(Problem(CONFIG, f"{where}.{key}", f"{value!r} is neither a mapping "
                                    "of bits / group_size nor a boolean"))
    for params, modules in overrides.items():
        groups.append(Group(f"override {params}", (layout(*params),),
                            Targets(tuple(modules), EXACT)))
    groups.append(Group("default", (layout(*base),),
                        Targets(default=_default, default_label="every Linear and Embedding")))
    return Detection(
        family=NAME, method=f"mlx/{base[0]}", source=f"{CONFIG}: {where}", config=q,
        groups=tuple(groups), exclusions=Rules(f"{where} (false entries)", tuple(skipped), EXACT),
        problems=tuple(problems), depth="recognised",
    )


FAMILY = Family(NAME, "MLX", "recognised", 80, detect)
