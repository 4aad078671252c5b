#!/usr/bin/env python3
"""The scheme declarations (ckptscan.schemes) used the way a checks layer
should: per name template and distinct shape, over a full-size sparse
MiniMax-M2 replica's frame (96k tensors). Measures detection, pairing of every
weight template with its companions, companion shape/dtype checks, the logical
parameter count and targeting, against the same count done per tensor (the
peer, in the same run). Prints the times and their ratio, and checks that both
counts agree.

Usage: python bench/bench_schemes.py [--dir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if importlib.util.find_spec("ckptscan") is None:
    sys.path.insert(0, str(HERE.parent / "python"))


def shapes_of(frame: object, rows: np.ndarray) -> list[tuple[tuple[int, ...], int, int]]:
    """(shape, dtype code, count) of a template's rows, without a loop over rows."""
    f = frame
    nd = f.ndim[rows]  # type: ignore[attr-defined]
    out = []
    for k in np.unique(nd).tolist():
        sub = rows[nd == k]
        starts = f.shape_starts[sub]  # type: ignore[attr-defined]
        dims = f.dims[starts[:, None] + np.arange(k)] if k else np.zeros((len(sub), 0), np.int64)  # type: ignore[attr-defined]
        key = np.concatenate([dims, f.dtype[sub][:, None].astype(np.int64)], axis=1)  # type: ignore[attr-defined]
        if (key == key[0]).all():  # the usual case: one shape per template
            uniq, counts = key[:1], np.array([len(key)])
        else:
            void = np.ascontiguousarray(key).view(np.dtype((np.void, 8 * key.shape[1]))).ravel()
            _, first, counts = np.unique(void, return_index=True, return_counts=True)
            uniq = key[first]
        out += [(tuple(int(x) for x in u[:-1]), int(u[-1]), int(c))
                for u, c in zip(uniq, counts, strict=True)]
    return out


def by_template(frame: object, det: object) -> tuple[int, int, int]:
    """(parameters, companion pairs checked, module templates targeted)."""
    from ckptscan.shard import DTYPE_NAMES

    f, d = frame, det
    templates: list[str] = f.templates  # type: ignore[attr-defined]
    index = {t: i for i, t in enumerate(templates)}
    params = pairs = targeted = 0
    for t, template in enumerate(templates):
        rows = f.rows_by_template[t]  # type: ignore[attr-defined]
        for shape, code, count in shapes_of(f, rows):
            params += d.parameters(template, DTYPE_NAMES[code], shape) * count  # type: ignore[attr-defined]
        for role in d.weight_roles(template):  # type: ignore[attr-defined]
            lay = role.layout
            module = lay.module_of(role.stem)
            kind = "linear" if f.table.linear[t] else "other"  # type: ignore[attr-defined]
            tgt = d.target_template(module, kind)  # type: ignore[attr-defined]
            targeted += tgt is not None and tgt.quantized
            for c in lay.companions:
                ct = index.get(lay.companion_name(role.stem, c))
                if ct is None:
                    continue
                for (wshape, _, _), (cshape, ccode, _) in zip(
                        shapes_of(f, rows), shapes_of(f, f.rows_by_template[ct]), strict=False):  # type: ignore[attr-defined]
                    logical = lay.logical_shape(wshape)
                    if logical is not None:
                        pairs += c.shape_ok(cshape, logical) and c.dtype_ok(DTYPE_NAMES[ccode])
    return params, pairs, targeted


def per_tensor(frame: object, det: object) -> int:
    from ckptscan.shard import DTYPE_NAMES

    f, d = frame, det
    total = 0
    for i in range(len(f)):  # type: ignore[arg-type]
        total += d.parameters(f.name(i), DTYPE_NAMES[int(f.dtype[i])], f.shape(i))  # type: ignore[attr-defined]
    return total


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/ckptscan-bench/schemes-minimax_m2"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from ckptscan import schemes
    from ckptscan.checkpoint import open_checkpoint
    from ckptscan.frame import build_frame
    from ckptscan.replica import write_replica

    if not (args.dir / "config.json").exists():
        write_replica("minimax_m2", args.dir)
    ckpt = open_checkpoint(args.dir)
    frame = build_frame(ckpt)
    t_detect, det = timed(lambda: schemes.detect(ckpt.config), args.repeat)
    assert det is not None

    def fresh() -> tuple[int, int, int]:  # no memo carried over between repeats
        return by_template(frame, schemes.detect(ckpt.config))

    t_tmpl, (params, pairs, targeted) = timed(fresh, args.repeat)  # type: ignore[misc]
    t_peer, peer = timed(lambda: per_tensor(frame, schemes.detect(ckpt.config)), 1)
    assert params == peer, (params, peer)
    print(f"MiniMax-M2 replica: {len(frame):,} tensors, {len(frame.templates)} templates")
    print(f"  detect                               {t_detect * 1e3:8.2f} ms")
    print(f"  per template (count, pair, target)   {t_tmpl * 1e3:8.2f} ms   "
          f"{params / 1e9:.1f} B parameters, {pairs} companion templates ok, "
          f"{targeted} module templates quantized")
    print(f"  per tensor (count only, the peer)    {t_peer * 1e3:8.2f} ms   "
          f"ratio {t_peer / t_tmpl:.0f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
