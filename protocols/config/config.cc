#include "protocols/config/config.h"

#include <cctype>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

#define TOML_EXCEPTIONS 1
#include <toml++/toml.h>

namespace fedfm::protocols {
namespace {

// Allowed values of a string key; empty = any.
using Choices = std::initializer_list<const char*>;

template <typename E>
struct EnumName {
  E value;
  const char* name;
};

constexpr EnumName<Method> kMethods[] = {
    {Method::kAuto, "auto"}, {Method::kLora, "lora"}, {Method::kPartial, "partial"}, {Method::kZerothOrder, "zo"}};
constexpr EnumName<DeviceKind> kDevices[] = {{DeviceKind::kCpu, "cpu"}, {DeviceKind::kCuda, "cuda"}};
constexpr EnumName<ModelDType> kModelDTypes[] = {{ModelDType::kF32, "f32"}, {ModelDType::kBF16, "bf16"}};

// The one description of the schema: every section and key with its range.
// Both the parser and the TOML writer walk it, so they cannot disagree.
template <typename V>
void VisitSchema(RunConfig& c, V& v) {
  constexpr int kIntMax = std::numeric_limits<int>::max();
  constexpr double kInf = std::numeric_limits<double>::infinity();
  v.Section("run", [&] {
    v.Field("name", c.run.name);
    v.Field("seed", c.run.seed);
    v.Field("rounds", c.run.rounds, 1, 100000);
    v.Field("torch_threads", c.run.torch_threads, 0, 1024);
  });
  v.Section("model", [&] {
    v.Field("path", c.model.path);
    v.Field("tokenizer", c.model.tokenizer);
    v.Enum("dtype", c.model.dtype, kModelDTypes);
    v.Enum("device", c.model.device, kDevices);
  });
  v.Section("data", [&] {
    v.Field("path", c.data.path);
    v.Field("format", c.data.format, {"text", "shakespeare", "tsv", "csv", "jsonl", "spamassassin"});
    v.Field("eval_path", c.data.eval_path);
    v.Field("eval_fraction", c.data.eval_fraction, 0.0, 0.5);
    v.Field("seq_len", c.data.seq_len, 2, 65536);
    v.Section("partition", [&] {
      v.Field("scheme", c.data.partition.scheme, {"iid", "dirichlet", "shards", "quantity", "natural"});
      v.Field("alpha", c.data.partition.alpha, 1e-6, kInf);
      v.Field("shards_per_client", c.data.partition.shards_per_client, 1, 1000);
    });
  });
  v.Section("train", [&] {
    v.Enum("method", c.train.method, kMethods);
    v.Field("local_steps", c.train.local_steps, 1, 1000000);
    v.Field("batch_size", c.train.batch_size, 1, 65536);
    v.Field("grad_accumulation", c.train.grad_accumulation, 1, 1024);
    v.Field("optimizer", c.train.optimizer, {"adamw", "sgd"});
    v.Field("optimizer_state", c.train.optimizer_state, {"fresh", "global"});
    v.Field("learning_rate", c.train.learning_rate, 1e-12, 10.0);
    v.Field("weight_decay", c.train.weight_decay, 0.0, 10.0);
    v.Field("grad_clip", c.train.grad_clip, 0.0, kInf);
    v.Field("fedprox_mu", c.train.fedprox_mu, 0.0, kInf);
    v.Field("bf16_autocast", c.train.bf16_autocast);
  });
  v.Section("peft", [&] {
    v.Section("lora", [&] {
      v.Field("rank", c.lora.rank, 1, 256);
      v.Field("alpha", c.lora.alpha, 1e-6, 1e6);
      v.Field("dropout", c.lora.dropout, 0.0, 0.99);
      v.Field("rslora", c.lora.rslora);
      v.Field("freeze_a", c.lora.freeze_a);
      v.List("targets", c.lora.targets,
             {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"});
      v.IntList("client_ranks", c.lora.client_ranks, 1, 256);
    });
    v.Section("partial", [&] {
      v.Field("top_blocks", c.partial.top_blocks, 1, 10000);
      v.Field("full_weights", c.partial.full_weights);
      v.Field("progressive_every", c.partial.progressive_every, 0, 100000);
      v.Field("progressive_step", c.partial.progressive_step, 1, 10000);
      v.Field("progressive_max", c.partial.progressive_max, 0, 10000);
    });
  });
  v.Section("zeroth_order", [&] {
    v.Field("epsilon", c.zeroth_order.epsilon, 1e-12, 1.0);
    v.Field("learning_rate", c.zeroth_order.learning_rate, 1e-12, 10.0);
    v.Field("perturbations", c.zeroth_order.perturbations, 1, 1024);
    v.Field("weight_decay", c.zeroth_order.weight_decay, 0.0, 10.0);
    v.Field("noise", c.zeroth_order.noise, {"gaussian", "rademacher"});
    v.Field("estimator", c.zeroth_order.estimator, {"spsa", "forward"});
    v.Field("seed_pool", c.zeroth_order.seed_pool, 0, 65536);
  });
  v.Section("aggregation", [&] {
    v.Field("algorithm", c.aggregation.algorithm, {"fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"});
    v.Field("server_lr", c.aggregation.server_lr, 1e-12, 1e6);
    v.Field("momentum", c.aggregation.momentum, 0.0, 1.0);
    v.Field("beta1", c.aggregation.beta1, 0.0, 1.0);
    v.Field("beta2", c.aggregation.beta2, 0.0, 1.0);
    v.Field("tau", c.aggregation.tau, 1e-12, 1e6);
    v.Field("zo_mixing", c.aggregation.zo_mixing, {"share", "snr", "mean"});
    v.Field("robust", c.aggregation.robust, {"none", "median", "trimmed_mean", "krum", "multi_krum"});
    v.Field("trim_fraction", c.aggregation.trim_fraction, 0.0, 0.49);
    v.Field("byzantine", c.aggregation.byzantine, 0, 100000);
    v.Field("multi_krum_m", c.aggregation.multi_krum_m, 0, 100000);
  });
  v.Section("secagg", [&] {
    v.Field("enabled", c.secagg.enabled);
    v.Field("neighbors", c.secagg.neighbors, 0, 100000);
    v.Field("threshold", c.secagg.threshold, 1e-6, 1.0);
    v.Field("clip", c.secagg.clip, 1e-9, 1e9);
    v.Field("fraction_bits", c.secagg.fraction_bits, 1, 30);
  });
  v.Section("dp", [&] {
    v.Field("enabled", c.dp.enabled);
    v.Field("mode", c.dp.mode, {"central", "distributed"});
    v.Field("clip_norm", c.dp.clip_norm, 1e-12, 1e12);
    v.Field("noise_multiplier", c.dp.noise_multiplier, 0.0, 1e6);
    v.Field("delta", c.dp.delta, 1e-30, 0.999999);
  });
  v.Section("rounds", [&] {
    v.Field("clients_per_round", c.rounds.clients_per_round, 1, 1000000);
    v.Field("min_clients", c.rounds.min_clients, 1, 1000000);
    v.Field("deadline_s", c.rounds.deadline_s, 1e-3, 1e9);
    v.Field("eval_every", c.rounds.eval_every, 0, 1000000);
    v.Field("target_metric", c.rounds.target_metric);
    v.Field("target_value", c.rounds.target_value, -kInf, kInf);
  });
  v.Section("coordinator", [&] {
    v.Field("listen", c.coordinator.listen);
    v.Field("http", c.coordinator.http);
    v.Field("state", c.coordinator.state);
    v.Field("insecure", c.coordinator.insecure);
    v.Field("chunk_bytes", c.coordinator.chunk_bytes, 4096, 64 << 20);
    v.Field("max_update_bytes", c.coordinator.max_update_bytes, int64_t{1024}, int64_t{1} << 40);
    v.Field("rate_limit_per_s", c.coordinator.rate_limit_per_s, 1e-3, 1e9);
  });
  v.Section("simulation", [&] {
    v.Field("num_clients", c.simulation.num_clients, 1, 10000000);
    v.Field("threads", c.simulation.threads, 0, 1024);
    v.Field("out", c.simulation.out);
    v.TableArray("devices", c.simulation.devices, [&](SimDeviceGroup& g) {
      v.Field("profile", g.profile);
      v.Field("count", g.count, 1, kIntMax);
    });
    v.TableArray("profiles", c.simulation.profiles, [&](SimProfileOptions& p) {
      v.Field("name", p.name);
      v.Field("accelerator", p.accelerator, {"cpu", "cuda"});
      v.Field("memory_gib", p.memory_gib, 1e-6, 1e9);
      v.Field("tflops", p.tflops, 1e-9, 1e9);
      v.Field("uplink_mbps", p.uplink_mbps, 1e-6, 1e9);
      v.Field("downlink_mbps", p.downlink_mbps, 1e-6, 1e9);
      v.Field("availability", p.availability, 0.0, 1.0);
      v.Field("dropout", p.dropout, 0.0, 1.0);
      v.Field("jitter", p.jitter, 0.0, 10.0);
      v.List("methods", p.methods, {"lora", "partial", "zo"});
    });
  });
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

class Parser {
 public:
  Parser(const toml::table& root, std::string source) : source_(std::move(source)) { stack_.push_back({&root, ""}); }

  template <typename F>
  void Section(const std::string& key, F&& body) {
    const toml::node* node = Lookup(key);
    if (node == nullptr) {
      // Absent section: walk it anyway so that nested defaults stay, reading nothing.
      stack_.push_back({nullptr, Path(key)});
      body();
      stack_.pop_back();
      return;
    }
    const toml::table* table = node->as_table();
    if (table == nullptr) {
      Error(*node, absl::StrCat(Path(key), " must be a table"));
      return;
    }
    stack_.push_back({table, Path(key)});
    body();
    ReportUnknown();
    stack_.pop_back();
  }

  void Field(const std::string& key, std::string& out, Choices choices = {}) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    auto value = node->value<std::string>();
    if (!node->is_string() || !value) return TypeError(*node, key, "a string");
    if (choices.size() > 0 && !Contains(choices, *value)) {
      return Error(*node, absl::StrCat(Path(key), " must be one of ", Join(choices), ", got \"", *value, "\""));
    }
    out = *value;
  }

  void Field(const std::string& key, bool& out) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    if (!node->is_boolean()) return TypeError(*node, key, "true or false");
    out = *node->value<bool>();
  }

  template <typename Int>
    requires std::is_integral_v<Int>
  void Field(const std::string& key, Int& out, Int lo = std::numeric_limits<Int>::min(),
             Int hi = std::numeric_limits<Int>::max()) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    if (!node->is_integer()) return TypeError(*node, key, "an integer");
    int64_t v = *node->value<int64_t>();
    bool in_range = std::is_unsigned_v<Int> ? v >= 0 && static_cast<uint64_t>(v) >= static_cast<uint64_t>(lo) &&
                                                  static_cast<uint64_t>(v) <= static_cast<uint64_t>(hi)
                                            : v >= static_cast<int64_t>(lo) && v <= static_cast<int64_t>(hi);
    if (!in_range) return Error(*node, absl::StrCat(Path(key), " must be in ", lo, "..", hi, ", got ", v));
    out = static_cast<Int>(v);
  }

  void Field(const std::string& key, double& out, double lo, double hi) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    if (!node->is_number()) return TypeError(*node, key, "a number");
    double v = *node->value<double>();
    if (std::isnan(v) || v < lo || v > hi) {
      return Error(*node, absl::StrCat(Path(key), " must be in ", lo, "..", hi, ", got ", v));
    }
    out = v;
  }

