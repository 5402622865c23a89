#!/usr/bin/env bash
# Builds fedfm on the GPU machine and runs the GPU checks and comparisons in
# one go; each stage has its own time limit, so a slow or failing stage costs
# only its own time and the rest still runs. From the repository root:
#   bench/gpu/run_all.sh [STAGE...]      (default: build gpu model train zo ctest)
# Stages:
#   build   tools/gpu/build.sh --src $SRC_MODE (default auto: the working
#           tree, or the committed snapshot if the tree does not configure;
#           needs .carry/, see tools/gpu/fetch_debs.sh); meanwhile the random Llama-3.2-1B-shaped
#           checkpoint is written to $MODEL_DIR on the GPU
#   gpu     ctest -L gpu, then zeroth_order_gpu_test directly
#   model   fedfm bench model vs transformers eager and sdpa (compare_model.py)
#   train   fedfm bench train vs transformers + peft LoRA (compare_train.py)
#   zo      fedfm bench zo vs published MeZO (mezo_reference.py)
#   ctest   the whole ctest (gRPC tests are not built; the browser test skips
#           without chromium)
#   diag    how libstdc++ is linked and where std::filesystem binds (diag.txt)
#   extra   $EXTRA_CMDS (more benchmark variants), output in bench.log
# Writes to $OUT (default /tmp/fedfm-gpu-out) at most 8 files: build.log,
# tests.log, bench.log, model_compare.json, lora_compare.json,
# zo_compare.json, summary.txt, diag.txt.
# Environment: MODEL_DIR (/tmp/llama-3.2-1b-random), BATCH (8), SEQ_LEN (1024),
# ITERS (10), DEADLINE_S (570: stages are skipped or cut short past it),
# TRAIN_FLAGS / ZO_FLAGS (flags of fedfm bench train / zo after the model,
# dtype, device, batch and length; both default to --steps $ITERS),
# LORA_FLAGS / MEZO_FLAGS (extra flags of the Python references),
# EXTRA_TESTS ("binary:filter[:VAR=value] ...", run alone in the gpu stage),
# CTEST_JOBS (parallel tests; default all cores), CTEST_THREADS (OMP_NUM_THREADS
# of each test, 2).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
out=${OUT:-/tmp/fedfm-gpu-out}
mkdir -p "$out"
model_dir=${MODEL_DIR:-/tmp/llama-3.2-1b-random}
batch=${BATCH:-8}
seq_len=${SEQ_LEN:-1024}
iters=${ITERS:-10}
deadline=$((SECONDS + ${DEADLINE_S:-570}))
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(build gpu model train zo ctest)
summary="$out/summary.txt"
export PYTHONUNBUFFERED=1

note() { echo "$*" | tee -a "$summary"; }
# Seconds left before the deadline, less a margin, capped at $1.
budget() {
  local left=$((deadline - SECONDS - 10))
  ((left > $1)) && left=$1
  echo $((left > 0 ? left : 0))
}
has_stage() { [[ " ${stages[*]} " == *" $1 "* ]]; }

note "== $(date -u +%FT%TZ) stages: ${stages[*]}"
note "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
note "torch: $(python3 -c 'import torch, transformers; print(torch.__version__, "cuda", torch.version.cuda, "transformers", transformers.__version__)' 2>&1 | tail -1)"
note "cpu cores: $(nproc)"

model_pid=""
if has_stage model || has_stage train || has_stage zo; then
  # The checkpoint is written on the GPU while the CPU builds.
  (cd bench/gpu && timeout 300 python3 compare_model.py --make-model "$model_dir") >> "$out/bench.log" 2>&1 &
  model_pid=$!
fi

if has_stage build; then
  t0=$SECONDS
  timeout "$(budget 420)" tools/gpu/build.sh --src "${SRC_MODE:-auto}" > "$out/build.log" 2>&1
  rc=$?
  note "build: rc=$rc in $((SECONDS - t0)) s ($(grep -c ': error' "$out/build.log") error lines)"
  grep -E ': error|Error|FAILED' "$out/build.log" | head -20 | tee -a "$summary"
