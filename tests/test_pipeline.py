"""One pipeline: `report`, `scan()` and the farm give the same findings; root
causes come first and explain what follows from them; the farm is safe with
roots that are odd, empty or missing; errors are messages, never tracebacks."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import ckptscan
import numpy as np
import pytest
from ckptscan.cli import main
from ckptscan.findings import Severity
from ckptscan.render import to_markdown, to_text
from ckptscan.replica import copy_replica, read_entries, rewrite_shard
from ckptscan.synth import PLANTS, write_small_minimax
from safetensors.numpy import save_file


def sql(db: Path, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as c:
        return c.execute(query, args).fetchall()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120
        ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptscan", *args], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})},
                          stdin=subprocess.DEVNULL)


def without_timing(d: dict[str, Any]) -> dict[str, Any]:
    if d.get("deep"):
        d["deep"] = {k: v for k, v in d["deep"].items() if k != "seconds"}
    return d


# ---------------------------------------------------------------- root causes


def test_missing_and_truncated_shards_explain_what_they_took(minimax_replica: Path,
                                                             tmp_path: Path) -> None:
    root = copy_replica(minimax_replica, tmp_path / "ckpt")
    shards = sorted(root.glob("*.safetensors"))
    shards[3].unlink()
    os.truncate(shards[7], shards[7].stat().st_size - 1000)
    report = ckptscan.scan(root)
    weight_map = json.loads((root / "model.safetensors.index.json").read_text())["weight_map"]
    held = {name: sum(1 for v in weight_map.values() if v == name)
            for name in (shards[3].name, shards[7].name)}
    # the two root causes first, each naming how many tensors it took along ...
    first, second = report.findings[:2]
    assert (first.code, first.file) == ("shard-missing", str(shards[3]))
    assert (second.code, second.file) == ("truncated", str(shards[7]))
    assert first.detail["lost_tensors"] == held[shards[3].name]
    assert second.detail["lost_tensors"] == held[shards[7].name]
    assert f"{held[shards[3].name]:,} tensors it holds cannot be read" in first.message
    # ... and what follows from them is attached, not listed again
    assert report.count(Severity.ERROR) == 2
    explained = {x.code: x.count for x in first.explains}
    assert explained["index-tensor-absent"] + explained["tensor-missing-in-grid"] == \
        held[shards[3].name]
    # the rejected shard's tensors are not counted
    whole = ckptscan.scan(minimax_replica)
    assert report.total.tensors == whole.total.tensors - sum(held.values())
    assert report.shards.rejected == [shards[7].name]


def test_one_defect_one_finding(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path / "m")
    shard = sorted(path.glob("*.safetensors"))[1]
    victim = next(e.name for e in read_entries(shard)[0]
                  if e.name.endswith("experts.1.w2.weight_scale_inv"))
    rewrite_shard(shard, lambda es: [e for e in es if e.name != victim])
    report = ckptscan.scan(path)
    errors = [f for f in report.findings if f.severity == Severity.ERROR]
    # a dropped scale: its weight has no scale, the grid has a hole, the index
    # lists it in no shard -- one defect, one finding
    assert [(f.code, f.tensor) for f in errors] == [
        ("fp8-scale-missing", victim.replace("_scale_inv", ""))]


def test_overlapping_tensors_attack_is_bounded_and_never_read(tmp_path: Path) -> None:
    """The reference library's safetensors_abuse_attempt_3: 100,000 tensors all
    claiming the same 160 KB, in a 17 MB file."""
    shape = [200, 200]
    n = shape[0] * shape[1] * 4
    meta = {f"weight_{i}": {"dtype": "F32", "shape": shape, "data_offsets": [0, n]}
            for i in range(100_000)}
    header = json.dumps(meta).encode()
    path = tmp_path / "abuse.safetensors"
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + b"\0" * len(header))
    report = ckptscan.scan(path, deep=True)
    (root,) = report.findings
    assert root.code == "data-overlap" and root.detail["lost_tensors"] == 100_000
    assert report.deep is not None and report.deep.bytes == 0  # a rejected header: not read
    assert report.total.tensors == 0
    text = to_text(report)
    assert len(text.splitlines()) < 60


# ---------------------------------------------------------------- report == farm


def planted_farm(root: Path, minimax_replica: Path) -> None:
    for i, plant in enumerate(PLANTS):
        write_small_minimax(root / f"plant-{plant}", plant=[plant], seed=i)
    write_small_minimax(root / "all", plant=list(PLANTS))
    write_small_minimax(root / "clean")
    ck = copy_replica(minimax_replica, root / "replica")
    shards = sorted(ck.glob("*.safetensors"))
    shards[5].unlink()
    os.truncate(shards[9], shards[9].stat().st_size - 64)
    dup = root / "dup"
    write_small_minimax(dup)
    one, two = sorted(dup.glob("*.safetensors"))
    entry = read_entries(one)[0][3]
    rewrite_shard(two, lambda es: [*es, entry])


@pytest.mark.parametrize("deep", [False, True])
def test_report_and_farm_agree_finding_for_finding(deep: bool, minimax_replica: Path,
                                                   tmp_path: Path) -> None:
    root = tmp_path / "farm"
    planted_farm(root, minimax_replica)
    if deep:  # a full-size sparse replica would be read for minutes
        import shutil

        shutil.rmtree(root / "replica")
    db = tmp_path / "farm.db"
    result = ckptscan.scan_farm(root, db=db, deep=deep)  # one str root
    assert len(result.rows) == len(list(root.iterdir()))
    for row in result.rows:
        args = ["report", row["path"], "--format", "json", "--fail-on", "never"]
        if deep:
            args.append("--deep")
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        via_cli = without_timing(json.loads(out.stdout))
        stored = result.report(row["path"])
        assert stored is not None
        assert without_timing(stored.to_dict()) == via_cli
        flat = [(f["code"], f["message"]) for f in via_cli["findings"]]
        assert sql(db, "SELECT code, message FROM findings WHERE checkpoint = ? AND cause IS "
                       "NULL ORDER BY seq", row["path"]) == flat
    errors = {Path(r["path"]).name: r["errors"] for r in result.rows}
    assert errors["clean"] == 0 and errors["all"] > 0 and errors["dup"] > 0
    # what only data shows is found exactly when the data is read
    assert (errors["plant-nan_code"] > 0) == deep


# ---------------------------------------------------------------- farm safety


def test_farm_roots_missing_empty_and_pruned(tmp_path: Path) -> None:
    models = tmp_path / "models"
    write_small_minimax(models / "a")
    write_small_minimax(models / "b", seed=1)
    db = tmp_path / "farm.db"
    assert len(ckptscan.scan_farm(str(models), db=db).rows) == 2
    # a root that does not exist: a usage error, nothing removed
    with pytest.raises(ckptscan.CkptScanError, match="no such file"):
        ckptscan.scan_farm(str(tmp_path / "nope"), db=db)
    out = cli("farm", str(tmp_path / "nope"), "--db", str(db))
    assert out.returncode == 2 and "no such file" in out.stderr and "Traceback" not in out.stderr
    # an empty root (an unmounted mount point) keeps its history ...
    import shutil

    moved = tmp_path / "elsewhere"
    shutil.move(models, moved)
    models.mkdir()
    result = ckptscan.scan_farm(models, db=db)
    assert result.removed == [] and sql(db, "SELECT count(*) FROM checkpoints") == [(2,)]
    # ... unless --prune says so
    out = cli("farm", str(models), "--db", str(db), "--prune")
    assert out.returncode == 0, out.stderr
    assert sql(db, "SELECT count(*) FROM checkpoints") == [(0,)]
    # a checkpoint gone from a root that still holds others is forgotten as before
    shutil.rmtree(models)
    shutil.move(moved, models)
    ckptscan.scan_farm(models, db=db)
    shutil.rmtree(models / "b")
    assert ckptscan.scan_farm(models, db=db).removed == [str(models / "b")]


def test_ctrl_c_stops_a_deep_farm_scan_and_a_second_one_does_not_abort(
        minimax_replica: Path, tmp_path: Path) -> None:
    root = tmp_path / "farm"
    write_small_minimax(root / "a-small")  # scanned first, then
    copy_replica(minimax_replica, root / "b-big")  # 214 GB of holes: minutes to read
    db = tmp_path / "farm.db"
    proc = subprocess.Popen([sys.executable, "-m", "ckptscan", "farm", str(root), "--db",
                             str(db), "--deep", "--jobs", "1"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until the small one is stored
        if db.exists() and sql(db, "SELECT count(*) FROM sqlite_master WHERE name = "
                                   "'checkpoints'") == [(1,)] and sql(
                db, "SELECT count(*) FROM checkpoints") == [(1,)]:
            break
        time.sleep(0.05)
    time.sleep(0.5)  # well into the big one's deep scan
    assert proc.poll() is None
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - sent
    assert proc.returncode == 130, err.decode()
    assert b"interrupted" in err and b"terminate called" not in err
    assert b"Traceback" not in err
    assert elapsed < 5, elapsed
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    assert [Path(p).name for (p,) in sql(db, "SELECT path FROM checkpoints")] == ["a-small"]


# ---------------------------------------------------------------- errors, not tracebacks


def test_closed_pipe_ends_quietly() -> None:
    proc = subprocess.run(f"{sys.executable} -m ckptscan codes | head -1", shell=True,
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.count("\n") == 1 and proc.stderr == ""


def test_a_bad_simd_setting_is_a_usage_error_not_a_finding(tmp_path: Path) -> None:
    path, _ = write_small_minimax(tmp_path / "m")
    env = {"CKPTSCAN_SIMD": "bogus"}
    out = cli("report", str(path), "--deep", env=env)
    assert out.returncode == 2 and "CKPTSCAN_SIMD='bogus'" in out.stderr
    assert "Traceback" not in out.stderr
    db = tmp_path / "farm.db"
    out = cli("farm", str(path), "--deep", "--db", str(db), env=env)
    assert out.returncode == 2 and "CKPTSCAN_SIMD" in out.stderr
    assert not db.exists() or sql(db, "SELECT count(*) FROM checkpoints") == [(0,)]
    assert cli("doctor", env=env).returncode != 0
    assert cli("doctor").returncode == 0
    # header-only work needs no kernels: it still runs
    assert cli("report", str(path), env=env).returncode == 0


def test_f64_tensors_get_the_nan_inf_check(tmp_path: Path) -> None:
    x = np.arange(1000, dtype=np.float64)
    x[17], x[400] = np.nan, -np.inf
    save_file({"a.weight": x, "b.weight": np.ones(8, np.float64)}, str(tmp_path / "f.safetensors"))
    report = ckptscan.scan(tmp_path / "f.safetensors", deep=True)
    assert sorted((f.code, f.tensor) for f in report.findings) == [
        ("float-inf", "a.weight"), ("float-nan", "a.weight")]


def test_header_only_report_says_values_were_not_read(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = write_small_minimax(tmp_path / "m", plant=list(PLANTS))
    assert main(["report", str(path), "--fail-on", "never"]) == 0
    text = capsys.readouterr().out
    assert "Tensor values were not read (header-only scan): --deep reads them" in text
    assert main(["report", str(path), "--deep", "--fail-on", "never"]) == 0
    assert "were not read" not in capsys.readouterr().out
    md = to_markdown(ckptscan.scan(path))
    assert "tensor values not read" in md
