#include "store/migrations/migrations.h"

#include <algorithm>
#include <set>
#include <string>

namespace concierge::store {
namespace {

// One list for every engine. Each migration is written once, in SQL that both
// SQLite and PostgreSQL accept, with a few dialect tokens where they differ:
//
//   {{INT}}     64-bit integer: SQLite INTEGER, PostgreSQL BIGINT
//   {{SEQ_PK}}  never-reused ascending row number as primary key: SQLite
//               INTEGER PRIMARY KEY AUTOINCREMENT, PostgreSQL BIGINT GENERATED
//               ALWAYS AS IDENTITY PRIMARY KEY
//   {{BLOB}}    bytes: SQLite BLOB, PostgreSQL BYTEA
//   {{WITHOUT_ROWID}}  table option: SQLite WITHOUT ROWID, PostgreSQL nothing
//
// The SQLite rendering is byte-for-byte the text these migrations shipped with
// before PostgreSQL existed, so sqlite_master of old and new databases agree.
// What to keep to when adding a migration (ValidateMigrations checks that no
// token is left unrendered; the store suites run every step on both engines):
//  - booleans are {{INT}} 0/1 with a CHECK, times {{INT}} unix milliseconds;
//  - TEXT compares bytewise in SQLite but by collation in PostgreSQL: queries
//    that ORDER BY text say COLLATE "C" on PostgreSQL (see postgres_store.cc);
//  - no engine-only syntax (INSERT OR REPLACE, SERIAL, AUTOINCREMENT outside
//    {{SEQ_PK}}, ...); if a difference is unavoidable, add a token here
//    rather than a second list.
//
// Times are {{INT}} unix milliseconds (UTC) so they sort and compare in SQL.
//
// Key states and API key roles are validated by the store code rather than by
// CHECK constraints: SQLite cannot alter a CHECK without rebuilding the table,
// and both lists are expected to grow.
constexpr std::string_view kV1InitialSchema = R"sql(
CREATE TABLE tenants (
  tenant_id             TEXT    NOT NULL PRIMARY KEY,
  active_policy_version {{INT}} NOT NULL DEFAULT 0,
  deleted               {{INT}} NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
  created_at            {{INT}} NOT NULL,
  updated_at            {{INT}} NOT NULL
);

CREATE TABLE policies (
  tenant_id   TEXT    NOT NULL REFERENCES tenants (tenant_id),
  version     {{INT}} NOT NULL CHECK (version > 0),
  body_json   TEXT    NOT NULL,
  policy_hash TEXT    NOT NULL,
  created_by  TEXT    NOT NULL,
  created_at  {{INT}} NOT NULL,
  PRIMARY KEY (tenant_id, version)
);

CREATE TABLE keys (
  key_id         TEXT    NOT NULL PRIMARY KEY,
  tenant_id      TEXT    NOT NULL REFERENCES tenants (tenant_id),
  version        {{INT}} NOT NULL CHECK (version > 0),
  algorithm      TEXT    NOT NULL,
  provider       TEXT    NOT NULL,
  key_uri        TEXT    NOT NULL,
  state          TEXT    NOT NULL,
  public_key_pem TEXT    NOT NULL,
  fingerprint    TEXT    NOT NULL,
  created_at     {{INT}} NOT NULL,
  activated_at   {{INT}},
  retired_at     {{INT}},
  UNIQUE (tenant_id, version)
);

-- tenant_id NULL means "all tenants"; the foreign key stops a token being
-- scoped to a tenant that never existed.
CREATE TABLE api_keys (
  id          TEXT    NOT NULL PRIMARY KEY,
  secret_hash TEXT    NOT NULL,
  role        TEXT    NOT NULL,
  tenant_id   TEXT    REFERENCES tenants (tenant_id),
  name        TEXT    NOT NULL,
  created_by  TEXT    NOT NULL,
  created_at  {{INT}} NOT NULL,
  revoked_at  {{INT}}
);
)sql";

// Attestation evidence from HSM/KMS providers (empty for software keys), plus
// the indexes the request paths need. The partial unique index makes "at most
// one active key per tenant" a database invariant, so GetActiveKey can never be
// ambiguous even if two rotations race.
constexpr std::string_view kV2KeyAttestationAndIndexes = R"sql(
ALTER TABLE keys ADD COLUMN attestation TEXT NOT NULL DEFAULT '';

CREATE INDEX keys_by_tenant_state ON keys (tenant_id, state);

CREATE UNIQUE INDEX keys_one_active_per_tenant ON keys (tenant_id) WHERE state = 'active';

CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id);
)sql";

