#include "mapped_file.h"

#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ckptscan {

bool MappedFile::open(const std::string& path, std::string* err) {
  path_ = path;
  // O_NONBLOCK: opening a FIFO (or a device) named like a shard must not
  // block; it has no effect on reading a regular file, the only kind accepted.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    *err = std::strerror(errno);
    return false;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    *err = std::strerror(errno);
    ::close(fd);
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    *err = S_ISDIR(st.st_mode) ? "is a directory" : S_ISFIFO(st.st_mode) ? "is a FIFO, not a regular file"
                                                                           : "is not a regular file";
    ::close(fd);
    return false;
  }
  fd_ = fd;
  size_ = static_cast<uint64_t>(st.st_size);
  return true;
}

MappedFile::~MappedFile() {
  if (map_ != nullptr) ::munmap(map_, size_);
  if (fd_ >= 0) ::close(fd_);
}

int64_t MappedFile::pread(uint64_t offset, void* buf, size_t len, std::string* err) const {
  size_t done = 0;
  while (done < len) {
    const ssize_t r = ::pread(fd_, static_cast<char*>(buf) + done, len - done,
                              static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      *err = std::strerror(errno);
      return -1;
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<int64_t>(done);
}

const uint8_t* MappedFile::map(std::string* err) {
  std::lock_guard<std::mutex> lock(map_mu_);
  if (map_ != nullptr) return map_;
  if (size_ == 0) {
    *err = "file is empty";
    return nullptr;
  }
  void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    *err = std::string("mmap failed: ") + std::strerror(errno);
    return nullptr;
  }
  map_ = static_cast<uint8_t*>(p);
  return map_;
}

int64_t MappedFile::current_size(std::string* err) const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    *err = std::strerror(errno);
    return -1;
  }
  return static_cast<int64_t>(st.st_size);
}

void MappedFile::prefault(uint64_t offset, uint64_t len) const {
#ifndef MADV_POPULATE_READ
  constexpr int MADV_POPULATE_READ = 22;  // Linux 5.14; older headers lack it
#endif
  if (map_ == nullptr || len == 0 || offset >= size_) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset & ~(page - 1);
  const uint64_t end = std::min<uint64_t>(offset + len, size_);
  // EINVAL (old kernel) or EFAULT (the file shrank) leave the faults to the
  // scan itself, where the fault guard turns a SIGBUS into an error.
  ::madvise(map_ + start, end - start, MADV_POPULATE_READ);
}

void MappedFile::release(uint64_t offset, uint64_t len) const {
  if (map_ == nullptr || len == 0 || offset >= size_) return;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t start = offset & ~(page - 1);
  const uint64_t end = std::min<uint64_t>(offset + len, size_);
  ::madvise(map_ + start, end - start, MADV_DONTNEED);
}

// ---- fault guard -------------------------------------------------------------

namespace {

thread_local sigjmp_buf* tl_jump = nullptr;
thread_local int tl_signal = 0;
struct sigaction g_prev_bus, g_prev_segv;
std::mutex g_install_mu;

void on_fault(int sig, siginfo_t* info, void* uctx) {
  if (tl_jump != nullptr) {
    tl_signal = sig;
    siglongjmp(*tl_jump, 1);
  }
  // Not ours: hand over to whoever was installed before (Python's faulthandler,
  // or the default action).
  struct sigaction& prev = sig == SIGBUS ? g_prev_bus : g_prev_segv;
  if (prev.sa_flags & SA_SIGINFO) {
    if (prev.sa_sigaction != nullptr) return prev.sa_sigaction(sig, info, uctx);
  } else if (prev.sa_handler != SIG_IGN && prev.sa_handler != SIG_DFL && prev.sa_handler != nullptr) {
    return prev.sa_handler(sig);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

// (Re)installs the handler when someone else (e.g. Python's faulthandler,
// enabled after us) has replaced it; keeps theirs to chain to.
void ensure_handlers() {
  std::lock_guard<std::mutex> lock(g_install_mu);
  struct sigaction cur;
  ::sigaction(SIGBUS, nullptr, &cur);
  const bool bus_ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault;
  ::sigaction(SIGSEGV, nullptr, &cur);
  const bool segv_ours = (cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  if (!bus_ours) ::sigaction(SIGBUS, &sa, &g_prev_bus);
  if (!segv_ours) ::sigaction(SIGSEGV, &sa, &g_prev_segv);
}

}  // namespace

bool run_fault_guarded(void (*fn)(void*), void* ctx, std::string* err) {
  ensure_handlers();
  sigjmp_buf jump;
  sigjmp_buf* const outer = tl_jump;
  if (sigsetjmp(jump, 1) != 0) {
    tl_jump = outer;
    *err = tl_signal == SIGBUS ? "the file shrank or became unreadable while it was being read (SIGBUS)"
                               : "invalid memory access while reading the file (SIGSEGV)";
    return false;
  }
  tl_jump = &jump;
  fn(ctx);
  tl_jump = outer;
  return true;
}

}  // namespace ckptscan
