"""AWQ (``quant_method: "awq"``): AutoAWQ / llm-awq exports. Recognised: counts
and companion pairing.

Layout (AutoAWQ ``modules/linear/gemm.py`` ``WQLinear_GEMM``; versions gemm,
exllama, marlin-ready and ipex share it):

- ``X.qweight`` I32 ``[in, out * bits / 32]``: the output dimension packed 8
  int4 per word in AWQ's interleaved order [0, 2, 4, 6, 1, 3, 5, 7];
- ``X.qzeros`` I32 ``[in / group, out * bits / 32]`` (same packing),
  ``X.scales`` F16 ``[in / group, out]``.
- ``version: gemv``: ``qweight`` ``[out, in * bits / 32]`` (not transposed);
  its scales / zeros are padded, so their shapes are not checked.

Which modules: every linear layer except ``modules_to_not_convert``, matched as
substrings (AutoAWQ: ``any(key in name for key in modules_to_not_convert)``);
``lm_head`` always stays unquantized.
"""

from __future__ import annotations

from fractions import Fraction

from ._core import (
    CONFIG,
    SCALE,
    ZERO_POINT,
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
    linear_modules,
    string_list,
)
from ._match import SUBSTRING, Rules, Targets

NAME = "awq"
SOURCE = "AutoAWQ WQLinear_GEMM / WQLinear_GEMV"


def layout(bits: int, group: int, version: str) -> Layout:
    per = Fraction(32, bits)
    size = group if group > 0 else 0
    gemv = version == "gemv"
    return Layout(
        name=f"{NAME}/INT{bits}/group{group}" + ("/gemv" if gemv else ""),
        title=f"AWQ INT{bits} (group of {group}, {version})",
        family=NAME, weight_suffix=".qweight", weight_dtypes=("I32",), weight_format=f"INT{bits}",
        scale_format="F16", granularity=Granularity("group", size=group),
        packing=(Packing(per, order="lsb-first") if gemv
                 else Packing(per, order="awq-interleaved", transposed=True)),
        companions=(
            Companion(".scales", SCALE, ("F16", "BF16"),
                      None if gemv else PerGroup(size, transposed=True)),
            Companion(".qzeros", ZERO_POINT, ("I32",),
                      None if gemv else PerGroup(size, transposed=True, rows_per_element=per)),
        ),
        source=SOURCE,
    )


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "awq":
        return None
    _, q, where = found
    problems: list[Problem] = []
    bits = q.get("bits", q.get("w_bit", 4))
    if not (is_int(bits) and bits in (2, 3, 4, 8)):
        problems.append(Problem(CONFIG, f"{where}.bits", f"{bits!r} is not an AWQ bit width"))
        bits = 4
    group = q.get("group_size", q.get("q_group_size", 128))
    if not (is_int(group) and group > 0):
        problems.append(Problem(CONFIG, f"{where}.group_size",
                                f"{group!r} is not a positive group size"))
        group = 128
    version = str(q.get("version", "gemm")).lower()
    entries = string_list(q.get("modules_to_not_convert"), f"{where}.modules_to_not_convert",
                          problems)
    return Detection(
        family=NAME, method=f"awq/{version}", source=f"{CONFIG}: {where}", config=q,
        groups=(Group("default", (layout(int(bits), int(group), version),),
                      Targets(default=linear_modules, default_label="every linear layer")),),
        exclusions=Rules(f"{where}.modules_to_not_convert", entries, SUBSTRING,
                         defaults=("lm_head",)),
        problems=tuple(problems), depth="recognised",
    )


FAMILY = Family(NAME, "AWQ", "recognised", 71, detect)
