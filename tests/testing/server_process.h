// ServerProcess: runs `keyctl serve` as a child process on a loopback port chosen
// by the OS, for tests that must crash the server (SIGKILL) or run the real
// binary. Not thread-safe.
#ifndef CONCIERGE_TESTS_TESTING_SERVER_PROCESS_H_
#define CONCIERGE_TESTS_TESTING_SERVER_PROCESS_H_

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

namespace concierge::testing {

class ServerProcess {
 public:
  ServerProcess() = default;
  ~ServerProcess();  // SIGKILLs a still-running child

  // Starts `keyctl serve --listen 127.0.0.1:0 --data-dir DIR [extra_args...]`
  // (with `env` added to the child's environment, e.g. a fault point) and waits
  // (bounded) for its "listening on" line. Returns false (with a reason in
  // error()) if the server exits or does not report its address in time.
  bool Start(const std::string& data_dir, const std::vector<std::string>& extra_args = {},
             const std::map<std::string, std::string>& env = {});
  bool running() const { return pid_ > 0; }
  void Kill(int signal);  // and reap
  // Waits up to `timeout_seconds` for the child to exit on its own and reaps
  // it. Returns its exit code, 128+N for a signal N, or -1 on timeout.
  int WaitForExit(int timeout_seconds);
  const std::string& url() const { return url_; }
  const std::string& error() const { return error_; }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string url_;
  std::string error_;
  std::string log_path_;
};

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTS_TESTING_SERVER_PROCESS_H_
