#!/usr/bin/env python3
"""Whole-process time of `ckptscan report DIR --deep --format json` on an FP8
MoE checkpoint with real data (MiniMax-M2's expert shapes: hidden 3072, expert
width 1536, 128x128 block scales; written once by `ckptscan.synth`), for this
ckptscan and, with --peer, for another build of it in the same run (e.g. the
commit before a change: `pip install --no-deps --target /tmp/peer <tree>`).
Each row is the median of --repeat fresh processes after one warm-up run (page
cache warm); GB/s counts the checkpoint's tensor bytes. The limit beside it: the
memory-read probe (`kernels.read_probe`, a sum of 64-bit words) over the same
mapped tensors on the same number of threads, in this process (median of
--repeat), over pages already mapped: the probe pays no page faults, while the
deep phase of a fresh process maps every page of the checkpoint as it reads.
A second row runs the same probe in fresh processes over a fresh mapping (its
page faults included): what a process that only reads the bytes gets.
Target (#11): the deep phase at >= 50% of the probe with 2 jobs.

Usage: python bench/bench_deep.py [--dir DIR] [--layers 4] [--experts 16] [--repeat 5]
                                  [--jobs N] [--peer SITE_DIR] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("/tmp/ckptscan-bench/deep_moe")
CMD = "import sys; from ckptscan.cli import main; sys.exit(main())"


def run(sites: list[str | None], args: list[str],
        repeat: int) -> list[tuple[float, float, str]]:
    """Median wall time, median time of the deep phase (the report's
    deep.seconds) and first output of each build; runs alternate between the
    builds so that drift on a shared machine hits them alike."""
    cmds = []
    for site in sites:
        env = dict(os.environ)
        if site:
            env["PYTHONPATH"] = site
        cmds.append(([sys.executable, "-c", CMD, *args], env))
    outs = []
    for cmd, env in cmds:  # warm-up
        first = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if first.returncode not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed: {first.stderr[-400:]}")
        outs.append(first.stdout)
    times: list[list[float]] = [[] for _ in cmds]
    deep: list[list[float]] = [[] for _ in cmds]
    for _ in range(repeat):
        for k, (cmd, env) in enumerate(cmds):
            t = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            times[k].append(time.perf_counter() - t)
            deep[k].append(json.loads(r.stdout)["deep"]["seconds"])
    return [(statistics.median(t), statistics.median(d), o)
            for t, d, o in zip(times, deep, outs, strict=True)]


def probe(directory: Path, jobs: int, repeat: int) -> float:
    """GB/s of the memory-read probe over every tensor of the checkpoint, mapped
    (pages populated once before the timed passes: memory reads only), on `jobs`
    threads."""
    from concurrent.futures import ThreadPoolExecutor

    import ckptscan
    from ckptscan import kernels

    views = []
    with ckptscan.open_checkpoint(directory) as ckpt:
        for shard in ckpt.shards:
            views += [shard.raw(t.name, populate=True) for t in shard.tensors if t.nbytes]
        total = sum(v.nbytes for v in views)
        rates = []
        with ThreadPoolExecutor(jobs) as pool:
            for _ in range(repeat + 1):
                t = time.perf_counter()
                list(pool.map(kernels.read_probe, views))
                rates.append(total / (time.perf_counter() - t) / 1e9)
        return statistics.median(rates[1:])


FRESH_PROBE = """
import sys, time
from concurrent.futures import ThreadPoolExecutor
import ckptscan
from ckptscan import kernels
with ckptscan.open_checkpoint(sys.argv[1]) as ckpt:
    views = [s.raw(t.name) for s in ckpt.shards for t in s.tensors if t.nbytes]
    with ThreadPoolExecutor(int(sys.argv[2])) as pool:
        t = time.perf_counter()
        list(pool.map(kernels.read_probe, views))
        print(sum(v.nbytes for v in views) / (time.perf_counter() - t) / 1e9)
"""


def probe_fresh(directory: Path, jobs: int, repeat: int, site: str | None) -> float:
    """GB/s of the same probe in a fresh process, over a fresh mapping: every page
    faulted in once, as a deep scan's process has to (median of `repeat`)."""
    env = dict(os.environ)
    if site:
        env["PYTHONPATH"] = site
    cmd = [sys.executable, "-c", FRESH_PROBE, str(directory), str(jobs)]
    rates = [float(subprocess.run(cmd, capture_output=True, text=True, env=env,
                                  check=True).stdout) for _ in range(repeat)]
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--experts", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=None, help="--jobs of the deep scan")
    ap.add_argument("--peer", help="site directory of another ckptscan build")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the checkpoint")
    a = ap.parse_args(argv)

    from ckptscan.synth import write_small_minimax

    marker = a.dir / f".{a.layers}x{a.experts}"
    if not marker.exists():
        shutil.rmtree(a.dir, ignore_errors=True)
        a.dir.mkdir(parents=True)
        t = time.perf_counter()
        write_small_minimax(a.dir, layers=a.layers, experts=a.experts, hidden=3072, inter=1536,
                            shards=4)
        marker.touch()
        print(f"wrote {a.dir} in {time.perf_counter() - t:.0f} s")
    size = sum(p.stat().st_size for p in a.dir.glob("*.safetensors"))
    args = ["report", str(a.dir), "--deep", "--format", "json", "--fail-on", "never"]
    if a.jobs:
        args += ["--jobs", str(a.jobs)]
    names = ["ckptscan (this tree)"] + ([f"peer ({a.peer})"] if a.peer else [])
    sites = [None] + ([a.peer] if a.peer else [])
    rows = [(n, *r) for n, r in zip(names, run(sites, args, a.repeat), strict=True)]
    print(f"{a.dir}: {size / 1e9:.2f} GB of safetensors, {a.layers} layers x {a.experts} "
          f"experts; median of {a.repeat} runs, page cache warm\n")
    print(f"{'command':<34} {'wall s':>7} {'deep s':>7} {'deep GB/s':>9} {'JSON KB':>8}")
    for name, t, d, out in rows:
        print(f"{name:<34} {t:7.3f} {d:7.3f} {size / d / 1e9:9.2f} {len(out) / 1024:8.0f}")
    jobs = a.jobs or os.cpu_count() or 1
    limit = probe(a.dir, jobs, a.repeat)
    print(f"{'memory-read probe (the limit)':<34} {'':>7} {'':>7} {limit:9.2f}   "
          f"({jobs} thread{'s' if jobs > 1 else ''})")
    fresh = probe_fresh(a.dir, jobs, a.repeat, None)
    print(f"{'the probe in a fresh process':<34} {'':>7} {'':>7} {fresh:9.2f}   "
          f"(its page faults included: {fresh / limit:.0%} of the limit)")
    for name, _t, d, _out in rows:
        print(f"{name}: deep phase at {size / d / 1e9 / limit:.0%} of the probe, "
              f"{size / d / 1e9 / fresh:.0%} of the fresh-process probe")
    if len(rows) == 2:
        print(f"\nthis tree / peer: wall time {rows[0][1] / rows[1][1]:.3f}, deep phase "
              f"{rows[0][2] / rows[1][2]:.3f}")
    if not a.keep:
        shutil.rmtree(a.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
