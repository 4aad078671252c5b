#include "column.h"

#include <pthread.h>

#include <cstdlib>
#include <mutex>

// Under AddressSanitizer, freed columns go back to malloc at once, so that a
// use after free is still caught.
#if defined(__SANITIZE_ADDRESS__)
#define CKPTSCAN_POOL_COLUMNS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CKPTSCAN_POOL_COLUMNS 0
#endif
#endif
#ifndef CKPTSCAN_POOL_COLUMNS
#define CKPTSCAN_POOL_COLUMNS 1
#endif

namespace ckptscan {
namespace {

// Size classes are powers of two from 256 bytes; a class's blocks are
// interchangeable. Blocks above the largest class go straight to malloc.
constexpr int kMinShift = 8, kClasses = 24;  // 256 B .. 2 GiB

int size_class(size_t bytes) {
  int c = 0;
  while (c < kClasses && (size_t{1} << (kMinShift + c)) < bytes) ++c;
  return c;  // kClasses: too large to pool
}

struct Pool {
  std::mutex mu;
  std::vector<void*> free[kClasses];
  size_t held = 0;  // bytes in the free lists
};

Pool* the_pool = nullptr;  // never destroyed: columns may be freed at exit
std::once_flag pool_once;

// A fork() while another thread holds the lock would leave the child's copy
// locked for good: hold it across fork, as malloc does with its own.
void lock_for_fork() { the_pool->mu.lock(); }
void unlock_after_fork() { the_pool->mu.unlock(); }

Pool& pool() {
  std::call_once(pool_once, [] {
    the_pool = new Pool;
    pthread_atfork(lock_for_fork, unlock_after_fork, unlock_after_fork);
  });
  return *the_pool;
}

}  // namespace

void* column_alloc(size_t bytes) {
  if (bytes == 0) bytes = 1;
  const int c = size_class(bytes);
  if (c < kClasses) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    if (!p.free[c].empty()) {
      void* block = p.free[c].back();
      p.free[c].pop_back();
      p.held -= size_t{1} << (kMinShift + c);
      return block;
    }
  }
  void* block = std::malloc(c < kClasses ? size_t{1} << (kMinShift + c) : bytes);
  if (block == nullptr) throw std::bad_alloc();
  return block;
}

void column_free(void* block, size_t bytes) noexcept {
  if (block == nullptr) return;
  if (bytes == 0) bytes = 1;
  const int c = size_class(bytes);
  if (CKPTSCAN_POOL_COLUMNS && c < kClasses) {
    const size_t size = size_t{1} << (kMinShift + c);
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    if (p.held + size <= kColumnPoolBytes) {
      try {
        p.free[c].push_back(block);
        p.held += size;
        return;
      } catch (...) {  // the free list could not grow: let malloc have it
      }
    }
  }
  std::free(block);
}

}  // namespace ckptscan
