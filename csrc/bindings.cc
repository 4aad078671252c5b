// The only C++ file that sees Python: converts between the pure C++ core
// (mapped_file, header, kernels) and Python objects, and releases the GIL
// around every parse and kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "digest.h"
#include "dtype.h"
#include "errors.h"
#include "header.h"
#include "index_json.h"
#include "kernels/kernels.h"
#include "mapped_file.h"
#include "name_match.h"
#include "name_template.h"
#include "shard.h"

namespace py = pybind11;

// ---- reader (mapped_file, header) --------------------------------------

namespace {

using ckptscan::ParsedHeader;
using ckptscan::TensorTable;

// Python's handle on a shard. The C++ Shard is shared with every raw view
// (through a capsule) so that the mapping outlives close() while views exist.
class PyShard {
 public:
  explicit PyShard(std::shared_ptr<ckptscan::Shard> s) : s_(std::move(s)) {}

  const ParsedHeader& header() const { return s_->header; }
  const TensorTable& table() const { return s_->header.table; }
  const std::shared_ptr<ckptscan::Shard>& shard() const { return s_; }

  // The rows' name templates, computed on first use (the report needs them,
  // a reader may not). Called with the GIL held, which serialises the first use.
  const ckptscan::NameTemplates& templates() {
    std::call_once(templates_once_, [this] { templates_ = ckptscan::name_templates(table()); });
    return templates_;
  }

  // Row of `name`, or -1. The map is built on first use only.
  int64_t index(std::string_view name) {
    std::call_once(index_once_, [this] {
      const TensorTable& t = table();
      index_.reserve(t.size());
      for (size_t i = 0; i < t.size(); ++i) index_.emplace(t.name(i), static_cast<int64_t>(i));
    });
    auto it = index_.find(name);
    return it == index_.end() ? -1 : it->second;
  }

 private:
  std::shared_ptr<ckptscan::Shard> s_;
  std::once_flag index_once_, templates_once_;
  ckptscan::NameTemplates templates_;
  std::unordered_map<std::string_view, int64_t> index_;
};

// A list of n names as Python str. Names are almost always ASCII, which
// needs no decoding: PyUnicode_New + memcpy (UTF-8 was validated when parsed).
template <class Name>
py::list name_list(size_t n, Name&& name) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(n));
  if (list == nullptr) throw py::error_already_set();
  py::list out = py::reinterpret_steal<py::list>(list);
  for (size_t i = 0; i < n; ++i) {
    const std::string_view v = name(i);
    const bool ascii = std::all_of(v.begin(), v.end(), [](char c) { return (c & 0x80) == 0; });
    PyObject* str;
    if (ascii) {
      str = PyUnicode_New(static_cast<Py_ssize_t>(v.size()), 127);
      if (str != nullptr) std::memcpy(PyUnicode_1BYTE_DATA(str), v.data(), v.size());
    } else {
      str = PyUnicode_DecodeUTF8(v.data(), static_cast<Py_ssize_t>(v.size()), "strict");
    }
    if (str == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), str);
  }
  return out;
}

// A read-only numpy view of a column, owned by the Python shard object.
template <class T, class A>
py::array column(const std::vector<T, A>& v, py::handle owner) {
  py::array a(py::dtype::of<T>(), {static_cast<py::ssize_t>(v.size())}, {sizeof(T)}, v.data(), owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

size_t checked_row(const PyShard& s, int64_t i) {
  if (i < 0 || static_cast<size_t>(i) >= s.table().size()) throw py::index_error("tensor index out of range");
  return static_cast<size_t>(i);
}

py::tuple shape_of(const TensorTable& t, size_t i) {
  const size_t a = t.shape_start[i], b = t.shape_start[i + 1];
  py::tuple out(b - a);
  for (size_t k = a; k < b; ++k) out[k - a] = py::int_(t.dims[k]);
  return out;
}

py::list problems_of(const std::vector<ckptscan::Problem>& problems) {
  py::list out;
  for (const auto& p : problems) {
    out.append(py::make_tuple(std::string(ckptscan::error_name(p.code)),
                              p.offset == ckptscan::kNoOffset ? py::object(py::none()) : py::int_(p.offset),
                              p.tensor.empty() ? py::object(py::none()) : py::str(p.tensor), p.message));
  }
  return out;
}

// {code: count} of the problems past the per-code cap (codes with none left out).
py::dict suppressed_of(const ckptscan::SuppressedCounts& counts) {
  py::dict out;
  for (int c = 0; c < ckptscan::kErrorCodeCount; ++c) {
    if (counts[c] != 0) out[py::str(std::string(ckptscan::kErrorNames[c]))] = counts[c];
  }
  return out;
}

// Zero-copy uint8 view of row i's bytes in the mapping. The file's size is
// checked again first: touching pages past the end of a file that shrank
// would raise SIGBUS.
py::array raw_view(PyShard& s, int64_t row, bool populate) {
  const size_t i = checked_row(s, row);
  const auto& sh = s.shard();
  const TensorTable& t = s.table();
  const uint64_t begin = t.begin[i], end = t.end[i];
  if (!sh->opened) throw std::runtime_error("shard was parsed from memory, it has no file");
  std::string err;
  const int64_t now = sh->file.current_size(&err);
  if (now < 0) throw std::runtime_error("cannot stat the file: " + err);
  if (static_cast<uint64_t>(now) < end || sh->file.size() < end) {
    throw std::runtime_error("tensor data ends at byte " + std::to_string(end) + " but the file has " +
                             std::to_string(std::min<uint64_t>(now, sh->file.size())) + " bytes");
  }
  const uint8_t* base = nullptr;
  if (end > begin) {
    base = sh->file.map(&err);
    if (base == nullptr) throw std::runtime_error(err);
    if (populate) {
      py::gil_scoped_release nogil;
      sh->file.prefault(begin, end - begin);
    }
  }
  static const uint8_t kEmpty = 0;
  auto* keep = new std::shared_ptr<ckptscan::Shard>(sh);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<ckptscan::Shard>*>(p); });
  py::array a(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(end - begin)}, {1},
              base != nullptr ? base + begin : &kEmpty, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}