// The signing ledger: one row per signature returned (see concierge/ledger.h).
//
// No foreign keys to tenants/keys. This table sits on the signing hot path
// (every signature is a row, written by the group-commit writer), and an FK
// would add an index probe into tenants and keys per inserted row and make the
// append depend on rows that the admin path updates concurrently. The signer
// has just loaded the tenant's policy and active key from the store, so the
// references are validated upstream; and the ledger is history that must be
// kept whatever later happens to the tenant or key it names.
//
// seq is AUTOINCREMENT so a seq is never handed out twice, even if the newest
// rows were ever removed; cursors held by clients stay unambiguous. Times are
// unix milliseconds, like every other time column.
//
// Indexes, one per query the service makes:
//  - (tenant_id, seq): ListLedger's cursor paging (WHERE tenant_id = ? AND
//    seq > ? ORDER BY seq), served in index order with no sort.
//  - (key_id, seq, signed_at): "everything key K signed between T1 and T2".
//    ListLedger pages in seq order, so seq must follow key_id for the scan to
//    be index-ordered; with (key_id, signed_at) every page would have to
//    re-read and sort all of K's rows in the window (quadratic over a full
//    listing). Keeping signed_at in the index lets SQLite reject rows outside
//    [T1, T2) without visiting the table.
//  - No (tenant_id, request_id) index: it was the costliest index per insert
//    (~40% of commit CPU; request ids land at random places) and nothing on
//    the request path needs it. HasRequest scans the tenant's rows; it is a
//    diagnostic, not a hot-path call.
//  - (signed_at): CountByMinuteSince, the start-up scan of the last 24 hours.
//
// On PostgreSQL seq is an identity column; it follows commit order because
// appends are serialised by an advisory lock (see postgres_ledger.h).
constexpr std::string_view kV3SigningLedger = R"sql(
CREATE TABLE ledger (
  seq            {{SEQ_PK}},
  tenant_id      TEXT    NOT NULL,
  key_id         TEXT    NOT NULL,
  key_version    {{INT}} NOT NULL,
  cert_serial    TEXT    NOT NULL DEFAULT '',
  algorithm      TEXT    NOT NULL,
  kind           TEXT    NOT NULL,
  digest_hex     TEXT    NOT NULL,
  asset_id       TEXT    NOT NULL DEFAULT '',
  request_id     TEXT    NOT NULL,
  api_key_id     TEXT    NOT NULL,
  client_address TEXT    NOT NULL,
  policy_hash    TEXT    NOT NULL,
  signed_at      {{INT}} NOT NULL
);

CREATE INDEX ledger_by_tenant_seq ON ledger (tenant_id, seq);

CREATE INDEX ledger_by_key_seq_time ON ledger (key_id, seq, signed_at);

CREATE INDEX ledger_by_signed_at ON ledger (signed_at);
)sql";

// Certificates of tenant keys and the built-in issuing CA.
//
// (issuer, serial) is the identity of a certificate (serials are only unique
// per issuer, and imported certificates come from any CA). The partial unique
// index makes "at most one active certificate per key" a database invariant,
// like keys_one_active_per_tenant. No FK on key_id: the key row is owned by the
// tenant's lifecycle, certificates are history that outlives it; tenant_id keeps
// its FK so a certificate can never name a tenant that never existed.
//
// The CA table holds one row (id = 1): the CA key stays in its backend, only
// its URI and the self-signed certificate are here. crl_number is the last CRL
// number handed out, incremented under the write lock.
constexpr std::string_view kV4Certificates = R"sql(
CREATE TABLE certificates (
  issuer      TEXT    NOT NULL,
  serial      TEXT    NOT NULL,
  tenant_id   TEXT    NOT NULL REFERENCES tenants (tenant_id),
  key_id      TEXT    NOT NULL,
  pem         TEXT    NOT NULL,
  chain_pem   TEXT    NOT NULL,
  source      TEXT    NOT NULL,
  status      TEXT    NOT NULL,
  not_before  {{INT}} NOT NULL,
  not_after   {{INT}} NOT NULL,
  created_at  {{INT}} NOT NULL,
  revoked_at  {{INT}},
  PRIMARY KEY (issuer, serial)
);

