# smcr: the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
NVCC ?= $(shell command -v nvcc 2>/dev/null)
CUDA_ARCHS ?= 80 90
NPROC := $(shell nproc 2>/dev/null || echo 2)

.PHONY: venv install test pytest ctest nvcc-check cuda-glue-check cuda-emu-check lint bench demo clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip

venv: $(PY)

# Install torch first (a CPU build of $(TORCH_SPEC) where it lies on disk), then the rest,
# then build our extension against that torch (--no-build-isolation).
install: $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q numpy scipy scikit-learn pillow pyyaml tqdm matplotlib pytest ruff faiss-cpu onnx onnxruntime
	$(PIP) install -q --no-deps torchreid==0.2.5   # test-only peer: its evaluator file alone is loaded
	$(PIP) install -q --no-build-isolation -e .

pytest: install
	$(PY) -m pytest tests -q -m "not cuda and not slow"

# The framework-free kernel library and its C++ tests, built by CMake without Python.
# CI builds it CPU-only (the .cu files are compiled by nvcc-check); on a GPU machine
# `make ctest CTEST_CUDA=ON` builds and runs the CUDA tests too.
CTEST_CUDA ?= OFF
ctest:
	cmake -S . -B build/cmake -DCMAKE_BUILD_TYPE=Release -DSMCR_CUDA=$(CTEST_CUDA) >/dev/null
	cmake --build build/cmake -j $(NPROC)
	ctest --test-dir build/cmake --output-on-failure

# Every .cu of csrc/kernels compiles with plain nvcc for sm_80 and sm_90 (no GPU needed).
nvcc-check:
	@if [ -z "$(NVCC)" ]; then echo "nvcc-check: nvcc not found, skipping"; exit 0; fi; \
	mkdir -p build/nvcc-check; \
	ls csrc/kernels/*.cu | xargs -P $(NPROC) -I{} sh -c 'echo "nvcc {}"; \
	  $(NVCC) -std=c++17 -O3 --expt-relaxed-constexpr $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
	    -c {} -o build/nvcc-check/$$(basename {} .cu).o'

# The CUDA torch glue (csrc/torch/*_cuda.cpp) is only compiled by CUDA builds of the
# extension; CI has no CUDA torch, so it checks the glue's C++ against the CPU wheel's torch
# headers, nvcc's CUDA headers and stubs of the CUDA math libraries' handle types
# (.ci/cuda_stubs): a glue change that does not compile fails CI here, not on a GPU machine.
cuda-glue-check: install
	@if [ -z "$(NVCC)" ]; then echo "cuda-glue-check: nvcc not found, skipping"; exit 0; fi; \
	CUDA_INC=$$($(NVCC) --dryrun -c -x cu /dev/null -o /dev/null 2>&1 | sed -n 's/.*INCLUDES="-I\([^"]*\)".*/\1/p' | head -1); \
	TORCH_INC=$$($(PY) -c 'import torch.utils.cpp_extension as c; print(" ".join("-I" + p for p in c.include_paths()))'); \
	PY_INC=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["include"])'); \
	ls csrc/torch/*_cuda.cpp | xargs -P $(NPROC) -I{} sh -c "echo 'c++ -fsyntax-only {}'; \
	  $${CXX:-c++} -std=c++20 -fsyntax-only -Wall -DSMCR_WITH_CUDA -DSMCR_CUDA_VERSION='\"ci\"' \
	    -DTORCH_API_INCLUDE_EXTENSION_H -DTORCH_EXTENSION_NAME=_C -I.ci/cuda_stubs $$TORCH_INC \
	    -I$$CUDA_INC -I$$PY_INC {}"

# The CUDA kernels (csrc/kernels/*.cu, unchanged) run on a CPU emulator of the CUDA
# execution model (tools/cuda_emu: a coroutine per CUDA thread, warp intrinsics, host CUB,
# ASan + UBSan) against the CPU kernels: test_losses_cuda and test_cluster_cuda under six
# thread schedules. Not a GPU run (no real concurrency or memory model), but every kernel's
# logic and bounds are executed on every machine.
cuda-emu-check:
	EMU_BUILD_DIR=$(CURDIR)/build/cuda_emu bash tools/cuda_emu/run.sh

lint: install
	$(VENV)/bin/ruff check python smcr_ext tests benchmarks tools

test: pytest ctest nvcc-check cuda-glue-check cuda-emu-check

bench: install
	$(PY) benchmarks/bench_cluster.py

demo: install
	$(PY) -m smcr demo

clean:
	rm -rf build dist *.egg-info smcr_ext/_C*.so
