"""GPTQ (``quant_method: "gptq"``): AutoGPTQ / GPTQModel exports. Recognised:
counts and companion pairing.

Layout (AutoGPTQ ``nn_modules/qlinear`` ``QuantLinear`` buffers; the Hub's
counter, huggingface.js parse-safetensors-metadata.ts):

- ``X.qweight`` I32 ``[in * bits / 32, out]``: the input dimension packed
  32/bits values per word from the least significant bits (the matrix is stored
  transposed);
- ``X.qzeros`` I32 ``[groups, out * bits / 32]``, ``X.scales`` F16
  ``[groups, out]`` with ``groups = ceil(in / group_size)`` (1 for
  ``group_size: -1``), ``X.g_idx`` I32 ``[in]``.

Which modules: the linear layers of the decoder blocks; ``lm_head`` only with
``lm_head: true``. GPTQModel's ``dynamic`` map adds per-module overrides: keys
``-:regex`` skip modules, ``+:regex`` (or a bare regex) change bits / group size,
matched with ``re.match``.
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from ..config import MAX_MODULE_ENTRIES
from ._core import (
    CONFIG,
    G_IDX,
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
    PerInput,
    Problem,
    Sources,
    is_int,
    linear_modules,
)
from ._match import COMPRESSED_TENSORS, Rules, Targets

NAME = "gptq"
SOURCE = "AutoGPTQ QuantLinear (qweight / qzeros / scales / g_idx)"


def layout(bits: int, group: int) -> Layout:
    per = Fraction(32, bits)
    size = group if group > 0 else 0
    gran = Granularity("group", size=group) if group > 0 else Granularity("channel")
    return Layout(
        name=f"{NAME}/INT{bits}/" + (f"group{group}" if group > 0 else "channel"),
        title=f"GPTQ INT{bits} ({gran}, qweight packed along the input)",
        family=NAME, weight_suffix=".qweight", weight_dtypes=("I32",), weight_format=f"INT{bits}",
        scale_format="F16", granularity=gran,
        packing=Packing(per, axis=0, order="lsb-first", transposed=True),
        companions=(
            Companion(".scales", SCALE, ("F16", "BF16", "F32"), PerGroup(size, transposed=True)),
            Companion(".qzeros", ZERO_POINT, ("I32",),
                      PerGroup(size, transposed=True, rows_per_element=per)),
            Companion(".g_idx", G_IDX, ("I32", "I64"), PerInput(), required=False),
        ),
        source=SOURCE,
    )


def _bits(v: object, key: str, problems: list[Problem], default: int = 4) -> int:
    if is_int(v) and v in (2, 3, 4, 8):
        return v
    problems.append(Problem(CONFIG, key, f"{v!r} is not a GPTQ bit width (2, 3, 4, 8)"))
    return default


def _group(v: object, key: str, problems: list[Problem], default: int = 128) -> int:
    if is_int(v) and (v == -1 or v > 0):
        return v
    problems.append(Problem(CONFIG, key, f"{v!r} is not a group size (-1 or positive)"))
    return default


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "gptq":
        return None
    _, q, where = found
    problems: list[Problem] = []
    bits = _bits(q.get("bits", 4), f"{where}.bits", problems)
    group = _group(q.get("group_size", 128), f"{where}.group_size", problems)
    fmt = q.get("checkpoint_format", "gptq")
    if fmt not in ("gptq", "gptq_v2", None):
        problems.append(Problem(CONFIG, f"{where}.checkpoint_format",
                                f"{fmt!r}: only the gptq / gptq_v2 tensors are declared"))
    groups: list[Group] = []
    skip: list[str] = []
    dynamic = q.get("dynamic")
    if isinstance(dynamic, Mapping):
        if len(dynamic) > MAX_MODULE_ENTRIES:
            problems.append(Problem(CONFIG, f"{where}.dynamic", f"{len(dynamic):,} entries, "
                                    f"beyond the limit of {MAX_MODULE_ENTRIES:,}: the first "
                                    f"{MAX_MODULE_ENTRIES:,} are read"))
        for key, over in list(dynamic.items())[:MAX_MODULE_ENTRIES]:
            pattern = str(key)
            if pattern.startswith("-:"):
                skip.append("re:" + pattern[2:])
                continue
            pattern = pattern.removeprefix("+:")
            over = over if isinstance(over, Mapping) else {}
            dkey = f"{where}.dynamic.{key}"
            lay = layout(_bits(over.get("bits", bits), f"{dkey}.bits", problems, bits),
                         _group(over.get("group_size", group), f"{dkey}.group_size", problems,
                                group))
            groups.append(Group(f"dynamic:{pattern}", (lay,),
                                Targets(("re:" + pattern,), COMPRESSED_TENSORS)))
    groups.append(Group("default", (layout(bits, group),),
                        Targets(default=linear_modules, default_label="decoder linear layers")))
    defaults = () if q.get("lm_head") is True else ("re:(?:.*\\.)?lm_head$",)
    return Detection(
        family=NAME, method=f"gptq/{bits}bit", source=f"{CONFIG}: {where}", config=q,
        groups=tuple(groups),
        exclusions=Rules(f"{where}.dynamic (-: entries)", tuple(skip), COMPRESSED_TENSORS,
                         defaults=defaults),
        problems=tuple(problems), depth="recognised",
    )


FAMILY = Family(NAME, "GPTQ", "recognised", 70, detect)
