"""The Report's overview of a model from its header frame: what config.json
says of it (`config_summary`) and the precision map (`precision_grids`),
layers down and roles across, per component. A handful of numpy passes over
the frame's columns: a 96k-tensor checkpoint costs milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .frame import Frame
from .result import ConfigSummary, PrecisionCell, PrecisionGrid, PrecisionRow
from .shard import DTYPE_NAMES
from .taxonomy import COMPONENTS, DECODER, KIND_CODE, ROLES

#: Rows of one component's precision map (real models have < 200 layers; rows
#: of equal consecutive layers are merged first).
MAX_PRECISION_ROWS = 512
#: config.json strings kept in the Report (architectures, torch_dtype).
MAX_ARCHITECTURES = 8
MAX_CONFIG_TEXT = 200
_DENSE_KEYS = 1 << 22


def config_summary(frame: Frame, config: Mapping[str, Any] | None) -> ConfigSummary:
    """The decoder's settings as the checks read them (`Taxonomy.component_spec`)."""
    if not isinstance(config, Mapping):
        return ConfigSummary()
    spec = frame.taxonomy.component_spec(DECODER)
    archs = config.get("architectures")
    names = [a[:MAX_CONFIG_TEXT] for a in archs if isinstance(a, str)] \
        if isinstance(archs, list) else []
    dtype = next((v for k in ("torch_dtype", "dtype")
                  if isinstance(v := config.get(k), str)), None)
    return ConfigSummary(names[:MAX_ARCHITECTURES], spec.layers, spec.hidden, spec.vocab,
                         spec.experts, dtype[:MAX_CONFIG_TEXT] if dtype else None)


def column_name(component: str, part: str) -> str:
    """A precision-map / heat-map column: the role for the decoder, else
    "component role" (``vision attention``)."""
    return part if component == DECODER else f"{component} {part}"


def precision_grids(frame: Frame, parameters: np.ndarray | None = None
                    ) -> list[PrecisionGrid]:
    """One grid per component, in `COMPONENTS` order. ``parameters``: each row's
    logical parameters (`QuantMap.params`: packed values counted, scales not);
    default its element count."""
    if not len(frame):
        return []
    layers, layer_of = _factorize(frame.layer - frame.layer.min())
    layers = layers + frame.layer.min()
    comp = frame.component.astype(np.int64)
    part = frame.part.astype(np.int64)
    n_parts = len(ROLES)
    # One key per (layer, component, part): the cells.
    key = (layer_of.astype(np.int64) * len(COMPONENTS) + comp) * n_parts + part
    cells, cell_of = _factorize(key)
    numel = (frame.numel if parameters is None else parameters).astype(np.float64)
    count = np.bincount(cell_of, minlength=len(cells))
    params = np.bincount(cell_of, numel, minlength=len(cells))
    nbytes = np.bincount(cell_of, frame.nbytes.astype(np.float64), minlength=len(cells))
    weight = frame.kind == KIND_CODE["weight"]
    has_weight = np.bincount(cell_of, weight, minlength=len(cells)) > 0
    wparams = np.bincount(cell_of, np.where(weight, numel, 0), minlength=len(cells))
    # dtype -> parameters per cell: of its weights, or of every tensor when it has none.
    counted = weight | ~has_weight[cell_of]
    nd = len(DTYPE_NAMES)
    dkey = cell_of[counted].astype(np.int64) * nd + frame.dtype[counted]
    dkeys, dinv = _factorize(dkey)
    dparams = np.bincount(dinv, numel[counted], minlength=len(dkeys))
    mixes: list[dict[str, int]] = [{} for _ in range(len(cells))]
    for k, p in zip(dkeys.tolist(), dparams.tolist(), strict=True):
        mixes[k // nd][DTYPE_NAMES[k % nd]] = int(p)

    by_comp: dict[int, dict[int, dict[str, PrecisionCell]]] = {}
    for i, k in enumerate(cells.tolist()):
        rest, p = divmod(k, n_parts)
        li, c = divmod(rest, len(COMPONENTS))
        mix = dict(sorted(mixes[i].items(), key=lambda kv: (-kv[1], kv[0])))
        cell = PrecisionCell(mix, int(count[i]), int(params[i]), int(nbytes[i]),
                             int(wparams[i]))
        by_comp.setdefault(c, {}).setdefault(int(layers[li]), {})[ROLES[p]] = cell
    return [_grid(COMPONENTS[c], by_comp[c]) for c in sorted(by_comp)]


def _factorize(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct values, index of each value among them) of non-negative
    int64 keys: `np.unique(key, return_inverse=True)` without its sort when the
    keys are small (the common case: a few dozen layers and roles)."""
    if not len(key) or int(key.max()) >= _DENSE_KEYS:
        return np.unique(key, return_inverse=True)
    present = np.bincount(key) > 0
    values = np.flatnonzero(present)
    lut = np.cumsum(present) - 1
    return values, lut[key]


def _grid(component: str, by_layer: dict[int, dict[str, PrecisionCell]]) -> PrecisionGrid:
    parts = {p for cells in by_layer.values() for p in cells}
    columns = [r for r in ROLES if r in parts]
    rows: list[PrecisionRow] = []
    more = 0
    for layer in sorted(by_layer):
        cells = by_layer[layer]
        last = rows[-1] if rows else None
        if last is not None and layer >= 0 and last.first >= 0 and last.last + 1 == layer \
                and last.cells == cells:
            last.last = layer
        elif len(rows) < MAX_PRECISION_ROWS:
            rows.append(PrecisionRow(layer, layer, cells))
        else:
            more += 1
    return PrecisionGrid(component, [column_name(component, c) for c in columns],
                         [PrecisionRow(r.first, r.last,
                                       {column_name(component, p): c for p, c in r.cells.items()})
                          for r in rows], more)


__all__ = ["MAX_PRECISION_ROWS", "column_name", "config_summary", "precision_grids"]