CREATE UNIQUE INDEX certificates_one_active_per_key ON certificates (key_id) WHERE status = 'active';

CREATE INDEX certificates_by_key_created ON certificates (key_id, created_at);

CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE ca (
  id          {{INT}} NOT NULL PRIMARY KEY CHECK (id = 1),
  provider    TEXT    NOT NULL,
  key_uri     TEXT    NOT NULL,
  algorithm   TEXT    NOT NULL,
  cert_pem    TEXT    NOT NULL,
  crl_number  {{INT}} NOT NULL DEFAULT 0,
  created_at  {{INT}} NOT NULL
);
)sql";

// The tamper-evident audit log (concierge/audit.h, docs/audit.md).
//
// audit_entries: one row per leaf, written by the group-commit writer in the
// same transaction as the ledger rows it describes. idx is the 0-based leaf
// index and the rowid (INTEGER PRIMARY KEY), so appends go to the end of the
// table's b-tree and need no separate index. leaf_hash is what the writer
// hashed: proofs read it instead of rehashing entries, and `keyctl audit
// verify --db` recomputes it from the other columns to name an edited row.
// Indexes: (tenant_id, idx) for tenant-scoped listings, which must page in
// index order without reading other tenants' rows. Other filters (actor,
// action, time) scan in index order: they are audit queries, not on a
// request path, and every index is paid for on every signature.
//
// audit_nodes: interior nodes at every kAuditNodeLevelStride-th level (4, 8,
// ...), i.e. about one row per 16 leaves, so an inclusion or consistency
// proof reads O(log n) small ranges instead of every leaf.
//
// audit_keys: the checkpoint-signing key(s); the private key stays in its
// backend. audit_checkpoints: signed tree heads; note is the exact signed
// text, so a checkpoint verifies without reformatting anything.
//
// Both dialects from one text: on PostgreSQL idx is a BIGINT primary key, the
// checkpoint id an identity column, hashes BYTEA, and WITHOUT ROWID vanishes.
constexpr std::string_view kV5AuditLog = R"sql(
CREATE TABLE audit_entries (
  idx            {{INT}} PRIMARY KEY,
  time_ms        {{INT}} NOT NULL,
  actor          TEXT    NOT NULL,
  tenant_id      TEXT    NOT NULL,
  action         TEXT    NOT NULL,
  target         TEXT    NOT NULL,
  outcome        TEXT    NOT NULL,
  request_id     TEXT    NOT NULL,
  client_address TEXT    NOT NULL,
  policy_hash    TEXT    NOT NULL,
  detail         TEXT    NOT NULL,
  leaf_hash      {{BLOB}}    NOT NULL
);

CREATE INDEX audit_entries_by_tenant ON audit_entries (tenant_id, idx);

CREATE TABLE audit_nodes (
  level {{INT}} NOT NULL,
  idx   {{INT}} NOT NULL,
  hash  {{BLOB}}    NOT NULL,
  PRIMARY KEY (level, idx)
) {{WITHOUT_ROWID}};

CREATE TABLE audit_keys (
  key_id         TEXT    NOT NULL PRIMARY KEY,
  origin         TEXT    NOT NULL,
  algorithm      TEXT    NOT NULL,
  provider       TEXT    NOT NULL,
  key_uri        TEXT    NOT NULL,
  public_key_pem TEXT    NOT NULL,
  created_at     {{INT}} NOT NULL
);

CREATE TABLE audit_checkpoints (
  id           {{SEQ_PK}},
  tree_size    {{INT}} NOT NULL,
  root_hash    {{BLOB}}    NOT NULL,
  timestamp_ms {{INT}} NOT NULL,
  key_id       TEXT    NOT NULL,
  note         TEXT    NOT NULL,
  signature    {{BLOB}}    NOT NULL
);
)sql";

