// `keyctl audit ...`: the tamper-evident audit log from the operator's side
// (docs/audit.md).
//
//   entries     list records through the REST API (filters, paging)
//   checkpoint  sign a checkpoint now (or --latest: show the newest), and
//               optionally save note, signature and key for `openssl dgst`
//   verify      recompute the whole tree and check every checkpoint's
//               signature and root; names the first bad entry. Sources: the
//               server (default), --db FILE (a SQLite database, opened
//               read-only) or --export FILE (from `audit export`).
//   export      write keys, checkpoints and entries as JSON lines
//
// Trust: checkpoints are verified with the audit public key. Without
// --public-key that key comes from the same source as the log, which proves
// the log unchanged since it was signed only if the key is the one you
// expect; keep a copy of the key (and of checkpoints) outside the service.
#include <algorithm>
#include <fstream>
#include <iostream>

#include "audit/entry.h"
#include "audit/verify.h"
#include "cli/cli_internal.h"
#include "core/audit_log.h"
#include "crypto/encoding.h"
#include "crypto/keys.h"
#include "store/sqlite/sqlite_ledger.h"

namespace concierge::cli {
namespace {

constexpr char kExportFormat[] = "keyctl-audit-export/v1";
constexpr int kPage = 1000;

using client::QueryEscape;

template <typename T>
T OrFail(StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Fail(what + ": " + v.status().message());
  return *std::move(v);
}

// Where a log comes from. Keys and checkpoints are read up front (they are
// few); entries are streamed in index order.
class AuditSource {
 public:
  virtual ~AuditSource() = default;
  virtual std::string Name() const = 0;
  virtual std::vector<AuditKeyRecord> Keys() = 0;
  virtual std::vector<AuditCheckpointRecord> Checkpoints() = 0;
  // Calls `each` per stored entry until it returns false. An entry that
  // cannot be parsed arrives as an error status.
  virtual void ForEachEntry(const std::function<bool(StatusOr<AuditRecord>)>& each) = 0;
};

class ServerSource : public AuditSource {
 public:
  explicit ServerSource(const Globals& g) : api_(g) {
    json who = api_.CallJson("GET", "/api/v1/whoami");
    if (who.contains("tenant_id") && who["tenant_id"].is_string()) {
      Fail("this API key is scoped to tenant '" + who["tenant_id"].get<std::string>() +
           "' and sees only that tenant's entries; verifying the whole log needs an unscoped key "
           "(admin, security-officer or auditor)");
    }
  }
  std::string Name() const override { return "the server"; }
  std::vector<AuditKeyRecord> Keys() override {
    json r = api_.CallJson("GET", "/api/v1/audit/keys");
    std::vector<AuditKeyRecord> out;
    for (const json& k : r["keys"]) out.push_back(OrFail(audit::AuditKeyFromJson(k), "server sent a bad key"));
    return out;
  }
  std::vector<AuditCheckpointRecord> Checkpoints() override {
    std::vector<AuditCheckpointRecord> out;
    int64_t after = 0;
    for (;;) {
      json r = api_.CallJson("GET", "/api/v1/audit/checkpoints?limit=1000&after=" + std::to_string(after));
      for (const json& c : r["checkpoints"]) {
        out.push_back(OrFail(audit::CheckpointFromJson(c), "server sent a bad checkpoint"));
      }
      if (r["next_cursor"].is_null()) return out;
      after = r["next_cursor"].get<int64_t>();
    }
  }
  void ForEachEntry(const std::function<bool(StatusOr<AuditRecord>)>& each) override {
    int64_t after = -1;
    for (;;) {
      json r = api_.CallJson("GET", "/api/v1/audit/entries?limit=1000&after=" + std::to_string(after));
      for (const json& e : r["entries"]) {
        if (!each(audit::RecordFromJson(e))) return;
      }
      if (r["next_cursor"].is_null()) return;
      after = r["next_cursor"].get<int64_t>();
    }
  }

 private:
  Api api_;
};

class DbSource : public AuditSource {
 public:
  explicit DbSource(const std::string& path) : path_(path) {
    ledger_ = OrFail(store::SqliteLedger::Open(path, store::SqliteLedgerOptions{.read_only = true}),
                     "cannot open " + path);
  }
  std::string Name() const override { return "database " + path_; }
  std::vector<AuditKeyRecord> Keys() override { return OrFail(ledger_->ListAuditKeys(), "reading " + path_); }
  std::vector<AuditCheckpointRecord> Checkpoints() override {
    std::vector<AuditCheckpointRecord> out;
    int64_t after = 0;
    for (;;) {
      auto page = OrFail(ledger_->ListAuditCheckpoints(after, kPage), "reading " + path_);
      out.insert(out.end(), page.begin(), page.end());
      if (page.size() < static_cast<size_t>(kPage)) return out;
      after = page.back().id;
    }
  }
  void ForEachEntry(const std::function<bool(StatusOr<AuditRecord>)>& each) override {
    AuditQuery q;
    q.limit = kPage;
    for (;;) {
      AuditPage page = OrFail(ledger_->ListAudit(q), "reading " + path_);
      for (AuditRecord& r : page.entries) {
        if (!each(std::move(r))) return;
      }
      if (page.next_cursor < 0) return;
      q.after_index = page.next_cursor;
    }
  }

