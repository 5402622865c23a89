// The deployment as users run it, one process each: `fedfm coordinator`
// (mutual TLS, SecAgg+, SQLite state) and four `fedfm client` devices with
// the real trainers on stories260K, each holding different Shakespeare
// speakers, with mixed methods. The coordinator is killed with SIGKILL during
// a round and restarted with the same command; later a device is killed
// mid-round. The run must complete, the committed history must be whole
// (every round committed exactly once, in order), and the global train loss
// must fall.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/sqlite_store.h"
#include "gtest/gtest.h"

namespace fedfm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Starts `args` (argv[0] = the fedfm binary) with stdout and stderr into `log`.
pid_t Spawn(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool WaitForText(const fs::path& log, const std::string& text, int timeout_s) {
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < until) {
    if (ReadAll(log).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

// The exit code, or -1 (after a SIGKILL) when it has not exited in time.
int WaitExit(pid_t pid, int timeout_s) {
  const auto until = Clock::now() + std::chrono::seconds(timeout_s);
  while (Clock::now() < until) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

std::string RunCapture(const std::string& command) {
  std::string out;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  pclose(pipe);
  return out;
}

int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

// Tiny Shakespeare split by speaker: speech blocks go to client
// hash(speaker) % n, at most `max_speeches` speeches in all.
std::vector<std::string> SplitBySpeaker(const std::string& text, int n, int max_speeches) {
  std::vector<std::string> out(n);
  std::stringstream in(text);
  std::string line, block;
  int speeches = 0;
  auto flush = [&] {
    if (block.empty()) return;
    const std::string speaker = block.substr(0, block.find('\n'));
    out[std::hash<std::string>()(speaker) % n] += block + "\n";
    block.clear();
    ++speeches;
  };
  while (std::getline(in, line) && speeches < max_speeches) {
    if (line.empty()) {
      flush();
    } else {
      block += line + "\n";
    }
  }
  flush();
  return out;
}

class GrpcMultiProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/fedfm_e2e_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (pid_t pid : pids_) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, WNOHANG);
    }
    if (!HasFailure()) fs::remove_all(dir_);
  }

  fs::path dir_;
  std::vector<pid_t> pids_;
};

