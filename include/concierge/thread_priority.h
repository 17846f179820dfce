// SetThisThreadNice: sets the calling thread's nice value. Linux applies nice
// per thread (by thread id), so the rest of the process keeps its own.
// Lowering priority (a higher value) needs no privilege; raising it needs
// CAP_SYS_NICE or RLIMIT_NICE. Returns whether the kernel accepted it; a
// refusal leaves the thread as it was. Thread-safe.
#ifndef CONCIERGE_THREAD_PRIORITY_H_
#define CONCIERGE_THREAD_PRIORITY_H_

namespace concierge {

bool SetThisThreadNice(int nice);

}  // namespace concierge

#endif  // CONCIERGE_THREAD_PRIORITY_H_
