#include "core/ledger_writer.h"

#include <future>

namespace concierge::core {

LedgerWriter::LedgerWriter(LedgerStore& store, LedgerWriterOptions options)
    : store_(store), options_(options), thread_([this] { Run(); }) {}

LedgerWriter::~LedgerWriter() { Stop(); }

void LedgerWriter::Submit(std::vector<LedgerEntry> entries, DoneWithEntries done) {
  bool stopping;
  {
    std::lock_guard lock(mu_);
    stopping = stopping_;
    if (!stopping && queued_rows_ + entries.size() <= options_.max_queued_rows) {
      queued_rows_ += entries.size();
      queue_.push_back(Pending{std::move(entries), std::move(done)});
      // While the writer lingers, wake it only once the group is big enough:
      // a wake-up per request would cost more than the larger commit saves.
      if (!lingering_ || queued_rows_ >= options_.linger_target_rows) cv_.notify_one();
      return;
    }
  }
  Status st = UnavailableError(stopping ? "ledger writer is shutting down" : "ledger writer is overloaded; retry");
  done(st, entries);
}

void LedgerWriter::SubmitResign(ResignBatch& batch, std::function<void(const Status&)> done) {
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      resign_queue_.push_back(PendingResign{&batch, std::move(done)});
      cv_.notify_one();
      return;
    }
  }
  done(UnavailableError("ledger writer is shutting down"));
}

Status LedgerWriter::CommitResign(ResignBatch& batch) {
  std::promise<Status> result;
  SubmitResign(batch, [&result](const Status& st) { result.set_value(st); });
  return result.get_future().get();
}

size_t LedgerWriter::queued_rows() const {
  std::lock_guard lock(mu_);
  return queued_rows_;
}

size_t LedgerWriter::queued_resign_batches() const {
  std::lock_guard lock(mu_);
  return resign_queue_.size();
}

void LedgerWriter::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

LedgerWriterStats LedgerWriter::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

void LedgerWriter::Run() {
  std::vector<Pending> batch;
  std::vector<LedgerEntry> rows;
  size_t last_commit_rows = 0;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty() || !resign_queue_.empty(); });
      if (queue_.empty()) {
        if (resign_queue_.empty()) return;  // stopping and drained
        // Nothing interactive is waiting: one re-sign batch, then look again.
        PendingResign p = std::move(resign_queue_.front());
        resign_queue_.pop_front();
        lock.unlock();
        Status st = store_.AppendResignBatch(*p.batch);
        p.done(st);
        continue;
      }
      if (last_commit_rows >= options_.linger_after_rows && queued_rows_ < options_.linger_target_rows &&
          options_.linger.count() > 0) {
        lingering_ = true;
        cv_.wait_for(lock, options_.linger,
                     [this] { return stopping_ || queued_rows_ >= options_.linger_target_rows; });
        lingering_ = false;
      }
      size_t taken = 0;
      while (!queue_.empty() && (batch.empty() || taken + queue_.front().entries.size() <= options_.max_batch_rows)) {
        taken += queue_.front().entries.size();
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_rows_ -= taken;
    }
    rows.clear();
    for (auto& p : batch) {
      for (auto& e : p.entries) rows.push_back(std::move(e));
    }
    last_commit_rows = rows.size();
    Status st = store_.AppendBatch(rows);
    // Hand each submission its rows back (with seq filled in on success).
    size_t i = 0;
    for (auto& p : batch) {
      for (auto& e : p.entries) e = std::move(rows[i++]);
    }
    {
      std::lock_guard lock(mu_);
      if (st.ok()) {
        ++stats_.commits;
        stats_.rows += rows.size();
      } else {
        ++stats_.failed_commits;
      }
    }
    for (auto& p : batch) p.done(st, p.entries);
    batch.clear();
  }
}

}  // namespace concierge::core
