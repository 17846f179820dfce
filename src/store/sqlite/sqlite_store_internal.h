// Helpers shared by the SqliteStore translation units (sqlite_store.cc and
// sqlite_store_rotations.cc). Every function that takes a sqlite3* runs inside
// the caller's transaction, with the caller holding SqliteStore::mu_. Not part
// of any interface: include only from src/store/sqlite/sqlite_store*.cc. The
// rules and messages both SQL engines share are in store/common/sql_records.h.
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_

#include <sqlite3.h>

#include <string>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "store/common/sql_records.h"
#include "store/sqlite/sqlite_util.h"

namespace concierge::store::sqlite_internal {

// Steps `s` to the end, turning each row into a T with `read`.
template <typename T, typename ReadRow>
StatusOr<std::vector<T>> ReadAllRows(Statement& s, ReadRow read) {
  std::vector<T> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(read(s));
  }
  return out;
}

// Marks the key's "active" certificate "superseded" (no-op without one).
Status SupersedeActiveCertificateRow(sqlite3* db, const std::string& key_id);

StatusOr<TenantState> LoadTenantState(sqlite3* db, const std::string& tenant_id);
// Ensures a tenant row exists (deleted or not), for history listings.
Status RequireTenantExists(sqlite3* db, const std::string& tenant_id);
// kFailedPrecondition when another key of the tenant is "active". The unique
// index would also refuse, but with a less helpful kAlreadyExists.
Status RequireNoOtherActiveKey(sqlite3* db, const std::string& tenant_id, const std::string& except_key_id);

// Moves key_id from `expected_state` to `new_state` (kNotFound, kAborted on a
// state mismatch; kFailedPrecondition when `required_tenant` is given and the
// key belongs to another tenant, or when activating would make a second active
// key or the tenant is deleted). Stamps activated_at / retired_at as the Store
// contract says. States are assumed valid names.
Status ChangeKeyState(sqlite3* db, const std::string& key_id, const std::string& expected_state,
                      const std::string& new_state, TimePoint at, const std::string& required_tenant);

}  // namespace concierge::store::sqlite_internal

#endif  // CONCIERGE_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
