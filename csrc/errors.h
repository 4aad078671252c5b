// One enum of problem codes with one table of stable strings: the C++ core never
// throws while parsing; it collects Problems and the caller decides.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>

namespace ckptscan {

enum class ErrorCode : uint8_t {
  kIo,                // open / stat / read failed
  kHeaderTooSmall,    // file shorter than the 8-byte length prefix
  kHeaderTooLarge,    // N > 100,000,000
  kHeaderLength,      // 8 + N past the end of the file
  kLfsPointer,        // a Git LFS pointer saved under the shard's name
  kNotUtf8,           // header bytes are not valid UTF-8
  kJsonSyntax,        // malformed JSON
  kJsonDepth,         // nesting deeper than the parser allows
  kHeaderPadding,     // NUL (or other non-whitespace) padding after the JSON
  kNotObject,         // top level or a tensor entry is not an object
  kDuplicateKey,      // a key repeated inside one object (incl. tensor names)
  kMetadata,          // __metadata__ not a map of string -> string
  kMissingField,      // dtype / shape / data_offsets absent
  kBadDtype,          // dtype string not one of the 22
  kBadShape,          // shape not an array of non-negative integers
  kBadOffsets,        // data_offsets not [begin, end] with begin <= end
  kBadNumber,         // negative, fractional, exponent, or beyond u64
  kSizeOverflow,      // numel * bits overflows 64 bits
  kNotByteAligned,    // 4- / 6-bit tensor whose bit count is not a multiple of 8
  kSizeMismatch,      // end - begin != numel * bits / 8
  kOffsetGap,         // a hole between two tensors' data
  kOffsetOverlap,     // two tensors' data overlap (or share one range)
  kTruncated,         // file shorter than the data the header describes
  kTrailingBytes,     // bytes after the last tensor's data
};
inline constexpr int kErrorCodeCount = 24;

inline constexpr std::string_view kErrorNames[kErrorCodeCount] = {
    "io-error",         "header-too-small",  "header-too-large",      "header-length-invalid",
    "lfs-pointer",      "header-not-utf8",   "json-syntax",           "json-too-deep",
    "header-padding",   "not-an-object",     "duplicate-key",         "metadata-invalid",
    "missing-field",    "unknown-dtype",     "shape-invalid",         "offsets-invalid",
    "number-invalid",   "size-overflow",     "not-byte-aligned",      "size-mismatch",
    "data-gap",         "data-overlap",      "truncated",             "trailing-bytes",
};

// One sentence per code, in code order (what `ckptscan codes` prints).
inline constexpr std::string_view kErrorDescriptions[kErrorCodeCount] = {
    "a file could not be opened or read",
    "file shorter than the 8-byte header length",
    "header length above 100,000,000 (not a safetensors file?)",
    "header length runs past the end of the file",
    "a Git LFS pointer saved in place of the shard",
    "header bytes are not UTF-8",
    "header is not valid JSON",
    "header JSON nested too deeply",
    "header padded with NUL bytes instead of spaces",
    "a tensor entry is not a JSON object",
    "a tensor name (or a field) appears twice in one header",
    "__metadata__ is not a map of strings",
    "a tensor entry lacks dtype, shape or data_offsets",
    "dtype is not one of the 22 safetensors dtypes",
    "shape is not a list of integers",
    "data_offsets is not [begin, end] with begin <= end",
    "a negative, fractional or too large number",
    "element count times dtype width overflows",
    "a 4/6-bit tensor that does not fill whole bytes",
    "data_offsets span differs from what dtype and shape need",
    "unused bytes between tensors",
    "two tensors' data overlap",
    "the file is shorter than its header says (by N bytes)",
    "bytes after the last tensor",
};

inline std::string_view error_name(ErrorCode c) { return kErrorNames[static_cast<int>(c)]; }

// Where a problem applies: `offset` is a byte offset in the file (the length
// prefix counts), or kNoOffset; `tensor` is empty when no tensor is concerned.
inline constexpr uint64_t kNoOffset = UINT64_MAX;

struct Problem {
  ErrorCode code;
  uint64_t offset;
  std::string tensor;
  std::string message;
};

}  // namespace ckptscan