  template <typename E, size_t N>
  void Enum(const std::string& key, E& out, const EnumName<E> (&names)[N]) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    auto value = node->value<std::string>();
    if (!node->is_string()) return TypeError(*node, key, "a string");
    for (const auto& [e, name] : names) {
      if (*value == name) {
        out = e;
        return;
      }
    }
    std::vector<const char*> all;
    for (const auto& n : names) all.push_back(n.name);
    Error(*node, absl::StrCat(Path(key), " must be one of ", absl::StrJoin(all, "|"), ", got \"", *value, "\""));
  }

  void List(const std::string& key, std::vector<std::string>& out, Choices choices) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    const toml::array* array = node->as_array();
    if (!array) return TypeError(*node, key, "an array of strings");
    std::vector<std::string> values;
    for (const toml::node& item : *array) {
      auto s = item.value<std::string>();
      if (!item.is_string()) return TypeError(item, key, "an array of strings");
      if (choices.size() > 0 && !Contains(choices, *s)) {
        return Error(item, absl::StrCat(Path(key), " entries must be among ", Join(choices), ", got \"", *s, "\""));
      }
      values.push_back(*s);
    }
    out = std::move(values);
  }

  void IntList(const std::string& key, std::vector<int>& out, int lo, int hi) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    const toml::array* array = node->as_array();
    if (!array) return TypeError(*node, key, "an array of integers");
    std::vector<int> values;
    for (const toml::node& item : *array) {
      if (!item.is_integer()) return TypeError(item, key, "an array of integers");
      int64_t v = *item.value<int64_t>();
      if (v < lo || v > hi) {
        return Error(item, absl::StrCat(Path(key), " entries must be in ", lo, "..", hi, ", got ", v));
      }
      values.push_back(static_cast<int>(v));
    }
    out = std::move(values);
  }

  template <typename T, typename F>
  void TableArray(const std::string& key, std::vector<T>& out, F&& body) {
    const toml::node* node = Lookup(key);
    if (!node) return;
    const toml::array* array = node->as_array();
    if (!array || !array->is_array_of_tables()) return TypeError(*node, key, "an array of tables ([[...]])");
    std::vector<T> values;
    for (size_t i = 0; i < array->size(); ++i) {
      T item;
      stack_.push_back({(*array)[i].as_table(), absl::StrCat(Path(key), "[", i, "]")});
      Bind(item, body);
      ReportUnknown();
      stack_.pop_back();
      values.push_back(std::move(item));
    }
    out = std::move(values);
  }

  std::vector<std::string> TakeErrors() { return std::move(errors_); }
  void ReportRoot() { ReportUnknown(); }

 private:
  struct Frame {
    const toml::table* table;
    std::string path;
    std::set<std::string, std::less<>> seen = {};
  };

  template <typename T, typename F>
  void Bind(T& item, F& body) {
    body(item);
  }

  std::string Path(const std::string& key) const {
    const std::string& prefix = stack_.back().path;
    return prefix.empty() ? std::string(key) : absl::StrCat(prefix, ".", key);
  }

  const toml::node* Lookup(const std::string& key) {
    Frame& frame = stack_.back();
    frame.seen.insert(std::string(key));
    return frame.table ? frame.table->get(key) : nullptr;
  }

  void ReportUnknown() {
    const Frame& frame = stack_.back();
    if (!frame.table) return;
    for (const auto& [key, node] : *frame.table) {
      if (!frame.seen.contains(key.str())) {
        Error(node, absl::StrCat("unknown key ", frame.path.empty() ? "" : frame.path + ".", std::string(key.str())));
      }
    }
  }

  void TypeError(const toml::node& node, const std::string& key, const char* expected) {
    Error(node, absl::StrCat(Path(key), " must be ", expected));
  }

  void Error(const toml::node& node, const std::string& message) {
    errors_.push_back(absl::StrCat(source_, ":", node.source().begin.line, ": ", message));
  }

  static bool Contains(Choices choices, const std::string& value) {
    for (const char* c : choices) {
      if (value == c) return true;
    }
    return false;
  }
  static std::string Join(Choices choices) { return absl::StrJoin(choices, "|"); }

  std::string source_;
  std::vector<Frame> stack_;
  std::vector<std::string> errors_;
};

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

