// Helpers shared by the .cu files of the kernel layer (CUDA runtime only).
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "common.h"

namespace smcr {

inline Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::Ok();
  return Status::Error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Check the last launch (and clear the sticky-free error state).
inline Status launch_status(const char* what) { return cuda_status(cudaGetLastError(), what); }

#define SMCR_RETURN_IF_ERROR(expr) \
  do {                             \
    ::smcr::Status _st = (expr);   \
    if (!_st.ok()) return _st;     \
  } while (0)

#define SMCR_CUDA_CHECK(expr, what) SMCR_RETURN_IF_ERROR(::smcr::cuda_status((expr), (what)))

inline unsigned grid_for(index_t work, int per_block) {
  index_t blocks = (work + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > 2147483647) blocks = 2147483647;
  return static_cast<unsigned>(blocks);
}

// Typed scratch from the caller's allocator.
template <typename T>
T* scratch_alloc(Allocator& a, index_t count) {
  return static_cast<T*>(a.allocate(static_cast<std::size_t>(count > 0 ? count : 1) * sizeof(T)));
}

}  // namespace smcr
