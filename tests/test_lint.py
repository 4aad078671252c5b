"""The project's own tooling as part of the suite: ruff over the Python tree and
mypy --strict over the package (pinned in the test extra, so a new release
cannot fail CI on its own)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("tool", [
    ["ruff", "check", "python", "tests", "bench", "fuzz"],
    [sys.executable, "-m", "mypy"],
])
def test_tool_is_clean(tool: list[str]) -> None:
    if shutil.which(tool[0]) is None and tool[0] != sys.executable:
        pytest.fail(f"{tool[0]} is not installed (it is in the test extra)")
    run = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