// Key rotations and their timelines (docs/rotation.md).
//
// rotations_one_open_per_tenant makes "at most one open rotation per tenant"
// (scheduled, running or awaiting_certificate) a database invariant, so two
// schedulers (or two `keyctl serve` sharing the file) can never start two
// rotations of one tenant. `version` is the optimistic-concurrency counter:
// every update says which version it read. Key ids are plain text without a
// foreign key, like certificates.key_id: the rotation is history that must
// outlive whatever later happens to its keys. The old/new key ids and the CSR
// are also what the Rotation Evidence Pack is built from.
//
// rotation_events is the per-rotation timeline; seq is allocated per rotation
// inside the writing transaction (MAX(seq) + 1), so it follows commit order.
//
// rotation_evidence keeps each Rotation Evidence Pack as built (BLOB on SQLite,
// BYTEA on PostgreSQL), one per (rotation, outcome). evidence_key names the
// service key that signs the packs (one row, like ca).
constexpr std::string_view kV6Rotations = R"sql(
CREATE TABLE rotations (
  rotation_id       TEXT    NOT NULL PRIMARY KEY,
  tenant_id         TEXT    NOT NULL REFERENCES tenants (tenant_id),
  state             TEXT    NOT NULL,
  phase             TEXT    NOT NULL DEFAULT '',
  trigger_kind      TEXT    NOT NULL,
  scheduled_at      {{INT}} NOT NULL,
  owner             TEXT    NOT NULL DEFAULT '',
  approval_required {{INT}} NOT NULL DEFAULT 0 CHECK (approval_required IN (0, 1)),
  approved_by       TEXT    NOT NULL DEFAULT '',
  approved_at       {{INT}},
  created_by        TEXT    NOT NULL,
  cert_source       TEXT    NOT NULL DEFAULT '',
  policy_version    {{INT}} NOT NULL DEFAULT 0,
  policy_hash       TEXT    NOT NULL DEFAULT '',
  old_key_id        TEXT    NOT NULL DEFAULT '',
  new_key_id        TEXT    NOT NULL DEFAULT '',
  csr_pem           TEXT    NOT NULL DEFAULT '',
  cert_serial       TEXT    NOT NULL DEFAULT '',
  canary_results    TEXT    NOT NULL DEFAULT '',
  error             TEXT    NOT NULL DEFAULT '',
  started_at        {{INT}},
  cutover_at        {{INT}},
  grace_until       {{INT}},
  finished_at       {{INT}},
  created_at        {{INT}} NOT NULL,
  updated_at        {{INT}} NOT NULL,
  version           {{INT}} NOT NULL CHECK (version > 0)
);

CREATE UNIQUE INDEX rotations_one_open_per_tenant ON rotations (tenant_id)
  WHERE state IN ('scheduled', 'running', 'awaiting_certificate');

CREATE INDEX rotations_by_tenant_time ON rotations (tenant_id, scheduled_at);

CREATE INDEX rotations_open_by_time ON rotations (scheduled_at)
  WHERE state IN ('scheduled', 'running', 'awaiting_certificate');

CREATE TABLE rotation_events (
  rotation_id TEXT    NOT NULL REFERENCES rotations (rotation_id),
  seq         {{INT}} NOT NULL CHECK (seq > 0),
  at          {{INT}} NOT NULL,
  phase       TEXT    NOT NULL DEFAULT '',
  event       TEXT    NOT NULL,
  detail      TEXT    NOT NULL DEFAULT '',
  actor       TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (rotation_id, seq)
);

CREATE TABLE rotation_evidence (
  rotation_id TEXT    NOT NULL REFERENCES rotations (rotation_id),
  outcome     TEXT    NOT NULL,
  created_at  {{INT}} NOT NULL,
  sha256      TEXT    NOT NULL,
  pack        {{BLOB}}    NOT NULL,
  PRIMARY KEY (rotation_id, outcome)
);

CREATE TABLE evidence_key (
  id             {{INT}} NOT NULL PRIMARY KEY CHECK (id = 1),
  provider       TEXT    NOT NULL,
  key_uri        TEXT    NOT NULL,
  algorithm      TEXT    NOT NULL,
  public_key_pem TEXT    NOT NULL,
  fingerprint    TEXT    NOT NULL,
  created_at     {{INT}} NOT NULL
);
)sql";

