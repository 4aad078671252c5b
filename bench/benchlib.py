"""What every script in bench/ shares (run as ``python bench/x.py``, which puts
this folder on sys.path): `describe()`, one line saying which machine a
benchmark ran on (the CPU model, the SIMD flags the kernels use, the Python,
numpy and ckptscan versions and the load average: these machines are shared, a
figure taken under load says so), and `ensure_importable()`."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "python"

SIMD_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512vbmi", "bmi2", "f16c",
              "asimd")


def describe() -> str:
    model, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("", platform.machine()):
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = f" {value.strip()} "
    except OSError:
        pass
    have = " ".join(f for f in SIMD_FLAGS if f" {f} " in flags) or "-"
    versions = f"python {platform.python_version()}"
    try:
        import numpy

        versions += f", numpy {numpy.__version__}"
        import ckptscan

        versions += f", ckptscan {ckptscan.__version__}"
    except ImportError:
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{model}; {os.cpu_count()} logical CPUs; SIMD: {have}; {versions}; "
            f"load average {load}")


def ensure_importable() -> None:
    """ckptscan from this tree's python/ when no install provides it."""
    if importlib.util.find_spec("ckptscan") is None:
        sys.path.insert(0, str(SRC))
