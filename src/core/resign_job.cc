#include "core/resign_job.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <future>
#include <thread>

#include "concierge/thread_priority.h"
#include "core/incident.h"
#include "core/webhook.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"

namespace concierge::core {
namespace {

using json = nlohmann::json;

// Samples older than this do not count toward the recent rate.
constexpr std::chrono::seconds kRateWindow{30};

// Why an entry cannot be re-signed from the ledger alone, or "" when it can.
std::string NeedsClientReason(const LedgerEntry& e, Algorithm alg) {
  if (e.kind == "cose") {
    return "COSE_Sign1: the signature covers the protected header (old certificate chain) and the payload, "
           "which is not stored; re-sign the payload with POST /sign/cose";
  }
  if (e.kind == "raw") {
    return "raw signature over bytes that are not stored (c2patool's COSE structure naming the old "
           "certificate); re-run the signer with the new key";
  }
  if (e.kind != "digest" && e.kind != "batch" && e.kind != "resign") {
    return "ledger kind '" + e.kind + "' cannot be re-signed from its digest";
  }
  const size_t bytes = e.digest_hex.size() / 2;
  if (e.digest_hex.size() % 2 != 0 || !DigestSizeAccepted(alg, bytes)) {
    return "the " + std::to_string(bytes) + "-byte digest does not fit the new key's algorithm " +
           std::string(AlgorithmName(alg)) + "; re-sign with a matching digest";
  }
  return "";
}

}  // namespace

bool IsFinishedJobState(std::string_view s) { return s == "completed" || s == "failed" || s == "cancelled"; }

json ResignJobJson(const ResignJobRecord& j) {
  return {{"job_id", j.job_id},
          {"type", "resign"},
          {"tenant_id", j.tenant_id},
          {"incident_id", j.incident_id.empty() ? json(nullptr) : json(j.incident_id)},
          {"compromised_key_id", j.compromised_key_id},
          {"new_key_id", j.new_key_id},
          {"since", OptionalTimeJson(j.since)},
          {"state", j.state},
          {"cursor_seq", j.cursor_seq},
          {"total", std::max(j.total, j.processed)},
          {"done", j.processed},
          {"resigned", j.resigned},
          {"needs_client", j.needs_client},
          {"already_resigned", j.already_resigned},
          {"error", j.error.empty() ? json(nullptr) : json(j.error)},
          {"created_by", j.created_by},
          {"created_at", FormatRfc3339(j.created_at)},
          {"updated_at", FormatRfc3339(j.updated_at)},
          {"started_at", OptionalTimeJson(j.started_at)},
          {"finished_at", OptionalTimeJson(j.finished_at)}};
}

json ResignResultJson(const ResignResult& r) {
  json j = {{"original_seq", r.original_seq},
            {"status", r.status},
            {"asset_id", r.asset_id.empty() ? json(nullptr) : json(r.asset_id)},
            {"digest", r.digest_hex},
            {"original_kind", r.original_kind}};
  if (r.status == "needs_client") {
    j["detail"] = r.detail;
    return j;
  }
  j["new_seq"] = r.new_seq;
  j["key_id"] = r.key_id;
  j["key_version"] = r.key_version;
  if (!r.signature_b64.empty()) {
    j["signature"] = r.signature_b64;
    j["signature_format"] = r.signature_format;
  }
  if (!r.detail.empty()) j["detail"] = r.detail;
  return j;
}

std::chrono::nanoseconds TokenBucket::Take(double n, TimePoint now) {
  std::lock_guard lock(mu_);
  if (refilled_at_ && now > *refilled_at_) {
    tokens_ = std::min(burst_, tokens_ + std::chrono::duration<double>(now - *refilled_at_).count() * rate_);
  }
  if (!refilled_at_ || now > *refilled_at_) refilled_at_ = now;
  if (tokens_ >= n) {
    tokens_ -= n;
    return std::chrono::nanoseconds(0);
  }
  const double missing = n - tokens_;
  return std::chrono::nanoseconds(static_cast<int64_t>(missing / rate_ * 1e9) + 1);
}

struct ResignJobEngine::Prepared {
  KeyRecord new_key;
  KeyBackend* backend = nullptr;
  Algorithm alg = Algorithm::kES256;
  std::string cert_serial;  // the new key's active certificate, if any
  std::string policy_hash;
};

ResignJobEngine::ResignJobEngine(Store& store, LedgerStore& ledger, LedgerWriter& writer, BackendRegistry& backends,
                                 Clock& clock, ResignJobOptions options)
    : store_(store), ledger_(ledger), writer_(writer), backends_(backends), clock_(clock), options_(options) {}

ResignJobEngine::~ResignJobEngine() { Stop(); }

void ResignJobEngine::AddFinishedListener(std::function<void(const ResignJobRecord&)> listener) {
  finished_listeners_.push_back(std::move(listener));
}

StatusOr<ResignJobRecord> ResignJobEngine::Create(const NewResignJob& req) {
  if (req.compromised_key_id.empty()) return FieldError("compromised_key_id", "compromised_key_id is required");
  ASSIGN_OR_RETURN(TenantRecord tenant, store_.GetTenant(req.tenant_id));
  if (tenant.deleted) return NotFoundError("tenant '" + req.tenant_id + "' is deleted");
  auto key_of_tenant = [&](const std::string& key_id, const char* field) -> StatusOr<KeyRecord> {
    auto key = store_.GetKey(key_id);
    if (!key.ok() || key->tenant_id != req.tenant_id) {
      if (!key.ok() && key.status().code() != StatusCode::kNotFound) return key.status();
      return FieldError(field, "tenant '" + req.tenant_id + "' has no key '" + key_id.substr(0, 64) + "'");
    }
    return key;
  };
  ASSIGN_OR_RETURN(KeyRecord old_key, key_of_tenant(req.compromised_key_id, "compromised_key_id"));
  KeyRecord new_key;
  if (req.new_key_id.empty()) {
    auto active = store_.GetActiveKey(req.tenant_id);
    if (!active.ok()) {
      return FailedPreconditionError("tenant '" + req.tenant_id + "' has no active key to re-sign with")
          .WithDetail("field", "new_key_id");
    }
    new_key = *std::move(active);
  } else {
    ASSIGN_OR_RETURN(new_key, key_of_tenant(req.new_key_id, "new_key_id"));
  }
  if (new_key.key_id == old_key.key_id) {
    return FailedPreconditionError("key '" + old_key.key_id +
                                   "' is still the tenant's active key: rotate to a new key first "
                                   "(keyctl incident respond does both)")
        .WithDetail("field", "compromised_key_id");
  }
  if (old_key.state == "active") {
    return FailedPreconditionError("key '" + old_key.key_id + "' is still active: rotate first")
        .WithDetail("field", "compromised_key_id");
  }
  if (new_key.state != "active") {
    return FailedPreconditionError("new key '" + new_key.key_id + "' is " + new_key.state + ", not active")
        .WithDetail("field", "new_key_id");
  }
  if (backends_.Find(new_key.provider) == nullptr) {
    return UnavailableError("backend '" + new_key.provider + "' of key '" + new_key.key_id + "' is not configured");
  }
  ASSIGN_OR_RETURN(auto unfinished,
                   store_.ListResignJobs(req.tenant_id, {"queued", "running", "paused"}));
  for (const auto& j : unfinished) {
    if (j.compromised_key_id == old_key.key_id && j.new_key_id == new_key.key_id) {
      return AlreadyExistsError("job " + j.job_id + " already re-signs key '" + old_key.key_id + "' with '" +
                                new_key.key_id + "' (" + j.state + ")");
    }
  }
  TimePoint now = clock_.Now();
  ResignJobRecord job;
  job.job_id = "job_" + crypto::RandomHex(8);
  job.tenant_id = req.tenant_id;
  job.incident_id = req.incident_id;
  job.compromised_key_id = old_key.key_id;
  job.new_key_id = new_key.key_id;
  job.since = req.since;
  job.state = "queued";
  job.created_by = req.actor;
  job.created_at = now;
  job.updated_at = now;
  RETURN_IF_ERROR(store_.InsertResignJob(job));
  Wake();
  return job;
}

StatusOr<ResignJobRecord> ResignJobEngine::Move(const std::string& job_id, const std::vector<std::string>& from,
                                                const std::string& to, const std::string& error) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    ASSIGN_OR_RETURN(ResignJobRecord job, store_.GetResignJob(job_id));
    if (job.state == to) return job;
    if (std::find(from.begin(), from.end(), job.state) == from.end()) {
      return FailedPreconditionError("job " + job_id + " is " + job.state + "; cannot make it " + to);
    }
    std::vector<WebhookEventRecord> notify;
    ResignJobRecord moved = job;
    moved.state = to;
    moved.updated_at = clock_.Now();
    if (!error.empty()) moved.error = error;
    if (IsFinishedJobState(to)) {
      moved.finished_at = moved.updated_at;
      const char* type = to == "completed" ? "job.completed" : to == "failed" ? "job.failed" : "job.cancelled";
      notify.push_back(NewWebhookEvent(type, job.tenant_id, {{"job", ResignJobJson(moved)}}, moved.updated_at));
    }
    Status st = store_.UpdateResignJobState(job_id, job.state, to, error, moved.updated_at, notify);
    if (st.code() == StatusCode::kAborted) continue;  // moved under us: look again
    RETURN_IF_ERROR(st);
    if (IsFinishedJobState(to)) Finished(moved);
    return moved;
  }
  return AbortedError("job " + job_id + " keeps changing state; retry");
}