// Incident response (issue 9): incidents and their timelines, webhooks with a
// persistent outbox, mass re-sign jobs, and the ledger's re-sign linkage.
//
//  - incidents_one_open_per_detection: a partial unique index, so two detector
//    threads (or two processes) racing to open "the same" incident cannot both
//    succeed; the loser folds into the winner (Store::InsertIncident).
//  - incident_events: the timeline, (incident_id, seq) with seq per incident.
//  - webhooks.secret_sealed: AES-256-GCM under a key kept outside the
//    database (core/webhook.h), so a database copy does not give away secrets.
//  - webhook_events + webhook_deliveries: the outbox. One event row, one
//    delivery row per webhook that should see it; the dispatcher claims due
//    deliveries through (state, next_attempt_at).
//  - ledger.resign_of_seq: NULL for ordinary rows. The partial unique index on
//    (resign_of_seq, key_id) makes "at most one re-signature of a row per key"
//    a database invariant, so a retried re-sign batch can never double-insert;
//    being partial, it costs ordinary signing rows nothing.
//  - resign_jobs: the job and its cursor (last original seq handled), moved
//    in the same transaction as the rows it covers.
//  - resign_results: one row per original handled (PRIMARY KEY (job_id,
//    original_seq): a result cannot be written twice either), the source of
//    GET /api/v1/jobs/{id}/results.
//
// Both dialects: the same tables and partial indexes ({{INT}} is BIGINT on
// PostgreSQL).
constexpr std::string_view kV7Incidents = R"sql(
CREATE TABLE incidents (
  incident_id   TEXT    NOT NULL PRIMARY KEY,
  tenant_id     TEXT    NOT NULL DEFAULT '',
  type          TEXT    NOT NULL,
  severity      TEXT    NOT NULL,
  state         TEXT    NOT NULL,
  title         TEXT    NOT NULL,
  detector      TEXT    NOT NULL,
  dedup_key     TEXT    NOT NULL DEFAULT '',
  key_id        TEXT    NOT NULL DEFAULT '',
  occurrences   {{INT}} NOT NULL DEFAULT 1,
  details_json  TEXT    NOT NULL DEFAULT '{}',
  playbook_json TEXT    NOT NULL DEFAULT '',
  created_by    TEXT    NOT NULL,
  created_at    {{INT}} NOT NULL,
  updated_at    {{INT}} NOT NULL,
  resolved_at   {{INT}},
  closed_at     {{INT}}
);

CREATE UNIQUE INDEX incidents_one_open_per_detection ON incidents (tenant_id, type, dedup_key)
  WHERE dedup_key <> '' AND state NOT IN ('resolved', 'closed');

CREATE INDEX incidents_by_created ON incidents (created_at, incident_id);

CREATE INDEX incidents_by_tenant_created ON incidents (tenant_id, created_at);

CREATE TABLE incident_events (
  incident_id TEXT    NOT NULL REFERENCES incidents (incident_id),
  seq         {{INT}} NOT NULL,
  at          {{INT}} NOT NULL,
  actor       TEXT    NOT NULL,
  action      TEXT    NOT NULL,
  from_state  TEXT    NOT NULL DEFAULT '',
  to_state    TEXT    NOT NULL DEFAULT '',
  detail      TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (incident_id, seq)
);

CREATE TABLE webhooks (
  webhook_id    TEXT    NOT NULL PRIMARY KEY,
  tenant_id     TEXT    NOT NULL DEFAULT '',
  url           TEXT    NOT NULL,
  secret_sealed TEXT    NOT NULL,
  event_types   TEXT    NOT NULL DEFAULT '',
  created_by    TEXT    NOT NULL,
  created_at    {{INT}} NOT NULL,
  disabled_at   {{INT}}
);

CREATE INDEX webhooks_by_tenant ON webhooks (tenant_id);

CREATE TABLE webhook_events (
  event_id     TEXT    NOT NULL PRIMARY KEY,
  tenant_id    TEXT    NOT NULL DEFAULT '',
  type         TEXT    NOT NULL,
  payload_json TEXT    NOT NULL,
  created_at   {{INT}} NOT NULL
);

