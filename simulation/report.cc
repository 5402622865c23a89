#include "simulation/report.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "protocols/config/config.h"
#include "protocols/file_util.h"
#include "protocols/status_macros.h"

extern char** environ;

namespace fedfm::simulation {
namespace {

using nlohmann::json;
using protocols::Method;

constexpr Method kMethods[] = {Method::kLora, Method::kPartial, Method::kZerothOrder};

const char* Pretty(Method m) {
  switch (m) {
    case Method::kLora: return "LoRA";
    case Method::kPartial: return "partial layers";
    case Method::kZerothOrder: return "zeroth order";
    default: return "auto";
  }
}

// NaN and infinities as null.
json Num(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

std::string Fmt(double v, int digits = 3) {
  if (!std::isfinite(v)) return "-";
  return absl::StrFormat("%.*f", digits, v);
}

std::string Bytes(double b) {
  if (b < 1024) return absl::StrFormat("%.0f B", b);
  if (b < 1024.0 * 1024) return absl::StrFormat("%.1f KiB", b / 1024);
  if (b < 1024.0 * 1024 * 1024) return absl::StrFormat("%.1f MiB", b / (1024.0 * 1024));
  return absl::StrFormat("%.2f GiB", b / (1024.0 * 1024 * 1024));
}

std::string HtmlEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Totals of one method over every round.
struct MethodTotals {
  int64_t selected = 0, uploaded = 0, dropped = 0, stragglers = 0, other = 0, client_steps = 0;
  uint64_t bytes_up = 0, bytes_down = 0;
  double last_train_loss = kNaN;
  uint64_t memory_estimate_bytes = 0;
};

std::map<Method, MethodTotals> Totals(const SimulationResult& result) {
  std::map<Method, MethodTotals> t;
  for (const RoundRecord& r : result.rounds) {
    for (const auto& [m, s] : r.methods) {
      MethodTotals& x = t[m];
      x.selected += s.selected;
      x.uploaded += s.uploaded;
      x.dropped += s.dropped;
      x.stragglers += s.stragglers;
      x.other += s.other;
      x.client_steps += s.client_steps;
      x.bytes_up += s.bytes_up;
      x.bytes_down += s.bytes_down;
      if (std::isfinite(s.train_loss)) x.last_train_loss = s.train_loss;
      x.memory_estimate_bytes = std::max(x.memory_estimate_bytes, s.memory_estimate_bytes);
    }
  }
  return t;
}

// Runs `argv` (searched in PATH) with stdout and stderr into `log`; the exit
// status, or -1 when it could not start.
int Spawn(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string Quoted(const std::filesystem::path& p) {
  std::string s = p.string();
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string Dat(double v) { return std::isfinite(v) ? absl::StrFormat("%.9g", v) : "NaN"; }

absl::Status WritePlots(const std::filesystem::path& dir, const SimulationResult& result, ReportFiles* files) {
  const std::filesystem::path log = dir / "gnuplot.log";
  std::error_code ec;
  std::filesystem::remove(log, ec);
  const int have = Spawn({"gnuplot", "-e", "set terminal pngcairo"}, log);
  std::string terminal = "pngcairo size 900,520 font \"Sans,11\"";
  if (have != 0) {
    if (Spawn({"gnuplot", "-e", "set terminal png"}, log) != 0) {
      files->plot_warning = "gnuplot with a png terminal was not found: no plots (install gnuplot-nox)";
      return absl::OkStatus();
    }
    terminal = "png size 900,520";
  }
  std::string loss = "# round virtual_end_s train_loss eval_loss\n";
  std::string methods = "# round virtual_end_s train_loss_lora train_loss_partial train_loss_zo\n";
  std::string bytes = "# round KiB(up+down)_lora KiB_partial KiB_zo\n";
  for (const RoundRecord& r : result.rounds) {
    if (!r.committed) continue;
    absl::StrAppend(&loss, r.round, " ", Dat(r.virtual_end_s), " ", Dat(r.train_loss), " ", Dat(r.eval_loss), "\n");
    if (r.round == 0 || r.evaluation) continue;
    absl::StrAppend(&methods, r.round, " ", Dat(r.virtual_end_s));
    absl::StrAppend(&bytes, r.round);
    for (Method m : kMethods) {
      auto it = r.methods.find(m);
      const bool has = it != r.methods.end();
      absl::StrAppend(&methods, " ", Dat(has ? it->second.train_loss : kNaN));
      const double kib = has ? static_cast<double>(it->second.bytes_up + it->second.bytes_down) / 1024.0 : 0.0;
      absl::StrAppend(&bytes, " ", kib > 0 ? Dat(kib) : "NaN");
    }
    absl::StrAppend(&methods, "\n");
    absl::StrAppend(&bytes, "\n");
  }
  const std::filesystem::path loss_dat = dir / "loss.dat", methods_dat = dir / "methods.dat",
                              bytes_dat = dir / "bytes.dat", script = dir / "plots.gp";
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(loss_dat, loss));
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(methods_dat, methods));
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(bytes_dat, bytes));
  const std::filesystem::path p1 = dir / "loss_vs_round.png", p2 = dir / "loss_vs_virtual_time.png",
                              p3 = dir / "bytes_per_round.png";
  // Only the methods that took part get a curve and a bar.
  std::map<Method, bool> present;
  int64_t last_round = 0;
  for (const RoundRecord& r : result.rounds) {
    last_round = std::max(last_round, r.round);
    for (const auto& [m, x] : r.methods) present[m] = present[m] || x.uploaded > 0;
  }
  const char* colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c"};
  std::vector<std::string> method_curves, bars;
  for (int i = 0; i < 3; ++i) {
    if (!present[kMethods[i]]) continue;
    method_curves.push_back(absl::StrCat(Quoted(methods_dat), " using 2:", 3 + i, " with linespoints ls ", 1 + i,
                                         " title \"", Pretty(kMethods[i]), "\""));
    const std::string xtic =
        absl::StrCat(":xtic(int($1) % ", std::max<int64_t>(1, last_round / 15), " == 0 ? stringcolumn(1) : \"\")");
    bars.push_back(absl::StrCat(Quoted(bytes_dat), " using ", 2 + i, bars.empty() ? xtic : "", " lc rgb '",
                                colors[i], "' title \"", Pretty(kMethods[i]), "\""));
  }
  method_curves.push_back(absl::StrCat(Quoted(loss_dat), " using 2:4 with linespoints ls 4 title \"eval (global)\""));
  std::string gp = absl::StrCat(
      "# Generated by fedfm simulate; run `gnuplot plots.gp` to redraw.\n", "set terminal ", terminal, "\n",
      "set datafile missing \"NaN\"\nset grid\nset key top right\n",
      "set style line 1 lc rgb '#1f77b4' lw 2 pt 7\nset style line 2 lc rgb '#ff7f0e' lw 2 pt 5\n",
      "set style line 3 lc rgb '#2ca02c' lw 2 pt 9\nset style line 4 lc rgb '#444444' lw 2 pt 13 dt 2\n",
      "set output ", Quoted(p1), "\nset title \"Loss by round\"\nset xlabel \"round\"\n",
      last_round <= 30 ? "set xtics 1\n" : "", "set ylabel \"loss (nats per token)\"\n", "plot ", Quoted(loss_dat),
      " using 1:3 with linespoints ls 1 title \"train (clients' mean, before their steps)\", ", Quoted(loss_dat),
      " using 1:4 with linespoints ls 4 title \"eval (held-out, global state)\"\n", "set output ", Quoted(p2),
      "\nset title \"Train loss by method vs virtual time\"\nset xlabel \"virtual time (s)\"\nset xtics autofreq\n",
      "plot ", absl::StrJoin(method_curves, ", "), "\n", "set output ", Quoted(p3),
      "\nset title \"Traffic per round by method (up + down)\"\nset xlabel \"round\"\n",
      "set ylabel \"KiB (log scale)\"\nset logscale y\nset style data histograms\n",
      "set style histogram clustered gap 1\nset style fill solid 0.85 border -1\nset key top left\n");
  if (!bars.empty()) absl::StrAppend(&gp, "plot ", absl::StrJoin(bars, ", "), "\n");
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(script, gp));
  const int rc = Spawn({"gnuplot", script.string()}, log);
  if (rc != 0) {
    files->plot_warning = absl::StrCat("gnuplot failed (exit ", rc, "); see ", log.string());
    return absl::OkStatus();
  }
  files->plots = {p1, p2};
  if (!bars.empty()) files->plots.push_back(p3);
  return absl::OkStatus();
}

json MethodJson(const MethodRound& m) {
  return json{{"selected", m.selected},
              {"uploaded", m.uploaded},
              {"dropped", m.dropped},
              {"stragglers", m.stragglers},
              {"other", m.other},
              {"bytes_up", m.bytes_up},
              {"bytes_down", m.bytes_down},
              {"train_loss", Num(m.train_loss)},
              {"compute_virtual_s", Num(m.compute_virtual_s)},
              {"memory_estimate_bytes", m.memory_estimate_bytes},
              {"client_steps", m.client_steps}};
}

}  // namespace

