"""What one scan knows, computed once: the checkpoint, its frame, its config, the
index joined to the headers, the tensors broken files took along, the FP8 pairing.

Checks read a `ScanContext`; none of them recomputes what another already did.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from . import _core
from .checkpoint import Checkpoint
from .config import QuantConfig, quant_config
from .frame import Frame
from .layout import FileStat
from .policy import FindingSet
from .shard import DTYPE_NAMES, Shard
from .taxonomy import KIND_CODE, template_of

FP8_DTYPES = ("F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ")
SCALE_SUFFIXES = ("weight_scale_inv", "weight_scale", "scale_weight")
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
    """

    def __init__(self, ckpt: Checkpoint, frame: Frame, *, partial: bool = False,
                 gone: Mapping[str, str] | None = None,
                 copies: Sequence[FileStat] = ()) -> None:
        self.ckpt = ckpt
        self.frame = frame
        self.partial = partial
        self.copies = list(copies)  # second copies of the weights (consolidated files)
        # shard file name -> root-cause key, for shards whose tensors cannot be read
        self.gone: dict[str, str] = dict(gone or {})
        self.findings = FindingSet(frame, self.lost)

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
    def quant(self) -> QuantConfig | None:
        return quant_config(self.config)

    @cached_property
    def fp8(self) -> np.ndarray:
        return np.isin(self.frame.dtype, [DTYPE_NAMES.index(d) for d in FP8_DTYPES])

    @cached_property
    def scale_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(scale row of each row or -1, weight row of each row or -1), matched per
        template: `P.weight_scale_inv` (or weight_scale / scale_weight) <-> `P.weight`."""
        frame = self.frame
        n = len(frame)
        scale_of = np.full(n, -1, dtype=np.int64)
        weight_of = np.full(n, -1, dtype=np.int64)
        tmpl_id = {t: i for i, t in enumerate(frame.templates)}
        by_t = frame.rows_by_template
        for t, template in enumerate(frame.templates):
            if frame.table.kind[t] != KIND_CODE["scale"]:
                continue
            suffix = scale_suffix(template)
            if suffix is None:
                continue
            w_t = tmpl_id.get(template[: -len(suffix)] + "weight")
            s_rows = by_t[t]
            w_rows = by_t[w_t] if w_t is not None else np.zeros(0, np.int64)
            match = match_rows(frame, s_rows, w_rows)
            weight_of[s_rows] = match
            ok = match >= 0
            scale_of[match[ok]] = s_rows[ok]
        return scale_of, weight_of

    @cached_property
    def block_scale_template(self) -> np.ndarray:
        """Per template: a block scale (`*.weight_scale_inv`, DeepSeek's convention)."""
        return np.array([t.endswith(".weight_scale_inv") for t in self.frame.templates],
                        dtype=bool)


def scale_suffix(template: str) -> str | None:
    return next((x for x in SCALE_SUFFIXES if template.endswith("." + x)), None)


def match_rows(frame: Frame, a_rows: np.ndarray, b_rows: np.ndarray) -> np.ndarray:
    """For each row of template A, the row of template B with the same integers
    (-1 if none): pairs X.weight_scale_inv with X.weight without touching names."""
    out = np.full(len(a_rows), -1, dtype=np.int64)
    if not len(a_rows) or not len(b_rows):
        return out
    am, bm = frame.int_matrix(a_rows), frame.int_matrix(b_rows)
    if am.shape[1] != bm.shape[1]:
        return out
    if am.shape[1] == 0:
        out[:] = b_rows[0]
        return out
    ak = np.ascontiguousarray(am).view(np.dtype((np.void, 8 * am.shape[1]))).ravel()
    bk = np.ascontiguousarray(bm).view(np.dtype((np.void, 8 * bm.shape[1]))).ravel()
    order = np.argsort(bk, kind="stable")
    sorted_b = bk[order]
    pos = np.clip(np.searchsorted(sorted_b, ak), 0, len(bk) - 1)
    hit = sorted_b[pos] == ak
    out[hit] = b_rows[order[pos[hit]]]
    return out


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
