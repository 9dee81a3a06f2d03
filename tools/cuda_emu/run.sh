#!/usr/bin/env bash
# Build csrc/kernels/*.cu for the CPU emulator of the CUDA execution model (tools/cuda_emu),
# with the CPU kernels, the emulator self-test, the two CUDA test programs of csrc/kernels/tests
# and one extra probe (probes/knn_large_k.cpp), then run them.
# Exits non-zero when a build step or any program fails (exit 77, "no device", is a failure).
#
#   bash tools/cuda_emu/run.sh            build (incrementally) and run everything
#   EMU_SAN=none bash tools/cuda_emu/run.sh   without ASan/UBSan (faster; the default is
#                                             -fsanitize=address,undefined)
#   EMU_FMA=1 bash tools/cuda_emu/run.sh     device code built with -mfma -ffp-contract=fast,
#                                             an approximation of nvcc's default contraction
#   EMU_RUN="test_cluster_cuda" ...       run only these programs (selftest always runs);
#                                         default: the two tests and probe_knn_large_k (an extra
#                                         check of knn_merge_kernel<2>/<4>, see probes/)
# Each test runs under 6 schedules: forward order with fresh device and shared memory filled
# with 0xA5, reverse order with 0xFF, and random orders (seeds 1-4: warps running ahead of each
# other, yields at atomics) with 0xA5 / 0xFF. Set EMU_SCHED (forward|reverse|random, with
# EMU_SEED) and/or EMU_FILL to run one configuration only; other
# knobs (EMU_STATS=1, EMU_TRACE=1, EMU_CONTINUE=1, ...): see src/emu_runtime.cpp.
# Build folder: ${EMU_BUILD_DIR:-/tmp/cuda_emu_build}/<asan|plain>[-fma]. At most 2 compile jobs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
EMU=$ROOT/tools/cuda_emu
KDIR=$ROOT/csrc/kernels
SAN=${EMU_SAN:-address,undefined}
CXX=${CXX:-g++}
JOBS=2
if [ "$SAN" = none ]; then VARIANT=plain; else VARIANT=asan; fi
FMA_FLAGS=""
if [ "${EMU_FMA:-0}" = 1 ]; then VARIANT=$VARIANT-fma; FMA_FLAGS="-mfma -ffp-contract=fast"; fi
B=${EMU_BUILD_DIR:-/tmp/cuda_emu_build}/$VARIANT
mkdir -p "$B/src" "$B/obj"

CXXFLAGS="-std=c++17 -O2 -g -fno-omit-frame-pointer -fopenmp -Wall -Wno-unknown-pragmas -Wno-unused-function -Wno-sign-compare"
if [ "$SAN" != none ]; then
  CXXFLAGS="$CXXFLAGS -fsanitize=$SAN -fno-sanitize-recover=undefined"
fi
# .cu files: C++ with the emulator's device header first, as nvcc's device+host pass would see
# them (__CUDACC__ and __CUDA_ARCH__ defined), SMCR_WITH_CUDA as the CMake build defines it.
CU_FLAGS="$FMA_FLAGS -x c++ -D__CUDACC__ -D__CUDA_ARCH__=800 -DSMCR_WITH_CUDA -I$EMU/include -I$KDIR -include emu/emu.h"
# Tests and CPU kernels: plain C++ (the tests include <cuda_runtime.h>: the emulator's).
CPP_FLAGS="-DSMCR_WITH_CUDA -I$EMU/include -I$KDIR"

