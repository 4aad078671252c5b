"""`ckptscan diff --deep` against the way people compare two checkpoints by hand:
load each tensor with the safetensors library on both sides and compare with
numpy.

    python bench/bench_diff.py                   # 1 GiB per side, jobs 1 and all cores
    python bench/bench_diff.py --gib 4 --jobs 2

Two checkpoints of random BF16 tensors (B: the same tensors in other shards, one
of them changed) are written to --dir once. Each measurement runs in a fresh
child process (its own peak RSS) after one untimed pass (warm page cache).
Results are checked: both methods must name exactly the changed tensor. Not a
test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

TENSOR_MIB = 16
CHANGED = "model.layers.3.mlp.down_proj.weight"


def build(root: Path, gib: float) -> tuple[Path, Path]:
    import numpy as np
    from safetensors.numpy import save_file

    a, b = root / f"a-{gib:g}", root / f"b-{gib:g}"
    if (a / "done").exists() and (b / "done").exists():
        return a, b
    for d in (a, b):
        d.mkdir(parents=True, exist_ok=True)
    n = max(8, int(gib * 1024 / TENSOR_MIB))
    rows = TENSOR_MIB * 1024 * 1024 // 2 // 4096
    names = [f"model.layers.{i // 4}.mlp.{('gate', 'up', 'down', 'extra')[i % 4]}_proj.weight"
             for i in range(n)]
    per_a, per_b = 8, 5  # tensors per shard: B is sharded differently
    for side, per in ((a, per_a), (b, per_b)):
        weight_map = {}
        for k in range(0, n, per):
            part = {}
            for name in names[k:k + per]:
                arr = np.random.default_rng(zlib.crc32(name.encode())).integers(
                    0, 2**16, (rows, 4096), dtype=np.uint16)
                if side is b and name == CHANGED:
                    arr = arr.copy()
                    arr[rows // 2, 7] ^= 1
                part[name] = arr
            fname = f"model-{k // per:05d}.safetensors"
            save_file(part, str(side / fname))
            weight_map |= dict.fromkeys(part, fname)
        (side / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": weight_map}))
        (side / "done").write_text("")
    return a, b


def child(method: str, a: str, b: str, jobs: int) -> None:
    import resource

    t0 = time.perf_counter()
    if method == "ckptscan":
        from ckptscan import compare

        d = compare(a, b, deep=True, jobs=jobs)
        differ = [c.b for c in d.of("bytes")]
        nbytes = 2 * (d.deep.bytes if d.deep else 0)
    else:
        import numpy as np
        from safetensors import safe_open

        def where(root: str) -> dict[str, str]:
            wm = json.loads(Path(root, "model.safetensors.index.json").read_text())
            return {k: str(Path(root, v)) for k, v in wm["weight_map"].items()}

        wa, wb = where(a), where(b)
        differ, nbytes = [], 0
        for name in sorted(wa):
            with safe_open(wa[name], "numpy") as fa, safe_open(wb[name], "numpy") as fb:
                x, y = fa.get_tensor(name), fb.get_tensor(name)
            nbytes += x.nbytes + y.nbytes
            if not np.array_equal(x, y):
                differ.append(name)
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "bytes": nbytes, "differ": differ, "rss": rss}))


def measure(method: str, a: Path, b: Path, jobs: int) -> dict[str, object]:
    cmd = [sys.executable, __file__, "--child", method, str(a), str(b), "--jobs", str(jobs)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    res: dict[str, object] = json.loads(out)
    if res["differ"] != [CHANGED]:
        raise SystemExit(f"{method}: named {res['differ']}, expected [{CHANGED!r}]")
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--gib", type=float, default=1.0, help="size of each side")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckptscan-bench-diff"))
    p.add_argument("--child", nargs=3, metavar=("METHOD", "A", "B"))
    args = p.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.child[2], args.jobs or 1)
        return
    a, b = build(Path(args.dir), args.gib)
    cores = os.cpu_count() or 1
    print(f"{platform.processor() or platform.machine()}, {cores} cores, python "
          f"{platform.python_version()}; {args.gib:g} GiB per side in {TENSOR_MIB} MiB tensors")
    peer = measure("safetensors+numpy", a, b, 1)
    rate = peer["bytes"] / peer["seconds"] / 1e9  # type: ignore[operator]
    print(f"  safetensors load + np.array_equal: {peer['seconds']:.2f} s, {rate:.2f} GB/s, "
          f"peak RSS {peer['rss'] / 2**20:.0f} MiB")  # type: ignore[operator]
    for jobs in sorted({1, args.jobs or cores}):
        r = measure("ckptscan", a, b, jobs)
        rate = r["bytes"] / r["seconds"] / 1e9  # type: ignore[operator]
        print(f"  ckptscan diff --deep --jobs {jobs}: {r['seconds']:.2f} s, {rate:.2f} GB/s, "
              f"peak RSS {r['rss'] / 2**20:.0f} MiB, "  # type: ignore[operator]
              f"{peer['seconds'] / r['seconds']:.2f}x the peer")  # type: ignore[operator]


if __name__ == "__main__":
    main()