TEST_F(GrpcMultiProcessTest, CoordinatorAndDevicesSurviveKillsAndTheLossFalls) {
  const std::string fedfm = FEDFM_BINARY;
  ASSERT_TRUE(fs::exists("assets/stories260K/stories260K.bin"));
  const std::string address = "127.0.0.1:" + std::to_string(FreePort());
  {
    std::ofstream toml(dir_ / "run.toml");
    toml << "[run]\nname = \"e2e\"\nseed = 3\nrounds = 3\n"
         << "[model]\npath = \"assets/stories260K/stories260K.bin\"\n"
         << "tokenizer = \"assets/stories260K/tok512.bin\"\n"
         << "[data]\nformat = \"shakespeare\"\nseq_len = 32\n"
         << "[train]\nmethod = \"auto\"\nlocal_steps = 8\nbatch_size = 8\nlearning_rate = 5e-3\n"
         << "[peft.lora]\nrank = 4\nalpha = 8.0\n"
         << "[peft.partial]\ntop_blocks = 2\n"
         << "[zeroth_order]\nseed_pool = 0\n"
         << "[secagg]\nenabled = true\nclip = 0.5\n"
         << "[rounds]\nclients_per_round = 4\nmin_clients = 3\ndeadline_s = 60\neval_every = 0\n";
  }
  const std::vector<std::string> parts = SplitBySpeaker(ReadAll("assets/tinyshakespeare/input.txt"), 4, 1200);
  for (int i = 0; i < 4; ++i) std::ofstream(dir_ / ("speakers" + std::to_string(i) + ".txt")) << parts[i];

  const std::vector<std::string> coordinator_args = {
      fedfm, "coordinator", "--config", (dir_ / "run.toml").string(), "--listen", address, "--state",
      (dir_ / "state" / "coordinator.db").string(), "--http", "", "--poll-interval", "300ms", "--selection-wait",
      "2s", "--phase-timeout", "8s", "--liveness", "4s", "--linger", "4s"};
  const fs::path coordinator_log = dir_ / "coordinator.log";
  pid_t coordinator = Spawn(coordinator_args, coordinator_log);
  pids_.push_back(coordinator);
  ASSERT_TRUE(WaitForText(coordinator_log, "coordinator listening", 60)) << ReadAll(coordinator_log);

  std::string token = RunCapture(fedfm + " enroll --coordinator " + address + " --uses 4 --state " +
                                 (dir_ / "state").string() + " 2>/dev/null");
  while (!token.empty() && (token.back() == '\n' || token.back() == ' ')) token.pop_back();
  ASSERT_EQ(token.rfind("fedfm_et_", 0), 0u) << token;

  // Mixed methods: what each device offers.
  const std::vector<std::string> methods = {"lora", "lora", "partial", "zo"};
  std::vector<pid_t> devices;
  for (int i = 0; i < 4; ++i) {
    const std::string n = std::to_string(i);
    devices.push_back(Spawn({fedfm, "client", "--coordinator", address, "--token", token, "--model",
                             "assets/stories260K/stories260K.bin", "--tokenizer", "assets/stories260K/tok512.bin",
                             "--data", (dir_ / ("speakers" + n + ".txt")).string(), "--seq-len", "32", "--ca",
                             (dir_ / "state" / "tls" / "ca.pem").string(), "--state",
                             (dir_ / ("device" + n)).string(), "--method", methods[i], "--name", "device" + n},
                            dir_ / ("device" + n + ".log")));
    pids_.push_back(devices.back());
  }

  // Kill -9 the coordinator in round 2, restart it with the same command.
  ASSERT_TRUE(WaitForText(coordinator_log, "round 1/", 180)) << ReadAll(coordinator_log);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  kill(coordinator, SIGKILL);
  waitpid(coordinator, nullptr, 0);
  const fs::path restart_log = dir_ / "coordinator2.log";
  coordinator = Spawn(coordinator_args, restart_log);
  pids_.push_back(coordinator);
  ASSERT_TRUE(WaitForText(restart_log, "resuming run", 60)) << ReadAll(restart_log);

  // Kill a device once round 2 has committed: SecAgg+ goes on without it.
  ASSERT_TRUE(WaitForText(restart_log, "round 2/", 180)) << ReadAll(restart_log);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  kill(devices[1], SIGKILL);
  waitpid(devices[1], nullptr, 0);

  const int coordinator_exit = WaitExit(coordinator, 240);
  EXPECT_EQ(coordinator_exit, 0) << ReadAll(restart_log);
  const std::string log = ReadAll(restart_log);
  EXPECT_NE(log.find("round 3/"), std::string::npos) << log;
  EXPECT_NE(log.find("finished"), std::string::npos) << log;
  for (int i : {0, 2, 3}) {
    const fs::path device_log = dir_ / ("device" + std::to_string(i) + ".log");
    EXPECT_EQ(WaitExit(devices[i], 60), 0) << ReadAll(device_log);
    EXPECT_NE(ReadAll(device_log).find("stopped"), std::string::npos) << ReadAll(device_log);
  }

  // The committed history: rounds 0..3, each committed once, in order; the
  // round the kill interrupted was started again.
  auto store = coordinator::OpenSqliteStore(dir_ / "state" / "coordinator.db");
  ASSERT_TRUE(store.ok()) << store.status();
  auto runs = (*store)->ListRuns();
  ASSERT_TRUE(runs.ok());
  ASSERT_EQ(runs->size(), 1u);
  const std::string run_id = runs->front().id;
  EXPECT_EQ(runs->front().status, coordinator::RunStatus::kFinished);
  auto rounds = (*store)->ListRounds(run_id);
  ASSERT_TRUE(rounds.ok());
  ASSERT_EQ(rounds->size(), 4u);
  int64_t restarted = 0;
  for (size_t r = 0; r < rounds->size(); ++r) {
    EXPECT_EQ((*rounds)[r].round, static_cast<int64_t>(r));
    EXPECT_EQ((*rounds)[r].status, coordinator::RoundStatus::kCommitted) << r;
    EXPECT_FALSE((*rounds)[r].model_version.empty());
    restarted += (*rounds)[r].attempt > 1;
    if (r > 0) EXPECT_GE((*rounds)[r].committed_at_ms, (*rounds)[r - 1].committed_at_ms);
  }
  EXPECT_GE(restarted, 1) << "the killed round should have been started again";
  // Methods were mixed, and every committed round has SecAgg contributions.
  std::map<protocols::Method, int> methods_seen;
  for (int64_t r = 1; r <= 3; ++r) {
    auto participants = (*store)->ListParticipants(run_id, r);
    ASSERT_TRUE(participants.ok());
    int uploaded = 0;
    for (const auto& p : *participants) {
      if (p.status == coordinator::ParticipantStatus::kUploaded) {
        ++uploaded;
        ++methods_seen[p.method];
      }
    }
    EXPECT_GE(uploaded, 3) << "round " << r;
  }
  EXPECT_GE(methods_seen.size(), 2u);
  auto loss = (*store)->MetricSeries(run_id, "train_loss");
  ASSERT_TRUE(loss.ok());
  ASSERT_EQ(loss->size(), 3u);
  EXPECT_LT(loss->back().second, loss->front().second)
      << "train loss " << loss->front().second << " -> " << loss->back().second;
}

}  // namespace
}  // namespace fedfm
