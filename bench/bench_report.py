#!/usr/bin/env python3
"""Whole-process time of `ckptscan report <replica>` against the seed report's
pure-Python peer (`python bench/seed_report.py <replica>`), on a full-size
MiniMax-M2 replica. Each row is the median wall time of --repeat fresh
processes (after one warm-up run each; page cache warm). Target: ckptscan
report <= 0.3 s.

The ckptscan command is the `ckptscan` console script beside this interpreter, else
`python -c "from ckptscan.cli import main; ..."`; --cmd overrides it. If there is
no CLI or no `report` subcommand yet, the row is skipped with the reason.

Usage: python bench/bench_report.py [--dir DIR] [--keep] [--repeat N] [--cmd "ckptscan"]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "python"
DEFAULT_DIR = Path("/tmp/ckptscan-bench/minimax_m2")
TARGET_S = 0.3


def env() -> dict[str, str]:
    e = dict(os.environ)
    if importlib.util.find_spec("ckptscan") is None:
        e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), e.get("PYTHONPATH")]))
    return e


def ckptscan_cmd(override: str | None) -> list[str] | None:
    if override:
        return shlex.split(override)
    # the console script of this interpreter's environment, not whatever
    # `ckptscan` PATH finds first (a pyenv shim is a shell script, and may run
    # another install)
    exe = Path(sys.executable).parent / "ckptscan"
    if exe.is_file():
        return [str(exe)]
    if importlib.util.find_spec("ckptscan") is None:
        sys.path.insert(0, str(SRC))
    try:
        if importlib.util.find_spec("ckptscan.cli") is None:
            return None
    except ImportError:
        return None
    return [sys.executable, "-c", "import sys; from ckptscan.cli import main; sys.exit(main())"]


def run_times(cmd: list[str], repeat: int) -> tuple[float, subprocess.CompletedProcess[str]]:
    first = subprocess.run(cmd, capture_output=True, text=True, env=env())  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env())
        times.append(time.perf_counter() - t)
    return statistics.median(times), first


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="time `ckptscan report` vs the seed report")
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"replica dir ({DEFAULT_DIR})")
    ap.add_argument("--keep", action="store_true",
                    help="reuse the replica if present, and leave it in place afterwards")
    ap.add_argument("--repeat", type=int, default=7, help="timed runs per row (median)")
    ap.add_argument("--cmd", help="ckptscan command line to run (default: autodetect)")
    args = ap.parse_args(argv)

    if importlib.util.find_spec("ckptscan") is None:
        sys.path.insert(0, str(SRC))
    from ckptscan.replica import write_replica

    written = False
    if not (args.keep and len(list(args.dir.glob("*.safetensors"))) == 125):
        if args.dir.exists():
            shutil.rmtree(args.dir)
        write_replica("minimax_m2", args.dir)
        written = True

    rows: list[tuple[str, float | None, str]] = []
    py = [sys.executable, "-c", "pass"]
    t_py, _ = run_times(py, args.repeat)
    rows.append(("python -c pass (startup)", t_py, ""))
    seed = [sys.executable, str(HERE / "seed_report.py"), str(args.dir)]
    t_seed, r = run_times(seed, args.repeat)
    rows.append(("seed_report.py", t_seed, f"exit {r.returncode}"))

    base = ckptscan_cmd(args.cmd)
    t_ck: float | None = None
    note = ""
    if base is None:
        note = "skipped: no ckptscan CLI yet (no console script, no ckptscan.cli)"
    else:
        cmd = [*base, "report", str(args.dir)]
        t, r = run_times(cmd, args.repeat)
        err = (r.stderr or "").strip()
        if r.returncode == 2 and ("invalid choice" in err or "usage:" in err):
            note = "skipped: `report` subcommand not available: " + err.splitlines()[-1][:120]
        elif r.returncode not in (0, 1) or ("Traceback" in err):
            note = f"skipped: failed (exit {r.returncode}): " + (err.splitlines() or [""])[-1][:160]
        else:
            t_ck = t
            note = f"exit {r.returncode}, {len(r.stdout.splitlines())} lines"
    rows.append(("ckptscan report", t_ck, note))

    print(f"replica: {args.dir} (MiniMax-M2, 125 shards, 96,103 tensors)")
    print(f"median wall time of {args.repeat} runs, one process each, page cache warm\n")
    print(f"{'command':<26} {'median s':>9}  notes")
    print("-" * 70)
    for name, t, n in rows:
        ts = f"{t:9.3f}" if t is not None else f"{'-':>9}"
        print(f"{name:<26} {ts}  {n}")
    if t_ck is not None:
        ok = "meets" if t_ck <= TARGET_S else "MISSES"
        print(f"\nseed_report / ckptscan report = {t_seed / t_ck:.1f}x; "
              f"ckptscan report {t_ck:.3f} s {ok} the {TARGET_S} s target")

    if written and not args.keep:
        shutil.rmtree(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
