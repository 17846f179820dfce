#include "testing/pg_cluster.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

namespace concierge::testing {
namespace {

std::string FindBindir() {
  if (const char* env = std::getenv("CONCIERGE_PG_BINDIR"); env != nullptr && *env != '\0')
    return env;
  CommandResult r = RunCommand("pg_config --bindir");
  std::string dir = r.output;
  while (!dir.empty() && (dir.back() == '\n' || dir.back() == ' ')) dir.pop_back();
  if (r.exit_code == 0 && std::filesystem::exists(dir + "/initdb")) return dir;
  std::string best;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/usr/lib/postgresql", ec)) {
    const std::string candidate = e.path().string() + "/bin";
    if (std::filesystem::exists(candidate + "/initdb") && candidate > best) best = candidate;
  }
  return best;
}

// A port the OS just considered free on 127.0.0.1. Someone may take it before
// the server binds it; Start() then retries with another.
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

struct RunAs {
  bool drop = false;  // running as root: become `postgres`
  uid_t uid = 0;
  gid_t gid = 0;
};

// Who the server runs as; false when root and there is no postgres user.
bool ResolveUser(RunAs* who, std::string* error) {
  if (geteuid() != 0) return true;
  passwd* pw = getpwnam("postgres");
  if (pw == nullptr) {
    *error = "running as root, and there is no 'postgres' user to run initdb/postgres as";
    return false;
  }
  who->drop = true;
  who->uid = pw->pw_uid;
  who->gid = pw->pw_gid;
  return true;
}

// Forks and execs argv[0] with stdout/stderr appended to `log`, as `who`.
// With `die_with_parent` the child gets SIGQUIT (PostgreSQL's immediate
// shutdown) when the test process dies, so no server outlives a crashed test.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log, const RunAs& who,
            bool die_with_parent) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd >= 0) {
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
  }
  if (who.drop) {
    if (setgroups(0, nullptr) != 0 || setgid(who.gid) != 0 || setuid(who.uid) != 0) _exit(126);
  }
  // After the uid change: changing credentials clears the death signal.
  if (die_with_parent) {
    prctl(PR_SET_PDEATHSIG, SIGQUIT);
    if (getppid() != parent) _exit(125);  // the parent died already
  }
  execv(args[0], args.data());
  _exit(127);
}

int WaitExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace

PgCluster::~PgCluster() {
  if (pid_ > 0) Stop(/*immediate=*/true);
}

std::string PgCluster::Url(const std::string& db) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/" + db;
}

std::string PgCluster::Log() const {
  if (dir_ == nullptr) return std::string();
  try {
    return ReadFile(dir_->File("server.log"));
  } catch (const std::exception&) {
    return std::string();
  }
}

bool PgCluster::Start() {
  RunAs who;
  if (!ResolveUser(&who, &error_)) return false;
  bindir_ = FindBindir();
  if (bindir_.empty()) {
    error_ = "no PostgreSQL server binaries (initdb) found; install the 'postgresql' package";
    return false;
  }
  // As root the server runs as `postgres`, which must be able to reach the
  // directory: /tmp always is, $TMPDIR (e.g. under /root) may not be.
  dir_ = who.drop ? std::make_unique<TempDir>("/tmp") : std::make_unique<TempDir>();
  if (who.drop && chown(dir_->path().c_str(), who.uid, who.gid) != 0) {
    error_ = "cannot hand " + dir_->path() + " to the postgres user";
    return false;
  }
  const std::string log = dir_->File("initdb.log");
  pid_t initdb = Spawn({bindir_ + "/initdb", "-D", dir_->File("data"), "-U", "postgres",
                        "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"},
                       log, who, false);
  const int initdb_exit = initdb < 0 ? -1 : WaitExit(initdb);
  if (initdb_exit != 0) {
    std::string out;
    try {
      out = ReadFile(log);
    } catch (const std::exception&) {
    }
    error_ = bindir_ + "/initdb failed (exit code " + std::to_string(initdb_exit) +
             (initdb_exit == 127 ? ": cannot execute it" : "") + "): " + out;
    return false;
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = FreePort();
    if (port_ != 0 && Launch()) return true;
  }
  error_ = "postgres did not start: " + error_ + "\n" + Log();
  return false;
}

