// fedfm adapter info | export | merge: LoRA adapters in the Hugging Face
// PEFT layout. Thin: flags in, peft/tasks.h does the work (torch-free
// header), one JSON object out.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "peft/tasks.h"
#include "protocols/config/config.h"

namespace fedfm::cli {
namespace {

using nlohmann::json;

json SummaryJson(const peft::AdapterSummary& s) {
  json tensors = json::array();
  for (const peft::AdapterTensorInfo& t : s.tensors) {
    tensors.push_back(json{{"name", t.name}, {"shape", t.shape}, {"file", t.file}});
  }
  json out{{"path", s.path.string()},
           {"peft_type", "LORA"},
           {"r", s.config.r},
           {"lora_alpha", s.config.lora_alpha},
           {"lora_dropout", s.config.lora_dropout},
           {"use_rslora", s.config.use_rslora},
           {"scale", s.scale},
           {"target_modules", s.config.target_modules},
           {"task_type", s.config.task_type},
           {"base_model_name_or_path", s.config.base_model_name_or_path},
           {"layers", s.num_layers},
           {"modules", s.num_modules},
           {"lora_parameters", s.lora_parameters},
           {"head_parameters", s.head_parameters},
           {"full_weight_parameters", s.full_weight_parameters},
           {"parameters", s.lora_parameters + s.head_parameters + s.full_weight_parameters},
           {"tensors", tensors}};
  if (!s.config.modules_to_save.empty()) out["modules_to_save"] = s.config.modules_to_save;
  return out;
}

struct ExportFlags {
  std::string state, out, config, base_model;
  double alpha = 0, dropout = 0;
  bool rslora = false;
};

}  // namespace

void RegisterAdapterCommand(CLI::App& app, Action& action, const GlobalFlags&) {
  CLI::App* cmd = app.add_subcommand("adapter", "Export, merge and inspect LoRA adapters (HF PEFT layout)");
  cmd->require_subcommand(1);

  auto* info = cmd->add_subcommand("info", "r, alpha, targets, parameter count and tensors of an adapter (JSON)");
  auto info_dir = std::make_shared<std::string>();
  info->add_option("--adapter", *info_dir, "Adapter directory (adapter_config.json, adapter_model.safetensors)")
      ->required();
  info->callback([&action, info_dir] {
    action = [info_dir] {
      absl::StatusOr<peft::AdapterSummary> s = peft::DescribeAdapter(*info_dir);
      if (!s.ok()) return Fail("adapter info", s.status());
      std::printf("%s\n", SummaryJson(*s).dump(2).c_str());
      return kExitOk;
    };
  });

  auto* exp = cmd->add_subcommand(
      "export", "A global trainable state (.safetensors) or an adapter directory -> a PEFT adapter directory");
  auto ef = std::make_shared<ExportFlags>();
  exp->add_option("--state", ef->state,
                  "Global state .safetensors (e.g. a coordinator model version) or an adapter directory")
      ->required();
  exp->add_option("--out", ef->out, "Output adapter directory")->required();
  exp->add_option("--config", ef->config, "Run config whose [peft.lora] alpha / dropout / rslora to record");
  exp->add_option("--alpha", ef->alpha, "lora_alpha (default: the config's, the input directory's, or 2 r)")
      ->check(CLI::PositiveNumber);
  exp->add_option("--dropout", ef->dropout, "lora_dropout")->check(CLI::Range(0.0, 0.99));
  exp->add_flag("--rslora", ef->rslora, "use_rslora: scale alpha / sqrt(r)");
  exp->add_option("--base-model", ef->base_model, "base_model_name_or_path to record");
  exp->callback([&action, ef, exp] {
    action = [ef, exp] {
      peft::ExportRequest request;
      request.input = ef->state;
      request.out = ef->out;
      if (!ef->config.empty()) {
        absl::StatusOr<protocols::RunConfig> config = protocols::LoadRunConfig(ef->config);
        if (!config.ok()) return Fail("adapter export", config.status());
        request.alpha = config->lora.alpha;
        request.dropout = config->lora.dropout;
        request.rslora = config->lora.rslora;
        request.base_model = config->model.path;
      }
      if (exp->count("--alpha")) request.alpha = ef->alpha;
      if (exp->count("--dropout")) request.dropout = ef->dropout;
      if (exp->count("--rslora")) request.rslora = ef->rslora;
      if (exp->count("--base-model")) request.base_model = ef->base_model;
      absl::StatusOr<peft::AdapterSummary> s = peft::ExportAdapter(request);
      if (!s.ok()) return Fail("adapter export", s.status());
      json out = SummaryJson(*s);
      out.erase("tensors");
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });

  auto* merge = cmd->add_subcommand(
      "merge", "Base model + adapter -> a merged Hugging Face checkpoint directory (config.json, model.safetensors)");
  auto mr = std::make_shared<peft::MergeRequest>();
  merge->add_option("--model", mr->model, "Base: llama2.c .bin file or Hugging Face directory")->required();
  merge->add_option("--adapter", mr->adapter, "Adapter directory")->required();
  merge->add_option("--out", mr->out, "Output directory (HF layout, loadable by fedfm and transformers)")->required();
  merge->add_option("--dtype", mr->dtype, "Stored precision: F32 | BF16 | F16 (default: the base's)")
      ->check(CLI::IsMember({"F32", "BF16", "F16"}));
  merge->callback([&action, mr] {
    action = [mr] {
      absl::StatusOr<peft::MergeResult> r = peft::MergeAdapterIntoModel(*mr);
      if (!r.ok()) return Fail("adapter merge", r.status());
      json out{{"out", r->out.string()},
               {"base_format", r->base_format},
               {"dtype", r->dtype},
               {"merged_modules", r->merged_modules},
               {"replaced_tensors", r->replaced_tensors},
               {"files", r->files}};
      if (r->dropped_head) out["note"] = "the adapter's classification head is not part of a causal LM checkpoint";
      std::printf("%s\n", out.dump().c_str());
      return kExitOk;
    };
  });
}

}  // namespace fedfm::cli
