"""The corpus of real checkpoint layouts in tests/data/layouts/, rebuilt as replicas.

Each JSON file describes one public checkpoint in this project's own compact
form (not the fetched files): where its index.json and config.json came from
(``source``: repository, commit, paths), the config.json fields the taxonomy
and the checks read (``config``), the index's tensor count, shard count and
``total_size`` (``index``), and its tensors as templates (``tensors``: rows of
``[template, ranges, shape]`` with an optional dtype; ``ranges`` gives each
``{}`` slot's integers as ``"0-27,30"``, slots separated by ``|``; a template
whose shape depends on its integer has one row per group). The tensor names
are the index's; the index lists no shapes, so shapes are derived from the
config (``shapes`` says how). ``packing`` records how a quantized layout packs
its weights; ``total_size_checked: false`` marks layouts whose byte count is
not expected to match (packed, approximated or no total in the index);
``index_bool_bits: 1`` says the index counted BOOL tensors at 1/8 byte.

``load_layout(path) -> CorpusLayout`` and ``write_corpus_replica(layout, dest)``
(full-size sparse shards through ``ckptscan.replica``'s writer).
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ckptscan.replica import DTYPE_BITS, Layout, build_layout, write_replica

LAYOUT_DIR = Path(__file__).resolve().parent / "data" / "layouts"


def parse_ranges(spec: str) -> list[int]:
    """``"0-2,4,6-7"`` -> [0, 1, 2, 4, 6, 7]."""
    out: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def expand(template: str, ranges: str) -> list[str]:
    """Every name of a template row, slots filled left to right."""
    slots = template.count("{}")
    groups = [parse_ranges(r) for r in ranges.split("|")] if slots else []
    if len(groups) != slots:
        raise ValueError(f"{template}: {slots} slots, ranges {ranges!r}")
    return [template.format(*combo) for combo in itertools.product(*groups)]


@dataclass(frozen=True)
class CorpusLayout:
    name: str  # the file's stem
    data: dict[str, Any]
    tensors: list[tuple[str, str, tuple[int, ...]]]

    @property
    def config(self) -> dict[str, Any]:
        return self.data["config"]  # type: ignore[no-any-return]

    @property
    def total_size(self) -> int | None:
        index = self.data.get("index")
        return None if index is None else index.get("total_size")

    @property
    def total_size_checked(self) -> bool:
        return bool(self.data.get("total_size_checked", True)) and self.total_size is not None

    def index_bytes(self, dtype_params: dict[str, int]) -> int:
        """Bytes as the index counts them, from parameters per dtype."""
        bool_bits = self.data.get("index_bool_bits", DTYPE_BITS["BOOL"])
        bits = sum(p * (bool_bits if d == "BOOL" else DTYPE_BITS[d])
                   for d, p in dtype_params.items())
        return bits // 8

    def layout(self) -> Layout:
        """The replica's layout: as many shards as the index had, or the most that
        Hugging Face's greedy sharding reaches below that (Bloom's index puts each
        layer in a shard of its own)."""
        index = self.data.get("index") or {}
        for n_shards in range(min(int(index.get("shards", 1)), len(self.tensors)), 0, -1):
            try:
                return build_layout(
                    self.name, list(self.tensors), self.config, n_shards=n_shards,
                    shard_name=lambda k, n: f"model-{k + 1:05d}-of-{n:05d}.safetensors")
            except ValueError as e:
                if "cannot split" not in str(e):
                    raise
        raise AssertionError("unreachable: one shard always works")


def load_layout(path: Path) -> CorpusLayout:
    data = json.loads(path.read_text())
    default = data["dtype"]
    tensors: list[tuple[str, str, tuple[int, ...]]] = []
    for row in data["tensors"]:
        template, ranges, shape = row[:3]
        dtype = row[3] if len(row) > 3 else default
        tensors.extend((name, dtype, tuple(shape)) for name in expand(template, ranges))
    index = data.get("index")
    if index is not None and index["tensors"] != len(tensors):
        raise ValueError(f"{path.name}: {len(tensors)} tensors, the index has {index['tensors']}")
    return CorpusLayout(path.stem, data, tensors)


def corpus_paths() -> list[Path]:
    return sorted(LAYOUT_DIR.glob("*.json"))


def write_corpus_replica(layout: CorpusLayout, dest: Path) -> Path:
    return write_replica(layout.layout(), dest)


def parameters(layout: CorpusLayout) -> int:
    return sum(math.prod(s) for _, _, s in layout.tensors)
