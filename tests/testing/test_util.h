// Helpers shared by tests: temp dirs, running commands (openssl CLI, keyctl),
// files. Not thread-safe unless stated.
#ifndef CONCIERGE_TESTS_TESTING_TEST_UTIL_H_
#define CONCIERGE_TESTS_TESTING_TEST_UTIL_H_

#include <string>

namespace concierge::testing {

// A fresh directory under $TMPDIR (or `base`), removed recursively on destruction.
class TempDir {
 public:
  TempDir();
  explicit TempDir(const std::string& base);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr interleaved
};

// Runs `command` through /bin/sh, feeding `stdin_data`. Thread-safe.
CommandResult RunCommand(const std::string& command, const std::string& stdin_data = "");

void WriteFile(const std::string& path, const std::string& content);
std::string ReadFile(const std::string& path);

// The bootstrap admin token `keyctl serve` wrote into a fresh data dir, without
// the trailing newline.
std::string ReadBootstrapToken(const std::string& data_dir);

// Project source/build dirs, from CONCIERGE_SOURCE_DIR/CONCIERGE_BINARY_DIR
// (set by ctest), falling back to the compile-time paths.
std::string SourceDir();
std::string BinaryDir();
// Path of the built keyctl binary.
std::string KeyctlBinary();

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTS_TESTING_TEST_UTIL_H_
