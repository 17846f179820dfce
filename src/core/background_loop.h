// BackgroundLoop: one worker thread that runs a pass function over and over:
// at once again while passes report progress, otherwise after Wake() or an
// idle wait (which also picks up work written by another process sharing the
// database). Used by the re-sign engine, the playbook runner and the webhook
// dispatcher. Thread-safe; Stop() joins and is idempotent.
#ifndef CONCIERGE_CORE_BACKGROUND_LOOP_H_
#define CONCIERGE_CORE_BACKGROUND_LOOP_H_

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>

namespace concierge::core {

class BackgroundLoop {
 public:
  BackgroundLoop() = default;
  ~BackgroundLoop() { Stop(); }
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;

  // `pass` returns true when it did work (run again at once). `thread_init`
  // (optional) runs first on the new thread. No-op if running.
  void Start(std::function<bool()> pass, std::chrono::milliseconds idle_wait,
             std::function<void()> thread_init = nullptr) {
    std::lock_guard lock(mu_);
    if (thread_.joinable()) return;
    stopping_ = false;
    thread_ = std::thread([this, pass = std::move(pass), idle_wait, init = std::move(thread_init)] {
      if (init) init();
      std::unique_lock lock(mu_);
      while (!stopping_) {
        lock.unlock();
        const bool progressed = pass();
        lock.lock();
        if (progressed) continue;
        cv_.wait_for(lock, idle_wait, [this] { return stopping_ || woken_; });
        woken_ = false;
      }
    });
  }

  void Stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

  void Wake() {
    {
      std::lock_guard lock(mu_);
      woken_ = true;
    }
    cv_.notify_all();
  }

  // True between Stop() and the next Start(): long passes check it to bail out.
  bool stopping() {
    std::lock_guard lock(mu_);
    return stopping_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  bool woken_ = false;
  std::thread thread_;
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_BACKGROUND_LOOP_H_
