// cuda_emu runtime: the block scheduler (CUDA threads as coroutines), warp intrinsics, block
// barriers, shared memory, launch checks and the host runtime API.
// Coroutines: on x86-64 a minimal context switch (callee-saved registers, x87/SSE control
// words; no signal-mask system call, unlike swapcontext: ~10x faster); elsewhere, or built
// with -DEMU_USE_UCONTEXT, ucontext (makecontext/swapcontext). Both are annotated for ASan
// (__sanitizer_start/finish_switch_fiber).
// Environment:
//   EMU_SCHED=forward|reverse|random  order of blocks and of the threads of a block:
//                                     forward/reverse: blocks in (reverse) order, threads round
//                                     robin in (reverse) thread order; random: blocks shuffled;
//                                     when a thread blocks, 3 times in 4 a ready thread of its
//                                     own warp goes on (so a warp runs ahead of the others, as
//                                     on a GPU), else any ready thread. Default forward.
//   EMU_SEED=n                        seed of the random order (1)
//   EMU_PREEMPT=p                     percent chance that a thread yields to another one at
//                                     each atomic (default 50 with EMU_SCHED=random, else 0):
//                                     interleaves lock-free code between atomics
//   EMU_FILL=0xNN                     byte that fresh cudaMalloc memory and every block's
//                                     shared memory are filled with (0xA5; "none": malloc's)
//   EMU_CONTINUE=1                    report non-fatal errors and go on instead of aborting
//   EMU_WATCHDOG=s                    abort a launch that runs longer than s seconds (300)
//   EMU_STATS=1                       print per-kernel launch statistics at exit
//   EMU_TRACE=1                       print every launch
#include <cuda_runtime.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu/emu.h"

#if !defined(EMU_USE_UCONTEXT) && !defined(__x86_64__)
#define EMU_USE_UCONTEXT 1
#endif

#if defined(__SANITIZE_ADDRESS__)
#define EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#else
#define EMU_ASAN 0
#endif

