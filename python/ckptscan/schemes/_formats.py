"""Value formats: normalised names, their code spaces, and safetensors dtypes.

A *format* is what the stored numbers mean (E4M3, E2M1, INT4, E8M0, BF16 ...);
a *dtype* is the safetensors container string (F8_E4M3, U8, I32 ...). A packed
FP4 weight has format E2M1 in dtype U8. Configs spell formats many ways
(``e4m3``, ``float8_e4m3fn``, ``torch.float8_e4m3fn``, ``fp8``):
:func:`normalize_format` maps them all to one name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: bits per element of every safetensors dtype string
DTYPE_BITS: Final[dict[str, int]] = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}

#: dtypes that hold ordinary high-precision values (what an unquantized weight uses)
FLOAT_DTYPES: Final = frozenset({"F16", "BF16", "F32", "F64"})
#: 8-bit float weight dtypes
FP8_DTYPES: Final = frozenset({"F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})
#: dtypes only ever used for MX-style scales: never parameters
SCALE_ONLY_DTYPES: Final = frozenset({"F8_E8M0"})


@dataclass(frozen=True)
class Format:
    """One value format. ``max`` is the largest finite magnitude; ``nan_codes`` /
    ``inf_codes`` are the stored codes (bytes, or nibbles for 4-bit formats) that
    are not numbers; ``bias`` is the exponent bias of an exponent-only format."""

    name: str
    bits: int
    kind: str  # "float", "int", "exponent" (E8M0), "lookup" (NF4)
    max: float | None = None
    nan_codes: tuple[int, ...] = ()
    inf_codes: tuple[int, ...] = ()
    bias: int | None = None
    signed: bool = True


FORMATS: Final[dict[str, Format]] = {f.name: f for f in (
    Format("E4M3", 8, "float", 448.0, (0x7F, 0xFF)),
    Format("E4M3FNUZ", 8, "float", 240.0, (0x80,)),
    Format("E5M2", 8, "float", 57344.0, (0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF), (0x7C, 0xFC)),
    Format("E5M2FNUZ", 8, "float", 57344.0, (0x80,)),
    Format("E2M1", 4, "float", 6.0),
    Format("E8M0", 8, "exponent", 2.0 ** 127, (0xFF,), bias=127, signed=False),
    Format("NF4", 4, "lookup", 1.0),
    Format("BNB_FP4", 4, "lookup", 1.0),  # bitsandbytes fp4: its own table, not E2M1
    Format("BF16", 16, "float", 3.3895313892515355e38),
    Format("F16", 16, "float", 65504.0),
    Format("F32", 32, "float", 3.4028234663852886e38),
    Format("F64", 64, "float", 1.7976931348623157e308),
    *(Format(f"INT{b}", b, "int", float(2 ** (b - 1) - 1)) for b in range(1, 9)),
    *(Format(f"UINT{b}", b, "int", float(2 ** b - 1), signed=False) for b in range(1, 9)),
    Format("INT16", 16, "int", 32767.0),
    Format("INT32", 32, "int", 2147483647.0),
)}

_ALIASES: Final[dict[str, str]] = {
    "e4m3": "E4M3", "e4m3fn": "E4M3", "float8_e4m3fn": "E4M3", "fp8_e4m3": "E4M3",
    "f8_e4m3": "E4M3", "fp8": "E4M3", "float8": "E4M3", "f8e4m3fn": "E4M3",
    "e4m3fnuz": "E4M3FNUZ", "float8_e4m3fnuz": "E4M3FNUZ", "f8_e4m3fnuz": "E4M3FNUZ",
    "e5m2": "E5M2", "float8_e5m2": "E5M2", "fp8_e5m2": "E5M2", "f8_e5m2": "E5M2",
    "e5m2fnuz": "E5M2FNUZ", "float8_e5m2fnuz": "E5M2FNUZ", "f8_e5m2fnuz": "E5M2FNUZ",
    "e2m1": "E2M1", "fp4": "E2M1", "float4_e2m1fn": "E2M1", "float4_e2m1fn_x2": "E2M1",
    "f4": "E2M1", "mxfp4": "E2M1", "nvfp4": "E2M1", "fp4_e2m1": "E2M1",
    "e8m0": "E8M0", "ue8m0": "E8M0", "float8_e8m0fnu": "E8M0", "e8m0fnu": "E8M0",
    "f8_e8m0": "E8M0",
    "nf4": "NF4", "bnb_fp4": "BNB_FP4",
    "bf16": "BF16", "bfloat16": "BF16",
    "f16": "F16", "fp16": "F16", "float16": "F16", "half": "F16",
    "f32": "F32", "fp32": "F32", "float32": "F32",
    "f64": "F64", "fp64": "F64", "float64": "F64", "double": "F64",
    "int8": "INT8", "i8": "INT8", "int4": "INT4", "i4": "INT4", "int2": "INT2",
    "uint8": "UINT8", "u8": "UINT8", "uint4": "UINT4",
}


def normalize_format(name: object) -> str | None:
    """The normalised format name for a config's spelling, or None if unknown.

    ``"e4m3"``, ``"float8_e4m3fn"``, ``"torch.float8_e4m3fn"`` and ``"F8_E4M3"`` all
    give ``"E4M3"``; ``"ue8m0"`` gives ``"E8M0"``; ``"INT4"`` stays ``"INT4"``.
    """
    if not isinstance(name, str):
        return None
    key = name.strip().removeprefix("torch.").lower()
    if key.upper() in FORMATS:
        return key.upper()
    if key in _ALIASES:
        return _ALIASES[key]
    return DTYPE_FORMAT.get(name.strip().upper())


#: the format of the values a safetensors dtype holds when nothing is packed in it
DTYPE_FORMAT: Final[dict[str, str]] = {
    "F8_E4M3": "E4M3", "F8_E5M2": "E5M2", "F8_E4M3FNUZ": "E4M3FNUZ",
    "F8_E5M2FNUZ": "E5M2FNUZ", "F8_E8M0": "E8M0", "F4": "E2M1",
    "BF16": "BF16", "F16": "F16", "F32": "F32", "F64": "F64",
    "I8": "INT8", "U8": "UINT8", "I16": "INT16", "I32": "INT32",
}

_TORCH_DTYPES: Final[dict[str, str]] = {
    "float8_e4m3fn": "F8_E4M3", "float8_e5m2": "F8_E5M2", "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ", "float8_e8m0fnu": "F8_E8M0",
    "bfloat16": "BF16", "float16": "F16", "half": "F16", "float32": "F32", "float": "F32",
    "float64": "F64", "double": "F64", "uint8": "U8", "int8": "I8", "int16": "I16",
    "int32": "I32", "int": "I32", "int64": "I64", "long": "I64", "uint32": "U32",
    "bool": "BOOL",
}


def torch_dtype_to_safetensors(name: object) -> str | None:
    """``"torch.float8_e4m3fn"`` (how compressed-tensors serialises ``scale_dtype``) ->
    ``"F8_E4M3"``; None for anything else."""
    if not isinstance(name, str):
        return None
    return _TORCH_DTYPES.get(name.strip().removeprefix("torch.").lower())
