// Mass re-sign jobs: after a key compromise, every ledger row the compromised
// key signed (optionally only since a given time) is re-signed with the
// tenant's new key, each result a new ledger row of kind "resign" linked to its
// original (resign_of_seq), with the asset id carried over.
//
// What can be re-signed. The ledger keeps the digest that was signed, not the
// signed bytes, so:
//  - kinds "digest", "batch" and "resign": re-signed over the same digest
//    (the client signed a digest; the new signature verifies over it with the
//    new key, exactly like the original did with the old one);
//  - kinds "cose" and "raw": NOT re-signed. A COSE_Sign1 signature covers the
//    protected header, which names the old certificate chain (x5chain), and
//    c2patool's raw signatures cover such a structure too; the payload is not
//    stored, so only the client can rebuild it. These are reported as
//    "needs_client" with the asset id and payload digest, and nothing is faked;
//  - a digest whose size does not fit the new key's algorithm (e.g. ES256 ->
//    ES384) is "needs_client" too.
//
// Crash safety. A job advances in batches; each batch (new rows, one result per
// original, the job's cursor and counters) is one transaction
// (LedgerStore::AppendResignBatch) that also checks the cursor it started
// from, committed through the LedgerWriter (single writer; interactive rows
// first). A crash loses at most the uncommitted batch, which is redone from the
// committed cursor: no gaps. The ledger's unique (resign_of_seq, key_id) index
// and the cursor check make a duplicate impossible even if two runners race.
//
// Throttling. Per backend provider, a token bucket (rate from the options,
// reading the injected Clock) caps re-signatures per second, and before every
// chunk of signatures the job yields (briefly, in real time) while
// interactive signing has rows waiting in the ledger writer, so requests keep
// priority; a cap on yielding per chunk keeps the job moving under constant
// load. The worker thread also runs at a lower CPU priority (worker_nice), and
// the ledger writer commits interactive rows before re-sign batches.
//
// Adaptive pacing. The writer cannot interrupt a transaction, so an
// interactive row that arrives while a 500-row re-sign batch commits waits for
// all of it (measured: interactive p99 ~2.7x with 500-row batches, ~1.6x with
// 64). So before every step the job looks at the writer's count of committed
// interactive rows: if it moved since the previous step or within
// `busy_window` (real time), interactive signing is active and the step uses `busy_batch_size`, one batch in flight
// (no queue of re-sign batches ahead of requests), and after the batch pauses
// `busy_pause_ratio` times as long as the batch took (its share of the CPU and
// of the writer). Alone, the job runs at full batch size and pipeline depth.
//
// Thread-safe. The engine's worker thread runs queued and running jobs
// round-robin, one batch each; jobs left running by a crash resume at Start().
#ifndef CONCIERGE_CORE_RESIGN_JOB_H_
#define CONCIERGE_CORE_RESIGN_JOB_H_

#include <nlohmann/json_fwd.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/ledger.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "core/background_loop.h"
#include "core/ledger_writer.h"

namespace concierge::core {

// Job states, see ResignJobRecord.
bool IsFinishedJobState(std::string_view state);  // completed, failed, cancelled

// The API / webhook shape of a job (counters, no results).
nlohmann::json ResignJobJson(const ResignJobRecord& job);
// One line of GET /api/v1/jobs/{id}/results.
nlohmann::json ResignResultJson(const ResignResult& result);

struct ResignJobOptions {
  int batch_size = 500;            // originals per committed batch, 1..1000
  // Batches per step, signed while the previous one commits (the writer
  // thread commits, the job thread signs the next): 1 = strictly one at a time.
  int pipeline_batches = 1;
  double rate_per_backend = 0;     // re-signatures per second per provider; 0 = unlimited
  int chunk = 32;                  // signatures between throttle checks
  // True while interactive signing is waiting (e.g. ledger writer backlog); the
  // job yields for `yield_for` at a time, at most `max_yield_per_chunk` per chunk.
  std::function<bool()> interactive_busy;
  std::chrono::microseconds yield_for{500};
  std::chrono::milliseconds max_yield_per_chunk{20};
  // While interactive signing is active (the writer committed interactive rows
  // since the previous step or within busy_window): originals per batch (one batch in flight), and the
  // pause after each batch relative to the time the batch took. Real time: it
  // paces against real requests. busy_batch_size 0 turns adaptive pacing off.
  int busy_batch_size = 32;
  double busy_pause_ratio = 0;
  std::chrono::milliseconds busy_window{250};
  // The worker thread's nice value (Linux: per thread), so that on a busy CPU
  // the scheduler favours request threads; the job still gets all idle CPU.
  int worker_nice = 10;
  // A batch failing this many times in a row (backend errors) fails the job.
  int max_consecutive_failures = 5;
  // Real-time wait of the worker when nothing is runnable (also picks up jobs
  // created by another process).
  std::chrono::milliseconds poll_interval{1000};
};

// A token bucket reading the caller's clock. Thread-safe.
class TokenBucket {
 public:
  TokenBucket(double rate_per_second, double burst) : rate_(rate_per_second), burst_(burst), tokens_(burst) {}
  // Takes `n` tokens and returns zero, or takes nothing and returns how long
  // until `n` tokens will be there.
  std::chrono::nanoseconds Take(double n, TimePoint now);

