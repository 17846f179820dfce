// Offline verification of a Rotation Evidence Pack (the `keyctl evidence
// verify` command). Needs nothing but the archive and, optionally, the
// evidence public key the reader trusts.
//
// What is proven: manifest.sig is a valid signature over manifest.json by the
// key named in the manifest (and, with a trusted key, that this is the
// service's evidence key); every file the manifest lists is present with its
// size and SHA-256; no other file is present; digests.txt is exactly what the
// manifest implies; and the contents agree with the signed metadata (policy
// hash, key fingerprints, certificate and CSR carry the new key).
//
// Attribution: a single altered byte is named precisely. A content file is
// caught by its manifest digest; digests.txt by comparison with the manifest;
// when the signature fails, digests.txt (which lists manifest.json and
// manifest.sig) tells which of the two changed. When digests.txt cannot tell
// (both or neither changed), the problem is reported on manifest.sig.
//
// Without a trusted key the signature proves integrity, not origin: anyone
// can build a self-consistent pack with their own key. The report says so.
//
// Pure functions apart from RunEvidenceVerify's file reads; thread-safe.
#ifndef CONCIERGE_EVIDENCE_VERIFY_H_
#define CONCIERGE_EVIDENCE_VERIFY_H_

#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/key_backend.h"

namespace concierge::evidence {

enum class ProblemKind {
  kUnreadable,    // not a tar archive, or damaged (exit code 2)
  kMissing,       // a file the pack must hold is not there
  kUnexpected,    // a file or entry the manifest does not list
  kAltered,       // contents differ from what the manifest (or digests.txt) records
  kBadSignature,  // manifest.sig does not verify over manifest.json
  kUntrustedKey,  // signed, but not by the trusted evidence key
  kMalformed,     // signed manifest.json is not a pack manifest we understand
  kInconsistent,  // intact files that contradict the signed metadata
};

// "unreadable", "missing", "unexpected", "altered", "bad-signature",
// "untrusted-key", "malformed", "inconsistent".
std::string_view ProblemKindName(ProblemKind kind);

struct Problem {
  ProblemKind kind;
  std::string file;  // the pack file at fault; empty when none (e.g. unreadable archive)
  std::string message;
};

enum class CheckResult { kPass, kWarn, kFail };

// One printed line: "<subject>: <detail>".
struct CheckLine {
  CheckResult result;
  std::string subject;
  std::string detail;
};

struct VerifyReport {
  std::vector<CheckLine> lines;   // every check, in the order run
  std::vector<Problem> problems;  // the failures among them

  // From the manifest, once its signature verified; empty otherwise.
  std::string rotation_id;
  std::string tenant_id;
  std::string outcome;
  std::string created_at;
  std::string evidence_key_fingerprint;
  bool evidence_key_trusted = false;  // matched the trusted key given

  bool ok() const { return problems.empty(); }
  bool unreadable() const;
  // 0 valid, 1 tampered or invalid, 2 unreadable.
  int ExitCode() const;
  // One line: "VALID: ..." / "INVALID: ..." / "UNREADABLE: ...".
  std::string Verdict() const;
};

// Verifies a pack archive. `trusted_key_pem` is an SPKI PEM public key; when
// given, a pack signed by any other key fails with kUntrustedKey.
VerifyReport VerifyEvidencePack(ByteView archive, std::optional<std::string_view> trusted_key_pem = std::nullopt);

// `keyctl evidence verify FILE [--trusted-key PEM]`: prints one line per check
// and a final verdict line to `out`; returns the exit code (0 valid, 1
// tampered/invalid, 2 unreadable: the pack or the trusted key file cannot be
// read or parsed). An empty `trusted_key_path` means no trusted key.
int RunEvidenceVerify(const std::string& path, const std::string& trusted_key_path, std::ostream& out);

}  // namespace concierge::evidence

#endif  // CONCIERGE_EVIDENCE_VERIFY_H_