std::string RoundJson(const RoundRecord& r) {
  json j;
  j["round"] = r.round;
  j["attempt"] = r.attempt;
  j["kind"] = r.round == 0 ? "initial" : (r.evaluation ? "evaluate" : "train");
  j["committed"] = r.committed;
  if (!r.failure.empty()) j["failure"] = r.failure;
  j["train_loss"] = Num(r.train_loss);
  j["eval_loss"] = Num(r.eval_loss);
  if (std::isfinite(r.eval_accuracy)) j["eval_accuracy"] = r.eval_accuracy;
  j["virtual_start_s"] = r.virtual_start_s;
  j["virtual_end_s"] = r.virtual_end_s;
  j["virtual_round_s"] = r.virtual_end_s - r.virtual_start_s;
  j["clients_polled"] = r.clients_polled;
  json participants = json::object(), methods = json::object();
  uint64_t up = 0, down = 0;
  for (const auto& [m, s] : r.methods) {
    participants[protocols::MethodName(m)] = s.uploaded;
    methods[protocols::MethodName(m)] = MethodJson(s);
    up += s.bytes_up;
    down += s.bytes_down;
  }
  j["participants"] = participants;
  j["bytes_up"] = up;
  j["bytes_down"] = down;
  j["methods"] = methods;
  // Trainer metrics that depend on the machine go with the measured values.
  json metrics = json::object(), measured_metrics = json::object();
  for (const auto& [name, v] : r.metrics) {
    const bool machine = name == "tokens_per_s" || name == "train_seconds" || name == "peak_memory_bytes" ||
                         name.find("seconds") != std::string::npos || name.find("per_s") != std::string::npos;
    (machine ? measured_metrics : metrics)[name] = Num(v);
  }
  j["metrics"] = metrics;
  j["measured"] = json{{"wall_s", r.wall_s},
                       {"wall_total_s", r.wall_total_s},
                       {"train_wall_s", r.train_wall_s},
                       {"client_peak_memory_bytes", r.peak_memory_bytes},
                       {"metrics", measured_metrics}};
  return j.dump();
}

