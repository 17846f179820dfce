// Conformance cases for the incident-response part of the Store (incidents,
// timelines, webhooks and their outbox, re-sign job records). Included at the
// end of store_test_suite.h, so every Store implementation runs them; kept in
// their own file so that area reads as one unit. Not a standalone header.
#ifndef CONCIERGE_STORE_STORE_TEST_SUITE_INCIDENTS_H_
#define CONCIERGE_STORE_STORE_TEST_SUITE_INCIDENTS_H_

namespace concierge::store::conformance {

inline IncidentRecord MakeIncident(const std::string& id, const std::string& tenant, const std::string& dedup_key,
                                   TimePoint at = T(0)) {
  IncidentRecord r;
  r.incident_id = id;
  r.tenant_id = tenant;
  r.type = "security_alert";
  r.severity = "high";
  r.state = "open";
  r.title = "title of " + id;
  r.detector = "manual";
  r.dedup_key = dedup_key;
  r.details_json = R"({"n":1})";
  r.created_by = "officer";
  r.created_at = at;
  r.updated_at = at;
  return r;
}

inline IncidentEvent MakeIncidentEvent(const std::string& incident_id, const std::string& action, TimePoint at,
                               const std::string& from = "", const std::string& to = "") {
  return IncidentEvent{incident_id, 0, at, "officer", action, from, to, action + " detail"};
}

inline WebhookEventRecord MakeWebhookEvent(const std::string& id, const std::string& tenant, const std::string& type,
                                           TimePoint at = T(0)) {
  return WebhookEventRecord{id, tenant, type, R"({"x":1})", at};
}

inline WebhookRecord MakeWebhook(const std::string& id, const std::string& tenant, const std::string& types = "",
                                 TimePoint at = T(0)) {
  WebhookRecord w;
  w.webhook_id = id;
  w.tenant_id = tenant;
  w.url = "https://hooks.example/" + id;
  w.secret_sealed = "c2VhbGVk";
  w.event_types = types;
  w.created_by = "officer";
  w.created_at = at;
  return w;
}

inline ResignJobRecord MakeJob(const std::string& id, const std::string& tenant, TimePoint at = T(0)) {
  ResignJobRecord j;
  j.job_id = id;
  j.tenant_id = tenant;
  j.incident_id = "inc-1";
  j.compromised_key_id = tenant + "-v1";
  j.new_key_id = tenant + "-v2";
  j.since = T(-5);
  j.created_by = "officer";
  j.created_at = at;
  j.updated_at = at;
  return j;
}

// Event ids of the deliveries due at `now` (claimed with a short lease).
inline std::vector<std::string> ClaimIds(Store& s, TimePoint now, TimePoint lease_until) {
  std::vector<std::string> ids;
  StatusOr<std::vector<DueWebhookDelivery>> due = s.ClaimWebhookDeliveries(now, lease_until, 100);
  EXPECT_TRUE(IsOk(due.status()));
  if (due.ok()) {
    for (const auto& d : *due) ids.push_back(d.delivery.event_id + "@" + d.webhook.webhook_id);
  }
  return ids;
}

TEST_P(StoreConformanceTest, IncidentRoundTripsWithTimeline) {
  CreateTenant("acme");
  IncidentRecord r = MakeIncident("inc-1", "acme", "k1", T(1));
  r.key_id = "acme-v1";
  ASSERT_TRUE(IsOk(store_->InsertIncident(r, MakeIncidentEvent("", "opened", T(1), "", "open"), {})));
  StatusOr<IncidentRecord> got = store_->GetIncident("inc-1");
  ASSERT_TRUE(IsOk(got.status()));
  EXPECT_EQ(got->tenant_id, "acme");
  EXPECT_EQ(got->type, "security_alert");
  EXPECT_EQ(got->severity, "high");
  EXPECT_EQ(got->state, "open");
  EXPECT_EQ(got->dedup_key, "k1");
  EXPECT_EQ(got->key_id, "acme-v1");
  EXPECT_EQ(got->occurrences, 1);
  EXPECT_EQ(got->details_json, R"({"n":1})");
  EXPECT_EQ(got->created_at, T(1));
  EXPECT_FALSE(got->resolved_at.has_value());
  StatusOr<std::vector<IncidentEvent>> events = store_->ListIncidentEvents("inc-1");
  ASSERT_TRUE(IsOk(events.status()));
  ASSERT_EQ(events->size(), 1u);
  EXPECT_EQ((*events)[0].seq, 1);
  EXPECT_EQ((*events)[0].incident_id, "inc-1");
  EXPECT_EQ((*events)[0].action, "opened");
  EXPECT_EQ((*events)[0].to_state, "open");
  EXPECT_EQ((*events)[0].at, T(1));

  ASSERT_TRUE(IsOk(store_->AppendIncidentEvent(MakeIncidentEvent("inc-1", "note", T(2)), {})));
  ASSERT_TRUE(IsOk(store_->UpdateIncidentPlaybook("inc-1", R"({"step":"pause"})", MakeIncidentEvent("", "playbook", T(3)))));
  got = store_->GetIncident("inc-1");
  EXPECT_EQ(got->playbook_json, R"({"step":"pause"})");
  EXPECT_EQ(got->updated_at, T(3));
  events = store_->ListIncidentEvents("inc-1");
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[2].seq, 3);
  EXPECT_EQ((*events)[2].action, "playbook");

