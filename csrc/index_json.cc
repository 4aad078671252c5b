#include "index_json.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include "header.h"  // kMaxNameBytes
#include "json_scan.h"

namespace ckptscan {
namespace {

class IndexParser : public json::Scanner {
 public:
  // Offsets are from the file's start (base 0).
  IndexParser(const uint8_t* json, size_t n, IndexTable* index)
      : Scanner(json, n, 0, &index->problems, &index->suppressed), x_(*index) {}

  void run();

 private:
  void parse_weight_map();
  // "name": "file" with neither string escaped, read in place: false, leaving
  // the position unchanged, otherwise.
  bool plain_entry(std::string_view* name, std::string_view* file);
  void parse_metadata();

  IndexTable& x_;
  std::string key_;
};

void IndexParser::run() {
  const size_t bad = json::first_invalid_utf8(p_, n_);
  if (bad != n_) {
    problem(ErrorCode::kNotUtf8, bad, {}, "index is not valid UTF-8");
    return;
  }
  bool seen_map = false, seen_meta = false;
  try {
    if (!peek('{')) expected("'{' opening the index");
    members(&key_, [&](size_t kpos) {
      bool* seen = std::string_view(key_) == "weight_map" ? &seen_map
                   : std::string_view(key_) == "metadata" ? &seen_meta : nullptr;
      if (seen != nullptr && *seen) {
        problem(ErrorCode::kDuplicateKey, kpos, {}, "\"" + key_ + "\" appears twice");
        skip_value(1);
      } else if (seen == &seen_map) {
        seen_map = true;
        parse_weight_map();
      } else if (seen == &seen_meta) {
        seen_meta = true;
        parse_metadata();
      } else {
        skip_value(1);
      }
    });
    skip_ws();
    if (i_ < n_) fatal(ErrorCode::kJsonSyntax, i_, "unexpected bytes after the index's closing '}'");
  } catch (const Stop&) {
    std::vector<Problem> problems = std::move(x_.problems);
    const SuppressedCounts suppressed = x_.suppressed;
    x_ = IndexTable{};  // no partial table
    x_.problems = std::move(problems);
    x_.suppressed = suppressed;
    return;
  }
  if (!seen_map) problem(ErrorCode::kMissingField, 0, {}, "index has no \"weight_map\"");
}

void IndexParser::parse_weight_map() {
  skip_ws();
  if (i_ >= n_ || p_[i_] != '{') {
    const size_t pos = i_;
    skip_value(1);
    problem(ErrorCode::kNotObject, pos, {}, "\"weight_map\" is not an object");
    return;
  }
  // Real indexes spend ~100 bytes per entry, ~60 of them on the name.
  const size_t guess = std::min<size_t>(n_ / 100 + 1, size_t{1} << 20);
  x_.names.reserve(guess * 64);
  for (auto* v : {&x_.name_start, &x_.offset}) v->reserve(guess + 1);
  x_.shard.reserve(guess);
  std::unordered_map<std::string, uint32_t> shard_ids;
  uint32_t last = UINT32_MAX;
  auto add = [&](std::string_view name, std::string_view file, size_t kpos) {
    if (name.size() > kMaxNameBytes) {
      problem(ErrorCode::kNameTooLong, kpos, shown(name), [&] {
        return "weight_map name of " + std::to_string(name.size()) + " bytes, more than the " +
               std::to_string(kMaxNameBytes) + "-byte limit: entry not read";
      });
      return;
    }
    // Consecutive entries usually name the same shard.
    if (last == UINT32_MAX || x_.shard_names[last] != file) {
      auto it = shard_ids.find(std::string(file));
      if (it == shard_ids.end()) {
        it = shard_ids.emplace(std::string(file), static_cast<uint32_t>(x_.shard_names.size())).first;
        x_.shard_names.emplace_back(file);
      }
      last = it->second;
    }
    x_.names.insert(x_.names.end(), name.begin(), name.end());
    x_.name_start.push_back(x_.names.size());
    x_.shard.push_back(last);
    x_.offset.push_back(file_offset(kpos));
  };
  auto plain = [&] {
    const size_t kpos = i_;
    std::string_view name, file;
    if (!plain_entry(&name, &file)) return false;
    add(name, file, kpos);
    return true;
  };
  members(&key_, plain, [&](size_t kpos) {  // escapes, or not a string value
    skip_ws();
    const size_t vpos = i_;
    if (i_ >= n_ || p_[i_] != '"') {
      skip_value(2);
      problem(ErrorCode::kNotObject, vpos, shown(key_), "weight_map value is not a file name");
      return;
    }
    parse_string(&scratch_);
    add(key_, scratch_, kpos);
  });
}

// (The index was checked for UTF-8 as a whole.)
bool IndexParser::plain_entry(std::string_view* name, std::string_view* file) {
  auto plain_string = [&](size_t at, std::string_view* out) -> size_t {
    if (at >= n_ || p_[at] != '"') return 0;
    const size_t close = json::plain_run(p_, n_, at + 1);
    if (close >= n_ || p_[close] != '"') return 0;
    *out = {reinterpret_cast<const char*>(p_ + at + 1), close - at - 1};
    return close + 1;
  };
  auto ws = [&](size_t at) {
    while (at < n_ && json::is_ws(p_[at])) ++at;
    return at;
  };
  size_t j = plain_string(i_, name);
  if (j == 0) return false;
  j = ws(j);
  if (j >= n_ || p_[j] != ':') return false;
  j = plain_string(ws(j + 1), file);
  if (j == 0) return false;
  i_ = j;
  return true;
}

// "metadata": only total_size matters; writers store it as an integer or a
// float, and other keys are free-form.
void IndexParser::parse_metadata() {
  skip_ws();
  if (i_ >= n_ || p_[i_] != '{') {
    skip_value(1);
    return;
  }
  members(&key_, [&](size_t) {
    skip_ws();
    uint64_t v;
    const size_t vpos = i_;
    const uint8_t* q = std::string_view(key_) == "total_size" ? json::read_u64(p_ + i_, p_ + n_, &v) : nullptr;
    if (q != nullptr && (q == p_ + n_ || (*q != '.' && *q != 'e' && *q != 'E'))) {
      i_ = static_cast<size_t>(q - p_);
      x_.has_total_size = true;
      x_.total_size = v;
    } else {
      i_ = vpos;
      skip_value(2);
    }
  });
}

}  // namespace

IndexTable parse_index_json(const uint8_t* json, size_t n) {
  IndexTable out;
  IndexParser(json, n, &out).run();
  return out;
}

}  // namespace ckptscan
