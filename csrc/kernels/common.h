// Shared definitions of the framework-free kernel layer.
//
// Every kernel in csrc/kernels/ takes raw pointers and sizes (and a cudaStream_t
// for the CUDA ones) and returns a Status: an empty message means success, anything
// else is a human-readable error that the torch glue turns into an exception. No
// torch header is ever included from this folder, so CMake can build it (and its
// C++ tests) without Python, and nvcc can compile every .cu on a machine without a GPU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

// cudaStream_t for the CUDA kernels' declarations: the runtime's type under nvcc, elsewhere
// the same opaque pointer the CUDA runtime declares, so every header compiles without CUDA.
#ifdef __CUDACC__
#include <cuda_runtime.h>
#else
typedef struct CUstream_st* cudaStream_t;
#endif

namespace smcr {

using index_t = std::int64_t;  // 64-bit wherever N*N or N*D may pass 2^31

struct Status {
  std::string message;  // empty when ok
  bool ok() const { return message.empty(); }
  static Status Ok() { return Status{}; }
  static Status Error(std::string msg) { return Status{std::move(msg)}; }
};

// Sparse neighbour graph in compressed-row form. Row i holds the neighbours of
// point i sorted by (distance ascending, index ascending).
//   indptr:    (n + 1)  int64, indptr[0] == 0, non-decreasing
//   indices:   (nnz)    int64, column indices in [0, n)
//   distances: (nnz)    float32
struct CsrGraphView {
  index_t n = 0;
  const index_t* indptr = nullptr;
  const index_t* indices = nullptr;
  const float* distances = nullptr;
};

// Scratch memory a kernel asks its caller for. The memory stays valid until the
// allocator is destroyed; allocate() returns nullptr when it cannot allocate. The torch
// glue implements it with torch's caching allocator, the C++ tests with cudaMalloc/new.
class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual void* allocate(std::size_t bytes) = 0;
};

// Output of a sparse graph whose size is known only inside the kernel: the kernel fills
// indptr (n + 1, caller-allocated), then calls this with nnz to get the two arrays.
using CsrOutputAlloc = std::function<Status(index_t nnz, index_t** indices, float** distances)>;

// Number of OpenMP threads the CPU kernels will use (1 without OpenMP).
int cpu_num_threads();
// Whether the CPU kernels were compiled with OpenMP.
bool cpu_has_openmp();

}  // namespace smcr
