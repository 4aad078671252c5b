#include "shard.h"

#include <string>
#include <vector>

namespace ckptscan {

std::unique_ptr<Shard> open_shard(const std::string& path) {
  auto shard = std::make_unique<Shard>();
  ParsedHeader& h = shard->header;
  std::string err;
  if (!shard->file.open(path, &err)) {
    h.problems.push_back({ErrorCode::kIo, kNoOffset, {}, "cannot open: " + err});
    return shard;
  }
  shard->opened = true;
  const uint64_t size = shard->file.size();
  h.file_size = size;

  // Two reads: the length prefix, then exactly the header it announces.
  uint8_t prefix[32] = {};
  const int64_t got = shard->file.pread(0, prefix, sizeof(prefix), &err);
  if (got < 0) {
    h.problems.push_back({ErrorCode::kIo, 0, {}, "cannot read: " + err});
    return shard;
  }
  ParsedHeader first = parse_header_bytes(prefix, static_cast<size_t>(got), size);
  if (!first.problems.empty() && first.problems.front().code != ErrorCode::kIo) {
    h = std::move(first);  // the prefix alone is bad (too small, too large, LFS ...)
    return shard;
  }
  const uint64_t n = first.header_len;
  // One buffer per thread, reused: a fresh allocation per shard costs zeroed
  // pages. Headers beyond kReuse (rare, or hostile) get their own buffer so
  // that no thread keeps one pinned. Nothing points into it past the parse.
  constexpr uint64_t kReuse = 16u << 20;
  thread_local std::vector<uint8_t> reused;
  std::vector<uint8_t> own;
  std::vector<uint8_t>& buf = n <= kReuse ? reused : own;
  if (buf.size() < n) buf.resize(static_cast<size_t>(n));
  const int64_t hgot = shard->file.pread(8, buf.data(), static_cast<size_t>(n), &err);
  if (hgot < 0 || static_cast<uint64_t>(hgot) != n) {
    h.problems.push_back({ErrorCode::kIo, 8, {},
                          hgot < 0 ? "cannot read the header: " + err
                                   : "file ended while reading the header (it shrank?)"});
    return shard;
  }
  h = parse_header_json(buf.data(), static_cast<size_t>(n), size);
  return shard;
}

IndexTable read_index_file(const std::string& path) {
  MappedFile file;
  std::string err;
  auto unreadable = [&](std::string msg) {
    IndexTable x;
    x.problems.push_back({ErrorCode::kIo, kNoOffset, {}, std::move(msg)});
    return x;
  };
  if (!file.open(path, &err)) return unreadable("cannot read: " + err);
  // 96k entries take 10 MB; a file far beyond any real index is not read.
  constexpr uint64_t kMaxIndexBytes = uint64_t{1} << 30;
  if (file.size() > kMaxIndexBytes) {
    return unreadable("file is " + std::to_string(file.size()) + " bytes, more than the 1 GiB an index can be");
  }
  // Into a pooled buffer: a fresh 10 MB one would fault its pages in anew
  // for every checkpoint of a farm.
  Column<uint8_t> buf(static_cast<size_t>(file.size()));
  const int64_t got = file.pread(0, buf.data(), buf.size(), &err);
  if (got < 0) return unreadable("cannot read: " + err);
  if (static_cast<uint64_t>(got) != file.size()) return unreadable("file ended while being read (it shrank?)");
  return parse_index_json(buf.data(), buf.size());
}

}  // namespace ckptscan