  EXPECT_TRUE(HasCode(store_->GetIncident("nope").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->ListIncidentEvents("nope").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->AppendIncidentEvent(MakeIncidentEvent("nope", "note", T(2)), {}), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->InsertIncident(r, MakeIncidentEvent("", "opened", T(1)), {}), StatusCode::kAlreadyExists));
}

TEST_P(StoreConformanceTest, OpenDetectionIsUniqueUntilResolved) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("a", "acme", "burst"), MakeIncidentEvent("", "opened", T(0)), {})));
  // Same (tenant, type, dedup_key) while open: refused, the caller folds.
  EXPECT_TRUE(HasCode(store_->InsertIncident(MakeIncident("b", "acme", "burst"), MakeIncidentEvent("", "opened", T(1)), {}),
                      StatusCode::kAlreadyExists));
  EXPECT_TRUE(HasCode(store_->GetIncident("b").status(), StatusCode::kNotFound));
  // Other tenants, other keys and empty keys do not collide.
  CreateTenant("other");
  EXPECT_TRUE(IsOk(store_->InsertIncident(MakeIncident("c", "other", "burst"), MakeIncidentEvent("", "opened", T(1)), {})));
  EXPECT_TRUE(IsOk(store_->InsertIncident(MakeIncident("d", "acme", ""), MakeIncidentEvent("", "opened", T(1)), {})));
  EXPECT_TRUE(IsOk(store_->InsertIncident(MakeIncident("e", "acme", ""), MakeIncidentEvent("", "opened", T(1)), {})));

  StatusOr<IncidentRecord> open = store_->FindOpenIncident("acme", "security_alert", "burst");
  ASSERT_TRUE(IsOk(open.status()));
  EXPECT_EQ(open->incident_id, "a");
  EXPECT_TRUE(HasCode(store_->FindOpenIncident("acme", "security_alert", "").status(), StatusCode::kNotFound));
  ASSERT_TRUE(IsOk(store_->FoldIncident("a", MakeIncidentEvent("", "detected_again", T(5)), {})));
  EXPECT_EQ(store_->GetIncident("a")->occurrences, 2);
  EXPECT_EQ(store_->GetIncident("a")->updated_at, T(5));
  EXPECT_EQ(store_->ListIncidentEvents("a")->size(), 2u);

  ASSERT_TRUE(IsOk(store_->TransitionIncident("a", "open", MakeIncidentEvent("", "state_changed", T(6), "open", "resolved"), {})));
  EXPECT_TRUE(HasCode(store_->FindOpenIncident("acme", "security_alert", "burst").status(), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->FoldIncident("a", MakeIncidentEvent("", "detected_again", T(7)), {}),
                      StatusCode::kFailedPrecondition));
  EXPECT_EQ(store_->GetIncident("a")->occurrences, 2);
  // Resolved: the same detection opens a new incident.
  EXPECT_TRUE(IsOk(store_->InsertIncident(MakeIncident("b", "acme", "burst"), MakeIncidentEvent("", "opened", T(8)), {})));
  EXPECT_TRUE(HasCode(store_->FoldIncident("nope", MakeIncidentEvent("", "detected_again", T(7)), {}), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, TransitionChecksExpectedStateAndStampsTimes) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("a", "acme", ""), MakeIncidentEvent("", "opened", T(0)), {})));
  EXPECT_TRUE(HasCode(store_->TransitionIncident("a", "investigating",
                                                 MakeIncidentEvent("", "state_changed", T(1), "investigating", "contained"), {}),
                      StatusCode::kAborted));
  EXPECT_EQ(store_->GetIncident("a")->state, "open");
  EXPECT_EQ(store_->ListIncidentEvents("a")->size(), 1u);
  EXPECT_TRUE(HasCode(store_->TransitionIncident("nope", "open", MakeIncidentEvent("", "state_changed", T(1), "open", "x"), {}),
                      StatusCode::kNotFound));
  ASSERT_TRUE(IsOk(store_->TransitionIncident("a", "open", MakeIncidentEvent("", "state_changed", T(2), "open", "resolved"), {})));
  ASSERT_TRUE(
      IsOk(store_->TransitionIncident("a", "resolved", MakeIncidentEvent("", "state_changed", T(3), "resolved", "closed"), {})));
  StatusOr<IncidentRecord> r = store_->GetIncident("a");
  EXPECT_EQ(r->state, "closed");
  EXPECT_EQ(r->resolved_at, T(2));
  EXPECT_EQ(r->closed_at, T(3));
  StatusOr<std::vector<IncidentEvent>> events = store_->ListIncidentEvents("a");
  ASSERT_EQ(events->size(), 3u);
  EXPECT_EQ((*events)[1].from_state, "open");
  EXPECT_EQ((*events)[1].to_state, "resolved");
}

