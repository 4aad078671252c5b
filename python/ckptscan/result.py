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
    method: str | None
    format: str | None
    block_size: list[int] | None
    scale_tensors: int
    fp8_tensors: int
    quantized_roles: list[str]
    unquantized_roles: list[str]
    modules_to_not_convert: list[str] | None = None
    scale_fmt: str | None = None

    @property
    def is_fp8(self) -> bool:
        return self.fp8_tensors > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method, "format": self.format, "block_size": self.block_size,
            "scale_tensors": self.scale_tensors, "fp8_tensors": self.fp8_tensors,
            "quantized_roles": self.quantized_roles, "unquantized_roles": self.unquantized_roles,
            "modules_to_not_convert": self.modules_to_not_convert, "scale_fmt": self.scale_fmt,
        }


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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Source:
    """Where the checkpoint is: `kind` (dir, hf-snapshot, file, shard,
    diffusers-component), its `format` (safetensors, or another format named
    but not read), the Hugging Face repo and revision (for hf://, the commit
    read), the diffusers component; for a remote checkpoint its `url` (no
    secrets) and the `requests` and `bytes` its scan cost."""

    kind: str = "dir"
    format: str = "safetensors"
    repo: str | None = None
    revision: str | None = None
    component: str | None = None
    url: str | None = None
    requests: int | None = None
    bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        if self.url is None:  # a local checkpoint: nothing to say of a network
            for key in ("url", "requests", "bytes"):
                del out[key]
        return out


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
        )