class Writer {
 public:
  Writer() { frames_.emplace_back(); }

  template <typename F>
  void Section(const std::string& key, F&& body) {
    path_.push_back(std::string(key));
    frames_.emplace_back();
    body();
    Frame frame = std::move(frames_.back());
    frames_.pop_back();
    std::string text;
    if (!frame.fields.empty()) text = absl::StrCat("\n[", absl::StrJoin(path_, "."), "]\n", frame.fields);
    frames_.back().children += text + frame.children;
    path_.pop_back();
  }
  void Field(const std::string& key, const std::string& v, Choices = {}) { Line(key, Quote(v)); }
  void Field(const std::string& key, bool v) { Line(key, v ? "true" : "false"); }
  template <typename Int>
    requires std::is_integral_v<Int>
  void Field(const std::string& key, Int v, Int = 0, Int = 0) {
    Line(key, absl::StrCat(v));
  }
  void Field(const std::string& key, double v, double, double) {
    std::ostringstream s;
    s.precision(17);
    s << v;
    std::string text = s.str();
    if (text.find_first_of(".eEn") == std::string::npos) text += ".0";
    if (std::isinf(v)) text = v > 0 ? "inf" : "-inf";
    Line(key, text);
  }
  template <typename E, size_t N>
  void Enum(const std::string& key, E v, const EnumName<E> (&names)[N]) {
    for (const auto& [e, name] : names) {
      if (e == v) Line(key, Quote(name));
    }
  }
  void List(const std::string& key, const std::vector<std::string>& v, Choices) {
    std::vector<std::string> quoted;
    for (const auto& s : v) quoted.push_back(Quote(s));
    Line(key, absl::StrCat("[", absl::StrJoin(quoted, ", "), "]"));
  }
  void IntList(const std::string& key, const std::vector<int>& v, int, int) {
    Line(key, absl::StrCat("[", absl::StrJoin(v, ", "), "]"));
  }
  template <typename T, typename F>
  void TableArray(const std::string& key, std::vector<T>& items, F&& body) {
    std::string header = absl::StrCat(absl::StrJoin(path_, "."), ".", key);
    for (T& item : items) {
      frames_.emplace_back();
      body(item);
      std::string fields = std::move(frames_.back().fields);
      frames_.pop_back();
      frames_.back().children += absl::StrCat("\n[[", header, "]]\n", fields);
    }
  }
  std::string str() const { return frames_.front().fields + frames_.front().children; }

