// The only C++ file that sees Python: converts between the pure C++ core
// (mapped_file, header, kernels) and Python objects, and releases the GIL
// around every parse and kernel call.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "dtype.h"
#include "errors.h"
#include "header.h"
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
  std::once_flag index_once_;
  std::unordered_map<std::string_view, int64_t> index_;
};

// A read-only numpy view of a column, owned by the Python shard object.
template <class T>
py::array column(const std::vector<T>& v, py::handle owner) {
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

py::list problems_of(const ParsedHeader& h) {
  py::list out;
  for (const auto& p : h.problems) {
    out.append(py::make_tuple(std::string(ckptscan::error_name(p.code)),
                              p.offset == ckptscan::kNoOffset ? py::object(py::none()) : py::int_(p.offset),
                              p.tensor.empty() ? py::object(py::none()) : py::str(p.tensor), p.message));
  }
  return out;
}

// Zero-copy uint8 view of row i's bytes in the mapping. The file's size is
// checked again first: touching pages past the end of a file that shrank
// would raise SIGBUS.
py::array raw_view(PyShard& s, int64_t row) {
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
  }
  static const uint8_t kEmpty = 0;
  auto* keep = new std::shared_ptr<ckptscan::Shard>(sh);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<ckptscan::Shard>*>(p); });
  py::array a(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(end - begin)}, {1},
              base != nullptr ? base + begin : &kEmpty, owner);
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return a;
}

}  // namespace

static void bind_reader(py::module_& m) {
  py::list dtypes;
  for (const auto& d : ckptscan::kDtypes) dtypes.append(py::make_tuple(std::string(d.name), d.bits));
  m.attr("DTYPES") = py::tuple(dtypes);
  py::list codes;
  for (auto name : ckptscan::kErrorNames) codes.append(std::string(name));
  m.attr("ERROR_CODES") = py::tuple(codes);
  m.attr("MAX_HEADER_LEN") = ckptscan::kMaxHeaderLen;

  py::class_<PyShard, std::shared_ptr<PyShard>>(m, "Shard")
      .def_property_readonly("path", [](const PyShard& s) { return s.shard()->file.path(); })
      .def_property_readonly("opened", [](const PyShard& s) { return s.shard()->opened; })
      .def_property_readonly("file_size", [](const PyShard& s) { return s.header().file_size; })
      .def_property_readonly("header_len", [](const PyShard& s) { return s.header().header_len; })
      .def_property_readonly("data_start", [](const PyShard& s) { return s.header().data_start; })
      .def_property_readonly("data_end", [](const PyShard& s) { return s.header().data_end; })
      .def_property_readonly("problems", [](const PyShard& s) { return problems_of(s.header()); })
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
      .def_property_readonly("template_ids", [](py::object self) { return column(self.cast<PyShard&>().table().template_id, self); })
      .def_property_readonly("shape_starts", [](py::object self) { return column(self.cast<PyShard&>().table().shape_start, self); })
      .def_property_readonly("dims", [](py::object self) { return column(self.cast<PyShard&>().table().dims, self); })
      .def_property_readonly("int_starts", [](py::object self) { return column(self.cast<PyShard&>().table().ints_start, self); })
      .def_property_readonly("ints", [](py::object self) { return column(self.cast<PyShard&>().table().ints, self); })
      .def_property_readonly("templates", [](const PyShard& s) { return s.table().templates; })
      .def("names",
           [](const PyShard& s) {
             const TensorTable& t = s.table();
             py::list out(t.size());
             for (size_t i = 0; i < t.size(); ++i) {
               const auto n = t.name(i);
               out[i] = py::reinterpret_steal<py::object>(PyUnicode_DecodeUTF8(n.data(), n.size(), "strict"));
             }
             return out;
           })
      .def("name", [](const PyShard& s, int64_t i) { return std::string(s.table().name(checked_row(s, i))); })
      .def("shape", [](const PyShard& s, int64_t i) { return shape_of(s.table(), checked_row(s, i)); })
      .def("index", [](PyShard& s, std::string_view name) { return s.index(name); })
      .def("raw", &raw_view);

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
  m.def("name_template", [](std::string_view name) {
    std::string tmpl;
    std::vector<int64_t> ints;
    ckptscan::name_template(name, &tmpl, &ints);
    return py::make_tuple(tmpl, py::tuple(py::cast(ints)));
  });
}

// ---- kernels (csrc/kernels) ---------------------------------------------
static void bind_kernels(py::module_& m) { (void)m; }

PYBIND11_MODULE(_core, m) {
  m.doc() = "ckptscan's C++ core: mapping, strict safetensors header parser, SIMD kernels";
  m.attr("__version__") = CKPTSCAN_VERSION;
  bind_reader(m);
  bind_kernels(m);
}
