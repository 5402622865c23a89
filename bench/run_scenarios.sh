#!/usr/bin/env bash
# The simulation benchmarks: every scenario of bench/scenarios/ (and the
# default demo, examples/default_sim.toml, as the mixed fleet), each one
# `fedfm simulate` run (the centralized twin of the federated LoRA scenarios
# too: centralized_lora, one client holding every example, evaluated on the
# same held-out examples), then one markdown table of the results and the
# issue's targets.
#
#   bench/run_scenarios.sh [OUT_DIR]          (default: bench-out)
#
# Environment:
#   FEDFM    the binary (default: build/fedfm)
#   ONLY     space-separated scenario names to run (default: all); the table
#            covers every scenario whose summary exists in OUT_DIR
#   RESUME=1 skip scenarios whose summary.json is already in OUT_DIR
#   TABLE_ONLY=1 run nothing, print the table of what OUT_DIR holds
set -euo pipefail
cd "$(dirname "$0")/.."
FEDFM=${FEDFM:-build/fedfm}
OUT=${1:-bench-out}
mkdir -p "$OUT"

# name -> config (the mixed fleet is the default demo itself).
SCENARIOS=(
  "mixed:examples/default_sim.toml"
  "fed_lora:bench/scenarios/fed_lora.toml"
  "fed_lora_small_batch:bench/scenarios/fed_lora_small_batch.toml"
  "fed_lora_global_adamw:bench/scenarios/fed_lora_global_adamw.toml"
  "centralized_lora:bench/scenarios/centralized_lora.toml"
  "partial_only:bench/scenarios/partial_only.toml"
  "zo_only:bench/scenarios/zo_only.toml"
  "gpu_only:bench/scenarios/gpu_only.toml"
  "secagg_on:bench/scenarios/secagg_on.toml"
  "secagg_off:bench/scenarios/secagg_off.toml"
  "dropout_0:bench/scenarios/dropout_0.toml"
  "dropout_10:bench/scenarios/dropout_10.toml"
  "dropout_30:bench/scenarios/dropout_30.toml"
  "alpha_0.1:bench/scenarios/alpha_0.1.toml"
  "alpha_1:bench/scenarios/alpha_1.toml"
  "alpha_100:bench/scenarios/alpha_100.toml"
)

wanted() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }
done_already() { [ "${RESUME:-0}" = 1 ] && [ -f "$1" ]; }

if [ "${TABLE_ONLY:-0}" != 1 ]; then
  for entry in "${SCENARIOS[@]}"; do
    name=${entry%%:*}
    config=${entry#*:}
    wanted "$name" || continue
    done_already "$OUT/$name/summary.json" && continue
    echo "==> $name ($config)"
    "$FEDFM" simulate --config "$config" --out "$OUT/$name" --quiet
  done
fi

python3 - "$OUT" <<'EOF'
import json, math, os, sys

out = sys.argv[1]
def load(name, file="summary.json"):
    p = os.path.join(out, name, file)
    return json.load(open(p)) if os.path.exists(p) else None

rows = []
names = ["mixed", "gpu_only", "fed_lora", "fed_lora_small_batch", "fed_lora_global_adamw", "centralized_lora", "partial_only", "zo_only", "secagg_on", "secagg_off",
         "dropout_0", "dropout_10", "dropout_30", "alpha_0.1", "alpha_1", "alpha_100"]
def fmt(v, d=3):
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{d}f}"
print("| scenario | rounds | clients | uploads by method (dropped / late) | eval loss before -> after | reduction | virtual s | wall s | overhead | client-steps/s/core |")
print("|---|---|---|---|---|---|---|---|---|---|")
S = {}
for n in names:
    s = load(n)
    if s is None:
        continue
    S[n] = s
    m = s["methods"]
    ups = ", ".join(f'{k} {v["uploaded"]}/{v["client_rounds"]} ({v["dropped"]}/{v["stragglers"]})' for k, v in m.items())
    me = s["measured"]
    print(f'| {n} | {s["rounds_committed"]} | {s["clients"]} | {ups} | {fmt(s["loss"]["initial_eval"])} -> '
          f'{fmt(s["loss"]["final_eval"])} | {fmt(s["loss"]["reduction"])} | {fmt(s["virtual_time_s"], 2)} | '
          f'{fmt(me["wall_s"], 0)} | {fmt(100 * me["overhead_fraction"], 1)}% | '
          f'{fmt(me["client_steps_per_s_per_core"], 2)} |')

print("\nTargets:")
def red(n):
    return S[n]["loss"]["reduction"] if n in S else None
for n in ("fed_lora", "fed_lora_small_batch", "fed_lora_global_adamw"):
    if "centralized_lora" in S and n in S:
        r = red(n) / red("centralized_lora")
        print(f"- federated LoRA ({n}) / centralized LoRA loss reduction (same number of examples): "
              f"{100 * r:.1f}% (target >= 95%)")
if "zo_only" in S and "fed_lora" in S:
    print(f"- zeroth order alone (50 rounds) / federated LoRA (10 rounds) loss reduction: "
          f"{100 * red('zo_only') / red('fed_lora'):.1f}% (target >= 60% within 5x the rounds)")
if "mixed" in S and "gpu_only" in S:
    # gpu_only keeps the 16-client partition (its Pis and phones never come
    # online), so both are evaluated on the same held-out examples.
    a, b = S["mixed"]["loss"]["final_eval"], S["gpu_only"]["loss"]["final_eval"]
    print(f"- mixed fleet final eval loss {a:.4f} vs its GPU-only subset {b:.4f} (same partition, same "
          f"evaluation set, one seed): {'mixed better' if a < b else 'GPU-only better'} (target: mixed better; "
          f"paired over ten seeds and 40 rounds: bench/mixed_vs_gpu_only.sh)")
if "secagg_on" in S and "secagg_off" in S:
    a, b = S["secagg_on"]["loss"]["final_eval"], S["secagg_off"]["loss"]["final_eval"]
    print(f"- SecAgg+ on vs off final eval loss: {a:.4f} vs {b:.4f}, |difference| {abs(a - b):.4f} (target <= 0.01)")
over = [S[n]["measured"]["overhead_fraction"] for n in S if S[n]["measured"]["overhead_fraction"] is not None]
if over:
    print(f"- simulation overhead (CPU outside Trainer::Train/Evaluate): {100 * min(over):.1f}%..{100 * max(over):.1f}% "
          f"(target < 5%)")
m = next(iter(S.values()), None)
if m:
    print(f'\nMachine: {m["measured"]["machine"]}, {m["measured"]["workers"]} training threads x '
          f'{m["measured"]["torch_threads"]} LibTorch threads.')
EOF
