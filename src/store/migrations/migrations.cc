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

}  // namespace

const std::vector<Migration>& SqliteMigrations() {
  // Function-local static: built on first use, so no static-init-order issues.
  static const std::vector<Migration> kMigrations{
      {1, "initial_schema", kV1InitialSchema},
      {2, "key_attestation_and_indexes", kV2KeyAttestationAndIndexes},
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
