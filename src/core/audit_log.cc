#include "core/audit_log.h"

#include <future>

#include "audit/checkpoint.h"
#include "audit/entry.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/keys.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

constexpr char kVerifyHint[] = "; run `keyctl audit verify --db` for a full report";

audit::CheckpointTime ToCheckpointTime(TimePoint t) {
  return std::chrono::floor<std::chrono::milliseconds>(t);
}

TimePoint FromCheckpointTime(audit::CheckpointTime t) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(t.time_since_epoch()));
}

}  // namespace

StatusOr<std::vector<audit::Hash>> StoreTreeReader::ReadNodes(int level, uint64_t begin, uint64_t end) {
  return store_.AuditNodes(level, static_cast<int64_t>(begin), static_cast<int64_t>(end));
}

StatusOr<audit::Checkpoint> VerifyStoredCheckpoint(const AuditCheckpointRecord& c,
                                                   const std::vector<AuditKeyRecord>& keys) {
  const AuditKeyRecord* key = nullptr;
  for (const AuditKeyRecord& k : keys) {
    if (k.key_id == c.key_id) key = &k;
  }
  if (key == nullptr) return DataLossError("checkpoint " + std::to_string(c.id) + " names an unknown audit key");
  auto alg = ParseAlgorithm(key->algorithm);
  if (!alg) return DataLossError("audit key '" + key->key_id + "' has an unknown algorithm");
  ASSIGN_OR_RETURN(crypto::EvpPkeyPtr pub, crypto::PublicKeyFromPem(key->public_key_pem));
  StatusOr<audit::Checkpoint> cp = audit::VerifyCheckpoint(audit::SignedCheckpoint{c.note, c.signature}, pub.get(), *alg);
  if (!cp.ok()) {
    return DataLossError("checkpoint " + std::to_string(c.id) + " does not verify: " + cp.status().message());
  }
  if (cp->tree_size != static_cast<uint64_t>(c.tree_size) || cp->root_hash != c.root_hash ||
      FromCheckpointTime(cp->timestamp) != c.timestamp) {
    return DataLossError("checkpoint " + std::to_string(c.id) + ": the stored size, root or time differ from the signed note");
  }
  if (cp->origin != key->origin) {
    return DataLossError("checkpoint " + std::to_string(c.id) + " is for log '" + cp->origin + "', not '" +
                         key->origin + "'");
  }
  return cp;
}

StatusOr<audit::CompactRange> RestoreAuditTree(AuditStore& store) {
  ASSIGN_OR_RETURN(int64_t size, store.AuditSize());
  StoreTreeReader reader(store);
  ASSIGN_OR_RETURN(std::optional<AuditCheckpointRecord> latest, store.LatestAuditCheckpoint());
  int64_t anchored = 0;
  audit::CompactRange tree;
  if (latest) {
    ASSIGN_OR_RETURN(std::vector<AuditKeyRecord> keys, store.ListAuditKeys());
    StatusOr<audit::Checkpoint> cp = VerifyStoredCheckpoint(*latest, keys);
    if (!cp.ok()) return DataLossError("audit log: " + cp.status().message() + kVerifyHint);
    if (latest->tree_size > size) {
      return DataLossError("audit log: the latest checkpoint covers " + std::to_string(latest->tree_size) +
                           " entries but only " + std::to_string(size) + " are stored" + kVerifyHint);
    }
    StatusOr<audit::CompactRange> range = audit::CompactRangeAt(reader, static_cast<uint64_t>(latest->tree_size));
    if (!range.ok()) return DataLossError("audit log: " + range.status().message() + kVerifyHint);
    if (range->Root() != latest->root_hash) {
      return DataLossError("audit log: the stored tree does not match the latest checkpoint (size " +
                           std::to_string(latest->tree_size) + ")" + kVerifyHint);
    }
    anchored = latest->tree_size;
    tree = *std::move(range);
  }
  // Entries after the checkpoint are covered by no signature yet: recompute
  // each from its columns (bounded by the checkpoint interval), and extend the
  // tree from those, not from stored nodes nobody has checked.
  AuditQuery q;
  q.after_index = anchored - 1;
  q.limit = 1000;
  for (;;) {
    ASSIGN_OR_RETURN(AuditPage page, store.ListAudit(q));
    for (const AuditRecord& r : page.entries) {
      const int64_t expected = static_cast<int64_t>(tree.size());
      if (r.index != expected) {
        return DataLossError("audit log: entry " + std::to_string(expected) + " is missing" + kVerifyHint);
      }
      const AuditHash leaf = audit::EntryLeafHash(r);
      if (leaf != r.leaf_hash) {
        return DataLossError("audit log: entry " + std::to_string(expected) +
                             " does not match its stored leaf hash" + kVerifyHint);
      }
      tree.Append(leaf);
    }
    if (page.next_cursor < 0) break;
    q.after_index = page.next_cursor;
  }
  if (static_cast<int64_t>(tree.size()) != size) {
    return DataLossError("audit log: entries " + std::to_string(tree.size()) + ".." + std::to_string(size - 1) +
                         " are missing" + kVerifyHint);
  }
  return tree;
}

