"""Reports against the JSON Schema in the repository
(``schemas/ckptscan.report-2.schema.json``): real reports of quantized and
unquantized checkpoints, header-only and --deep, with root causes, another
format, a failed scan, and several reports in one document; and the schema
refuses what a report is not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from ckptscan import scan, scan_all
from ckptscan.layout import resolve
from ckptscan.pipeline import failed_outcome
from ckptscan.render import to_json
from ckptscan.replica import copy_replica
from ckptscan.testing import quant_layouts as QL

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "ckptscan.report-2.schema.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def valid(validator: jsonschema.protocols.Validator, doc: Any) -> None:
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    assert errors == [], [f"{list(e.path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize("scheme", ["hf-fp8-fused", "deepseek-v4", "ct-mixed", "modelopt-nvfp4",
                                    "gpt-oss", "mlx", "torchao"])
def test_reports_of_quantized_checkpoints(validator: jsonschema.protocols.Validator,
                                          tmp_path: Path, scheme: str) -> None:
    w = QL.write(scheme, tmp_path / "clean")
    faults = sorted({"missing_companion", "zero_block"} & QL.SCHEMES[scheme].faults)
    bad = QL.write(scheme, tmp_path / "bad", plant=faults)
    for path in (w.path, bad.path):
        for deep in (False, True):
            doc = orjson.loads(to_json(scan(path, deep=deep)))
            valid(validator, doc)
            assert doc["quantization"]["schemes"] and doc["parameters"] == w.parameters


def test_replica_with_root_causes_and_several_reports(validator: jsonschema.protocols.Validator,
                                                      minimax_replica: Path, llama_replica: Path,
                                                      tmp_path: Path) -> None:
    root = copy_replica(minimax_replica, tmp_path / "mm")
    (sorted(root.glob("*.safetensors"))[5]).unlink()
    report = scan(root)
    doc = orjson.loads(to_json(report))
    valid(validator, doc)
    assert any(f.get("explains") for f in doc["findings"])
    both = orjson.loads(to_json([report, scan(llama_replica)]))
    valid(validator, both)
    assert both["schema"] == "ckptscan.reports/2"


def test_other_formats_and_failed_scans(validator: jsonschema.protocols.Validator,
                                        tmp_path: Path) -> None:
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "model.gguf").write_bytes(b"GGUF" + bytes(60))
    for r in scan_all(tmp_path / "gguf"):
        valid(validator, orjson.loads(to_json(r)))
    (spec,) = resolve(tmp_path / "gguf")
    failed = failed_outcome(spec, MemoryError(), 0.1).report
    valid(validator, orjson.loads(to_json(failed)))


def test_the_schema_refuses_what_is_no_report(validator: jsonschema.protocols.Validator,
                                              tmp_path: Path) -> None:
    doc = orjson.loads(to_json(scan(QL.write("ct-nvfp4", tmp_path / "c").path)))
    for broken in (
        {**doc, "schema": "ckptscan.report/1"},
        {**doc, "parameters": -1},
        {k: v for k, v in doc.items() if k != "deployment"},
        {**doc, "quantization": {**doc["quantization"], "schemes": [{"name": "x"}]}},
        {**doc, "findings": [{"code": "x", "severity": "fatal", "message": "", "file": None,
                              "tensor": None}]},
    ):
        assert not validator.is_valid(broken)
