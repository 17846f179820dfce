// Conformance cases for the mass re-sign part of the LedgerStore (scans,
// AppendResignBatch, results), run on every engine. They need the job record,
// so they use the harness's Store on the same database. Included at the end
// of ledger_test_suite.h; not a standalone header.
#ifndef CONCIERGE_STORE_LEDGER_TEST_SUITE_RESIGN_H_
#define CONCIERGE_STORE_LEDGER_TEST_SUITE_RESIGN_H_

namespace concierge::store::conformance {

// A tenant "acme" whose compromised key "old" signed 10 rows (the 8th a COSE
// one, which cannot be re-signed without the client), and a running job-1
// re-signing them with "new".
class ResignConformanceTest : public LedgerConformanceTest {
 protected:
  void SetUp() override {
    LedgerConformanceTest::SetUp();
    PolicyRecord policy{"acme", 1, "{}", std::string(64, 'a'), "admin", T(0)};
    KeyRecord key;
    key.key_id = "old";
    key.tenant_id = "acme";
    key.version = 1;
    key.algorithm = "ES256";
    key.provider = "software";
    key.key_uri = "software:old";
    key.state = "active";
    ASSERT_TRUE(IsOk(h_->store().CreateTenant(policy, key)));
    ResignJobRecord job;
    job.job_id = "job-1";
    job.tenant_id = "acme";
    job.compromised_key_id = "old";
    job.new_key_id = "new";
    job.state = "running";
    job.created_by = "officer";
    ASSERT_TRUE(IsOk(h_->store().InsertResignJob(job)));
    originals_ = MakeBatch("acme", "old", 10, 0, "o-");
    originals_[7].kind = "cose";
    ASSERT_TRUE(IsOk(ledger().AppendBatch(originals_)));
    // Signed while active, then declared compromised (PostgreSQL's commit
    // fence refuses rows of a key that may no longer sign).
    ASSERT_TRUE(IsOk(h_->store().UpdateKeyState("old", "active", "compromised", T(50))));
  }

  // A batch re-signing originals_[from, to) (cose ones are needs_client).
  ResignBatch Batch(int64_t expected_cursor, size_t from, size_t to) {
    ResignBatch b;
    b.job_id = "job-1";
    b.expected_cursor = expected_cursor;
    b.new_cursor = originals_[to - 1].seq;
    b.at = T(100);
    for (size_t i = from; i < to; ++i) {
      const LedgerEntry& o = originals_[i];
      ResignResult r;
      r.job_id = "job-1";
      r.original_seq = o.seq;
      r.original_kind = o.kind;
      r.asset_id = o.asset_id;
      r.digest_hex = o.digest_hex;
      r.key_id = "new";
      r.key_version = 2;
      if (o.kind == "cose") {
        r.status = "needs_client";
        r.detail = "payload not stored";
      } else {
        r.status = "resigned";
        r.signature_b64 = "c2ln";
        r.signature_format = "der";
        LedgerEntry row = MakeEntry("acme", "new", 100, "job-1");
        row.kind = "resign";
        row.asset_id = o.asset_id;
        row.resign_of_seq = o.seq;
        b.rows.push_back(row);
      }
      b.results.push_back(r);
    }
    return b;
  }

