"""Every producer layout through `ckptscan.scan()`: clean checkpoints raise
nothing and are stated right, every planted fault is named.

The checkpoints come from `ckptscan.testing.quant_layouts` (names, dtypes and
shapes as each producer writes them; sources in ``SCHEMES[scheme].source``).
Expected figures are computed here from what the writer wrote: logical
parameters from the shapes it quantized, bits per weight from the bytes of each
quantized weight and of the tensors stored beside it, formats from the
producers' documentation (``QUANT-FORMATS.md``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from ckptscan import scan
from ckptscan.findings import Finding, Severity
from ckptscan.result import Report
from ckptscan.testing import quant_layouts as QL
from test_schemes_writers import VARIANT_IDS, VARIANTS

SCHEMES = sorted(QL.SCHEMES)
DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "F8_E8M0": 1, "U8": 1,
               "I8": 1, "I16": 2, "I32": 4, "I64": 8, "U32": 4}

# The weight formats each writer stores (QUANT-FORMATS.md): MLX's layer-0 override
# is 8-bit, DeepSeek-V4's experts FP4, ct-mixed / MIXED_PRECISION two schemes.
FORMAT = {
    "hf-fp8-block": "E4M3", "hf-fp8-tensor": "E4M3", "hf-fp8-fused": "E4M3",
    "deepseek-v4": "mixed: E2M1, E4M3", "ct-fp8": "E4M3", "ct-int8": "INT8", "ct-w4a16": "INT4",
    "ct-nvfp4": "E2M1", "ct-mxfp4": "E2M1", "ct-mxfp8": "E4M3", "ct-mixed": "mixed: E4M3, INT4",
    "modelopt-fp8": "E4M3", "modelopt-fp8-pc-pt": "E4M3", "modelopt-fp8-pb-wo": "E4M3",
    "modelopt-nvfp4": "E2M1", "modelopt-w4a16-nvfp4": "E2M1", "modelopt-mxfp8": "E4M3",
    "modelopt-mixed": "mixed: E2M1, E4M3", "gpt-oss": "E2M1", "gptq": "INT4", "awq": "INT4",
    "bnb-4bit": "NF4", "bnb-8bit": "INT8", "mlx": "mixed: INT4, INT8", "torchao": "E4M3",
}

# Writer options that change the stored format.
VARIANT_FORMAT = {("deepseek-v4", "expert_dtype", "fp8"): "E4M3", ("ct-int8", "bits", 4): "INT4",
                  ("ct-w4a16", "bits", 8): "INT8", ("ct-w4a16", "bits", 2): "INT2",
                  ("gptq", "bits", 8): "INT8"}


def expected_format(scheme: str, options: dict[str, Any]) -> str:
    return next((f for (s, k, v), f in VARIANT_FORMAT.items()
                 if s == scheme and options.get(k) == v), FORMAT[scheme])


# A planted fault -> the codes that name it.
CODES = {
    "missing_companion": {"fp8-scale-missing", "companion-missing"},
    "orphan_companion": {"scale-orphan"},
    "companion_shape": {"scale-shape"},
    "companion_dtype": {"scale-dtype"},
    "mixed_conventions": {"scale-convention-mixed"},
    "exclusion_unmatched": {"exclusion-unmatched"},
    "exclusion_prefix": {"exclusion-prefix"},
    "quantized_excluded": {"fp8-not-converted", "quantized-excluded"},
    "unquantized_targeted": {"unquantized-linear"},
    "fused_scale_mismatch": {"fused-scale-mismatch"},
    "scale_nan_e4m3": {"scale-nan-e4m3"},
    "e8m0_nan": {"e8m0-nan"},
    "negative_input_scale": {"scale-nonpositive"},
    "zero_point_range": {"zero-point-range"},
    "zero_block": {"fp8-zero-block"},
    "clipping_block": {"fp8-clipping"},
    "all_zero_tensor": {"fp8-all-zero"},
}

# Data faults the data checks do not judge, and why (checks/data.py says more).
RECOGNISED = {"gptq", "awq", "bnb-4bit"}  # counts and pairing only (the scope)
FP4_OR_MX = {"deepseek-v4", "ct-nvfp4", "ct-mxfp4", "ct-mxfp8", "modelopt-nvfp4",
             "modelopt-w4a16-nvfp4", "modelopt-mxfp8", "modelopt-mixed", "gpt-oss"}


def not_judged(scheme: str, fault: str) -> str | None:
    if scheme in RECOGNISED and fault in ("zero_block", "clipping_block", "all_zero_tensor"):
        return "recognised scheme: no data checks"
    if fault == "clipping_block" and scheme in FP4_OR_MX:
        return ("FP4 groups of 16 / 32 and MX (E8M0, floor) scaling saturate up to a third of "
                "a clean group's codes: a 30% share is not telling")
    return None


def test_every_fault_has_codes_and_every_scheme_a_format() -> None:
    assert set(CODES) == set(QL.FAULTS)
    assert set(FORMAT) == set(QL.SCHEMES)


def findings_at_least(report: Report, severity: Severity) -> list[Finding]:
    return [f for f in report.findings if f.severity >= severity]


def stored_bits(w: QL.Written) -> tuple[int, int]:
    """(bits stored for the quantized weights and the tensors beside them, their
    logical weights), from the written tensors: ``stem`` + ``.x`` or ``_x``,
    biases and KV-cache scales (module tensors) aside."""
    bits = logical = 0
    for stem, shape in w.quantized.items():
        logical += math.prod(shape)
        for name, (dtype, s) in w.tensors.items():
            rest = name[len(stem):]
            if name.startswith(stem) and rest[:1] in "._" and rest not in (
                    ".bias", "_bias", ".k_scale", ".v_scale"):
                bits += 8 * DTYPE_BYTES[dtype] * math.prod(s)
    return bits, logical


@pytest.mark.parametrize(("scheme", "options"), VARIANTS, ids=VARIANT_IDS)
def test_clean_checkpoint_is_stated_right_and_raises_nothing(
        tmp_path: Path, scheme: str, options: dict[str, Any]) -> None:
    w = QL.write(scheme, tmp_path / scheme, **options)
    header = scan(w.path)
    deep = scan(w.path, deep=True, jobs=2)
    for report in (header, deep):
        bad = [(f.code, f.tensor, f.message) for f in findings_at_least(report, Severity.WARNING)]
        assert bad == [], bad
        assert report.total.parameters == w.parameters
        q = report.quantization
        assert q.format == expected_format(scheme, options)
        assert sum(s["tensors"] for s in q.schemes) == len(w.quantized)
        assert sum(s["parameters"] for s in q.schemes) == sum(
            math.prod(s) for s in w.quantized.values())
        bits, logical = stored_bits(w)
        stated = sum(s["bits_per_weight"] * s["parameters"] for s in q.schemes) / logical
        assert stated == pytest.approx(bits / logical, abs=1e-3)
        # overhead: every byte that is no parameter's
        assert q.overhead_bytes > 0 and report.total.bytes > q.overhead_bytes
    assert deep.deep is not None and deep.deep.unreadable == 0


# Faults about which modules the config keeps unquantized: planted together, an
# exclusion entry for one victim's module may cover another's (gpt-oss experts).
ALONE = ("quantized_excluded", "exclusion_prefix", "unquantized_targeted")


def _groups(scheme: str, faults: list[str]) -> list[tuple[list[str], dict[str, Any]]]:
    """Faults that can be planted together (the same writer options)."""
    writer = QL.SCHEMES[scheme]
    by: dict[tuple[Any, ...], list[str]] = defaultdict(list)
    for f in faults:
        key = tuple(sorted(writer.requires.get(f, {}).items()))
        by[(*key, f) if f in ALONE else key].append(f)
    return [(fs, dict(k for k in opts if isinstance(k, tuple))) for opts, fs in by.items()]


def _plant(path: Path, scheme: str, faults: list[str], options: dict[str, Any]
           ) -> list[tuple[QL.Written, list[str]]]:
    """Writes the faults together where the model has victims enough, else in halves."""
    try:
        return [(QL.write(scheme, path / "-".join(faults)[:80], plant=faults, **options),
                 faults)]
    except (ValueError, StopIteration) as e:
        # too few victims, or the next victim cannot hold this fault (an FP8 weight of
        # a mixed checkpoint has no E4M3 scale): plant in halves
        if len(faults) == 1 or (isinstance(e, ValueError) and "too few" not in str(e)):
            raise
        half = len(faults) // 2
        return (_plant(path, scheme, faults[:half], options)
                + _plant(path, scheme, faults[half:], options))


def _names(f: Finding, plant: QL.Plant) -> bool:
    if plant.tensor is None:
        return f.detail.get("entry") == plant.detail.get("entry")
    return plant.tensor in (f.tensor, f.detail.get("missing"), f.detail.get("sibling"))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_planted_faults_are_named(tmp_path: Path, scheme: str) -> None:
    """Each planted fault gives a finding of its code naming its tensor (or the
    exclusion entry); every error names a planted tensor."""
    writer = QL.SCHEMES[scheme]
    faults = sorted(f for f in writer.faults if not_judged(scheme, f) is None)
    for deep in (False, True):
        wanted = [f for f in faults if (f in QL.DATA_FAULTS) == deep]
        for group, options in _groups(scheme, wanted):
            for w, planted in _plant(tmp_path, scheme, group, options):
                report = scan(w.path, deep=deep)
                plants = [w.planted[f] for f in planted]
                for fault, plant in zip(planted, plants, strict=True):
                    hits = [f for f in report.findings if f.code in CODES[fault]
                            and _names(f, plant)]
                    assert hits, (fault, plant, [(f.code, f.tensor) for f in report.findings])
                    assert all(f.severity >= Severity.WARNING for f in hits)
                victims = {p.tensor for p in plants} | {p.detail.get("weight") for p in plants}
                stems = {p.detail.get("stem") for p in plants} | {
                    p.detail.get("module") for p in plants}
                for f in findings_at_least(report, Severity.ERROR):
                    named = {f.tensor, f.detail.get("missing")} & victims or any(
                        s and (f.tensor or "").startswith(s) for s in stems)
                    assert named, (planted, f.code, f.tensor, f.message)
