"""The one result object of a scan. Every renderer (text, JSON, Markdown, HTML)
and the farm store read this tree; none of them recomputes anything."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .findings import Finding, Severity

SCHEMA = "ckptscan.report/2"


def _parent(path: str) -> str:
    cut = path.rstrip("/").rfind("/")
    return path[:cut] if cut > 0 else ("/" if cut == 0 else "")


def relative_path(path: str | None, root: str) -> str | None:
    """`path` relative to `root` when it lies under it (string prefixes: works for
    URLs too); the root itself by its last name; anything else unchanged."""
    if path is None or not root:
        return path
    base = root.rstrip("/")
    if path.rstrip("/") == base:
        return base[base.rfind("/") + 1:] or path
    if path.startswith(base + "/"):
        return path[len(base) + 1:]
    return path


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
class HeatMap:
    """What --deep measured per layer x expert of one column (a role of the
    decoder, or "component role" of another component; see `PrecisionGrid`).

    Each metric is a flat row-major list of ``len(layers) * len(experts)``
    values (``experts == [-1]``: the column has no experts), or ``[]`` when it
    is zero (None for `scale_log2`) in every cell: a healthy checkpoint stores
    no NaN map. Per cell: ``tensors`` measured (FP8 and float tensors; scales
    are not counted as tensors; 0: no data); ``nan`` / ``inf`` (FP8 NaN/Inf
    codes, float NaN/Inf values); ``blocks`` of FP8 weights read with their
    block scale and, of those, ``zero_blocks`` (all codes zero) and
    ``low_blocks`` (largest code below a quarter of the format max, the
    ``fp8-range-unused`` rule); ``saturated_ppm``: FP8 codes of the largest
    finite magnitude per million FP8 codes (rounded; None: no FP8 code);
    ``bad_scales`` (NaN, Inf, <= 0, vLLM's unfilled sentinel); ``scale_log2``:
    the mean log2 of the cell's positive finite scales (2 decimals; None: no
    scale)."""

    column: str
    layers: list[int]
    experts: list[int]
    tensors: list[int]
    nan: list[int]
    inf: list[int]
    blocks: list[int]
    zero_blocks: list[int]
    low_blocks: list[int]
    bad_scales: list[int]
    saturated_ppm: list[int | None]
    scale_log2: list[float | None]

    @property
    def cells(self) -> int:
        return len(self.layers) * len(self.experts)

    def metric(self, name: str) -> list[Any]:
        """One metric in every cell (an empty list expanded)."""
        values: list[Any] = getattr(self, name)
        if values:
            return values
        return [None if name in ("saturated_ppm", "scale_log2") else 0] * self.cells

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class CodeHistogram:
    """How often each of the 256 codes occurs in one column's FP8 tensors of one
    format, counted over a bounded sample of each tensor (`deepmap.sample_spans`:
    whole tensors up to 64 KiB): ``sampled`` codes of ``total``."""

    column: str
    dtype: str
    counts: list[int]
    tensors: int
    sampled: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DeepSummary:
    """What --deep read: tensors, bytes, and what the kernels counted; `maps`
    (per layer x expert, bounded: see `deepmap.MAX_CELLS`) and `histograms`
    (FP8 codes per column) for the HTML report."""

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
    maps: list[HeatMap] = field(default_factory=list)
    histograms: list[CodeHistogram] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["maps"] = [m.to_dict() for m in self.maps]
        out["histograms"] = [h.to_dict() for h in self.histograms]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DeepSummary:
        d = dict(d)
        maps = [HeatMap(**m) for m in d.pop("maps", None) or ()]
        hists = [CodeHistogram(**h) for h in d.pop("histograms", None) or ()]
        return cls(**d, maps=maps, histograms=hists)


@dataclass
class ConfigSummary:
    """What config.json says of the model (None: it does not say): the
    decoder's ``architectures``, layers, hidden size, vocabulary, routed experts
    and ``torch_dtype``, read as the checks read them."""

    architectures: list[str] = field(default_factory=list)
    layers: int | None = None
    hidden_size: int | None = None
    vocab_size: int | None = None
    experts: int | None = None
    torch_dtype: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PrecisionCell:
    """The tensors of one layer in one column: ``dtypes`` maps each dtype of its
    weight tensors to their parameters (largest first); ``tensors``,
    ``parameters`` and ``bytes`` count every tensor of the cell (weights, scales,
    biases), ``weights`` the parameters of its weight tensors."""

    dtypes: dict[str, int]
    tensors: int
    parameters: int
    bytes: int
    weights: int

    @property
    def bits_per_weight(self) -> float:
        """Bytes of the cell (scales included) per weight parameter, in bits."""
        per = self.weights or self.parameters
        return 8 * self.bytes / per if per else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PrecisionRow:
    """Layers ``first``..``last`` (consecutive layers whose cells are all equal
    share a row; every cell describes *one* of those layers). ``first == -1``:
    the component's tensors outside its layers (embedding, final norm, head)."""

    first: int
    last: int
    cells: dict[str, PrecisionCell]

    def to_dict(self) -> dict[str, Any]:
        return {"first": self.first, "last": self.last,
                "cells": {k: c.to_dict() for k, c in self.cells.items()}}


