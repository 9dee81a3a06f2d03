// cuda_emu self-test: tiny kernels with known answers, run before the project's tests.
// Compiled exactly like the project's .cu files (rewritten, emu/emu.h force-included).
// Failure cases (deadlock, host pointer, exited lane, out-of-bounds write) run in a forked
// child whose exit status and stderr are checked.
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

static int g_fail = 0;
#define EXPECT(c)                                                          \
  do {                                                                     \
    if (!(c)) {                                                            \
      std::fprintf(stderr, "selftest:%d: EXPECT failed: %s\n", __LINE__, #c); \
      ++g_fail;                                                            \
    }                                                                      \
  } while (0)

static std::vector<void*> g_allocs;  // freed at the end (LeakSanitizer)
template <typename T>
T* alloc(std::size_t n) {
  T* p = nullptr;
  cudaMalloc(&p, sizeof(T) * n);
  g_allocs.push_back(p);
  return p;
}
template <typename T>
T* dev(const std::vector<T>& h) {
  T* p = alloc<T>(h.empty() ? 1 : h.size());
  cudaMemcpy(p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice);
  return p;
}
template <typename T>
std::vector<T> host(const T* p, std::size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost);
  return h;
}

// ---------------------------------------------------------------- kernels
// Block sum: shuffles within warps, shared memory across warps.
__global__ void block_sum_kernel(const int* in, int n, long long* out) {
  __shared__ long long warp_sums[32];
  long long v = 0;
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) v += in[i];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0;
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Every shuffle flavour and the ballot; out[t * 8 + k].
__global__ void shuffle_kernel(int* out) {
  const int t = threadIdx.x, lane = t & 31;
  int* o = out + t * 8;
  o[0] = __shfl_sync(0xffffffffu, t * 10, 3);           // lane 3 of the warp
  o[1] = __shfl_up_sync(0xffffffffu, t, 2);             // own value on lanes 0, 1
  o[2] = __shfl_down_sync(0xffffffffu, t, 5);           // own value on lanes 27..31
  o[3] = __shfl_xor_sync(0xffffffffu, t, 1);
  o[4] = __shfl_down_sync(0xffffffffu, t, 3, 8);        // segments of 8
  o[5] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  o[6] = __shfl_sync(0xffffffffu, t, 33, 16);           // 33 mod 16 = 1 in the segment
  o[7] = __popc(__ballot_sync(0xffffffffu, t & 1)) + 100 * __ffs(1 << (lane % 7));
}

__global__ void shfl_double_kernel(double* out) {
  const double v = threadIdx.x + 0.25;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, v, 31);
}

__global__ void histogram_kernel(const int* in, int n, int* bins, unsigned long long* total,
                                 float* fsum) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    atomicAdd(&bins[in[i] & 15], 1);
    atomicAdd(total, (unsigned long long)in[i]);
    atomicAdd(fsum, 0.5f);
  }
}

__global__ void cas_min_kernel(unsigned long long* m, int* flag) {
  const unsigned long long v = 1000 - blockIdx.x * blockDim.x - threadIdx.x;
  atomicMin(m, v);
  atomicCAS(flag, 0, (int)(blockIdx.x * blockDim.x + threadIdx.x) + 1);  // first one wins
}

__global__ void syncthreads_or_kernel(const int* pred, int* out) {
  const int t = threadIdx.x;
  out[t] = __syncthreads_or(pred[blockIdx.x] == t) + 10 * __syncthreads_count(t % 4 == 0) +
           1000 * __syncthreads_and(t >= 0);
}

// 2D grid and block: every thread writes its global coordinates.
__global__ void grid2d_kernel(int* out, int w) {
  const int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
  out[y * w + x] = y * 1000 + x + (int)(gridDim.x * 100000) + (int)(threadIdx.z * 0);
}

// Dynamic shared memory reversal within the block.
__global__ void reverse_kernel(const int* in, int* out) {
  extern __shared__ int buf[];
  const int t = threadIdx.x;
  buf[blockDim.x - 1 - t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = buf[t];
}

// Shared memory is poisoned at every block start: a block reads what it did not write.
__global__ void shared_poison_kernel(int* out) {
  __shared__ int s;
  if (blockIdx.x == 0 && threadIdx.x == 0) s = 42;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = s;
}

// Early exit of whole warps and of single threads before a barrier.
__global__ void early_exit_kernel(int* out) {
  __shared__ int s;
  if (threadIdx.x == 0) s = 7;
  if (threadIdx.x >= 64) return;  // two whole warps leave
  __syncthreads();
  out[threadIdx.x] = s;
}

__global__ void deadlock_kernel(int* out) {
  if (threadIdx.x == 0) __syncthreads();  // lane 0 waits for the block...
  else __syncwarp();                      // ...lanes 1..31 wait for lane 0
  out[threadIdx.x] = 1;
}

__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x == 5) return;
  out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 1);
}

