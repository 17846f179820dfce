// PgCluster: a throwaway PostgreSQL server for tests, in a temp dir on a free
// loopback port (initdb + the postgres server run directly as a child, so it
// dies with the test process: PR_SET_PDEATHSIG). Removed on destruction.
//
// initdb refuses to run as root; when the tests run as root (CI, containers)
// the cluster runs as the `postgres` system user (its temp dir, under /tmp
// then, is chowned to it). Otherwise it runs as the current user, in $TMPDIR. Only TCP on 127.0.0.1 is
// enabled (no Unix socket), with trust authentication for user "postgres".
//
// fsync is off: a test cluster only has to survive the server process dying
// (which loses nothing committed: the WAL is in the OS page cache), not the
// machine, and the shared build machine is spared thousands of fsyncs. The
// binaries come from CONCIERGE_PG_BINDIR, else `pg_config --bindir`, else
// /usr/lib/postgresql/<newest>/bin.
//
// Not thread-safe, except FreshSchemaUrl().
#ifndef CONCIERGE_TESTS_TESTING_PG_CLUSTER_H_
#define CONCIERGE_TESTS_TESTING_PG_CLUSTER_H_

#include <gtest/gtest.h>
#include <sys/types.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "testing/test_util.h"

namespace concierge::testing {

class PgCluster {
 public:
  PgCluster() = default;
  ~PgCluster();  // stops the server and removes the directory
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // initdb, then starts the server on a free port (retrying another port if
  // one is taken in between). false with a reason in error() on failure.
  bool Start();
  // Stops the server: fast (clients are disconnected, a checkpoint is
  // written) or immediate (like a crash: recovery runs at the next start).
  bool Stop(bool immediate = false);
  // Starts it again on the same port and data after Stop().
  bool Restart();
  bool running() const { return pid_ > 0; }

  int port() const { return port_; }
  // postgresql://postgres@127.0.0.1:PORT/DB (no password: trust auth).
  std::string Url(const std::string& db = "postgres") const;
  // A URL whose search_path is a new, empty schema in database "postgres":
  // an empty database for one store, at the cost of a CREATE SCHEMA.
  std::string FreshSchemaUrl();
  // Runs SQL as the superuser on database "postgres"; "" on success, else the error.
  std::string Exec(const std::string& sql);
  // CREATE DATABASE `name` (a test failure if that fails); returns its URL.
  std::string NewDatabase(const std::string& name);

  const std::string& error() const { return error_; }
  // The server's log (stderr), for failure messages.
  std::string Log() const;

 private:
  bool Launch();
  bool WaitReady();

  std::unique_ptr<TempDir> dir_;
  std::string bindir_;
  pid_t pid_ = -1;
  int port_ = 0;
  std::string error_;
  std::atomic<int> schemas_{0};
};

// The rows of a query on `url`, as text (a test failure, and no rows, if the
// connection or the query fails).
std::vector<std::vector<std::string>> PgQuery(const std::string& url, const std::string& sql);

// Restarts a stopped cluster when the scope ends, so a test that stops the
// shared cluster cannot leave it down for the next test, whatever fails.
class PgRestartGuard {
 public:
  explicit PgRestartGuard(PgCluster& cluster) : cluster_(cluster) {}
  ~PgRestartGuard() {
    if (!cluster_.running()) {
      EXPECT_TRUE(cluster_.Restart()) << cluster_.error();
    }
  }

 private:
  PgCluster& cluster_;
};

// One cluster for every test of a binary. Register it in one .cc of the test
// binary:
//   static ::testing::Environment* const kPg =
//       ::testing::AddGlobalTestEnvironment(new concierge::testing::PgEnvironment);
// and reach the cluster with PgEnvironment::Cluster(). If the cluster cannot
// start, SetUp records a failure and every test still runs and fails (none is
// skipped), so a machine without PostgreSQL cannot pass by accident.
class PgEnvironment : public ::testing::Environment {
 public:
  void SetUp() override;
  void TearDown() override;
  static PgCluster& Cluster();
};

}  // namespace concierge::testing

#endif  // CONCIERGE_TESTS_TESTING_PG_CLUSTER_H_