 private:
  std::mutex mu_;
  const double rate_;
  const double burst_;
  double tokens_;
  std::optional<TimePoint> refilled_at_;
};

struct NewResignJob {
  std::string tenant_id;
  std::string compromised_key_id;
  std::string new_key_id;  // "" = the tenant's active key
  std::optional<TimePoint> since;
  std::string incident_id;
  std::string actor;
};

struct JobProgress {
  ResignJobRecord job;
  std::optional<double> rate_per_second;  // recent rate, when known
  std::optional<std::chrono::seconds> eta;
};

class ResignJobEngine {
 public:
  ResignJobEngine(Store& store, LedgerStore& ledger, LedgerWriter& writer, BackendRegistry& backends, Clock& clock,
                  ResignJobOptions options);
  ~ResignJobEngine();
  ResignJobEngine(const ResignJobEngine&) = delete;
  ResignJobEngine& operator=(const ResignJobEngine&) = delete;

  // Validates and queues a job. kFailedPrecondition when the compromised key
  // is still the active one (rotate first) or the new key is not active;
  // kAlreadyExists when an unfinished job for the same keys exists.
  StatusOr<ResignJobRecord> Create(const NewResignJob& request);
  StatusOr<ResignJobRecord> Pause(const std::string& job_id);
  StatusOr<ResignJobRecord> Resume(const std::string& job_id);
  StatusOr<ResignJobRecord> Cancel(const std::string& job_id);
  StatusOr<JobProgress> Progress(const std::string& job_id);

  // Runs one batch of the job on the calling thread (the worker does this;
  // tests call it directly). Returns true while the job has more to do.
  StatusOr<bool> Step(const std::string& job_id);

  void Start();
  // Stops the worker; a batch in flight is abandoned before its commit, as a
  // crash would, and redone by the next Start (here or in another process).
  void Stop();
  void Wake();

  // Called after a job completed, failed or was cancelled. Set before Start.
  void AddFinishedListener(std::function<void(const ResignJobRecord&)> listener);

 private:
  struct Prepared;  // per-job cache: new key, backend, algorithm, policy hash
  StatusOr<std::shared_ptr<const Prepared>> Prepare(const ResignJobRecord& job);
  // Signs what `candidates` allow (throttled) into one batch starting at `expected_cursor`.
  StatusOr<std::unique_ptr<ResignBatch>> BuildBatch(const ResignJobRecord& job, const Prepared& p,
                                                    const std::vector<ResignCandidate>& candidates,
                                                    int64_t expected_cursor);
  Status Throttle(const std::string& provider, int n);
  StatusOr<ResignJobRecord> Move(const std::string& job_id, const std::vector<std::string>& from,
                                 const std::string& to, const std::string& error);
  void Finished(const ResignJobRecord& job);
  void NoteProgress(const ResignJobRecord& job);
  bool RunPass();
  // True while interactive signing is active (see "Adaptive pacing").
  bool InteractiveActive();

  Store& store_;
  LedgerStore& ledger_;
  LedgerWriter& writer_;
  BackendRegistry& backends_;
  Clock& clock_;
  const ResignJobOptions options_;
  std::vector<std::function<void(const ResignJobRecord&)>> finished_listeners_;

  BackgroundLoop loop_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Prepared>> prepared_;          // guarded by mu_
  std::map<std::string, std::unique_ptr<TokenBucket>> buckets_;               // guarded by mu_
  std::map<std::string, int> failures_;                                       // guarded by mu_
  std::map<std::string, std::deque<std::pair<TimePoint, int64_t>>> samples_;  // guarded by mu_
  uint64_t interactive_rows_seen_ = 0;                                        // guarded by mu_
  std::chrono::steady_clock::time_point interactive_seen_at_;                 // guarded by mu_
};

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_RESIGN_JOB_H_
