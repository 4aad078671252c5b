// Read-only access to one shard file: an open descriptor, pread for headers
// (so header-only work never faults in data pages), and an on-demand mapping
// of the whole file for data access.
#pragma once
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

namespace ckptscan {

class MappedFile {
 public:
  // Opens `path` read-only. On failure returns false and sets `*err` to the
  // OS's reason (errno text); the object stays closed.
  bool open(const std::string& path, std::string* err);
  ~MappedFile();
  MappedFile() = default;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }  // as of open()

  // Reads up to `len` bytes at `offset`; returns the count read (short at EOF)
  // or -1 with `*err` set.
  int64_t pread(uint64_t offset, void* buf, size_t len, std::string* err) const;

  // Maps the file read-only on first use (thread-safe); nullptr and `*err` on
  // failure. The mapping lives as long as this object.
  const uint8_t* map(std::string* err);

  // The file's size now: a file that shrank since open() must not be touched
  // past its new end (that would be SIGBUS). Returns -1 with `*err` on failure.
  int64_t current_size(std::string* err) const;

  // Maps the page-table entries of [offset, offset + len) in one call before a
  // scan reads them, instead of one page fault per 4 KiB (measured: a scan of
  // a freshly mapped tensor runs ~25% slower than of a faulted-in one). Also
  // reads the pages in when they are not cached. Best effort: a kernel
  // without MADV_POPULATE_READ (Linux < 5.14) just faults as usual.
  void prefault(uint64_t offset, uint64_t len) const;

  // Drops this process's page-table entries of [offset, offset + len) (whole
  // pages around it): the pages stay in the page cache and fault back in on the
  // next access. A scan that streams through a file calls it behind itself so
  // that its resident memory stays bounded whatever the file's size (mapped
  // file pages count in RSS). The mapping is read-only and shared: nothing is
  // lost.
  void release(uint64_t offset, uint64_t len) const;

 private:
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::mutex map_mu_;
  uint8_t* map_ = nullptr;
};

// Runs fn() with SIGBUS (and SIGSEGV inside a mapping) turned into a return
// value instead of a crash: a mapped file that shrinks under a scan faults on
// access. Returns false, with `*err` set, when fn() was interrupted by a fault.
// fn must not own resources that need destructors (it is left by longjmp).
bool run_fault_guarded(void (*fn)(void*), void* ctx, std::string* err);

template <class F>
bool fault_guarded(F&& f, std::string* err) {
  return run_fault_guarded([](void* c) { (*static_cast<F*>(c))(); }, &f, err);
}

}  // namespace ckptscan