StatusOr<std::unique_ptr<AuditLog>> AuditLog::Create(LedgerWriter& writer, AuditStore& store,
                                                     BackendRegistry& backends, Clock& clock,
                                                     AuditLogOptions options) {
  if (options.checkpoint_interval.count() < 1) {
    return FieldError("audit_checkpoint_interval_seconds", "the checkpoint interval must be at least 1 second");
  }
  ASSIGN_OR_RETURN(std::vector<AuditKeyRecord> keys, store.ListAuditKeys());
  AuditKeyRecord key;
  KeyBackend* backend = nullptr;
  if (keys.empty()) {
    audit::Checkpoint probe{options.origin, 0, audit::EmptyRoot(), {}};
    if (Status st = audit::SerializeCheckpoint(probe).status(); !st.ok()) {
      return FieldError("audit_origin", "audit origin is not usable: " + st.message());
    }
    backend = backends.Find(options.key_provider);
    if (backend == nullptr) {
      return FailedPreconditionError("backend '" + options.key_provider + "' for the audit key is not configured");
    }
    ASSIGN_OR_RETURN(GeneratedKey generated, backend->GenerateKey(KeySpec{Algorithm::kES256, "keyctl/audit", ""}));
    StatusOr<std::string> pem = crypto::SpkiDerToPem(generated.public_key_spki_der);
    key = AuditKeyRecord{"audit-" + crypto::Sha256Hex(generated.public_key_spki_der).substr(0, 16),
                         options.origin,
                         "ES256",
                         options.key_provider,
                         generated.uri,
                         pem.ok() ? *pem : "",
                         clock.Now()};
    Status stored = pem.ok() ? store.InsertAuditKey(key) : pem.status();
    if (!stored.ok()) {
      backend->DestroyKey(generated.uri).IgnoreError();  // nobody will ever use it
      return stored.Annotate("creating the audit key");
    }
  } else {
    key = keys.back();  // the newest
    backend = backends.Find(key.provider);
    if (backend == nullptr) {
      return FailedPreconditionError("backend '" + key.provider + "' holding the audit key is not configured");
    }
  }
  ASSIGN_OR_RETURN(std::optional<AuditCheckpointRecord> latest, store.LatestAuditCheckpoint());
  std::optional<TimePoint> last;
  if (latest) last = latest->timestamp;
  return std::unique_ptr<AuditLog>(
      new AuditLog(writer, store, *backend, clock, std::move(options), std::move(key), last));
}

