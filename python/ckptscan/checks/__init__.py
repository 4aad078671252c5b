"""Checks by subject. Each reads the `ScanContext` and hands its findings to the
scan's `FindingSet` (``ctx.findings``), which applies the one grouping policy
(`ckptscan.policy`); codes and severities come from `ckptscan.codes`.

- `files`: root causes (missing, unreadable, rejected files), shard names,
  index.json against the headers, duplicates;
- `quant`: quantization_config against the tensors;
- `grid`: the layer x expert grid;
- `model_config`: config.json against the tensors;
- `data`: what ``--deep`` measured (called by the deep driver).
"""

from __future__ import annotations

from ..context import ScanContext
from . import files, grid, model_config, quant


def run(ctx: ScanContext) -> None:
    """Every header-level check; findings land in ``ctx.findings``."""
    files.check(ctx)
    quant.check(ctx)
    grid.check(ctx)
    model_config.check(ctx)


__all__ = ["run"]
