#include "simulation/data.h"

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/partition.h"
#include "protocols/status_macros.h"
#include "zeroth_order/philox.h"

namespace fedfm::simulation {
namespace {

constexpr uint32_t kPurposeHeldOut = 0x53484F55u;  // "SHOU": the examples held out for evaluation

struct Loaded {
  std::vector<model::Example> examples;
  int num_labels = 0;
  std::string what;
};

absl::StatusOr<Loaded> ReadExamples(const std::string& path, const protocols::DataOptions& data,
                                    const model::Tokenizer& tokenizer, std::vector<std::string> label_names = {}) {
  Loaded out;
  const std::string& f = data.format;
  if (f == "shakespeare" || f == "text") {
    model::GroupedTexts texts;
    if (f == "shakespeare") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadShakespeareBySpeaker(path));
    } else {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadPlainText(path));
    }
    model::WindowOptions w;
    w.seq_len = data.seq_len;
    out.examples = model::MakeLmExamples(tokenizer, texts, w);
    out.what = absl::StrCat(out.examples.size(), " windows of ", data.seq_len, " tokens from ", texts.groups.size(),
                            f == "shakespeare" ? " speakers" : " text(s)");
  } else if (f == "jsonl") {
    FEDFM_ASSIGN_OR_RETURN(model::PromptResponses pairs, model::ReadPromptResponseJsonl(path));
    out.examples = model::MakePromptResponseExamples(tokenizer, pairs, {.max_len = data.seq_len});
    out.what = absl::StrCat(out.examples.size(), " prompt/response pairs");
  } else {
    model::ReadOptions ro;
    ro.label_names = std::move(label_names);
    model::LabeledTexts texts;
    if (f == "tsv") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadLabeledTsv(path, ro));
    } else if (f == "csv") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadLabeledCsv(path, ro));
    } else if (f == "spamassassin") {
      FEDFM_ASSIGN_OR_RETURN(texts, model::ReadSpamAssassin(path, ro));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("data.format \"", f, "\" is not supported by the simulation"));
    }
    out.examples = model::MakeClassificationExamples(tokenizer, texts, {.max_len = data.seq_len});
    out.num_labels = static_cast<int>(texts.label_names.size());
    out.what = absl::StrCat(out.examples.size(), " labelled texts, ", out.num_labels, " classes");
  }
  if (out.examples.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no examples"));
  return out;
}

// The partitioner's labels: classes, or for next-token data the group index
// (groups in sorted order).
std::vector<int32_t> PartitionLabels(const std::vector<model::Example>& examples) {
  std::vector<int32_t> labels(examples.size(), 0);
  bool classified = !examples.empty() && examples.front().label >= 0;
  if (classified) {
    for (size_t i = 0; i < examples.size(); ++i) labels[i] = std::max(0, examples[i].label);
    return labels;
  }
  std::map<std::string, int32_t> ids;
  for (const model::Example& e : examples) ids.emplace(e.group, 0);
  int32_t next = 0;
  for (auto& [name, id] : ids) id = next++;
  for (size_t i = 0; i < examples.size(); ++i) labels[i] = ids[examples[i].group];
  return labels;
}

std::vector<model::Example> EvenlySpaced(std::vector<model::Example> all, size_t max_count) {
  if (all.size() <= max_count) return all;
  std::vector<model::Example> out;
  out.reserve(max_count);
  for (size_t k = 0; k < max_count; ++k) out.push_back(std::move(all[k * all.size() / max_count]));
  return out;
}

}  // namespace

uint64_t ExampleBytes(const std::vector<model::Example>& examples) {
  uint64_t bytes = 0;
  for (const model::Example& e : examples) bytes += 4 * (e.tokens.size() + e.targets.size()) + e.group.size();
  return bytes;
}

client::Dataset SimData::ClientDataset(int64_t c) const {
  client::Dataset d;
  d.train.assign(examples.begin() + begin[c], examples.begin() + eval_begin[c]);
  d.eval.assign(examples.begin() + eval_begin[c], examples.begin() + begin[c + 1]);
  d.num_labels = num_labels;
  return d;
}

client::Dataset SimData::CentralEvalDataset() const {
  client::Dataset d;
  d.eval = central_eval;
  d.num_labels = num_labels;
  return d;
}

uint64_t SimData::RegistryBytes() const {
  return (begin.size() + eval_begin.size()) * sizeof(uint32_t);
}

uint64_t SimData::ClientBytes(int64_t c) const {
  uint64_t bytes = 0;
  for (uint32_t i = begin[c]; i < begin[c + 1]; ++i) {
    bytes += 4 * (examples[i].tokens.size() + examples[i].targets.size()) + examples[i].group.size();
  }
  return bytes;
}