AuditLog::AuditLog(LedgerWriter& writer, AuditStore& store, KeyBackend& backend, Clock& clock,
                   AuditLogOptions options, AuditKeyRecord key, std::optional<TimePoint> last_checkpoint)
    : writer_(writer),
      store_(store),
      backend_(backend),
      clock_(clock),
      options_(std::move(options)),
      key_(std::move(key)),
      last_checkpoint_(last_checkpoint) {}

AuditLog::~AuditLog() { Stop(); }

StatusOr<AuditRecord> AuditLog::Record(const AuditEvent& event, std::string_view outcome) {
  AuditRecord r;
  r.time = clock_.Now();
  r.actor = audit::SanitizeField(event.actor);
  r.tenant_id = audit::SanitizeField(event.tenant_id);
  r.action = audit::SanitizeField(event.action);
  r.target = audit::SanitizeField(event.target);
  r.outcome = std::string(outcome);
  r.request_id = audit::SanitizeField(event.request_id);
  r.client_address = audit::SanitizeField(event.client_address);
  r.policy_hash = audit::SanitizeField(event.policy_hash);
  ASSIGN_OR_RETURN(r.detail_json, audit::CanonicalDetail(event.detail));
  if (r.detail_json.size() > kMaxDetailBytes) {
    return FieldError("detail", "audit detail is " + std::to_string(r.detail_json.size()) + " bytes; the limit is " +
                                    std::to_string(kMaxDetailBytes));
  }
  // The writer always calls back exactly once (also when stopping), so
  // waiting on the future cannot hang past the writer's own commit. The
  // promise is shared so it outlives a set_value that races our return.
  auto done = std::make_shared<std::promise<StatusOr<AuditRecord>>>();
  std::future<StatusOr<AuditRecord>> result = done->get_future();
  writer_.SubmitAudit(std::move(r), [done](const Status& st, const AuditRecord& stored) {
    if (st.ok()) {
      done->set_value(stored);
    } else {
      done->set_value(st);
    }
  });
  StatusOr<AuditRecord> stored = result.get();
  if (!stored.ok()) return UnavailableError("audit log unavailable: " + stored.status().message());
  return stored;
}

StatusOr<int64_t> AuditLog::Begin(const AuditEvent& event) {
  ASSIGN_OR_RETURN(AuditRecord r, Record(event, kAuditAttempted));
  return r.index;
}

Status AuditLog::Finish(const AuditEvent& event, int64_t attempt_index, const Status& outcome,
                        const json& result) {
  AuditEvent done = event;
  if (!done.detail.is_object()) done.detail = json::object();
  done.detail["attempt_index"] = attempt_index;
  if (outcome.ok()) {
    if (result.is_object()) {
      for (const auto& [k, v] : result.items()) done.detail[k] = v;
    }
  } else {
    done.detail["error"] = std::string(StatusCodeName(outcome.code()));
    done.detail["message"] = audit::SanitizeField(outcome.message(), 512);
  }
  return Record(done, outcome.ok() ? kAuditSuccess : kAuditFailure).status();
}

StatusOr<AuditCheckpointRecord> AuditLog::Checkpoint(bool force) {
  std::lock_guard lock(checkpoint_mu_);
  const AuditHead head = writer_.CommittedAuditHead();
  const TimePoint now = clock_.Now();
  ASSIGN_OR_RETURN(std::optional<AuditCheckpointRecord> latest, store_.LatestAuditCheckpoint());
  if (!force && latest && latest->tree_size == static_cast<int64_t>(head.size) && latest->root_hash == head.root) {
    last_checkpoint_ = now;
    return *latest;
  }
  audit::Checkpoint cp{key_.origin, head.size, head.root, ToCheckpointTime(now)};
  auto alg = ParseAlgorithm(key_.algorithm);
  if (!alg) return FailedPreconditionError("audit key '" + key_.key_id + "' has an unknown algorithm");
  audit::DigestSigner signer = [this, a = *alg](ByteView digest) {
    return backend_.SignDigest(key_.key_uri, a, digest);
  };
  ASSIGN_OR_RETURN(audit::SignedCheckpoint signed_cp, audit::SignCheckpoint(cp, *alg, signer));
  AuditCheckpointRecord record;
  record.tree_size = static_cast<int64_t>(head.size);
  record.root_hash = head.root;
  record.timestamp = FromCheckpointTime(cp.timestamp);
  record.key_id = key_.key_id;
  record.note = std::move(signed_cp.note);
  record.signature = std::move(signed_cp.signature);
  RETURN_IF_ERROR(store_.InsertAuditCheckpoint(record));
  last_checkpoint_ = now;
  return record;
}

