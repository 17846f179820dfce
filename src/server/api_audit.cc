// REST routes of the tamper-evident audit log (docs/audit.md):
//
//   GET  /api/v1/audit/entries?tenant=&actor=&action=&from=&to=&after=&limit=
//   GET  /api/v1/audit/checkpoint            latest signed checkpoint + key
//   POST /api/v1/audit/checkpoint            sign one now (unscoped keys)
//   GET  /api/v1/audit/checkpoints?after=&limit=
//   GET  /api/v1/audit/keys
//   GET  /api/v1/audit/proof/inclusion?index=&size=
//   GET  /api/v1/audit/proof/consistency?from=&to=
//
// Who reads what: every role has audit:read, limited by the key's tenant
// scope. A tenant-scoped key sees only records whose tenant is its own (the
// filter is forced; asking for another tenant is 403), and gets inclusion
// proofs only for those records. Checkpoints, keys and consistency proofs
// are hashes of the whole log and reveal no record, so any audit reader may
// fetch them. Unscoped keys see everything, including records of no tenant
// (CA, unscoped API keys).
#include "audit/entry.h"
#include "crypto/encoding.h"
#include "server/api_internal.h"
#include "server/log.h"

namespace concierge::server {
namespace {

json HashJson(const AuditHash& h) { return crypto::HexEncode(audit::AsByteView(h)); }

json HashesJson(const std::vector<AuditHash>& hashes) {
  json out = json::array();
  for (const AuditHash& h : hashes) out.push_back(HashJson(h));
  return out;
}

Status NoAuditLog() { return UnavailableError("the audit log is not configured on this server"); }

}  // namespace

std::optional<HttpResponse> Api::DispatchAudit(Call& call, const std::vector<std::string>& s) {
  if (s.size() < 3 || s[2] != "audit") return std::nullopt;
  const std::string& m = call.req.method;
  auto route = [&](std::initializer_list<const char*> rest) {
    if (s.size() != 3 + rest.size()) return false;
    size_t i = 3;
    for (const char* r : rest) {
      if (s[i++] != r) return false;
    }
    return true;
  };
  auto method_not_allowed = [&](const char* allowed) { return MethodNotAllowed(call.req, allowed); };
  if (d_.audit == nullptr) return ErrorResponse(NoAuditLog(), call.request_id);
  if (route({"entries"})) return m == "GET" ? AuditEntries(call) : method_not_allowed("GET");
  if (route({"checkpoint"})) {
    if (m == "GET") return AuditCheckpoint(call);
    if (m == "POST") return CreateAuditCheckpoint(call);
    return method_not_allowed("GET, POST");
  }
  if (route({"checkpoints"})) return m == "GET" ? AuditCheckpoints(call) : method_not_allowed("GET");
  if (route({"keys"})) return m == "GET" ? AuditKeys(call) : method_not_allowed("GET");
  if (route({"proof", "inclusion"})) return m == "GET" ? AuditInclusionProof(call) : method_not_allowed("GET");
  if (route({"proof", "consistency"})) return m == "GET" ? AuditConsistencyProof(call) : method_not_allowed("GET");
  return ErrorResponse(NotFoundError("no route for " + call.req.path), call.request_id);
}

HttpResponse Api::AuditEntries(Call& call) {
  // Any audit reader, within its own scope ("" for unscoped keys).
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  AuditQuery q;
  q.tenant_id = QueryParam(call.req, "tenant");
  if (!q.tenant_id.empty()) API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, q.tenant_id));
  if (!call.principal->tenant_id.empty()) q.tenant_id = call.principal->tenant_id;
  q.actor = QueryParam(call.req, "actor");
  q.action = QueryParam(call.req, "action");
  int64_t limit = 100;
  API_RETURN_IF_ERROR(call, IntParam(call.req, "after", -1, INT64_MAX, &q.after_index));
  API_RETURN_IF_ERROR(call, IntParam(call.req, "limit", 1, 1000, &limit));
  q.limit = static_cast<int>(limit);
  API_RETURN_IF_ERROR(call, TimeParam(call.req, "from", &q.from));
  API_RETURN_IF_ERROR(call, TimeParam(call.req, "to", &q.to));
  API_ASSIGN_OR_RETURN(call, AuditPage page, d_.audit->store().ListAudit(q));
  json entries = json::array();
  for (const AuditRecord& r : page.entries) entries.push_back(audit::RecordToJson(r));
  return JsonResponse(200, {{"entries", entries},
                            {"tree_size", d_.audit->head().size},
                            {"next_cursor", page.next_cursor >= 0 ? json(page.next_cursor) : json(nullptr)}});
}

HttpResponse Api::AuditCheckpoint(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  API_ASSIGN_OR_RETURN(call, auto latest, d_.audit->Latest());
  if (!latest) {
    return ErrorResponse(NotFoundError("no checkpoint has been signed yet; POST /api/v1/audit/checkpoint"),
                         call.request_id);
  }
  API_ASSIGN_OR_RETURN(call, auto keys, d_.audit->store().ListAuditKeys());
  json out = audit::CheckpointToJson(*latest);
  for (const AuditKeyRecord& k : keys) {
    if (k.key_id == latest->key_id) out["key"] = audit::AuditKeyToJson(k);
  }
  out["log_size"] = d_.audit->head().size;
  return JsonResponse(200, out);
}

