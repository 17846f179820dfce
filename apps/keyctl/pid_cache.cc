// getpid() for the keyctl process, cached: an interposed definition that
// libcrypto (and SQLite) bind to instead of glibc's.
//
// Why: OpenSSL 3.0's DRBG calls getpid() on every generate to detect a fork,
// and an ECDSA signature generates twice (nonce and blinding), the request id a
// third time. glibc no longer caches the pid, so each is a real system call,
// and on this class of VM a system call costs about a microsecond: ~3% of the
// server's CPU per durable signature (perf, bench/cpu_per_req.sh).
//
// Fork safety is kept: the cache is cleared in the child of every fork() by a
// pthread_atfork handler, so a forked child gets its own pid and OpenSSL still
// reseeds there. keyctl never forks today; children created without running
// atfork handlers (vfork, posix_spawn) exec at once and run none of our code.
// Only the keyctl executable links this file; tests see glibc's getpid.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>

namespace {

std::atomic<pid_t> cached_pid{0};

void ForgetPidInChild() { cached_pid.store(0, std::memory_order_relaxed); }

// Registered before main(), before any thread can fork.
const int kAtForkRegistered = pthread_atfork(nullptr, nullptr, ForgetPidInChild);

}  // namespace

extern "C" pid_t getpid() noexcept {
  pid_t pid = cached_pid.load(std::memory_order_relaxed);
  if (pid == 0) {
    pid = static_cast<pid_t>(syscall(SYS_getpid));
    cached_pid.store(pid, std::memory_order_relaxed);
  }
  return pid;
}
