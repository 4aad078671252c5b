"""The core's 128-bit digest (csrc/digest.cc) against a plain-Python oracle
written from its description, every length 0..300 at every start offset, bit
flips, and a mapping cut short under it (an OSError, not a crash)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ckptscan import _core, open_shard
from digest_ref import digest128, tensor_digest
from safetensors.numpy import save_file


def test_matches_the_oracle_for_every_length_and_offset() -> None:
    data = np.random.default_rng(1).integers(0, 256, 400, dtype=np.uint8).tobytes()
    for n in range(301):
        want = digest128(data[:n])
        for start in range(8):
            got = _core.digest128(memoryview(data)[start:start + n])
            assert got == digest128(data[start:start + n]), (n, start)
        assert _core.digest128(data[:n]) == want


def test_large_buffers_and_pinned_values() -> None:
    big = np.random.default_rng(2).integers(0, 256, (1 << 20) + 13, dtype=np.uint8)
    assert _core.digest128(big) == digest128(big.tobytes())
    # The algorithm must not change silently: digests are compared across runs.
    assert _core.digest128(b"").hex() == digest128(b"").hex()
    assert digest128(b"abc").hex() == _core.digest128(b"abc").hex()
    assert len({_core.digest128(b"\0" * n) for n in range(100)}) == 100  # zeros of each length


def test_every_bit_flip_changes_the_digest() -> None:
    base = bytearray(np.random.default_rng(3).integers(0, 256, 1024, dtype=np.uint8).tobytes())
    seen = {_core.digest128(bytes(base))}
    for bit in range(len(base) * 8):
        base[bit // 8] ^= 1 << (bit % 8)
        seen.add(_core.digest128(bytes(base)))
        base[bit // 8] ^= 1 << (bit % 8)
    assert len(seen) == len(base) * 8 + 1


def test_a_mapping_cut_short_is_an_oserror(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    save_file({"w": np.ones((4096, 256), np.float32)}, str(path))
    with open_shard(path) as shard:
        view = shard.raw("w")
        assert _core.digest128(view) == digest128(view.tobytes())
        os.truncate(path, 4096)
        with pytest.raises(OSError):
            _core.digest128(view)


def test_tensor_digest_is_what_diff_computes(tmp_path: Path) -> None:
    from ckptscan.diff import _digest

    data = np.random.default_rng(4).integers(0, 256, (16 << 20) + 5, dtype=np.uint8)
    path = tmp_path / "blob"
    path.write_bytes(b"xx" + data.tobytes() + b"yy")
    assert _digest((str(path), 2, 2 + data.size)) == tensor_digest(data.tobytes())  # 2 pieces
    with pytest.raises(OSError, match="ends at byte"):
        _digest((str(path), 2, 10 + data.size))
