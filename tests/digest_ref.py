"""The 128-bit digest of csrc/digest.cc, written again in plain Python from its
description (the test oracle): four 64-bit lanes over 32-byte stripes of
little-endian words, the remaining words into lanes 0.., the last 1-7 bytes
with their count in the top byte, then a fold with the length and a
shift-xor-multiply finish into (lo, hi)."""

from __future__ import annotations

M = (1 << 64) - 1
K0, K1, K2, K3 = (0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93, 0xA0761D6478BD642F,
                  0xE7037ED1A0B428DB)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & M


def _round(lane: int, word: int) -> int:
    lane = (lane + word * K1) & M
    return (_rotl(lane, 29) * K0) & M


def _finish(x: int) -> int:
    x ^= x >> 32
    x = (x * K2) & M
    x ^= x >> 29
    x = (x * K3) & M
    return x ^ (x >> 32)


def digest128(data: bytes) -> bytes:
    n = len(data)
    v = [K0, K1, K2, K3]
    i = 0
    while i + 32 <= n:
        for k in range(4):
            v[k] = _round(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
        i += 32
    lane = 0
    while i + 8 <= n:
        v[lane] = _round(v[lane], int.from_bytes(data[i:i + 8], "little"))
        i, lane = i + 8, lane + 1
    if i < n:
        v[lane] = _round(v[lane], int.from_bytes(data[i:], "little") ^ ((n - i) << 56))
    a = (v[0] + _rotl(v[1], 17) + _rotl(v[2], 31) + _rotl(v[3], 47) + n * K2) & M
    b = v[1] ^ _rotl(v[2], 13) ^ _rotl(v[3], 23) ^ _rotl(v[0], 41) ^ ((n * K3) & M)
    lo = _finish(a ^ _rotl(b, 32))
    hi = _finish((b + lo * K1) & M)
    return lo.to_bytes(8, "little") + hi.to_bytes(8, "little")


def tensor_digest(data: bytes, piece: int = 16 << 20) -> bytes:
    """What `ckptscan diff --deep` computes for a tensor's bytes."""
    parts = b"".join(digest128(data[k:k + piece]) for k in range(0, len(data), piece))
    return digest128(parts + len(data).to_bytes(8, "little"))