 private:
  struct Frame {
    std::string fields;
    std::string children;
  };
  void Line(const std::string& key, const std::string& value) {
    absl::StrAppend(&frames_.back().fields, key, " = ", value, "\n");
  }
  // A TOML basic string: quotes, backslashes and control characters escaped.
  static std::string Quote(const std::string& s) {
    std::string out = "\"";
    for (const char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      switch (ch) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\t': out += "\\t"; break;
        case '\n': out += "\\n"; break;
        case '\f': out += "\\f"; break;
        case '\r': out += "\\r"; break;
        default:
          if (c < 0x20 || c == 0x7F) {
            absl::StrAppend(&out, absl::StrFormat("\\u%04X", c));
          } else {
            out += ch;
          }
      }
    }
    return out + "\"";
  }
  std::vector<std::string> path_;
  std::vector<Frame> frames_;
};

}  // namespace

const char* MethodName(Method method) {
  for (const auto& [m, name] : kMethods) {
    if (m == method) return name;
  }
  return "?";
}

absl::StatusOr<RunConfig> ParseRunConfig(std::string_view text, std::string_view source_name, const RunConfig& base) {
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(std::string(source_name), ":", e.source().begin.line, ": ", std::string(e.description())));
  }
  RunConfig config = base;
  Parser parser(root, std::string(source_name));
  VisitSchema(config, parser);
  parser.ReportRoot();
  std::vector<std::string> errors = parser.TakeErrors();
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  absl::Status valid = ValidateRunConfig(config);
  if (!valid.ok()) return absl::InvalidArgumentError(absl::StrCat(std::string(source_name), ": ", valid.message()));
  return config;
}

