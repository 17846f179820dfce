// `keyctl evidence ...`: Rotation Evidence Packs. `verify` is local and offline
// (no server needed): it checks every file's digest, the manifest signature and
// optionally that the evidence key is the one the operator trusts.
#include <iostream>

#include "cli/cli_internal.h"
#include "evidence/verify.h"

namespace concierge::cli {

void AddEvidenceCommands(CommandContext& ctx) {
  struct Options {
    std::string file;
    std::string trusted_key;
  };
  auto opts = std::make_shared<Options>();
  auto* evidence = ctx.app.add_subcommand("evidence", "Rotation Evidence Packs");
  evidence->require_subcommand(1);
  auto* verify = evidence->add_subcommand("verify", "verify an evidence pack offline (local; no server needed)");
  verify->add_option("file", opts->file, "the pack (.tar)")->required();
  verify->add_option("--trusted-key", opts->trusted_key,
                     "PEM public key the manifest must be signed by (the service's evidence key)");
  verify->callback([&ctx, opts] {
    ctx.action = [opts] { return evidence::RunEvidenceVerify(opts->file, opts->trusted_key, std::cout); };
  });
}

}  // namespace concierge::cli
