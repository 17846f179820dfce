#include "backends/pkcs11/pkcs11_uri.h"

#include <gtest/gtest.h>

namespace concierge::backends::pkcs11 {
namespace {

std::string Pin(const Pkcs11Uri& u) {
  return u.pin_value ? std::string(u.pin_value->RevealString(SecretAccess::Grant())) : "<none>";
}

TEST(Pkcs11UriTest, ParsesPathAndQueryAttributes) {
  auto u = ParsePkcs11Uri(
      "pkcs11:token=custody;manufacturer=SoftHSM%20project;serial=abc123;model=SoftHSM%20v2;"
      "object=acme-news-2026-11;id=%01%02%ff;type=private"
      "?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=12%2634");
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ(u->token, "custody");
  EXPECT_EQ(u->manufacturer, "SoftHSM project");
  EXPECT_EQ(u->serial, "abc123");
  EXPECT_EQ(u->model, "SoftHSM v2");
  EXPECT_EQ(u->object, "acme-news-2026-11");
  EXPECT_EQ(*u->id, (Bytes{0x01, 0x02, 0xff}));
  EXPECT_EQ(u->type, "private");
  EXPECT_EQ(u->module_path, "/usr/lib/softhsm/libsofthsm2.so");
  EXPECT_EQ(Pin(*u), "12&34");
  EXPECT_TRUE(u->HasTokenSelector());
}

TEST(Pkcs11UriTest, MinimalAndEmptyForms) {
  auto u = ParsePkcs11Uri("pkcs11:");
  ASSERT_TRUE(u.ok());
  EXPECT_FALSE(u->HasTokenSelector());
  auto t = ParsePkcs11Uri("PKCS11:token=keyctl-dev");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->token, "keyctl-dev");
  auto s = ParsePkcs11Uri("pkcs11:slot-id=3;x-vendor=whatever;library-description=foo");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(*s->slot_id, 3u);
  EXPECT_TRUE(s->HasTokenSelector());
  auto src = ParsePkcs11Uri("pkcs11:token=a?pin-source=file:/etc/keyctl/pin&module-name=softhsm2");
  ASSERT_TRUE(src.ok());
  EXPECT_EQ(src->pin_source, "file:/etc/keyctl/pin");
  EXPECT_EQ(src->module_name, "softhsm2");
}

TEST(Pkcs11UriTest, PercentEncodingRoundTrips) {
  Pkcs11Uri u;
  u.token = "my token;with?delims&=%/";
  u.object = "acme news/v3";
  u.id = Bytes{0x00, 0x7f, 0x80, 0xff};
  u.type = "private";
  u.module_path = "/opt/vendor lib/libp11.so";
  u.pin_source = "/run/secrets/pin";
  std::string s = FormatPkcs11Uri(u);
  EXPECT_EQ(s.find(' '), std::string::npos) << s;
  EXPECT_NE(s.find("id=%00%7F%80%FF"), std::string::npos) << s;
  auto back = ParsePkcs11Uri(s);
  ASSERT_TRUE(back.ok()) << back.status().ToString() << " " << s;
  EXPECT_EQ(back->token, u.token);
  EXPECT_EQ(back->object, u.object);
  EXPECT_EQ(*back->id, *u.id);
  EXPECT_EQ(back->module_path, u.module_path);
  EXPECT_EQ(back->pin_source, u.pin_source);
  EXPECT_EQ(FormatPkcs11Uri(*back), s);
  EXPECT_EQ(Pkcs11PercentEncode("a b;c"), "a%20b%3Bc");
}

TEST(Pkcs11UriTest, FormatNeverWritesPinValue) {
  auto u = ParsePkcs11Uri("pkcs11:token=t;object=k?pin-value=s3cret-pin");
  ASSERT_TRUE(u.ok());
  std::string s = FormatPkcs11Uri(*u);
  EXPECT_EQ(s, "pkcs11:token=t;object=k");
  EXPECT_EQ(s.find("s3cret"), std::string::npos);
}

TEST(Pkcs11UriTest, RejectsMalformedInput) {
  struct Case {
    const char* uri;
    const char* expect;  // substring of the message
  };
  const Case cases[] = {
      {"", "must start with 'pkcs11:'"},
      {"pkcs12:token=a", "must start with 'pkcs11:'"},
      {"token=a", "must start with 'pkcs11:'"},
      {"pkcs11:token=a%2", "malformed percent-encoding"},
      {"pkcs11:token=a%zz", "malformed percent-encoding"},
      {"pkcs11:token=a b", "must be percent-encoded"},
      {"pkcs11:object=a/b", "must be percent-encoded"},
      {"pkcs11:token=a;token=b", "more than once"},
      {"pkcs11:token", "name=value"},
      {"pkcs11:=x", "name=value"},
      {"pkcs11:token=a;;object=b", "empty attribute"},
      {"pkcs11:colour=red", "unknown path attribute 'colour'"},
      {"pkcs11:token=a?colour=red", "unknown query attribute 'colour'"},
      {"pkcs11:type=secret", "'type' must be"},
      {"pkcs11:slot-id=x1", "'slot-id' must be a decimal"},
      {"pkcs11:id=", "'id' is empty"},
      {"pkcs11:token=a?", "empty query"},
      {"pkcs11:token=a#frag", "fragment"},
      {"pkcs11:token=a?pin-value=1&pin-source=/f", "both pin-source and pin-value"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.uri);
    auto u = ParsePkcs11Uri(c.uri);
    ASSERT_FALSE(u.ok());
    EXPECT_EQ(u.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(u.status().message().find(c.expect), std::string::npos) << u.status().message();
  }
  EXPECT_FALSE(ParsePkcs11Uri("pkcs11:token=" + std::string(5000, 'a')).ok());
}

TEST(Pkcs11UriTest, ErrorsNeverEchoThePin) {
  for (const std::string uri : {"pkcs11:token=a?pin-value=hunter2%zz", "pkcs11:token=a?pin-value=hunter2 x",
                                "pkcs11:token=a?pin-value=hunter2&pin-value=hunter2",
                                "pkcs11:token=a?pin-value=hunter2&pin-source=/x", "pkcs11:hunter2"}) {
    auto u = ParsePkcs11Uri(uri);
    ASSERT_FALSE(u.ok()) << uri;
    EXPECT_EQ(u.status().ToString().find("hunter2"), std::string::npos) << u.status().ToString();
  }
}

}  // namespace
}  // namespace concierge::backends::pkcs11
