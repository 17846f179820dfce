#include "core/ledger_writer.h"

#include <pthread.h>

#include <future>
#include "audit/entry.h"
#include "concierge/thread_priority.h"

namespace concierge::core {

AuditRecord SignatureAuditRecord(const LedgerEntry& row) {
  AuditRecord r;
  r.time = row.signed_at;
  r.actor = row.api_key_id;
  r.tenant_id = row.tenant_id;
  r.action = "sign." + row.kind;
  r.target = row.key_id;
  r.outcome = kAuditSuccess;
  r.request_id = row.request_id;
  r.client_address = row.client_address;
  r.policy_hash = row.policy_hash;
  // Built by hand in canonical form (keys in byte order): this runs for every
  // signature, and a JSON DOM would cost more than the hashing.
  std::string& d = r.detail_json;
  d.reserve(160 + row.asset_id.size() + row.digest_hex.size());
  d = "{\"algorithm\":";
  audit::AppendJsonString(d, row.algorithm);
  if (!row.asset_id.empty()) {
    d += ",\"asset_id\":";
    audit::AppendJsonString(d, row.asset_id);
  }
  if (!row.cert_serial.empty()) {
    d += ",\"cert_serial\":";
    audit::AppendJsonString(d, row.cert_serial);
  }
  d += ",\"digest\":";
  audit::AppendJsonString(d, row.digest_hex);
  d += ",\"key_version\":";
  d += std::to_string(row.key_version);
  d += ",\"ledger_seq\":";
  d += std::to_string(row.seq);
  d += "}";
  return r;
}

LedgerWriter::LedgerWriter(LedgerStore& store, LedgerWriterOptions options, audit::CompactRange audit_tree,
                           AuditReload reload)
    : store_(store),
      options_(options),
      tree_(audit_tree),
      reload_(std::move(reload)),
      committed_(std::move(audit_tree)) {
  std::promise<bool> started;
  std::future<bool> raised = started.get_future();
  thread_ = std::thread([this, &started] {
    pthread_setname_np(pthread_self(), "ledger-writer");  // for top -H, perf and gdb
    started.set_value(options_.thread_nice != 0 && SetThisThreadNice(options_.thread_nice));
    Run();
  });
  priority_raised_ = raised.get();
}

LedgerWriter::~LedgerWriter() { Stop(); }

void LedgerWriter::Enqueue(Pending pending, size_t rows) {
  bool stopping;
  {
    std::lock_guard lock(mu_);
    stopping = stopping_;
    if (!stopping && queued_rows_ + rows <= options_.max_queued_rows) {
      queued_rows_ += rows;
      queue_.push_back(std::move(pending));
      // While the writer lingers, wake it only once the group is big enough:
      // a wake-up per request would cost more than the larger commit saves.
      if (!lingering_ || queued_rows_ >= options_.linger_target_rows) cv_.notify_one();
      return;
    }
  }
  Status st = UnavailableError(stopping ? "ledger writer is shutting down" : "ledger writer is overloaded; retry");
  if (pending.audit) {
    pending.audit_done(st, *pending.audit);
  } else {
    pending.done(st, pending.entries);
  }
}

void LedgerWriter::Submit(std::vector<LedgerEntry> entries, DoneWithEntries done) {
  const size_t rows = entries.size();
  Enqueue(Pending{std::move(entries), std::move(done), std::nullopt, nullptr}, rows);
}

void LedgerWriter::SubmitAudit(AuditRecord record, AuditDone done) {
  Enqueue(Pending{{}, nullptr, std::move(record), std::move(done)}, 1);
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

Status LedgerWriter::last_maintenance_error() const {
  std::lock_guard lock(mu_);
  return maintenance_error_;
}

void LedgerWriter::Maintain() {
  Status st = store_.Maintain();
  if (st.ok()) return;
  std::lock_guard lock(mu_);
  ++stats_.maintenance_failures;
  maintenance_error_ = std::move(st);
}

AuditHead LedgerWriter::CommittedAuditHead() const {
  audit::CompactRange committed;
  {
    std::lock_guard lock(mu_);
    committed = committed_;
  }
  return AuditHead{committed.size(), committed.Root()};
}

const AuditRecord& LedgerWriter::AppendAuditLeaf(AuditRecord record, AuditAppend& out) {
  record.index = static_cast<int64_t>(tree_.size());
  record.leaf_hash = audit::EntryLeafHash(record);
  tree_.Append(record.leaf_hash, [&out](int level, uint64_t index, const audit::Hash& hash) {
    if (level % kAuditNodeLevelStride == 0) out.nodes.push_back(AuditNode{level, static_cast<int64_t>(index), hash});
  });
  out.entries.push_back(std::move(record));
  return out.entries.back();
}

// After a failed commit: the tree goes back to what the store holds (reloaded
// when possible, in case the failure was ambiguous), else to `before`.
void LedgerWriter::RestoreTree(const audit::CompactRange& before) {
  tree_ = before;
  if (reload_) {
    StatusOr<audit::CompactRange> reloaded = reload_();
    if (reloaded.ok()) tree_ = *std::move(reloaded);
  }
}

// Several instances on one database: the store read the log's size under its
// append lock; if another instance appended since our tree was built, our
// right edge is stale and is re-read before we extend it.
Status LedgerWriter::CatchUpTree(int64_t stored_size) {
  if (stored_size < 0 || static_cast<uint64_t>(stored_size) == tree_.size()) return Status::Ok();
  if (!reload_) return FailedPreconditionError("audit log was appended by another writer and cannot be reloaded");
  ASSIGN_OR_RETURN(audit::CompactRange reloaded, reload_());
  if (reloaded.size() != static_cast<uint64_t>(stored_size)) {
    return UnavailableError("audit log size changed while reloading it; retry");
  }
  tree_ = std::move(reloaded);
  return Status::Ok();
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
        // Re-signatures are signatures: each gets its audit entry in the
        // same transaction, continuing the one ordered tree.
        const audit::CompactRange before = tree_;
        size_t audit_records = 0;
        AuditBuilder builder = [&](const std::vector<LedgerEntry>& rows, AuditAppend& out) -> Status {
          RETURN_IF_ERROR(CatchUpTree(out.stored_size));
          for (const LedgerEntry& row : rows) AppendAuditLeaf(SignatureAuditRecord(row), out);
          audit_records = out.entries.size();
          return Status::Ok();
        };
        Status st = store_.AppendResignBatch(*p.batch, builder);
        if (!st.ok()) RestoreTree(before);
        {
          std::lock_guard relock(mu_);
          if (st.ok()) stats_.audit_records += audit_records;
          committed_ = tree_;
        }
        p.done(st);
        Maintain();
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
      auto size_of = [](const Pending& p) { return p.audit ? size_t{1} : p.entries.size(); };
      while (!queue_.empty() && (batch.empty() || taken + size_of(queue_.front()) <= options_.max_batch_rows)) {
        taken += size_of(queue_.front());
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

    // Runs inside the store's transaction, once the rows have their seq.
    // Audit order is queue order: a submission's records are contiguous.
    const audit::CompactRange before = tree_;
    size_t audit_records = 0;
    AuditBuilder builder = [&](const std::vector<LedgerEntry>& committed_rows, AuditAppend& out) -> Status {
      RETURN_IF_ERROR(CatchUpTree(out.stored_size));
      out.entries.reserve(committed_rows.size() + batch.size());
      size_t row = 0;
      for (auto& p : batch) {
        if (p.audit) {
          const AuditRecord& stored = AppendAuditLeaf(*p.audit, out);
          p.audit->index = stored.index;
          p.audit->leaf_hash = stored.leaf_hash;
          continue;
        }
        for (size_t i = 0; i < p.entries.size(); ++i) {
          AppendAuditLeaf(SignatureAuditRecord(committed_rows[row++]), out);
        }
      }
      audit_records = out.entries.size();
      return Status::Ok();
    };
    Status st = store_.AppendBatch(rows, builder);
    if (!st.ok()) RestoreTree(before);
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
        stats_.audit_records += audit_records;
      } else {
        ++stats_.failed_commits;
      }
      committed_ = tree_;
    }
    // A fenced batch (another instance retired one of its keys) is the
    // signers' to redo; its state-change records were not at fault and go
    // back to the front of the queue.
    const bool fenced = IsKeyFenced(st);
    for (auto& p : batch) {
      if (!p.audit) {
        p.done(st, p.entries);
      } else if (!fenced) {
        p.audit_done(st, *p.audit);
      }
    }
    if (fenced) RequeueAuditRecords(batch);
    batch.clear();
    Maintain();
  }
}

void LedgerWriter::RequeueAuditRecords(std::vector<Pending>& batch) {
  std::lock_guard lock(mu_);
  for (auto it = batch.rbegin(); it != batch.rend(); ++it) {
    if (!it->audit) continue;
    queue_.push_front(std::move(*it));
    ++queued_rows_;
  }
}

}  // namespace concierge::core
