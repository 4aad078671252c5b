"""`ckptscan verify` against a torch (CPU) script doing the same dequantize-and-
compare, on a generated FP8 export of a BF16 checkpoint.

    python bench/bench_verify.py                  # 1 GiB of FP8 (2 GiB BF16 source)
    python bench/bench_verify.py --gib 4 --only ckptscan   # peak RSS on a bigger pair

The pair is written to --dir once: BF16 weights [4096, 8192] (Gaussian, each
128 x 128 tile with its own magnitude) and their FP8 export (E4M3, one F32
scale per 128 x 128 tile, absmax / 448; HF fine-grained FP8 layout). Each
measurement runs in a fresh child process (its own peak RSS) after an untimed
pass that warms the page cache; its peak RSS is its VmHWM. Throughput is GB/s of
FP8 weights verified.

The torch script (when torch is installed) reads both files with
safetensors' torch loader (memory-mapped) and computes, per tensor, what verify
does, written for speed (broadcast scales, in-place operations, float32 dot
products and per-tile sums: a float64 accumulation is 20x slower in torch): the
dequantized float32 values (codes times the tile's scale), the error against
the BF16 source, per-tile sums of squares (relative error per block), the
tensor's relative error, cosine, max abs error and the values beyond 464 x scale
(clipped). Both must report the same relative error,
max abs error and clipped count (checked). Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchlib import describe

ROWS, COLS, TILE = 4096, 8192, 128
PER_SHARD = 4


def build(root: Path, gib: float) -> tuple[Path, Path]:
    import ml_dtypes
    import numpy as np
    from safetensors.numpy import save_file

    src, cand = root / f"src-{gib:g}", root / f"fp8-{gib:g}"
    if (src / "done").exists() and (cand / "done").exists():
        return src, cand
    n = max(4, round(gib * 2**30 / (ROWS * COLS)))
    names = [f"model.layers.{i // 4}.mlp.{('gate', 'up', 'down', 'extra')[i % 4]}_proj.weight"
             for i in range(n)]
    for d in (src, cand):
        d.mkdir(parents=True, exist_ok=True)
    maps: tuple[dict[str, str], dict[str, str]] = ({}, {})
    rng = np.random.default_rng(0)
    for k in range(0, n, PER_SHARD):
        part_s, part_c = {}, {}
        for name in names[k:k + PER_SHARD]:
            mag = np.exp(rng.normal(0, 0.7, (ROWS // TILE, COLS // TILE))).astype(np.float32)
            w = rng.standard_normal((ROWS, COLS), dtype=np.float32) * np.float32(0.02)
            w = (w.reshape(ROWS // TILE, TILE, COLS // TILE, TILE) * mag[:, None, :, None]
                 ).reshape(ROWS, COLS).astype(ml_dtypes.bfloat16)
            wf = w.astype(np.float32).reshape(ROWS // TILE, TILE, COLS // TILE, TILE)
            scale = (np.abs(wf).max(axis=(1, 3)) / np.float32(448)).astype(np.float32)
            q = (wf / scale[:, None, :, None]).reshape(ROWS, COLS).astype(
                ml_dtypes.float8_e4m3fn)
            part_s[name], part_c[name], part_c[name + "_scale_inv"] = w, q, scale
        file = f"model-{k // PER_SHARD:05d}.safetensors"
        save_file(part_s, str(src / file))
        save_file(part_c, str(cand / file))
        maps[0].update(dict.fromkeys(part_s, file))
        maps[1].update(dict.fromkeys(part_c, file))
    cfg = {"model_type": "llama", "hidden_size": COLS, "num_hidden_layers": (n + 3) // 4}
    for d, m, q in ((src, maps[0], None), (cand, maps[1], {
            "quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [TILE, TILE]})):
        (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {},
                                                                    "weight_map": m}))
        (d / "config.json").write_text(json.dumps({**cfg, **({"quantization_config": q}
                                                             if q else {})}))
        (d / "done").write_text("")
    return src, cand


def torch_verify(src: str, cand: str, threads: int) -> dict[str, float]:
    """The same dequantize-and-compare in torch (CPU)."""
    import torch
    from safetensors import safe_open

    torch.set_num_threads(threads)
    where = {}
    for root in (src, cand):
        idx = json.loads((Path(root) / "model.safetensors.index.json").read_text())
        where[root] = idx["weight_map"]
    err = ref = dot = deq = 0.0
    max_err = 0.0
    clipped = 0
    worst_block = 0.0
    fp8_bytes = 0
    handles: dict[str, object] = {}

    def tensor(root: str, name: str) -> torch.Tensor:
        path = str(Path(root) / where[root][name])
        if path not in handles:
            handles[path] = safe_open(path, framework="pt")
        return handles[path].get_tensor(name)  # type: ignore[attr-defined, no-any-return]

    for name in where[cand]:
        if not name.endswith(".weight"):
            continue
        q = tensor(cand, name)
        s = tensor(cand, name + "_scale_inv")
        r = tensor(src, name).float()
        rows, cols = q.shape
        nbr, nbc = s.shape
        s4 = s.view(nbr, 1, nbc, 1)
        # in place where possible: the dequantized values, then the error over them
        d = q.float().view(nbr, TILE, nbc, TILE).mul_(s4).view(rows, cols)
        dot += float(torch.dot(d.view(-1), r.view(-1)))
        deq += float(torch.dot(d.view(-1), d.view(-1)))
        e = d.sub_(r).abs_()
        max_err = max(max_err, float(e.max()))
        e_blk = e.square_().view(nbr, TILE, nbc, TILE).sum(dim=3).sum(dim=1).double()
        a = r.abs_()
        clipped += int((a.view(nbr, TILE, nbc, TILE) > 464 * s4).sum())
        r_blk = a.square_().view(nbr, TILE, nbc, TILE).sum(dim=3).sum(dim=1).double()
        worst_block = max(worst_block, float(torch.sqrt(e_blk / r_blk).max()))
        err += float(e_blk.sum())
        ref += float(r_blk.sum())
        fp8_bytes += q.numel()
    return {"rel_error": (err / ref) ** 0.5, "cosine": dot / (deq * ref) ** 0.5,
            "max_err": max_err, "clipped": clipped, "worst_block": worst_block,
            "fp8_bytes": fp8_bytes}


def ckptscan_verify(src: str, cand: str, threads: int) -> dict[str, float]:
    from ckptscan.verify import verify

    v = verify(cand, against=src, jobs=threads)
    if v.findings:
        raise SystemExit(f"unexpected findings: {[f.message for f in v.findings]}")
    worst = max((t.worst[0].rel_error for t in v.tensors if t.worst), default=0.0)
    return {"rel_error": v.total.rel_error, "cosine": v.total.cosine, "max_err": v.total.max_err,
            "clipped": v.total.clipped, "worst_block": worst,
            "fp8_bytes": sum(t.metrics.elements for t in v.tensors)}


def child(method: str, src: str, cand: str, threads: int) -> None:
    fn = ckptscan_verify if method == "ckptscan" else torch_verify
    fn(src, cand, threads)  # warm the page cache (and the imports)
    t0 = time.perf_counter()
    got = fn(src, cand, threads)
    seconds = time.perf_counter() - t0
    got["seconds"] = seconds
    # VmHWM: this process's peak (ru_maxrss would also count the parent's
    # resident memory at fork, which exec does not reset)
    hwm = next(line for line in Path("/proc/self/status").read_text().splitlines()
               if line.startswith("VmHWM"))
    got["rss_mb"] = int(hwm.split()[1]) / 1024
    print(json.dumps(got))


def run(method: str, src: Path, cand: Path, threads: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--child", method, str(src), str(cand),
                          str(threads)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gib", type=float, default=1.0, help="GiB of FP8 weights (default 1)")
    ap.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckptscan-bench-verify"))
    ap.add_argument("--threads", default="1,2", help="thread counts (default 1,2)")
    ap.add_argument("--only", choices=("ckptscan", "torch"), default=None)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        method, src, cand, threads = args.child
        child(method, src, cand, int(threads))
        return
    from ckptscan.kernels import simd_info

    src, cand = build(Path(args.dir), args.gib)
    size = sum(f.stat().st_size for d in (src, cand) for f in d.glob("*.safetensors"))
    print(describe())
    print(f"ckptscan kernels: {simd_info()['active']}; pair: {size / 2**30:.2f} GiB of files "
          f"({args.gib:g} GiB FP8 + scales, {2 * args.gib:g} GiB BF16) in {cand}")
    methods = [args.only] if args.only else ["ckptscan", "torch"]
    if "torch" in methods:
        try:
            import torch

            print(f"torch {torch.__version__}")
        except ImportError:
            print("torch is not installed: ckptscan alone")
            methods.remove("torch")
    print(f"{'method':<10} {'threads':>7} {'seconds':>8} {'GB/s FP8':>9} {'per thread':>10} "
          f"{'peak RSS':>9}  rel error   max abs err  clipped")
    rates: dict[tuple[str, int], float] = {}
    seen: dict[str, dict[str, float]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        for method in methods:
            r = run(method, src, cand, threads)
            rate = r["fp8_bytes"] / r["seconds"] / 1e9
            rates[(method, threads)] = rate
            seen[method] = r
            print(f"{method:<10} {threads:>7} {r['seconds']:>8.2f} {rate:>9.2f} "
                  f"{rate / threads:>10.2f} {r['rss_mb']:>7.0f} MB  {r['rel_error']:.6f}  "
                  f"{r['max_err']:.3e}  {int(r['clipped'])}")
    if "torch" in seen and "ckptscan" in seen:
        a, b = seen["ckptscan"], seen["torch"]
        assert abs(a["rel_error"] - b["rel_error"]) < 1e-5 * b["rel_error"], (a, b)
        assert abs(a["max_err"] - b["max_err"]) <= 1e-6 * b["max_err"], (a, b)
        assert a["clipped"] == b["clipped"]
        for threads in sorted({t for _, t in rates}):
            print(f"{threads} thread{'s' * (threads != 1)}: ckptscan / torch = "
                  f"{rates[('ckptscan', threads)] / rates[('torch', threads)]:.1f}x")


if __name__ == "__main__":
    main()