namespace emu {

ThreadHdr* cur = nullptr;
uint3 g_blockIdx{0, 0, 0};
dim3 g_blockDim;
dim3 g_gridDim;

namespace {

// ------------------------------------------------------------------ configuration
struct Config {
  enum Sched { kForward, kReverse, kRandom } sched = kForward;
  unsigned seed = 1;
  int fill = 0xA5;  // -1: none
  bool cont = false;
  int watchdog = 300;
  bool stats = false;
  bool trace = false;
  int preempt = 0;
  Config() {
    if (const char* s = getenv("EMU_SCHED")) {
      if (!strcmp(s, "reverse")) sched = kReverse;
      else if (!strcmp(s, "random")) sched = kRandom;
      else if (strcmp(s, "forward")) { fprintf(stderr, "[cuda_emu] bad EMU_SCHED=%s\n", s); abort(); }
    }
    if (const char* s = getenv("EMU_SEED")) seed = static_cast<unsigned>(strtoul(s, nullptr, 0));
    preempt = sched == kRandom ? 50 : 0;
    if (const char* s = getenv("EMU_PREEMPT")) preempt = atoi(s);
    if (const char* s = getenv("EMU_FILL")) fill = strcmp(s, "none") ? static_cast<int>(strtol(s, nullptr, 0)) & 0xff : -1;
    if (const char* s = getenv("EMU_CONTINUE")) cont = atoi(s) != 0;
    if (const char* s = getenv("EMU_WATCHDOG")) watchdog = atoi(s);
    if (const char* s = getenv("EMU_STATS")) stats = atoi(s) != 0;
    if (const char* s = getenv("EMU_TRACE")) trace = atoi(s) != 0;
  }
};
Config& cfg() {
  static Config c;
  return c;
}

// ------------------------------------------------------------------ device allocations
std::map<std::uintptr_t, std::size_t>& allocs() {
  static auto* m = new std::map<std::uintptr_t, std::size_t>;  // never destroyed: cudaFree may run at exit
  return *m;
}
// The allocation holding [p, p + bytes) (bytes may be 0: p may then be its end), or null.
const std::pair<const std::uintptr_t, std::size_t>* find_alloc(const void* p, std::size_t bytes) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto& m = allocs();
  auto it = m.upper_bound(a);
  if (it == m.begin()) return nullptr;
  --it;
  if (a < it->first || a + bytes > it->first + it->second) return nullptr;
  if (bytes == 0 && a > it->first + it->second) return nullptr;
  return &*it;
}
bool is_device(const void* p) { return find_alloc(p, 0) != nullptr; }

cudaError_t g_last_error = cudaSuccess;
void set_error(cudaError_t e) {
  if (g_last_error == cudaSuccess) g_last_error = e;
}

// ------------------------------------------------------------------ threads and blocks
constexpr std::size_t kStackBytes = 256 * 1024;
constexpr std::size_t kGuardBytes = 4096;

enum State : int { kReady, kRunning, kWaitBar, kWaitWarp, kExited };
const char* state_name(int s) {
  static const char* n[] = {"ready", "running", "at __syncthreads", "at a warp intrinsic", "exited"};
  return n[s];
}
const char* op_name(int op) {
  static const char* n[] = {"__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync",
                            "__shfl_xor_sync", "__ballot_sync", "__any_sync", "__all_sync"};
  return n[op];
}

#ifndef EMU_USE_UCONTEXT
// emu_ctx_switch(&save_sp, new_sp): push the callee-saved registers and control words on the
// current stack, save its pointer, switch to new_sp and pop them from there.
extern "C" void emu_ctx_switch(void** save_sp, void* new_sp);
asm(R"(
  .text
  .p2align 4
  .globl emu_ctx_switch
  .type emu_ctx_switch, @function
emu_ctx_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $16, %rsp
  stmxcsr 8(%rsp)
  fnstcw (%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  fldcw (%rsp)
  ldmxcsr 8(%rsp)
  addq $16, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_ctx_switch, .-emu_ctx_switch
)");
#endif

struct Thread {
  ThreadHdr hdr;  // first: device code sees it through emu::cur
#ifdef EMU_USE_UCONTEXT
  ucontext_t uc;
  bool uc_init = false;
#else
  void* sp = nullptr;
#endif
  char* stack = nullptr;  // usable part (above the guard page)
  int state = kReady;
  // warp intrinsic in progress
  int op = 0;
  unsigned mask = 0;
  std::uint64_t value = 0;
  int arg = 0, width = 32;
  std::uint64_t result = 0;
  int bar_pred = 0, bar_kind = 0, bar_result = 0;
  void* fake_stack = nullptr;  // ASan
};

struct Ctx {  // the host side (scheduler) context
#ifdef EMU_USE_UCONTEXT
  ucontext_t uc;
#else
  void* sp = nullptr;
#endif
  void* fake_stack = nullptr;
  const void* stack_bottom = nullptr;
  std::size_t stack_size = 0;
};

struct KernelStats {
  long launches = 0, blocks = 0, threads = 0, switches = 0;
  double seconds = 0;
};

struct Launch {
  const char* name = "";
  const char* file = "";
  int line = 0;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  std::size_t smem = 0;
};

std::vector<Thread*>& g_slots = *new std::vector<Thread*>;  // grows to the largest block; never freed
Thread** g_threads = nullptr;
int g_nthreads = 0;
std::vector<int> g_order;      // scheduling order of the block's threads
std::vector<int> g_pos;        // position of a thread in g_order
std::vector<int> g_ready;      // the ready threads (EMU_SCHED=random picks among them)
std::vector<int> g_ready_at;   // index of a thread in g_ready, or -1
int g_live = 0, g_bar_count = 0;
Ctx g_host;
Launch g_launch;
bool g_in_kernel = false;
long g_switches = 0;
unsigned char* g_dyn_smem = nullptr;
std::unordered_map<void*, std::pair<long, std::size_t>> g_shared;  // addr -> (block epoch, bytes)
long g_block_epoch = 0;
std::size_t g_static_smem = 0;
bool g_warned_exited_barrier = false;
std::mt19937 g_rng;
std::map<std::string, KernelStats>& stats() {
  static auto* s = new std::map<std::string, KernelStats>;  // never destroyed: read at exit
  return *s;
}

std::string where() {
  char buf[512];
  if (!g_in_kernel) return "host";
  int n = snprintf(buf, sizeof buf, "kernel %s (launched at %s:%d) block (%u,%u,%u)", g_launch.name,
                   g_launch.file, g_launch.line, g_blockIdx.x, g_blockIdx.y, g_blockIdx.z);
  if (cur)
    snprintf(buf + n, sizeof buf - n, " thread (%u,%u,%u)", cur->tid.x, cur->tid.y, cur->tid.z);
  return buf;
}

void vreport(const char* kind, const char* fmt, va_list ap) {
  char msg[2048];
  vsnprintf(msg, sizeof msg, fmt, ap);
  fprintf(stderr, "[cuda_emu] %s: %s\n    in %s\n", kind, msg, where().c_str());
  fflush(stderr);
}

void dump_block_states() {
  fprintf(stderr, "    thread states (block of %d threads, %d live):\n", g_nthreads, g_live);
  // Group consecutive threads with the same state/op/mask.
  int t = 0;
  while (t < g_nthreads) {
    const Thread* a = g_threads[t];
    int u = t + 1;
    while (u < g_nthreads && g_threads[u]->state == a->state &&
           (a->state != kWaitWarp || (g_threads[u]->op == a->op && g_threads[u]->mask == a->mask)))
      ++u;
    if (a->state == kWaitWarp)
      fprintf(stderr, "      threads %d..%d: %s (%s, mask 0x%08x)\n", t, u - 1, state_name(a->state),
              op_name(a->op), a->mask);
    else
      fprintf(stderr, "      threads %d..%d: %s\n", t, u - 1, state_name(a->state));
    t = u;
  }
}

// ------------------------------------------------------------------ context switches
void set_state(struct Thread* t, int st);
const void* stack_bottom_of(Thread* t) { return t->stack; }

#if EMU_ASAN
void start_switch(void** fake_save, const void* bottom, std::size_t size) {
  __sanitizer_start_switch_fiber(fake_save, bottom, size);
}
void finish_switch(void* fake) { __sanitizer_finish_switch_fiber(fake, nullptr, nullptr); }
#else
void start_switch(void**, const void*, std::size_t) {}
void finish_switch(void*) {}
#endif

// Switch from the running coroutine (a thread, or the host when from == nullptr) to `to`
// (a thread, or the host when to == nullptr). `exiting`: from never runs again.
void switch_to(Thread* from, Thread* to, bool exiting) {
  ++g_switches;
  void** fake = exiting ? nullptr : (from ? &from->fake_stack : &g_host.fake_stack);
  const void* bottom = to ? stack_bottom_of(to) : g_host.stack_bottom;
  const std::size_t size = to ? kStackBytes : g_host.stack_size;
  cur = to ? &to->hdr : nullptr;
  if (to) set_state(to, kRunning);
  start_switch(fake, bottom, size);
#ifdef EMU_USE_UCONTEXT
  ucontext_t* from_uc = from ? &from->uc : &g_host.uc;
  ucontext_t* to_uc = to ? &to->uc : &g_host.uc;
  if (exiting) {
    setcontext(to_uc);
    abort();
  }
  swapcontext(from_uc, to_uc);
#else
  void** from_sp = from ? &from->sp : &g_host.sp;
  emu_ctx_switch(from_sp, to ? to->sp : g_host.sp);  // an exiting thread's save is never used
#endif
  // back in `from`
  finish_switch(from ? from->fake_stack : g_host.fake_stack);
}

Thread* self() { return reinterpret_cast<Thread*>(cur); }

void set_state(Thread* t, int st) {
  const int id = t->hdr.linear;
  if (st == kReady && g_ready_at[id] < 0) {
    g_ready_at[id] = static_cast<int>(g_ready.size());
    g_ready.push_back(id);
  } else if (st != kReady && g_ready_at[id] >= 0) {
    const int k = g_ready_at[id], last = g_ready.back();
    g_ready[k] = last;
    g_ready_at[last] = k;
    g_ready.pop_back();
    g_ready_at[id] = -1;
  }
  t->state = st;
}

// The next runnable thread after `t` in the scheduling order (t itself last), or null.
Thread* next_ready(Thread* t) {
  if (cfg().sched == Config::kRandom) {
    if (g_ready.empty()) return nullptr;
    if (t && (g_rng() & 3) != 0) {  // a ready lane of the same warp, if any
      const int w0 = t->hdr.warp * 32, lanes = std::min(32, g_nthreads - w0);
      const int off = static_cast<int>(g_rng() % lanes);
      for (int k = 0; k < lanes; ++k) {
        Thread* c = g_threads[w0 + (off + k) % lanes];
        if (c->state == kReady) return c;
      }
    }
    return g_threads[g_ready[g_rng() % g_ready.size()]];
  }
  const int start = t ? g_pos[t->hdr.linear] : -1;
  for (int k = 1; k <= g_nthreads; ++k) {
    Thread* c = g_threads[g_order[(start + k + g_nthreads) % g_nthreads]];
    if (c->state == kReady) return c;
  }
  return nullptr;
}

// The running thread cannot go on (waiting or exited): run another one, or the host.
void block_self(bool exiting) {
  Thread* me = self();
  Thread* nx = next_ready(me);
  switch_to(me, nx, exiting);
}

// Every live thread waits at __syncthreads*: compute the results and let them go on.
void complete_barrier() {
  int any = 0, all = 1, count = 0, kinds = 0;
  for (int t = 0; t < g_nthreads; ++t) {
    Thread* c = g_threads[t];
    if (c->state != kWaitBar) continue;
    any |= c->bar_pred != 0;
    all &= c->bar_pred != 0;
    count += c->bar_pred != 0;
    kinds |= 1 << c->bar_kind;
  }
  if (kinds & (kinds - 1))
    error("__syncthreads variants mixed in one barrier (e.g. __syncthreads and __syncthreads_or)");
  if (g_live < g_nthreads && !g_warned_exited_barrier) {
    g_warned_exited_barrier = true;
    fprintf(stderr,
            "[cuda_emu] warning: kernel %s: a __syncthreads completed with %d of %d threads of "
            "the block exited (counted as arrived, as sm_70+ hardware does; the CUDA guide calls "
            "a barrier not reached by every thread undefined)\n",
            g_launch.name, g_nthreads - g_live, g_nthreads);
  }
  for (int t = 0; t < g_nthreads; ++t) {
    Thread* c = g_threads[t];
    if (c->state != kWaitBar) continue;
    c->bar_result = c->bar_kind == 1 ? any : c->bar_kind == 2 ? all : c->bar_kind == 3 ? count : 0;
    set_state(c, kReady);
  }
  g_bar_count = 0;
}

void thread_entry();

void check_block_done_or_deadlock() {
  // Called on the host after the threads gave control back: every thread either exited,
  // or none can run.
  if (g_live == 0) return;
  fprintf(stderr, "[cuda_emu] FATAL: deadlock: no thread of the block can proceed\n    in %s\n",
          where().c_str());
  dump_block_states();
  abort();
}

void watchdog_handler(int) {
  char buf[600];
  int n = snprintf(buf, sizeof buf,
                   "[cuda_emu] FATAL: watchdog: kernel %s (launched at %s:%d) block (%u,%u,%u) "
                   "ran for more than EMU_WATCHDOG=%d s (a spin loop waiting on another thread?)\n",
                   g_launch.name, g_launch.file, g_launch.line, g_blockIdx.x, g_blockIdx.y,
                   g_blockIdx.z, cfg().watchdog);
  ssize_t w = write(2, buf, n);
  (void)w;
  abort();
}

void init_host_stack() {
  static bool done = false;
  if (done) return;
  done = true;
  pthread_attr_t attr;
  void* addr = nullptr;
  std::size_t size = 0;
  if (pthread_getattr_np(pthread_self(), &attr) == 0) {
    pthread_attr_getstack(&attr, &addr, &size);
    pthread_attr_destroy(&attr);
  }
  g_host.stack_bottom = addr;
  g_host.stack_size = size;
  signal(SIGALRM, watchdog_handler);
}

Thread* slot(int i) {
  while (static_cast<int>(g_slots.size()) <= i) {
    Thread* t = new Thread();
    void* mem = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) {
      perror("[cuda_emu] mmap of a thread stack");
      abort();
    }
    mprotect(mem, kGuardBytes, PROT_NONE);  // stack overflow -> SIGSEGV, not silent corruption
    t->stack = static_cast<char*>(mem) + kGuardBytes;
    g_slots.push_back(t);
  }
  return g_slots[i];
}

void run_block(const dim3& block) {
  const int nt = static_cast<int>(block.x * block.y * block.z);
  g_nthreads = nt;
  g_threads = g_slots.data();
  g_order.resize(nt);
  g_pos.resize(nt);
  for (int i = 0; i < nt; ++i) g_order[i] = i;
  if (cfg().sched == Config::kReverse) std::reverse(g_order.begin(), g_order.end());
  if (cfg().sched == Config::kRandom) std::shuffle(g_order.begin(), g_order.end(), g_rng);
  for (int i = 0; i < nt; ++i) g_pos[g_order[i]] = i;
  g_ready.clear();
  g_ready_at.assign(nt, -1);
  for (int i = 0; i < nt; ++i) {
    Thread* t = g_slots[i];
    t->hdr.linear = i;
    t->hdr.tid = uint3{static_cast<unsigned>(i % block.x), static_cast<unsigned>((i / block.x) % block.y),
                       static_cast<unsigned>(i / (block.x * block.y))};
    t->hdr.lane = i & 31;
    t->hdr.warp = i >> 5;
    set_state(t, kReady);
    t->fake_stack = nullptr;
#if EMU_ASAN
    __asan_unpoison_memory_region(t->stack, kStackBytes);
#endif
#ifdef EMU_USE_UCONTEXT
    if (!t->uc_init) {
      getcontext(&t->uc);
      t->uc_init = true;
    }
    t->uc.uc_stack.ss_sp = t->stack;
    t->uc.uc_stack.ss_size = kStackBytes;
    t->uc.uc_link = nullptr;
    makecontext(&t->uc, thread_entry, 0);
#else
    // The frame emu_ctx_switch pops: control words, r15..rbp, return address = thread_entry,
    // then a null return address for thread_entry (entered with rsp = 8 mod 16, as by a call).
    auto* top = reinterpret_cast<std::uint64_t*>(t->stack + kStackBytes);
    std::uint64_t* f = top - 10;
    std::uint32_t mxcsr = 0x1f80;
    std::uint16_t fpucw = 0x037f;
    std::memset(f, 0, 10 * sizeof(std::uint64_t));
    std::memcpy(reinterpret_cast<char*>(f), &fpucw, sizeof fpucw);
    std::memcpy(reinterpret_cast<char*>(f) + 8, &mxcsr, sizeof mxcsr);
    f[8] = reinterpret_cast<std::uint64_t>(&thread_entry);  // after 2 + 6 slots
    f[9] = 0;
    t->sp = f;
#endif
  }
  g_live = nt;
  g_bar_count = 0;
  ++g_block_epoch;
  // The host runs the threads until none can go on.
  Thread* first = g_threads[g_order[0]];
  switch_to(nullptr, first, false);
  check_block_done_or_deadlock();
}

void thread_entry() {
  finish_switch(nullptr);
  g_launch.body(g_launch.ctx);
  Thread* me = self();
  set_state(me, kExited);
  --g_live;
  // A warp intrinsic waiting for this lane can never complete.
  const int w0 = me->hdr.warp * 32, w1 = std::min(g_nthreads, w0 + 32);
  for (int l = w0; l < w1; ++l) {
    Thread* o = g_threads[l];
    if (o->state == kWaitWarp && (o->mask >> me->hdr.lane & 1u)) {
      fprintf(stderr,
              "[cuda_emu] FATAL: a thread exited while lane %d of its warp waits in %s with mask "
              "0x%08x, which names it (undefined behaviour: a hang or garbage on a GPU)\n    in %s\n",
              o->hdr.lane, op_name(o->op), o->mask, where().c_str());
      dump_block_states();
      abort();
    }
  }
  if (g_bar_count > 0 && g_bar_count == g_live) complete_barrier();
  block_self(true);
}

}  // namespace

