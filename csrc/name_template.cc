#include "name_template.h"

#include <algorithm>
#include <cstring>

#include "hash.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace ckptscan {
namespace {

// Position of the first '.' in p[i, n), or n. Components are short: their
// first bytes are looked at here, the library's scan takes longer ones (a
// call per component cost 4-9 ns, on names of thousands of components).
size_t next_dot(const char* p, size_t i, size_t n) {
  for (const size_t stop = std::min(n, i + 24); i < stop; ++i) {
    if (p[i] == '.') return i;
  }
  const void* dot = std::memchr(p + i, '.', n - i);
  return dot == nullptr ? n : static_cast<size_t>(static_cast<const char*>(dot) - p);
}

// Writes `name`'s template to out (room for 2 * size + 2 bytes: "{}" may
// replace a one-digit component) and its integers to ints; returns the
// template's length. One dotted component at a time.
size_t template_reference(std::string_view name, char* out, std::vector<int64_t>* ints) {
  ints->clear();
  const char* p = name.data();
  const size_t n = name.size();
  size_t w = 0;
  for (size_t start = 0;;) {
    const size_t end = next_dot(p, start, n);
    const size_t len = end - start;
    bool numeric = len > 0 && len <= 18 && static_cast<unsigned>(p[start]) - '0' < 10 &&
                   (len == 1 || p[start] != '0');
    int64_t v = 0;
    for (size_t k = start; numeric && k < end; ++k) {
      const unsigned d = static_cast<unsigned>(p[k]) - '0';
      numeric = d < 10;
      v = v * 10 + static_cast<int64_t>(d);
    }
    if (numeric) {
      out[w++] = '{';
      out[w++] = '}';
      ints->push_back(v);
    } else if (len == 2 && p[start] == '{' && p[start + 1] == '}') {
      // A literal "{}" component could not be told apart from a number's
      // ("{}.0" and "0.{}" would both be "{}.{}"): such a name is its own
      // template, with no integers.
      std::memcpy(out, p, n);
      ints->clear();
      return n;
    } else {
      std::memcpy(out + w, p + start, len);
      w += len;
    }
    if (end == n) return w;
    out[w++] = '.';
    start = end + 1;
  }
}

#if defined(__SSE2__) && defined(__SIZEOF_INT128__)
// Names up to 128 bytes (nearly all) as bit masks: bit i of `dots` / `digits`
// says what name[i] is. Integer components are then found from the masks,
// and only the text between them is copied.
__extension__ typedef unsigned __int128 Bits;
constexpr size_t kMaskBytes = 128;

int ctz128(Bits x) {
  const auto lo = static_cast<uint64_t>(x);
  return lo != 0 ? __builtin_ctzll(lo) : 64 + __builtin_ctzll(static_cast<uint64_t>(x >> 64));
}

// False when the name has a '{' (the literal "{}" rule is the reference's).
bool scan_masks(const char* p, size_t n, Bits* dots, Bits* digits) {
  const __m128i dot = _mm_set1_epi8('.'), zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9),
                brace = _mm_set1_epi8('{');
  Bits d = 0, g = 0;
  for (size_t i = 0; i < n; i += 16) {
    alignas(16) char tail[16] = {};
    const char* src = p + i;
    if (i + 16 > n) {
      std::memcpy(tail, src, n - i);
      src = tail;
    }
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i off = _mm_sub_epi8(v, zero);
    const int is_digit = _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(off, nine), off));
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(v, brace)) != 0) return false;
    d |= static_cast<Bits>(static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, dot)))) << i;
    g |= static_cast<Bits>(static_cast<unsigned>(is_digit)) << i;
  }
  *dots = d;
  *digits = g;
  return true;
}

