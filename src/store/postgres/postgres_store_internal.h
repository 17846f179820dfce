// Helpers shared by the PostgresStore translation units (postgres_store.cc and
// postgres_store_rotations.cc). Every function that takes a PGconn* runs
// inside the caller's transaction (a write transaction holds the store write
// lock, see postgres_store.h). Not part of any interface: include only from
// src/store/postgres/postgres_store*.cc. The rules and messages both SQL
// engines share are in store/common/sql_records.h.
#ifndef CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_
#define CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_

#include <libpq-fe.h>

#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "store/common/sql_records.h"
#include "store/postgres/pg_util.h"

namespace concierge::store::pg_internal {

// Every row of `r` through `read`.
template <typename Record, typename Reader>
std::vector<Record> ReadAll(const PgResult& r, Reader read) {
  std::vector<Record> out;
  out.reserve(static_cast<size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) out.push_back(read(r.row(i)));
  return out;
}

StatusOr<TenantState> LoadTenantState(PGconn* c, const std::string& tenant_id);
// Ensures a tenant row exists (deleted or not), for history listings.
Status RequireTenantExists(PGconn* c, const std::string& tenant_id);
// kFailedPrecondition when another key of the tenant is "active". The unique
// index would also refuse, but with a less helpful kAlreadyExists.
Status RequireNoOtherActiveKey(PGconn* c, const std::string& tenant_id, const std::string& except_key_id);
// Marks the key's "active" certificate "superseded" (no-op without one).
Status SupersedeActiveCertificateRow(PGconn* c, const std::string& key_id);

// Moves key_id from `expected_state` to `new_state`, exactly as SQLite's
// ChangeKeyState (sqlite_store_internal.h): kNotFound, kAborted on a state
// mismatch, kFailedPrecondition for a key of another tenant than a non-empty
// `required_tenant`, a second active key or a deleted tenant.
Status ChangeKeyState(PGconn* c, const std::string& key_id, const std::string& expected_state,
                      const std::string& new_state, TimePoint at, const std::string& required_tenant);

}  // namespace concierge::store::pg_internal

#endif  // CONCIERGE_STORE_POSTGRES_POSTGRES_STORE_INTERNAL_H_