// ------------------------------------------------------------------ error reporting
void fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport("FATAL", fmt, ap);
  va_end(ap);
  if (g_in_kernel && g_threads) dump_block_states();
  abort();
}

void error(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vreport("ERROR", fmt, ap);
  va_end(ap);
  if (!cfg().cont) {
    fprintf(stderr, "    (set EMU_CONTINUE=1 to go on after errors)\n");
    abort();
  }
}

const ThreadHdr& device_thread(const char* what) {
  if (!cur) fatal("%s read outside a kernel", what);
  return *cur;
}

// ------------------------------------------------------------------ block barrier
int block_barrier(int pred, int kind) {
  Thread* me = self();
  if (!me) fatal("__syncthreads called outside a kernel");
  me->bar_pred = pred;
  me->bar_kind = kind;
  set_state(me, kWaitBar);
  ++g_bar_count;
  if (g_bar_count == g_live) {
    complete_barrier();  // sets every waiting thread, this one included, ready
    set_state(me, kRunning);
    return me->bar_result;
  }
  block_self(false);
  return me->bar_result;
}

// ------------------------------------------------------------------ warp intrinsics
std::uint64_t warp_op(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width) {
  Thread* me = self();
  if (!me) fatal("%s called outside a kernel", op_name(op));
  const int lane = me->hdr.lane;
  const int w0 = me->hdr.warp * 32;
  const int lanes = std::min(32, g_nthreads - w0);  // lanes beyond the block do not exist
  const unsigned exist = lanes == 32 ? 0xffffffffu : ((1u << lanes) - 1u);
  if (!(mask >> lane & 1u))
    error("%s: the calling lane %d is not in its mask 0x%08x (undefined behaviour)", op_name(op), lane, mask);
  if (mask & ~exist)
    error("%s: mask 0x%08x names lanes that do not exist (the warp has %d lanes: blockDim not a "
          "multiple of 32)", op_name(op), mask, lanes);
  if (op >= kShflIdx && op <= kShflXor && (width < 1 || width > 32 || (width & (width - 1))))
    error("%s: width %d is not a power of 2 in [1, 32]", op_name(op), width);
  me->op = op;
  me->mask = mask & exist;
  me->value = value;
  me->arg = arg;
  me->width = width;
  set_state(me, kWaitWarp);
  const unsigned group = mask & exist;
  for (int l = 0; l < lanes; ++l) {
    if (!(group >> l & 1u)) continue;
    Thread* o = g_threads[w0 + l];
    if (o->state == kExited) {
      fprintf(stderr,
              "[cuda_emu] FATAL: %s with mask 0x%08x names lane %d, which has exited "
              "(undefined behaviour: a hang or garbage on a GPU)\n    in %s\n",
              op_name(op), mask, l, where().c_str());
      dump_block_states();
      abort();
    }
    if (o->state != kWaitWarp) {  // not all there yet: wait
      block_self(false);
      return me->result;
    }
  }
  // Every lane of the group waits at a warp intrinsic: they must agree on it.
  for (int l = 0; l < lanes; ++l) {
    if (!(group >> l & 1u)) continue;
    Thread* o = g_threads[w0 + l];
    if (o->op != op || o->mask != me->mask)
      error("warp intrinsics mismatched in one warp: lane %d waits in %s (mask 0x%08x), lane %d "
            "in %s (mask 0x%08x) (undefined behaviour)", lane, op_name(op), me->mask, l,
            op_name(o->op), o->mask);
  }
  std::uint64_t ballot = 0;
  for (int l = 0; l < lanes; ++l)
    if ((group >> l & 1u) && g_threads[w0 + l]->value) ballot |= 1ull << l;
  for (int l = 0; l < lanes; ++l) {
    if (!(group >> l & 1u)) continue;
    Thread* o = g_threads[w0 + l];
    const int seg = l & ~(o->width - 1);  // first lane of the caller's width-segment
    int src = l;
    bool own = false;
    switch (o->op) {
      case kShflIdx: src = seg + (o->arg & (o->width - 1)); break;
      case kShflUp: src = l - o->arg; own = src < seg; break;
      case kShflDown: src = l + o->arg; own = src >= seg + o->width; break;
      case kShflXor: src = l ^ o->arg; own = src >= seg + o->width; break;
      default: break;
    }
    switch (o->op) {
      case kSyncwarp: o->result = 0; break;
      case kBallot: o->result = ballot; break;
      case kAny: o->result = ballot != 0; break;
      case kAll: o->result = (ballot & group) == group; break;
      default:
        if (own) {
          o->result = o->value;
        } else if (src < 0 || src >= lanes || !(group >> src & 1u)) {
          error("%s: lane %d reads lane %d, which is not in the mask 0x%08x (undefined value)",
                op_name(o->op), l, src, o->mask);
          o->result = o->value;
        } else {
          o->result = g_threads[w0 + src]->value;
        }
    }
    set_state(o, kReady);
  }
  set_state(me, kRunning);
  return me->result;
}