double OverheadFraction(const SimulationResult& result) {
  if (result.process_cpu_s <= 0) return kNaN;
  return std::clamp(1.0 - (result.train_cpu_s + result.eval_cpu_s) / result.process_cpu_s, 0.0, 1.0);
}

std::string SummaryJson(const protocols::RunConfig& config, const SimulationResult& result,
                        const RunContext& context) {
  json j;
  j["run"] = json{{"name", config.run.name},
                  {"run_id", result.run_id},
                  {"seed", config.run.seed},
                  {"training_rounds", config.run.rounds},
                  {"finish_reason", result.finish_reason}};
  j["model"] = context.model;
  j["data"] = context.data;
  j["secagg"] = config.secagg.enabled;
  j["deadline_s"] = config.rounds.deadline_s;
  if (config.secagg.enabled) j["secagg_phase_s"] = result.secagg_phase_s;
  j["clients"] = config.simulation.num_clients;
  j["clients_per_round"] = config.rounds.clients_per_round;
  json fleet = json::array();
  for (const FleetEntry& f : result.fleet) {
    fleet.push_back(json{{"device", f.device},
                         {"description", f.description},
                         {"clients", f.clients},
                         {"method", f.method},
                         {"lora_rank", f.lora_rank},
                         {"top_blocks", f.top_blocks},
                         {"estimated_round_s", f.estimated_round_s},
                         {"estimated_memory_bytes", f.estimated_memory_bytes}});
  }
  j["fleet"] = fleet;
  const double reduction = result.initial_eval_loss - result.final_eval_loss;
  j["loss"] = json{{"initial_eval", Num(result.initial_eval_loss)},
                   {"final_eval", Num(result.final_eval_loss)},
                   {"reduction", Num(reduction)},
                   {"relative_reduction", Num(reduction / result.initial_eval_loss)}};
  json methods = json::object();
  for (const auto& [m, t] : Totals(result)) {
    methods[protocols::MethodName(m)] = json{{"client_rounds", t.selected},
                                             {"uploaded", t.uploaded},
                                             {"dropped", t.dropped},
                                             {"stragglers", t.stragglers},
                                             {"other", t.other},
                                             {"bytes_up", t.bytes_up},
                                             {"bytes_down", t.bytes_down},
                                             {"client_steps", t.client_steps},
                                             {"last_train_loss", Num(t.last_train_loss)},
                                             {"memory_estimate_bytes", t.memory_estimate_bytes}};
  }
  j["methods"] = methods;
  int64_t committed = 0, failed = 0;
  for (const RoundRecord& r : result.rounds) {
    if (r.round == 0) continue;
    (r.committed ? committed : failed) += 1;
  }
  j["rounds_committed"] = committed;
  j["rounds_failed"] = failed;
  j["virtual_time_s"] = result.virtual_time_s;
  j["client_steps"] = result.client_steps;
  j["memory"] = json{{"registry_bytes", result.registry_bytes},
                     {"registry_bytes_per_client",
                      static_cast<double>(result.registry_bytes) / std::max(1, config.simulation.num_clients)},
                     {"peak_live_clients", result.peak_live_clients},
                     {"peak_live_client_bytes", result.peak_live_client_bytes},
                     {"shared_model_bytes", context.shared_bytes}};
  const int cores = std::max(1, context.cores);
  j["measured"] = json{{"wall_s", result.wall_s},
                       {"setup_wall_s", context.setup_wall_s},
                       {"train_wall_s", result.train_wall_s},
                       {"eval_wall_s", result.eval_wall_s},
                       {"train_cpu_s", result.train_cpu_s},
                       {"eval_cpu_s", result.eval_cpu_s},
                       {"process_cpu_s", result.process_cpu_s},
                       {"overhead_fraction", Num(OverheadFraction(result))},
                       {"client_steps_per_s", Num(result.client_steps / std::max(1e-9, result.wall_s))},
                       {"client_steps_per_train_cpu_s", Num(result.client_steps / std::max(1e-9, result.train_cpu_s))},
                       {"client_steps_per_s_per_core",
                        Num(result.client_steps / std::max(1e-9, result.wall_s) / cores)},
                       {"workers", result.workers},
                       {"torch_threads", context.torch_threads},
                       {"cores", context.cores},
                       {"machine", context.machine}};
  return j.dump(2);
}

