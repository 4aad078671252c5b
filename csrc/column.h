// Column storage for the parsed tables. Two things make a 96k-tensor table
// cheap to build, and they are here:
//  - resize() leaves new elements uninitialised: the parser sizes its columns
//    ahead and writes every element it keeps, so zero-filling them first would
//    touch every page twice;
//  - freed column buffers go back to a bounded process-wide pool, not to the
//    C library: a fresh page costs a page fault (2-4 us on a VM, more than
//    parsing the bytes that fill it), and glibc returns a freed heap top to
//    the kernel, so opening checkpoint after checkpoint would fault every
//    table in anew.
#pragma once
#include <cstddef>
#include <new>
#include <utility>
#include <vector>

namespace ckptscan {

// A block of at least `bytes` (rounded up to a size class), from the pool
// when one is free there. Throws std::bad_alloc.
void* column_alloc(size_t bytes);
// Returns a block from column_alloc(bytes) to the pool (or to the C library
// when the pool holds kColumnPoolBytes already).
void column_free(void* p, size_t bytes) noexcept;
inline constexpr size_t kColumnPoolBytes = size_t{64} << 20;

template <class T>
struct ColumnAllocator {
  using value_type = T;
  ColumnAllocator() = default;
  template <class U>
  ColumnAllocator(const ColumnAllocator<U>&) noexcept {}
  T* allocate(size_t n) { return static_cast<T*>(column_alloc(n * sizeof(T))); }
  void deallocate(T* p, size_t n) noexcept { column_free(p, n * sizeof(T)); }
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;  // default-init: no zero fill
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
  template <class U>
  bool operator==(const ColumnAllocator<U>&) const noexcept {
    return true;
  }
  template <class U>
  bool operator!=(const ColumnAllocator<U>&) const noexcept {
    return false;
  }
};

template <class T>
using Column = std::vector<T, ColumnAllocator<T>>;

}  // namespace ckptscan
