// The fedfm binary as a user meets it: help text, exit codes, error lines.
#include <sys/wait.h>

#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace {

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};

Result RunFedfm(const std::string& args) {
  std::string command = std::string(FEDFM_BINARY) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  std::string output;
  std::array<char, 4096> buffer;
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output.append(buffer.data(), n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(CliTest, HelpListsEverySubcommand) {
  Result r = RunFedfm("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"coordinator", "client", "enroll", "simulate", "train", "bench", "model", "adapter"}) {
    EXPECT_NE(r.output.find(sub), std::string::npos) << sub << "\n" << r.output;
  }
}

TEST(CliTest, VersionPrintsTheVersion) {
  Result r = RunFedfm("--version");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output.rfind("fedfm ", 0), 0u) << r.output;
}

TEST(CliTest, UsageErrorsExitTwoWithOneLine) {
  Result none = RunFedfm("");
  EXPECT_EQ(none.exit_code, 2);
  Result unknown = RunFedfm("frobnicate");
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_NE(unknown.output.find("frobnicate"), std::string::npos) << unknown.output;
  Result bad_flag = RunFedfm("--threads -3 config show");
  EXPECT_EQ(bad_flag.exit_code, 2) << bad_flag.output;
}

TEST(CliTest, EverySubcommandHasHelp) {
  for (const char* sub : {"coordinator", "client", "enroll", "simulate", "train", "bench", "model", "adapter",
                          "config"}) {
    Result r = RunFedfm(std::string(sub) + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub << "\n" << r.output;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << sub;
  }
}

TEST(CliTest, ConfigCheckReportsTheLineAndExitsOne) {
  char path[] = "/tmp/fedfm_cli_XXXXXX.toml";
  int fd = mkstemps(path, 5);
  ASSERT_GE(fd, 0);
  std::string text = "[peft.lora]\nrank = 999\n";
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  Result r = RunFedfm(std::string("config check ") + path);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find(":2: peft.lora.rank must be in 1..256, got 999"), std::string::npos) << r.output;
  unlink(path);
  Result good = RunFedfm("config check examples/lora_shakespeare.toml");
  EXPECT_EQ(good.exit_code, 0) << good.output;
}

// The demo cut to one round (SecAgg+ off through --set): the report and
// the trained adapter, which `fedfm adapter info` reads back.
TEST(CliTest, SimulateWritesTheReportAndTheTrainedAdapter) {
  char dir[] = "/tmp/fedfm_cli_sim_XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string out = std::string(dir) + "/out";
  Result r = RunFedfm("simulate --rounds 1 --set secagg.enabled=false --quiet --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("SecAgg+ off"), std::string::npos) << r.output;
  std::ifstream summary(out + "/summary.json");
  const std::string json((std::istreambuf_iterator<char>(summary)), std::istreambuf_iterator<char>());
  EXPECT_NE(json.find("\"secagg\": false"), std::string::npos) << json;
  EXPECT_NE(r.output.find("adapter  " + out + "/adapter"), std::string::npos) << r.output;
  Result info = RunFedfm("adapter info --adapter " + out + "/adapter");
  EXPECT_EQ(info.exit_code, 0) << info.output;
  EXPECT_NE(info.output.find("q_proj"), std::string::npos) << info.output;
  EXPECT_EQ(info.output.find("optimizer."), std::string::npos) << info.output;
  std::system((std::string("rm -rf ") + dir).c_str());
}

TEST(CliTest, SimulateSetNamesTheBadOverride) {
  Result unknown = RunFedfm("simulate --set peft.lora.rnak=3");
  EXPECT_EQ(unknown.exit_code, 1);
  EXPECT_NE(unknown.output.find("--set peft.lora.rnak=3:1: unknown key peft.lora.rnak"), std::string::npos)
      << unknown.output;
  Result malformed = RunFedfm("simulate --set rounds");
  EXPECT_EQ(malformed.exit_code, 1);
  EXPECT_NE(malformed.output.find("expected KEY=VALUE"), std::string::npos) << malformed.output;
}

}  // namespace
