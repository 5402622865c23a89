// The run configuration schema: one TOML file describes a whole run, mapped
// once into these typed per-module Options structs. Defaults are the values
// written here. See protocols/config/config.h for parsing and examples/ for
// complete files. Keys are `section.key` as in the TOML.
#ifndef FEDFM_PROTOCOLS_CONFIG_OPTIONS_H_
#define FEDFM_PROTOCOLS_CONFIG_OPTIONS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace fedfm::protocols {

enum class Method { kAuto, kLora, kPartial, kZerothOrder };
enum class DeviceKind { kCpu, kCuda };
enum class ModelDType { kF32, kBF16 };

// [run]
struct RunOptions {
  std::string name = "fedfm-run";
  uint64_t seed = 0;            // every random draw derives from it
  int rounds = 10;              // 1..100000
  int torch_threads = 0;        // intra-op threads; 0 = all cores
};

// [model]
struct ModelOptions {
  std::string path = "assets/stories260K/stories260K.bin";  // llama2.c .bin or HF directory
  std::string tokenizer = "assets/stories260K/tok512.bin";  // tokenizer.bin or tokenizer.json
  ModelDType dtype = ModelDType::kF32;
  DeviceKind device = DeviceKind::kCpu;
};

// [data]
struct PartitionOptions {
  // "iid" | "dirichlet" | "shards" | "quantity" | "natural"
  std::string scheme = "natural";
  double alpha = 1.0;           // dirichlet concentration / quantity skew, > 0
  int shards_per_client = 2;    // label shards
};

struct DataOptions {
  std::string path = "assets/tinyshakespeare/input.txt";
  // "text" | "shakespeare" | "tsv" | "csv" | "jsonl" | "spamassassin"
  std::string format = "shakespeare";
  std::string eval_path;        // empty: hold out eval_fraction of the data
  double eval_fraction = 0.1;   // 0..0.5
  int seq_len = 64;             // tokens per window, 2..65536
  PartitionOptions partition;
};

// [train] (client side, every method)
struct TrainOptions {
  Method method = Method::kAuto;
  int local_steps = 10;         // 1..1000000
  int batch_size = 8;           // 1..65536
  int grad_accumulation = 1;    // 1..1024
  std::string optimizer = "adamw";  // "adamw" | "sgd"
  // "fresh": AdamW starts every round from zero moments; "global": its moments
  // live in the global state and are averaged like the adapters
  // (protocols/optimizer_state.h); needs FedAvg at server_lr 1, no secagg, no dp.
  std::string optimizer_state = "fresh";
  double learning_rate = 1e-3;  // > 0
  double weight_decay = 0.0;    // >= 0
  double grad_clip = 1.0;       // max global L2 norm; 0 = off
  double fedprox_mu = 0.0;      // FedProx proximal term; 0 = off
  bool bf16_autocast = true;    // on CUDA only
};

// [peft.lora]
struct LoraOptions {
  int rank = 8;                 // r_max of the global adapter, 1..256
  double alpha = 16.0;          // > 0
  double dropout = 0.0;         // 0..1
  bool rslora = false;          // scale alpha / sqrt(r) instead of alpha / r
  bool freeze_a = false;        // FFA-LoRA: A frozen from a shared seed
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
  std::vector<int> client_ranks;  // heterogeneous ranks offered by the policy; empty = {rank}
};

// [peft.partial]
struct PartialOptions {
  int top_blocks = 2;           // k: blocks that train, >= 1
  bool full_weights = false;    // train the blocks' full weights instead of their adapters
  int progressive_every = 0;    // grow k by progressive_step every N rounds; 0 = fixed k
  int progressive_step = 1;
  int progressive_max = 0;      // 0 = all blocks
};

// [zeroth_order]
struct ZerothOrderOptions {
  double epsilon = 1e-3;        // perturbation scale, > 0
  double learning_rate = 1e-4;  // > 0
  int perturbations = 1;        // per step, averaged, 1..1024
  double weight_decay = 0.0;
  std::string noise = "gaussian";     // "gaussian" | "rademacher"
  std::string estimator = "spsa";     // "spsa" | "forward"
  int seed_pool = 256;          // K shared seeds per round, 1..65536; 0 = dense updates
};