__global__ void oob_kernel(int* out, int n) { out[threadIdx.x] = n; }  // launched with > n threads

__global__ void noop_kernel(int* p) {
  if (p) p[0] = 0;
}

// ---------------------------------------------------------------- helpers
// Runs f in a child; returns its exit description and its stderr.
static std::string run_child(const std::function<void()>& f, int* status_out) {
  int fds[2];
  if (pipe(fds) != 0) return "pipe failed";
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    setenv("EMU_CONTINUE", "0", 1);
    f();
    fflush(stderr);
    _exit(0);
  }
  close(fds[1]);
  std::string err;
  char buf[4096];
  ssize_t k;
  while ((k = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, k);
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  *status_out = st;
  return err;
}

static bool failed(int st) { return !(WIFEXITED(st) && WEXITSTATUS(st) == 0); }

int main() {
  // --- block reduction with shuffles
  {
    const int n = 100003;
    std::vector<int> h(n);
    long long want = 0;
    for (int i = 0; i < n; ++i) want += h[i] = (i * 7919) % 1001 - 500;
    int* d = dev(h);
    long long* out = alloc<long long>(7);
    block_sum_kernel<<<7, 256>>>(d, n, out);
    EXPECT(cudaGetLastError() == cudaSuccess);
    long long got = 0;
    for (long long v : host(out, 7)) got += v;
    EXPECT(got == want);
    block_sum_kernel<<<1, 1024>>>(d, n, out);
    EXPECT(host(out, 1)[0] == want);
  }
  // --- shuffles and ballot
  {
    int* out = alloc<int>(64 * 8);
    shuffle_kernel<<<1, 64>>>(out);
    auto h = host(out, 64 * 8);
    unsigned ballot = 0;
    for (int l = 0; l < 32; ++l) if (l % 3 == 0) ballot |= 1u << l;
    for (int t = 0; t < 64; ++t) {
      const int lane = t & 31, w0 = t - lane;
      const int* o = &h[t * 8];
      EXPECT(o[0] == (w0 + 3) * 10);
      EXPECT(o[1] == (lane >= 2 ? t - 2 : t));
      EXPECT(o[2] == (lane + 5 < 32 ? t + 5 : t));
      EXPECT(o[3] == (t ^ 1));
      EXPECT(o[4] == ((lane % 8) + 3 < 8 ? t + 3 : t));
      EXPECT((unsigned)o[5] == ballot);
      EXPECT(o[6] == (t & ~15) + 1);
      EXPECT(o[7] == 16 + 100 * ((lane % 7) + 1));
    }
    double* dd = alloc<double>(32);
    shfl_double_kernel<<<1, 32>>>(dd);
    auto hd = host(dd, 32);
    for (int t = 0; t < 32; ++t) EXPECT(hd[t] == (31 - t) + 0.25);
  }
  // --- atomics
  {
    const int n = 50000;
    std::vector<int> h(n);
    std::vector<int> want(16, 0);
    unsigned long long want_total = 0;
    for (int i = 0; i < n; ++i) {
      h[i] = (i * 2654435761u) >> 7 & 0xffff;
      ++want[h[i] & 15];
      want_total += h[i];
    }
    int* d = dev(h);
    int* bins = dev(std::vector<int>(16, 0));
    unsigned long long* total = dev(std::vector<unsigned long long>{0});
    float* fsum = dev(std::vector<float>{0.f});
    histogram_kernel<<<13, 128>>>(d, n, bins, total, fsum);
    EXPECT(host(bins, 16) == want);
    EXPECT(host(total, 1)[0] == want_total);
    EXPECT(host(fsum, 1)[0] == 0.5f * n);
    unsigned long long* m = dev(std::vector<unsigned long long>{~0ull});
    int* flag = dev(std::vector<int>{0});
    cas_min_kernel<<<4, 100>>>(m, flag);
    EXPECT(host(m, 1)[0] == 1000 - 399);
    const int f = host(flag, 1)[0];
    EXPECT(f >= 1 && f <= 400);
  }
  // --- __syncthreads_or / _count / _and
  {
    int* pred = dev(std::vector<int>{5, -1});
    int* out = alloc<int>(96);
    syncthreads_or_kernel<<<1, 96>>>(pred, out);
    for (int v : host(out, 96)) EXPECT(v == 1 + 10 * 24 + 1000);
    syncthreads_or_kernel<<<dim3(1), dim3(96)>>>(pred + 1, out);
    for (int v : host(out, 96)) EXPECT(v == 0 + 10 * 24 + 1000);
  }
  // --- 2D grid/block
  {
    const int w = 48, hgt = 20;
    int* out = alloc<int>(w * hgt);
    grid2d_kernel<<<dim3(3, 5), dim3(16, 4)>>>(out, w);
    auto h = host(out, w * hgt);
    for (int y = 0; y < hgt; ++y)
      for (int x = 0; x < w; ++x) EXPECT(h[y * w + x] == y * 1000 + x + 300000);
  }
  // --- dynamic shared memory, shared poisoning, early exits
  {
    std::vector<int> in(3 * 64);
    for (int i = 0; i < 3 * 64; ++i) in[i] = i;
    int* d = dev(in);
    int* out = alloc<int>(3 * 64);
    reverse_kernel<<<3, 64, 64 * sizeof(int)>>>(d, out);
    auto h = host(out, 3 * 64);
    for (int b = 0; b < 3; ++b)
      for (int t = 0; t < 64; ++t) EXPECT(h[b * 64 + t] == b * 64 + 63 - t);
    shared_poison_kernel<<<2, 32>>>(out);
    h = host(out, 2);
    EXPECT(h[0] == 42);
    EXPECT(h[1] == (int)0xA5A5A5A5 || getenv("EMU_FILL"));  // block 1 never wrote s
    early_exit_kernel<<<1, 128>>>(out);
    h = host(out, 64);
    for (int t = 0; t < 64; ++t) EXPECT(h[t] == 7);
  }
  // --- launch configuration errors are reported by cudaGetLastError (and then cleared)
  {
    int* p = alloc<int>(1);
    noop_kernel<<<1, 1025>>>(p);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
    EXPECT(cudaGetLastError() == cudaSuccess);
    noop_kernel<<<dim3(1, 65536), 32>>>(p);
    EXPECT(cudaPeekAtLastError() == cudaErrorInvalidConfiguration);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
    noop_kernel<<<0, 32>>>(p);
    EXPECT(cudaGetLastError() == cudaErrorInvalidConfiguration);
    noop_kernel<<<1, 32, 0, nullptr>>>(p);
    EXPECT(cudaGetLastError() == cudaSuccess);
    EXPECT(std::string(cudaGetErrorString(cudaErrorInvalidConfiguration)) == "invalid configuration argument");
  }
  // --- cub
  {
    std::vector<long long> keys{5, -3, 5, 2, 9, -3, 0, 2, 7, 1};  // -3's low bits: 1..1101
    const int n = (int)keys.size();
    std::vector<int> vals(n);
    for (int i = 0; i < n; ++i) vals[i] = i;
    long long* dk = dev(keys);
    long long* dko = alloc<long long>(n);
    int* dv = dev(vals);
    int* dvo = alloc<int>(n);
    std::size_t bytes = 0;
    EXPECT(cub::DeviceRadixSort::SortPairs(nullptr, bytes, dk, dko, dv, dvo, n) == cudaSuccess);
    void* tmp = alloc<char>(bytes);
    EXPECT(cub::DeviceRadixSort::SortPairs(tmp, bytes, dk, dko, dv, dvo, n) == cudaSuccess);
    EXPECT((host(dko, n) == std::vector<long long>{-3, -3, 0, 1, 2, 2, 5, 5, 7, 9}));
    EXPECT((host(dvo, n) == std::vector<int>{1, 5, 6, 9, 3, 7, 0, 2, 8, 4}));  // stable
    // bits [1, 3): digits 5->2, -3->2, 2->1, 9->0, 0->0, 7->3, 1->0
    EXPECT(cub::DeviceRadixSort::SortPairs(tmp, bytes, dk, dko, dv, dvo, n, 1, 3) == cudaSuccess);
    EXPECT((host(dko, n) == std::vector<long long>{9, 0, 1, 2, 2, 5, -3, 5, -3, 7}));
    EXPECT((host(dvo, n) == std::vector<int>{4, 6, 9, 3, 7, 0, 1, 2, 5, 8}));
    std::vector<float> fk{1.5f, -0.f, 0.f, -2.f, 3.f, -1.f};
    float* dfk = dev(fk);
    float* dfo = alloc<float>(6);
    EXPECT(cub::DeviceRadixSort::SortKeys(tmp, bytes, dfk, dfo, 6) == cudaSuccess);
    auto fo = host(dfo, 6);
    EXPECT(fo[0] == -2.f && fo[1] == -1.f && std::signbit(fo[2]) && !std::signbit(fo[3]) &&
           fo[4] == 1.5f && fo[5] == 3.f);
    // segmented: segments [0,3) [3,3) (empty) [4,10); entry 3 is in none: untouched
    long long* dbeg = dev(std::vector<long long>{0, 3, 4});
    long long* dend = dev(std::vector<long long>{3, 3, 10});
    std::vector<int> sk{3, 1, 2, 99, 8, 6, 7, 5, 9, 4};
    int* dsk = dev(sk);
    int* dso = dev(std::vector<int>(10, -7));
    float* dsv = dev(std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    float* dsvo = dev(std::vector<float>(10, -7.f));
    std::size_t sb = 0;
    EXPECT(cub::DeviceSegmentedSort::SortPairs(nullptr, sb, dsk, dso, dsv, dsvo, 10, 3, dbeg, dend) == cudaSuccess);
    EXPECT(cub::DeviceSegmentedSort::SortPairs(tmp, sb, dsk, dso, dsv, dsvo, 10, 3, dbeg, dend) == cudaSuccess);
    EXPECT((host(dso, 10) == std::vector<int>{1, 2, 3, -7, 4, 5, 6, 7, 8, 9}));
    EXPECT((host(dsvo, 10) == std::vector<float>{1, 2, 0, -7, 9, 7, 5, 6, 4, 8}));
    // scan, in place too
    std::vector<long long> sc{3, 0, 4, 1, 5};
    long long* dsc = dev(sc);
    long long* dso2 = alloc<long long>(5);
    EXPECT(cub::DeviceScan::ExclusiveSum(tmp, bytes, dsc, dso2, 5) == cudaSuccess);
    EXPECT((host(dso2, 5) == std::vector<long long>{0, 3, 3, 7, 8}));
    EXPECT(cub::DeviceScan::ExclusiveSum(tmp, bytes, dsc, dsc, 5) == cudaSuccess);
    EXPECT((host(dsc, 5) == std::vector<long long>{0, 3, 3, 7, 8}));
  }
  // --- errors the emulator must catch (in a child process)
  {
    int st = 0;
    std::string err = run_child([] {
      int* out = alloc<int>(64);
      deadlock_kernel<<<1, 64>>>(out);
    }, &st);
    EXPECT(failed(st) && err.find("deadlock") != std::string::npos &&
           err.find("deadlock_kernel") != std::string::npos);
    if (failed(st)) std::printf("selftest: deadlock detected as expected\n");

    err = run_child([] {
      int* out = alloc<int>(32);
      exited_lane_kernel<<<1, 32>>>(out);
    }, &st);
    EXPECT(failed(st) && err.find("exited") != std::string::npos && err.find("exited_lane_kernel") != std::string::npos);

    err = run_child([] {
      int host_buf[4];
      noop_kernel<<<1, 1>>>(host_buf);
    }, &st);
    EXPECT(failed(st) && err.find("not device memory") != std::string::npos);

    err = run_child([] {
      int* p = alloc<int>(1);
      int h[4];
      cudaMemcpy(p, h, 16, cudaMemcpyHostToDevice);  // overruns the 4-byte allocation
    }, &st);
    EXPECT(failed(st) && err.find("cudaMemcpy") != std::string::npos);

#if defined(__SANITIZE_ADDRESS__)
    err = run_child([] {
      int* out = alloc<int>(40);
      oob_kernel<<<1, 41>>>(out, 40);
    }, &st);
    EXPECT(failed(st) && err.find("heap-buffer-overflow") != std::string::npos);
    if (failed(st)) std::printf("selftest: out-of-bounds kernel write caught by ASan as expected\n");
#endif
  }
  for (void* p : g_allocs) EXPECT(cudaFree(p) == cudaSuccess);
  if (g_fail) {
    std::printf("cuda_emu selftest: %d check(s) FAILED\n", g_fail);
    return 1;
  }
  std::printf("cuda_emu selftest: all checks passed\n");
  return 0;
}