  std::vector<LedgerEntry> originals_;
};

TEST_P(ResignConformanceTest, BatchWritesRowsResultsAndCursorTogether) {
  ResignScan scan{"acme", "old", std::nullopt, 0, "new", 1000};
  StatusOr<std::vector<ResignCandidate>> cands = ledger().ListResignCandidates(scan);
  ASSERT_TRUE(IsOk(cands.status()));
  ASSERT_EQ(cands->size(), 10u);
  EXPECT_EQ((*cands)[0].entry.seq, originals_[0].seq);
  ExpectSameEntry((*cands)[3].entry, originals_[3]);
  EXPECT_EQ((*cands)[0].existing_resign_seq, 0);
  EXPECT_EQ(*ledger().CountResignCandidates(scan), 10);
  // The cursor, the time bound and the limit narrow the scan alike.
  ResignScan narrow{"acme", "old", T(4), originals_[5].seq, "new", 2};
  cands = ledger().ListResignCandidates(narrow);
  ASSERT_TRUE(IsOk(cands.status()));
  ASSERT_EQ(cands->size(), 2u);
  EXPECT_EQ((*cands)[0].entry.seq, originals_[6].seq);
  EXPECT_EQ(*ledger().CountResignCandidates(narrow), 4);
  EXPECT_EQ(*ledger().CountResignCandidates(ResignScan{"acme", "old", T(8), 0, "new", 10}), 2);

  ResignBatch b = Batch(0, 0, 8);
  ASSERT_TRUE(IsOk(ledger().AppendResignBatch(b)));
  ASSERT_EQ(b.rows.size(), 7u);
  for (const auto& row : b.rows) EXPECT_GT(row.seq, originals_.back().seq);
  for (size_t i = 1; i < b.rows.size(); ++i) EXPECT_GT(b.rows[i].seq, b.rows[i - 1].seq);
  StatusOr<ResignJobRecord> job = h_->store().GetResignJob("job-1");
  ASSERT_TRUE(IsOk(job.status()));
  EXPECT_EQ(job->cursor_seq, originals_[7].seq);
  EXPECT_EQ(job->processed, 8);
  EXPECT_EQ(job->resigned, 7);
  EXPECT_EQ(job->needs_client, 1);
  EXPECT_EQ(job->updated_at, T(100));

  StatusOr<std::vector<ResignResult>> results = ledger().ListResignResults("job-1", 0, 1000);
  ASSERT_TRUE(IsOk(results.status()));
  ASSERT_EQ(results->size(), 8u);
  EXPECT_EQ((*results)[0].status, "resigned");
  EXPECT_EQ((*results)[0].new_seq, b.rows[0].seq);
  EXPECT_EQ((*results)[0].asset_id, originals_[0].asset_id);
  EXPECT_EQ((*results)[0].signature_b64, "c2ln");
  EXPECT_EQ((*results)[0].key_version, 2);
  EXPECT_EQ((*results)[7].status, "needs_client");
  EXPECT_EQ((*results)[7].new_seq, 0);
  EXPECT_EQ((*results)[7].detail, "payload not stored");
  EXPECT_EQ(ledger().ListResignResults("job-1", originals_[5].seq, 1000)->size(), 2u);
  EXPECT_EQ(ledger().ListResignResults("job-1", 0, 3)->size(), 3u);
  EXPECT_TRUE(HasCode(ledger().ListResignResults("job-1", 0, 0).status(), StatusCode::kInvalidArgument));

  // The new rows carry their linkage, readable through the ordinary listing.
  std::vector<LedgerEntry> fresh = ListAll(ledger(), LedgerQuery{.tenant_id = "acme", .key_id = "new"});
  ASSERT_EQ(fresh.size(), 7u);
  EXPECT_EQ(fresh[0].kind, "resign");
  EXPECT_EQ(fresh[0].resign_of_seq, originals_[0].seq);
  EXPECT_EQ(fresh[0].asset_id, originals_[0].asset_id);
  EXPECT_EQ(fresh[6].resign_of_seq, originals_[6].seq);

  // A rescan from 0 now reports the existing re-signatures.
  cands = ledger().ListResignCandidates(scan);
  EXPECT_EQ((*cands)[0].existing_resign_seq, b.rows[0].seq);
  EXPECT_EQ((*cands)[7].existing_resign_seq, 0);  // needs_client: no row
  // Re-sign rows are no client signatures: not counted for issuance windows.
  StatusOr<std::vector<MinuteCount>> counts = ledger().CountByMinuteSince(T(-1000));
  ASSERT_TRUE(IsOk(counts.status()));
  int64_t total = 0;
  for (const auto& c : *counts) total += c.count;
  EXPECT_EQ(total, 10);
}

TEST_P(ResignConformanceTest, RetriedOrRacingBatchesCannotDuplicate) {
  ResignBatch first = Batch(0, 0, 5);
  ASSERT_TRUE(IsOk(ledger().AppendResignBatch(first)));
  // The same batch again (a retry after a lost acknowledgement): stale cursor.
  ResignBatch again = Batch(0, 0, 5);
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(again), StatusCode::kAborted));
  for (const auto& row : again.rows) EXPECT_EQ(row.seq, 0);
  // Even with the cursor forced back (a second runner that never saw the
  // first commit), the unique linkage refuses the duplicate and nothing lands.
  ASSERT_TRUE(IsOk(h_->Exec("UPDATE resign_jobs SET cursor_seq = 0 WHERE job_id = 'job-1'")));
  ResignBatch racing = Batch(0, 0, 5);
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(racing), StatusCode::kAlreadyExists));
  for (const auto& row : racing.rows) EXPECT_EQ(row.seq, 0);
  for (const auto& r : racing.results) EXPECT_EQ(r.new_seq, 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 5);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM resign_results"), 5);
  EXPECT_EQ(h_->Count("SELECT cursor_seq FROM resign_jobs"), 0);  // unchanged by the refused batch

  // A job that is not running takes no batches, nor does an unknown one.
  ASSERT_TRUE(IsOk(h_->Exec("UPDATE resign_jobs SET cursor_seq = " + std::to_string(originals_[4].seq) +
                            ", state = 'paused'")));
  ResignBatch paused = Batch(originals_[4].seq, 5, 10);
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(paused), StatusCode::kAborted));
  ResignBatch unknown = Batch(originals_[4].seq, 5, 10);
  unknown.job_id = "nope";
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(unknown), StatusCode::kNotFound));
  // Rows outside the batch's range are refused before anything is written.
  ResignBatch bad = Batch(originals_[4].seq, 5, 10);
  bad.rows[0].resign_of_seq = originals_[0].seq;
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(bad), StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(ledger().ListResignCandidates(ResignScan{"acme", "", std::nullopt, 0, "new", 10}).status(),
                      StatusCode::kInvalidArgument));
  EXPECT_TRUE(HasCode(ledger().CountResignCandidates(ResignScan{"", "old", std::nullopt, 0, "new", 10}).status(),
                      StatusCode::kInvalidArgument));
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 5);
}

