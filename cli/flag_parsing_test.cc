#include "cli/flag_parsing.h"

#include <gtest/gtest.h>

namespace fedfm::cli {
namespace {

TEST(CoordinatorCliFlagsTest, Durations) {
  EXPECT_EQ(*ParseDurationMs("10m"), 600'000);
  EXPECT_EQ(*ParseDurationMs("24h"), 86'400'000);
  EXPECT_EQ(*ParseDurationMs("7d"), 7 * 86'400'000LL);
  EXPECT_EQ(*ParseDurationMs("1.5h"), 5'400'000);
  EXPECT_EQ(*ParseDurationMs("250ms"), 250);
  EXPECT_EQ(*ParseDurationMs("45"), 45'000);
  EXPECT_EQ(*ParseDurationMs("2w"), 14 * 86'400'000LL);
  for (const char* bad : {"", "h", "-5m", "10x", "1..5h", "10 minutes"}) {
    absl::StatusOr<int64_t> r = ParseDurationMs(bad);
    EXPECT_FALSE(r.ok()) << bad;
  }
  EXPECT_NE(ParseDurationMs("10x").status().message().find("10x"), std::string::npos);
}

TEST(CoordinatorCliFlagsTest, Sizes) {
  EXPECT_EQ(*ParseSizeBytes("4GiB"), int64_t{4} << 30);
  EXPECT_EQ(*ParseSizeBytes("512MiB"), int64_t{512} << 20);
  EXPECT_EQ(*ParseSizeBytes("512mib"), int64_t{512} << 20);
  EXPECT_EQ(*ParseSizeBytes("1.5GB"), 1'500'000'000);
  EXPECT_EQ(*ParseSizeBytes("64K"), 65'536);
  EXPECT_EQ(*ParseSizeBytes("100"), 100);
  EXPECT_EQ(*ParseSizeBytes("100B"), 100);
  EXPECT_EQ(*ParseSizeBytes("2 MiB"), 2 << 20);
  for (const char* bad : {"", "GiB", "-1MiB", "4GiBs", "1e9"}) EXPECT_FALSE(ParseSizeBytes(bad).ok()) << bad;
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(800), "800 B");
  EXPECT_EQ(FormatBytes(4.0 * (1 << 30)), "4.0 GiB");
}

TEST(CoordinatorCliFlagsTest, AddressesAndLoopback) {
  absl::StatusOr<HostPort> a = ParseHostPort("127.0.0.1:7443");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 7443);
  absl::StatusOr<HostPort> b = ParseHostPort("[::1]:0");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->host, "::1");
  EXPECT_EQ(b->port, 0);
  EXPECT_EQ(ParseHostPort("coordinator.lan:80")->host, "coordinator.lan");
  for (const char* bad : {"7443", "host:", "host:99999", "::1:80", "[::1]80", "host:8a"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("127.8.9.10"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("LOCALHOST"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  EXPECT_FALSE(IsLoopbackHost("::"));
  EXPECT_FALSE(IsLoopbackHost("10.0.0.5"));
  EXPECT_FALSE(IsLoopbackHost("example.com"));
}

}  // namespace
}  // namespace fedfm::cli