// ------------------------------------------------------------------ shared memory
void shared_decl(void* addr, std::size_t bytes, const char* name) {
  if (!g_in_kernel) fatal("__shared__ %s declared outside a kernel", name);
  auto& e = g_shared[addr];
  if (e.first != g_block_epoch) {  // first thread of this block to reach the declaration
    if (e.first == 0) g_static_smem += bytes;
    e.first = g_block_epoch;
    e.second = bytes;
    if (cfg().fill >= 0) memset(addr, cfg().fill, bytes);
  }
}

void* dyn_smem() {
  if (!g_in_kernel) fatal("extern __shared__ used outside a kernel");
  return g_dyn_smem;
}

void atomic_hook(const void* addr, std::size_t size, const char* what) {
  if (!g_in_kernel) fatal("%s called outside a kernel", what);
  if (reinterpret_cast<std::uintptr_t>(addr) % size)
    error("%s on a misaligned address %p (misaligned address error on a GPU)", what, addr);
  if (cfg().preempt > 0 && static_cast<int>(g_rng() % 100) < cfg().preempt) {
    // let another ready thread of the block run first (it may race with this atomic)
    Thread* me = self();
    Thread* nx = next_ready(me);
    if (nx && nx != me) {
      set_state(me, kReady);
      switch_to(me, nx, false);
    }
  }
}