 private:
  std::string path_;
  std::unique_ptr<store::SqliteLedger> ledger_;
};

// JSON lines: a header, then "key", "checkpoint" and "entry" lines. Read
// twice: keys and checkpoints first, then entries streamed, so an export of
// any size verifies in bounded memory.
class ExportSource : public AuditSource {
 public:
  explicit ExportSource(const std::string& path) : path_(path) {
    ForEachLine([&](size_t line_no, const std::string& type, const json& j) {
      if (line_no == 1) {
        if (type != "header" || j.value("format", "") != kExportFormat) {
          Fail(path_ + " is not a keyctl audit export (" + kExportFormat + ")");
        }
      } else if (type == "key") {
        keys_.push_back(OrFail(audit::AuditKeyFromJson(j), path_ + ":" + std::to_string(line_no)));
      } else if (type == "checkpoint") {
        checkpoints_.push_back(OrFail(audit::CheckpointFromJson(j), path_ + ":" + std::to_string(line_no)));
      }
      return true;
    });
  }
  std::string Name() const override { return "export " + path_; }
  std::vector<AuditKeyRecord> Keys() override { return keys_; }
  std::vector<AuditCheckpointRecord> Checkpoints() override { return checkpoints_; }
  void ForEachEntry(const std::function<bool(StatusOr<AuditRecord>)>& each) override {
    ForEachLine([&](size_t line_no, const std::string& type, const json& j) {
      if (line_no == 1 || type == "key" || type == "checkpoint") return true;
      // Anything else stands where an entry should be: the verifier reports
      // an unparsable line at its position.
      return each(type == "entry" ? audit::RecordFromJson(j)
                                  : StatusOr<AuditRecord>(InvalidArgumentError(
                                        "line " + std::to_string(line_no) + " is not an entry")));
    });
  }

 private:
  void ForEachLine(const std::function<bool(size_t, const std::string&, const json&)>& each) {
    std::ifstream in(path_);
    if (!in) Fail("cannot read " + path_);
    std::string line;
    for (size_t line_no = 1; std::getline(in, line); ++line_no) {
      if (line.empty()) continue;
      json j = json::parse(line, nullptr, false);
      const std::string type =
          j.is_object() && j.contains("type") && j["type"].is_string() ? j["type"].get<std::string>() : "";
      if (!each(line_no, type, j)) return;
    }
  }

