#!/usr/bin/env bash
# Builds fedfm on the GPU machine (CUDA LibTorch from the machine's PyTorch,
# no gRPC) from what tools/gpu/fetch_debs.sh put under .carry/:
#   .carry/debs/*.deb     Debian 12 packages the machine lacks, unpacked with
#                         `dpkg -x` into $FEDFM_DEPS (default /tmp/fedfm-deps),
#                         never into /.
#   .carry/src.tar.gz     optional snapshot of the committed tree; with
#                         --src snapshot the build uses it (unpacked into
#                         /tmp/fedfm-src) instead of the working tree; with
#                         --src auto (the default) only when configuring the
#                         working tree fails.
# Run from the repository root:
#   tools/gpu/build.sh [--src auto|tree|snapshot] [--build DIR] [--no-cuda]
#                      [--jobs N] [--configure-only] [TARGET...]
# With no TARGET everything is built; the build keeps going past failing
# targets (ninja -k 0), so one broken test does not hide the rest. Once
# configured, writes /tmp/fedfm-gpu-env.sh (FEDFM_SRC, FEDFM_BUILD and the
# LD_LIBRARY_PATH that the binaries need: the unpacked shared libraries),
# for `source`.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${FEDFM_DEPS:-/tmp/fedfm-deps}
src_mode=auto
build=""
cuda=ON
jobs=$(nproc)
configure_only=0
targets=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --src) src_mode=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --no-cuda) cuda=OFF; shift ;;
    --jobs) jobs=$2; shift 2 ;;
    --configure-only) configure_only=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) echo "build.sh: unknown flag $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

# --- Dependencies: unpack once per machine ---------------------------------
debs=("$root"/.carry/debs/*.deb)
if [[ ! -e "${debs[0]}" ]]; then
  echo "build.sh: no .carry/debs/*.deb; run tools/gpu/fetch_debs.sh where apt works and carry .carry" >&2
  exit 1
fi
if [[ ! -f "$deps/.unpacked" ]]; then
  mkdir -p "$deps"
  for f in "${debs[@]}"; do dpkg -x "$f" "$deps"; done
  # Absolute symlinks (libz.so -> /lib/...) point at the machine's own files,
  # which may be absent or another version: retarget them into $deps.
  while IFS= read -r link; do
    target=$(readlink "$link")
    if [[ -e "$deps$target" ]]; then ln -sfn "$deps$target" "$link"; fi
  done < <(find "$deps" -type l -lname '/*')
  touch "$deps/.unpacked"
fi
libdir="$deps/usr/lib/x86_64-linux-gnu:$deps/lib/x86_64-linux-gnu"
export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# --- Configure ---------------------------------------------------------------
# TORCH_PREFIX overrides the LibTorch found through python3's torch.
torch_prefix=${TORCH_PREFIX:-$(python3 -c "import torch; print(torch.utils.cmake_prefix_path)")}
cmake_args=(
  -G Ninja
  -DCMAKE_BUILD_TYPE=Release
  -DFEDFM_GRPC=OFF
  -DFEDFM_CUDA="$cuda"
  "-DCMAKE_PREFIX_PATH=$deps/usr;$torch_prefix"
)
if [[ "$cuda" == ON ]]; then
  nvcc=$(command -v nvcc || true)
  [[ -n "$nvcc" || ! -x /usr/local/cuda/bin/nvcc ]] || nvcc=/usr/local/cuda/bin/nvcc
  [[ -n "$nvcc" ]] || { echo "build.sh: nvcc not found" >&2; exit 1; }
  cmake_args+=(-DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_CUDA_COMPILER=$nvcc"
               "-DCUDAToolkit_ROOT=$(dirname "$(dirname "$(readlink -f "$nvcc")")")")
fi

# configure SRC: sets $src and $build, or fails.
configure() {
  case "$1" in
    tree) src="$root" ;;
    snapshot)
      src=/tmp/fedfm-src
      [[ -f "$root/.carry/src.tar.gz" ]] || { echo "build.sh: no .carry/src.tar.gz" >&2; return 1; }
      rm -rf "$src" && mkdir -p "$src" && tar -xzf "$root/.carry/src.tar.gz" -C "$src"
      ;;
    *) echo "build.sh: --src auto|tree|snapshot" >&2; exit 2 ;;
  esac
  build=${build_arg:-$src/build-gpu}
  echo "build.sh: cmake -S $src -B $build ${cmake_args[*]}"
  cmake -S "$src" -B "$build" "${cmake_args[@]}"
}
build_arg=$build
if [[ "$src_mode" == auto ]]; then
  if ! configure tree; then
    echo "build.sh: configuring the working tree failed; using the snapshot"
    [[ -z "$build_arg" ]] || rm -f "$build_arg/CMakeCache.txt"
    configure snapshot
  fi
else
  configure "$src_mode"
fi
cat > /tmp/fedfm-gpu-env.sh <<ENV
export FEDFM_SRC=$src
export FEDFM_BUILD=$build
export LD_LIBRARY_PATH=$LD_LIBRARY_PATH
ENV

# --- Build -------------------------------------------------------------------
[[ "$configure_only" == 0 ]] || exit 0
build_args=(--build "$build" -j "$jobs")
if [[ ${#targets[@]} -gt 0 ]]; then build_args+=(--target "${targets[@]}"); fi
status=0
cmake "${build_args[@]}" -- -k 0 || status=$?
echo "FEDFM_SRC=$src"
echo "FEDFM_BUILD=$build"
exit $status