CREATE TABLE webhook_deliveries (
  event_id        TEXT    NOT NULL REFERENCES webhook_events (event_id),
  webhook_id      TEXT    NOT NULL REFERENCES webhooks (webhook_id),
  state           TEXT    NOT NULL,
  attempts        {{INT}} NOT NULL DEFAULT 0,
  next_attempt_at {{INT}} NOT NULL,
  last_status     {{INT}} NOT NULL DEFAULT 0,
  last_error      TEXT    NOT NULL DEFAULT '',
  created_at      {{INT}} NOT NULL,
  delivered_at    {{INT}},
  PRIMARY KEY (event_id, webhook_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';

CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, created_at);

ALTER TABLE ledger ADD COLUMN resign_of_seq {{INT}};

CREATE UNIQUE INDEX ledger_one_resign_per_key ON ledger (resign_of_seq, key_id)
  WHERE resign_of_seq IS NOT NULL;

CREATE TABLE resign_jobs (
  job_id             TEXT    NOT NULL PRIMARY KEY,
  tenant_id          TEXT    NOT NULL REFERENCES tenants (tenant_id),
  incident_id        TEXT    NOT NULL DEFAULT '',
  compromised_key_id TEXT    NOT NULL,
  new_key_id         TEXT    NOT NULL,
  since              {{INT}},
  state              TEXT    NOT NULL,
  cursor_seq         {{INT}} NOT NULL DEFAULT 0,
  total              {{INT}} NOT NULL DEFAULT 0,
  processed          {{INT}} NOT NULL DEFAULT 0,
  resigned           {{INT}} NOT NULL DEFAULT 0,
  needs_client       {{INT}} NOT NULL DEFAULT 0,
  already_resigned   {{INT}} NOT NULL DEFAULT 0,
  error              TEXT    NOT NULL DEFAULT '',
  created_by         TEXT    NOT NULL,
  created_at         {{INT}} NOT NULL,
  updated_at         {{INT}} NOT NULL,
  started_at         {{INT}},
  finished_at        {{INT}}
);

CREATE INDEX resign_jobs_by_tenant ON resign_jobs (tenant_id, created_at);

CREATE TABLE resign_results (
  job_id           TEXT    NOT NULL REFERENCES resign_jobs (job_id),
  original_seq     {{INT}} NOT NULL,
  status           TEXT    NOT NULL,
  new_seq          {{INT}} NOT NULL DEFAULT 0,
  original_kind    TEXT    NOT NULL,
  asset_id         TEXT    NOT NULL DEFAULT '',
  digest_hex       TEXT    NOT NULL,
  signature_b64    TEXT    NOT NULL DEFAULT '',
  signature_format TEXT    NOT NULL DEFAULT '',
  key_id           TEXT    NOT NULL,
  key_version      {{INT}} NOT NULL,
  detail           TEXT    NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, original_seq)
);
)sql";

// THE list. Append only; every entry is rendered for each dialect.
const std::vector<Migration>& MigrationTemplates() {
  // Function-local static: built on first use, so no static-init-order issues.
  static const std::vector<Migration> kMigrations{
      {1, "initial_schema", kV1InitialSchema},
      {2, "key_attestation_and_indexes", kV2KeyAttestationAndIndexes},
      {3, "signing_ledger", kV3SigningLedger},
      {4, "certificates", kV4Certificates},
      {5, "audit_log", kV5AuditLog},
      {6, "rotations", kV6Rotations},
      {7, "incidents_webhooks_resign_jobs", kV7Incidents},
  };
  return kMigrations;
}

// The templates rendered for one dialect. The texts are owned here and never
// move once built, so the Migration views into them stay valid.
class RenderedMigrations {
 public:
  explicit RenderedMigrations(SqlDialect dialect) {
    const std::vector<Migration>& templates = MigrationTemplates();
    texts_.reserve(templates.size());
    for (const Migration& m : templates) texts_.push_back(RenderMigrationSql(m.sql, dialect));
    for (size_t i = 0; i < templates.size(); ++i) {
      list_.push_back(Migration{templates[i].version, templates[i].name, texts_[i]});
    }
  }
  const std::vector<Migration>& list() const { return list_; }

 private:
  std::vector<std::string> texts_;
  std::vector<Migration> list_;
};

}  // namespace