void AuditLog::Tick() {
  {
    std::lock_guard lock(checkpoint_mu_);
    if (last_checkpoint_ && clock_.Now() - *last_checkpoint_ < options_.checkpoint_interval) return;
  }
  StatusOr<AuditCheckpointRecord> cp = Checkpoint();
  if (!cp.ok() && options_.on_error) options_.on_error(cp.status());
}

StatusOr<std::optional<AuditCheckpointRecord>> AuditLog::Latest() { return store_.LatestAuditCheckpoint(); }

StatusOr<InclusionProofResult> AuditLog::InclusionProof(int64_t index, int64_t tree_size) {
  const int64_t committed = static_cast<int64_t>(writer_.CommittedAuditHead().size);
  if (tree_size < 1 || tree_size > committed) {
    return FieldError("size", "size must be between 1 and the tree size " + std::to_string(committed));
  }
  if (index < 0 || index >= tree_size) {
    return FieldError("index", "index must be between 0 and size - 1 (" + std::to_string(tree_size - 1) + ")");
  }
  StoreTreeReader reader(store_);
  InclusionProofResult out;
  out.index = index;
  out.tree_size = tree_size;
  ASSIGN_OR_RETURN(out.path, audit::InclusionProof(static_cast<uint64_t>(index), static_cast<uint64_t>(tree_size), reader));
  ASSIGN_OR_RETURN(std::vector<audit::Hash> leaf, store_.AuditNodes(0, index, index + 1));
  out.leaf_hash = leaf.front();
  ASSIGN_OR_RETURN(out.root_hash, audit::RootAt(reader, static_cast<uint64_t>(tree_size)));
  return out;
}

StatusOr<ConsistencyProofResult> AuditLog::ConsistencyProof(int64_t from_size, int64_t to_size) {
  const int64_t committed = static_cast<int64_t>(writer_.CommittedAuditHead().size);
  if (to_size < 0 || to_size > committed) {
    return FieldError("to", "to must be between 0 and the tree size " + std::to_string(committed));
  }
  if (from_size < 0 || from_size > to_size) return FieldError("from", "from must be between 0 and to");
  StoreTreeReader reader(store_);
  ConsistencyProofResult out;
  out.from_size = from_size;
  out.to_size = to_size;
  ASSIGN_OR_RETURN(out.path, audit::ConsistencyProof(static_cast<uint64_t>(from_size),
                                                     static_cast<uint64_t>(to_size), reader));
  ASSIGN_OR_RETURN(out.from_root, audit::RootAt(reader, static_cast<uint64_t>(from_size)));
  ASSIGN_OR_RETURN(out.to_root, audit::RootAt(reader, static_cast<uint64_t>(to_size)));
  return out;
}

void AuditLog::Start() {
  std::lock_guard lock(thread_mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Loop(); });
}

void AuditLog::Loop() {
  std::unique_lock lock(thread_mu_);
  while (!thread_cv_.wait_for(lock, options_.poll_interval, [this] { return stopping_; })) {
    lock.unlock();
    Tick();
    lock.lock();
  }
}

void AuditLog::Stop() {
  {
    std::lock_guard lock(thread_mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  thread_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  StatusOr<AuditCheckpointRecord> cp = Checkpoint();  // anchors everything written before the stop
  if (!cp.ok() && options_.on_error) options_.on_error(cp.status());
}

}  // namespace concierge::core