StatusOr<ResignJobRecord> ResignJobEngine::Pause(const std::string& job_id) {
  return Move(job_id, {"queued", "running"}, "paused", "");
}

StatusOr<ResignJobRecord> ResignJobEngine::Resume(const std::string& job_id) {
  // Back to queued: the next step recounts what is left from the cursor.
  ASSIGN_OR_RETURN(ResignJobRecord job, Move(job_id, {"paused"}, "queued", ""));
  Wake();
  return job;
}

StatusOr<ResignJobRecord> ResignJobEngine::Cancel(const std::string& job_id) {
  return Move(job_id, {"queued", "running", "paused"}, "cancelled", "");
}

void ResignJobEngine::Finished(const ResignJobRecord& job) {
  {
    std::lock_guard lock(mu_);
    prepared_.erase(job.job_id);
    failures_.erase(job.job_id);
    samples_.erase(job.job_id);
  }
  for (const auto& l : finished_listeners_) l(job);
}

void ResignJobEngine::NoteProgress(const ResignJobRecord& job) {
  std::lock_guard lock(mu_);
  auto& s = samples_[job.job_id];
  TimePoint now = clock_.Now();
  s.emplace_back(now, job.processed);
  while (s.size() > 2 && now - s.front().first > kRateWindow) s.pop_front();
}

