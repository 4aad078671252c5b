#!/usr/bin/env python3
"""Remote header fetch: the full-size MiniMax-M2 replica (125 shards, 96,103
tensors, 12.6 MB of headers, a 9.8 MB index.json) served by ckptscan's loopback
server (ckptscan.testing.hub_server) with LATENCY (default 50 ms) added to every
request, read by:

  ckptscan http   open_source("http://.../m2/") -> discover -> fetch_headers: index.json
                  and config.json, then each header in one request sized from the
                  names index.json gives the shard
  ckptscan hf     the same through hf://org/m2 on the emulated Hub: the revision and
                  listing in one API call, then per shard the resolve/ redirect and
                  one read at the signed CDN location
  hub client      huggingface_hub's HfApi.get_safetensors_metadata("org/m2") against
                  the same emulated Hub (its own threads, 100 KB first reads)

Each run is a whole fresh process (interpreter start and imports included:
the "process" column); the child also times its fetch alone ("fetch").
Requests are counted by the server (every request, redirects included), bytes
are the bodies it sent. Each peer runs --repeat times; medians are shown.
Targets (issue 12): ckptscan <= 1.0 s and <= 135 requests, >= 3x faster than
the Hub client.

Usage: python bench/bench_remote.py [--dir DIR] [--latency S] [--repeat N]
       [--max-requests N] [--skip-hub-client]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "python"
DEFAULT_ROOT = Path("/tmp/ckptscan-bench/remote")


def _ensure_importable() -> None:
    import importlib.util

    if importlib.util.find_spec("ckptscan") is None:
        sys.path.insert(0, str(SRC))


# ---------------------------------------------------------------- children


def child_ckptscan(url: str, max_requests: int | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    from ckptscan.sources import discover, fetch_headers, open_source

    with open_source(url, max_requests=max_requests) as src:
        found = discover(src)
        heads = fetch_headers(src, found.shards, index=found.index())
        stats = src.stats.as_dict()
    errors = [str(h.error) for h in heads if h.error is not None]
    return {"fetch": time.perf_counter() - t0, "shards": len(heads), "errors": errors,
            "tensors": sum(len(h.core) for h in heads if h.core is not None),
            "client_requests": stats["requests"], "revision": src.revision}


def child_hub_client(repo: str, endpoint: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    from huggingface_hub import HfApi

    meta = HfApi(endpoint=endpoint, token=False).get_safetensors_metadata(repo)
    return {"fetch": time.perf_counter() - t0, "shards": len(meta.files_metadata), "errors": [],
            "tensors": sum(len(f.tensors) for f in meta.files_metadata.values())}


# ---------------------------------------------------------------- parent


def prepare(root: Path) -> Path:
    from ckptscan.replica import write_replica

    d = root / "org" / "m2"
    if not (d / "model.safetensors.index.json").exists():
        print(f"writing the MiniMax-M2 replica to {d} ...", flush=True)
        write_replica("minimax_m2", d)
    return d


def run_child(args: list[str], env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, __file__, "--child", *args], env=env,
                         capture_output=True, text=True, check=False, timeout=600)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{out.stderr[-3000:]}")
    return took, json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", type=Path, default=DEFAULT_ROOT,
                    help="served root; the replica goes to DIR/org/m2 (kept)")
    ap.add_argument("--latency", type=float, default=0.05)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--max-requests", type=int, default=None)
    ap.add_argument("--skip-hub-client", action="store_true")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    _ensure_importable()
    if a.child:
        kind, *rest = a.child
        mr = int(rest[1]) if kind == "ckptscan" and len(rest) > 1 and rest[1] != "-" else None
        res = (child_ckptscan(rest[0], mr) if kind == "ckptscan"
               else child_hub_client(rest[0], rest[1]))
        print(json.dumps(res))
        return

    from ckptscan.testing.hub_server import HubServer

    d = prepare(a.dir)
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cpus; "
          f"{len(list(d.glob('*.safetensors')))} shards; latency {a.latency * 1000:.0f} ms "
          "per request; whole process per run, median of "
          f"{a.repeat}")
    with HubServer(a.dir, latency=a.latency) as hub, tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, HF_ENDPOINT=hub.url, HF_HOME=f"{tmp}/home",
                   HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_DISABLE_TELEMETRY="1")
        env.pop("HF_TOKEN", None)
        if str(SRC) in sys.path:  # running from a source tree: the children too
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
        mr = str(a.max_requests) if a.max_requests else "-"
        peers: list[tuple[str, list[str]]] = [
            ("ckptscan http", ["ckptscan", hub.http_url("org/m2/"), mr]),
            ("ckptscan hf", ["ckptscan", "hf://org/m2", mr]),
        ]
        if not a.skip_hub_client:
            peers.append(("hub client", ["hub", "org/m2", hub.url]))
        hub.sha256("org/m2/model.safetensors.index.json")  # warm the server's listing cache
        for p in sorted(d.iterdir()):
            hub.sha256(f"org/m2/{p.name}")
        rows: dict[str, dict[str, float]] = {}
        for label, args in peers:
            runs = []
            for k in range(a.repeat):
                hub.clear()
                run_env = dict(env, HF_HUB_CACHE=f"{tmp}/cache-{label.replace(' ', '_')}-{k}")
                took, res = run_child(args, run_env)
                if res["errors"] or res["tensors"] != 96_103:
                    raise SystemExit(f"{label}: {res['tensors']} tensors, errors {res['errors']}")
                runs.append({"process": took, "fetch": res["fetch"], "requests": hub.count(),
                             "bytes": hub.sent_bytes})
            rows[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"\n{'reader':<15}{'process s':>10}{'fetch s':>9}{'requests':>10}{'MB sent':>9}")
        for label, r in rows.items():
            print(f"{label:<15}{r['process']:>10.3f}{r['fetch']:>9.3f}{r['requests']:>10.0f}"
                  f"{r['bytes'] / 1e6:>9.1f}")
        base = rows["ckptscan http"]
        print(f"\nckptscan http: {base['process']:.3f} s (target <= 1.0 s), "
              f"{base['requests']:.0f} requests (target <= 135)")
        if "hub client" in rows:
            hc = rows["hub client"]
            for label in ("ckptscan http", "ckptscan hf"):
                r = rows[label]
                print(f"hub client / {label}: {hc['process'] / r['process']:.1f}x the time "
                      f"(whole process; fetch alone {hc['fetch'] / r['fetch']:.1f}x), "
                      f"{hc['requests']:.0f} vs {r['requests']:.0f} requests")


if __name__ == "__main__":
    main()