absl::StatusOr<RunConfig> LoadRunConfig(const std::filesystem::path& path, const RunConfig& base) {
  FEDFM_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseRunConfig(text, path.filename().string(), base);
}

absl::StatusOr<RunConfig> ApplyOverrides(const RunConfig& base, const std::vector<std::string>& overrides) {
  RunConfig config = base;
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    const std::string key = o.substr(0, eq);
    bool key_ok = eq != std::string::npos && !key.empty() && key.front() != '.' && key.back() != '.' &&
                  key.find("..") == std::string::npos;
    for (char ch : key) {
      key_ok = key_ok && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' || ch == '.');
    }
    if (!key_ok || eq + 1 >= o.size()) {
      return absl::InvalidArgumentError(absl::StrCat("--set \"", o,
                                                     "\": expected KEY=VALUE with a dotted key, e.g. "
                                                     "rounds.deadline_s=0.5 or aggregation.zo_mixing=snr"));
    }
    std::string text = absl::StrCat(key, " = ", o.substr(eq + 1), "\n");
    try {
      toml::parse(text);
    } catch (const toml::parse_error&) {
      // Not a TOML value: a bare word, taken as a string.
      std::string quoted;
      for (char ch : o.substr(eq + 1)) {
        if (ch == '"' || ch == '\\') quoted.push_back('\\');
        quoted.push_back(ch);
      }
      text = absl::StrCat(key, " = \"", quoted, "\"\n");
    }
    FEDFM_ASSIGN_OR_RETURN(config, ParseRunConfig(text, absl::StrCat("--set ", o), config));
  }
  return config;
}

