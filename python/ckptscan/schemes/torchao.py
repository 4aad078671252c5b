"""torchao tensor subclasses in safetensors (``__metadata__["tensor_names"]``, or
``quant_method: "torchao"``). Recognised: counts and companion pairing.

Layout (pytorch/ao ``torchao/prototype/safetensors/safetensors_support.py``
``flatten_tensor_state_dict``): a quantized parameter ``M.p`` is stored as
``M._p_<data>`` for each name in its ``_tensor_data_names`` (``qdata``, ``scale``,
``zero_point``, ``per_tensor_scale`` ...); ``__metadata__[M.p]`` is the JSON
``{"_type": "Float8Tensor" | "Int4Tensor" | ..., "_data": {...},
"_tensor_data_names": [...]}`` and ``__metadata__["tensor_names"]`` lists every
``M.p`` (plain tensors have ``"_type": "Tensor"`` and keep their name).

``qdata`` holds the values: unpacked for Float8Tensor / Int8Tensor /
IntxUnpackedToInt8Tensor, two per byte for Int4Tensor / NVFP4Tensor / MXTensor
(FP4), eight per I32 word for Int4PlainInt32Tensor and the tile-packed forms.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from ._core import (
    GLOBAL_SCALE,
    METADATA,
    SCALE,
    ZERO_POINT,
    Companion,
    Detection,
    Family,
    Granularity,
    Group,
    Layout,
    Packing,
    Problem,
    Sources,
    string_list,
)
from ._match import TRANSFORMERS, Rules, Targets

NAME = "torchao"
SOURCE = "pytorch/ao torchao/prototype/safetensors/safetensors_support.py"
_FLOATS = ("BF16", "F16", "F32")


def _layout(type_name: str, dtypes: tuple[str, ...], wfmt: str, per: int, flat: bool,
            comps: tuple[Companion, ...], scale_fmt: str, tag: str = "") -> Layout:
    return Layout(
        name=f"{NAME}/{type_name}{tag}", title=f"torchao {type_name} ({wfmt})", family=NAME,
        weight_suffix="_qdata", weight_dtypes=dtypes, weight_format=wfmt, scale_format=scale_fmt,
        granularity=Granularity("block_size in __metadata__"),
        packing=Packing(Fraction(per), flat=flat), companions=comps, param_style=True,
        param_pattern=r"_[A-Za-z0-9_]+", ranks=(1, 2, 3, 4), source=SOURCE,
    )


def _scale(dtypes: tuple[str, ...] = _FLOATS) -> Companion:
    return Companion("_scale", SCALE, dtypes, None)


_ZP = Companion("_zero_point", ZERO_POINT, _FLOATS + ("I8", "I32", "U8"), None, required=False)
_PTS = Companion("_per_tensor_scale", GLOBAL_SCALE, ("F32",), None, required=False)
_APTS = Companion("_act_per_tensor_scale", GLOBAL_SCALE, ("F32",), None, required=False)

#: per torchao tensor subclass: its qdata layouts (several when the dtype decides)
TYPES: dict[str, tuple[Layout, ...]] = {
    "Float8Tensor": (_layout("Float8Tensor", ("F8_E4M3", "F8_E5M2"), "E4M3", 1, False,
                             (_scale(("F32", "BF16")),), "F32"),),
    "Int8Tensor": (_layout("Int8Tensor", ("I8",), "INT8", 1, False, (_scale(),), "BF16"),),
    "IntxUnpackedToInt8Tensor": (_layout("IntxUnpackedToInt8Tensor", ("I8",), "INTx", 1, False,
                                         (_scale(), _ZP), "BF16"),),
    "Int4Tensor": (_layout("Int4Tensor", ("U8", "I8"), "INT4", 2, False, (_scale(), _ZP),
                           "BF16"),),
    "Int4PlainInt32Tensor": (_layout("Int4PlainInt32Tensor", ("I32",), "INT4", 8, False,
                                     (_scale(), _ZP), "BF16"),),
    "Int4TilePackedTo4dTensor": (_layout("Int4TilePackedTo4dTensor", ("I32",), "INT4", 8, True,
                                         (Companion("_scale_and_zero", SCALE, _FLOATS, None),),
                                         "BF16"),),
    "Int4OpaqueTensor": (_layout("Int4OpaqueTensor", ("U8",), "INT4", 2, True,
                                 (Companion("_scale_and_zero", SCALE, _FLOATS, None),), "BF16"),),
    "MXTensor": (_layout("MXTensor", ("U8",), "E2M1", 2, False,
                         (_scale(("F8_E8M0", "U8")),), "E8M0", "/fp4"),
                 _layout("MXTensor", ("F8_E4M3", "F8_E5M2"), "E4M3", 1, False,
                         (_scale(("F8_E8M0", "U8")),), "E8M0", "/fp8")),
    "NVFP4Tensor": (_layout("NVFP4Tensor", ("U8",), "E2M1", 2, False,
                            (_scale(("F8_E4M3",)), _PTS, _APTS), "E4M3"),),
}

_NUMBER = re.compile(r"0|[1-9][0-9]{0,17}")


def _template(name: str) -> str:
    return ".".join("{}" if _NUMBER.fullmatch(p) else p for p in name.split("."))


def _quantized_modules(meta: Mapping[str, str], problems: list[Problem]
                       ) -> dict[str, set[str]] | None:
    """type -> templates of the modules holding a quantized parameter, from
    ``__metadata__`` (None when it is not torchao's)."""
    raw = meta.get("tensor_names")
    if not isinstance(raw, str):
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        problems.append(Problem(METADATA, "tensor_names", "is not JSON"))
        return None
    if not isinstance(names, list):
        problems.append(Problem(METADATA, "tensor_names", "is not a JSON list"))
        return None
    out: dict[str, set[str]] = {}
    for name in names:
        if not isinstance(name, str):
            continue
        try:
            entry: Any = json.loads(meta.get(name, "null"))
        except ValueError:
            problems.append(Problem(METADATA, name, "is not JSON"))
            continue
        t = entry.get("_type") if isinstance(entry, Mapping) else None
        if t in (None, "Tensor", "torch.Tensor"):
            continue
        if t not in TYPES:
            problems.append(Problem(METADATA, name, f"{t!r} is not a torchao tensor type "
                                    "this release declares"))
            continue
        out.setdefault(str(t), set()).add(_template(name.rpartition(".")[0]))
    return out


def detect(src: Sources) -> Detection | None:
    problems: list[Problem] = []
    types = _quantized_modules(src.metadata, problems) if src.metadata else None
    found = src.quant_method()
    from_config = found is not None and found[0] == "torchao"
    if not types and not from_config:
        return None
    groups: list[Group] = []
    for t, templates in sorted((types or {}).items()):
        frozen = frozenset(templates)

        def declared(name: str, kind: str, modules: frozenset[str] = frozenset(frozen)) -> bool:
            return _template(name) in modules

        groups.append(Group(t, TYPES[t], Targets(default=declared,
                                                  default_label=f"{t} in __metadata__")))
    if not groups:  # only the config: every type's layout may appear
        every = tuple(lay for lays in TYPES.values() for lay in lays)
        groups.append(Group("any", every, Targets(default=lambda n, k: k == "linear",
                                                  default_label="every linear layer")))
    entries: tuple[str, ...] = ()
    where = "quantization_config"
    if found is not None and from_config:
        _, q, where = found
        entries = string_list(q.get("modules_to_not_convert"),
                              f"{where}.modules_to_not_convert", problems)
    return Detection(
        family=NAME, method="torchao", source=METADATA if types else f"config.json: {where}",
        config=dict(found[1]) if found is not None and from_config else {},
        groups=tuple(groups),
        exclusions=Rules(f"{where}.modules_to_not_convert", entries, TRANSFORMERS),
        problems=tuple(problems), depth="recognised",
    )


FAMILY = Family(NAME, "torchao", "recognised", 5, detect)
