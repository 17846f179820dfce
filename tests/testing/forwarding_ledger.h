// A LedgerStore that passes every call to a real one: tests derive from it
// and override only the calls they fault or observe.
#ifndef CONCIERGE_TESTING_FORWARDING_LEDGER_H_
#define CONCIERGE_TESTING_FORWARDING_LEDGER_H_

#include <string>
#include <vector>

#include "concierge/ledger.h"

namespace concierge::testing {

class ForwardingLedger : public LedgerStore {
 public:
  explicit ForwardingLedger(LedgerStore& real) : real_(real) {}
  Status AppendBatch(std::vector<LedgerEntry>& e, const AuditBuilder& audit) override {
    return real_.AppendBatch(e, audit);
  }
  StatusOr<LedgerPage> ListLedger(const LedgerQuery& q) override { return real_.ListLedger(q); }
  StatusOr<std::vector<MinuteCount>> CountByMinuteSince(TimePoint t) override { return real_.CountByMinuteSince(t); }
  StatusOr<bool> HasRequest(const std::string& t, const std::string& r) override { return real_.HasRequest(t, r); }
  StatusOr<std::vector<ResignCandidate>> ListResignCandidates(const ResignScan& s) override {
    return real_.ListResignCandidates(s);
  }
  StatusOr<int64_t> CountResignCandidates(const ResignScan& s) override { return real_.CountResignCandidates(s); }
  Status AppendResignBatch(ResignBatch& b, const AuditBuilder& audit) override {
    return real_.AppendResignBatch(b, audit);
  }
  StatusOr<std::vector<ResignResult>> ListResignResults(const std::string& j, int64_t a, int l) override {
    return real_.ListResignResults(j, a, l);
  }
  bool AppendNeedsSync() const override { return real_.AppendNeedsSync(); }
  Status SyncAppended() override { return real_.SyncAppended(); }

 protected:
  LedgerStore& real_;
};

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTING_FORWARDING_LEDGER_H_
