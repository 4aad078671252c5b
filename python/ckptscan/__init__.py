"""ckptscan: what is inside a safetensors checkpoint, without loading it.

Public API (imported lazily so that ``ckptscan --help`` starts instantly):
`open_shard`, `open_checkpoint`, `scan`, `scan_all`, `scan_farm`, `compare` (two
checkpoints -> `Diff`), `simd_info`, `Shard`, `TensorInfo`, `Checkpoint`, `TensorTable`,
`Report`, `Baseline`, and the exceptions `CkptScanError`, `HeaderError`,
`ShardIOError`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_shard": "shard",
    "Shard": "shard",
    "TensorInfo": "shard",
    "open_checkpoint": "checkpoint",
    "Checkpoint": "checkpoint",
    "CkptScanError": "errors",
    "HeaderError": "errors",
    "ShardIOError": "errors",
    "Problem": "errors",
    "Finding": "findings",
    "Severity": "findings",
    "scan": "pipeline",
    "scan_all": "pipeline",
    "Report": "result",
    "scan_farm": "farm",
    "simd_info": "kernels",
    "compare": "diff",
    "Diff": "diff",
    "Baseline": "selection",
    "TensorTable": "table",
}

__all__ = [
    "Baseline", "Checkpoint", "CkptScanError", "Diff", "Finding", "HeaderError", "Problem",
    "Report", "Severity", "Shard", "ShardIOError", "TensorInfo", "TensorTable", "compare",
    "open_checkpoint", "open_shard", "scan", "scan_all", "scan_farm", "simd_info",
]

if TYPE_CHECKING:
    from .checkpoint import Checkpoint, open_checkpoint
    from .diff import Diff, compare
    from .errors import CkptScanError, HeaderError, Problem, ShardIOError
    from .farm import scan_farm
    from .findings import Finding, Severity
    from .kernels import simd_info
    from .pipeline import scan, scan_all
    from .result import Report
    from .selection import Baseline
    from .shard import Shard, TensorInfo, open_shard
    from .table import TensorTable


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ckptscan' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
