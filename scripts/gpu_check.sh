#!/usr/bin/env bash
# One prepared GPU check (run on a CUDA machine from the repo root):
# builds the CUDA extension in place, runs the CUDA tests (pytest -m cuda, and the C++
# CUDA tests under ctest in the background), then the GPU benchmarks. Logs go to $OUT
# (or ./gpu-out). Usage: bash scripts/gpu_check.sh [pytest-args...]
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:$PWD/python${PYTHONPATH:+:$PYTHONPATH}"
export MAX_JOBS=${MAX_JOBS:-$(nproc)} SMCR_CUDA_ARCHS=${SMCR_CUDA_ARCHS:-90}
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
t0=$(date +%s)
SMCR_FORCE_CUDA=1 $PY setup.py build_ext --inplace > "$OUT/build.log" 2>&1 || { tail -60 "$OUT/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
$PY -c "import smcr_ext, json; print(json.dumps(smcr_ext.backends()))" | tee -a "$OUT/gpu.txt"
( cmake -S . -B build/cmake-gpu -DSMCR_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 > "$OUT/ctest.log" 2>&1 \
  && cmake --build build/cmake-gpu -j 4 >> "$OUT/ctest.log" 2>&1 \
  && ctest --test-dir build/cmake-gpu --output-on-failure >> "$OUT/ctest.log" 2>&1; echo "ctest rc=$?" >> "$OUT/ctest.log" ) &
CTEST_PID=$!
SMCR_REQUIRE_CUDA=1 $PY -m pytest ${@:-tests} -m cuda -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest_cuda.log" | tail -25
wait $CTEST_PID
tail -8 "$OUT/ctest.log"
for b in ${GPU_BENCHES:-cluster}; do
  case $b in
    cluster) $PY benchmarks/bench_cluster.py --device cuda --n 12936 32621 126441 --skip-reference --repeat 3 --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_cluster.log" ;;
    memory) $PY benchmarks/bench_memory.py --device cuda --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_memory.log" ;;
    memory_novalidate) $PY benchmarks/bench_memory.py --device cuda --no-validate --skip-plain --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_memory_nv.log" ;;
    memory_tf32) $PY benchmarks/bench_memory.py --device cuda --tf32 --skip-plain --batch 64 --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_memory_tf32.log" ;;
    memory_layout) $PY benchmarks/bench_memory.py --device cuda --layout both --skip-plain --no-validate --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_memory_layout.log" ;;
    memory_overhead) $PY benchmarks/bench_memory.py --device cuda --overhead --results "$OUT/RESULTS_gpu.md" 2>&1 | tee "$OUT/bench_memory_overhead.log" ;;
    eval) $PY benchmarks/bench_eval.py --device cuda --skip-numpy --skip-torchreid 2>&1 | tee "$OUT/bench_eval.log" ;;
    models) $PY benchmarks/bench_models.py --device cuda 2>&1 | tee "$OUT/bench_models.log"
            $PY benchmarks/bench_models.py --device cuda --step 2>&1 | tee -a "$OUT/bench_models.log" ;;
    epoch) $PY benchmarks/bench_train_epoch.py --device cuda --iters ${EPOCH_ITERS:-100} --data /tmp/smcr-epoch 2>&1 | grep -v "^INFO" | tee "$OUT/bench_epoch.log" ;;
  esac
  echo "[$b done at $(( $(date +%s) - t0 )) s]"
done
echo "total: $(( $(date +%s) - t0 )) s"
