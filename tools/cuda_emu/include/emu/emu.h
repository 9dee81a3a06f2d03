// cuda_emu device side: force-included (-include emu/emu.h) into every emulated .cu.
//
// Execution model: one block at a time on the calling OS thread; every CUDA thread of the
// block is a coroutine with its own stack (src/emu_runtime.cpp). A thread runs until it
// reaches a synchronisation point (__syncthreads*, a warp intrinsic, exit), then the next
// runnable thread of the block runs. threadIdx & co. read the current coroutine's values.
// Kernel launches `k<<<g, b, s, st>>>(a...)` are rewritten by tools/cuda_emu/rewrite.py into
// `::emu::launch(k, "k", __FILE__, __LINE__, ::emu::LaunchCfg(g, b, s, st), a...)`, and
// `__shared__` declarations into statics registered with ::emu::shared_decl (poisoned at
// the start of every block) or, for `extern __shared__`, into the launch's dynamic buffer.
#pragma once

#include <cuda_runtime.h>
#include <math.h>

#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static  // the rewrite adds the per-block registration; see rewrite.py
#define __constant__ static
#ifndef warpSize
#define warpSize 32
#endif

namespace emu {

// The part of a CUDA thread that device code reads (the runtime's Thread starts with it).
struct ThreadHdr {
  uint3 tid;
  int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
  int lane;
  int warp;
};
extern ThreadHdr* cur;  // the running CUDA thread (nullptr on the host)
extern uint3 g_blockIdx;
extern dim3 g_blockDim;
extern dim3 g_gridDim;

// Fatal unless EMU_CONTINUE=1: prints the kernel, block and thread and aborts.
[[noreturn]] void fatal(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
const ThreadHdr& device_thread(const char* what);  // cur, or a fatal error on the host

enum WarpOp : int { kSyncwarp, kShflIdx, kShflUp, kShflDown, kShflXor, kBallot, kAny, kAll };
std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width);
int block_barrier(int pred, int kind);  // kind 0: plain, 1: or, 2: and, 3: count

void shared_decl(void* addr, std::size_t bytes, const char* name);
void* dyn_smem();
template <typename T>
T* dyn_smem_as() {
  return static_cast<T*>(dyn_smem());
}

void atomic_hook(const void* addr, std::size_t size, const char* what);

// ---- launches
struct LaunchCfg {
  dim3 grid, block;
  std::size_t smem;
  cudaStream_t stream;
  LaunchCfg(dim3 g, dim3 b, std::size_t s = 0, cudaStream_t st = 0)
      : grid(g), block(b), smem(s), stream(st) {}
};
struct PtrArg {
  const void* ptr;
  int index;
};
void launch_impl(const char* name, const char* file, int line, const LaunchCfg& cfg,
                 void (*body)(void*), void* ctx, const PtrArg* ptrs, int nptrs);

template <typename Tuple, std::size_t... I>
int collect_ptrs(const Tuple& t, PtrArg* out, std::index_sequence<I...>) {
  int n = 0;
  auto one = [&](const auto& v, int idx) {
    using V = std::decay_t<decltype(v)>;
    if constexpr (std::is_pointer<V>::value) out[n++] = PtrArg{static_cast<const void*>(v), idx};
  };
  (one(std::get<I>(t), static_cast<int>(I)), ...);
  (void)one;
  return n;
}

template <typename... P>
struct KernelCall {
  void (*fn)(P...);
  std::tuple<P...> params;
  static void run(void* self) {
    auto* c = static_cast<KernelCall*>(self);
    std::apply(c->fn, c->params);  // every thread gets its own by-value copies
  }
};

template <typename... P, typename... A>
void launch(void (*kernel)(P...), const char* name, const char* file, int line,
            const LaunchCfg& cfg, A&&... args) {
  static_assert(sizeof...(P) == sizeof...(A), "kernel launch: wrong number of arguments");
  // Convert the arguments as a call to the kernel would (implicit conversions only).
  KernelCall<P...> call{kernel, [](P... p) { return std::tuple<P...>(p...); }(
                                    std::forward<A>(args)...)};
  PtrArg ptrs[sizeof...(P) + 1];
  const int n = collect_ptrs(call.params, ptrs, std::index_sequence_for<P...>{});
  launch_impl(name, file, line, cfg, &KernelCall<P...>::run, &call, ptrs, n);
}

}  // namespace emu

#define threadIdx (static_cast<const uint3&>(::emu::device_thread("threadIdx").tid))
#define blockIdx (static_cast<const uint3&>(::emu::g_blockIdx))
#define blockDim (static_cast<const dim3&>(::emu::g_blockDim))
#define gridDim (static_cast<const dim3&>(::emu::g_gridDim))

// ---- block barrier
inline void __syncthreads() { ::emu::block_barrier(1, 0); }
inline int __syncthreads_or(int p) { return ::emu::block_barrier(p, 1); }
inline int __syncthreads_and(int p) { return ::emu::block_barrier(p, 2); }
inline int __syncthreads_count(int p) { return ::emu::block_barrier(p, 3); }
inline void __threadfence() {}
inline void __threadfence_block() {}

// ---- warp intrinsics
namespace emu {
template <typename T>
std::uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "warp shuffle of a type CUDA cannot shuffle in one call");
  std::uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <typename T>
T from_bits(std::uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
}  // namespace emu

