// Runs the header parser over files and checks its invariants (built with
// ASan/UBSan by tests/test_sanitizers.py).
//
//   parser_driver PATH...     a PATH that is a directory means each regular file in it
//
// For each file: parse_header_bytes on its bytes (the whole file, then only its
// first min(size, 8 + N) bytes) and open_shard on its path; every result must
// satisfy fuzz/invariants.h, and all three must agree. As the fuzz target does,
// the bytes past the first 8 are also parsed as an index.json and joined with
// the header's table (check_index). Prints one line per file,
//   <path> <n_tensors> <problem codes, comma separated, or "ok">
// and exits 1 if any invariant was violated (details on stderr), 2 on bad usage.
// A path that cannot be read is not a violation: open_shard reports io-error.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "header.h"
#include "index_json.h"
#include "invariants.h"
#include "shard.h"

namespace fs = std::filesystem;
using ckptscan::ParsedHeader;

namespace {

std::string codes_of(const ParsedHeader& h) {
  std::string out;
  for (const auto& p : h.problems) {
    if (!out.empty()) out += ',';
    out += ckptscan::error_name(p.code);
  }
  return out.empty() ? "ok" : out;
}

bool same_problems(const ParsedHeader& a, const ParsedHeader& b) {
  if (a.problems.size() != b.problems.size()) return false;
  for (size_t i = 0; i < a.problems.size(); ++i) {
    const auto &x = a.problems[i], &y = b.problems[i];
    if (x.code != y.code || x.offset != y.offset || x.tensor != y.tensor || x.message != y.message) return false;
  }
  return true;
}

std::string compare(const ParsedHeader& a, const ParsedHeader& b) {
  if (!same_problems(a, b)) return "problems differ: " + codes_of(a) + " vs " + codes_of(b);
  std::string err = ckptscan_fuzz::check_same_header(a, b);
  if (!err.empty()) return err;
  if (a.file_size != b.file_size) return "file_size differs";
  if (a.suppressed != b.suppressed) return "suppressed counts differ";
  return {};
}

// Returns false on an invariant violation.
bool run_one(const std::string& path) {
  bool good = true;
  auto violation = [&](const char* what, const std::string& err) {
    std::fprintf(stderr, "VIOLATION %s (%s): %s\n", path.c_str(), what, err.c_str());
    good = false;
  };

  const auto shard = ckptscan::open_shard(path);
  const ParsedHeader& hs = shard->header;
  if (std::string err = ckptscan_fuzz::check_header(hs, hs.file_size); !err.empty()) violation("open_shard", err);
  if (shard->opened && hs.file_size != shard->file.size()) violation("open_shard", "file_size != the file's size");

  std::ifstream in(path, std::ios::binary);
  std::vector<uint8_t> bytes;
  const bool readable = shard->opened && in.good();
  if (readable) bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());

  if (readable) {
    const uint64_t size = bytes.size();
    const ParsedHeader hb = ckptscan::parse_header_bytes(bytes.data(), bytes.size(), size);
    std::string err = ckptscan_fuzz::check_header(hb, size);
    if (err.empty()) err = ckptscan_fuzz::check_round_trip(hb);
    if (!err.empty()) violation("parse_header_bytes", err);
    if (!(err = compare(hb, hs)).empty()) violation("parse_header_bytes vs open_shard", err);
    if (size > 8) {
      const ckptscan::IndexTable x = ckptscan::parse_index_json(bytes.data() + 8, bytes.size() - 8);
      if (!(err = ckptscan_fuzz::check_index(x, bytes.size() - 8, hb)).empty()) violation("as an index", err);
    }

    // The parser needs only the first min(size, 8 + N) bytes.
    if (size >= 8) {
      uint64_t n = 0;
      for (int k = 7; k >= 0; --k) n = (n << 8) | bytes[k];
      if (n <= ckptscan::kMaxHeaderLen && 8 + n < size) {
        const ParsedHeader hp = ckptscan::parse_header_bytes(bytes.data(), static_cast<size_t>(8 + n), size);
        if (!(err = compare(hb, hp)).empty()) violation("whole file vs its header bytes only", err);
      }
    }
  }
  std::printf("%s %zu %s\n", path.c_str(), hs.table.size(), codes_of(hs).c_str());
  return good;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  std::vector<std::string> paths;
  for (int i = 1; i < argc; ++i) {
    std::error_code ec;
    if (fs::is_directory(argv[i], ec)) {
      std::vector<std::string> in_dir;
      for (const auto& e : fs::directory_iterator(argv[i], ec)) {
        if (e.is_regular_file(ec)) in_dir.push_back(e.path().string());
      }
      std::sort(in_dir.begin(), in_dir.end());
      paths.insert(paths.end(), in_dir.begin(), in_dir.end());
    } else {
      paths.push_back(argv[i]);
    }
  }
  bool good = true;
  for (const auto& p : paths) good &= run_one(p);
  std::fflush(stdout);
  return good ? 0 : 1;
}