// Shard.pages(): populate or release part of a row's pages (no-op before the
// file is mapped, or for a range outside the row).
void row_pages(PyShard& s, int64_t row, uint64_t start, uint64_t stop, bool populate) {
  const size_t i = checked_row(s, row);
  const auto& sh = s.shard();
  const TensorTable& t = s.table();
  const uint64_t begin = t.begin[i], end = t.end[i];
  if (!sh->opened || stop <= start || start >= end - begin) return;
  const uint64_t len = std::min<uint64_t>(stop, end - begin) - start;
  py::gil_scoped_release nogil;
  if (populate) sh->file.prefault(begin + start, len);
  else sh->file.release(begin + start, len);
}

}  // namespace

// A parsed index.json, kept alive by the Python object.
struct PyIndex {
  ckptscan::IndexTable table;
};

template <class T>
py::array owned_column(std::vector<T>&& v) {
  auto* keep = new std::vector<T>(std::move(v));
  py::capsule owner(keep, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array(py::dtype::of<T>(), {static_cast<py::ssize_t>(keep->size())}, {sizeof(T)},
                   keep->data(), owner);
}

static void bind_reader(py::module_& m) {
  py::list dtypes;
  for (const auto& d : ckptscan::kDtypes) dtypes.append(py::make_tuple(std::string(d.name), d.bits));
  m.attr("DTYPES") = py::tuple(dtypes);
  py::list codes;
  py::dict descriptions;
  for (int c = 0; c < ckptscan::kErrorCodeCount; ++c) {
    codes.append(std::string(ckptscan::kErrorNames[c]));
    descriptions[py::str(std::string(ckptscan::kErrorNames[c]))] = std::string(ckptscan::kErrorDescriptions[c]);
  }
  m.attr("ERROR_CODES") = py::tuple(codes);
  m.attr("ERROR_DESCRIPTIONS") = descriptions;
  m.attr("MAX_HEADER_LEN") = ckptscan::kMaxHeaderLen;
  m.attr("MAX_NAME_BYTES") = ckptscan::kMaxNameBytes;
  m.attr("MAX_PROBLEMS_PER_CODE") = ckptscan::kMaxProblemsPerCode;

  py::class_<PyShard, std::shared_ptr<PyShard>>(m, "Shard")
      .def_property_readonly("path", [](const PyShard& s) { return s.shard()->file.path(); })
      .def_property_readonly("opened", [](const PyShard& s) { return s.shard()->opened; })
      .def_property_readonly("file_size", [](const PyShard& s) { return s.header().file_size; })
      .def_property_readonly("header_len", [](const PyShard& s) { return s.header().header_len; })
      .def_property_readonly("data_start", [](const PyShard& s) { return s.header().data_start; })
      .def_property_readonly("data_end", [](const PyShard& s) { return s.header().data_end; })
      .def_property_readonly("problems", [](const PyShard& s) { return problems_of(s.header().problems); })
      .def_property_readonly("suppressed", [](const PyShard& s) { return suppressed_of(s.header().suppressed); })
      .def_property_readonly("metadata",
                             [](const PyShard& s) -> py::object {
                               if (!s.header().has_metadata) return py::none();
                               py::dict d;
                               for (const auto& [k, v] : s.header().metadata) d[py::str(k)] = py::str(v);
                               return std::move(d);
                             })
      .def("__len__", [](const PyShard& s) { return s.table().size(); })
      .def_property_readonly("dtype_codes", [](py::object self) { return column(self.cast<PyShard&>().table().dtype, self); })
      .def_property_readonly("begins", [](py::object self) { return column(self.cast<PyShard&>().table().begin, self); })
      .def_property_readonly("ends", [](py::object self) { return column(self.cast<PyShard&>().table().end, self); })
      .def_property_readonly("numels", [](py::object self) { return column(self.cast<PyShard&>().table().numel, self); })
      .def_property_readonly("template_ids", [](py::object self) { return column(self.cast<PyShard&>().templates().template_id, self); })
      .def_property_readonly("shape_starts", [](py::object self) { return column(self.cast<PyShard&>().table().shape_start, self); })
      .def_property_readonly("dims", [](py::object self) { return column(self.cast<PyShard&>().table().dims, self); })
      .def_property_readonly("int_starts", [](py::object self) { return column(self.cast<PyShard&>().templates().ints_start, self); })
      .def_property_readonly("ints", [](py::object self) { return column(self.cast<PyShard&>().templates().ints, self); })
      .def_property_readonly("templates", [](PyShard& s) { return s.templates().templates; })
      .def("names",
           [](const PyShard& s) { return name_list(s.table().size(), [&](size_t i) { return s.table().name(i); }); })
      .def("name", [](const PyShard& s, int64_t i) { return std::string(s.table().name(checked_row(s, i))); })
      .def("shape", [](const PyShard& s, int64_t i) { return shape_of(s.table(), checked_row(s, i)); })
      .def("index", [](PyShard& s, std::string_view name) { return s.index(name); })
      .def("raw", &raw_view, py::arg("row"), py::arg("populate") = false,
           "Zero-copy read-only view of a row's bytes; populate=True maps its pages in "
           "bulk first (for a scan that will read them all).")
      .def("pages", &row_pages, py::arg("row"), py::arg("start"), py::arg("stop"),
           py::arg("populate"),
           "Bytes [start, stop) of a row (relative to its data): populate=True maps their "
           "pages in bulk (a scan is about to read them), False drops them from this "
           "process (it has read them; the page cache keeps them). Never changes the data.");

  m.def(
      "open_shard",
      [](const std::string& path) {
        std::shared_ptr<ckptscan::Shard> s;
        {
          py::gil_scoped_release nogil;
          s = ckptscan::open_shard(path);
        }
        return std::make_shared<PyShard>(std::move(s));
      },
      py::arg("path"));
  m.def(
      "open_shards",
      [](const std::vector<std::string>& paths) {
        std::vector<std::shared_ptr<ckptscan::Shard>> shards(paths.size());
        {
          py::gil_scoped_release nogil;
          for (size_t i = 0; i < paths.size(); ++i) shards[i] = ckptscan::open_shard(paths[i]);
        }
        py::list out;
        for (auto& s : shards) out.append(py::cast(std::make_shared<PyShard>(std::move(s))));
        return out;
      },
      py::arg("paths"), "open_shard for each path, on this thread, with the GIL released once.");
  m.def(
      "parse_bytes",
      [](py::buffer data, py::object file_size) {
        py::buffer_info info = data.request();
        const auto* p = static_cast<const uint8_t*>(info.ptr);
        const size_t n = static_cast<size_t>(info.size * info.itemsize);
        const uint64_t size = file_size.is_none() ? n : file_size.cast<uint64_t>();
        auto s = std::make_shared<ckptscan::Shard>();
        {
          py::gil_scoped_release nogil;
          s->header = ckptscan::parse_header_bytes(p, n, size);
        }
        return std::make_shared<PyShard>(std::move(s));
      },
      py::arg("data"), py::arg("file_size") = py::none(),
      "Parses a header from the first bytes of a file held in memory (tests, fuzzing).");
  py::class_<PyIndex, std::shared_ptr<PyIndex>>(m, "Index")
      .def("__len__", [](const PyIndex& x) { return x.table.size(); })
      .def("names",
           [](const PyIndex& x) { return name_list(x.table.size(), [&](size_t i) { return x.table.name(i); }); })
      .def_property_readonly("shard_ids", [](py::object self) { return column(self.cast<PyIndex&>().table.shard, self); })
      .def_property_readonly("offsets", [](py::object self) { return column(self.cast<PyIndex&>().table.offset, self); })
      .def_property_readonly("shard_names", [](const PyIndex& x) { return x.table.shard_names; })
      .def_property_readonly("total_size",
                             [](const PyIndex& x) -> py::object {
                               if (!x.table.has_total_size) return py::none();
                               return py::int_(x.table.total_size);
                             })
      .def_property_readonly("problems", [](const PyIndex& x) { return problems_of(x.table.problems); })
      .def_property_readonly("suppressed", [](const PyIndex& x) { return suppressed_of(x.table.suppressed); });
  m.def(
      "parse_index",
      [](py::buffer data) {
        py::buffer_info info = data.request();
        auto x = std::make_shared<PyIndex>();
        {
          py::gil_scoped_release nogil;
          x->table = ckptscan::parse_index_json(static_cast<const uint8_t*>(info.ptr),
                                                static_cast<size_t>(info.size * info.itemsize));
        }
        return x;
      },
      py::arg("data"), "Parses a model.safetensors.index.json held in memory.");
  m.def(
      "read_index",
      [](const std::string& path) {
        auto x = std::make_shared<PyIndex>();
        {
          py::gil_scoped_release nogil;
          x->table = ckptscan::read_index_file(path);
        }
        return x;
      },
      py::arg("path"),
      "Reads and parses a model.safetensors.index.json; an unreadable file gives one io-error problem.");
  m.def(
      "match_names",
      [](const std::shared_ptr<PyIndex>& index, const std::vector<std::shared_ptr<PyShard>>& shards,
         const std::vector<int64_t>& shard_pos) {
        std::vector<const ckptscan::TensorTable*> tables;
        for (const auto& s : shards) tables.push_back(&s->table());
        ckptscan::NameMatch match;
        {
          py::gil_scoped_release nogil;
          match = ckptscan::match_names(index ? &index->table : nullptr, tables, shard_pos);
        }
        return py::make_tuple(owned_column(std::move(match.entry_row)),
                              owned_column(std::move(match.row_entry)),
                              owned_column(std::move(match.dup_of)));
      },
      py::arg("index"), py::arg("shards"), py::arg("shard_pos"),
      "Joins tensor names across the index and the shards: (entry_row, row_entry, dup_of).");
  m.def("name_template", [](std::string_view name) {
    std::string tmpl;
    std::vector<int64_t> ints;
    ckptscan::name_template(name, &tmpl, &ints);
    return py::make_tuple(tmpl, py::tuple(py::cast(ints)));
  });
}

// ---- kernels (csrc/kernels) ---------------------------------------------
namespace kbind {

namespace k = ckptscan::kernels;

// A C-contiguous buffer (numpy array, bytes, memoryview ...) held for the
// duration of a kernel call; the GIL may be released while it is held.
class Bytes {
 public:
  Bytes(const py::object& obj, bool writable, const char* what) {
    int flags = PyBUF_C_CONTIGUOUS;
    if (writable) flags |= PyBUF_WRITABLE;
    if (PyObject_GetBuffer(obj.ptr(), &view_, flags) != 0) {
      PyErr_Clear();
      throw py::type_error(std::string(what) + ": expected a C-contiguous" +
                           (writable ? " writable" : "") + " buffer (e.g. a numpy array)");
    }
  }
  ~Bytes() { PyBuffer_Release(&view_); }
  Bytes(const Bytes&) = delete;
  Bytes& operator=(const Bytes&) = delete;
  const uint8_t* data() const { return static_cast<const uint8_t*>(view_.buf); }
  uint8_t* mutable_data() { return static_cast<uint8_t*>(view_.buf); }
  size_t size() const { return static_cast<size_t>(view_.len); }

 private:
  Py_buffer view_{};
};

// Runs a kernel with the GIL released. The bytes may be a mapping of a file
// that shrinks meanwhile: the fault that follows becomes an OSError for this
// call instead of killing the process (see run_fault_guarded).
// `release_gil` false: work too short to be worth handing the GIL over (a
// thread that gives it up may wait for it behind the others).
template <class F>
k::Status run_guarded(F&& kernel, bool release_gil = true) {
  k::Status st = k::Status::ok;
  std::string err;
  bool ok;
  if (release_gil) {
    py::gil_scoped_release nogil;
    ok = ckptscan::fault_guarded([&] { st = kernel(); }, &err);
  } else {
    ok = ckptscan::fault_guarded([&] { st = kernel(); }, &err);
  }
  if (!ok) {
    PyErr_SetString(PyExc_OSError, err.c_str());
    throw py::error_already_set();
  }
  return st;
}

// A kernel over float32 scales, run guarded: scales at an offset not aligned to
// 4 (legal in safetensors) are read through an aligned copy, made under the
// fault guard like the rest. kernel(const float* scales).
template <class F>
k::Status run_guarded_on_floats(const Bytes& s, F&& kernel) {
  const bool copy = reinterpret_cast<uintptr_t>(s.data()) % alignof(float) != 0;
  std::vector<float> aligned(copy ? s.size() / 4 : 0);
  float* ap = aligned.data();
  return run_guarded([&] {
    if (copy) std::memcpy(ap, s.data(), s.size());
    return kernel(copy ? ap : reinterpret_cast<const float*>(s.data()));
  });
}

// Turns a kernel status into the Python exception it stands for.
void check(k::Status st, const std::string& context = "") {
  switch (st) {
    case k::Status::ok: return;
    case k::Status::simd_unknown:
    case k::Status::simd_unsupported: {
      const std::string e = k::simd_error();
      throw std::runtime_error(e.empty() ? k::status_message(st) : e);
    }
    default:
      throw py::value_error((context.empty() ? "" : context + ": ") + k::status_name(st) + ": " +
                            k::status_message(st));
  }
}

// A size argument: any Python integer (numpy's too) in 0 .. 2**64 - 1, else
// ValueError naming the argument (never pybind11's TypeError or a wrapped value).
size_t as_size(const py::handle& v, const char* what) {
  PyObject* idx = PyNumber_Index(v.ptr());
  if (idx == nullptr) {
    PyErr_Clear();
    throw py::value_error(std::string(what) + " must be an integer, not " +
                          std::string(py::str(py::type::handle_of(v).attr("__name__"))));
  }
  const unsigned long long x = PyLong_AsUnsignedLongLong(idx);
  const bool bad = x == static_cast<unsigned long long>(-1) && PyErr_Occurred() != nullptr;
  if (bad) PyErr_Clear();
  const std::string text = bad ? std::string(py::str(py::handle(idx))) : "";
  Py_DECREF(idx);
  if (bad || x > std::numeric_limits<size_t>::max()) {
    throw py::value_error(std::string(what) + " must be in 0 .. 2**64 - 1, got " + text);
  }
  return static_cast<size_t>(x);
}

// The checked geometry of a kernel call, or ValueError saying which shape and block.
k::BlockGrid grid(size_t batch, size_t rows, size_t cols, size_t br, size_t bc) {
  k::BlockGrid g;
  const k::Status st = k::block_grid(batch, rows, cols, br, bc, &g);
  if (st != k::Status::ok) {
    check(st, "shape [" + std::to_string(batch) + ", " + std::to_string(rows) + ", " +
                  std::to_string(cols) + "] with block (" + std::to_string(br) + ", " +
                  std::to_string(bc) + ")");
  }
  return g;
}

void check_length(const k::BlockGrid& g, size_t n, const char* what) {
  if (g.elems != n) {
    throw py::value_error(std::string(what) + " holds " + std::to_string(n) +
                          " bytes, expected batch * rows * cols = " + std::to_string(g.elems));
  }
}

// A fresh per-block array: [batch, nbr, nbc], or [nbr, nbc] when batch is 1.
py::array block_array(const k::BlockGrid& g, const py::dtype& dt) {
  std::vector<py::ssize_t> shape{static_cast<py::ssize_t>(g.nbr), static_cast<py::ssize_t>(g.nbc)};
  if (g.batch != 1) shape.insert(shape.begin(), static_cast<py::ssize_t>(g.batch));
  return py::array(dt, shape);
}

k::OutType out_type(const std::string& s) {
  if (s == "F32") return k::OutType::f32;
  if (s == "BF16") return k::OutType::bf16;
  throw py::value_error("out_dtype must be 'F32' or 'BF16'");
}

// A float32 scale buffer (any alignment: it is copied when needed) and an out
// buffer of whole, aligned elements.
void check_scale_out(const Bytes& s, const Bytes& o, size_t width, const std::string& out_dtype) {
  if (s.size() % 4 != 0) {
    throw py::value_error("scale holds " + std::to_string(s.size()) +
                          " bytes, not a whole number of float32");
  }
  if (o.size() % width != 0 || reinterpret_cast<uintptr_t>(o.data()) % width != 0) {
    throw py::value_error("out must be an array of " + out_dtype +
                          " elements aligned to their size");
  }
}

py::dtype count_dtype(int width) {
  switch (width) {
    case 1: return py::dtype::of<uint8_t>();
    case 2: return py::dtype::of<uint16_t>();
    case 4: return py::dtype::of<uint32_t>();
    default: return py::dtype::of<uint64_t>();
  }
}

k::Fp8Format fp8_format(std::string_view s) {
  if (s == "F8_E4M3") return k::Fp8Format::e4m3fn;
  if (s == "F8_E5M2") return k::Fp8Format::e5m2;
  if (s == "F8_E4M3FNUZ") return k::Fp8Format::e4m3fnuz;
  if (s == "F8_E5M2FNUZ") return k::Fp8Format::e5m2fnuz;
  throw py::value_error("not an FP8 dtype: '" + std::string(s) +
                        "' (expected F8_E4M3, F8_E5M2, F8_E4M3FNUZ or F8_E5M2FNUZ)");
}

k::FloatFormat float_format(std::string_view s) {
  if (s == "BF16") return k::FloatFormat::bf16;
  if (s == "F16") return k::FloatFormat::f16;
  if (s == "F32") return k::FloatFormat::f32;
  throw py::value_error("not a float dtype: '" + std::string(s) + "' (expected BF16, F16 or F32)");
}

py::dict stats_dict(const k::Fp8Stats& s) {
  py::dict d;
  d["count"] = s.count;
  d["nan"] = s.nan;
  d["inf"] = s.inf;
  d["zero"] = s.zero;
  d["neg_zero"] = s.neg_zero;
  d["subnormal"] = s.subnormal;
  d["saturated"] = s.saturated;
  d["negative"] = s.negative;
  d["absmax_code"] = s.absmax_code;
  d["absmax"] = s.absmax;
  return d;
}

py::list implementations(bool supported_only) {
  py::list out;
  for (int i = 0; i < k::implementation_count(); ++i) {
    if (!supported_only || k::implementation_supported(i)) out.append(k::implementation_name(i));
  }
  return out;
}

py::dict simd_info() {
  py::dict d;
  py::list feats;
  const uint32_t f = k::cpu_features();
  for (int b = 0; b < k::kFeatureCount; ++b) {
    if (f & (1u << b)) feats.append(k::feature_name(b));
  }
  d["features"] = feats;
  d["compiled"] = implementations(false);
  d["available"] = implementations(true);
  d["active"] = std::string(k::active_simd());
  d["error"] = k::simd_error();
  return d;
}

// Copies up to this many bytes (a scale tensor) keep the GIL: faster than
// handing it over.
constexpr size_t kCopyKeepsGil = 64 << 10;

// data copied into a fresh uint8 array under the fault guard.
py::array_t<uint8_t> copy_guarded(const py::object& data) {
  Bytes b(data, false, "data");
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(b.size()));
  uint8_t* o = out.mutable_data();
  if (b.size() > 0) {
    run_guarded(
        [&] {
          std::memcpy(o, b.data(), b.size());
          return k::Status::ok;
        },
        b.size() > kCopyKeepsGil);
  }
  return out;
}

// Byte ranges [start, stop) of an n-byte buffer from a sequence of (start, stop)
// pairs; ValueError for one that is reversed or outside the buffer.
std::vector<std::pair<size_t, size_t>> spans_of(const py::handle& spans, size_t n) {
  std::vector<std::pair<size_t, size_t>> out;
  for (const py::handle item : spans) {
    const auto pair = py::reinterpret_borrow<py::sequence>(item);
    if (pair.size() != 2) throw py::value_error("a span is a (start, stop) pair");
    const size_t a = as_size(pair[0], "span start"), b = as_size(pair[1], "span stop");
    if (a > b || b > n) {
      throw py::value_error("span (" + std::to_string(a) + ", " + std::to_string(b) +
                            ") is not inside the " + std::to_string(n) + " bytes");
    }
    out.emplace_back(a, b);
  }
  return out;
}

// Counts of the 256 byte values over the spans of data, into out[256].
k::Status histogram_spans(const uint8_t* data, const std::vector<std::pair<size_t, size_t>>& spans,
                          uint64_t* out) {
  std::fill(out, out + 256, uint64_t{0});
  uint64_t part[256];
  for (const auto& [a, b] : spans) {
    if (const k::Status st = k::histogram(data + a, b - a, part); st != k::Status::ok) return st;
    for (int i = 0; i < 256; ++i) out[i] += part[i];
  }
  return k::Status::ok;
}

}  // namespace kbind

