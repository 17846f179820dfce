#include "evidence/statement.h"

#include <utility>
#include <vector>

namespace concierge::evidence::internal {
namespace {

using Row = std::pair<std::string, std::string>;

std::string Table(const std::vector<Row>& rows) {
  std::string out = "<table class=\"kv\">\n";
  for (const auto& [k, v] : rows) {
    out += "<tr><th>" + HtmlEscape(k) + "</th><td>" + HtmlEscape(v) + "</td></tr>\n";
  }
  return out + "</table>\n";
}

std::string OutcomeSentence(std::string_view outcome) {
  if (outcome == kOutcomeCompleted) return "The rotation completed: the new key is the tenant's active signing key.";
  if (outcome == kOutcomeRolledBack) {
    return "The rotation was rolled back: the previous key was restored as the active signing key.";
  }
  return "The rotation was aborted before cutover: the previous key stayed the active signing key.";
}

std::vector<Row> KeyRows(const KeyRecord& k) {
  return {{"Key id", k.key_id},
          {"Version", std::to_string(k.version)},
          {"Algorithm", k.algorithm},
          {"Provider", k.provider},
          {"Key URI", k.key_uri},
          {"State at export", k.state},
          {"SHA-256 fingerprint (SPKI)", k.fingerprint}};
}

std::string CanarySection(const std::vector<CanaryResult>& results) {
  int tests = 0, tests_ok = 0, resamples = 0, resamples_ok = 0;
  for (const CanaryResult& r : results) {
    int& total = r.kind == "test" ? tests : resamples;
    int& ok = r.kind == "test" ? tests_ok : resamples_ok;
    ++total;
    if (r.verified) ++ok;
  }
  std::string out = "<h2>Canary</h2>\n" +
                    Table({{"Test signatures verified", std::to_string(tests_ok) + " of " + std::to_string(tests)},
                           {"Re-signed ledger samples verified",
                            std::to_string(resamples_ok) + " of " + std::to_string(resamples)}});
  std::string failed;
  for (const CanaryResult& r : results) {
    if (r.verified) continue;
    failed += "<tr><td>" + std::to_string(r.index) + "</td><td>" + HtmlEscape(r.kind) + "</td><td>" +
              HtmlEscape(r.digest_hex) + "</td><td>" + HtmlEscape(r.detail) + "</td></tr>\n";
  }
  if (!failed.empty()) {
    out += "<p>Canary signatures that did not verify:</p>\n<table>\n"
           "<tr><th>Index</th><th>Kind</th><th>Digest</th><th>Detail</th></tr>\n" +
           failed + "</table>\n";
  }
  return out + "<p>Every canary signature is listed in <code>canary-results.csv</code>.</p>\n";
}

std::string TimelineSection(const std::vector<PhaseRecord>& timeline) {
  std::string out =
      "<h2>Timeline</h2>\n<table>\n<tr><th>Phase</th><th>Started</th><th>Finished</th><th>Outcome</th>"
      "<th>Detail</th></tr>\n";
  for (const PhaseRecord& p : timeline) {
    out += "<tr><td>" + HtmlEscape(p.phase) + "</td><td>" + HtmlEscape(FormatRfc3339(p.started_at)) +
           "</td><td>" + (p.finished_at ? HtmlEscape(FormatRfc3339(*p.finished_at)) : "-") + "</td><td>" +
           HtmlEscape(p.outcome) + "</td><td>" + HtmlEscape(p.detail) + "</td></tr>\n";
  }
  return out + "</table>\n";
}

}  // namespace

std::string RenderStatement(const RotationEvidence& e, const std::optional<CertificateSummary>& certificate) {
  const std::string title = "Key rotation statement: tenant " + e.tenant_id + ", rotation " + e.rotation_id;
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>" + HtmlEscape(title) +
      "</title>\n<style>\nbody{font-family:sans-serif;max-width:60em;margin:2em auto;color:#222}\n"
      "table{border-collapse:collapse;margin:0.5em 0 1.5em}\nth,td{border:1px solid #bbb;padding:0.3em "
      "0.6em;text-align:left;vertical-align:top;word-break:break-all}\ntable.kv th{width:16em;background:#f3f3f3}\n"
      "</style>\n</head>\n<body>\n<h1>" +
      HtmlEscape(title) + "</h1>\n<p>" + HtmlEscape(OutcomeSentence(e.outcome)) + "</p>\n";

  out += "<h2>Who and when</h2>\n" +
         Table({{"Tenant", e.tenant_id},
                {"Rotation id", e.rotation_id},
                {"Outcome", e.outcome},
                {"Owner", e.owner},
                {"Approved by", e.approver.empty() ? "no approval required" : e.approver},
                {"Scheduled for", FormatRfc3339(e.scheduled_at)},
                {"Started", FormatRfc3339(e.started_at)},
                {"Finished", FormatRfc3339(e.finished_at)}});

  out += "<h2>What changed</h2>\n<h3>Previous key</h3>\n" + Table(KeyRows(e.old_key));
  if (e.new_key) {
    out += "<h3>New key</h3>\n" + Table(KeyRows(*e.new_key));
  } else {
    out += "<p>No new key was generated.</p>\n";
  }
  if (certificate) {
    out += "<h3>New certificate</h3>\n" + Table({{"Subject", certificate->subject},
                                                  {"Issuer", certificate->issuer},
                                                  {"Serial", certificate->serial},
                                                  {"Valid from", FormatRfc3339(certificate->not_before)},
                                                  {"Valid until", FormatRfc3339(certificate->not_after)}});
  }
  out += "<h3>Policy</h3>\n" + Table({{"Policy version", std::to_string(e.policy.version)},
                                       {"Policy hash (SHA-256 of policy.json)", e.policy.policy_hash}});
  if (e.attestation) out += "<p>The backend's key attestation is included as <code>attestation.bin</code>.</p>\n";

  out += CanarySection(e.canary_results);
  out += TimelineSection(e.timeline);
  if (!e.notes.empty()) out += "<h2>Notes</h2>\n<pre>" + HtmlEscape(e.notes) + "</pre>\n";

  out +=
      "<h2>Integrity</h2>\n<p>Every file of this pack is listed with its size and SHA-256 in "
      "<code>manifest.json</code>, which the service's evidence key signed (<code>manifest.sig</code>). "
      "Check it offline with <code>keyctl evidence verify</code>, or by hand with tar, sha256sum and "
      "openssl as described in docs/evidence.md.</p>\n</body>\n</html>\n";
  return out;
}

}  // namespace concierge::evidence::internal