inline void __syncwarp(unsigned mask = 0xffffffffu) { ::emu::warp_op(::emu::kSyncwarp, mask, 0, 0, 32); }
template <typename T>
inline T __shfl_sync(unsigned mask, T var, int src_lane, int width = 32) {
  return ::emu::from_bits<T>(::emu::warp_op(::emu::kShflIdx, mask, ::emu::to_bits(var), src_lane, width));
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T var, unsigned int delta, int width = 32) {
  return ::emu::from_bits<T>(
      ::emu::warp_op(::emu::kShflUp, mask, ::emu::to_bits(var), static_cast<int>(delta), width));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T var, unsigned int delta, int width = 32) {
  return ::emu::from_bits<T>(
      ::emu::warp_op(::emu::kShflDown, mask, ::emu::to_bits(var), static_cast<int>(delta), width));
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return ::emu::from_bits<T>(::emu::warp_op(::emu::kShflXor, mask, ::emu::to_bits(var), lane_mask, width));
}
inline unsigned __ballot_sync(unsigned mask, int pred) {
  return static_cast<unsigned>(::emu::warp_op(::emu::kBallot, mask, pred != 0, 0, 32));
}
inline int __any_sync(unsigned mask, int pred) {
  return static_cast<int>(::emu::warp_op(::emu::kAny, mask, pred != 0, 0, 32));
}
inline int __all_sync(unsigned mask, int pred) {
  return static_cast<int>(::emu::warp_op(::emu::kAll, mask, pred != 0, 0, 32));
}

// ---- bit and float intrinsics
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int __ffsll(long long x) { return __builtin_ffsll(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll(static_cast<unsigned long long>(x)); }
inline unsigned __float_as_uint(float f) { return ::emu::from_bits<unsigned>(::emu::to_bits(f)); }
inline float __uint_as_float(unsigned u) { return ::emu::from_bits<float>(::emu::to_bits(u)); }
inline int __float_as_int(float f) { return ::emu::from_bits<int>(::emu::to_bits(f)); }
inline float __int_as_float(int u) { return ::emu::from_bits<float>(::emu::to_bits(u)); }
inline long long __double_as_longlong(double d) { return ::emu::from_bits<long long>(::emu::to_bits(d)); }
inline double __longlong_as_double(long long v) { return ::emu::from_bits<double>(::emu::to_bits(v)); }
template <typename T>
inline T __ldg(const T* p) { return *p; }

// ---- CUDA's global min/max overloads (device math API)
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline double min(float a, double b) { return fmin(a, b); }
inline double max(float a, double b) { return fmax(a, b); }
inline double min(double a, float b) { return fmin(a, b); }
inline double max(double a, float b) { return fmax(a, b); }

// ---- atomics: plain read-modify-write (no other CUDA thread runs between two switches)
#define EMU_ATOMIC_RMW(NAME, T, EXPR)                         \
  inline T NAME(T* address, T val) {                          \
    ::emu::atomic_hook(address, sizeof(T), #NAME "(" #T ")"); \
    const T old = *address;                                   \
    *address = (EXPR);                                        \
    return old;                                               \
  }
EMU_ATOMIC_RMW(atomicAdd, int, old + val)
EMU_ATOMIC_RMW(atomicAdd, unsigned int, old + val)
EMU_ATOMIC_RMW(atomicAdd, unsigned long long, old + val)
EMU_ATOMIC_RMW(atomicAdd, float, old + val)
EMU_ATOMIC_RMW(atomicAdd, double, old + val)
EMU_ATOMIC_RMW(atomicSub, int, old - val)
EMU_ATOMIC_RMW(atomicSub, unsigned int, old - val)
EMU_ATOMIC_RMW(atomicMin, int, val < old ? val : old)
EMU_ATOMIC_RMW(atomicMin, unsigned int, val < old ? val : old)
EMU_ATOMIC_RMW(atomicMin, long long, val < old ? val : old)
EMU_ATOMIC_RMW(atomicMin, unsigned long long, val < old ? val : old)
EMU_ATOMIC_RMW(atomicMax, int, val > old ? val : old)
EMU_ATOMIC_RMW(atomicMax, unsigned int, val > old ? val : old)
EMU_ATOMIC_RMW(atomicMax, long long, val > old ? val : old)
EMU_ATOMIC_RMW(atomicMax, unsigned long long, val > old ? val : old)
EMU_ATOMIC_RMW(atomicExch, int, val)
EMU_ATOMIC_RMW(atomicExch, unsigned int, val)
EMU_ATOMIC_RMW(atomicExch, unsigned long long, val)
EMU_ATOMIC_RMW(atomicExch, float, val)
EMU_ATOMIC_RMW(atomicOr, int, old | val)
EMU_ATOMIC_RMW(atomicOr, unsigned int, old | val)
EMU_ATOMIC_RMW(atomicAnd, int, old & val)
EMU_ATOMIC_RMW(atomicAnd, unsigned int, old & val)
#undef EMU_ATOMIC_RMW
#define EMU_ATOMIC_CAS(T)                                          \
  inline T atomicCAS(T* address, T compare, T val) {               \
    ::emu::atomic_hook(address, sizeof(T), "atomicCAS(" #T ")");   \
    const T old = *address;                                        \
    if (old == compare) *address = val;                            \
    return old;                                                    \
  }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned int)
EMU_ATOMIC_CAS(unsigned long long)
EMU_ATOMIC_CAS(unsigned short)
#undef EMU_ATOMIC_CAS