TEST_P(ResignConformanceTest, ResultWithoutItsRowRollsTheBatchBack) {
  ResignBatch b = Batch(0, 0, 5);
  b.rows.pop_back();  // the last "resigned" result now has no row
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(b), StatusCode::kInvalidArgument));
  for (const auto& row : b.rows) EXPECT_EQ(row.seq, 0);
  for (const auto& r : b.results) EXPECT_EQ(r.new_seq, 0);
  ResignBatch odd = Batch(0, 0, 5);
  odd.results[1].status = "lost";
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(odd), StatusCode::kInvalidArgument));
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM resign_results"), 0);
  EXPECT_EQ(h_->Count("SELECT cursor_seq FROM resign_jobs"), 0);
}

// Re-signatures are signatures: the audit builder runs inside the batch's
// transaction, sees the new rows' seq, and its failure undoes the batch.
TEST_P(ResignConformanceTest, AuditBuilderRunsInsideTheBatch) {
  const int64_t audit_before = h_->Count("SELECT COUNT(*) FROM audit_entries");
  ASSERT_GE(audit_before, 0);
  ResignBatch failing = Batch(0, 0, 5);
  AuditBuilder refuse = [](const std::vector<LedgerEntry>&, AuditAppend&) {
    return UnavailableError("audit signer away");
  };
  EXPECT_TRUE(HasCode(ledger().AppendResignBatch(failing, refuse), StatusCode::kUnavailable));
  for (const auto& row : failing.rows) EXPECT_EQ(row.seq, 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM ledger WHERE kind = 'resign'"), 0);
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM resign_results"), 0);
  EXPECT_EQ(h_->Count("SELECT cursor_seq FROM resign_jobs"), 0);

  ResignBatch b = Batch(0, 0, 5);
  std::vector<int64_t> seen;
  AuditBuilder record = [&seen, audit_before](const std::vector<LedgerEntry>& rows, AuditAppend& out) {
    for (const LedgerEntry& e : rows) {
      seen.push_back(e.seq);
      AuditRecord r;
      r.index = audit_before + static_cast<int64_t>(out.entries.size());
      r.time = e.signed_at;
      r.actor = "resign-job";
      r.tenant_id = e.tenant_id;
      r.action = "sign.resign";
      r.target = e.key_id;
      r.outcome = "success";
      r.detail_json = "{\"resign_of\":" + std::to_string(e.resign_of_seq) + "}";
      r.leaf_hash.fill(static_cast<uint8_t>(e.seq));
      out.entries.push_back(r);
    }
    return Status::Ok();
  };
  ASSERT_TRUE(IsOk(ledger().AppendResignBatch(b, record)));
  ASSERT_EQ(seen.size(), b.rows.size());
  for (size_t i = 0; i < b.rows.size(); ++i) {
    EXPECT_GT(seen[i], 0);
    EXPECT_EQ(seen[i], b.rows[i].seq);
  }
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM audit_entries"), audit_before + static_cast<int64_t>(b.rows.size()));
  EXPECT_EQ(h_->Count("SELECT COUNT(*) FROM audit_entries WHERE action = 'sign.resign'"),
            static_cast<int64_t>(b.rows.size()));
}

}  // namespace concierge::store::conformance

#endif  // CONCIERGE_STORE_LEDGER_TEST_SUITE_RESIGN_H_
