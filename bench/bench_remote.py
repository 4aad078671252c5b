#!/usr/bin/env python3
"""Remote report: the full-size MiniMax-M2 replica (125 shards, 96,103
tensors, 12.6 MB of headers, a 9.8 MB index.json) served by ckptscan's loopback
server (ckptscan.testing.hub_server) with LATENCY (default 50 ms) added to every
request, read by:

  ckptscan report http  `ckptscan report http://.../m2/ --format json`: the real
                        command, whole process: index.json and config.json (one
                        round trip, together), then each shard's header in one
                        request sized from the names index.json gives it, then
                        every check and the report
  ckptscan report hf    the same through hf://org/m2 on the emulated Hub: the
                        revision and listing in one API call, then per file the
                        resolve/ redirect and one read at the signed CDN location
  hub client            huggingface_hub's HfApi.get_safetensors_metadata("org/m2")
                        against the same emulated Hub (its own threads, 100 KB
                        first reads; headers only, no checks, no report)

and, for scale, in the same run: `python -c pass` (the interpreter's start) and
`ckptscan report DIR` on the same files read locally (memory-mapped).

Each run is a whole fresh process (interpreter start and imports included).
Requests are counted by the server (every request, redirects included), bytes
are the bodies it sent. Each peer runs --repeat times; medians are shown.
Targets (issue 12): ckptscan report over HTTP <= 1.0 s and <= 135 requests,
>= 3x faster than the Hub client.

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

from benchlib import SRC, ensure_importable

DEFAULT_ROOT = Path("/tmp/ckptscan-bench/remote")


# ---------------------------------------------------------------- children


def ckptscan_cmd() -> list[str]:
    """The `ckptscan` console script beside this interpreter, else `python -m ckptscan`."""
    exe = Path(sys.executable).with_name("ckptscan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ckptscan"]


def run_report(url: str, max_requests: str, env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """`ckptscan report URL --format json`, whole process: (seconds, what it reported)."""
    cmd = [*ckptscan_cmd(), "report", url, "--format", "json", "--fail-on", "never"]
    if max_requests != "-":
        cmd += ["--max-requests", max_requests]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    took = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{cmd} failed:\n{out.stderr[-3000:]}")
    report = json.loads(out.stdout)
    remote = [f["code"] for f in report["findings"] if f["code"].startswith("remote-")]
    return took, {"tensors": report["tensors"], "errors": remote,
                  "client_requests": report["source"]["requests"]}


def child_hub_client(repo: str, endpoint: str) -> dict[str, Any]:
    from huggingface_hub import HfApi

    meta = HfApi(endpoint=endpoint, token=False).get_safetensors_metadata(repo)
    return {"shards": len(meta.files_metadata), "errors": [],
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
    ensure_importable()
    if a.child:
        print(json.dumps(child_hub_client(a.child[1], a.child[2])))
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
            ("ckptscan report http", ["report", hub.http_url("org/m2/"), mr]),
            ("ckptscan report hf", ["report", "hf://org/m2", mr]),
        ]
        if not a.skip_hub_client:
            peers.append(("hub client", ["hub", "org/m2", hub.url]))
        hub.sha256("org/m2/model.safetensors.index.json")  # warm the server's listing cache
        for p in sorted(d.iterdir()):
            hub.sha256(f"org/m2/{p.name}")
        rows: dict[str, dict[str, float]] = {}
        for label, cmd in (("python -c pass", [sys.executable, "-c", "pass"]),
                           ("ckptscan report local", [*ckptscan_cmd(), "report", str(d),
                                                      "--format", "json", "--fail-on",
                                                      "never"])):
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, check=True, timeout=600)
                times.append(time.perf_counter() - t0)
            rows[label] = {"process": statistics.median(times), "requests": 0, "bytes": 0}
        for label, args in peers:
            runs = []
            for k in range(a.repeat):
                hub.clear()
                run_env = dict(env, HF_HUB_CACHE=f"{tmp}/cache-{label.replace(' ', '_')}-{k}")
                if args[0] == "report":
                    took, res = run_report(args[1], args[2], run_env)
                else:
                    took, res = run_child(args, run_env)
                if res["errors"] or res["tensors"] != 96_103:
                    raise SystemExit(f"{label}: {res['tensors']} tensors, errors {res['errors']}")
                if "client_requests" in res and res["client_requests"] != hub.count():
                    raise SystemExit(f"{label}: the report says {res['client_requests']} "
                                     f"requests, the server counted {hub.count()}")
                runs.append({"process": took, "requests": hub.count(),
                             "bytes": hub.sent_bytes})
            rows[label] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"\n{'reader':<22}{'process s':>10}{'requests':>10}{'MB sent':>9}")
        for label, r in rows.items():
            print(f"{label:<22}{r['process']:>10.3f}{r['requests']:>10.0f}"
                  f"{r['bytes'] / 1e6:>9.1f}")
        base = rows["ckptscan report http"]
        print(f"\nckptscan report http: {base['process']:.3f} s (target <= 1.0 s), "
              f"{base['requests']:.0f} requests (target <= 135)")
        if "hub client" in rows:
            hc = rows["hub client"]
            for label in ("ckptscan report http", "ckptscan report hf"):
                r = rows[label]
                print(f"hub client / {label}: {hc['process'] / r['process']:.1f}x the time "
                      f"(target >= 3x), {hc['requests']:.0f} vs {r['requests']:.0f} requests")


if __name__ == "__main__":
    main()