  std::string path_;
  std::vector<AuditKeyRecord> keys_;
  std::vector<AuditCheckpointRecord> checkpoints_;
};

struct VerifyFlags {
  std::string db, export_file, public_key, origin;
};

std::unique_ptr<AuditSource> OpenSource(const Globals& g, const std::string& db, const std::string& export_file) {
  if (!db.empty() && !export_file.empty()) Fail("give at most one of --db and --export", kExitUsage);
  if (!db.empty()) return std::make_unique<DbSource>(db);
  if (!export_file.empty()) return std::make_unique<ExportSource>(export_file);
  return std::make_unique<ServerSource>(g);
}

int Verify(const Globals& g, const VerifyFlags& f) {
  std::unique_ptr<AuditSource> source = OpenSource(g, f.db, f.export_file);
  std::vector<AuditKeyRecord> keys = source->Keys();
  std::string origin = f.origin;
  if (origin.empty() && !keys.empty()) origin = keys.back().origin;
  std::string trust = "the audit key recorded in " + source->Name() +
                      " (pass --public-key with a copy you hold to rule out a replaced key)";
  std::vector<AuditCheckpointRecord> stored = source->Checkpoints();
  if (!f.public_key.empty()) {
    // Every checkpoint must verify with the key the operator holds, whatever
    // key the source claims signed it.
    const std::string pem = ReadFileOrFail(f.public_key);
    if (!crypto::PublicKeyFromPem(pem).ok()) Fail(f.public_key + " is not a PEM public key", kExitUsage);
    std::vector<AuditKeyRecord> trusted;
    for (const AuditCheckpointRecord& c : stored) {
      if (std::any_of(trusted.begin(), trusted.end(), [&](const auto& k) { return k.key_id == c.key_id; })) continue;
      trusted.push_back(AuditKeyRecord{c.key_id, origin, "ES256", "", "", pem, {}});
    }
    keys = std::move(trusted);
    trust = "the public key in " + f.public_key;
  }
  std::vector<audit::Checkpoint> checkpoints;
  for (const AuditCheckpointRecord& c : stored) {
    StatusOr<audit::Checkpoint> cp = core::VerifyStoredCheckpoint(c, keys);
    if (!cp.ok()) Fail("audit log verification failed: " + cp.status().message() + " (checked with " + trust + ")");
    checkpoints.push_back(*cp);
  }
  if (origin.empty() && !checkpoints.empty()) origin = checkpoints.front().origin;

  audit::RecordVerifier verifier(checkpoints, origin);
  const bool check_leaf = true;  // every source carries the stored leaf hash
  source->ForEachEntry([&](StatusOr<AuditRecord> r) {
    if (!r.ok()) {
      verifier.AddUnreadable(r.status().message());
      return false;
    }
    return verifier.Add(*r, check_leaf);
  });
  audit::LogVerification v = verifier.Finish();
  json out = {{"ok", v.ok()},
              {"source", source->Name()},
              {"entries", v.entry_count},
              {"checkpoints", checkpoints.size()},
              {"verified_size", v.verified_size},
              {"unanchored_entries", v.unanchored_entries},
              {"trusted_key", trust}};
  if (!v.ok()) {
    out["message"] = v.message;
    if (v.first_bad_index) {
      out["first_bad_index"] = *v.first_bad_index;
      out["bad_range_end"] = v.bad_range_end;
    }
  }
  Print(g, out, [&] {
    if (v.ok()) {
      std::cout << "audit log OK: " << v.entry_count << " entries, " << checkpoints.size()
                << " checkpoint(s) (all signatures valid, checked with " << trust << ")\n"
                << "entries 0.." << (v.verified_size == 0 ? std::string("-") : std::to_string(v.verified_size - 1))
                << " match the latest checkpoint; " << v.unanchored_entries
                << " later entries are not covered by a checkpoint yet\n";
    } else {
      std::cout << "audit log FAILED verification (" << source->Name() << ")\n";
      if (v.first_bad_index) {
        std::cout << "first bad entry: " << *v.first_bad_index;
        if (v.bad_range_end > *v.first_bad_index + 1) std::cout << " (somewhere in [" << *v.first_bad_index << ", " << v.bad_range_end << "))";
        std::cout << "\n";
      }
    }
  });
  if (!v.ok()) Fail("audit log verification failed: " + v.message);
  return 0;
}

int Export(const Globals& g, const std::string& db, const std::string& out_file) {
  std::unique_ptr<AuditSource> source = OpenSource(g, db, "");
  std::ofstream out(out_file, std::ios::trunc);
  if (!out) Fail("cannot write " + out_file);
  std::vector<AuditKeyRecord> keys = source->Keys();
  std::vector<AuditCheckpointRecord> checkpoints = source->Checkpoints();
  json header = {{"type", "header"},
                 {"format", kExportFormat},
                 {"source", source->Name()},
                 {"origin", keys.empty() ? "" : keys.back().origin}};
  out << header.dump() << "\n";
  for (const AuditKeyRecord& k : keys) {
    json j = audit::AuditKeyToJson(k);
    j["type"] = "key";
    out << j.dump() << "\n";
  }
  for (const AuditCheckpointRecord& c : checkpoints) {
    json j = audit::CheckpointToJson(c);
    j["type"] = "checkpoint";
    out << j.dump() << "\n";
  }
  int64_t entries = 0;
  std::string bad;
  source->ForEachEntry([&](StatusOr<AuditRecord> r) {
    if (!r.ok()) {
      bad = r.status().message();
      return false;
    }
    json j = audit::RecordToJson(*r);
    j["type"] = "entry";
    out << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    ++entries;
    return true;
  });
  out.close();
  if (!out) Fail("cannot write " + out_file);
  if (!bad.empty()) Fail("export stopped at entry " + std::to_string(entries) + ": " + bad);
  json summary = {{"out", out_file}, {"keys", keys.size()}, {"checkpoints", checkpoints.size()}, {"entries", entries}};
  Print(g, summary, [&] {
    std::cout << "exported " << entries << " entries, " << checkpoints.size() << " checkpoint(s) and " << keys.size()
              << " key(s) to " << out_file << "\n";
  });
  return 0;
}

}  // namespace

void AddAuditCommands(CommandContext& ctx) {
  CLI::App* audit = ctx.app.add_subcommand("audit", "the tamper-evident audit log");
  audit->require_subcommand(1);
  Globals& g = ctx.g;
  std::function<int()>& action = ctx.action;

  struct EntryFlags {
    std::string tenant, actor, action, from, to;
    int64_t after = -1;
    int limit = 100;
    bool all = false;
  };
  auto ef = std::make_shared<EntryFlags>();
  CLI::App* entries = audit->add_subcommand("entries", "list audit entries (oldest first)");
  entries->add_option("--tenant-id", ef->tenant, "only this tenant's entries");
  entries->add_option("--actor", ef->actor, "only entries by this API key id");
  entries->add_option("--action", ef->action, "only this action, e.g. policy.update or sign.digest");
  entries->add_option("--from", ef->from, "RFC 3339 start time (inclusive)");
  entries->add_option("--to", ef->to, "RFC 3339 end time (exclusive)");
  entries->add_option("--after", ef->after, "cursor: entries after this index");
  entries->add_option("--limit", ef->limit, "entries per page (1-1000)")->check(CLI::Range(1, 1000));
  entries->add_flag("--all", ef->all, "follow the cursor to the end");
  entries->callback([ef, &g, &action] {
    action = [ef, &g] {
      Api api(g);
      json all = json::array();
      int64_t cursor = ef->after;
      for (;;) {
        std::string q = "?limit=" + std::to_string(ef->limit) + "&after=" + std::to_string(cursor);
        if (!ef->tenant.empty()) q += "&tenant=" + QueryEscape(ef->tenant);
        if (!ef->actor.empty()) q += "&actor=" + QueryEscape(ef->actor);
        if (!ef->action.empty()) q += "&action=" + QueryEscape(ef->action);
        if (!ef->from.empty()) q += "&from=" + QueryEscape(ef->from);
        if (!ef->to.empty()) q += "&to=" + QueryEscape(ef->to);
        json page = api.CallJson("GET", "/api/v1/audit/entries" + q);
        for (auto& e : page["entries"]) all.push_back(e);
        if (page["next_cursor"].is_null()) break;
        if (!ef->all) {
          std::cerr << "more entries: --after " << page["next_cursor"].get<int64_t>() << " (or --all)\n";
          break;
        }
        cursor = page["next_cursor"].get<int64_t>();
      }
      Print(g, json{{"entries", all}}, [&] {
        PrintTable({"index", "time", "actor", "tenant_id", "action", "target", "outcome", "request_id"}, all);
      });
      return 0;
    };
  });

  struct CheckpointFlags {
    bool latest = false;
    std::string note_out, sig_out, key_out;
  };
  auto cf = std::make_shared<CheckpointFlags>();
  CLI::App* checkpoint = audit->add_subcommand("checkpoint", "sign a checkpoint of the log now (or show the latest)");
  checkpoint->add_flag("--latest", cf->latest, "show the newest checkpoint instead of signing one");
  checkpoint->add_option("--note-out", cf->note_out, "write the signed note (the exact signed bytes) here");
  checkpoint->add_option("--sig-out", cf->sig_out, "write the DER signature here");
  checkpoint->add_option("--key-out", cf->key_out, "write the audit public key (PEM) here");
  checkpoint->callback([cf, &g, &action] {
    action = [cf, &g] {
      Api api(g);
      json r = api.CallJson(cf->latest ? "GET" : "POST", "/api/v1/audit/checkpoint");
      auto cp = audit::CheckpointFromJson(r);
      if (!cp.ok()) Fail("server returned a malformed checkpoint: " + cp.status().message());
      if (!cf->note_out.empty()) WriteFileOrFail(cf->note_out, cp->note);
      if (!cf->sig_out.empty()) WriteFileOrFail(cf->sig_out, crypto::AsString(cp->signature));
      if (!cf->key_out.empty()) {
        if (!r.contains("key") || !r["key"].contains("public_key_pem")) Fail("server did not return the audit key");
        WriteFileOrFail(cf->key_out, r["key"]["public_key_pem"].get<std::string>());
      }
      Print(g, r, [&] { PrintObject(r); });
      return 0;
    };
  });

  auto vf = std::make_shared<VerifyFlags>();
  CLI::App* verify = audit->add_subcommand(
      "verify", "recompute the log and check every checkpoint; names the first bad entry");
  verify->add_option("--db", vf->db, "verify this SQLite database file offline (opened read-only)");
  verify->add_option("--export", vf->export_file, "verify a file written by `keyctl audit export`");
  verify->add_option("--public-key", vf->public_key, "audit public key (PEM) to check checkpoints with");
  verify->add_option("--origin", vf->origin, "expected log name (default: the one recorded with the key)");
  verify->callback([vf, &g, &action] { action = [vf, &g] { return Verify(g, *vf); }; });

  struct ExportFlags {
    std::string db, out;
  };
  auto xf = std::make_shared<ExportFlags>();
  CLI::App* exp = audit->add_subcommand("export", "write keys, checkpoints and entries as JSON lines");
  exp->add_option("--out", xf->out, "output file")->required();
  exp->add_option("--db", xf->db, "export from this SQLite database file instead of the server");
  exp->callback([xf, &g, &action] { action = [xf, &g] { return Export(g, xf->db, xf->out); }; });
}

}  // namespace concierge::cli