absl::Status ValidateRunConfig(const RunConfig& c) {
  std::vector<std::string> errors;
  if (c.secagg.enabled && c.aggregation.robust != "none") {
    errors.push_back(absl::StrCat("aggregation.robust = \"", c.aggregation.robust,
                                  "\" needs every update in the clear and cannot run with secagg.enabled = true; "
                                  "set aggregation.robust = \"none\" or disable secagg"));
  }
  if (c.dp.enabled && c.aggregation.robust != "none") {
    errors.push_back(absl::StrCat("aggregation.robust = \"", c.aggregation.robust,
                                  "\" cannot be combined with dp.enabled = true: the DP guarantee covers the "
                                  "clipped, noised mean only; set aggregation.robust = \"none\" or disable dp"));
  }
  if ((c.aggregation.robust == "krum" || c.aggregation.robust == "multi_krum") &&
      c.rounds.clients_per_round < 2 * c.aggregation.byzantine + 3) {
    errors.push_back(absl::StrCat("aggregation.robust = \"", c.aggregation.robust, "\" with aggregation.byzantine = ",
                                  c.aggregation.byzantine, " needs at least 2f + 3 = ",
                                  2 * c.aggregation.byzantine + 3, " updates per round, but rounds.clients_per_round = ",
                                  c.rounds.clients_per_round));
  }
  if (c.dp.enabled && c.dp.mode == "distributed" && !c.secagg.enabled) {
    errors.push_back("dp.mode = \"distributed\" relies on secure aggregation: set secagg.enabled = true");
  }
  if (c.train.optimizer_state == "global") {
    // The state's moments are the mean of the clients' only when the new
    // state is old + mean delta, and only values in the clear can be averaged
    // at their scale: v ~ g^2 is far below the secure sum's fixed-point step.
    const std::string why = "train.optimizer_state = \"global\" averages the clients' AdamW moments";
    if (c.train.optimizer != "adamw") {
      errors.push_back(absl::StrCat(why, " and needs train.optimizer = \"adamw\", got \"", c.train.optimizer, "\""));
    }
    if (c.aggregation.algorithm != "fedavg" || c.aggregation.server_lr != 1.0) {
      errors.push_back(absl::StrCat(why, ", which is exact only with aggregation.algorithm = \"fedavg\" and "
                                    "aggregation.server_lr = 1 (got \"", c.aggregation.algorithm, "\", ",
                                    c.aggregation.server_lr, ")"));
    }
    if (c.secagg.enabled) {
      errors.push_back(absl::StrCat(why, " in the clear: their second moments (~ gradient^2) fall below secure "
                                    "aggregation's fixed-point resolution; set secagg.enabled = false or "
                                    "train.optimizer_state = \"fresh\""));
    }
    if (c.dp.enabled) {
      errors.push_back(absl::StrCat(why, " and cannot be combined with dp.enabled = true: clipping and noise "
                                    "would apply to the moments too"));
    }
  }
  if (c.rounds.min_clients > c.rounds.clients_per_round) {
    errors.push_back(absl::StrCat("rounds.min_clients (", c.rounds.min_clients, ") exceeds rounds.clients_per_round (",
                                  c.rounds.clients_per_round, ")"));
  }
  for (int r : c.lora.client_ranks) {
    if (r > c.lora.rank) {
      errors.push_back(absl::StrCat("peft.lora.client_ranks holds ", r, ", above the global rank peft.lora.rank = ",
                                    c.lora.rank));
    }
  }
  if (c.lora.targets.empty()) errors.push_back("peft.lora.targets must name at least one projection");
  std::set<std::string> profile_names;
  for (const SimProfileOptions& p : c.simulation.profiles) {
    if (p.name.empty()) errors.push_back("simulation.profiles: every profile needs a name");
    if (!profile_names.insert(p.name).second) {
      errors.push_back(absl::StrCat("simulation.profiles: the name \"", p.name, "\" is defined twice"));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "; "));
  return absl::OkStatus();
}

std::string RunConfigToToml(const RunConfig& config) {
  RunConfig copy = config;
  Writer writer;
  VisitSchema(copy, writer);
  std::string text = writer.str();
  return text.empty() || text[0] != '\n' ? text : text.substr(1);
}

}  // namespace fedfm::protocols