StatusOr<JobProgress> ResignJobEngine::Progress(const std::string& job_id) {
  JobProgress p;
  ASSIGN_OR_RETURN(p.job, store_.GetResignJob(job_id));
  std::optional<std::pair<TimePoint, int64_t>> first, last;
  {
    std::lock_guard lock(mu_);
    auto it = samples_.find(job_id);
    if (it != samples_.end() && it->second.size() >= 2) {
      first = it->second.front();
      last = it->second.back();
    }
  }
  double seconds = 0, done = 0;
  if (first && last) {
    seconds = std::chrono::duration<double>(last->first - first->first).count();
    done = static_cast<double>(last->second - first->second);
  } else if (p.job.started_at && !IsFinishedJobState(p.job.state)) {
    // No samples here (another process runs it, or just restarted): the average.
    seconds = std::chrono::duration<double>(clock_.Now() - *p.job.started_at).count();
    done = static_cast<double>(p.job.processed);
  }
  if (seconds > 0 && done > 0) {
    p.rate_per_second = done / seconds;
    const int64_t left = std::max<int64_t>(0, p.job.total - p.job.processed);
    p.eta = std::chrono::seconds(static_cast<int64_t>(static_cast<double>(left) / *p.rate_per_second + 0.5));
  }
  if (p.job.state == "completed") p.eta = std::chrono::seconds(0);
  return p;
}