# A change of compiler or flags rebuilds everything.
STAMP="$CXX $CXXFLAGS | $CU_FLAGS | $CPP_FLAGS"
if [ ! -f "$B/flags" ] || [ "$(cat "$B/flags")" != "$STAMP" ]; then
  rm -f "$B"/obj/*.o "$B"/*.a
  echo "$STAMP" > "$B/flags"
fi
# Every object depends on all headers of the project's kernels and of the emulator.
DEPS=$(ls "$KDIR"/*.h "$KDIR"/*.cuh "$KDIR"/tests/*.h "$EMU"/rewrite.py "$0" && find "$EMU/include" -type f)
newest_dep=$(ls -t $DEPS | head -1)

needs_build() {  # obj src
  [ ! -f "$1" ] || [ "$2" -nt "$1" ] || [ "$newest_dep" -nt "$1" ]
}

echo "== cuda_emu: rewriting kernel launches and __shared__ ($VARIANT build in $B)"
for f in "$KDIR"/*.cu "$EMU"/selftest.cu; do
  out="$B/src/$(basename "$f")"
  python3 "$EMU/rewrite.py" "$f" "$out.new" | sed "s|$ROOT/||"
  # keep the old copy (and its time stamp) when nothing changed: no needless recompiles
  if cmp -s "$out.new" "$out"; then rm "$out.new"; else mv "$out.new" "$out"; fi
  # every launch site outside comments must have become exactly one ::emu::launch
  before=$(sed 's|//.*||' "$f" | grep -o '<<<' | wc -l)
  after=$(grep -o '::emu::launch(' "$out" | wc -l)
  if [ "$before" != "$after" ]; then
    echo "rewrite check failed for $f: $before '<<<' but $after ::emu::launch" >&2
    exit 1
  fi
done

echo "== cuda_emu: compiling (-j$JOBS)"
pids=()
failed=0
compile() {  # obj src flags...
  local obj=$1 src=$2
  shift 2
  if needs_build "$obj" "$src"; then
    echo "   $(basename "$src")"
    if ! $CXX $CXXFLAGS "$@" -c "$src" -o "$obj" 2> "$obj.log"; then
      cat "$obj.log" >&2
      return 1
    fi
    # show warnings, if any
    if [ -s "$obj.log" ]; then cat "$obj.log" >&2; fi
  fi
}
run_job() {
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || failed=1; done
  compile "$@" &
}
for f in "$KDIR"/*_cpu.cpp; do run_job "$B/obj/$(basename "$f" .cpp).o" "$f" $CPP_FLAGS; done
for f in "$KDIR"/*.cu; do
  n=$(basename "$f" .cu)
  run_job "$B/obj/$n.cu.o" "$B/src/$n.cu" $CU_FLAGS
done
run_job "$B/obj/selftest.cu.o" "$B/src/selftest.cu" $CU_FLAGS
run_job "$B/obj/emu_runtime.o" "$EMU/src/emu_runtime.cpp" -I"$EMU/include"
for t in test_losses_cuda test_cluster_cuda; do
  run_job "$B/obj/$t.o" "$KDIR/tests/$t.cpp" $CPP_FLAGS
done
run_job "$B/obj/probe_knn_large_k.o" "$EMU/probes/knn_large_k.cpp" $CPP_FLAGS
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || failed=1; done
wait || failed=1
if [ "$failed" != 0 ]; then echo "cuda_emu: build failed" >&2; exit 1; fi

rm -f "$B/libsmcr_kernels_emu.a"
ar rcs "$B/libsmcr_kernels_emu.a" "$B"/obj/*_cpu.o \
  $(ls "$B"/obj/*.cu.o | grep -v selftest) "$B/obj/emu_runtime.o"
for t in selftest test_losses_cuda test_cluster_cuda probe_knn_large_k; do
  obj="$B/obj/$t.o"
  [ "$t" = selftest ] && obj="$B/obj/selftest.cu.o"
  $CXX $CXXFLAGS "$obj" "$B/libsmcr_kernels_emu.a" -o "$B/$t"
done

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

status=0
summary=()
run_prog() {  # program [VAR=value ...]
  local t=$1 start end rc
  shift
  echo "== cuda_emu: running $t $*"
  start=$(date +%s.%N)
  set +e
  (cd "$ROOT" && env "$@" "$B/$t")
  rc=$?
  set -e
  end=$(date +%s.%N)
  local secs
  secs=$(awk "BEGIN{printf \"%.1f\", $end - $start}")
  if [ "$rc" = 0 ]; then summary+=("PASS  $t $* (${secs}s)"); else summary+=("FAIL  $t $* (exit $rc, ${secs}s)"); status=1; fi
}
run_prog selftest
if [ "$status" != 0 ]; then
  echo "cuda_emu: the emulator's self-test failed; not running the project's tests" >&2
  printf '%s\n' "${summary[@]}"
  exit 1
fi
if [ -n "${EMU_SCHED:-}${EMU_FILL:-}" ]; then
  CONFIGS=("EMU_SCHED=${EMU_SCHED:-forward} EMU_SEED=${EMU_SEED:-1} EMU_FILL=${EMU_FILL:-0xA5}")
else
  CONFIGS=("EMU_SCHED=forward EMU_FILL=0xA5" "EMU_SCHED=reverse EMU_FILL=0xFF"
           "EMU_SCHED=random EMU_SEED=1 EMU_FILL=0xA5" "EMU_SCHED=random EMU_SEED=2 EMU_FILL=0xFF"
           "EMU_SCHED=random EMU_SEED=3 EMU_FILL=0xA5" "EMU_SCHED=random EMU_SEED=4 EMU_FILL=0xFF")
fi
for c in "${CONFIGS[@]}"; do
  for t in ${EMU_RUN:-test_losses_cuda test_cluster_cuda probe_knn_large_k}; do run_prog "$t" $c; done
done
echo "== cuda_emu summary ($VARIANT build)"
printf '%s\n' "${summary[@]}"
exit $status
