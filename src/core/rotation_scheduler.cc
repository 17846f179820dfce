#include "core/rotation_scheduler.h"

namespace concierge::core {

void RotationScheduler::Start() {
  std::lock_guard lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void RotationScheduler::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void RotationScheduler::Submit(const std::string& rotation_id) {
  {
    std::lock_guard lock(mu_);
    queue_.push_back(rotation_id);
  }
  cv_.notify_all();
}

TickReport RotationScheduler::DrainSubmitted() {
  TickReport report;
  for (;;) {
    std::string id;
    {
      std::lock_guard lock(mu_);
      if (queue_.empty() || stopping_) break;
      id = std::move(queue_.front());
      queue_.pop_front();
    }
    ++report.resumed;
    auto done = engine_.Run(id);
    if (!done.ok()) report.errors.push_back("running " + id + ": " + done.status().message());
  }
  return report;
}

void RotationScheduler::RecordEvidence(TickReport& report) {
  if (evidence_ != nullptr) report.evidence_built += evidence_->EnsureAll(&report.errors);
}

TickReport RotationScheduler::Tick() {
  TickReport submitted = DrainSubmitted();
  TickReport report = engine_.Tick();
  report.resumed += submitted.resumed;
  report.errors.insert(report.errors.begin(), submitted.errors.begin(), submitted.errors.end());
  RecordEvidence(report);
  return report;
}

void RotationScheduler::Loop() {
  auto next_tick = std::chrono::steady_clock::now();
  std::unique_lock lock(mu_);
  while (!stopping_) {
    if (!queue_.empty()) {
      lock.unlock();
      TickReport r = DrainSubmitted();
      RecordEvidence(r);
      if (on_report_) on_report_("execute", r);
      lock.lock();
      continue;
    }
    if (std::chrono::steady_clock::now() >= next_tick) {
      lock.unlock();
      if (!gate_ || gate_()) {
        TickReport r = engine_.Tick();
        RecordEvidence(r);
        if (on_report_) on_report_("tick", r);
      }
      next_tick = std::chrono::steady_clock::now() + interval_;
      lock.lock();
      continue;
    }
    cv_.wait_until(lock, next_tick, [this] { return stopping_ || !queue_.empty(); });
  }
}

}  // namespace concierge::core