// ------------------------------------------------------------------ launches
namespace {
const char* config_problem(const LaunchCfg& c) {
  const unsigned long long threads = 1ull * c.block.x * c.block.y * c.block.z;
  if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0) return "a grid dimension is 0";
  if (c.block.x == 0 || c.block.y == 0 || c.block.z == 0) return "a block dimension is 0";
  if (c.grid.x > 2147483647u) return "gridDim.x > 2^31 - 1";
  if (c.grid.y > 65535u || c.grid.z > 65535u) return "gridDim.y or gridDim.z > 65535";
  if (c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64) return "a block dimension exceeds (1024, 1024, 64)";
  if (threads > 1024) return "more than 1024 threads per block";
  return nullptr;
}
}  // namespace

void launch_impl(const char* name, const char* file, int line, const LaunchCfg& c,
                 void (*body)(void*), void* ctx, const PtrArg* ptrs, int nptrs) {
  init_host_stack();
  static bool seeded = false;
  if (!seeded) {
    seeded = true;
    g_rng.seed(cfg().seed);
  }
  if (g_in_kernel) fatal("kernel %s launched from inside a kernel (dynamic parallelism)", name);
  if (cfg().trace)
    fprintf(stderr, "[cuda_emu] launch %s at %s:%d grid (%u,%u,%u) block (%u,%u,%u) smem %zu\n", name,
            file, line, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y, c.block.z, c.smem);
  if (const char* p = config_problem(c)) {
    fprintf(stderr, "[cuda_emu] note: launch of %s at %s:%d fails: %s (cudaErrorInvalidConfiguration)\n",
            name, file, line, p);
    set_error(cudaErrorInvalidConfiguration);
    return;
  }
  if (c.smem > 48 * 1024) {
    fprintf(stderr, "[cuda_emu] note: launch of %s at %s:%d fails: %zu bytes of dynamic shared "
            "memory > 48 KiB without cudaFuncSetAttribute\n", name, file, line, c.smem);
    set_error(cudaErrorInvalidValue);
    return;
  }
  g_launch = Launch{name, file, line, body, ctx, c.smem};
  g_in_kernel = true;
  for (int k = 0; k < nptrs; ++k)
    if (ptrs[k].ptr && !is_device(ptrs[k].ptr))
      error("argument %d (%p) is a pointer that is not device memory (not from cudaMalloc, or "
            "past the end of its allocation)", ptrs[k].index, ptrs[k].ptr);
  const auto t0 = std::chrono::steady_clock::now();
  const long sw0 = g_switches;
  g_gridDim = c.grid;
  g_blockDim = c.block;
  const int nt = static_cast<int>(c.block.x * c.block.y * c.block.z);
  slot(nt - 1);
  const unsigned long long nblocks = 1ull * c.grid.x * c.grid.y * c.grid.z;
  std::vector<unsigned long long> order;
  if (cfg().sched != Config::kForward) {
    order.resize(nblocks);
    for (unsigned long long b = 0; b < nblocks; ++b) order[b] = b;
    if (cfg().sched == Config::kReverse) std::reverse(order.begin(), order.end());
    else if (cfg().sched == Config::kRandom) std::shuffle(order.begin(), order.end(), g_rng);
  }
  g_shared.clear();
  g_static_smem = 0;
  g_warned_exited_barrier = false;
  if (cfg().watchdog > 0) alarm(cfg().watchdog);
  for (unsigned long long b = 0; b < nblocks; ++b) {
    const unsigned long long id = order.empty() ? b : order[b];
    g_blockIdx = uint3{static_cast<unsigned>(id % c.grid.x), static_cast<unsigned>(id / c.grid.x % c.grid.y),
                       static_cast<unsigned>(id / (1ull * c.grid.x * c.grid.y))};
    // A fresh, exactly sized dynamic shared buffer per block: overruns are heap overflows.
    g_dyn_smem = static_cast<unsigned char*>(malloc(c.smem ? c.smem : 1));
    if (cfg().fill >= 0) memset(g_dyn_smem, cfg().fill, c.smem ? c.smem : 1);
    if (c.smem == 0) {
      free(g_dyn_smem);
      g_dyn_smem = static_cast<unsigned char*>(malloc(0));
    }
    run_block(c.block);
    free(g_dyn_smem);
    g_dyn_smem = nullptr;
    if (b == 0 && g_static_smem + c.smem > 48 * 1024)
      error("kernel uses %zu bytes of static + %zu of dynamic shared memory (> 48 KiB)",
            g_static_smem, c.smem);
  }
  if (cfg().watchdog > 0) alarm(0);
  g_in_kernel = false;
  g_threads = nullptr;
  cur = nullptr;
  if (cfg().stats) {
    KernelStats& s = stats()[name];
    ++s.launches;
    s.blocks += static_cast<long>(nblocks);
    s.threads += static_cast<long>(nblocks) * nt;
    s.switches += g_switches - sw0;
    s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
}

namespace {
struct StatsPrinter {
  ~StatsPrinter() {
    if (!cfg().stats || stats().empty()) return;
    fprintf(stderr, "[cuda_emu] %-32s %8s %9s %11s %12s %8s\n", "kernel", "launches", "blocks",
            "threads", "switches", "seconds");
    for (auto& kv : stats())
      fprintf(stderr, "[cuda_emu] %-32s %8ld %9ld %11ld %12ld %8.2f\n", kv.first.c_str(),
              kv.second.launches, kv.second.blocks, kv.second.threads, kv.second.switches,
              kv.second.seconds);
  }
} g_stats_printer;
}  // namespace

// ------------------------------------------------------------------ checks for cub
void check_device_range(const void* p, std::size_t bytes, const char* what) {
  if (bytes == 0) return;
  if (!find_alloc(p, bytes))
    error("%s: [%p, +%zu bytes) is not inside one device allocation", what, p, bytes);
}

}  // namespace emu

