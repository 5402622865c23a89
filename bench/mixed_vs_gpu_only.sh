#!/usr/bin/env bash
# The mixed fleet (the default demo, examples/default_sim.toml) against its
# GPU-only subset (bench/scenarios/gpu_only.toml: the same 16-client
# partition and evaluation set, the Pis and phones never online) over
# several seeds, paired seed by seed. One final eval loss is a noisy
# comparison (the two differ by about 0.001 at 10 rounds); this says how
# often and by how much the mixed fleet is lower, and whether that holds
# beyond the seed-to-seed noise. Prints one JSON object.
#
#   bench/mixed_vs_gpu_only.sh [OUT_DIR]     (default: bench-out/mixed_vs_gpu_only)
#
# Environment:
#   FEDFM    the binary (default: build/fedfm)
#   MIXED_CONFIG  the mixed fleet's file (default: examples/default_sim.toml)
#   MIXED_SET     space-separated KEY=VALUE overrides of the mixed runs
#            (fedfm simulate --set), e.g. MIXED_SET=aggregation.zo_mixing=snr
#            into another OUT_DIR
#   SEEDS    space-separated run.seed values (default: 1 2 ... 10)
#   ROUNDS   run.rounds for both (default: 40)
#   LAST     also compare the mean eval loss of the last LAST rounds (default: 5)
#   RESUME=1 skip runs whose summary.json is already in OUT_DIR
set -euo pipefail
cd "$(dirname "$0")/.."
FEDFM=${FEDFM:-build/fedfm}
OUT=${1:-bench-out/mixed_vs_gpu_only}
SEEDS=${SEEDS:-1 2 3 4 5 6 7 8 9 10}
ROUNDS=${ROUNDS:-40}
LAST=${LAST:-5}
MIXED_CONFIG=${MIXED_CONFIG:-examples/default_sim.toml}
MIXED_SET=${MIXED_SET:-}
mixed_set_args=()
for kv in $MIXED_SET; do mixed_set_args+=(--set "$kv"); done
mkdir -p "$OUT"

for seed in $SEEDS; do
  for name in mixed gpu_only; do
    dir="$OUT/${name}_r${ROUNDS}_s${seed}"
    if [ "${RESUME:-0}" = 1 ] && [ -f "$dir/summary.json" ]; then continue; fi
    echo "==> $name, seed $seed, $ROUNDS rounds" >&2
    if [ "$name" = mixed ]; then
      args=(--config "$MIXED_CONFIG" "${mixed_set_args[@]}")
    else
      args=(--config bench/scenarios/gpu_only.toml)
    fi
    "$FEDFM" simulate "${args[@]}" --rounds "$ROUNDS" --seed "$seed" --out "$dir" --quiet >&2
  done
done

python3 - "$OUT" "$MIXED_CONFIG" "$MIXED_SET" "$ROUNDS" "$LAST" $SEEDS <<'EOF'
import json, math, os, sys

out, mixed_config, mixed_set = sys.argv[1], sys.argv[2], sys.argv[3].split()
rounds, last, seeds = int(sys.argv[4]), int(sys.argv[5]), [int(s) for s in sys.argv[6:]]

def run_dir(name, seed):
    return os.path.join(out, f"{name}_r{rounds}_s{seed}")

def eval_losses(name, seed):
    path = os.path.join(run_dir(name, seed), "results.jsonl")
    losses = []
    for line in open(path):
        r = json.loads(line)
        if r.get("kind") == "train" and r.get("committed") and r.get("eval_loss") is not None:
            losses.append(r["eval_loss"])
    if len(losses) < last:
        sys.exit(f"{path}: {len(losses)} evaluated rounds, fewer than LAST={last}")
    return losses

def paired(diffs):
    n = len(diffs)
    mean = sum(diffs) / n
    se = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n) if n > 1 else None  # None: one seed
    return {"mixed_lower_at": sum(d < 0 for d in diffs), "seeds": n,
            "mean_difference": round(mean, 5), "standard_error": None if se is None else round(se, 5),
            "t": round(mean / se, 2) if se else None}

def virtual_s(name, seed):
    return json.load(open(os.path.join(run_dir(name, seed), "summary.json")))["virtual_time_s"]

per_seed, final_d, last_d = [], [], []
for seed in seeds:
    m, g = eval_losses("mixed", seed), eval_losses("gpu_only", seed)
    mf, gf = m[-1], g[-1]
    ml, gl = sum(m[-last:]) / last, sum(g[-last:]) / last
    per_seed.append({"seed": seed, "mixed_final": round(mf, 4), "gpu_only_final": round(gf, 4),
                     f"mixed_last{last}": round(ml, 4), f"gpu_only_last{last}": round(gl, 4),
                     "mixed_virtual_s": round(virtual_s("mixed", seed), 2),
                     "gpu_only_virtual_s": round(virtual_s("gpu_only", seed), 2)})
    final_d.append(mf - gf)
    last_d.append(ml - gl)

# Differences are mixed minus GPU-only: negative means the mixed fleet is lower.
print(json.dumps({"mixed_config": mixed_config, "mixed_set": mixed_set, "rounds": rounds, "final_eval_loss": paired(final_d),
                  f"mean_eval_loss_last{last}_rounds": paired(last_d), "per_seed": per_seed}, indent=1))
EOF
