// The human-readable rotation statement (statement.html) of an evidence pack.
// Internal to src/evidence. Pure functions; thread-safe.
#ifndef CONCIERGE_EVIDENCE_STATEMENT_H_
#define CONCIERGE_EVIDENCE_STATEMENT_H_

#include <optional>
#include <string>
#include <string_view>

#include "crypto/encoding.h"
#include "evidence/evidence.h"

namespace concierge::evidence::internal {

// What the statement and the manifest say about the new certificate, read
// from its PEM (not taken from the caller) so both show what the file holds.
struct CertificateSummary {
  std::string subject;
  std::string issuer;
  std::string serial;
  TimePoint not_before{};
  TimePoint not_after{};
};

using crypto::HtmlEscape;

// A complete, self-contained HTML5 document (inline CSS, no scripts, no
// external references). Deterministic: depends only on its arguments.
std::string RenderStatement(const RotationEvidence& evidence,
                            const std::optional<CertificateSummary>& certificate);

}  // namespace concierge::evidence::internal

#endif  // CONCIERGE_EVIDENCE_STATEMENT_H_
