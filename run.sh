#!/usr/bin/env bash
# fedfm quick start.
#   ./run.sh demo   install missing Debian packages, build, run the default simulation
#   ./run.sh test   install missing Debian packages, build, run every test (ctest) and the fuzzers
#   ./run.sh build  install and build only
# Environment: BUILD_DIR (default build), JOBS (default: all cores),
# FUZZ_SECONDS (default 20 per fuzz target; 0 skips fuzzing).
set -euo pipefail
cd "$(dirname "$0")"

# One apt-get line; the README lists the same packages.
PACKAGES=(g++ cmake ninja-build pkg-config libtorch-dev libopenblas0-openmp libgrpc++-dev
  protobuf-compiler-grpc libprotobuf-dev protobuf-compiler libssl-dev libsqlite3-dev libasio-dev
  libgtest-dev libgmock-dev libcli11-dev libtomlplusplus-dev libspdlog-dev nlohmann-json3-dev
  libbenchmark-dev clang libclang-rt-14-dev ccache gnuplot-nox libjs-dygraphs chromium)

# OpenMP threads busy-wait by default; with parallel tests on few cores that
# slows LibTorch by an order of magnitude. libgomp reads this at load time.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}

log() { printf '==> %s\n' "$*"; }

install_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

build() {
  export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
  export CCACHE_BASEDIR="$PWD"
  if [ ! -f "$BUILD_DIR/build.ninja" ]; then
    log "configuring $BUILD_DIR"
    cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
  fi
  log "building with $JOBS jobs"
  local start=$SECONDS
  cmake --build "$BUILD_DIR" -j "$JOBS"
  log "build took $((SECONDS - start)) s"
}

fuzz() {
  [ "$FUZZ_SECONDS" -gt 0 ] || return 0
  local dir="$BUILD_DIR-fuzz"
  if [ ! -f "$dir/build.ninja" ]; then
    log "configuring fuzzers (clang, ASan+UBSan) in $dir"
    CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
      -DFEDFM_FUZZ=ON -DFEDFM_TESTS=OFF -DFEDFM_BENCH=OFF -DFEDFM_SANITIZE=ON
  fi
  cmake --build "$dir" -j "$JOBS" --target fuzz_all
  local binary target
  for binary in "$dir"/fuzz/fuzz_*; do  # every target of fuzz/CMakeLists.txt
    [ -x "$binary" ] && [ -f "$binary" ] || continue
    target=$(basename "$binary")
    log "fuzzing $target for ${FUZZ_SECONDS}s"
    local corpus="$dir/corpus/$target"
    mkdir -p "$corpus"
    "$binary" -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 "$corpus" "fuzz/corpus/${target#fuzz_}" \
      2>&1 | tail -n 3
  done
}

case "${1:-demo}" in
  demo)
    install_packages
    build
    log "running the default simulation"
    "$BUILD_DIR/fedfm" simulate
    ;;
  test)
    install_packages
    build
    log "running tests"
    ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 900
    fuzz
    ;;
  build)
    install_packages
    build
    ;;
  *)
    echo "usage: ./run.sh demo|test|build" >&2
    exit 2
    ;;
esac