TEST_P(StoreConformanceTest, ListIncidentsFiltersAndOrdersNewestFirst) {
  CreateTenant("acme");
  CreateTenant("other");
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("i1", "acme", ""), MakeIncidentEvent("", "opened", T(1)), {})));
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("i2", "other", ""), MakeIncidentEvent("", "opened", T(2)), {})));
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("i3", "", ""), MakeIncidentEvent("", "opened", T(3)), {})));
  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("i4", "acme", "", T(4)), MakeIncidentEvent("", "opened", T(4)), {})));
  ASSERT_TRUE(IsOk(store_->TransitionIncident("i4", "open", MakeIncidentEvent("", "state_changed", T(5), "open", "resolved"), {})));
  auto ids = [&](const IncidentQuery& q) {
    std::vector<std::string> out;
    StatusOr<std::vector<IncidentRecord>> list = store_->ListIncidents(q);
    EXPECT_TRUE(IsOk(list.status()));
    if (list.ok()) {
      for (const auto& r : *list) out.push_back(r.incident_id);
    }
    return out;
  };
  // MakeIncident stamps created_at T(0) except i4; ties order by id, newest first.
  EXPECT_EQ(ids({}), (std::vector<std::string>{"i4", "i3", "i2", "i1"}));
  EXPECT_EQ(ids({std::string("acme")}), (std::vector<std::string>{"i4", "i1"}));
  EXPECT_EQ(ids({std::string("")}), (std::vector<std::string>{"i3"}));
  IncidentQuery open;
  open.open_only = true;
  EXPECT_EQ(ids(open), (std::vector<std::string>{"i3", "i2", "i1"}));
  IncidentQuery resolved;
  resolved.state = "resolved";
  EXPECT_EQ(ids(resolved), (std::vector<std::string>{"i4"}));
  IncidentQuery two;
  two.limit = 2;
  EXPECT_EQ(ids(two).size(), 2u);
  IncidentQuery bad;
  bad.limit = 0;
  EXPECT_TRUE(HasCode(store_->ListIncidents(bad).status(), StatusCode::kInvalidArgument));
}