// [aggregation]
struct AggregationOptions {
  // "fedavg" | "fedavgm" | "fedadam" | "fedyogi" | "fedadagrad"
  std::string algorithm = "fedavg";
  double server_lr = 1.0;       // > 0
  double momentum = 0.9;        // fedavgm, 0..1
  double beta1 = 0.9;           // fedadam / fedyogi, 0..1
  double beta2 = 0.99;          // 0..1
  double tau = 1e-3;            // adaptivity, > 0
  // How zeroth-order (seed-scalar) updates join dense ones on the coordinates
  // both cover (aggregation/aggregator.h): "share" = the dense clients' mean
  // plus the zeroth-order mean scaled by the zeroth-order clients' share of
  // the weight (they do not shrink the dense step); "snr" = "share" with
  // that zeroth-order term further scaled by its signal share K / (K + d)
  // (K pool slots used, d elements replayed), as K random directions carry
  // about d / K times more noise than signal; "mean" = one
  // num_examples-weighted mean over all of them.
  std::string zo_mixing = "share";
  // "none" | "median" | "trimmed_mean" | "krum" | "multi_krum" (plaintext rounds only)
  std::string robust = "none";
  double trim_fraction = 0.1;   // 0..0.5
  int byzantine = 1;            // Krum's f
  int multi_krum_m = 0;         // 0 = n - f
};

// [secagg]
struct SecAggOptions {
  bool enabled = false;
  int neighbors = 0;            // k of the k-regular graph; 0 = O(log n) default
  double threshold = 0.5;       // t as a fraction of k, (0, 1]
  double clip = 1.0;            // fixed-point clipping range +-clip, > 0
  int fraction_bits = 16;       // q: scale 2^q, 1..30
};

// [dp]
struct DpOptions {
  bool enabled = false;
  std::string mode = "central"; // "central" | "distributed"
  double clip_norm = 1.0;       // per-update L2 clip C, > 0
  double noise_multiplier = 1.0;  // sigma, >= 0
  double delta = 1e-5;          // target delta, (0, 1)
};

// [rounds]
struct RoundOptions {
  int clients_per_round = 8;    // target sampled per round, >= 1
  int min_clients = 2;          // round fails below this many updates
  double deadline_s = 600.0;    // collect deadline (virtual seconds in simulation)
  int eval_every = 1;           // evaluation round period; 0 = never
  std::string target_metric;    // early stop when reached, e.g. "eval_loss"
  double target_value = 0.0;
};

// [coordinator]
struct CoordinatorOptions {
  std::string listen = "127.0.0.1:7443";
  std::string http = "127.0.0.1:8080";  // dashboard; empty = off
  std::string state = "fedfm-state/coordinator.db";
  bool insecure = false;
  int chunk_bytes = 4 << 20;    // stream chunk size, 4 KiB..64 MiB
  int64_t max_update_bytes = int64_t{4} << 30;
  double rate_limit_per_s = 50; // requests per client per second
};

// [[simulation.devices]]
struct SimDeviceGroup {
  std::string profile = "rpi5";  // a catalog name (simulation/devices.h) or a [[simulation.profiles]] name
  int count = 1;
};

// [[simulation.profiles]]: a virtual device defined in the config (a name
// equal to a catalog entry's replaces that entry).
struct SimProfileOptions {
  std::string name;               // non-empty, unique
  std::string accelerator = "cpu";  // "cpu" | "cuda"
  double memory_gib = 4.0;        // memory the client may use for training, > 0
  double tflops = 0.02;           // sustained training throughput, TFLOP/s, > 0
  double uplink_mbps = 10.0;      // megabits per second, > 0
  double downlink_mbps = 50.0;
  double availability = 1.0;      // probability of being online when a round starts, 0..1
  double dropout = 0.0;           // probability of going offline during a round, 0..1
  double jitter = 0.0;            // each round runs at tflops / U[1, 1 + jitter], 0..10
  std::vector<std::string> methods;  // "lora" | "partial" | "zo"; empty = all
};

// [simulation]
struct SimulationOptions {
  int num_clients = 16;         // registered virtual clients
  int threads = 0;              // training threads; 0 = all cores
  std::vector<SimDeviceGroup> devices;  // empty = the default mixed fleet
  std::vector<SimProfileOptions> profiles;  // user-defined virtual devices
  std::string out = "fedfm-sim";
};

struct RunConfig {
  RunOptions run;
  ModelOptions model;
  DataOptions data;
  TrainOptions train;
  LoraOptions lora;
  PartialOptions partial;
  ZerothOrderOptions zeroth_order;
  AggregationOptions aggregation;
  SecAggOptions secagg;
  DpOptions dp;
  RoundOptions rounds;
  CoordinatorOptions coordinator;
  SimulationOptions simulation;
};

}  // namespace fedfm::protocols

#endif  // FEDFM_PROTOCOLS_CONFIG_OPTIONS_H_
