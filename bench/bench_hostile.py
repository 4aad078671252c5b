#!/usr/bin/env python3
"""Work done on hostile headers and indexes: time and peak memory, each case in
a fresh process.

Cases (written once to --dir):
  metadata-dups   one shard whose __metadata__ holds 10^6 copies of one key (14 MB header)
  overlap         100,000 tensors that all claim the same 160,000 data bytes
  long-name       one tensor whose name is 90 MB: 45 M numeric dotted components
  index-1m        a 10^6-entry model.safetensors.index.json (valid)
  index-1m-bad    the same with every value a number (10^6 problems before the cap)

Stages, each in its own process (peak RSS, VmHWM, minus the RSS after the
imports):
  core    _core.open_shard / read_index, the problems list, and for a shard the
          name templates (template_ids, ints)
  scan    ckptscan.scan(dir) and its JSON report (orjson), with the report's size

Usage: python bench/bench_hostile.py [--dir DIR] [--cases a,b] [--stages core,scan]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_DIR = Path("/tmp/ckptscan-bench/hostile")


def _file(header: bytes, data: bytes) -> bytes:
    header += b" " * (-(8 + len(header)) % 8)
    return struct.pack("<Q", len(header)) + header + data


def write_metadata_dups(d: Path) -> Path:
    body = b'"key":"value",' * 1_000_000
    header = (b'{"__metadata__":{' + body[:-1]
              + b'},"t":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}')
    (d / "model.safetensors").write_bytes(_file(header, b"\0" * 4))
    return d / "model.safetensors"


def write_overlap(d: Path) -> Path:
    n = 200 * 200 * 4
    entry = f'{{"dtype":"F32","shape":[200,200],"data_offsets":[0,{n}]}}'
    header = "{" + ",".join(f'"weight_{i}":{entry}' for i in range(100_000)) + "}"
    (d / "model.safetensors").write_bytes(_file(header.encode(), b"\0" * n))
    return d / "model.safetensors"


def write_long_name(d: Path) -> Path:
    name = b"1." * 45_000_000 + b"w"
    header = b'{"' + name + b'":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'
    (d / "model.safetensors").write_bytes(_file(header, b"\0" * 4))
    return d / "model.safetensors"


def _index(d: Path, value: object) -> Path:
    wm = {f"model.layers.{i // 1000}.mlp.experts.{i % 1000}.w1.weight":
          value if value is not None else f"model-{i % 100 + 1:05d}-of-00100.safetensors"
          for i in range(1_000_000)}
    p = d / "model.safetensors.index.json"
    p.write_text(json.dumps({"metadata": {"total_size": 1}, "weight_map": wm}, indent=2))
    return p


CASES = {
    "metadata-dups": write_metadata_dups,
    "overlap": write_overlap,
    "long-name": write_long_name,
    "index-1m": lambda d: _index(d, None),
    "index-1m-bad": lambda d: _index(d, 7),
}

_CHILD = r"""
import sys, time
sys.path[:0] = [p for p in sys.argv[4:] if p]
stage, kind, path = sys.argv[1:4]
import orjson, numpy, ckptscan
from ckptscan import _core
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
base = status('VmRSS:')
t = time.perf_counter()
extra = ''
if stage == 'core' and kind == 'index':
    x = _core.read_index(path)
    probs = x.problems
    extra = f'{len(x)} entries'
elif stage == 'core':
    s = _core.open_shard(path)
    probs = s.problems
    tids, ints = s.template_ids, s.ints
    extra = f'{len(s)} rows, {len(s.templates)} templates, {len(ints)} ints'
else:
    import os
    report = ckptscan.scan(os.path.dirname(path))
    size = len(orjson.dumps(report.to_dict()))
    probs = report.findings
    extra = f'report {size / 1e6:.1f} MB'
took = time.perf_counter() - t
core = (x if kind == 'index' else s) if stage == 'core' else None
sup = getattr(core, 'suppressed', None)  # absent before the problem cap
peak = status('VmHWM:')  # (getrusage's maxrss would count the parent's: kept across exec)
extra += f', suppressed {dict(sup)}' if sup else ''
print(f'{took:.3f} {peak - base} {len(probs)} {extra}')
"""


def run(stage: str, case: str, path: Path, src: str) -> str:
    kind = "index" if case.startswith("index") else "shard"
    r = subprocess.run([sys.executable, "-c", _CHILD, stage, kind, str(path), src],
                       capture_output=True, text=True)
    if r.returncode:
        return "failed: " + (r.stderr.strip().splitlines() or ["?"])[-1]
    took, peak, n, *rest = r.stdout.split(" ", 3)
    return (f"{float(took):8.2f} s {int(peak) / 2**20:9.0f} MiB  {int(n):>8} problems/findings"
            f"  {' '.join(rest).strip()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--stages", default="core,scan")
    ap.add_argument("--src", action="store_true", help="import ckptscan from the source tree")
    args = ap.parse_args()
    src = str(Path(__file__).resolve().parents[1] / "python") if args.src else ""
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; time, peak RSS above imports")
    for case in args.cases.split(","):
        d = args.dir / case
        d.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        path = CASES[case](d)
        took = time.perf_counter() - t
        print(f"{case}: {path.stat().st_size / 1e6:.1f} MB written in {took:.1f} s")
        for stage in args.stages.split(","):
            if stage == "scan" and case.startswith("index"):
                continue  # an index without its shards: the core stage is the parse
            print(f"  {stage:<5} {run(stage, case, path, src)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
