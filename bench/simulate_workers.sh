#!/usr/bin/env bash
# One scenario at several worker counts (clients training at once), side by
# side in one run: wall time, client-steps per second and the final eval
# loss of each, as one JSON object on stdout. On CUDA every worker slot
# trains on a CUDA stream of its own.
#
#   bench/simulate_workers.sh [CONFIG] [WORKERS...]
#       (default: examples/default_sim.toml, workers 1 2 4 8)
#
# Environment: FEDFM (default build/fedfm), DEVICE (cpu | cuda, passed as
# --device; default: the config's model.device), OUT (default
# bench-out/simulate_workers).
set -euo pipefail
cd "$(dirname "$0")/.."
FEDFM=${FEDFM:-build/fedfm}
config=${1:-examples/default_sim.toml}
shift || true
workers=("$@")
[[ ${#workers[@]} -gt 0 ]] || workers=(1 2 4 8)
out=${OUT:-bench-out/simulate_workers}
mkdir -p "$out"
device=()
[[ -n "${DEVICE:-}" ]] && device=(--device "$DEVICE")
for w in "${workers[@]}"; do
  echo "==> workers $w" >&2
  "$FEDFM" simulate --config "$config" --out "$out/w$w" --workers "$w" "${device[@]}" --quiet >&2
done
python3 - "$out" "$config" "${DEVICE:-config}" "${workers[@]}" <<'PY'
import json, os, sys
out, config, device, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs = []
for w in workers:
    s = json.load(open(os.path.join(out, f"w{w}", "summary.json")))
    m = s["measured"]
    runs.append({"workers": int(w), "wall_s": m["wall_s"], "train_wall_s": m["train_wall_s"],
                 "client_steps_per_s": m["client_steps_per_s"], "final_eval_loss": s["loss"]["final_eval"],
                 "torch_threads": m["torch_threads"]})
base = runs[0]["client_steps_per_s"]
for r in runs:
    r["speedup_vs_first"] = r["client_steps_per_s"] / base if base else None
print(json.dumps({"config": config, "device": device, "machine": json.load(open(os.path.join(out, f"w{workers[0]}", "summary.json")))["measured"]["machine"], "runs": runs}, indent=2))
PY