size_t template_into(std::string_view name, char* out, std::vector<int64_t>* ints) {
  const char* p = name.data();
  const size_t n = name.size();
  Bits dots, digits;
  if (n > kMaskBytes || !scan_masks(p, n, &dots, &digits)) return template_reference(name, out, ints);
  ints->clear();
  const Bits valid = n == kMaskBytes ? ~Bits{0} : (Bits{1} << n) - 1;
  Bits candidates = ((dots << 1) | 1) & valid & digits;  // components starting with a digit
  size_t w = 0, copied = 0;
  while (candidates != 0) {
    const size_t pos = static_cast<size_t>(ctz128(candidates));
    candidates &= candidates - 1;
    const Bits later_dots = dots >> pos;
    const size_t end = later_dots != 0 ? pos + static_cast<size_t>(ctz128(later_dots)) : n;
    const size_t len = end - pos;
    if (len > 18 || (len > 1 && p[pos] == '0')) continue;
    const Bits span = ((Bits{1} << len) - 1) << pos;
    if ((digits & span) != span) continue;
    int64_t v = 0;
    for (size_t k = pos; k < end; ++k) v = v * 10 + (p[k] - '0');
    std::memcpy(out + w, p + copied, pos - copied);
    w += pos - copied;
    out[w++] = '{';
    out[w++] = '}';
    ints->push_back(v);
    copied = end;
  }
  std::memcpy(out + w, p + copied, n - copied);
  return w + (n - copied);
}
#else
size_t template_into(std::string_view name, char* out, std::vector<int64_t>* ints) {
  return template_reference(name, out, ints);
}
#endif

// Template string -> id; the strings themselves live in `templates` (looked
// up by id, so that vector may grow freely).
class TemplateIndex {
 public:
  uint32_t find_or_add(std::string_view tmpl, std::vector<std::string>* templates) {
    if ((templates->size() + 1) * 2 > ids_.size()) grow(*templates);
    const uint64_t h = hash_bytes(tmpl, seed_);
    const size_t mask = ids_.size() - 1;
    size_t i = h & mask;
    for (; ids_[i] != kEmpty; i = (i + 1) & mask) {
      if (hashes_[i] == h && (*templates)[ids_[i]] == tmpl) return ids_[i];
    }
    ids_[i] = static_cast<uint32_t>(templates->size());
    hashes_[i] = h;
    templates->emplace_back(tmpl);
    return ids_[i];
  }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  void grow(const std::vector<std::string>& templates) {
    const size_t size = std::max<size_t>(64, ids_.size() * 2);
    ids_.assign(size, kEmpty);
    hashes_.assign(size, 0);
    for (uint32_t id = 0; id < templates.size(); ++id) {
      const uint64_t h = hash_bytes(templates[id], seed_);
      size_t i = h & (size - 1);
      while (ids_[i] != kEmpty) i = (i + 1) & (size - 1);
      ids_[i] = id;
      hashes_[i] = h;
    }
  }
  uint64_t seed_ = hash_seed();
  std::vector<uint32_t> ids_;
  std::vector<uint64_t> hashes_;
};

}  // namespace

NameTemplates name_templates(const TensorTable& table) {
  NameTemplates out;
  const size_t n = table.size();
  out.template_id.reserve(n);
  out.ints_start.reserve(n + 1);
  out.ints.reserve(2 * n);
  TemplateIndex ids;
  std::vector<char> buf;
  std::vector<int64_t> ints;
  uint32_t last = UINT32_MAX;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view name = table.name(i);
    if (buf.size() < 2 * name.size() + 2) buf.resize(2 * name.size() + 2);
    const std::string_view tmpl(buf.data(), template_into(name, buf.data(), &ints));
    // Neighbouring rows usually share a template.
    if (last == UINT32_MAX || out.templates[last] != tmpl) last = ids.find_or_add(tmpl, &out.templates);
    out.template_id.push_back(last);
    out.ints.insert(out.ints.end(), ints.begin(), ints.end());
    out.ints_start.push_back(out.ints.size());
  }
  return out;
}

void name_template(std::string_view name, std::string* tmpl, std::vector<int64_t>* ints) {
  tmpl->resize(2 * name.size() + 2);
  tmpl->resize(template_into(name, tmpl->data(), ints));
}

void name_template_reference(std::string_view name, std::string* tmpl, std::vector<int64_t>* ints) {
  tmpl->resize(2 * name.size() + 2);
  tmpl->resize(template_reference(name, tmpl->data(), ints));
}

}  // namespace ckptscan
