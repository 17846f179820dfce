// keyctl: `keyctl serve` runs the C2-Concierge server; every other subcommand is
// the operator CLI. All logic lives in the libraries so tests can link it.
#include "cli/cli.h"

int main(int argc, char** argv) { return concierge::cli::RunKeyctl(argc, argv); }