StatusOr<std::shared_ptr<const ResignJobEngine::Prepared>> ResignJobEngine::Prepare(const ResignJobRecord& job) {
  {
    std::lock_guard lock(mu_);
    auto it = prepared_.find(job.job_id);
    if (it != prepared_.end()) return it->second;
  }
  auto p = std::make_shared<Prepared>();
  ASSIGN_OR_RETURN(p->new_key, store_.GetKey(job.new_key_id));
  p->backend = backends_.Find(p->new_key.provider);
  if (p->backend == nullptr) {
    return UnavailableError("backend '" + p->new_key.provider + "' of key '" + p->new_key.key_id +
                            "' is not configured");
  }
  auto alg = ParseAlgorithm(p->new_key.algorithm);
  if (!alg) return DataLossError("key '" + p->new_key.key_id + "' has an unknown algorithm");
  p->alg = *alg;
  auto cert = store_.GetActiveCertificate(p->new_key.key_id);
  if (cert.ok()) p->cert_serial = cert->serial;
  auto policy = store_.GetActivePolicy(job.tenant_id);
  if (policy.ok()) p->policy_hash = policy->policy_hash;
  std::lock_guard lock(mu_);
  prepared_[job.job_id] = p;
  return std::shared_ptr<const Prepared>(p);
}

Status ResignJobEngine::Throttle(const std::string& provider, int n) {
  if (options_.interactive_busy) {
    std::chrono::microseconds yielded{0};
    while (yielded < options_.max_yield_per_chunk && options_.interactive_busy()) {
      std::this_thread::sleep_for(options_.yield_for);
      yielded += options_.yield_for;
    }
  }
  if (options_.rate_per_backend <= 0) return Status::Ok();
  TokenBucket* bucket;
  {
    std::lock_guard lock(mu_);
    auto& b = buckets_[provider];
    if (!b) b = std::make_unique<TokenBucket>(options_.rate_per_backend, std::max<double>(options_.rate_per_backend, n));
    bucket = b.get();
  }
  for (;;) {
    std::chrono::nanoseconds wait = bucket->Take(n, clock_.Now());
    if (wait.count() == 0) return Status::Ok();
    if (loop_.stopping()) return Status(StatusCode::kCancelled, "re-sign engine stopping");
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(wait, std::chrono::milliseconds(50)));
  }
}

bool ResignJobEngine::InteractiveActive() {
  if (options_.busy_batch_size <= 0) return false;
  const uint64_t rows = writer_.stats().rows;  // interactive rows only: re-sign batches are not counted
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  if (rows != interactive_rows_seen_) {
    // Rows committed since the last look (on the first look: ever) are activity.
    interactive_rows_seen_ = rows;
    interactive_seen_at_ = now;
    return true;
  }
  return rows > 0 && now - interactive_seen_at_ < options_.busy_window;
}