absl::StatusOr<SimData> LayOutSimData(std::vector<model::Example> examples, std::vector<model::Example> central_eval,
                                      int num_labels, const protocols::DataOptions& options, int64_t num_clients,
                                      uint64_t seed) {
  if (num_clients < 1 || num_clients > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat("simulation.num_clients must be in 1..2^30, got ", num_clients));
  }
  if (examples.size() >= (size_t{1} << 32)) {
    return absl::InvalidArgumentError(absl::StrCat("the simulation holds at most 2^32 - 1 examples, got ",
                                                   examples.size()));
  }
  const std::vector<int32_t> labels = PartitionLabels(examples);
  std::vector<std::string> groups;
  if (options.partition.scheme == "natural") {
    groups.reserve(examples.size());
    for (const model::Example& e : examples) groups.push_back(e.group.empty() ? std::string("all") : e.group);
  }
  absl::StatusOr<model::Partition> partition =
      model::MakePartition(options.partition, examples.size(), static_cast<int>(num_clients), seed, labels, groups);
  if (!partition.ok()) {
    return absl::Status(partition.status().code(),
                        absl::StrCat("partitioning ", examples.size(), " examples over ", num_clients,
                                     " clients (data.partition.scheme = \"", options.partition.scheme,
                                     "\"): ", partition.status().message()));
  }
  SimData out;
  out.num_labels = num_labels;
  out.examples.reserve(examples.size());
  out.begin.reserve(static_cast<size_t>(num_clients) + 1);
  out.eval_begin.reserve(static_cast<size_t>(num_clients));
  // Held out once, over all examples, before they are partitioned: every
  // layout of the same data and seed (any scheme, any number of clients)
  // holds out, and centrally evaluates on, the same examples.
  std::vector<bool> held(examples.size(), false);
  if (options.eval_fraction > 0 && examples.size() >= 2) {
    const model::TrainEvalSplit split =
        model::SplitTrainEval(examples.size(), options.eval_fraction, zeroth_order::DeriveSeed(seed, 0, 0, kPurposeHeldOut));
    for (size_t i : split.eval) held[i] = true;
  }
  std::vector<size_t> held_out_index;  // into `examples`
  for (int64_t c = 0; c < num_clients; ++c) {
    const std::vector<size_t>& mine = (*partition)[static_cast<size_t>(c)];
    out.begin.push_back(static_cast<uint32_t>(out.examples.size()));
    std::vector<size_t> train, eval;
    for (size_t i : mine) (held[i] ? eval : train).push_back(i);
    if (train.empty()) {  // a client with only held-out examples trains on them
      train.swap(eval);
    }
    for (size_t i : train) out.examples.push_back(std::move(examples[i]));
    out.eval_begin.push_back(static_cast<uint32_t>(out.examples.size()));
    for (size_t i : eval) out.examples.push_back(examples[i]);
    held_out_index.insert(held_out_index.end(), eval.begin(), eval.end());
  }
  out.begin.push_back(static_cast<uint32_t>(out.examples.size()));
  std::vector<model::Example> held_out;
  if (central_eval.empty()) {
    std::sort(held_out_index.begin(), held_out_index.end());
    for (size_t i : held_out_index) held_out.push_back(std::move(examples[i]));
  }
  if (central_eval.empty() && held_out.empty()) {
    // Clients too small to hold anything out (fewer than 2 examples each):
    // evaluate on training examples rather than on nothing.
    held_out = EvenlySpaced(out.examples, kMaxCentralEvalExamples);
  }
  out.central_eval = EvenlySpaced(central_eval.empty() ? std::move(held_out) : std::move(central_eval),
                                  kMaxCentralEvalExamples);
  return out;
}

absl::StatusOr<SimData> LoadSimData(const protocols::RunConfig& config, const model::Tokenizer& tokenizer,
                                    int64_t num_clients, uint64_t seed) {
  const protocols::DataOptions& data = config.data;
  FEDFM_ASSIGN_OR_RETURN(Loaded loaded, ReadExamples(data.path, data, tokenizer));
  std::vector<model::Example> central;
  if (!data.eval_path.empty()) {
    FEDFM_ASSIGN_OR_RETURN(Loaded eval, ReadExamples(data.eval_path, data, tokenizer));
    central = std::move(eval.examples);
  }
  const size_t total = loaded.examples.size();
  FEDFM_ASSIGN_OR_RETURN(SimData out, LayOutSimData(std::move(loaded.examples), std::move(central), loaded.num_labels,
                                                    data, num_clients, seed));
  out.description = absl::StrCat(data.path, ": ", loaded.what, "; ", data.partition.scheme, " over ", num_clients,
                                 " clients (", total, " examples); central evaluation on ",
                                 out.central_eval.size());
  return out;
}

}  // namespace fedfm::simulation
