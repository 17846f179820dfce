#include "evidence/archive.h"

#include <gtest/gtest.h>

#include "crypto/encoding.h"
#include "testing/test_util.h"

namespace concierge::evidence {
namespace {

using ::concierge::testing::RunCommand;
using ::concierge::testing::TempDir;
using ::concierge::testing::WriteFile;

PackFile Text(const std::string& name, const std::string& text) { return {name, Bytes(text.begin(), text.end())}; }

TimePoint At(const std::string& rfc3339) {
  TimePoint t{};
  EXPECT_TRUE(ParseRfc3339(rfc3339, &t));
  return t;
}

TEST(ArchiveTest, RoundTripsAndIsDeterministic) {
  std::vector<PackFile> files = {Text("a.txt", "alpha\n"), Text("empty.bin", ""),
                                 PackFile{"binary.bin", Bytes{0, 1, 2, 255, 0}}, Text("z.json", std::string(1500, 'z'))};
  auto tar = WriteTar(files, At("2026-03-01T10:00:00.999Z"));
  ASSERT_TRUE(tar.ok()) << tar.status().ToString();
  EXPECT_EQ(tar->size() % 512, 0u);
  auto again = WriteTar(files, At("2026-03-01T10:00:00.999Z"));
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*tar, *again);

  auto read = ReadTar(*tar);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->size(), files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    EXPECT_EQ((*read)[i].name, files[i].name);
    EXPECT_EQ((*read)[i].contents, files[i].contents);
  }
}

TEST(ArchiveTest, GnuTarReadsItWithFixedMetadata) {
  TempDir dir;
  auto tar = WriteTar({Text("policy.json", "{}\n"), Text("statement.html", "<p>x</p>\n")},
                      At("2026-03-01T10:00:00Z"));
  ASSERT_TRUE(tar.ok());
  WriteFile(dir.File("p.tar"), crypto::AsString(*tar));
  auto r = RunCommand("TZ=UTC tar --full-time -tvf " + dir.File("p.tar"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("-rw-r--r-- root/root         3 2026-03-01 10:00:00 policy.json"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("statement.html"), std::string::npos);
}

TEST(ArchiveTest, WriterRejectsBadNames) {
  for (const char* bad : {"", "../x", "a/b", ".hidden", "-rf", "UPPER.txt", "sp ace"}) {
    EXPECT_EQ(WriteTar({Text(bad, "x")}, TimePoint{}).status().code(), StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_EQ(WriteTar({Text("a", "1"), Text("a", "2")}, TimePoint{}).status().code(), StatusCode::kInvalidArgument);
}

TEST(ArchiveTest, ReaderRejectsWhatAPackNeverHolds) {
  TempDir dir;
  WriteFile(dir.File("a.txt"), "a");
  ASSERT_EQ(RunCommand("mkdir " + dir.File("sub") + " && ln -s a.txt " + dir.File("link")).exit_code, 0);
  struct Case {
    std::string tar_args;
    std::string entry;
  } cases[] = {
      {"a.txt a.txt", "a.txt"},  // the same name twice: extraction would keep only the last
      {"sub", "sub/"},
      {"link", "link"},
  };
  for (const Case& c : cases) {
    ASSERT_EQ(RunCommand("cd " + dir.path() + " && tar --format=ustar -cf t.tar " + c.tar_args).exit_code, 0);
    auto read = ReadTar(crypto::AsBytes(testing::ReadFile(dir.File("t.tar"))));
    ASSERT_EQ(read.status().code(), StatusCode::kInvalidArgument) << c.tar_args;
    EXPECT_EQ(read.status().details().at("entry"), c.entry) << read.status().ToString();
  }
}

TEST(ArchiveTest, DamagedArchivesAreDataLoss) {
  auto tar = WriteTar({Text("a.txt", std::string(700, 'a')), Text("b.txt", "b")}, TimePoint{});
  ASSERT_TRUE(tar.ok());
  EXPECT_EQ(ReadTar(crypto::AsBytes("definitely not a tar archive, just some words")).status().code(),
            StatusCode::kDataLoss);

  Bytes first_header = *tar;
  first_header[0] ^= 0x01;  // name byte: header checksum no longer matches
  EXPECT_EQ(ReadTar(first_header).status().code(), StatusCode::kDataLoss);

  Bytes second_header = *tar;
  second_header[512 + 1024 + 2] ^= 0x01;  // b.txt's header, after a.txt's two data blocks
  auto r = ReadTar(second_header);
  EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(r.status().message().find("after a.txt"), std::string::npos) << r.status().ToString();

  Bytes truncated(tar->begin(), tar->begin() + 512 + 100);  // inside a.txt's data
  EXPECT_EQ(ReadTar(truncated).status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace concierge::evidence