// ------------------------------------------------------------------ host runtime API
using emu::error;

cudaError_t cudaMalloc(void** ptr, std::size_t bytes) {
  if (!ptr) return cudaErrorInvalidValue;
  void* p = malloc(bytes ? bytes : 1);
  if (!p) return cudaErrorMemoryAllocation;
  const int fill = emu::cfg().fill;
  if (fill >= 0) memset(p, fill, bytes);
  emu::allocs()[reinterpret_cast<std::uintptr_t>(p)] = bytes;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  if (!ptr) return cudaSuccess;
  auto& m = emu::allocs();
  auto it = m.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == m.end()) {
    error("cudaFree(%p): not a pointer returned by cudaMalloc", ptr);
    return cudaErrorInvalidDevicePointer;
  }
  m.erase(it);
  free(ptr);
  return cudaSuccess;
}

static cudaError_t memcpy_checked(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind,
                                  const char* fn) {
  if (n == 0) return cudaSuccess;
  if (emu::g_in_kernel) emu::fatal("%s called inside a kernel", fn);
  const bool dst_dev = emu::find_alloc(dst, n) != nullptr, src_dev = emu::find_alloc(src, n) != nullptr;
  const bool dst_any = emu::is_device(dst), src_any = emu::is_device(src);
  bool ok = true;
  switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_dev && !src_any; break;
    case cudaMemcpyDeviceToHost: ok = src_dev && !dst_any; break;
    case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
    case cudaMemcpyHostToHost: ok = !dst_any && !src_any; break;
    case cudaMemcpyDefault: ok = (!dst_any || dst_dev) && (!src_any || src_dev); break;
    default: return cudaErrorInvalidMemcpyDirection;
  }
  if (!ok) {
    error("%s(dst=%p%s, src=%p%s, %zu bytes, kind %d): a pointer does not match the kind, or the "
          "range overruns its device allocation", fn, dst, dst_dev ? " [device]" : dst_any ? " [device, overrun]" : " [host]",
          src, src_dev ? " [device]" : src_any ? " [device, overrun]" : " [host]", n, static_cast<int>(kind));
    return cudaErrorInvalidValue;
  }
  memmove(dst, src, n);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind) {
  return memcpy_checked(dst, src, n, kind, "cudaMemcpy");
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t n, cudaMemcpyKind kind, cudaStream_t) {
  return memcpy_checked(dst, src, n, kind, "cudaMemcpyAsync");
}

static cudaError_t memset_checked(void* dst, int value, std::size_t n, const char* fn) {
  if (n == 0) return cudaSuccess;
  if (emu::g_in_kernel) emu::fatal("%s called inside a kernel", fn);
  if (!emu::find_alloc(dst, n)) {
    error("%s(%p, %zu bytes): not inside one device allocation", fn, dst, n);
    return cudaErrorInvalidValue;
  }
  memset(dst, value, n);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* dst, int value, std::size_t n) { return memset_checked(dst, value, n, "cudaMemset"); }
cudaError_t cudaMemsetAsync(void* dst, int value, std::size_t n, cudaStream_t) {
  return memset_checked(dst, value, n, "cudaMemsetAsync");
}

cudaError_t cudaGetLastError() {
  const cudaError_t e = emu::g_last_error;
  emu::g_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return emu::g_last_error; }

const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unrecognized error code";
}

cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return cudaErrorInvalidValue;
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return cudaErrorInvalidValue;
  *device = 0;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
