"""The farm store's quantization columns (schema 3): the stored layouts, bits per
weight, the decoder's logical weight format and the declared method, queryable
with --where; a store of an older schema is dropped and rebuilt."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import numpy as np
import orjson
import pytest
from ckptscan.cli import main
from ckptscan.farm import scan_farm
from ckptscan.farm.store import SCHEMA_VERSION, Store
from ckptscan.testing import quant_layouts as QL
from safetensors.numpy import save_file

BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1, "F8_E8M0": 1, "U8": 1, "I8": 1, "I32": 4,
         "I64": 8, "U32": 4}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, QL.Written]]:
    root = tmp_path_factory.mktemp("qfarm")
    written = {s: QL.write(s, root / s) for s in ("hf-fp8-block", "ct-nvfp4", "gptq", "mlx")}
    plain = root / "plain"
    plain.mkdir()
    save_file({"model.layers.0.mlp.up_proj.weight": np.ones((64, 32), np.float16)},
              str(plain / "model.safetensors"))
    return root, written


def rows(db: Path, where: str) -> list[dict[str, object]]:
    with Store(db, readonly=True) as store:
        return store.query(where)


def test_columns(farm: tuple[Path, dict[str, QL.Written]], tmp_path: Path) -> None:
    root, written = farm
    db = tmp_path / "farm.db"
    scan_farm([root], db=db)
    got = {Path(str(r["path"])).name: r for r in rows(db, "1")}
    fp8 = got["hf-fp8-block"]
    assert (fp8["quant_method"], fp8["quant_format"], fp8["main_dtype"], fp8["schemes"],
            fp8["quant_block"]) == ("fp8", "E4M3", "E4M3", "hf-fp8/E4M3/block128x128", "128x128")
    nv = got["ct-nvfp4"]
    assert (nv["quant_method"], nv["quant_format"], nv["main_dtype"]) == (
        "compressed-tensors/nvfp4-pack-quantized", "E2M1", "E2M1")
    assert got["mlx"]["quant_method"] == "mlx/affine"  # declared without a quant_method
    assert got["gptq"]["main_dtype"] == "INT4"
    plain = got["plain"]
    assert (plain["quant_method"], plain["schemes"], plain["main_dtype"]) == (None, None, "F16")
    assert plain["bits_per_weight"] == 16.0
    for name, w in written.items():
        # whole-checkpoint bits per parameter: every byte over the logical weights
        total = sum(BYTES[d] * math.prod(s) for d, s in w.tensors.values())
        assert got[name]["parameters"] == w.parameters
        assert got[name]["bits_per_weight"] == pytest.approx(8 * total / w.parameters, abs=1e-3)


def test_where_on_the_new_columns(farm: tuple[Path, dict[str, QL.Written]], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = farm
    db = tmp_path / "farm.db"
    scan_farm([root], db=db)
    capsys.readouterr()
    for where, names in (
        ("bits_per_weight < 8", ["ct-nvfp4", "gptq", "mlx"]),  # BF16 embeddings count too
        ("bits_per_weight < 5", ["mlx"]),  # MLX quantizes them
        ("main_dtype = 'E2M1'", ["ct-nvfp4"]),
        ("schemes LIKE '%block128x128%'", ["hf-fp8-block"]),
        ("quant_method LIKE 'mlx%'", ["mlx"]),
        ("schemes IS NULL", ["plain"]),
    ):
        assert main(["farm", "--db", str(db), "--where", where, "--format", "jsonl"]) == 0
        out = [orjson.loads(x) for x in capsys.readouterr().out.splitlines()]
        assert [Path(r["path"]).name for r in out] == names, where


def test_an_older_store_is_rebuilt(farm: tuple[Path, dict[str, QL.Written]],
                                   tmp_path: Path) -> None:
    root, _ = farm
    db = tmp_path / "farm.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE checkpoints (path TEXT PRIMARY KEY)")
    con.execute("INSERT INTO checkpoints VALUES ('stale')")
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    con.commit()
    con.close()
    with Store(db) as store:
        assert store.upgraded_from == SCHEMA_VERSION - 1 and store.paths() == []
    scan_farm([root], db=db)
    assert len(rows(db, "schemes IS NOT NULL")) == 4
