"""Farm benchmark: full-size sparse MiniMax-M2 and DeepSeek-V3 replicas, scanned
into a fresh store (first scan) and again (rescan of the unchanged farm).

    python bench/bench_farm.py                      # 10/20/40/80 checkpoints, threads
    python bench/bench_farm.py --mode processes     # worker processes instead
    python bench/bench_farm.py --sizes 80 --profile # where the time goes (cProfile)

The farm (40 + 40 replicas, 11,520 shards, 7.5 M tensors, ~1.7 GB of disk for
~37 TB of sparse holes) is written once to --dir and reused. Every measurement
runs in a fresh child process (its own peak RSS, no warm imports), after one
untimed pass so that the page cache is warm. Results are checked: every row,
tensor count and shard count against the replica layouts, no error, and a
rescan that opens nothing. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchlib import describe

LAYOUT_NAMES = ("minimax_m2", "deepseek_v3")
SHORT = {"minimax_m2": "m2", "deepseek_v3": "ds"}


def build_farm(root: Path, per_layout: int) -> None:
    from ckptscan.replica import copy_replica, write_replica

    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for name in LAYOUT_NAMES:
        first = root / f"{SHORT[name]}-00"
        if not (first / "config.json").exists():
            write_replica(name, first)
        for i in range(1, per_layout):
            d = root / f"{SHORT[name]}-{i:02d}"
            if not (d / "config.json").exists():
                copy_replica(first, d)
    print(f"farm ready in {root} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)


def subset(root: Path, n: int, tmp: Path) -> Path:
    """A directory of symlinks to n checkpoints (half of each layout); scanned
    with follow_symlinks, since a farm does not follow directory links that
    leave its root by default."""
    d = tmp / f"farm-{n}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir()
    for name in LAYOUT_NAMES:
        for i in range(n // 2):
            os.symlink(root / f"{SHORT[name]}-{i:02d}", d / f"{SHORT[name]}-{i:02d}")
    return d


class PeakRSS:
    """Peak resident memory of this process and its children, sampled."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        try:
            import psutil
        except ImportError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        me = psutil.Process()
        total = me.memory_info().rss
        for c in me.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += c.memory_info().rss
        return int(total)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, self._sample(),
                        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def child(args: argparse.Namespace) -> None:
    """One measurement, in this (fresh) process; prints one JSON line."""
    from ckptscan.farm import scan_farm

    with PeakRSS() as rss:
        c0 = time.process_time()
        t0 = time.perf_counter()
        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            result = prof.runcall(scan_farm, [args.farm], db=args.db, jobs=args.jobs,
                                  processes=args.mode == "processes", io_jobs=args.io_jobs,
                                  follow_symlinks=True)
            pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(25)
        else:
            result = scan_farm([args.farm], db=args.db, jobs=args.jobs,
                               processes=args.mode == "processes", io_jobs=args.io_jobs,
                               follow_symlinks=True)
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    rows = result.rows
    print(json.dumps({
        "wall": wall, "cpu": cpu + ch.ru_utime + ch.ru_stime, "rss": rss.peak,
        "scanned": len(result.scanned), "unchanged": len(result.unchanged),
        "opened": result.shards_opened, "rows": len(rows),
        "tensors": sum(r["tensors"] for r in rows), "shards": sum(r["shards"] for r in rows),
        "errors": sum(r["errors"] for r in rows), "failed": len(result.failed),
    }))


def run_child(farm: Path, db: Path, args: argparse.Namespace, profile: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", "--farm", str(farm), "--db", str(db),
           "--mode", args.mode, "--io-jobs", str(args.io_jobs)]
    if args.jobs:
        cmd += ["--jobs", str(args.jobs)]
    if profile:
        cmd.append("--profile")
    out = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE,
                         stderr=None if profile else subprocess.PIPE)
    return json.loads(out.stdout.strip().splitlines()[-1])


def cli_seconds(farm: Path, db: Path) -> float:
    """End to end: `ckptscan farm FARM --db DB` (interpreter start, imports, output)."""
    code = "import sys; from ckptscan.cli import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, "farm", str(farm), "--db", str(db),
                    "--follow-symlinks", "--format", "csv", "-o", os.devnull], check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "ckptscan-bench-farm"))
    p.add_argument("--sizes", default="10,20,40,80", help="checkpoints per run (even numbers)")
    p.add_argument("--mode", choices=("threads", "processes"), default="threads")
    p.add_argument("--jobs", type=int, default=None)
    p.add_argument("--io-jobs", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3, help="first scans per size (best kept)")
    p.add_argument("--profile", action="store_true", help="cProfile the largest first scan")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--farm", help=argparse.SUPPRESS)
    p.add_argument("--db", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return

    from ckptscan.replica import LAYOUTS

    sizes = [int(s) for s in args.sizes.split(",")]
    per_layout = max(sizes) // 2
    root = Path(args.dir)
    build_farm(root, per_layout)
    lays = {n: LAYOUTS[n]() for n in LAYOUT_NAMES}
    print(f"# {describe()}")
    print(f"# mode={args.mode} jobs={args.jobs or 'default'} io_jobs={args.io_jobs}; "
          f"best of {args.repeat} first scans, page cache warm")
    print(f"{'ckpts':>5} {'shards':>7} {'tensors':>10} {'first s':>8} {'main cpu':>8} "
          f"{'us/shard':>8} {'rescan s':>8} {'CLI rescan s':>12} {'peak RSS MB':>11}")
    with tempfile.TemporaryDirectory(prefix="ckptscan-bench-") as t:
        tmp = Path(t)
        for n in sizes:
            farm = subset(root, n, tmp)
            want_tensors = n // 2 * sum(lay.num_tensors for lay in lays.values())
            want_shards = n // 2 * sum(len(lay.shard_names) for lay in lays.values())
            run_child(farm, tmp / "warm.db", args)  # warm the page cache (untimed)
            firsts = []
            for k in range(args.repeat):
                db = tmp / f"first-{n}-{k}.db"
                r = run_child(farm, db, args)
                assert (r["rows"], r["scanned"], r["tensors"], r["shards"], r["errors"],
                        r["failed"]) == (n, n, want_tensors, want_shards, 0, 0), r
                firsts.append((r, db))
            best, db = min(firsts, key=lambda x: x[0]["wall"])
            again = run_child(farm, db, args)
            assert (again["scanned"], again["unchanged"], again["opened"], again["rows"]) == (
                0, n, 0, n), again
            cli = min(cli_seconds(farm, db) for _ in range(3))
            print(f"{n:5d} {want_shards:7,d} {want_tensors:10,d} {best['wall']:8.2f} "
                  f"{best['cpu']:8.2f} {1e6 * best['wall'] / want_shards:8.0f} "
                  f"{again['wall']:8.3f} {cli:12.3f} "
                  f"{max(best['rss'], again['rss']) / 2**20:11.0f}",
                  flush=True)
        if args.profile:
            farm = subset(root, max(sizes), tmp)
            print(f"\n# cProfile of a first scan of {max(sizes)} checkpoints (stderr)")
            run_child(farm, tmp / "profile.db", args, profile=True)


if __name__ == "__main__":
    main()
