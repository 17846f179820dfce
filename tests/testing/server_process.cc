#include "testing/server_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

#include "testing/test_util.h"

namespace concierge::testing {

ServerProcess::~ServerProcess() {
  if (pid_ > 0) Kill(SIGKILL);
}

bool ServerProcess::Start(const std::string& data_dir, const std::vector<std::string>& extra_args,
                          const std::map<std::string, std::string>& env) {
  int fds[2];
  if (pipe(fds) != 0) {
    error_ = "pipe failed";
    return false;
  }
  std::string binary = KeyctlBinary();
  log_path_ = data_dir + ".serve.log";
  std::vector<std::string> argv = {binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir};
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    dup2(fds[1], STDOUT_FILENO);
    int log = open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (log >= 0) dup2(log, STDERR_FILENO);
    close(fds[0]);
    close(fds[1]);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    execv(binary.c_str(), args.data());
    _exit(127);
  }
  close(fds[1]);
  if (pid_ < 0) {
    close(fds[0]);
    error_ = "fork failed";
    return false;
  }
  // Read stdout until the "listening on" line; bounded by a deadline, not a sleep.
  std::string out;
  const std::string marker = "listening on ";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    char buf[512];
    ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // child closed stdout: exited
    out.append(buf, static_cast<size_t>(n));
    auto pos = out.find(marker);
    if (pos != std::string::npos) {
      auto end = out.find('\n', pos);
      if (end != std::string::npos) {
        url_ = out.substr(pos + marker.size(), end - pos - marker.size());
        out_fd_ = fds[0];  // kept open so later writes by the server never hit SIGPIPE
        return true;
      }
    }
  }
  close(fds[0]);
  error_ = "server did not report its address; output: " + out;
  try {
    error_ += "; log: " + ReadFile(log_path_);
  } catch (const std::exception&) {
  }
  Kill(SIGKILL);
  return false;
}

int ServerProcess::WaitForExit(int timeout_seconds) {
  if (pid_ <= 0) return -1;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  int status = 0;
  for (;;) {
    // Once its stdout is closed the child is exiting: wait for it outright.
    pid_t done = waitpid(pid_, &status, out_fd_ < 0 ? 0 : WNOHANG);
    if (done == pid_) break;
    if (done < 0 || std::chrono::steady_clock::now() >= deadline) return -1;
    // Block on the child's stdout instead of sleeping: it closes when the child dies.
    pollfd p{out_fd_, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[512];
    if (read(out_fd_, buf, sizeof buf) <= 0) {
      close(out_fd_);
      out_fd_ = -1;
    }
  }
  pid_ = -1;
  if (out_fd_ >= 0) {
    close(out_fd_);
    out_fd_ = -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void ServerProcess::Kill(int signal) {
  if (out_fd_ >= 0) {
    close(out_fd_);
    out_fd_ = -1;
  }
  if (pid_ <= 0) return;
  ::kill(pid_, signal);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

}  // namespace concierge::testing