std::string SummaryTable(const SimulationResult& result) {
  std::string out;
  int64_t committed = 0;
  for (const RoundRecord& r : result.rounds) committed += r.round > 0 && r.committed && !r.evaluation;
  const double red = result.initial_eval_loss - result.final_eval_loss;
  absl::StrAppend(&out, "  eval loss      ", Fmt(result.initial_eval_loss), " -> ", Fmt(result.final_eval_loss),
                  std::isfinite(red) && result.initial_eval_loss != 0
                      ? absl::StrFormat("  (%+.1f%%)", -100.0 * red / result.initial_eval_loss)
                      : std::string(),
                  "   after ", committed, " training rounds\n");
  absl::StrAppend(&out, "  virtual time   ", Fmt(result.virtual_time_s, 2), " s        wall ",
                  Fmt(result.wall_s, 1), " s (", result.workers, " training threads, overhead ",
                  Fmt(100.0 * OverheadFraction(result), 1), "% of CPU)\n");
  const std::map<Method, MethodTotals> totals = Totals(result);
  std::map<Method, std::string> devices;
  size_t width = 7;
  for (Method m : kMethods) {
    std::vector<std::string> names;
    for (const FleetEntry& f : result.fleet) {
      if (f.method == protocols::MethodName(m)) names.push_back(absl::StrCat(f.device, " x", f.clients));
    }
    devices[m] = absl::StrJoin(names, ", ");
    width = std::max(width, devices[m].size());
  }
  const int w = static_cast<int>(width);
  absl::StrAppend(&out, absl::StrFormat("  %-14s %-*s %8s %8s %8s %10s %10s %10s %10s\n", "method", w, "devices",
                                        "sampled", "uploaded", "dropped", "stragglers", "bytes up", "bytes down",
                                        "train loss"));
  for (Method m : kMethods) {
    auto it = totals.find(m);
    if (it == totals.end() && devices[m].empty()) continue;
    const MethodTotals t = it == totals.end() ? MethodTotals{} : it->second;
    absl::StrAppend(&out, absl::StrFormat("  %-14s %-*s %8d %8d %8d %10d %10s %10s %10s\n", Pretty(m), w,
                                          devices[m], t.selected, t.uploaded, t.dropped, t.stragglers,
                                          Bytes(static_cast<double>(t.bytes_up)),
                                          Bytes(static_cast<double>(t.bytes_down)), Fmt(t.last_train_loss)));
  }
  return out;
}

