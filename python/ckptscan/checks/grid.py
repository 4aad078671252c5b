"""The layer x expert grid: a template with layer and expert slots should hold
every (layer, expert) pair of the values it has; one missing is a dropped tensor."""

from __future__ import annotations

import numpy as np

from ..context import ScanContext, fill

# A grid is checked only when its holes can be listed: a template whose
# layers x experts product is beyond this (a hostile header) is skipped.
MAX_GRID = 1 << 22


def check(ctx: ScanContext) -> None:
    if ctx.partial:  # one shard holds a slice of the grid
        return
    frame, fs = ctx.frame, ctx.findings
    layer, expert = frame.layer, frame.expert
    both = np.flatnonzero((layer >= 0) & (expert >= 0))
    if not len(both):
        return
    # A companion's absence is the quantization checks' (it may belong to a weight
    # left in high precision on purpose): only the scheme's own tensors here.
    companions = list(ctx.quant_map.companion_kinds())
    both = both[~np.isin(frame.template[both], companions)]
    if not len(both):
        return
    tmpl = frame.template[both]
    order = np.argsort(tmpl, kind="stable")
    bounds = np.flatnonzero(np.diff(tmpl[order])) + 1
    for group in np.split(both[order], bounds):
        layers, experts = np.unique(layer[group]), np.unique(expert[group])
        if len(group) == len(layers) * len(experts) or len(layers) * len(experts) > MAX_GRID:
            continue
        t = int(frame.template[group[0]])
        template = frame.templates[t]
        cls = frame.table.classes[t]
        have = np.zeros((len(layers), len(experts)), dtype=bool)
        have[np.searchsorted(layers, layer[group]), np.searchsorted(experts, expert[group])] = True
        what = template.rsplit("{}", 1)[-1].lstrip(".")  # e.g. w1.weight_scale_inv
        ints = frame.ints[frame.int_starts[group[0]]:frame.int_starts[group[0] + 1]].tolist()
        for li, ei in np.argwhere(~have).tolist():
            lay, ex = int(layers[li]), int(experts[ei])
            if cls.layer_slot is not None:
                ints[cls.layer_slot] = lay
            if cls.expert_slot is not None:
                ints[cls.expert_slot] = ex
            fs.missing("tensor-missing-in-grid", fill(template, ints), template,
                       f"layer {lay} expert {ex} has no {what} while the other experts do",
                       None, layer=lay, expert=ex)
