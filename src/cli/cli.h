// The keyctl command line: `keyctl serve` plus the operator CLI over the REST
// API. Parses with CLI11, prints tables (default) or JSON (--output json), and
// turns every failure into one readable line on stderr and a non-zero exit code.
#ifndef CONCIERGE_CLI_CLI_H_
#define CONCIERGE_CLI_CLI_H_

namespace concierge::cli {

// Exit codes: 0 ok; 1 error (API error, invalid signature, I/O); 2 usage error;
// 3 server unreachable.
int RunKeyctl(int argc, char** argv);

}  // namespace concierge::cli

#endif  // CONCIERGE_CLI_CLI_H_