StatusOr<bool> ResignJobEngine::Step(const std::string& job_id) {
  ASSIGN_OR_RETURN(ResignJobRecord job, store_.GetResignJob(job_id));
  if (job.state == "queued") {
    // Counted on start (and on resume): what is left plus what is done.
    ResignScan count{job.tenant_id, job.compromised_key_id, job.since, job.cursor_seq, job.new_key_id, 1};
    ASSIGN_OR_RETURN(int64_t left, ledger_.CountResignCandidates(count));
    TimePoint now = clock_.Now();
    RETURN_IF_ERROR(store_.SetResignJobTotal(job.job_id, job.processed + left, now));
    Status st = store_.UpdateResignJobState(job.job_id, "queued", "running", "", now, {});
    if (st.code() == StatusCode::kAborted) return true;  // paused or cancelled meanwhile: look again
    RETURN_IF_ERROR(st);
    ASSIGN_OR_RETURN(job, store_.GetResignJob(job_id));
  }
  if (job.state != "running") return false;

  auto fail_or = [&](Status st) -> StatusOr<bool> {
    int failures;
    {
      std::lock_guard lock(mu_);
      failures = ++failures_[job_id];
      prepared_.erase(job_id);  // reload keys next time (e.g. a backend came back)
    }
    if (failures >= options_.max_consecutive_failures) {
      RETURN_IF_ERROR(Move(job_id, {"running"}, "failed", st.message()).status());
      return false;
    }
    return st;
  };

  auto prepared = Prepare(job);
  if (!prepared.ok()) return fail_or(prepared.status());

  // Up to pipeline_batches batches: batch k+1 is signed while the writer
  // commits batch k. Each batch names the cursor its predecessor moves to, so
  // if one fails, the ones after it are refused (kAborted) and nothing skips.
  struct InFlight {
    std::unique_ptr<ResignBatch> batch;
    std::promise<Status> done;
    std::future<Status> future = done.get_future();
    std::optional<Status> result;
  };
  std::vector<std::unique_ptr<InFlight>> flights;
  auto wait_last = [&]() -> Status {
    if (flights.empty()) return Status::Ok();
    InFlight& last = *flights.back();
    if (!last.result) last.result = last.future.get();
    return *last.result;
  };
  int64_t cursor = job.cursor_seq;
  Status first_error;
  const bool busy = InteractiveActive();
  const auto step_start = std::chrono::steady_clock::now();
  const int depth = busy ? 1 : std::max(1, options_.pipeline_batches);
  const int batch_size = std::clamp(busy ? std::min(options_.batch_size, options_.busy_batch_size) : options_.batch_size, 1,
                                    1000);
  for (int k = 0; k < depth; ++k) {
    ResignScan scan{job.tenant_id, job.compromised_key_id, job.since, cursor, job.new_key_id, batch_size};
    auto candidates = ledger_.ListResignCandidates(scan);
    if (!candidates.ok()) {
      first_error = candidates.status();
      break;
    }
    if (candidates->empty()) {
      if (k > 0) break;  // the next step finds nothing and completes the job
      RETURN_IF_ERROR(Move(job_id, {"running"}, "completed", "").status());
      return false;
    }
    auto batch = BuildBatch(job, **prepared, *candidates, cursor);
    if (!batch.ok()) {
      first_error = batch.status();
      break;
    }
    if (Status prev = wait_last(); !prev.ok()) {
      first_error = prev;
      break;
    }
    if (loop_.stopping()) {
      first_error = Status(StatusCode::kCancelled, "re-sign engine stopping; batch abandoned before commit");
      break;
    }
    auto flight = std::make_unique<InFlight>();
    flight->batch = *std::move(batch);
    cursor = flight->batch->new_cursor;
    InFlight* f = flight.get();
    writer_.SubmitResign(*f->batch, [f](const Status& st) { f->done.set_value(st); });
    flights.push_back(std::move(flight));
  }
  if (Status last = wait_last(); !last.ok() && first_error.ok()) first_error = last;
  // Whatever committed counts, even if a later batch of this step failed.
  for (const auto& f : flights) {
    if (f->result && f->result->ok()) job.processed += static_cast<int64_t>(f->batch->results.size());
  }
  if (!flights.empty()) NoteProgress(job);
  if (busy && options_.busy_pause_ratio > 0 && first_error.ok()) {
    // Leave the CPU and the writer to requests for a while; Stop() is honoured within 10 ms.
    auto pause = std::chrono::duration_cast<std::chrono::microseconds>(
        (std::chrono::steady_clock::now() - step_start) * options_.busy_pause_ratio);
    pause = std::min<std::chrono::microseconds>(pause, std::chrono::milliseconds(200));
    const auto until = std::chrono::steady_clock::now() + pause;
    while (!loop_.stopping() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          until - std::chrono::steady_clock::now(), std::chrono::milliseconds(10)));
    }
  }
  if (first_error.code() == StatusCode::kAborted || first_error.code() == StatusCode::kAlreadyExists) {
    // Paused, cancelled, or another runner got there: nothing was written; re-read.
    return true;
  }
  if (first_error.code() == StatusCode::kCancelled) return first_error;
  if (!first_error.ok()) return fail_or(first_error);
  {
    std::lock_guard lock(mu_);
    failures_.erase(job_id);
  }
  return true;
}

