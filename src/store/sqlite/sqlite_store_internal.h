// Helpers shared by the SqliteStore translation units (sqlite_store.cc and
// sqlite_store_rotations.cc). Every function that takes a sqlite3* runs inside
// the caller's transaction, with the caller holding SqliteStore::mu_. Not part
// of any interface: include only from src/store/sqlite/sqlite_store*.cc.
#ifndef CONCIERGE_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_
#define CONCIERGE_STORE_SQLITE_SQLITE_STORE_INTERNAL_H_

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "store/sqlite/sqlite_util.h"

namespace concierge::store::sqlite_internal {

inline constexpr std::array<std::string_view, 7> kKeyStates = {
    "pending", "active", "retiring", "retired", "compromised", "destroyed", "disabled"};
// States that end a key's service life and so stamp retired_at.
inline constexpr std::array<std::string_view, 3> kRetiredAtStates = {"retired", "compromised",
                                                                     "destroyed"};

template <size_t N>
bool Contains(const std::array<std::string_view, N>& set, std::string_view value) {
  return std::find(set.begin(), set.end(), value) != set.end();
}

Status ValidateKeyState(std::string_view field, const std::string& state);

inline std::optional<TimePoint> StampIf(bool condition, TimePoint at) {
  return condition ? std::optional<TimePoint>(at) : std::nullopt;
}

inline std::string Sql(std::string_view a, std::string_view b = {}, std::string_view c = {}) {
  std::string out(a);
  out.append(b).append(c);
  return out;
}

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

struct TenantState {
  bool exists = false;
  bool deleted = false;
  int64_t active_policy_version = 0;
};

StatusOr<TenantState> LoadTenantState(sqlite3* db, const std::string& tenant_id);
Status TenantNotFound(const std::string& tenant_id);
Status TenantNotFoundOrDeleted(const std::string& tenant_id);
// Ensures a tenant row exists (deleted or not), for history listings.
Status RequireTenantExists(sqlite3* db, const std::string& tenant_id);
// kFailedPrecondition when another key of the tenant is "active".
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