fi
# shellcheck disable=SC1091
[[ -f /tmp/fedfm-gpu-env.sh ]] && source /tmp/fedfm-gpu-env.sh
build_dir=${FEDFM_BUILD:-$root/build-gpu}
fedfm="$build_dir/fedfm"
note "source: ${FEDFM_SRC:-?} build: $build_dir"
if [[ -x "$fedfm" ]]; then
  # libstdc++ must come before LibTorch (cmake/FedfmDependencies.cmake says
  # why): with a static libstdc++ no std::filesystem reference is left for the
  # dynamic linker, with a shared one libstdc++.so.6 precedes libtorch_cpu.so.
  note "fedfm: $(nm -D "$fedfm" | grep -cE ' U _ZNSt10filesystem') undefined std::filesystem references;" \
    "NEEDED $(readelf -d "$fedfm" | grep -oE 'lib(stdc\+\+|torch_cpu)\.so[.0-9]*' | tr '\n' ' ')"
fi

if has_stage diag; then
  # How the C++ runtime is linked, and where the test binaries' std::filesystem
  # calls bind at run time (LibTorch wheels export copies of them).
  {
    echo "== toolchain"
    command -v g++; g++ --version | head -1
    echo "libstdc++.so: $(g++ -print-file-name=libstdc++.so)  libstdc++.a: $(g++ -print-file-name=libstdc++.a)"
    echo "LDFLAGS=${LDFLAGS:-} CXXFLAGS=${CXXFLAGS:-}"
    grep -E '^CMAKE_(EXE|SHARED)_LINKER_FLAGS:|^CMAKE_CXX_FLAGS:|^CMAKE_CXX_COMPILER:' "$build_dir/CMakeCache.txt"
    torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
    echo "== libtorch_cpu.so std::filesystem exports: $(nm -D --defined-only "$torch_lib/libtorch_cpu.so" | grep -c '_ZNSt10filesystem')"
    nm -D --defined-only "$torch_lib/libtorch_cpu.so" | grep '_ZNSt10filesystem' | awk '{print $2}' | sort | uniq -c
    for t in model/model_test peft/peft_test protocols/protocols_test; do
      [[ -x "$build_dir/$t" ]] || continue
      echo "== $t"
      readelf -d "$build_dir/$t" | grep NEEDED | head -6
      echo "static std::filesystem definitions: $(nm "$build_dir/$t" | grep -cE ' [TW] _ZNSt10filesystem')"
      echo "undefined std::filesystem references: $(nm -D "$build_dir/$t" | grep -cE ' U _ZNSt10filesystem')"
    done
    echo "== bindings of std::filesystem symbols (model_test, one loader test)"
    (cd "${FEDFM_SRC:-$root}" && LD_DEBUG=bindings LD_DEBUG_OUTPUT=/tmp/fedfm-bindings \
        timeout 60 "$build_dir/model/model_test" --gtest_filter='ModelLoaderTest.Truncated*' | tail -3)
    cat /tmp/fedfm-bindings.* 2>/dev/null | grep '_ZNSt10filesystem' |
      sed -E 's/.*binding file ([^ ]+) \[0\] to ([^ ]+) \[0\].*/\1 -> \2/' | sort | uniq -c | head -20
  } > "$out/diag.txt" 2>&1
  note "diag: $(grep -m1 'libstdc++.so:' "$out/diag.txt")"
fi

if has_stage gpu; then
  {
    echo "== ctest -L gpu"
    timeout "$(budget 120)" ctest --test-dir "$build_dir" -L gpu --output-on-failure
    echo "rc=$?"
    echo "== zeroth_order_gpu_test"
    (cd "${FEDFM_SRC:-$root}" && timeout "$(budget 120)" "$build_dir/zeroth_order/zeroth_order_gpu_test")
    echo "rc=$?"
  } > "$out/tests.log" 2>&1
  # EXTRA_TESTS: "binary:filter[:VAR=value]" entries run alone, after the GPU tests.
  for spec in ${EXTRA_TESTS:-}; do
    IFS=: read -r bin filter envset <<< "$spec"
    {
      echo "== $bin --gtest_filter=$filter ${envset:-}"
      (cd "${FEDFM_SRC:-$root}" && env ${envset:+"$envset"} timeout "$(budget 120)" "$build_dir/$bin" --gtest_filter="$filter" 2>&1 | tail -15)
    } >> "$out/tests.log" 2>&1
  done
  note "gpu tests: $(grep -E '^(\[  PASSED  \]|\[  FAILED  \]|\[  SKIPPED \]|[0-9]+% tests passed)' "$out/tests.log" | tr '\n' ' ')"
fi

if [[ -n "$model_pid" ]]; then
  wait "$model_pid"
  note "model checkpoint: rc=$? $(du -sh "$model_dir" 2>/dev/null | cut -f1)"
fi

common_flags=(--model "$model_dir" --dtype bf16 --device cuda --batch "$batch" --seq-len "$seq_len")

