// fedfm model info | generate | eval, and fedfm bench model. Thin: flags in,
// model/tasks.h does the work (torch-free header), results out as text or
// one JSON object.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "model/config.h"
#include "model/tasks.h"
#include "peft/tasks.h"

namespace fedfm::cli {
namespace {

using nlohmann::json;

constexpr char kDefaultModel[] = "assets/stories260K/stories260K.bin";
constexpr char kDefaultTokenizer[] = "assets/stories260K/tok512.bin";

const char* RopeStyleName(model::RopeStyle style) {
  return style == model::RopeStyle::kHalves ? "halves" : "adjacent_pairs";
}

const char* RopeScalingName(model::RopeScalingType type) {
  switch (type) {
    case model::RopeScalingType::kNone: return "none";
    case model::RopeScalingType::kLinear: return "linear";
    case model::RopeScalingType::kLlama3: return "llama3";
  }
  return "?";
}

json SummaryJson(const model::ModelSummary& s) {
  const model::ModelConfig& c = s.checkpoint.config;
  return json{{"path", s.checkpoint.path.string()},
              {"format", model::CheckpointFormatName(s.checkpoint.format)},
              {"architecture", c.architecture},
              {"dtype", s.checkpoint.dtype},
              {"parameters", s.num_parameters},
              {"dim", c.dim},
              {"hidden_dim", c.hidden_dim},
              {"n_layers", c.n_layers},
              {"n_heads", c.n_heads},
              {"n_kv_heads", c.n_kv_heads},
              {"head_dim", c.HeadDim()},
              {"vocab_size", c.vocab_size},
              {"max_seq_len", c.max_seq_len},
              {"rope_theta", c.rope_theta},
              {"rope_scaling", RopeScalingName(c.rope_scaling.type)},
              {"rope_style", RopeStyleName(c.rope_style)},
              {"norm_eps", c.norm_eps},
              {"tied_head", c.tied_head},
              {"qkv_bias", c.qkv_bias}};
}

void AddTargetFlags(CLI::App* app, model::RunTarget* target) {
  app->add_option("--dtype", target->dtype, "Compute precision: f32 or bf16")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  app->add_option("--device", target->device, "cpu or cuda[:N]")->capture_default_str();
}

json PhaseJson(const model::BenchPhase& p) {
  return json{{"ms_per_iter", p.ms_per_iter},
              {"cpu_ms_per_iter", p.cpu_ms_per_iter},
              {"tokens_per_s", p.tokens_per_s},
              {"peak_memory_bytes", p.peak_memory_bytes}};
}

}  // namespace

void RegisterModelCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  CLI::App* cmd = app.add_subcommand("model", "Inspect, generate with and evaluate a foundation model");
  cmd->require_subcommand(1);

