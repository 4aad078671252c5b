"""Hostile inputs and unlucky operators, around the parser: configs, indexes,
symlinks, special files, terminal escapes, the farm's store under stress. Each
case ends as a finding or one clear error line, in bounded time and memory."""

from __future__ import annotations

import json
import os
import resource
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
from ckptscan.farm.store import Store, StoreError
from ckptscan.findings import Severity
from ckptscan.layout import resolve
from ckptscan.render import to_markdown, to_text
from ckptscan.synth import write_small_minimax
from safetensors.numpy import save_file


def cli(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ckptscan", *args], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def codes(report: ckptscan.Report) -> set[str]:
    return {f.code for f in report.findings}


def set_config(path: Path, **changes: Any) -> None:
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.fixture
def mm(tmp_path: Path) -> Path:
    path, _ = write_small_minimax(tmp_path / "mm")
    return Path(path)


# ---------------------------------------------------------------- config.json


def test_a_huge_config_is_not_read(mm: Path) -> None:
    cfg = mm / "config.json"
    cfg.unlink()
    with open(cfg, "wb") as f:  # 4 GiB of holes
        f.truncate(4 << 30)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    report = ckptscan.scan(mm)
    assert time.monotonic() - t0 < 60  # bounded work (not a speed test: bench/ is)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB
    (f,) = [f for f in report.findings if f.code == "limit-exceeded"]
    assert f.file == str(cfg) and "4,294,967,296 bytes" in f.message
    assert report.total.tensors > 0  # the rest of the scan goes on


@pytest.mark.parametrize(("key", "value", "why"), [
    ("num_hidden_layers", 1_000_000_000, "between 1 and 100,000"),
    ("num_hidden_layers", 0, "between 1 and 100,000"),
    ("num_hidden_layers", -1, "between 1 and 100,000"),
    ("num_hidden_layers", [2], "not an integer"),
    ("hidden_size", "320", "not an integer"),
    ("num_local_experts", 1.5, "not an integer"),
])
def test_config_values_of_the_wrong_type_or_impossible(mm: Path, key: str, value: Any,
                                                       why: str) -> None:
    set_config(mm, **{key: value})
    t0 = time.monotonic()
    report = ckptscan.scan(mm)
    assert time.monotonic() - t0 < 60  # bounded work (not a speed test: bench/ is)
    (f,) = [f for f in report.findings if f.code == "config-value"]
    assert f.detail["key"] == key and why in f.message and key in f.message
    # the bad value silences nothing else: MTP declared, layers not turned into MTP
    assert "mtp" not in report.roles or report.roles["mtp"].tensors == 0
    assert report.roles["moe_expert"].tensors > 0


@pytest.mark.parametrize("block", [[1, 1], [2**64 - 1, 1], [0, 128], [128], "128x128"])
def test_unusable_block_sizes(mm: Path, block: Any) -> None:
    cfg = json.loads((mm / "config.json").read_text())
    cfg["quantization_config"]["weight_block_size"] = block
    (mm / "config.json").write_text(json.dumps(cfg))
    report = ckptscan.scan(mm, deep=True)
    (f,) = [f for f in report.findings if f.code == "quant-config-invalid"]
    assert "weight_block_size" in f.message
    assert report.deep is not None and report.deep.unreadable == 0


# ---------------------------------------------------------------- index.json


def test_an_index_of_a_million_missing_shards(mm: Path) -> None:
    wm = {f"t.{i}": f"s-{i}.safetensors" for i in range(1_000_000)}
    (mm / "model.safetensors.index.json").write_text(json.dumps({"weight_map": wm}))
    t0 = time.monotonic()
    report = ckptscan.scan(mm)
    assert time.monotonic() - t0 < 60  # bounded work (not a speed test: bench/ is)
    assert len(report.findings) < 50
    (f,) = [f for f in report.findings if f.code == "limit-exceeded"]
    assert "1,000,000 shard files" in f.message


def test_index_entries_that_leave_the_checkpoint(mm: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.safetensors"
    secret.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
    index = json.loads((mm / "model.safetensors.index.json").read_text())
    index["weight_map"]["model.norm.weight"] = "../secret.safetensors"
    (mm / "model.safetensors.index.json").write_text(json.dumps(index))
    report = ckptscan.scan(mm)
    (f,) = [f for f in report.findings if f.code == "path-outside"]
    assert f.file is not None and f.file.endswith("secret.safetensors")
    assert "root:x" not in to_text(report)


# ---------------------------------------------------------------- symlinks, special files


def test_a_shard_symlink_leaving_the_checkpoint_is_not_followed(mm: Path,
                                                                 tmp_path: Path) -> None:
    outside = tmp_path / "passwd"
    outside.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 4)
    shard = sorted(mm.glob("*.safetensors"))[1]
    shard.unlink()
    shard.symlink_to(outside)
    report = ckptscan.scan(mm)
    (f,) = [f for f in report.findings if f.file == str(shard)]
    assert f.code == "path-outside" and f.detail["lost_tensors"] > 0
    assert "root:x" not in to_text(report) and "root:x" not in json.dumps(report.to_dict())
    # unless the user says so
    (spec,) = resolve(mm, follow_symlinks=True)
    assert [fs.kind for fs in spec.shards] == ["file", "file"]


def test_symlink_loops_and_special_files_are_one_finding_each(mm: Path) -> None:
    shards = sorted(mm.glob("*.safetensors"))
    shards[0].unlink()
    shards[0].symlink_to(shards[0].name)  # a loop
    shards[1].unlink()
    shards[1].mkdir()  # a directory named like a shard
    report = ckptscan.scan(mm)
    assert [(f.code, f.file) for f in report.findings if f.severity == Severity.ERROR] == [
        ("symlink-loop", str(shards[0])), ("special-file", str(shards[1]))]
    result = ckptscan.scan_farm(mm, db=mm.parent / "farm.db")
    stored = result.report(str(mm))
    assert stored is not None and [f.code for f in stored.findings] == [
        f.code for f in report.findings]


def test_a_farm_root_with_a_symlink_to_the_filesystem_root(tmp_path: Path) -> None:
    root = tmp_path / "farm"
    write_small_minimax(root / "a")
    (root / "everything").symlink_to("/")
    t0 = time.monotonic()
    result = ckptscan.scan_farm(root, db=tmp_path / "farm.db")
    assert time.monotonic() - t0 < 60  # bounded work (not a speed test: bench/ is)
    assert [Path(r["path"]).name for r in result.rows] == ["a"]
    assert any("leaving the root" in n.message for n in result.notes)


# ---------------------------------------------------------------- terminal escapes


def test_escape_sequences_from_files_never_reach_the_terminal(tmp_path: Path) -> None:
    d = tmp_path / "evil\x1b[2Jdir"
    d.mkdir()
    name = "model.layers.0.\x1b[31mevil\x1b[0m.weight"
    save_file({name: np.ones((4, 4), np.float16), "x\x07\x08": np.ones(2, np.float32)},
              str(d / "m\x1b]0;title\x07.safetensors"))
    (d / "config.json").write_text(json.dumps({"model_type": "\x1b[2Jllama"}))
    out = cli("report", str(d), "--fail-on", "never")
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout and "\x07" not in out.stdout and "\\x1b" in out.stdout
    md = to_markdown(ckptscan.scan_all(d))
    assert "\x1b" not in md
    res = cli("farm", str(tmp_path), "--db", str(tmp_path / "f.db"), "--fail-on", "never")
    assert "\x1b" not in res.stdout and "\x1b" not in res.stderr


# ---------------------------------------------------------------- the store under stress


def test_a_store_that_is_no_file(tmp_path: Path, mm: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    os.mkfifo(tmp_path / "fifo.db")
    for db in ("dir.db", "fifo.db"):
        out = cli("farm", str(mm), "--db", str(tmp_path / db), timeout=30)
        assert out.returncode == 2 and "not a ckptscan store" in out.stderr
        assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1


def test_a_corrupt_store_is_named_corrupt(tmp_path: Path, mm: Path) -> None:
    db = tmp_path / "farm.db"
    ckptscan.scan_farm(mm, db=db)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = bytearray(db.read_bytes())
    data[100:4096] = os.urandom(3996)  # the schema page, past the file header
    db.write_bytes(bytes(data))
    for args in (["farm", "--db", str(db), "--where", "errors > 0"], ["farm", str(mm), "--db",
                                                                    str(db), "--rescan"]):
        out = cli(*args)
        assert out.returncode == 2, out.stderr
        assert "corrupt" in out.stderr and "invalid --where" not in out.stderr
        assert "Traceback" not in out.stderr
    db.write_bytes(b"this is no database" * 100)
    out = cli("farm", "--db", str(db))
    assert out.returncode == 2 and "corrupt" in out.stderr


def test_a_read_only_store_can_be_queried(tmp_path: Path, mm: Path) -> None:
    """Read-only for real: as root, in a child that has become user nobody."""
    import shutil
    import tempfile

    import ckptscan.farm.table  # noqa: F401  (imported before dropping privileges)
    from test_farm import _as_unprivileged

    base = Path(tempfile.mkdtemp(prefix="ckptscan-ro-"))  # traversable by user nobody
    os.chmod(base, 0o755)
    db = base / "ro" / "farm.db"
    ckptscan.scan_farm(mm, db=db)
    before = {p.name: p.read_bytes() for p in db.parent.iterdir()}
    os.chmod(db.parent, 0o555)
    for p in db.parent.iterdir():
        os.chmod(p, 0o444)
    out_dir = base / "out"
    out_dir.mkdir()
    args = ["farm", "--db", str(db), "--format", "jsonl"]
    try:
        if os.geteuid() == 0:
            rc, stdout, stderr = _as_unprivileged(lambda: main(args), out_dir)
        else:
            res = cli(*args)
            rc, stdout, stderr = res.returncode, res.stdout, res.stderr
        assert rc == 0, stderr
        assert [json.loads(line)["path"] for line in stdout.splitlines()] == [str(mm)]
    finally:
        os.chmod(db.parent, 0o755)
        after = {p.name: p.read_bytes() for p in db.parent.iterdir()}
        shutil.rmtree(base)
    assert after == before


def test_where_is_read_only_bounded_and_allow_listed(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from ckptscan.synth import PLANTS

    mm, _ = write_small_minimax(tmp_path / "mm", plant=list(PLANTS))
    db = tmp_path / "farm.db"
    ckptscan.scan_farm(mm, db=db, deep=True)
    with Store(db, create=False, readonly=True) as store:
        assert len(store.query("lower(model_type) = 'minimax_m2' AND errors > 0")) == 1
        for bad in ("fts3_tokenizer('simple') IS NOT NULL", "load_extension('x') IS NULL",
                    "(SELECT count(*) FROM sqlite_master) > 0 AND writefile('x', 'y')"):
            with pytest.raises(StoreError):
                store.query(bad)
        monkeypatch.setattr("ckptscan.farm.store.QUERY_SECONDS", 0.2)
        t0 = time.monotonic()
        with pytest.raises(StoreError, match="ran past"):
            store.query("(SELECT count(*) FROM findings a, findings b, findings c, findings d, "
                        "findings e, findings f, findings g, findings h, findings i, "
                        "findings j) > 0")
        assert time.monotonic() - t0 < 60  # bounded work (not a speed test: bench/ is)
    assert main(["farm", "--db", str(db), "--where", "nonsense_column = 1"]) == 2


def test_a_full_disk_leaves_the_store_consistent(tmp_path: Path) -> None:
    root = tmp_path / "farm"
    write_small_minimax(root / "a")
    db = tmp_path / "farm.db"
    ckptscan.scan_farm(root, db=db)
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for i in range(6):
        write_small_minimax(root / f"b{i}", seed=i + 1)
    size = db.stat().st_size

    def small_disk() -> None:  # writes past a few pages fail as on a full disk
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8192, size + 8192))

    out = cli("farm", str(root), "--db", str(db), preexec_fn=small_disk)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "store" in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert str(root / "a") in {p for (p,) in c.execute("SELECT path FROM checkpoints")}


def test_an_unexpected_failure_is_a_finding_and_the_farm_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "farm"
    write_small_minimax(root / "a")
    write_small_minimax(root / "b", seed=1)
    from ckptscan import pipeline

    real = pipeline.build_report

    def exhausted(spec: Any, *args: Any, **kw: Any) -> Any:
        if spec.path.endswith("a"):
            raise MemoryError
        return real(spec, *args, **kw)

    monkeypatch.setattr(pipeline, "build_report", exhausted)
    result = ckptscan.scan_farm(root, db=tmp_path / "farm.db")
    assert result.failed == [str(root / "a")] and result.scanned == [str(root / "b")]
    stored = result.report(str(root / "a"))
    assert stored is not None and [f.code for f in stored.findings] == ["scan-failed"]
    assert "out of memory" in stored.findings[0].message


# ---------------------------------------------------------------- files that shrink


SHRINKER = r"""
import os, random, sys, threading, time
from ckptscan.cli import main
path, victim, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
size = os.path.getsize(victim)

def shrink():
    time.sleep(rng.uniform(0.0, 0.6))
    os.truncate(victim, rng.randrange(0, size))

threading.Thread(target=shrink).start()
sys.exit(main(["report", path, "--deep", "--jobs", "2", "--format", "json", "-o", os.devnull]))
"""


def test_shards_shrinking_at_random_points_of_a_deep_scan_never_kill_it(tmp_path: Path) -> None:
    """The file shrinks under the scan at a random moment (weights, scales in the
    same or another shard, between reads): the process reports, never dies of
    SIGBUS."""
    import shutil

    from ckptscan.synth import PLANTS

    src, _ = write_small_minimax(tmp_path / "src", plant=list(PLANTS), layers=4, experts=32)
    rng = np.random.default_rng(7)
    codes_seen = set()
    for i in range(12):
        path = Path(shutil.copytree(src, tmp_path / f"m{i}"))
        shards = sorted(path.glob("*.safetensors"))
        victim = shards[int(rng.integers(len(shards)))]
        out = subprocess.run([sys.executable, "-c", SHRINKER, str(path), str(victim), str(i)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode in (0, 1), (out.returncode, out.stderr[-2000:])
        assert "Traceback" not in out.stderr
        codes_seen.add(out.returncode)
        shutil.rmtree(path)
    assert 1 in codes_seen  # the planted faults (or the shrink) were reported