absl::StatusOr<ReportFiles> WriteReport(const std::filesystem::path& dir, const protocols::RunConfig& config,
                                        const SimulationResult& result, const RunContext& context) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir.string(), ": ", ec.message()));
  const std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  ReportFiles files;
  files.results = abs / "results.jsonl";
  files.summary = abs / "summary.json";
  files.html = abs / "report.html";
  std::string lines;
  for (const RoundRecord& r : result.rounds) absl::StrAppend(&lines, RoundJson(r), "\n");
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(files.results, lines));
  const std::string summary = SummaryJson(config, result, context);
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(files.summary, summary + "\n"));
  FEDFM_RETURN_IF_ERROR(WritePlots(abs, result, &files));

  // The HTML report.
  std::string h = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>fedfm simulation: ", HtmlEscape(config.run.name),
      "</title>\n<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
      "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
      "th{background:#f3f3f3}td.l,th.l{text-align:left}img{max-width:100%}pre{background:#f7f7f7;padding:1em;"
      "overflow-x:auto}</style></head><body>\n<h1>fedfm simulation: ",
      HtmlEscape(config.run.name), "</h1>\n<p>", HtmlEscape(context.model), "<br>", HtmlEscape(context.data),
      "<br>", config.simulation.num_clients, " virtual clients, ", config.rounds.clients_per_round,
      " sampled per round, deadline ", config.rounds.deadline_s, " s of virtual time, SecAgg+ ",
      config.secagg.enabled ? absl::StrCat("on (key phases time out after ", result.secagg_phase_s, " s)") : "off",
      ". ", HtmlEscape(result.finish_reason), ".</p>\n");
  absl::StrAppend(&h, "<h2>Summary</h2>\n<pre>", HtmlEscape(SummaryTable(result)), "</pre>\n");
  absl::StrAppend(&h, "<h2>Fleet</h2>\n<p>Methods as coordinator::ChooseMethod assigns them at nominal speed.</p>",
                  "<table><tr><th class=l>device</th><th class=l>what</th><th>clients</th><th class=l>method</th>"
                  "<th>rank</th><th>k</th><th>est. round (s)</th><th>est. memory</th></tr>\n");
  for (const FleetEntry& f : result.fleet) {
    absl::StrAppend(&h, "<tr><td class=l>", HtmlEscape(f.device), "</td><td class=l>", HtmlEscape(f.description),
                    "</td><td>", f.clients, "</td><td class=l>", HtmlEscape(f.method), "</td><td>", f.lora_rank,
                    "</td><td>", f.top_blocks, "</td><td>", Fmt(f.estimated_round_s, 4), "</td><td>",
                    Bytes(static_cast<double>(f.estimated_memory_bytes)), "</td></tr>\n");
  }
  absl::StrAppend(&h, "</table>\n<h2>Plots</h2>\n");
  if (files.plots.empty()) absl::StrAppend(&h, "<p>", HtmlEscape(files.plot_warning), "</p>\n");
  for (const std::filesystem::path& p : files.plots) {
    absl::StatusOr<std::string> png = protocols::ReadFileToString(p);
    if (!png.ok()) continue;
    absl::StrAppend(&h, "<p><img alt=\"", HtmlEscape(p.filename().string()), "\" src=\"data:image/png;base64,",
                    absl::Base64Escape(*png), "\"></p>\n");
  }
  absl::StrAppend(&h, "<h2>Rounds</h2>\n<table><tr><th>round</th><th>virtual end (s)</th><th>train loss</th>"
                      "<th>eval loss</th><th>LoRA</th><th>partial</th><th>ZO</th><th>dropped</th>"
                      "<th>stragglers</th><th>bytes up</th><th>bytes down</th><th>wall (s)</th></tr>\n");
  for (const RoundRecord& r : result.rounds) {
    int64_t dropped = 0, late = 0;
    uint64_t up = 0, down = 0;
    std::map<Method, int64_t> n;
    for (const auto& [m, s] : r.methods) {
      dropped += s.dropped;
      late += s.stragglers;
      up += s.bytes_up;
      down += s.bytes_down;
      n[m] = s.uploaded;
    }
    absl::StrAppend(&h, "<tr><td>", r.round, r.evaluation ? " (eval)" : "", r.committed ? "" : " (failed)",
                    "</td><td>", Fmt(r.virtual_end_s, 3), "</td><td>", Fmt(r.train_loss), "</td><td>",
                    Fmt(r.eval_loss), "</td><td>", n[Method::kLora], "</td><td>", n[Method::kPartial], "</td><td>",
                    n[Method::kZerothOrder], "</td><td>", dropped, "</td><td>", late, "</td><td>",
                    Bytes(static_cast<double>(up)), "</td><td>", Bytes(static_cast<double>(down)), "</td><td>",
                    Fmt(r.wall_s, 2), "</td></tr>\n");
  }
  absl::StrAppend(&h, "</table>\n<h2>summary.json</h2>\n<pre>", HtmlEscape(summary), "</pre>\n",
                  "<h2>Config</h2>\n<pre>", HtmlEscape(protocols::RunConfigToToml(config)), "</pre>\n</body></html>\n");
  FEDFM_RETURN_IF_ERROR(protocols::WriteFileAtomic(files.html, h));
  return files;
}

}  // namespace fedfm::simulation