TEST_P(StoreConformanceTest, NotificationsFanOutInTheSameTransaction) {
  CreateTenant("acme");
  CreateTenant("other");
  ASSERT_TRUE(IsOk(store_->InsertWebhook(MakeWebhook("w-acme", "acme"))));
  ASSERT_TRUE(IsOk(store_->InsertWebhook(MakeWebhook("w-other", "other"))));
  ASSERT_TRUE(IsOk(store_->InsertWebhook(MakeWebhook("w-global", ""))));
  ASSERT_TRUE(IsOk(store_->InsertWebhook(MakeWebhook("w-jobs", "acme", "job.completed,job.failed"))));
  EXPECT_TRUE(HasCode(store_->InsertWebhook(MakeWebhook("w-x", "nobody")), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->InsertWebhook(MakeWebhook("w-acme", "acme")), StatusCode::kAlreadyExists));

  ASSERT_TRUE(IsOk(store_->InsertIncident(MakeIncident("a", "acme", ""), MakeIncidentEvent("", "opened", T(0)),
                                          {MakeWebhookEvent("e1", "acme", "incident.opened")})));
  EXPECT_EQ(ClaimIds(*store_, T(0), T(1)), (std::vector<std::string>{"e1@w-acme", "e1@w-global"}));
  // A change that fails enqueues nothing.
  EXPECT_FALSE(store_->InsertIncident(MakeIncident("a", "acme", ""), MakeIncidentEvent("", "opened", T(0)),
                                      {MakeWebhookEvent("e2", "acme", "incident.opened")})
                   .ok());
  EXPECT_TRUE(HasCode(store_->GetWebhookEvent("e2").status(), StatusCode::kNotFound));
  // Filters match whole items; a global event reaches only global webhooks.
  StatusOr<int> n = store_->EnqueueWebhookEvent(MakeWebhookEvent("e3", "acme", "job.completed"));
  ASSERT_TRUE(IsOk(n.status()));
  EXPECT_EQ(*n, 3);
  EXPECT_EQ(*store_->EnqueueWebhookEvent(MakeWebhookEvent("e4", "acme", "job.complete")), 2);
  EXPECT_EQ(*store_->EnqueueWebhookEvent(MakeWebhookEvent("e5", "", "incident.opened")), 1);
  StatusOr<WebhookEventRecord> e3 = store_->GetWebhookEvent("e3");
  ASSERT_TRUE(IsOk(e3.status()));
  EXPECT_EQ(e3->type, "job.completed");
  EXPECT_EQ(e3->payload_json, R"({"x":1})");
  // Job state changes carry their notification too.
  ASSERT_TRUE(IsOk(store_->InsertResignJob(MakeJob("j1", "acme"))));
  ASSERT_TRUE(IsOk(store_->UpdateResignJobState("j1", "queued", "failed", "boom", T(2),
                                                {MakeWebhookEvent("e6", "acme", "job.failed", T(2))})));
  EXPECT_TRUE(IsOk(store_->GetWebhookEvent("e6").status()));
  EXPECT_TRUE(HasCode(store_->UpdateResignJobState("j1", "queued", "running", "", T(3),
                                                   {MakeWebhookEvent("e7", "acme", "job.failed", T(3))}),
                      StatusCode::kAborted));
  EXPECT_TRUE(HasCode(store_->GetWebhookEvent("e7").status(), StatusCode::kNotFound));
}

TEST_P(StoreConformanceTest, DeliveriesAreLeasedRetriedAndRecorded) {
  CreateTenant("acme");
  ASSERT_TRUE(IsOk(store_->InsertWebhook(MakeWebhook("w", "acme"))));
  ASSERT_TRUE(IsOk(store_->EnqueueWebhookEvent(MakeWebhookEvent("e1", "acme", "incident.opened", T(0))).status()));
  ASSERT_TRUE(IsOk(store_->EnqueueWebhookEvent(MakeWebhookEvent("e2", "acme", "incident.opened", T(5))).status()));
  EXPECT_EQ(ClaimIds(*store_, T(1), T(100)), (std::vector<std::string>{"e1@w"}));  // e2 not yet due
  EXPECT_TRUE(ClaimIds(*store_, T(2), T(100)).empty());                           // e1 leased
  EXPECT_EQ(ClaimIds(*store_, T(6), T(50)), (std::vector<std::string>{"e2@w"}));
  // The leases run out: due again, oldest due first (a crashed dispatcher loses nothing).
  EXPECT_EQ(ClaimIds(*store_, T(100), T(200)), (std::vector<std::string>{"e2@w", "e1@w"}));

  WebhookDeliveryRecord retry{"e1", "w", "pending", 1, T(300), 503, "receiver answered HTTP 503", T(0), std::nullopt};
  ASSERT_TRUE(IsOk(store_->RecordWebhookAttempt(retry)));
  WebhookDeliveryRecord done{"e2", "w", "delivered", 1, T(50), 204, "", T(5), T(60)};
  ASSERT_TRUE(IsOk(store_->RecordWebhookAttempt(done)));
  EXPECT_TRUE(ClaimIds(*store_, T(299), T(400)).empty());
  EXPECT_EQ(ClaimIds(*store_, T(300), T(400)), (std::vector<std::string>{"e1@w"}));
  WebhookDeliveryRecord unknown = done;
  unknown.event_id = "nope";
  EXPECT_TRUE(HasCode(store_->RecordWebhookAttempt(unknown), StatusCode::kNotFound));
  WebhookDeliveryRecord bad = done;
  bad.state = "lost";
  EXPECT_TRUE(HasCode(store_->RecordWebhookAttempt(bad), StatusCode::kInvalidArgument));

  StatusOr<std::vector<WebhookDeliveryRecord>> list = store_->ListWebhookDeliveries("w", 10);
  ASSERT_TRUE(IsOk(list.status()));
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].event_id, "e2");  // newest first
  EXPECT_EQ((*list)[0].state, "delivered");
  EXPECT_EQ((*list)[0].delivered_at, T(60));
  EXPECT_EQ((*list)[1].attempts, 1);
  EXPECT_EQ((*list)[1].last_status, 503);

  // Disabling fails what is pending and stops new deliveries.
  ASSERT_TRUE(IsOk(store_->DisableWebhook("w", T(500))));
  ASSERT_TRUE(IsOk(store_->DisableWebhook("w", T(600))));  // idempotent
  EXPECT_EQ(store_->GetWebhook("w")->disabled_at, T(500));
  EXPECT_TRUE(ClaimIds(*store_, T(1000), T(2000)).empty());
  EXPECT_EQ(store_->ListWebhookDeliveries("w", 10)->at(1).state, "failed");
  EXPECT_EQ(*store_->EnqueueWebhookEvent(MakeWebhookEvent("e3", "acme", "incident.opened", T(700))), 0);
  EXPECT_TRUE(HasCode(store_->DisableWebhook("nope", T(1)), StatusCode::kNotFound));
  EXPECT_EQ(store_->ListWebhooks(std::string("acme"))->size(), 1u);
  EXPECT_TRUE(store_->ListWebhooks(std::string("other"))->empty());
}

