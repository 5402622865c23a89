#!/usr/bin/env bash
# One LoRA training step on CPU, side by side: `fedfm bench train` (C++ LibTorch)
# and the plain PyTorch reference (bench/cpu/lora_step_reference.py), run one
# after the other on the same machine in the same invocation, same shape:
# stories260K, LoRA rank 4 / alpha 8 on all seven projections, AdamW over the
# adapter, batch 16 x 128, random tokens, intra-op threads = nproc,
# OMP_WAIT_POLICY=PASSIVE for both.
#
# Prints one JSON object on stdout: both results, the machine load before each
# run, and ratio = python s/step / fedfm s/step (medians). Exits 1 when the
# two do not do the same work (model dimensions, parameter counts, shape).
#
# Usage: bench/cpu/compare_lora_step.sh [STEPS [WARMUP]]   (defaults 20, 2)
# Environment: FEDFM (default build/fedfm), PYTHON (default /usr/bin/python3,
# which must have torch), MACHINE (a description; default from the system).
set -euo pipefail

cd "$(dirname "$0")/../.."
STEPS="${1:-20}"
WARMUP="${2:-2}"
FEDFM="${FEDFM:-build/fedfm}"
PYTHON="${PYTHON:-/usr/bin/python3}"
THREADS="$(nproc)"
export OMP_WAIT_POLICY=PASSIVE

if [[ ! -x "$FEDFM" ]]; then
  echo "compare_lora_step: $FEDFM is not an executable (build the fedfm target first)" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import torch' 2>/dev/null; then
  echo "compare_lora_step: $PYTHON cannot import torch (set PYTHON)" >&2
  exit 1
fi

if [[ -z "${MACHINE:-}" ]]; then
  os="$(. /etc/os-release && echo "${PRETTY_NAME:-$(uname -s)}")"
  cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  MACHINE="$os, $THREADS cores, ${cpu:-unknown CPU}"
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
TIMEFORMAT='%R %U %S'

load_fedfm="$(cat /proc/loadavg)"
{ time "$FEDFM" bench train --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
    >"$tmp/fedfm.json" 2>"$tmp/fedfm.log"; } 2>"$tmp/fedfm.time" || {
  echo "compare_lora_step: fedfm bench train failed:" >&2
  cat "$tmp/fedfm.log" >&2
  exit 1
}

load_python="$(cat /proc/loadavg)"
{ time "$PYTHON" bench/cpu/lora_step_reference.py --threads "$THREADS" --steps "$STEPS" --warmup "$WARMUP" \
    >"$tmp/python.json" 2>"$tmp/python.log"; } 2>"$tmp/python.time" || {
  echo "compare_lora_step: the Python reference failed:" >&2
  cat "$tmp/python.log" >&2
  exit 1
}

MACHINE="$MACHINE" LOAD_FEDFM="$load_fedfm" LOAD_PYTHON="$load_python" "$PYTHON" - "$tmp" <<'EOF'
import json, os, sys

tmp = sys.argv[1]
def read(name):
    with open(os.path.join(tmp, name + ".json")) as f:
        return json.loads(f.read().strip().splitlines()[-1])
def process_times(name):
    with open(os.path.join(tmp, name + ".time")) as f:
        real, user, sys_ = (float(v) for v in f.read().split()[-3:])
    return {"process_wall_s": real, "process_cpu_s": user + sys_}
def load(var):
    return [float(v) for v in os.environ[var].split()[:3]]

fedfm, python = read("fedfm"), read("python")
fedfm.update(process_times("fedfm"))
python.update(process_times("python"))
fedfm["load_average_before"] = load("LOAD_FEDFM")
python["load_average_before"] = load("LOAD_PYTHON")

fedfm_s = fedfm["ms_per_step_median"] / 1000.0
python_s = python["s_per_step_median"]
checks = {
    "model_parameters": (fedfm["model_parameters"], python["model_parameters"]),
    "trainable_parameters": (fedfm["trainable_parameters"], python["trainable_parameters"]),
    "rank": (fedfm["rank"], python["rank"]),
    "targets": (sorted(fedfm["targets"]), sorted(python["targets"])),
    "batch": (fedfm["batch"], python["batch"]),
    "seq_len": (fedfm["seq_len"], python["seq_len"]),
    "steps": (fedfm["steps"], python["steps"]),
    "warmup": (fedfm["warmup"], python["warmup"]),
    "optimizer": (fedfm["optimizer"], python["optimizer"]),
    "threads": (fedfm["threads"], python["threads"]),
}
mismatch = {k: {"fedfm": a, "python": b} for k, (a, b) in checks.items() if a != b}
out = {
    "benchmark": "cpu_lora_step",
    "machine": os.environ["MACHINE"],
    "shape": {
        "model": python["model"],
        "dim": python["dim"], "hidden_dim": python["hidden_dim"], "n_layers": python["n_layers"],
        "n_heads": python["n_heads"], "n_kv_heads": python["n_kv_heads"], "vocab_size": python["vocab_size"],
        "rank": python["rank"], "alpha": python["alpha"], "targets": python["targets"],
        "batch": python["batch"], "seq_len": python["seq_len"], "optimizer": "adamw",
        "steps": python["steps"], "warmup": python["warmup"], "threads": python["threads"],
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", ""),
    },
    "trainable_parameters": {"fedfm": fedfm["trainable_parameters"], "python": python["trainable_parameters"]},
    "model_parameters": {"fedfm": fedfm["model_parameters"], "python": python["model_parameters"]},
    "same_work": not mismatch,
    "fedfm_s_per_step": fedfm_s,
    "python_s_per_step": python_s,
    "ratio": python_s / fedfm_s,
    "ratio_mean": python["s_per_step_mean"] / (fedfm["ms_per_step"] / 1000.0),
    "goal_ratio": 2.0,
    "goal_met": python_s / fedfm_s >= 2.0,
    "fedfm": fedfm,
    "python": python,
}
if mismatch:
    out["mismatch"] = mismatch
print(json.dumps(out, indent=2))
sys.exit(1 if mismatch else 0)
EOF