bool PgCluster::Restart() {
  if (pid_ > 0) return true;
  if (Launch()) return true;
  error_ = "postgres did not restart: " + error_ + "\n" + Log();
  return false;
}

bool PgCluster::Launch() {
  RunAs who;
  if (!ResolveUser(&who, &error_)) return false;
  pid_ = Spawn(
      {bindir_ + "/postgres", "-D", dir_->File("data"), "-p", std::to_string(port_), "-c",
       "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off", "-c",
       "shared_buffers=32MB", "-c", "max_connections=200", "-c", "log_min_messages=warning"},
      dir_->File("server.log"), who, true);
  if (pid_ < 0) {
    error_ = "fork failed";
    return false;
  }
  return WaitReady();
}

bool PgCluster::WaitReady() {
  const std::string conninfo = Url() + "?connect_timeout=2";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {  // exited: e.g. the port was taken
      pid_ = -1;
      error_ = "server exited during start-up";
      return false;
    }
    if (PQping(conninfo.c_str()) == PQPING_OK) return true;
    // Polling a process we just started; there is no event to wait on.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  error_ = "server not accepting connections after 60 s";
  Stop(true);
  return false;
}

bool PgCluster::Stop(bool immediate) {
  if (pid_ <= 0) return true;
  // SIGINT: fast shutdown; SIGQUIT: immediate shutdown.
  kill(pid_, immediate ? SIGQUIT : SIGINT);
  int status = 0;
  const bool ok = waitpid(pid_, &status, 0) == pid_;
  pid_ = -1;
  return ok;
}

std::string PgCluster::Exec(const std::string& sql) {
  PGconn* conn = PQconnectdb(Url().c_str());
  std::string err;
  if (PQstatus(conn) != CONNECTION_OK) {
    err = PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    const ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) err = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(conn);
  return err;
}

std::string PgCluster::NewDatabase(const std::string& name) {
  const std::string err = Exec("CREATE DATABASE " + name);
  if (!err.empty()) ADD_FAILURE() << "CREATE DATABASE " << name << ": " << err;
  return Url(name);
}

std::vector<std::vector<std::string>> PgQuery(const std::string& url, const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  PGconn* conn = PQconnectdb(url.c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    ADD_FAILURE() << PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql.c_str());
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
      for (int i = 0; i < PQntuples(r); ++i) {
        std::vector<std::string> row;
        for (int j = 0; j < PQnfields(r); ++j) row.push_back(PQgetvalue(r, i, j));
        out.push_back(std::move(row));
      }
    } else {
      ADD_FAILURE() << sql << ": " << PQresultErrorMessage(r);
    }
    PQclear(r);
  }
  PQfinish(conn);
  return out;
}

std::string PgCluster::FreshSchemaUrl() {
  if (!running()) ADD_FAILURE() << "the PostgreSQL test cluster is not running: " << error_;
  const std::string schema = "t" + std::to_string(++schemas_);
  const std::string err = Exec("CREATE SCHEMA " + schema);
  if (!err.empty()) ADD_FAILURE() << "CREATE SCHEMA " << schema << ": " << err;
  return Url() + "?options=-c%20search_path%3D" + schema;
}

// --- the per-binary environment ------------------------------------------------------

PgCluster& PgEnvironment::Cluster() {
  static PgCluster cluster;  // its destructor removes the directory at exit
  return cluster;
}

void PgEnvironment::SetUp() {
  const auto start = std::chrono::steady_clock::now();
  // Non-fatal on purpose: a fatal failure here would make gtest skip every
  // test; this way each one runs and fails, naming the cause.
  if (!Cluster().Start()) {
    ADD_FAILURE() << "cannot start PostgreSQL for the tests: " << Cluster().error();
    return;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("[ postgres ] cluster on port %d started in %.2f s\n", Cluster().port(), secs);
}

void PgEnvironment::TearDown() { Cluster().Stop(); }

}  // namespace concierge::testing
