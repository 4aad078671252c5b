"""``ckptscan report LOCAL --against hf://ORG/NAME[@REV] [--hash]``: a local copy
compared with the Hub's listing (sizes, LFS sha256, git blob ids) in the same
report: each corrupt, truncated, missing or extra file is a finding, and the
parser's complaint about a half-downloaded shard is explained by it.

References: the emulated Hub computes its hashes from the served files; the
damage is planted here, byte by byte."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from ckptscan.cli import main
from ckptscan.layout import resolve
from ckptscan.pipeline import ScanOptions, scan_spec
from ckptscan.result import Report
from ckptscan.synth import write_small_minimax


@pytest.fixture
def pair(hub: Any, tmp_path: Path) -> tuple[Path, Path]:
    """(the served repository org/m, an intact local copy of it)."""
    served, _ = write_small_minimax(hub.root / "org" / "m", shards=4)
    (served / "README.md").write_text("model card\n")
    copy = tmp_path / "copy"
    shutil.copytree(served, copy)
    (copy / ".cache" / "huggingface").mkdir(parents=True)  # what `hf download` leaves
    (copy / ".cache" / "huggingface" / "x.metadata").write_text("tool state")
    return served, copy


def against(path: Path, url: str, hash: bool = False) -> Report:
    [spec] = resolve(path)
    return scan_spec(spec, ScanOptions(against=url, hash=hash)).report


def codes_by_file(report: Report, prefix: str = "copy-") -> dict[str, str]:
    return {os.path.basename(f.file or ""): f.code for f in report.findings
            if f.code.startswith(prefix)}


def test_an_intact_copy_has_nothing_to_say(hub: Any, pair: tuple[Path, Path]) -> None:
    _served, copy = pair
    [spec] = resolve(copy)
    plain = scan_spec(spec).report
    for hashed in (False, True):
        report = against(copy, "hf://org/m", hash=hashed)
        assert report.to_dict() == plain.to_dict()


def test_damaged_copy_names_each_file(hub: Any, pair: tuple[Path, Path]) -> None:
    served, copy = pair
    shards = sorted(p.name for p in served.glob("*.safetensors"))
    size = os.path.getsize(copy / shards[0])
    os.truncate(copy / shards[0], size - 4096)           # an interrupted download
    (copy / shards[1]).unlink()                          # never downloaded
    with open(copy / shards[2], "ab") as f:              # grown
        f.write(b"\0" * 10)
    with open(copy / shards[3], "r+b") as f:             # same size, one byte flipped
        f.seek(os.path.getsize(copy / shards[3]) - 1)
        last = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([last[0] ^ 0xFF]))
    (copy / "config.json").write_text((served / "config.json").read_text().replace(
        '"model_type"', '"model_typE"'))                 # a small file, same size
    (copy / "notes.txt").write_text("mine")
    report = against(copy, "hf://org/m")
    assert codes_by_file(report) == {shards[0]: "copy-truncated", shards[1]: "copy-missing",
                                     shards[2]: "copy-corrupt", "notes.txt": "copy-extra"}
    trunc = next(f for f in report.findings if f.code == "copy-truncated")
    assert f"{size - 4096:,} bytes where the reference has {size:,}" in trunc.message
    # what the parser and the index say of those files is explained by the copy's fault
    assert {x.code for x in trunc.explains} >= {"truncated"}
    missing = next(f for f in report.findings if f.code == "copy-missing")
    assert "shard-missing" in {x.code for x in missing.explains}
    assert not any(f.code in ("truncated", "shard-missing") for f in report.findings)
    # --hash also finds what keeps its size
    hashed = against(copy, "hf://org/m", hash=True)
    assert codes_by_file(hashed) == {**codes_by_file(report), shards[3]: "copy-corrupt",
                                     "config.json": "copy-corrupt"}
    flipped = next(f for f in hashed.findings if f.file and f.file.endswith(shards[3]))
    assert "sha256" in flipped.message and hub.sha256(f"org/m/{shards[3]}") in flipped.message
    cfg = next(f for f in hashed.findings if f.file and f.file.endswith("config.json"))
    assert "git-blob-id" in cfg.message


def test_cli_against_with_revision(hub: Any, pair: tuple[Path, Path],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    served, copy = pair
    hub.add_revision("org/m", "v2")
    (copy / sorted(p.name for p in served.glob("*.safetensors"))[0]).unlink()
    assert main(["report", str(copy), "--against", "hf://org/m@v2", "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [f["code"] for f in out["findings"]][0] == "copy-missing"
    assert main(["report", str(copy), "--hash"]) == 2
    assert "--hash goes with --against" in capsys.readouterr().err
    assert main(["report", str(copy), "--against", "hf://org/absent"]) == 2
    assert "not-found" in capsys.readouterr().err