TEST_P(StoreConformanceTest, ResignJobRecordsAndStates) {
  CreateTenant("acme");
  EXPECT_TRUE(HasCode(store_->InsertResignJob(MakeJob("j0", "nobody")), StatusCode::kNotFound));
  ASSERT_TRUE(IsOk(store_->InsertResignJob(MakeJob("j1", "acme", T(1)))));
  ASSERT_TRUE(IsOk(store_->InsertResignJob(MakeJob("j2", "acme", T(2)))));
  EXPECT_TRUE(HasCode(store_->InsertResignJob(MakeJob("j1", "acme")), StatusCode::kAlreadyExists));
  StatusOr<ResignJobRecord> j = store_->GetResignJob("j1");
  ASSERT_TRUE(IsOk(j.status()));
  EXPECT_EQ(j->state, "queued");
  EXPECT_EQ(j->since, T(-5));
  EXPECT_EQ(j->compromised_key_id, "acme-v1");
  EXPECT_EQ(j->incident_id, "inc-1");
  EXPECT_FALSE(j->started_at.has_value());

  ASSERT_TRUE(IsOk(store_->SetResignJobTotal("j1", 42, T(3))));
  ASSERT_TRUE(IsOk(store_->UpdateResignJobState("j1", "queued", "running", "", T(4), {})));
  ASSERT_TRUE(IsOk(store_->UpdateResignJobState("j1", "running", "paused", "", T(5), {})));
  ASSERT_TRUE(IsOk(store_->UpdateResignJobState("j1", "paused", "running", "", T(6), {})));
  j = store_->GetResignJob("j1");
  EXPECT_EQ(j->total, 42);
  EXPECT_EQ(j->started_at, T(4));  // kept from the first start
  EXPECT_EQ(j->updated_at, T(6));
  ASSERT_TRUE(IsOk(store_->UpdateResignJobState("j1", "running", "completed", "", T(7), {})));
  EXPECT_EQ(store_->GetResignJob("j1")->finished_at, T(7));
  EXPECT_TRUE(HasCode(store_->UpdateResignJobState("j1", "running", "failed", "x", T(8), {}), StatusCode::kAborted));
  EXPECT_TRUE(HasCode(store_->UpdateResignJobState("nope", "queued", "running", "", T(8), {}), StatusCode::kNotFound));
  EXPECT_TRUE(HasCode(store_->SetResignJobTotal("nope", 1, T(8)), StatusCode::kNotFound));

  auto ids = [&](const std::optional<std::string>& tenant, const std::vector<std::string>& states) {
    std::vector<std::string> out;
    StatusOr<std::vector<ResignJobRecord>> jobs = store_->ListResignJobs(tenant, states);
    EXPECT_TRUE(IsOk(jobs.status()));
    if (jobs.ok()) {
      for (const auto& r : *jobs) out.push_back(r.job_id);
    }
    return out;
  };
  EXPECT_EQ(ids(std::nullopt, {}), (std::vector<std::string>{"j1", "j2"}));
  EXPECT_EQ(ids(std::string("acme"), {"queued", "running"}), (std::vector<std::string>{"j2"}));
  EXPECT_EQ(ids(std::string("acme"), {"complete"}), std::vector<std::string>{});  // whole names only
  EXPECT_TRUE(ids(std::string("other"), {}).empty());
}

}  // namespace concierge::store::conformance

#endif  // CONCIERGE_STORE_STORE_TEST_SUITE_INCIDENTS_H_
