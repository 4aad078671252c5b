// One enum of problem codes with one table of stable strings and one of
// descriptions: the C++ core never throws while parsing; it collects Problems
// (at most kMaxProblemsPerCode of each code, the rest counted) and the caller
// decides.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

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
  kNameTooLong,       // a tensor name above kMaxNameBytes (header.h)
};
inline constexpr int kErrorCodeCount = 25;

inline constexpr std::string_view kErrorNames[kErrorCodeCount] = {
    "io-error",         "header-too-small",  "header-too-large",      "header-length-invalid",
    "lfs-pointer",      "header-not-utf8",   "json-syntax",           "json-too-deep",
    "header-padding",   "not-an-object",     "duplicate-key",         "metadata-invalid",
    "missing-field",    "unknown-dtype",     "shape-invalid",         "offsets-invalid",
    "number-invalid",   "size-overflow",     "not-byte-aligned",      "size-mismatch",
    "data-gap",         "data-overlap",      "truncated",             "trailing-bytes",
    "name-too-long",
};

// One sentence per code, in the enum's order: what the finding means to a
// reader of the report (the Python findings registry takes these).
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
    "a tensor name longer than 4,096 bytes (real ones are under 300): the entry is not read",
};

inline std::string_view error_name(ErrorCode c) { return kErrorNames[static_cast<int>(c)]; }
inline std::string_view error_description(ErrorCode c) { return kErrorDescriptions[static_cast<int>(c)]; }

// Where a problem applies: `offset` is a byte offset in the file (the length
// prefix counts), or kNoOffset; `tensor` is empty when no tensor is concerned.
inline constexpr uint64_t kNoOffset = UINT64_MAX;

struct Problem {
  ErrorCode code;
  uint64_t offset;
  std::string tensor;
  std::string message;
};

// A parse (one header, one index) keeps at most this many problems of each
// code and only counts the rest. A hostile file can repeat one fault a million
// times in a few MB (10^6 copies of a __metadata__ key, 10^5 tensors on one
// byte range): problem objects, their messages and the report built from them
// would cost a hundred times the file (1.5 GB for a 14 MB header). The first
// 16 say what is wrong and where; the count says how often. A real checkpoint
// stays far below it in all but whole-file faults, where 16 examples suffice.
inline constexpr uint32_t kMaxProblemsPerCode = 16;

// Per code, the problems found beyond kMaxProblemsPerCode.
using SuppressedCounts = std::array<uint64_t, kErrorCodeCount>;

// Where a parser's problems go: a list holding at most kMaxProblemsPerCode of
// each code, and the counts of the others.
class ProblemSink {
 public:
  ProblemSink(std::vector<Problem>* kept, SuppressedCounts* suppressed) : kept_(kept), suppressed_(suppressed) {}

  // Records a problem, or past the cap only counts it. `message` is a string
  // or a callable returning one: a callable runs only for a problem that is
  // kept, so that a repeated fault does not build a million messages.
  template <class Message>
  void add(ErrorCode code, uint64_t offset, std::string_view tensor, Message&& message) {
    const int c = static_cast<int>(code);
    if (held_[c] == kMaxProblemsPerCode) {
      ++(*suppressed_)[c];
      return;
    }
    ++held_[c];
    if constexpr (std::is_invocable_v<Message>) {
      kept_->push_back({code, offset, std::string(tensor), message()});
    } else {
      kept_->push_back({code, offset, std::string(tensor), std::string(std::forward<Message>(message))});
    }
  }

  // Forgets every problem and count (a header that is not UTF-8 reports that alone).
  void clear() {
    kept_->clear();
    suppressed_->fill(0);
    held_.fill(0);
  }

 private:
  std::vector<Problem>* kept_;
  SuppressedCounts* suppressed_;
  std::array<uint32_t, kErrorCodeCount> held_{};
};

// Input text as a problem quotes it: whole up to kShownBytes, else its first
// kShownBytes (cut back to a UTF-8 character boundary) and "...". A name or
// key of megabytes would otherwise be copied into every message about it.
inline constexpr size_t kShownBytes = 100;
inline std::string shown(std::string_view s) {
  if (s.size() <= kShownBytes) return std::string(s);
  size_t cut = kShownBytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return std::string(s.substr(0, cut)) + "...";
}

}  // namespace ckptscan