HttpResponse Api::CreateAuditCheckpoint(Call& call) {
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditCheckpoint, ""));
  API_ASSIGN_OR_RETURN(call, AuditCheckpointRecord cp, d_.audit->Checkpoint());
  Log(LogLevel::kInfo, "audit_checkpoint",
      {{"tree_size", cp.tree_size}, {"id", cp.id}, {"actor", call.principal->id}, {"request_id", call.request_id}});
  json out = audit::CheckpointToJson(cp);
  out["key"] = audit::AuditKeyToJson(d_.audit->key());
  return JsonResponse(200, out);
}

HttpResponse Api::AuditCheckpoints(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  int64_t after = 0;
  int64_t limit = 100;
  API_RETURN_IF_ERROR(call, IntParam(call.req, "after", 0, INT64_MAX, &after));
  API_RETURN_IF_ERROR(call, IntParam(call.req, "limit", 1, 1000, &limit));
  API_ASSIGN_OR_RETURN(call, auto checkpoints,
                       d_.audit->store().ListAuditCheckpoints(after, static_cast<int>(limit)));
  json out = json::array();
  for (const AuditCheckpointRecord& c : checkpoints) out.push_back(audit::CheckpointToJson(c));
  const bool full = checkpoints.size() == static_cast<size_t>(limit);
  return JsonResponse(200, {{"checkpoints", out},
                            {"next_cursor", full ? json(checkpoints.back().id) : json(nullptr)}});
}

HttpResponse Api::AuditKeys(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  API_ASSIGN_OR_RETURN(call, auto keys, d_.audit->store().ListAuditKeys());
  json out = json::array();
  for (const AuditKeyRecord& k : keys) out.push_back(audit::AuditKeyToJson(k));
  return JsonResponse(200, {{"keys", out}, {"origin", d_.audit->key().origin}});
}

HttpResponse Api::AuditInclusionProof(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  int64_t index = -1;
  int64_t size = -1;
  API_RETURN_IF_ERROR(call, IntParam(call.req, "index", 0, INT64_MAX, &index));
  API_RETURN_IF_ERROR(call, IntParam(call.req, "size", 1, INT64_MAX, &size));
  if (index < 0) return ErrorResponse(FieldError("index", "index is required"), call.request_id);
  if (size < 0) size = static_cast<int64_t>(d_.audit->head().size);
  if (!call.principal->tenant_id.empty()) {
    // A scoped key proves inclusion of its own tenant's records only.
    API_ASSIGN_OR_RETURN(call, AuditPage page,
                         d_.audit->store().ListAudit(AuditQuery{.after_index = index - 1, .limit = 1}));
    if (page.entries.empty() || page.entries[0].index != index ||
        page.entries[0].tenant_id != call.principal->tenant_id) {
      return ErrorResponse(PermissionDeniedError("API key is scoped to tenant '" + call.principal->tenant_id +
                                                 "' and entry " + std::to_string(index) + " is not one of its"),
                           call.request_id);
    }
  }
  API_ASSIGN_OR_RETURN(call, core::InclusionProofResult proof, d_.audit->InclusionProof(index, size));
  return JsonResponse(200, {{"index", proof.index},
                            {"tree_size", proof.tree_size},
                            {"leaf_hash", HashJson(proof.leaf_hash)},
                            {"root_hash", HashJson(proof.root_hash)},
                            {"proof", HashesJson(proof.path)}});
}

HttpResponse Api::AuditConsistencyProof(Call& call) {
  API_RETURN_IF_ERROR(call, call.Authenticate(*this));
  API_RETURN_IF_ERROR(call, call.Require(*this, Permission::kAuditRead, call.principal->tenant_id));
  int64_t from = -1;
  int64_t to = -1;
  API_RETURN_IF_ERROR(call, IntParam(call.req, "from", 0, INT64_MAX, &from));
  API_RETURN_IF_ERROR(call, IntParam(call.req, "to", 0, INT64_MAX, &to));
  if (from < 0) return ErrorResponse(FieldError("from", "from is required"), call.request_id);
  if (to < 0) to = static_cast<int64_t>(d_.audit->head().size);
  API_ASSIGN_OR_RETURN(call, core::ConsistencyProofResult proof, d_.audit->ConsistencyProof(from, to));
  return JsonResponse(200, {{"from", proof.from_size},
                            {"to", proof.to_size},
                            {"from_root", HashJson(proof.from_root)},
                            {"to_root", HashJson(proof.to_root)},
                            {"proof", HashesJson(proof.path)}});
}

StatusOr<AuditedChange> Api::BeginChange(Call& call, std::string action, std::string tenant, std::string target,
                                         json detail) {
  if (d_.audit == nullptr) return NoAuditLog().Annotate("nothing was changed");
  AuditedChange change;
  change.log = d_.audit;
  change.event.actor = call.principal ? call.principal->id : "";
  change.event.tenant_id = std::move(tenant);
  change.event.action = std::move(action);
  change.event.target = std::move(target);
  change.event.request_id = call.request_id;
  change.event.client_address = call.req.remote_address;
  change.event.detail = std::move(detail);
  StatusOr<int64_t> attempt = d_.audit->Begin(change.event);
  if (!attempt.ok()) {
    Log(LogLevel::kError, "audit_attempt_not_recorded",
        {{"action", change.event.action}, {"request_id", call.request_id}, {"error", attempt.status().message()}});
    if (attempt.status().code() == StatusCode::kInvalidArgument) return attempt.status();
    return UnavailableError("the audit log cannot record this change, so nothing was changed: " +
                            attempt.status().message());
  }
  change.attempt_index = *attempt;
  return change;
}

}  // namespace concierge::server