static void bind_kernels(py::module_& m) {
  namespace k = ckptscan::kernels;
  using kbind::as_size;
  using kbind::Bytes;
  using kbind::check;

  m.def("simd_info", &kbind::simd_info,
        "CPU features, compiled and available implementations, the active one and the "
        "selection error (CKPTSCAN_SIMD naming an unknown or unsupported one), if any.");
  m.def(
      "set_simd",
      [](const std::string& name) {
        const k::Status st = k::select_simd(name.c_str());
        if (st != k::Status::ok) throw py::value_error(k::simd_explain(name.c_str()));
        return std::string(k::active_simd());
      },
      py::arg("name"),
      "Selects the kernel implementation ('auto' = best for this CPU); returns its name. "
      "ValueError for an unknown name or one this CPU cannot run (the current one stays).");

  m.def(
      "fp8_decode",
      [](const py::object& code, const std::string& dtype) {
        const k::Fp8Format f = kbind::fp8_format(dtype);
        const size_t c = as_size(code, "code");
        if (c > 255) throw py::value_error("code must be in 0..255, got " + std::to_string(c));
        return k::fp8_decode(static_cast<uint8_t>(c), f);
      },
      py::arg("code"), py::arg("dtype"), "Exact value of one FP8 code (NaN / +-inf included).");

  m.def(
      "fp8_traits",
      [](const std::string& dtype) {
        const k::Fp8Traits& t = k::fp8_traits(kbind::fp8_format(dtype));
        py::dict d;
        d["exp_bits"] = t.exp_bits;
        d["man_bits"] = t.man_bits;
        d["bias"] = t.bias;
        d["sat_code"] = t.sat_code;
        d["sub_max"] = t.sub_max;
        d["neg_max"] = t.neg_max;
        d["fnuz"] = t.fnuz;
        d["has_inf"] = t.has_inf;
        d["max_finite"] = t.max_finite;
        return d;
      },
      py::arg("dtype"));

  m.def(
      "fp8_stats",
      [](const py::object& data, const std::string& dtype) {
        const k::Fp8Format f = kbind::fp8_format(dtype);
        Bytes b(data, false, "data");
        k::Fp8Stats s;
        check(kbind::run_guarded([&] { return k::fp8_stats(b.data(), b.size(), f, &s); }));
        return kbind::stats_dict(s);
      },
      py::arg("data"), py::arg("dtype"));

  m.def(
      "histogram",
      [](const py::object& data, const py::object& spans) {
        Bytes b(data, false, "data");
        const auto ranges = spans.is_none() ? std::vector<std::pair<size_t, size_t>>{{0, b.size()}}
                                            : kbind::spans_of(spans, b.size());
        py::array_t<uint64_t> out(256);
        uint64_t* o = out.mutable_data();
        check(kbind::run_guarded([&] { return kbind::histogram_spans(b.data(), ranges, o); }));
        return out;
      },
      py::arg("data"), py::arg("spans") = py::none(),
      "Counts of the 256 byte values (uint64[256]) of the whole buffer, or of its byte ranges "
      "spans [(start, stop), ...] together (one call: one GIL hand-over).");

  m.def(
      "fp8_block_absmax",
      [](const py::object& data, const py::object& rows, const py::object& cols,
         const py::object& block_rows, const py::object& block_cols, const std::string& dtype) {
        const k::Fp8Format f = kbind::fp8_format(dtype);
        const k::BlockGrid g = kbind::grid(1, as_size(rows, "rows"), as_size(cols, "cols"),
                                           as_size(block_rows, "block_rows"),
                                           as_size(block_cols, "block_cols"));
        Bytes b(data, false, "data");
        kbind::check_length(g, b.size(), "data");
        py::array am = kbind::block_array(g, py::dtype::of<uint8_t>());
        py::array nn = kbind::block_array(g, py::dtype::of<uint64_t>());
        auto* pa = static_cast<uint8_t*>(am.mutable_data());
        auto* pn = static_cast<uint64_t*>(nn.mutable_data());
        check(kbind::run_guarded([&] {
          return k::fp8_block_absmax(b.data(), b.size(), g.rows, g.cols, g.br, g.bc, f, pa, pn,
                                     g.blocks);
        }));
        return py::make_tuple(am, nn);
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("block_rows"),
      py::arg("block_cols"), py::arg("dtype"),
      "(absmax codes uint8[nbr, nbc], NaN counts uint64[nbr, nbc]) per (block_rows, block_cols) "
      "block of a row-major [rows, cols] FP8 tensor; edge blocks are partial.");

  m.def(
      "fp8_block_stats",
      [](const py::object& data, const py::object& rows, const py::object& cols,
         const py::object& block_rows, const py::object& block_cols, const std::string& dtype,
         const py::object& batch, const py::object& sample) {
        const k::Fp8Format f = kbind::fp8_format(dtype);
        const k::BlockGrid g =
            kbind::grid(as_size(batch, "batch"), as_size(rows, "rows"), as_size(cols, "cols"),
                        as_size(block_rows, "block_rows"), as_size(block_cols, "block_cols"));
        Bytes b(data, false, "data");
        kbind::check_length(g, b.size(), "data");
        const auto spans = kbind::spans_of(sample, b.size());
        py::array_t<uint64_t> hist(256);
        uint64_t* ph = hist.mutable_data();
        const int width = k::count_width(g.block_elems);
        const py::dtype cdt = kbind::count_dtype(width);
        py::array am = kbind::block_array(g, py::dtype::of<uint8_t>());
        py::array nn = kbind::block_array(g, cdt);
        py::array ss = kbind::block_array(g, cdt);
        const bool has_inf = k::fp8_traits(f).has_inf;
        // formats without Inf get zeros that no kernel writes
        py::array ii = has_inf ? kbind::block_array(g, cdt)
                               : py::array(py::module_::import("numpy").attr("zeros")(
                                     nn.attr("shape"), cdt));
        k::Fp8BlockOut out;
        out.absmax = static_cast<uint8_t*>(am.mutable_data());
        out.nan = nn.mutable_data();
        out.inf = has_inf ? ii.mutable_data() : nullptr;
        out.saturated = ss.mutable_data();
        out.width = width;
        out.len = g.blocks;
        k::Fp8Stats s;
        check(kbind::run_guarded([&] {
          const k::Status st = k::fp8_block_stats(b.data(), b.size(), g.batch, g.rows, g.cols,
                                                  g.br, g.bc, f, &s, out);
          return st != k::Status::ok ? st : kbind::histogram_spans(b.data(), spans, ph);
        }));
        return py::make_tuple(kbind::stats_dict(s), am, nn, ii, ss, hist);
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("block_rows"),
      py::arg("block_cols"), py::arg("dtype"), py::arg("batch") = 1,
      py::arg("sample") = py::tuple(),
      "One pass over a row-major [batch, rows, cols] FP8 tensor: (whole-tensor stats as "
      "fp8_stats, absmax codes uint8, NaN, Inf and saturated counts) per block, arrays "
      "[batch, nbr, nbc] ([nbr, nbc] when batch is 1); counts in the smallest unsigned dtype "
      "that holds a block's element count; and the byte histogram (uint64[256]) of the byte "
      "ranges sample [(start, stop), ...], zeros without any, in the same call.");

  m.def(
      "fp8_dequantize",
      [](const py::object& data, const py::object& rows_, const py::object& cols_,
         const std::string& dtype, const py::object& scale_inv, const py::object& scale_rows,
         const py::object& scale_cols, const py::object& block_rows,
         const py::object& block_cols, const py::object& out, const std::string& out_dtype,
         const py::object& batch_) {
        const k::Fp8Format f = kbind::fp8_format(dtype);
        const k::OutType ot = kbind::out_type(out_dtype);
        const size_t width = ot == k::OutType::f32 ? 4 : 2;
        const size_t batch = as_size(batch_, "batch"), rows = as_size(rows_, "rows"),
                     cols = as_size(cols_, "cols"), srows = as_size(scale_rows, "scale_rows"),
                     scols = as_size(scale_cols, "scale_cols");
        const k::BlockGrid g = kbind::grid(batch, rows, cols, as_size(block_rows, "block_rows"),
                                           as_size(block_cols, "block_cols"));
        Bytes q(data, false, "data");
        kbind::check_length(g, q.size(), "data");
        Bytes s(scale_inv, false, "scale_inv");
        Bytes o(out, true, "out");
        kbind::check_scale_out(s, o, width, out_dtype);
        void* op = o.mutable_data();
        check(kbind::run_guarded_on_floats(s, [&](const float* sp) {
                return k::fp8_dequantize(q.data(), q.size(), batch, rows, cols, f, sp, srows,
                                         scols, s.size() / 4, g.br, g.bc, ot, op,
                                         o.size() / width);
              }),
              "scale_inv [" + std::to_string(s.size() / 4) + " floats] as [" +
                  std::to_string(batch) + ", " + std::to_string(srows) + ", " +
                  std::to_string(scols) + "], out [" + std::to_string(o.size() / width) +
                  " elements]");
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("dtype"), py::arg("scale_inv"),
      py::arg("scale_rows"), py::arg("scale_cols"), py::arg("block_rows"), py::arg("block_cols"),
      py::arg("out"), py::arg("out_dtype"), py::arg("batch") = 1,
      "out[b, i, j] = decode(q[b, i, j]) * scale_inv[b, i // br, j // bc] (float32 product), "
      "written as F32 or as BF16 bits (round to nearest even).");

  m.def(
      "fp4_dequantize",
      [](const py::object& data, const py::object& rows_, const py::object& cols_,
         const py::object& scale, const py::object& scale_rows, const py::object& scale_cols,
         const py::object& block_rows, const py::object& block_cols, const py::object& out,
         const std::string& out_dtype, const py::object& batch_) {
        const k::OutType ot = kbind::out_type(out_dtype);
        const size_t width = ot == k::OutType::f32 ? 4 : 2;
        const size_t batch = as_size(batch_, "batch"), rows = as_size(rows_, "rows"),
                     cols = as_size(cols_, "cols"), srows = as_size(scale_rows, "scale_rows"),
                     scols = as_size(scale_cols, "scale_cols");
        const k::BlockGrid g = kbind::grid(batch, rows, cols, as_size(block_rows, "block_rows"),
                                           as_size(block_cols, "block_cols"));
        if (cols % 2 != 0) {
          throw py::value_error("packed FP4 needs an even number of columns, got " +
                                std::to_string(cols));
        }
        Bytes q(data, false, "data");
        if (q.size() != g.elems / 2) {
          throw py::value_error("data holds " + std::to_string(q.size()) +
                                " bytes, expected batch * rows * cols / 2 = " +
                                std::to_string(g.elems / 2));
        }
        Bytes s(scale, false, "scale");
        Bytes o(out, true, "out");
        kbind::check_scale_out(s, o, width, out_dtype);
        void* op = o.mutable_data();
        check(kbind::run_guarded_on_floats(s, [&](const float* sp) {
                return k::fp4_dequantize(q.data(), q.size(), batch, rows, cols, sp, srows, scols,
                                         s.size() / 4, g.br, g.bc, ot, op, o.size() / width);
              }),
              "scale [" + std::to_string(s.size() / 4) + " floats] as [" + std::to_string(batch) +
                  ", " + std::to_string(srows) + ", " + std::to_string(scols) + "], out [" +
                  std::to_string(o.size() / width) + " elements]");
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("scale"), py::arg("scale_rows"),
      py::arg("scale_cols"), py::arg("block_rows"), py::arg("block_cols"), py::arg("out"),
      py::arg("out_dtype"), py::arg("batch") = 1,
      "Packed FP4 E2M1 (two per byte, low nibble first) [batch, rows, cols]: out = decode(q) * "
      "scale[b, i // br, j // bc] (float32 product), written as F32 or BF16 bits.");

  // fp8_compare / fp4_compare: per-block sums of one dequantize-and-compare pass.
  auto compare = [](bool fp4, const py::object& data, const py::object& rows_,
                    const py::object& cols_, const std::string& fmt, const py::object& scale,
                    const py::object& scale_rows, const py::object& scale_cols,
                    const py::object& block_rows, const py::object& block_cols,
                    const py::object& ref, const std::string& ref_dtype, double clip,
                    const py::object& bound_, const py::object& batch_) {
    const k::Fp8Format f = fp4 ? k::Fp8Format::e4m3fn : kbind::fp8_format(fmt);
    const k::FloatFormat rf = kbind::float_format(ref_dtype);
    const size_t batch = as_size(batch_, "batch"), rows = as_size(rows_, "rows"),
                 cols = as_size(cols_, "cols"), srows = as_size(scale_rows, "scale_rows"),
                 scols = as_size(scale_cols, "scale_cols");
    const k::BlockGrid g = kbind::grid(batch, rows, cols, as_size(block_rows, "block_rows"),
                                       as_size(block_cols, "block_cols"));
    if (fp4 && cols % 2 != 0) {
      throw py::value_error("packed FP4 needs an even number of columns, got " +
                            std::to_string(cols));
    }
    Bytes q(data, false, "data");
    const size_t want = fp4 ? g.elems / 2 : g.elems;
    if (q.size() != want) {
      throw py::value_error("data holds " + std::to_string(q.size()) + " bytes, expected " +
                            std::to_string(want));
    }
    Bytes r(ref, false, "ref");
    const size_t rwidth = rf == k::FloatFormat::f32 ? 4 : 2;
    if (r.size() != g.elems * rwidth) {
      throw py::value_error("ref holds " + std::to_string(r.size()) + " bytes, expected " +
                            std::to_string(g.elems) + " " + ref_dtype + " elements");
    }
    Bytes s(scale, false, "scale");
    if (s.size() % 4 != 0) {
      throw py::value_error("scale holds " + std::to_string(s.size()) +
                            " bytes, not a whole number of float32");
    }
    k::RoundBound rb;
    if (!bound_.is_none()) {
      const auto v = bound_.cast<std::vector<double>>();
      if (v.size() != 4) throw py::value_error("bound must be (vmax, rel, sub, slack)");
      rb = {static_cast<float>(v[0]), static_cast<float>(v[1]), static_cast<float>(v[2]),
            static_cast<float>(v[3])};
    }
    py::array a_bound = kbind::block_array(g, py::dtype::of<double>());
    py::array a_ref = kbind::block_array(g, py::dtype::of<double>());
    py::array a_code = kbind::block_array(g, py::dtype::of<double>());
    py::array a_dot = kbind::block_array(g, py::dtype::of<double>());
    py::array a_err = kbind::block_array(g, py::dtype::of<double>());
    py::array a_maxe = kbind::block_array(g, py::dtype::of<float>());
    py::array a_clip = kbind::block_array(g, py::dtype::of<uint64_t>());
    py::array a_bad = kbind::block_array(g, py::dtype::of<uint64_t>());
    py::array a_rbad = kbind::block_array(g, py::dtype::of<uint64_t>());
    k::CompareOut o;
    o.bound_sq = static_cast<double*>(a_bound.mutable_data());
    o.ref_sq = static_cast<double*>(a_ref.mutable_data());
    o.code_sq = static_cast<double*>(a_code.mutable_data());
    o.dot = static_cast<double*>(a_dot.mutable_data());
    o.err_sq = static_cast<double*>(a_err.mutable_data());
    o.max_err = static_cast<float*>(a_maxe.mutable_data());
    o.clipped = static_cast<uint64_t*>(a_clip.mutable_data());
    o.bad = static_cast<uint64_t*>(a_bad.mutable_data());
    o.ref_bad = static_cast<uint64_t*>(a_rbad.mutable_data());
    o.len = g.blocks;
    const float lim = static_cast<float>(clip);
    check(kbind::run_guarded_on_floats(s, [&](const float* sp) {
            return fp4 ? k::fp4_compare(q.data(), q.size(), batch, rows, cols, sp, srows, scols,
                                        s.size() / 4, g.br, g.bc, r.data(), r.size() / rwidth,
                                        rf, lim, rb, o)
                       : k::fp8_compare(q.data(), q.size(), batch, rows, cols, f, sp, srows,
                                        scols, s.size() / 4, g.br, g.bc, r.data(),
                                        r.size() / rwidth, rf, lim, rb, o);
          }),
          "scale [" + std::to_string(s.size() / 4) + " floats] as [" + std::to_string(batch) +
              ", " + std::to_string(srows) + ", " + std::to_string(scols) + "]");
    py::dict d;
    d["bound_sq"] = a_bound;
    d["ref_sq"] = a_ref;
    d["code_sq"] = a_code;
    d["dot"] = a_dot;
    d["err_sq"] = a_err;
    d["max_err"] = a_maxe;
    d["clipped"] = a_clip;
    d["bad"] = a_bad;
    d["ref_bad"] = a_rbad;
    return d;
  };
  m.def(
      "fp8_compare",
      [compare](const py::object& data, const py::object& rows, const py::object& cols,
                const std::string& dtype, const py::object& scale, const py::object& scale_rows,
                const py::object& scale_cols, const py::object& block_rows,
                const py::object& block_cols, const py::object& ref, const std::string& ref_dtype,
                double clip, const py::object& bound, const py::object& batch) {
        return compare(false, data, rows, cols, dtype, scale, scale_rows, scale_cols, block_rows,
                       block_cols, ref, ref_dtype, clip, bound, batch);
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("dtype"), py::arg("scale"),
      py::arg("scale_rows"), py::arg("scale_cols"), py::arg("block_rows"), py::arg("block_cols"),
      py::arg("ref"), py::arg("ref_dtype"), py::arg("clip"), py::arg("bound") = py::none(),
      py::arg("batch") = 1,
      "FP8 [batch, rows, cols] dequantized with scale[b, i // br, j // bc] against ref (BF16, "
      "F16 or F32) in one pass: per-block ref_sq, code_sq, dot, err_sq, max_err, "
      "clipped (|ref| > clip * scale), bad, ref_bad and bound_sq (bound: (vmax, rel, sub, "
      "slack) of kernels.h's RoundBound).");
  m.def(
      "fp4_compare",
      [compare](const py::object& data, const py::object& rows, const py::object& cols,
                const py::object& scale, const py::object& scale_rows,
                const py::object& scale_cols, const py::object& block_rows,
                const py::object& block_cols, const py::object& ref, const std::string& ref_dtype,
                double clip, const py::object& bound, const py::object& batch) {
        return compare(true, data, rows, cols, "", scale, scale_rows, scale_cols, block_rows,
                       block_cols, ref, ref_dtype, clip, bound, batch);
      },
      py::arg("data"), py::arg("rows"), py::arg("cols"), py::arg("scale"), py::arg("scale_rows"),
      py::arg("scale_cols"), py::arg("block_rows"), py::arg("block_cols"), py::arg("ref"),
      py::arg("ref_dtype"), py::arg("clip"), py::arg("bound") = py::none(), py::arg("batch") = 1,
      "fp8_compare for packed FP4 E2M1 (two per byte, low nibble first).");

  m.def("copy_guarded", &kbind::copy_guarded, py::arg("data"),
        "A fresh uint8 copy of a buffer, read under the fault guard with the GIL released: a "
        "mapping of a file that shrank raises OSError instead of killing the process.");

  m.def(
      "float_stats",
      [](const py::object& data, const std::string& dtype) {
        const k::FloatFormat f = kbind::float_format(dtype);
        Bytes b(data, false, "data");
        k::FloatStats s;
        check(kbind::run_guarded([&] { return k::float_stats(b.data(), b.size(), f, &s); }));
        py::dict d;
        d["count"] = s.count;
        d["nan"] = s.nan;
        d["pos_inf"] = s.pos_inf;
        d["neg_inf"] = s.neg_inf;
        d["zero"] = s.zero;
        d["subnormal"] = s.subnormal;
        d["finite"] = s.finite;
        d["absmax"] = s.absmax;
        d["min"] = s.min;
        d["max"] = s.max;
        return d;
      },
      py::arg("data"), py::arg("dtype"));

  m.def(
      "e8m0_stats",
      [](const py::object& data) {
        Bytes b(data, false, "data");
        k::E8m0Stats s;
        check(kbind::run_guarded([&] { return k::e8m0_stats(b.data(), b.size(), &s); }));
        py::dict d;
        d["count"] = s.count;
        d["nan"] = s.nan;
        d["min_code"] = s.min_code;
        d["max_code"] = s.max_code;
        return d;
      },
      py::arg("data"));

  m.def(
      "read_probe",
      [](const py::object& data) {
        Bytes b(data, false, "data");
        uint64_t sum = 0;
        check(kbind::run_guarded([&] { return k::read_probe(b.data(), b.size(), &sum); }));
        return sum;
      },
      py::arg("data"), "Sum of the little-endian uint64 words (memory-read probe).");

  m.def(
      "digest128",
      [](const py::object& data) {
        Bytes b(data, false, "data");
        ckptscan::Digest128 d{};
        kbind::run_guarded([&] {
          d = ckptscan::digest128(b.data(), b.size());
          return k::Status::ok;
        });
        char out[16];
        for (int i = 0; i < 8; ++i) {
          out[i] = static_cast<char>(d.lo >> (8 * i));
          out[8 + i] = static_cast<char>(d.hi >> (8 * i));
        }
        return py::bytes(out, 16);
      },
      py::arg("data"),
      "A fast, non-cryptographic 128-bit digest of the bytes (16 bytes, little-endian "
      "lo then hi word): the same bytes give the same digest everywhere.");
}

PYBIND11_MODULE(_core, m) {
  m.doc() = "ckptscan's C++ core: mapping, strict safetensors header parser, SIMD kernels";
  m.attr("__version__") = CKPTSCAN_VERSION;
  bind_reader(m);
  bind_kernels(m);
}
