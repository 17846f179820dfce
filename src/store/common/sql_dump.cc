#include "store/common/sql_dump.h"

#include <algorithm>
#include <map>
#include <set>

namespace concierge::store {

StatusOr<std::vector<std::string>> OrderByReferences(
    std::vector<std::string> tables, const std::vector<std::pair<std::string, std::string>>& references) {
  std::sort(tables.begin(), tables.end());
  const std::set<std::string> known(tables.begin(), tables.end());
  std::map<std::string, std::set<std::string>> needs;  // table -> tables it references
  for (const auto& [table, referenced] : references) {
    if (table != referenced && known.count(table) != 0 && known.count(referenced) != 0) {
      needs[table].insert(referenced);
    }
  }
  std::vector<std::string> out;
  std::set<std::string> placed;
  while (out.size() < tables.size()) {
    bool progress = false;
    for (const std::string& t : tables) {
      if (placed.count(t) != 0) continue;
      const std::set<std::string>& deps = needs[t];
      if (std::all_of(deps.begin(), deps.end(), [&](const std::string& d) { return placed.count(d) != 0; })) {
        out.push_back(t);
        placed.insert(t);
        progress = true;
      }
    }
    if (!progress) return InternalError("tables reference each other in a cycle; cannot order them for a restore");
  }
  return out;
}

std::string QuoteIdentifier(const std::string& name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

Status TargetNotEmptyError(const std::string& table) {
  return FailedPreconditionError("the target database is not empty (table " + table +
                                 " has rows); restore into an empty database, before the first "
                                 "`keyctl serve` on it");
}

}  // namespace concierge::store
