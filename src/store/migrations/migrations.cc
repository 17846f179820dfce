#include "store/migrations/migrations.h"

#include <set>
#include <string>

namespace concierge::store {
namespace {

// Times are INTEGER unix milliseconds (UTC) so they sort and compare in SQL
// and map 1:1 onto BIGINT in the PostgreSQL dialect.
//
// Key states and API key roles are validated by the store code rather than by
// CHECK constraints: SQLite cannot alter a CHECK without rebuilding the table,
// and both lists are expected to grow.
constexpr std::string_view kV1InitialSchema = R"sql(
CREATE TABLE tenants (
  tenant_id             TEXT    NOT NULL PRIMARY KEY,
  active_policy_version INTEGER NOT NULL DEFAULT 0,
  deleted               INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
  created_at            INTEGER NOT NULL,
  updated_at            INTEGER NOT NULL
);

CREATE TABLE policies (
  tenant_id   TEXT    NOT NULL REFERENCES tenants (tenant_id),
  version     INTEGER NOT NULL CHECK (version > 0),
  body_json   TEXT    NOT NULL,
  policy_hash TEXT    NOT NULL,
  created_by  TEXT    NOT NULL,
  created_at  INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, version)
);

CREATE TABLE keys (
  key_id         TEXT    NOT NULL PRIMARY KEY,
  tenant_id      TEXT    NOT NULL REFERENCES tenants (tenant_id),
  version        INTEGER NOT NULL CHECK (version > 0),
  algorithm      TEXT    NOT NULL,
  provider       TEXT    NOT NULL,
  key_uri        TEXT    NOT NULL,
  state          TEXT    NOT NULL,
  public_key_pem TEXT    NOT NULL,
  fingerprint    TEXT    NOT NULL,
  created_at     INTEGER NOT NULL,
  activated_at   INTEGER,
  retired_at     INTEGER,
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
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER
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
// PostgreSQL dialect (same version and name): seq BIGINT GENERATED ALWAYS AS
// IDENTITY PRIMARY KEY, INTEGER columns BIGINT, the same indexes. There seq
// follows commit order only because a single writer appends (LedgerWriter).
constexpr std::string_view kV3SigningLedger = R"sql(
CREATE TABLE ledger (
  seq            INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id      TEXT    NOT NULL,
  key_id         TEXT    NOT NULL,
  key_version    INTEGER NOT NULL,
  cert_serial    TEXT    NOT NULL DEFAULT '',
  algorithm      TEXT    NOT NULL,
  kind           TEXT    NOT NULL,
  digest_hex     TEXT    NOT NULL,
  asset_id       TEXT    NOT NULL DEFAULT '',
  request_id     TEXT    NOT NULL,
  api_key_id     TEXT    NOT NULL,
  client_address TEXT    NOT NULL,
  policy_hash    TEXT    NOT NULL,
  signed_at      INTEGER NOT NULL
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
  not_before  INTEGER NOT NULL,
  not_after   INTEGER NOT NULL,
  created_at  INTEGER NOT NULL,
  revoked_at  INTEGER,
  PRIMARY KEY (issuer, serial)
);

CREATE UNIQUE INDEX certificates_one_active_per_key ON certificates (key_id) WHERE status = 'active';

CREATE INDEX certificates_by_key_created ON certificates (key_id, created_at);

CREATE INDEX certificates_revoked_by_issuer ON certificates (issuer, revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE ca (
  id          INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
  provider    TEXT    NOT NULL,
  key_uri     TEXT    NOT NULL,
  algorithm   TEXT    NOT NULL,
  cert_pem    TEXT    NOT NULL,
  crl_number  INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL
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
// PostgreSQL dialect (same version and name): INTEGER -> BIGINT, BLOB ->
// BYTEA, id BIGINT GENERATED ALWAYS AS IDENTITY, WITHOUT ROWID dropped.
constexpr std::string_view kV5AuditLog = R"sql(
CREATE TABLE audit_entries (
  idx            INTEGER PRIMARY KEY,
  time_ms        INTEGER NOT NULL,
  actor          TEXT    NOT NULL,
  tenant_id      TEXT    NOT NULL,
  action         TEXT    NOT NULL,
  target         TEXT    NOT NULL,
  outcome        TEXT    NOT NULL,
  request_id     TEXT    NOT NULL,
  client_address TEXT    NOT NULL,
  policy_hash    TEXT    NOT NULL,
  detail         TEXT    NOT NULL,
  leaf_hash      BLOB    NOT NULL
);

CREATE INDEX audit_entries_by_tenant ON audit_entries (tenant_id, idx);

CREATE TABLE audit_nodes (
  level INTEGER NOT NULL,
  idx   INTEGER NOT NULL,
  hash  BLOB    NOT NULL,
  PRIMARY KEY (level, idx)
) WITHOUT ROWID;

CREATE TABLE audit_keys (
  key_id         TEXT    NOT NULL PRIMARY KEY,
  origin         TEXT    NOT NULL,
  algorithm      TEXT    NOT NULL,
  provider       TEXT    NOT NULL,
  key_uri        TEXT    NOT NULL,
  public_key_pem TEXT    NOT NULL,
  created_at     INTEGER NOT NULL
);

CREATE TABLE audit_checkpoints (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  tree_size    INTEGER NOT NULL,
  root_hash    BLOB    NOT NULL,
  timestamp_ms INTEGER NOT NULL,
  key_id       TEXT    NOT NULL,
  note         TEXT    NOT NULL,
  signature    BLOB    NOT NULL
);
)sql";

}  // namespace

const std::vector<Migration>& SqliteMigrations() {
  // Function-local static: built on first use, so no static-init-order issues.
  static const std::vector<Migration> kMigrations{
      {1, "initial_schema", kV1InitialSchema},
      {2, "key_attestation_and_indexes", kV2KeyAttestationAndIndexes},
      {3, "signing_ledger", kV3SigningLedger},
      {4, "certificates", kV4Certificates},
      {5, "audit_log", kV5AuditLog},
  };
  return kMigrations;
}

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
