// fedfm bench zo: a zeroth-order (MeZO) round of the real trainer on random
// token windows, printing one JSON object: step time against one forward pass
// of the same batch, peak memory against inference, and the bytes a client
// uploads per round in seed-pool form. Thin: client/zeroth_order_trainer_bench.h
// does the work.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "client/zeroth_order_trainer_bench.h"
#include "model/trace.h"

namespace fedfm::cli {

void RegisterZerothOrderBench(CLI::App& bench, Action& action, const GlobalFlags&) {
  CLI::App* cmd = bench.add_subcommand("zo", "Zeroth-order step time and memory versus a forward pass");
  auto req = std::make_shared<client::ZoBenchRequest>();
  auto model = std::make_shared<std::string>(req->model.string());
  cmd->add_option("--model", *model, "llama2.c .bin file or Hugging Face directory")->capture_default_str();
  cmd->add_option("--random-config", req->random_config,
                  "Random weights of a named shape instead of --model: " +
                      absl::StrJoin(client::ZoBenchConfigNames(), ", "))
      ->check(CLI::IsMember(client::ZoBenchConfigNames()));
  cmd->add_option("--batch", req->batch, "Sequences per batch")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--seq-len", req->seq_len, "Tokens per sequence")->check(CLI::Range(2, 1 << 20))->capture_default_str();
  cmd->add_option("--dtype", req->dtype, "Base model precision: f32 or bf16 (the adapter trains in f32)")
      ->check(CLI::IsMember({"f32", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--device", req->device, "cpu or cuda[:N]")->capture_default_str();
  cmd->add_option("--steps", req->steps, "Timed steps")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--warmup", req->warmup, "Untimed steps before")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--seed-pool", req->seed_pool, "K shared seeds (seed-scalar updates); 0 = dense updates")
      ->check(CLI::Range(0, 65536))
      ->capture_default_str();
  cmd->add_option("--rank", req->rank, "LoRA rank of the trained adapter")->check(CLI::Range(1, 256))->capture_default_str();
  cmd->add_option("--perturbations", req->zo.perturbations, "Perturbations per step")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--epsilon", req->zo.epsilon, "Perturbation scale")->check(CLI::PositiveNumber)->capture_default_str();
  cmd->add_option("--zo-lr", req->zo.learning_rate, "Zeroth-order learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--noise", req->zo.noise, "gaussian or rademacher")
      ->check(CLI::IsMember({"gaussian", "rademacher"}))
      ->capture_default_str();
  cmd->add_option("--estimator", req->zo.estimator, "spsa (two forward passes) or forward (forward-mode AD)")
      ->check(CLI::IsMember({"spsa", "forward"}))
      ->capture_default_str();
  cmd->add_option("--seed", req->seed, "Seed of the token ids, adapter and random weights")->capture_default_str();
  auto trace = std::make_shared<std::string>();
  cmd->add_option("--trace", *trace, "Also write a Chrome trace of the LibTorch operators and CUDA kernels to FILE");
  cmd->callback([&action, req, model, trace] {
    action = [req, model, trace] {
      req->model = *model;
      absl::StatusOr<client::ZoBenchResult> r = model::Traced(*trace, req->device.rfind("cuda", 0) == 0, [&] { return client::BenchZerothOrder(*req); });
      if (!r.ok()) return Fail("bench zo", r.status());
      nlohmann::json out{{"benchmark", "zo"},
                         {"model", r->model},
                         {"device", req->device},
                         {"dtype", req->dtype},
                         {"batch", req->batch},
                         {"seq_len", req->seq_len},
                         {"steps", req->steps},
                         {"threads", r->threads},
                         {"estimator", req->zo.estimator},
                         {"noise", req->zo.noise},
                         {"perturbations", req->zo.perturbations},
                         {"seed_pool", req->seed_pool},
                         {"lora_rank", req->rank},
                         {"model_parameters", r->model_parameters},
                         {"trainable_parameters", r->trainable_parameters},
                         {"forward_ms", r->forward_ms},
                         {"forward_ms_min", r->forward_ms_min},
                         {"base_forward_ms", r->base_forward_ms},
                         {"base_forward_ms_min", r->base_forward_ms_min},
                         {"step_ms", r->step_ms},
                         {"step_ms_median", r->step_ms_median},
                         {"step_ms_min", r->step_ms_min},
                         {"step_over_forward", r->step_over_forward},
                         {"step_over_forward_min", r->step_over_forward_min},
                         {"step_over_base_forward", r->step_over_base_forward},
                         {"step_cpu_ms", r->step_cpu_ms},
                         {"forward_cpu_ms", r->forward_cpu_ms},
                         {"step_over_forward_cpu", r->step_over_forward_cpu},
                         {"weight_bytes", r->weight_bytes},
                         {"forward_peak_bytes", r->forward_peak_bytes},
                         {"step_peak_bytes", r->step_peak_bytes},
                         {"forward_peak_total_bytes", r->forward_peak_total_bytes},
                         {"step_peak_total_bytes", r->step_peak_total_bytes},
                         {"peak_ratio", r->peak_ratio},
                         {"seed_scalar_bytes", r->seed_scalar_bytes},
                         {"upload_header_bytes", r->upload_header_bytes},
                         {"upload_header_bytes_without_metrics", r->upload_header_bytes_without_metrics},
                         {"upload_bytes", r->upload_bytes},
                         {"dense_update_bytes", r->dense_update_bytes},
                         {"final_loss", r->final_loss}};
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });
}

}  // namespace fedfm::cli
