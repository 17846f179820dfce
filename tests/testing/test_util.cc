#include "testing/test_util.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace concierge::testing {

TempDir::TempDir() : TempDir([] {
  const char* base = std::getenv("TMPDIR");
  return std::string(base && *base ? base : "/tmp");
}()) {}

TempDir::TempDir(const std::string& base) {
  std::string tmpl = base + "/concierge-test-XXXXXX";
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

CommandResult RunCommand(const std::string& command, const std::string& stdin_data) {
  TempDir dir;
  std::string in = dir.File("stdin");
  WriteFile(in, stdin_data);
  std::string full = "(" + command + ") < '" + in + "' 2>&1";
  CommandResult result;
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return result;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw std::runtime_error("cannot write " + path);
  f << content;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string ReadBootstrapToken(const std::string& data_dir) {
  std::string t = ReadFile(data_dir + "/bootstrap-admin.token");
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r')) t.pop_back();
  return t;
}

std::string SourceDir() {
  const char* s = std::getenv("CONCIERGE_SOURCE_DIR");
  return s && *s ? s : CONCIERGE_DEFAULT_SOURCE_DIR;
}

std::string BinaryDir() {
  const char* s = std::getenv("CONCIERGE_BINARY_DIR");
  return s && *s ? s : CONCIERGE_DEFAULT_BINARY_DIR;
}

std::string KeyctlBinary() { return BinaryDir() + "/bin/keyctl"; }

}  // namespace concierge::testing
