// A fast 128-bit digest of bytes, to tell whether two tensors hold the same
// bytes (`ckptscan diff --deep`). Not cryptographic: it answers "did these
// bytes change?", not "could someone forge a collision?". Fixed constants, no
// seed: the same bytes give the same digest in every process and on every
// machine (little-endian words, whatever the host's byte order).
#pragma once
#include <cstddef>
#include <cstdint>

namespace ckptscan {

struct Digest128 {
  uint64_t lo;
  uint64_t hi;
};

// Four independent 64-bit lanes each take one word of every 32-byte stripe
// (multiply, add, rotate, multiply: a bijection of the lane for a given word
// and of the word for a given lane, so a changed word always changes its lane),
// then the lanes and the length are folded and finalised into two words.
Digest128 digest128(const uint8_t* p, size_t n);

}  // namespace ckptscan
