"""The kernels' C++ tests built with AddressSanitizer + UBSan, as CI runs them
(tests/cpp/build.sh): the differential test (every SIMD path this CPU runs
against the scalar reference, the blocks of 2**64 - 1 through the entry points;
the NEON path too, cross-built and run under qemu-user, where those are
installed, as in CI) and the kernel fuzz checks (fuzz/kernel_fuzz.h) over the seed corpus, the
regression inputs (tests/data/kernel_fuzz_regressions/) and generated inputs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"),
                    reason="tests/cpp/build.sh builds the x86 paths")
def test_kernels_under_asan_ubsan(tmp_path: Path) -> None:
    if shutil.which("g++") is None:
        if IN_CI:
            pytest.fail("g++ is not installed: the sanitizer build must run in CI")
        pytest.skip("g++ is not installed")
    # the NEON path, cross-built and run under qemu-user (CI installs both)
    cross = bool(shutil.which("aarch64-linux-gnu-g++") and shutil.which("qemu-aarch64"))
    if IN_CI and not cross:
        pytest.fail("CI tests the NEON kernels under qemu: install g++-aarch64-linux-gnu and "
                    "qemu-user")
    env = dict(os.environ, TMPDIR=str(tmp_path),
               ASAN_OPTIONS="detect_leaks=0:abort_on_error=1",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    run = subprocess.run(
        ["sh", str(ROOT / "tests/cpp/build.sh"), "-O1", "-fsanitize=address,undefined",
         "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-4000:]
    assert "runtime error" not in output and "AddressSanitizer" not in output, output[-4000:]
    runs = 2 if cross else 1  # x86 (every path this CPU has), then aarch64
    assert output.count(" implementations checked, 0 failures") == runs, output[-4000:]
    regressions = len(list((ROOT / "tests/data/kernel_fuzz_regressions").iterdir()))
    corpus = len(list((ROOT / "fuzz/kernel_corpus").iterdir()))
    passed = f"kernel fuzz checks passed: {regressions + corpus} files"
    assert output.count(passed) == runs, output[-4000:]