std::string RenderMigrationSql(std::string_view sql_template, SqlDialect dialect) {
  struct Token {
    std::string_view name, sqlite, postgres;
  };
  static constexpr Token kTokens[] = {
      {"{{INT}}", "INTEGER", "BIGINT"},
      {"{{SEQ_PK}}", "INTEGER PRIMARY KEY AUTOINCREMENT",
       "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"},
      {"{{BLOB}}", "BLOB", "BYTEA"},
      {"{{WITHOUT_ROWID}}", "WITHOUT ROWID", ""},
  };
  std::string out;
  out.reserve(sql_template.size() + 256);
  size_t pos = 0;
  while (pos < sql_template.size()) {
    const size_t open = sql_template.find("{{", pos);
    if (open == std::string_view::npos) break;
    out.append(sql_template.substr(pos, open - pos));
    const Token* hit = nullptr;
    for (const Token& t : kTokens) {
      if (sql_template.substr(open, t.name.size()) == t.name) hit = &t;
    }
    if (hit == nullptr) {
      // Left as is: ValidateMigrations refuses any "{{" that survives.
      out.append("{{");
      pos = open + 2;
      continue;
    }
    out.append(dialect == SqlDialect::kSqlite ? hit->sqlite : hit->postgres);
    pos = open + hit->name.size();
  }
  out.append(sql_template.substr(std::min(pos, sql_template.size())));
  return out;
}

const std::vector<Migration>& MigrationsFor(SqlDialect dialect) {
  static const RenderedMigrations kSqlite(SqlDialect::kSqlite);
  static const RenderedMigrations kPostgres(SqlDialect::kPostgres);
  return dialect == SqlDialect::kSqlite ? kSqlite.list() : kPostgres.list();
}

const std::vector<Migration>& SqliteMigrations() { return MigrationsFor(SqlDialect::kSqlite); }

const std::vector<Migration>& PostgresMigrations() { return MigrationsFor(SqlDialect::kPostgres); }

Status ValidateMigrations(const std::vector<Migration>& migrations) {
  if (migrations.empty()) return InternalError("migration list is empty");
  std::set<std::string_view> names;
  for (size_t i = 0; i < migrations.size(); ++i) {
    const Migration& m = migrations[i];
    const int want = static_cast<int>(i) + 1;
    if (m.version != want) {
      return InternalError("migration list out of order: position " + std::to_string(want) +
                           " holds version " + std::to_string(m.version));
    }
    if (m.name.empty() || !names.insert(m.name).second) {
      return InternalError("migration " + std::to_string(m.version) +
                           " has an empty or duplicate name");
    }
    if (m.sql.empty()) {
      return InternalError("migration " + std::to_string(m.version) + " has no SQL");
    }
    if (m.sql.find("{{") != std::string_view::npos) {
      return InternalError("migration " + std::to_string(m.version) +
                           " has an unknown dialect token");
    }
  }
  return Status::Ok();
}

Status SchemaTooNewError(int db_version, int latest_known) {
  return FailedPreconditionError("database schema version " + std::to_string(db_version) +
                                 " is newer than this build supports (latest known " +
                                 std::to_string(latest_known) +
                                 "); upgrade the binary or restore a matching backup");
}

StatusOr<std::vector<const Migration*>> PlanMigrations(const std::vector<Migration>& migrations,
                                                       int current_version, int target_version) {
  const int latest = static_cast<int>(migrations.size());
  if (current_version > latest) return SchemaTooNewError(current_version, latest);
  if (current_version < 0) {
    return DataLossError("schema_migrations holds a negative version " +
                         std::to_string(current_version));
  }
  const int target = target_version == 0 ? latest : target_version;
  if (target < 1 || target > latest) {
    return InvalidArgumentError("migration target " + std::to_string(target_version) +
                                " is outside 1.." + std::to_string(latest));
  }
  if (target < current_version) {
    return FailedPreconditionError("database is at schema version " +
                                   std::to_string(current_version) + ", above target " +
                                   std::to_string(target) + "; downgrades are not supported");
  }
  std::vector<const Migration*> plan;
  for (int v = current_version + 1; v <= target; ++v) plan.push_back(&migrations[v - 1]);
  return plan;
}

Status RunMigrations(MigrationDriver& driver, const std::vector<Migration>& migrations,
                     int target_version) {
  RETURN_IF_ERROR(ValidateMigrations(migrations));
  ASSIGN_OR_RETURN(int current, driver.CurrentVersion());
  ASSIGN_OR_RETURN(std::vector<const Migration*> plan,
                   PlanMigrations(migrations, current, target_version));
  for (const Migration* m : plan) {
    Status s = driver.Apply(*m);
    if (!s.ok()) {
      return s.Annotate("applying migration " + std::to_string(m->version) + " (" +
                        std::string(m->name) + ")");
    }
  }
  return Status::Ok();
}

}  // namespace concierge::store
