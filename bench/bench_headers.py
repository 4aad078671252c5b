#!/usr/bin/env python3
"""Header-reading speed on a full-size MiniMax-M2 replica (96,103 tensors, 125 shards).

Each reader runs in its own fresh process (so that no reader inherits another's
heap): one first call (the "cold" column: a command-line run pays this), then
--repeat timed calls whose median is the main figure. Page cache warm.

  json        open, read 8 bytes + N, json.loads, visit every entry's dtype/shape/offsets
  orjson      the same with orjson.loads
  safetensors safe_open + get_slice per tensor, reading get_shape() / get_dtype()
  open_checkpoint  ckptscan.open_checkpoint(dir, jobs=1): every shard parsed by the
                   C++ core on this thread, every tensor's fields reachable from Python
                   (numpy columns; names and index.json read on first use)
  jobs=N           the same on N threads, one per core (not a target: the scaling)
  + names, index   the same, then every name as a Python str and index.json parsed
  TensorInfo       open_checkpoint, then a TensorInfo object per tensor (for scale)
  read only        open + read the header bytes, no parsing: the floor

Ratios use the open_checkpoint row. Targets: orjson/ckptscan >= 8x,
safetensors/ckptscan >= 15x. Resident memory is measured in fresh subprocesses
(VmRSS before/after, modules imported before the "before" reading).

Usage: python bench/bench_headers.py [--dir DIR] [--keep] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchlib import SRC, ensure_importable

DEFAULT_DIR = Path("/tmp/ckptscan-bench/minimax_m2")


def shard_paths(d: Path) -> list[str]:
    return [str(p) for p in sorted(d.glob("*.safetensors"))]


def prepare(d: Path, keep: bool) -> bool:
    """Make sure a MiniMax-M2 replica is in d. Returns True if it was written now."""
    from ckptscan.replica import write_replica

    if keep and len(shard_paths(d)) == 125:
        return False
    if d.exists():
        shutil.rmtree(d)
    t = time.perf_counter()
    write_replica("minimax_m2", d)
    print(f"wrote MiniMax-M2 replica to {d} in {time.perf_counter() - t:.2f} s")
    return True


# ---------------------------------------------------------------- readers


def read_json(paths: list[str], loads: Callable[[bytes], object]) -> int:
    n_t = 0
    for p in paths:
        with open(p, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            h = loads(f.read(n))
        for k, e in h.items():  # type: ignore[attr-defined]
            if k == "__metadata__":
                continue
            _ = e["dtype"], e["shape"], e["data_offsets"]
            n_t += 1
    return n_t


def read_safetensors(paths: list[str]) -> int:
    from safetensors import safe_open

    n_t = 0
    for p in paths:
        with safe_open(p, "numpy") as f:
            for k in f.keys():  # noqa: SIM118  (a safe_open handle, not a dict)
                s = f.get_slice(k)
                _ = s.get_shape(), s.get_dtype()
                n_t += 1
    return n_t


def read_checkpoint(d: str, jobs: int = 1) -> int:
    """open_checkpoint on one thread (the issue's row), or on `jobs`."""
    import ckptscan

    with ckptscan.open_checkpoint(d, jobs=jobs) as ckpt:
        for s in ckpt.shards:
            c = s.core
            _ = c.dtype_codes, c.dims, c.shape_starts, c.begins, c.ends, c.numels
        return sum(len(s) for s in ckpt.shards)


def read_everything(d: str) -> int:
    """open_checkpoint, then what it leaves for first use: every name as a
    Python str, and index.json."""
    import ckptscan

    with ckptscan.open_checkpoint(d, jobs=1) as ckpt:
        n = sum(len(s.names) for s in ckpt.shards)
        assert ckpt.index is not None
        return n


def read_objects(d: str) -> int:
    """Per-tensor TensorInfo objects for all 96k tensors (what not to do in bulk)."""
    import ckptscan

    n_t = 0
    with ckptscan.open_checkpoint(d, jobs=1) as ckpt:
        for s in ckpt.shards:
            for t in s.tensors:
                _ = t.name, t.dtype, t.shape, t.offsets, t.nbytes, t.numel
                n_t += 1
    return n_t


def read_only(paths: list[str]) -> int:
    """The floor: open, read the length and the header bytes, no parsing."""
    n = 0
    for p in paths:
        with open(p, "rb") as f:
            (k,) = struct.unpack("<Q", f.read(8))
            n += len(f.read(k))
    return n


def timeit(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    """(first call, median of `repeat` later calls, tensors) in seconds."""
    t = time.perf_counter()
    n = fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times), n


def reader(mode: str, d: Path) -> Callable[[], int]:
    paths = shard_paths(d)
    if mode == "json":
        return lambda: read_json(paths, json.loads)
    if mode == "orjson":
        import orjson

        return lambda: read_json(paths, orjson.loads)
    if mode == "safetensors":
        import safetensors  # noqa: F401  (ImportError: the row is skipped)

        return lambda: read_safetensors(paths)
    # ckptscan's modules load lazily: import them here, as the peers' are,
    # so that the first call times reading, not importing.
    if mode in ("open_checkpoint", "+ names, index", "TensorInfo") or mode.startswith("jobs="):
        import ckptscan.checkpoint
        import ckptscan.shard  # noqa: F401
    if mode == "open_checkpoint":
        return lambda: read_checkpoint(str(d))
    if mode.startswith("jobs="):
        return lambda: read_checkpoint(str(d), int(mode[5:]))
    if mode == "+ names, index":
        return lambda: read_everything(str(d))
    if mode == "TensorInfo":
        return lambda: read_objects(str(d))
    if mode == "read only":
        return lambda: read_only(paths)
    raise ValueError(mode)


def run_in_child(mode: str, d: Path, repeat: int) -> tuple[float, float, int] | str:
    """Times one reader in a fresh process; the reason when it cannot run."""
    extra = [] if _core_on_path_already() else ["--src"]
    r = subprocess.run([sys.executable, __file__, "--child", mode, "--dir", str(d),
                        "--repeat", str(repeat), *extra], capture_output=True, text=True)
    if r.returncode:
        return (r.stderr.strip().splitlines() or ["failed"])[-1]
    first, median, n = r.stdout.split()
    return float(first), float(median), int(n)


# ---------------------------------------------------------------- memory (subprocess)

_RSS_CHILD = r"""
import sys, struct, json
sys.path[:0] = [p for p in sys.argv[3:] if p]
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
mode, d = sys.argv[1], sys.argv[2]
import glob, orjson, numpy
paths = sorted(glob.glob(d + '/*.safetensors'))
if mode.startswith('ckptscan'):
    import ckptscan, ckptscan.checkpoint, ckptscan.shard
before = rss()
if mode == 'ckptscan':
    keep = ckptscan.open_checkpoint(d, jobs=1)
    n = sum(len(s) for s in keep.shards)
else:
    loads = orjson.loads if mode == 'orjson' else json.loads
    keep = []
    for p in paths:
        with open(p, 'rb') as f:
            (k,) = struct.unpack('<Q', f.read(8)); keep.append(loads(f.read(k)))
    n = sum(len(h) - 1 for h in keep)
print(rss() - before, n)
"""


def rss_added(mode: str, d: Path) -> tuple[int, int] | None:
    extra = [] if _core_on_path_already() else [str(SRC)]
    r = subprocess.run([sys.executable, "-c", _RSS_CHILD, mode, str(d), *extra],
                       capture_output=True, text=True)
    if r.returncode:
        print(f"  (rss {mode}: failed: {r.stderr.strip().splitlines()[-1:]})")
        return None
    a, b = r.stdout.split()
    return int(a), int(b)


def _core_on_path_already() -> bool:
    import importlib.util

    spec = importlib.util.find_spec("ckptscan")
    return spec is not None and not str(spec.origin or "").startswith(str(SRC))


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ROWS = ("json", "orjson", "safetensors", "open_checkpoint", f"jobs={os.cpu_count() or 1}",
        "+ names, index", "TensorInfo", "read only")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="header-reading speed on a MiniMax-M2 replica")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"replica dir ({DEFAULT_DIR})")
    ap.add_argument("--keep", action="store_true",
                    help="reuse the replica if present, and leave it in place afterwards")
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per row (median)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--src", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:  # one reader, in this fresh process
        if args.src:
            sys.path.insert(0, str(SRC))
        first, median, n = timeit(reader(args.child, args.dir), args.repeat)
        print(first, median, n)
        return 0
    ensure_importable()

    written = prepare(args.dir, args.keep)
    paths = shard_paths(args.dir)
    header_bytes = 0
    for p in paths:
        with open(p, "rb") as f:
            header_bytes += struct.unpack("<Q", f.read(8))[0]

    print(f"machine : {cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"replica : {args.dir}: {len(paths)} shards, {header_bytes / 1e6:.1f} MB of headers, "
          f"{sum(os.path.getsize(p) for p in paths) / 2**30:.1f} GiB apparent")
    print(f"runs    : each reader in its own process: first call, then the median of "
          f"{args.repeat}; page cache warm")
    print()

    rows = {mode: run_in_child(mode, args.dir, args.repeat) for mode in ROWS}
    print(f"{'reader':<16} {'median ms':>10} {'first ms':>9} {'tensors':>8} {'us/tensor':>10} "
          f"{'MB/s':>8}")
    print("-" * 66)
    for k, v in rows.items():
        if isinstance(v, str):
            print(f"{k:<16} skipped: {v}")
            continue
        first, t, n = v
        floor = k == "read only"
        per = f"{'':>10}" if floor else f"{t / n * 1e6:10.2f}"
        print(f"{k:<16} {t * 1e3:10.1f} {first * 1e3:9.1f} {'' if floor else n:>8} {per} "
              f"{header_bytes / t / 1e6:8.0f}")
    ck = rows["open_checkpoint"]
    if not isinstance(ck, str):
        print()
        print(f"{'ratio (open_checkpoint)':<24} {'median':>8} {'first':>7} {'target':>7}")
        for peer, target in (("orjson", 8), ("safetensors", 15), ("json", None)):
            v = rows.get(peer)
            if v is None or isinstance(v, str):
                continue
            tgt = f"{target}x" if target else ""
            print(f"{peer + ' / ckptscan':<24} {v[1] / ck[1]:7.1f}x {v[0] / ck[0]:6.1f}x {tgt:>7}")
    print()
    print("resident memory added (fresh subprocess, after imports):")
    for mode in ("ckptscan", "orjson", "json"):
        if mode == "ckptscan" and isinstance(ck, str):
            continue
        r = rss_added(mode, args.dir)
        if r:
            print(f"  {mode:<10} {r[0] / 2**20:8.1f} MiB for {r[1]} tensors "
                  f"({r[0] / max(r[1], 1):.0f} B/tensor)")

    if written and not args.keep:
        shutil.rmtree(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
