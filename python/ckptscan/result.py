"""The one result object of a scan. Every renderer (text, JSON, Markdown) and the
farm store read this tree; none of them recomputes anything."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .findings import Finding, Severity

SCHEMA = "ckptscan.report/2"


@dataclass
class Count:
    tensors: int = 0
    parameters: int = 0
    bytes: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"tensors": self.tensors, "parameters": self.parameters, "bytes": self.bytes}


@dataclass
class RoleSummary(Count):
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> tensors

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "dtypes": dict(self.dtypes)}


@dataclass
class TensorRow:
    name: str
    dtype: str
    shape: tuple[int, ...]
    file: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape),
                "file": self.file}


@dataclass
class Quantization:
    """What the checkpoint's quantization is (`ckptscan.quantmap`).

    ``method`` / ``family``: the declared scheme (None: none declared);
    ``format``: the normalised weight format of the quantized weights (``E4M3``,
    ``E2M1``, ``INT4`` ...; ``mixed: E4M3, E5M2`` when several); ``schemes``:
    per stored layout ``{name, title, family, weight_format, scale_format,
    granularity, bits_per_weight, roles, tensors, companions, parameters,
    convention}``; ``overhead_bytes``: bytes of scales, zero points, global
    scales, g_idx, weight_shape and other bookkeeping (never parameters);
    ``bits_per_weight``: stored bits per logical parameter of the whole
    checkpoint; ``main_format``: the logical format holding most of the
    decoder's weights."""

    method: str | None
    format: str | None
    block_size: list[int] | None
    scale_tensors: int
    fp8_tensors: int
    quantized_roles: list[str]
    unquantized_roles: list[str]
    modules_to_not_convert: list[str] | None = None
    scale_fmt: str | None = None
    family: str | None = None
    source: str | None = None
    schemes: list[dict[str, Any]] = field(default_factory=list)
    overhead_bytes: int = 0
    bits_per_weight: float | None = None
    main_format: str | None = None
    exclusions_key: str | None = None

    @property
    def is_fp8(self) -> bool:
        return self.fp8_tensors > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "family": self.family, "source": self.source,
            "format": self.format, "block_size": self.block_size,
            "scale_tensors": self.scale_tensors, "fp8_tensors": self.fp8_tensors,
            "quantized_roles": self.quantized_roles, "unquantized_roles": self.unquantized_roles,
            "modules_to_not_convert": self.modules_to_not_convert,
            "exclusions_key": self.exclusions_key, "scale_fmt": self.scale_fmt,
            "schemes": [dict(s) for s in self.schemes], "overhead_bytes": self.overhead_bytes,
            "bits_per_weight": self.bits_per_weight, "main_format": self.main_format,
        }


@dataclass
class Deployment:
    """Will it load. ``tensor_parallel``: ``{"ok": [sizes], "max": N, "limiting":
    [up to 5 tensor names]}`` over TP 1-32 for the block/group-quantized linears
    (None: nothing block/group quantized); with --deep, the share of block
    scales that are exact powers of two (what UE8M0 kernels need) and the count
    of 0x80 codes in F8_E4M3 tensors (-0 in e4m3fn, NaN in ROCm's e4m3fnuz)."""

    tensor_parallel: dict[str, Any] | None = None
    block_scales_pow2: float | None = None
    e4m3_negative_zero: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"tensor_parallel": self.tensor_parallel,
                "block_scales_pow2": self.block_scales_pow2,
                "e4m3_negative_zero": self.e4m3_negative_zero}


@dataclass
class Shards:
    """File names: found on disk, referenced by index.json, missing (referenced,
    not on disk), rejected (found but unreadable or refused: not counted), and
    copies (second copies of the weights beside the shards: not counted)."""

    found: list[str]
    referenced: list[str]
    missing: list[str]
    rejected: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, list[str]]:
        return {"found": self.found, "referenced": self.referenced, "missing": self.missing,
                "rejected": self.rejected, "copies": self.copies}


@dataclass
class DeepSummary:
    """What --deep read: tensors, bytes, and what the kernels counted."""

    tensors: int = 0
    bytes: int = 0
    seconds: float = 0.0
    simd: str = ""
    fp8_nan_codes: int = 0
    float_nan: int = 0
    float_inf: int = 0
    unreadable: int = 0
    e4m3_negative_zero: int = 0  # 0x80 codes in F8_E4M3 tensors
    block_scales: int = 0        # scales of block-quantized FP8 weights read
    block_scales_pow2: int = 0   # ... that are exact powers of two

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Source:
    """Where the checkpoint is: `kind` (dir, hf-snapshot, file, shard,
    diffusers-component), its `format` (safetensors, or another format named
    but not read), the Hugging Face repo and revision, the diffusers component."""

    kind: str = "dir"
    format: str = "safetensors"
    repo: str | None = None
    revision: str | None = None
    component: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    checkpoint: str
    model_type: str | None
    family: str
    shards: Shards
    total: Count
    dtypes: dict[str, Count]
    roles: dict[str, RoleSummary]
    quantization: Quantization
    examples: dict[str, list[TensorRow]]  # per role: one layer's (one expert's) tensors
    findings: list[Finding]
    deep: DeepSummary | None = None
    source: Source = field(default_factory=Source)
    deployment: Deployment = field(default_factory=Deployment)

    @property
    def values_read(self) -> bool:
        """Whether tensor values were read (--deep), not only headers."""
        return self.deep is not None

    def count(self, severity: Severity) -> int:
        return sum(1 for f in self.findings if f.severity == severity)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "checkpoint": self.checkpoint,
            "source": self.source.to_dict(),
            "model_type": self.model_type,
            "family": self.family,
            "shards": self.shards.to_dict(),
            "tensors": self.total.tensors,
            "parameters": self.total.parameters,
            "bytes": self.total.bytes,
            "dtypes": {k: v.to_dict() for k, v in self.dtypes.items()},
            "roles": {k: v.to_dict() for k, v in self.roles.items()},
            "quantization": self.quantization.to_dict(),
            "examples": {k: [r.to_dict() for r in v] for k, v in self.examples.items()},
            "findings": [f.to_dict() for f in self.findings],
            "summary": {str(s): self.count(s) for s in reversed(Severity)},
            "deep": None if self.deep is None else self.deep.to_dict(),
            "deployment": self.deployment.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        """The Report whose `to_dict()` gave `d` (what the farm's store keeps)."""
        deep = d.get("deep")
        return cls(
            checkpoint=d["checkpoint"],
            model_type=d["model_type"],
            family=d["family"],
            shards=Shards(**d["shards"]),
            total=Count(d["tensors"], d["parameters"], d["bytes"]),
            dtypes={k: Count(**v) for k, v in d["dtypes"].items()},
            roles={k: RoleSummary(**v) for k, v in d["roles"].items()},
            quantization=Quantization(**d["quantization"]),
            examples={k: [TensorRow(r["name"], r["dtype"], tuple(r["shape"]), r["file"])
                          for r in v] for k, v in d["examples"].items()},
            findings=[Finding.from_dict(f) for f in d["findings"]],
            deep=None if deep is None else DeepSummary(**deep),
            source=Source(**d.get("source") or {}),
            deployment=Deployment(**d.get("deployment") or {}),
        )
