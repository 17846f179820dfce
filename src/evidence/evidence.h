// Rotation Evidence Packs: the signed, offline-verifiable record of one key
// rotation (PRODUCT.md §5, docs/evidence.md).
//
// The rotation engine fills a RotationEvidence from its store records and
// calls BuildEvidencePack, which renders the pack's files, lists them with
// their sizes and SHA-256 in manifest.json and has the service's evidence key
// sign manifest.json through a KeyBackend (the private key never leaves the
// backend). PackToTar turns the result into a ustar archive.
//
// Pack files (sorted by name in the archive, all stamped with created_at):
//   policy.json          the policy body exactly as hashed (sha256 = policy hash)
//   keys.json            pre- and post-rotation key records and fingerprints
//   csr.pem, certificate.pem, chain.pem   when the rotation got that far
//   attestation.bin      only when the backend gave one
//   canary-results.csv   RFC 4180, CRLF line ends
//   statement.html       human-readable rotation statement
//   digests.txt          `sha256sum -c` lines for every other file
//   manifest.json        signed: metadata, file list, evidence public key
//   manifest.sig         signature over manifest.json's exact bytes
//
// Determinism: the same input and created_at give byte-identical files,
// except manifest.sig (and so its line in digests.txt) for evidence keys whose
// signatures are randomised (ECDSA in OpenSSL 3.0, RSA-PSS); Ed25519 packs are
// byte-identical archives.
//
// Functions are pure apart from the backend call and are thread-safe when the
// backend is (KeyBackend requires it). Nothing here touches the store.
#ifndef CONCIERGE_EVIDENCE_EVIDENCE_H_
#define CONCIERGE_EVIDENCE_EVIDENCE_H_

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "concierge/clock.h"
#include "concierge/key_backend.h"
#include "concierge/status.h"
#include "concierge/store.h"
#include "crypto/x509.h"
#include "evidence/archive.h"

namespace concierge::evidence {

inline constexpr char kFormatName[] = "c2-concierge/rotation-evidence";
inline constexpr int kFormatVersion = 1;

inline constexpr char kPolicyFile[] = "policy.json";
inline constexpr char kKeysFile[] = "keys.json";
inline constexpr char kCsrFile[] = "csr.pem";
inline constexpr char kCertificateFile[] = "certificate.pem";
inline constexpr char kChainFile[] = "chain.pem";
inline constexpr char kAttestationFile[] = "attestation.bin";
inline constexpr char kCanaryFile[] = "canary-results.csv";
inline constexpr char kStatementFile[] = "statement.html";
inline constexpr char kDigestsFile[] = "digests.txt";
inline constexpr char kManifestFile[] = "manifest.json";
inline constexpr char kSignatureFile[] = "manifest.sig";

// One canary signature: a fresh test digest or a re-signed ledger sample.
struct CanaryResult {
  int index = 0;
  std::string kind;           // "test" | "resample"
  std::string digest_hex;     // what was signed
  std::string signature_hex;  // what the new key returned
  bool verified = false;      // checked against the new certificate
  std::string detail;         // e.g. the ledger entry re-signed, or why it failed
};

// One phase of the rotation as the engine persisted it.
struct PhaseRecord {
  std::string phase;  // "prepare", "generate", "certificate", "canary", "cutover", ...
  TimePoint started_at{};
  std::optional<TimePoint> finished_at;
  std::string outcome;  // e.g. "ok", "failed", "skipped"
  std::string detail;
};

inline constexpr std::string_view kOutcomeCompleted = "completed";
inline constexpr std::string_view kOutcomeRolledBack = "rolled_back";
inline constexpr std::string_view kOutcomeAborted = "aborted";

// Everything a pack records. Store records are reused as they are; the
// builder checks their internal consistency (fingerprint = SHA-256 of the
// SPKI, policy hash = SHA-256 of the body) and rejects bad input with
// FieldError naming the field.
struct RotationEvidence {
  std::string rotation_id;
  std::string tenant_id;
  std::string outcome;  // kOutcomeCompleted | kOutcomeRolledBack | kOutcomeAborted
  TimePoint scheduled_at{};
  TimePoint started_at{};
  TimePoint finished_at{};
  std::string owner;
  std::string approver;  // empty when the policy needed no approval

  PolicyRecord policy;  // body_json is written verbatim as policy.json
  KeyRecord old_key;
  // Unset only for a rotation aborted before the new key was generated.
  std::optional<KeyRecord> new_key;

  // Required for a completed rotation; otherwise empty when not reached.
  // A completed rotation's certificate and CSR must carry the new key and
  // chain.pem must start with certificate.pem; for rolled-back and aborted
  // rotations a mismatch is recorded as it was (it may be why it failed).
  std::string csr_pem;
  std::string certificate_pem;
  std::string chain_pem;  // end-entity first, root last (CertificateRecord::chain_pem)

  std::optional<Bytes> attestation;  // e.g. the new key's attestation, as captured

  std::vector<CanaryResult> canary_results;
  std::vector<PhaseRecord> timeline;
  std::string notes;
};

// The rendered, not yet signed part of a pack: the content files and the
// rotation summary that goes into manifest.json under "rotation". Split from
// sealing so callers (and tests) can see exactly what gets signed.
struct EvidenceContent {
  nlohmann::json rotation;
  std::vector<PackFile> files;
};

// A finished pack: every file, sorted by name.
struct EvidencePack {
  TimePoint created_at{};
  std::vector<PackFile> files;

  // nullptr when the pack has no such file.
  const PackFile* Find(std::string_view name) const;
};

// Checks `evidence` and renders the content files.
StatusOr<EvidenceContent> RenderEvidence(const RotationEvidence& evidence);

// Adds digests.txt, manifest.json and manifest.sig. `evidence_key` signs
// manifest.json (SignMessageWithBackend: PureEdDSA for Ed25519, else the
// algorithm's digest); its public key, read from the backend, goes into the
// manifest, and the signature is checked against it before returning.
StatusOr<EvidencePack> SealEvidence(EvidenceContent content, const crypto::BackendKey& evidence_key,
                                    TimePoint created_at);

// RenderEvidence + SealEvidence.
StatusOr<EvidencePack> BuildEvidencePack(const RotationEvidence& evidence,
                                         const crypto::BackendKey& evidence_key, TimePoint created_at);

// The pack as a ustar archive (entries in file order, mtime = created_at).
StatusOr<Bytes> PackToTar(const EvidencePack& pack);
// PackToTar written to `path` (replaced atomically).
Status WritePackFile(const EvidencePack& pack, const std::string& path);

}  // namespace concierge::evidence

#endif  // CONCIERGE_EVIDENCE_EVIDENCE_H_