if has_stage model; then
  {
    echo "== fedfm bench model ${common_flags[*]} --iters $iters"
    timeout "$(budget 150)" "$fedfm" bench model "${common_flags[@]}" --iters "$iters" > /tmp/fedfm_bench_model.json
    echo "rc=$?"
    cat /tmp/fedfm_bench_model.json
    echo "== compare_model.py"
    (cd bench/gpu && timeout "$(budget 240)" python3 compare_model.py --model "$model_dir" \
        --fedfm-json /tmp/fedfm_bench_model.json --attn eager,sdpa --out "$out/model_compare.json")
    echo "rc=$?"
  } >> "$out/bench.log" 2>&1
  grep -E '^  ' "$out/bench.log" | tail -9 | tee -a "$summary"
fi

if has_stage train; then
  {
    train_flags=${TRAIN_FLAGS:---steps $iters}
    echo "== fedfm bench train ${common_flags[*]} $train_flags"
    # shellcheck disable=SC2086
    timeout "$(budget 150)" "$fedfm" bench train "${common_flags[@]}" $train_flags > /tmp/fedfm_bench_train.json
    echo "rc=$?"
    cat /tmp/fedfm_bench_train.json
    echo "== compare_train.py ${LORA_FLAGS:-}"
    # shellcheck disable=SC2086
    (cd bench/gpu && timeout "$(budget 200)" python3 compare_train.py --model "$model_dir" \
        --fedfm-json /tmp/fedfm_bench_train.json ${LORA_FLAGS:-} --out "$out/lora_compare.json")
    echo "rc=$?"
  } >> "$out/bench.log" 2>&1
  grep -E '^  step' "$out/bench.log" | tail -2 | tee -a "$summary"
fi

if has_stage zo; then
  {
    zo_flags=${ZO_FLAGS:---steps $iters}
    echo "== fedfm bench zo ${common_flags[*]} $zo_flags"
    # shellcheck disable=SC2086
    timeout "$(budget 150)" "$fedfm" bench zo "${common_flags[@]}" $zo_flags > /tmp/fedfm_bench_zo.json
    echo "rc=$?"
    cat /tmp/fedfm_bench_zo.json
    echo "== mezo_reference.py ${MEZO_FLAGS:-}"
    # shellcheck disable=SC2086
    (cd bench/gpu && timeout "$(budget 200)" python3 mezo_reference.py --model "$model_dir" \
        --fedfm-json /tmp/fedfm_bench_zo.json ${MEZO_FLAGS:-} --out "$out/zo_compare.json")
    echo "rc=$?"
  } >> "$out/bench.log" 2>&1
  grep -E '^  step' "$out/bench.log" | tail -2 | tee -a "$summary"
fi

if has_stage extra && [[ -n "${EXTRA_CMDS:-}" ]]; then
  # EXTRA_CMDS: shell commands (';'-separated) run from the repository root
  # with FEDFM, MODEL_DIR, BATCH, SEQ_LEN and ITERS set; output to bench.log.
  export FEDFM="$fedfm" MODEL_DIR="$model_dir" BATCH="$batch" SEQ_LEN="$seq_len" ITERS="$iters"
  {
    echo "== extra: $EXTRA_CMDS"
    timeout "$(budget 300)" bash -c "$EXTRA_CMDS"
    echo "rc=$?"
  } >> "$out/bench.log" 2>&1
  note "extra: $(grep -c '^{' "$out/bench.log") JSON lines in bench.log"
fi

if has_stage ctest; then
  left=$(budget 600)
  if ((left > 30)); then
    {
      echo "== ctest (whole suite, ${left} s)"
      # Each LibTorch test would take every core: CTEST_THREADS (2, as on CI)
      # keeps parallel tests from starving one another.
      OMP_NUM_THREADS=${CTEST_THREADS:-2} timeout "$left" \
        ctest --test-dir "$build_dir" -j "${CTEST_JOBS:-$(nproc)}" --timeout 300 --output-on-failure
      echo "rc=$?"
    } >> "$out/tests.log" 2>&1
    note "ctest: $(grep -E 'tests passed|tests failed|^rc=' "$out/tests.log" | tail -2 | tr '\n' ' ')"
    grep -E '^\s+[0-9]+ - .*(Failed|Timeout|Not Run|Exception)' "$out/tests.log" | head -30 | tee -a "$summary"
  else
    note "ctest: skipped, ${left} s left"
  fi
fi
note "== done in ${SECONDS} s"
