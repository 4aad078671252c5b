"""bitsandbytes (``quant_method: "bitsandbytes"``, ``load_in_4bit`` /
``load_in_8bit``). Recognised: counts and companion pairing.

Layout (bitsandbytes ``Params4bit`` / ``QuantState.as_dict(packed=True)``,
``Linear8bitLt._save_to_state_dict``; huggingface.js counts the same way):

- 4-bit: ``X.weight`` U8 ``[ceil(n/2), 1]``, the n = out * in values flattened,
  two per byte (another container with ``bnb_4bit_quant_storage``); the logical
  shape is in the quant state's data, not in the header. Companions
  ``X.weight.absmax`` (F32 per 64-value block; U8 with double quantization),
  ``X.weight.quant_map`` F32 ``[16]``, with ``bnb_4bit_use_double_quant``
  ``X.weight.nested_absmax`` F32 and ``X.weight.nested_quant_map`` F32 ``[256]``,
  and ``X.weight.quant_state.bitsandbytes__nf4`` (or ``__fp4``) U8: the packed
  JSON of the state.
- 8-bit: ``X.weight`` I8 ``[out, in]`` + ``X.SCB`` F32 ``[out]`` (+ ``X.weight_format``).

Which modules: every linear layer except ``llm_int8_skip_modules``, read by
transformers' ``should_convert_module`` (regex at the start, or suffix).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from ._core import (
    AUX,
    CONFIG,
    SCALE,
    Companion,
    Detection,
    Family,
    Fixed,
    Granularity,
    Group,
    Layout,
    Packing,
    PerChannel,
    Problem,
    Shape,
    Sources,
    cdiv,
    linear_modules,
    string_list,
)
from ._formats import DTYPE_BITS, torch_dtype_to_safetensors
from ._match import TRANSFORMERS, Rules, Targets

NAME = "bitsandbytes"
SOURCE = "bitsandbytes Params4bit / QuantState.as_dict(packed=True), Linear8bitLt"


@dataclass(frozen=True)
class Blocks:
    """``[ceil(n / block)]`` for the block sizes bitsandbytes allows, the default
    64 first (n may include one padding value when it is odd)."""

    per: int = 1

    def __call__(self, logical: Shape) -> tuple[Shape, ...]:
        if len(logical) != 1:
            return ()
        n = logical[0]
        out: list[Shape] = []
        for b in (64, 32, 128, 256, 512, 1024, 2048, 4096):
            for m in (n, max(n - 1, 1)):
                if (s := (cdiv(m, b * self.per),)) not in out:
                    out.append(s)
        return tuple(out)


def layout_4bit(quant_type: str, double: bool, storage: str) -> Layout:
    per = Fraction(DTYPE_BITS[storage], 4)
    comps = [
        Companion(".weight.absmax", SCALE, ("U8", "F32") if double else ("F32",), Blocks()),
        Companion(".weight.quant_map", AUX, ("F32",), Fixed(((16,),))),
        Companion(f".weight.quant_state.bitsandbytes__{quant_type}", AUX, ("U8",), None),
    ]
    if double:
        comps += [Companion(".weight.nested_absmax", SCALE, ("F32",), Blocks(per=256)),
                  Companion(".weight.nested_quant_map", AUX, ("F32",), Fixed(((256,),)))]
    return Layout(
        name=f"{NAME}/{quant_type.upper()}" + ("/double-quant" if double else ""),
        title=f"bitsandbytes 4-bit {quant_type} (absmax per 64 values)",
        family=NAME, weight_suffix=".weight", weight_dtypes=(storage,),
        weight_format="NF4" if quant_type == "nf4" else "BNB_FP4",
        scale_format="U8 (double-quantized absmax)" if double else "F32",
        granularity=Granularity("group", size=64),
        packing=Packing(per, order="high-nibble-first", flat=True), companions=tuple(comps),
        source=SOURCE,
    )


LAYOUT_8BIT = Layout(
    name=f"{NAME}/INT8", title="bitsandbytes LLM.int8() (SCB per output row)", family=NAME,
    weight_suffix=".weight", weight_dtypes=("I8",), weight_format="INT8", scale_format="F32",
    granularity=Granularity("channel"),
    companions=(Companion(".SCB", SCALE, ("F32",), PerChannel(("flat",))),
                Companion(".weight_format", AUX, ("U8", "I64"), Fixed(((), (1,))), required=False)),
    source=SOURCE,
)


def detect(src: Sources) -> Detection | None:
    found = src.quant_method()
    if found is None or found[0] != "bitsandbytes":
        return None
    _, q, where = found
    problems: list[Problem] = []
    four, eight = q.get("load_in_4bit") is True, q.get("load_in_8bit") is True
    if four == eight:
        problems.append(Problem(CONFIG, f"{where}.load_in_4bit",
                                "exactly one of load_in_4bit / load_in_8bit must be true"))
    if four or not eight:
        qt = str(q.get("bnb_4bit_quant_type", "fp4")).lower()
        if qt not in ("nf4", "fp4"):
            problems.append(Problem(CONFIG, f"{where}.bnb_4bit_quant_type",
                                    f"{qt!r} is neither nf4 nor fp4"))
            qt = "nf4"
        storage = torch_dtype_to_safetensors(q.get("bnb_4bit_quant_storage", "uint8")) or "U8"
        lay = layout_4bit(qt, q.get("bnb_4bit_use_double_quant") is True, storage)
    else:
        lay = LAYOUT_8BIT
    entries = string_list(q.get("llm_int8_skip_modules"), f"{where}.llm_int8_skip_modules",
                          problems)
    return Detection(
        family=NAME, method=f"bitsandbytes/{'4bit' if four else '8bit'}",
        source=f"{CONFIG}: {where}", config=q,
        groups=(Group("default", (lay,), Targets(default=linear_modules,
                                                 default_label="every linear layer")),),
        exclusions=Rules(f"{where}.llm_int8_skip_modules", entries, TRANSFORMERS,
                         defaults=("lm_head",)),
        problems=tuple(problems), depth="recognised",
    )


FAMILY = Family(NAME, "bitsandbytes", "recognised", 72, detect)