  auto* info = cmd->add_subcommand("info", "Print a checkpoint's architecture, dimensions and parameter count (JSON)");
  auto info_model = std::make_shared<std::string>(kDefaultModel);
  info->add_option("--model", *info_model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  info->callback([&action, info_model] {
    action = [info_model] {
      auto summary = model::DescribeModel(*info_model);
      if (!summary.ok()) return Fail("model info", summary.status());
      std::printf("%s\n", SummaryJson(*summary).dump(2).c_str());
      return kExitOk;
    };
  });

  auto* generate = cmd->add_subcommand("generate", "Continue a prompt, streaming tokens to stdout");
  auto gen = std::make_shared<model::GenerateRequest>();
  gen->model = kDefaultModel;
  gen->tokenizer = kDefaultTokenizer;
  gen->max_tokens = 256;
  generate->add_option("--model", gen->model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  generate->add_option("--tokenizer", gen->tokenizer, "tokenizer .bin (llama2.c) or tokenizer.json")
      ->capture_default_str();
  generate->add_option("--prompt", gen->prompt, "Text to continue (empty: start from BOS)");
  generate->add_option("--max-tokens", gen->max_tokens, "New tokens at most")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20))
      ->capture_default_str();
  generate->add_option("--temperature", gen->temperature, "0 = greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  generate->add_option("--top-p", gen->top_p, "Nucleus sampling mass, (0, 1]")
      ->check(CLI::Range(1e-9, 1.0))
      ->capture_default_str();
  generate->add_option("--seed", gen->seed, "Sampler seed")->capture_default_str();
  AddTargetFlags(generate, &gen->target);
  generate->callback([&action, gen] {
    action = [gen] {
      absl::Status status = model::GenerateText(*gen, [](const std::string& piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      });
      std::printf("\n");
      if (!status.ok()) return Fail("model generate", status);
      return kExitOk;
    };
  });

  auto* eval = cmd->add_subcommand("eval", "Mean next-token loss and perplexity on a text file (JSON)");
  auto ev = std::make_shared<model::EvalRequest>();
  ev->model = kDefaultModel;
  ev->tokenizer = kDefaultTokenizer;
  eval->add_option("--model", ev->model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  eval->add_option("--tokenizer", ev->tokenizer, "tokenizer .bin (llama2.c) or tokenizer.json")
      ->capture_default_str();
  eval->add_option("--text", ev->text, "Text file; documents separated by <|endoftext|>")->required();
  eval->add_option("--max-tokens", ev->max_tokens, "Score at most this many tokens (0 = all)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  eval->add_option("--seq-len", ev->seq_len, "Window length in tokens")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  eval->add_option("--batch", ev->batch_size, "Windows per forward pass")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  auto adapter = std::make_shared<std::string>();
  eval->add_option("--adapter", *adapter, "LoRA adapter directory (HF PEFT layout) to apply");
  AddTargetFlags(eval, &ev->target);
  eval->callback([&action, ev, adapter] {
    action = [ev, adapter] {
      auto result = adapter->empty() ? model::EvaluateText(*ev) : peft::EvaluateTextWithAdapter(*ev, *adapter);
      if (!result.ok()) return Fail("model eval", result.status());
      json out{{"model", ev->model.string()},
               {"text", ev->text.string()},
               {"mean_loss_nats", result->mean_loss},
               {"perplexity", result->perplexity},
               {"tokens", result->tokens},
               {"documents", result->documents},
               {"seq_len", result->seq_len},
               {"seconds", result->seconds},
               {"tokens_per_s", result->seconds > 0 ? result->tokens / result->seconds : 0.0}};
      if (!adapter->empty()) out["adapter"] = *adapter;
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });
}

void RegisterModelBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  CLI::App* cmd = bench.add_subcommand("model", "Forward tokens/s and peak memory of a model");
  auto req = std::make_shared<model::BenchRequest>();
  req->model = kDefaultModel;
  cmd->add_option("--model", req->model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  cmd->add_option("--batch", req->batch, "Sequences per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seq-len", req->seq_len, "Tokens per sequence")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--iters", req->iters, "Timed iterations per phase")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--warmup", req->warmup, "Untimed iterations before each phase")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", req->seed, "Seed of the random token ids")->capture_default_str();
  AddTargetFlags(cmd, &req->target);
  cmd->callback([&action, req] {
    action = [req] {
      auto r = model::BenchForward(*req);
      if (!r.ok()) return Fail("bench model", r.status());
      json out{{"benchmark", "model"},
               {"model", SummaryJson(r->model)},
               {"device", req->target.device},
               {"dtype", req->target.dtype},
               {"batch", req->batch},
               {"seq_len", req->seq_len},
               {"iters", req->iters},
               {"threads", r->threads},
               {"cores", r->cores},
               {"torch_version", r->torch_version},
               {"fused_attention", r->fused_attention},
               {"forward", PhaseJson(r->forward)},
               {"forward_loss", PhaseJson(r->forward_loss)},
               {"train_step_all_blocks", PhaseJson(r->train_step)},
               {"forward_tokens_per_s", r->forward.tokens_per_s}};
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });
}

}  // namespace fedfm::cli
