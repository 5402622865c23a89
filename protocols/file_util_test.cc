#include "protocols/file_util.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace fedfm::protocols {
namespace {

namespace fs = std::filesystem;

class FileUtilTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fedfm_file_util_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

int ModeOf(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return static_cast<int>(st.st_mode & 0777);
}

TEST_F(FileUtilTest, WritesReplacesAndLeavesNoTemporaryFile) {
  const fs::path path = dir_ / "state.json";
  ASSERT_TRUE(WriteFileAtomic(path, std::string("first version")).ok());
  ASSERT_TRUE(WriteFileAtomic(path, std::string("second")).ok());
  absl::StatusOr<std::string> text = ReadFileToString(path);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(*text, "second");
  int entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir_)) ++entries;
  EXPECT_EQ(entries, 1);
}

TEST_F(FileUtilTest, SecretsAreCreatedPrivate) {
  const mode_t old_mask = ::umask(022);
  ASSERT_TRUE(WriteFileAtomic(dir_ / "key.pem", std::string("secret"), 0600).ok());
  ASSERT_TRUE(WriteFileAtomic(dir_ / "public.pem", std::string("public")).ok());
  ::umask(old_mask);
  EXPECT_EQ(ModeOf(dir_ / "key.pem"), 0600);
  EXPECT_EQ(ModeOf(dir_ / "public.pem"), 0644);
}

TEST_F(FileUtilTest, ErrorsNameThePath) {
  const fs::path missing = dir_ / "no" / "such" / "dir" / "f.txt";
  absl::Status s = WriteFileAtomic(missing, std::string("x"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no/such/dir"), std::string_view::npos) << s;
  absl::StatusOr<std::string> r = ReadFileToString(dir_ / "absent.txt");
  EXPECT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("absent.txt"), std::string_view::npos) << r.status();
}

}  // namespace
}  // namespace fedfm::protocols
