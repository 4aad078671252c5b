"""What one scan knows, computed once: the checkpoint, its frame, its config, the
index joined to the headers, the tensors broken files took along, the quantization
scheme the checkpoint declares and what it says about every tensor (`QuantMap`).

Checks read a `ScanContext`; none of them recomputes what another already did.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from . import _core, schemes
from .checkpoint import Checkpoint
from .frame import Frame, match_rows
from .layout import FileStat
from .policy import FindingSet
from .quantmap import QuantMap, scheme_kinds
from .shard import Shard
from .taxonomy import template_of

FP8_DTYPES = ("F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")
# Distinct name templates `describe` classifies (a real checkpoint has < 100).
_DESCRIBE_TEMPLATES = 1024


@dataclass
class Join:
    """Names matched across index.json and the readable shards (_core.match_names)."""

    entry_row: np.ndarray    # per index entry: its frame row, -1 when in no readable shard
    row_entry: np.ndarray    # per frame row: its index entry, -1 when unlisted
    dup_of: np.ndarray       # per frame row: another row with the same name, or -1
    entry_shard: np.ndarray  # per index entry: position in frame.shards, -1 if not readable


class ScanContext:
    """One checkpoint being scanned.

    `shards` are every shard opened; `frame` holds the *readable* ones only (no
    parser problem): a rejected shard's tensors are not counted, and what the
    index places in it is `lost` to its root cause. `partial`: one shard of a
    sharded checkpoint is scanned (checkpoint-wide checks do not apply).

    The scheme the checkpoint declares (`detection`: config.json, its
    text_config, hf_quant_config.json, the shards' ``__metadata__``) decides the
    kind of the names it knows before anything reads the frame: its companions
    are scales (overhead), its packed weights weights.
    """

    def __init__(self, ckpt: Checkpoint, frame: Frame, *, partial: bool = False,
                 gone: Mapping[str, str] | None = None,
                 copies: Sequence[FileStat] = (),
                 hf_quant_config: Mapping[str, Any] | None = None,
                 hf_quant_path: str | None = None) -> None:
        self.ckpt = ckpt
        self.frame = frame
        self.partial = partial
        self.copies = list(copies)  # second copies of the weights (consolidated files)
        self.hf_quant_config = hf_quant_config
        self.hf_quant_path = hf_quant_path
        # shard file name -> root-cause key, for shards whose tensors cannot be read
        self.gone: dict[str, str] = dict(gone or {})
        kinds = scheme_kinds(self.detection, frame.templates, frame.table.kind)
        if kinds:
            frame.table = frame.table.with_kinds(kinds)
            for derived in ("kind", "linear"):
                frame.__dict__.pop(derived, None)
        self.findings = FindingSet(frame, self.lost)
        # small scales read by the header checks (per-tensor, global, input scales):
        # their values, and the rows already judged (--deep does not judge them twice)
        self.small_values: dict[int, np.ndarray | None] = {}
        self.scales_read: set[int] = set()

    @property
    def config(self) -> dict[str, Any] | None:
        return self.ckpt.config

    @property
    def where_config(self) -> str:
        root = self.ckpt.path
        return str(root / "config.json") if root.is_dir() else str(root.parent / "config.json")

    # ---- index.json -----------------------------------------------------------
    @cached_property
    def join(self) -> Join:
        frame, idx = self.frame, self.ckpt.index
        position = {os.path.basename(s.path): i for i, s in enumerate(frame.shards)}
        shard_pos = [position.get(n, -1) for n in idx.shard_names] if idx is not None else []
        entry_row, row_entry, dup_of = _core.match_names(
            None if idx is None else idx.core, [s.core for s in frame.shards], shard_pos)
        entry_shard = (np.asarray(shard_pos, dtype=np.int64)[idx.core.shard_ids]
                       if idx is not None and len(idx) else np.zeros(0, np.int64))
        return Join(entry_row, row_entry, dup_of, entry_shard)

    @cached_property
    def index_names(self) -> list[str]:
        idx = self.ckpt.index
        return idx.core.names() if idx is not None and len(idx) else []

    @cached_property
    def lost(self) -> dict[str, str]:
        """Tensor name -> root-cause key, for the tensors a broken or missing file
        took along: what index.json places in it, or what its header listed."""
        out: dict[str, str] = {}
        idx = self.ckpt.index
        if idx is not None and self.gone and len(idx):
            absent = np.flatnonzero(self.join.entry_row < 0)
            names_of = idx.shard_names
            ids = idx.core.shard_ids[absent].tolist()
            index_names = self.index_names
            for e, sid in zip(absent.tolist(), ids, strict=True):
                key = self.gone.get(names_of[sid])
                if key is not None:
                    out[index_names[e]] = key
        for shard in self.rejected:
            key = self.gone.get(os.path.basename(shard.path))
            if key is not None and shard._core is not None:
                for name in shard.core.names():
                    out.setdefault(name, key)
        return out

    @cached_property
    def rejected(self) -> list[Shard]:
        readable = {id(s) for s in self.frame.shards}
        return [s for s in self.ckpt.shards if id(s) not in readable]

    def lost_by_cause(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = defaultdict(list)
        for name, key in self.lost.items():
            out[key].append(name)
        return out

    def describe(self, names: list[str], limit: int = 4) -> str:
        """'6 moe_expert (layer 1), 2 attention (layer 1) ...' for tensor names.
        Bounded work: past `_DESCRIBE_TEMPLATES` distinct templates (a hostile
        header's names), the rest are counted as unclassified."""
        tax = self.frame.taxonomy
        by_role: dict[str, Counter[int]] = defaultdict(Counter)
        seen: set[str] = set()
        for name in names:
            template, ints = template_of(name)
            if template not in seen and len(seen) >= _DESCRIBE_TEMPLATES:
                by_role["unclassified"][-1] += 1
                continue
            seen.add(template)
            tc = tax.classify(template)
            layer = ints[tc.layer_slot] if tc.layer_slot is not None else -1
            by_role[tc.role][layer] += 1
        parts = []
        for role, layers in sorted(by_role.items(), key=lambda kv: -sum(kv[1].values())):
            n = sum(layers.values())
            lay = sorted(x for x in layers if x >= 0)
            where = f" (layer{'s' if len(lay) > 1 else ''} {ranges(lay)})" if lay else ""
            parts.append(f"{n:,} {role}{where}")
        more = f" and {len(parts) - limit} more roles" if len(parts) > limit else ""
        return ", ".join(parts[:limit]) + more

    # ---- quantization ---------------------------------------------------------
    @cached_property
    def metadata(self) -> tuple[dict[str, str] | None, str | None]:
        """The readable shards' ``__metadata__`` merged where it describes tensor
        subclasses (torchao: each shard lists its own ``tensor_names``), and the
        first shard holding such metadata."""
        merged: dict[str, str] = {}
        names: list[Any] = []
        where = None
        for shard in self.frame.shards:
            md = shard.metadata
            if not md or "tensor_names" not in md:
                continue
            where = where or shard.path
            try:
                listed = json.loads(md["tensor_names"])
            except ValueError:
                listed = None
            if not isinstance(listed, list):
                return dict(md), shard.path  # the detection names what is wrong with it
            names += listed
            merged.update(md)
        if where is None:
            return None, None
        merged["tensor_names"] = json.dumps(names)
        return merged, where

    @cached_property
    def detection(self) -> schemes.Detection | None:
        """The quantization scheme the checkpoint declares (None: none)."""
        return schemes.detect(self.config, self.hf_quant_config, self.metadata[0])

    @cached_property
    def quant_map(self) -> QuantMap:
        """What the scheme says about every tensor (see `ckptscan.quantmap`)."""
        return QuantMap(self.frame, self.detection)

    @cached_property
    def tensor_parallel(self) -> dict[str, Any] | None:
        """Tensor-parallel sizes every block/group-quantized linear splits into
        (see `QuantMap.tensor_parallel`); None when nothing is block/group quantized."""
        return self.quant_map.tensor_parallel(self.frame.taxonomy.component_config("decoder"))

    def source_file(self, source: str) -> str:
        """The file a scheme declaration (`schemes.Problem.source`) was read from."""
        if source == schemes.HF_QUANT_CONFIG and self.hf_quant_path:
            return self.hf_quant_path
        if source == schemes.METADATA and self.metadata[1]:
            return self.metadata[1]
        return self.where_config


def fill(template: str, ints: list[int]) -> str:
    """The name a template has for these integers."""
    parts = template.split("{}")
    return "".join(p + (str(ints[i]) if i < len(ints) else "") for i, p in enumerate(parts))


def ranges(values: list[int], groups_max: int = 8) -> str:
    """[1, 2, 3, 7] -> '1-3, 7' (at most a few groups)."""
    groups: list[list[int]] = []
    for v in values:
        if groups and v == groups[-1][-1] + 1:
            groups[-1].append(v)
        else:
            groups.append([v])
    parts = [f"{g[0]}-{g[-1]}" if len(g) > 1 else str(g[0]) for g in groups[:groups_max]]
    return ", ".join(parts) + (" ..." if len(groups) > groups_max else "")


__all__ = ["FP8_DTYPES", "Join", "ScanContext", "fill", "match_rows", "ranges"]