StatusOr<std::unique_ptr<ResignBatch>> ResignJobEngine::BuildBatch(const ResignJobRecord& job, const Prepared& p,
                                                                   const std::vector<ResignCandidate>& candidates,
                                                                   int64_t expected_cursor) {
  auto batch = std::make_unique<ResignBatch>();
  batch->job_id = job.job_id;
  batch->expected_cursor = expected_cursor;
  batch->new_cursor = candidates.back().entry.seq;
  batch->at = clock_.Now();
  batch->rows.reserve(candidates.size());
  batch->results.reserve(candidates.size());
  const std::string alg_name(AlgorithmName(p.alg));
  const bool ecdsa = FamilyOf(p.alg) == KeyFamily::kEcdsa;
  int since_throttle = options_.chunk;  // throttle before the first signature
  for (const ResignCandidate& c : candidates) {
    const LedgerEntry& e = c.entry;
    ResignResult r;
    r.job_id = job.job_id;
    r.original_seq = e.seq;
    r.original_kind = e.kind;
    r.asset_id = e.asset_id;
    r.digest_hex = e.digest_hex;
    r.key_id = p.new_key.key_id;
    r.key_version = p.new_key.version;
    if (c.existing_resign_seq != 0) {
      r.status = "already_resigned";
      r.new_seq = c.existing_resign_seq;
      r.detail = "re-signed by key '" + p.new_key.key_id + "' before (ledger seq " +
                 std::to_string(c.existing_resign_seq) + ")";
      batch->results.push_back(std::move(r));
      continue;
    }
    std::string reason = NeedsClientReason(e, p.alg);
    if (!reason.empty()) {
      r.status = "needs_client";
      r.detail = std::move(reason);
      batch->results.push_back(std::move(r));
      continue;
    }
    if (since_throttle >= options_.chunk) {
      RETURN_IF_ERROR(Throttle(p.new_key.provider, options_.chunk));
      since_throttle = 0;
    }
    ++since_throttle;
    auto digest = crypto::HexDecode(e.digest_hex);
    if (!digest.ok()) return DataLossError("ledger row " + std::to_string(e.seq) + " has a non-hex digest");
    auto signature = p.backend->SignDigest(p.new_key.key_uri, p.alg, *digest);
    if (!signature.ok()) return signature.status().Annotate("re-signing with key '" + p.new_key.key_id + "'");
    r.status = "resigned";
    r.signature_b64 = crypto::Base64Encode(*signature);
    r.signature_format = ecdsa ? "der" : "raw";
    LedgerEntry row;
    row.tenant_id = job.tenant_id;
    row.key_id = p.new_key.key_id;
    row.key_version = p.new_key.version;
    row.cert_serial = p.cert_serial;
    row.algorithm = alg_name;
    row.kind = "resign";
    row.digest_hex = e.digest_hex;
    row.asset_id = e.asset_id;
    row.request_id = job.job_id;
    row.api_key_id = job.created_by;
    row.client_address = "resign-job";
    row.policy_hash = p.policy_hash;
    row.signed_at = batch->at;
    row.resign_of_seq = e.seq;
    batch->rows.push_back(std::move(row));
    batch->results.push_back(std::move(r));
  }
  return batch;
}

void ResignJobEngine::Start() {
  const int nice = options_.worker_nice;
  loop_.Start([this] { return RunPass(); }, options_.poll_interval, [nice] {
    // Failure (e.g. not permitted) only costs priority.
    if (nice > 0) (void)SetThisThreadNice(nice);
  });
}

void ResignJobEngine::Stop() { loop_.Stop(); }

void ResignJobEngine::Wake() { loop_.Wake(); }

bool ResignJobEngine::RunPass() {
  auto jobs = store_.ListResignJobs(std::nullopt, {"queued", "running"});
  if (!jobs.ok()) return false;
  bool progressed = false;
  // Round-robin: one batch per runnable job per pass.
  for (const auto& job : *jobs) {
    if (loop_.stopping()) break;
    auto more = Step(job.job_id);
    progressed = progressed || (more.ok() && *more);
  }
  return progressed;
}

}  // namespace concierge::core
