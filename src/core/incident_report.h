// Incident reports: what happened, who did what when, which keys were
// affected, how many ledger entries were re-signed and what still needs the
// client, plus references to the evidence (re-sign results download, CRL,
// rotation evidence). As JSON for machines and as one self-contained HTML page
// for people; the HTML escapes every value taken from the report. Pure
// functions over the Store; thread-safe.
#ifndef CONCIERGE_CORE_INCIDENT_REPORT_H_
#define CONCIERGE_CORE_INCIDENT_REPORT_H_

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "concierge/clock.h"
#include "concierge/status.h"
#include "concierge/store.h"

namespace concierge::core {

StatusOr<nlohmann::json> BuildIncidentReport(Store& store, const std::string& incident_id, TimePoint now);
std::string RenderIncidentReportHtml(const nlohmann::json& report);

}  // namespace concierge::core

#endif  // CONCIERGE_CORE_INCIDENT_REPORT_H_