@dataclass
class PrecisionGrid:
    """The precision map of one component: its layers down, its roles
    (`columns`) across. ``more_layers``: layers beyond the row cap, not shown."""

    component: str
    columns: list[str]
    rows: list[PrecisionRow]
    more_layers: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"component": self.component, "columns": self.columns,
                "rows": [r.to_dict() for r in self.rows], "more_layers": self.more_layers}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrecisionGrid:
        rows = [PrecisionRow(r["first"], r["last"],
                             {k: PrecisionCell(**c) for k, c in r["cells"].items()})
                for r in d["rows"]]
        return cls(d["component"], list(d["columns"]), rows, int(d.get("more_layers", 0)))


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


@dataclass(repr=False)
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
    config: ConfigSummary = field(default_factory=ConfigSummary)
    precision: list[PrecisionGrid] = field(default_factory=list)
    deployment: Deployment = field(default_factory=Deployment)

    @property
    def values_read(self) -> bool:
        """Whether tensor values were read (--deep), not only headers."""
        return self.deep is not None

    def count(self, severity: Severity | str) -> int:
        """Findings at exactly this severity (a `Severity` or its name)."""
        level = Severity.parse(severity)
        return sum(1 for f in self.findings if f.severity == level)

    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def fails(self, fail_on: Severity | str = Severity.ERROR) -> bool:
        """Whether a finding at `fail_on` or above remains (``never``: no)."""
        if fail_on == "never":
            return False
        worst = self.worst()
        return worst is not None and worst >= Severity.parse(fail_on)

    @property
    def root(self) -> str:
        """The directory the report's file names are relative to."""
        if self.source.kind in ("file", "shard"):
            return _parent(self.checkpoint)
        return self.checkpoint

    def relative(self, path: str | None) -> str | None:
        """`path` relative to the checkpoint (`root`), or as it is when outside."""
        return relative_path(path, self.root)

    def filtered(self, select: Sequence[str] = (), ignore: Sequence[str] = (),
                 baseline: Any = None) -> Report:
        """A copy keeping the findings `select` (codes or prefixes; empty: all)
        keeps, less those `ignore` names and those the `baseline` (a
        `ckptscan.selection.Baseline`) accepts. See `ckptscan.selection`."""
        from .selection import filter_findings

        return replace(self, findings=filter_findings(self, select, ignore, baseline))

    def __repr__(self) -> str:
        e, w, i = (self.count(s) for s in (Severity.ERROR, Severity.WARNING, Severity.INFO))
        return (f"<Report {self.checkpoint!r}: {self.total.tensors:,} tensors, "
                f"{self.total.parameters:,} parameters, {e} error{'s' * (e != 1)}, "
                f"{w} warning{'s' * (w != 1)}, {i} info>")

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
            "config": self.config.to_dict(),
            "precision": [g.to_dict() for g in self.precision],
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
            deep=None if deep is None else DeepSummary.from_dict(deep),
            source=Source(**d.get("source") or {}),
            config=ConfigSummary(**d.get("config") or {}),
            precision=[PrecisionGrid.from_dict(g) for g in d.get("precision") or ()],
            deployment=Deployment(**d.get("deployment") or {}),
        )

    def _repr_html_(self) -> str:
        """A compact summary for notebooks (Jupyter, VS Code): the HTML report's
        identity, composition and findings, without script."""
        from .render.html import to_html_summary

        return to_html_summary(self)
