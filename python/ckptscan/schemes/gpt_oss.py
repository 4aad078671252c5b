"""gpt-oss MXFP4 (``quant_method: "mxfp4"``).

Layout (transformers ``integrations/mxfp4.py`` ``convert_moe_packed_tensors``;
the openai/gpt-oss-20b and -120b headers):

- ``model.layers.N.mlp.experts.gate_up_proj_blocks`` U8 ``[E, 2I, H/32, 16]``:
  E2M1 values, two per byte, **low nibble first**, 32 values per 16-byte block;
- ``..._scales`` U8 ``[E, 2I, H/32]``: one E8M0 exponent (bias 127) per block, so
  ``blocks.shape[:-1] == scales.shape``;
- ``..._bias`` BF16 ``[E, 2I]`` is an ordinary parameter; the same for
  ``down_proj_blocks / _scales / _bias`` (``[E, H, I/32, 16]``).
  Note the ``_`` separators: these are parameters of the ``experts`` module.

Which modules: only the experts (``GptOssExperts``); attention, router,
embeddings and sinks stay BF16. ``modules_to_not_convert`` entries are read by
transformers' ``should_convert_module``: a regex matched at the start of the
name, or a suffix.
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
    PerGroup,
    Problem,
    Sources,
    string_list,
)
from ._match import TRANSFORMERS, Rules, Targets

NAME = "gpt-oss-mxfp4"
SOURCE = "transformers integrations/mxfp4.py (convert_moe_packed_tensors)"


def expert_modules(name: str, kind: str) -> bool:
    return name.rpartition(".")[2] == "experts"


LAYOUT = Layout(
    name=f"{NAME}/E2M1/group32",
    title="gpt-oss MXFP4 (E2M1 *_blocks, E8M0 *_scales per 32 inputs)",
    family=NAME, weight_suffix="_blocks", weight_dtypes=("U8",), weight_format="E2M1",
    scale_format="E8M0", granularity=Granularity("group", size=32),
    packing=Packing(Fraction(2), order="low-nibble-first", blocks=True),
    companions=(Companion("_scales", SCALE, ("U8", "F8_E8M0"), PerGroup(32),
                          note="blocks.shape[:-1] == scales.shape"),),
    param_style=True, param_pattern=r"[A-Za-z0-9_]*_proj", ranks=(2, 3), source=SOURCE,
    source_transposed=True,  # GptOssExperts.gate_up_proj is [E, H, 2I]
)


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "mxfp4":
        return None
    _, q, where = found
    problems: list[Problem] = []
    entries = string_list(q.get("modules_to_not_convert"), f"{where}.modules_to_not_convert",
                          problems)
    return Detection(
        family=NAME, method="mxfp4", source=f"{CONFIG}: {where}", config=q,
        groups=(Group("experts", (LAYOUT,),
                      Targets(default=expert_modules, default_label="MoE experts (mlp.experts)")),),
        exclusions=Rules(f"{where}.modules_to_not_convert", entries, TRANSFORMERS,
                         defaults=("lm_head",)),
        problems=tuple(problems),
    )


FAMILY = Family(NAME, "gpt-oss MXFP4", "deep", 60, detect)
