// C++ tests of the CUDA training-loss kernels against the CPU kernels (which test_losses_cpu
// checks against dense references). Exits 77 (ctest: skipped) when the kernels were built
// without CUDA or no GPU is visible. The matrix products the torch glue does with cuBLAS are
// done on the host here.
#include <cstdio>

#ifndef SMCR_WITH_CUDA
int main() {
  std::printf("test_losses_cuda: built without CUDA, skipped\n");
  return 77;
}
#else

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "hybrid_memory.h"
#include "soft_triplet.h"
#include "validate.h"

using smcr::index_t;

// CHECK_OK with template commas in its argument.
#define CHECK_OK_V(...) CHECK_OK((__VA_ARGS__))

namespace {

template <typename T>
struct Dev {
  T* p = nullptr;
  std::size_t n = 0;
  explicit Dev(std::size_t count) : n(count) { cudaMalloc(&p, sizeof(T) * (count ? count : 1)); }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
  ~Dev() { cudaFree(p); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  void put(const std::vector<T>& h) { cudaMemcpy(p, h.data(), sizeof(T) * h.size(), cudaMemcpyHostToDevice); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, sizeof(T) * n, cudaMemcpyDeviceToHost);
    return h;
  }
};

class CudaScratch final : public smcr::Allocator {
 public:
  ~CudaScratch() override {
    for (void* p : blocks_) cudaFree(p);
  }
  void* allocate(std::size_t bytes) override {
    void* p = nullptr;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) return nullptr;
    blocks_.push_back(p);
    return p;
  }

 private:
  std::vector<void*> blocks_;
};

std::vector<float> unit_rows(index_t n, index_t d, std::mt19937& rng) {
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> x(n * d);
  for (index_t i = 0; i < n; ++i) {
    double s = 0;
    for (index_t t = 0; t < d; ++t) s += double(x[i * d + t] = g(rng)) * x[i * d + t];
    for (index_t t = 0; t < d; ++t) x[i * d + t] = float(x[i * d + t] / std::sqrt(s));
  }
  return x;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (std::size_t k = 0; k < a.size(); ++k) m = std::max(m, std::fabs(double(a[k]) - b[k]));
  return m;
}

void test_label_index_and_means() {
  std::mt19937 rng(1);
  const index_t m = 5000, d = 1500, nl = 1300;
  std::vector<index_t> lab(m);
  for (auto& v : lab) v = static_cast<index_t>(rng() % (nl - 100));  // labels >= 1200 absent
  std::vector<index_t> ptr(nl + 1), rows(m);
  CHECK_OK_V(smcr::hybrid_memory_label_index_cpu(lab.data(), m, nl, ptr.data(), rows.data()));
  Dev<index_t> dlab(lab), dptr(nl + 1), drows(m);
  CudaScratch scratch;
  CHECK_OK_V(smcr::hybrid_memory_label_index_cuda(dlab.p, m, nl, dptr.p, drows.p, scratch, nullptr));
  CHECK(dptr.get() == ptr);
  CHECK(drows.get() == rows);
  auto mem = unit_rows(m, d, rng);
  Dev<float> dmem(mem);
  std::vector<float> means(300 * d);
  CHECK_OK_V(smcr::hybrid_memory_label_means_cpu<float, float>(mem.data(), m, d, ptr.data(),
                                                             rows.data(), nl, nullptr, 1100, 200,
                                                             means.data()));
  Dev<float> dmeans(200 * d);
  CHECK_OK_V(smcr::hybrid_memory_label_means_cuda<float, float>(dmem.p, m, d, dptr.p, drows.p, nl,
                                                              nullptr, 1100, 200, dmeans.p,
                                                              nullptr));
  means.resize(200 * d);
  CHECK(dmeans.get() == means);  // same summation order: bitwise equal
}

// Forward on the device with host products, against hybrid_memory_loss_cpu.
void test_loss(bool bf16_memory) {
  std::mt19937 rng(2);
  const index_t b = 24, m = 700, d = 96, nl = 260, nb = 64;
  const float tau = 0.05f, eps = 1e-6f;
  auto mem = unit_rows(m, d, rng);
  std::vector<smcr::bf16> mem_bf(m * d);
  if (bf16_memory)
    for (index_t k = 0; k < m * d; ++k) {
      mem_bf[k] = smcr::float_to_bf16(mem[k]);
      mem[k] = smcr::bf16_to_float(mem_bf[k]);
    }
  auto f = unit_rows(b, d, rng);
  std::vector<index_t> lab(m), tgt(b);
  for (auto& v : lab) v = static_cast<index_t>(rng() % (nl - 10));
  for (auto& v : tgt) v = lab[rng() % m];
  std::vector<index_t> ptr(nl + 1), rows(m);
  CHECK_OK_V(smcr::hybrid_memory_label_index_cpu(lab.data(), m, nl, ptr.data(), rows.data()));
  std::vector<float> per(b), loss(1), grad(b * d);
  CHECK_OK_V(smcr::hybrid_memory_loss_cpu<float, float>(f.data(), b, mem.data(), m, d, ptr.data(),
                                                      rows.data(), nl, tgt.data(), tau, eps, nb,
                                                      per.data(), loss.data(), grad.data()));
  Dev<float> dmem(mem);
  Dev<smcr::bf16> dmem_bf(mem_bf);
  Dev<index_t> dptr(ptr), drows(rows), dtgt(tgt);
  // state left as NaN: the first block (first_block = true) must start it without reading
  std::vector<float> nans(b, NAN), e0(b * d, NAN);
  Dev<float> dmax(nans), dsum(nans), dtl(nans), de(e0), dmeans(nb * d), ds(b * nb);
  for (index_t l0 = 0; l0 < nl; l0 += nb) {
    const index_t n = std::min(nb, nl - l0);
    if (bf16_memory)
      CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<smcr::bf16, float>(
          dmem_bf.p, m, d, dptr.p, drows.p, nl, nullptr, l0, n, dmeans.p, nullptr)));
    else
      CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<float, float>(
          dmem.p, m, d, dptr.p, drows.p, nl, nullptr, l0, n, dmeans.p, nullptr)));
    auto c = dmeans.get();
    std::vector<float> s(b * nb, 0.f);
    for (index_t i = 0; i < b; ++i)
      for (index_t k = 0; k < n; ++k) {
        float acc = 0;
        for (index_t t = 0; t < d; ++t) acc += f[i * d + t] * c[k * d + t];
        s[i * n + k] = acc;
      }
    ds.put(s);
    CHECK_OK_V((smcr::hybrid_memory_softmax_block_cuda<float, float>(
        ds.p, ds.p, b, n, n, l0, dptr.p, dtgt.p, 1.f / tau, dmax.p, dsum.p, dtl.p, de.p, d,
        l0 == 0, nullptr)));
    auto p = ds.get();
    auto e = de.get();
    if (l0 == 0) std::fill(e.begin(), e.end(), 0.f);  // the caller's E = P C
    for (index_t i = 0; i < b; ++i)
      for (index_t k = 0; k < n; ++k)
        for (index_t t = 0; t < d; ++t) e[i * d + t] += p[i * n + k] * c[k * d + t];
    de.put(e);
  }
  Dev<float> dcy(b * d), dper(b), dloss(1), dgrad(b * d);
  if (bf16_memory)
    CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<smcr::bf16, float>(
        dmem_bf.p, m, d, dptr.p, drows.p, nl, dtgt.p, 0, b, dcy.p, nullptr)));
  else
    CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<float, float>(
        dmem.p, m, d, dptr.p, drows.p, nl, dtgt.p, 0, b, dcy.p, nullptr)));
  CHECK_OK_V((smcr::hybrid_memory_finalize_cuda<float, float>(b, d, dmax.p, dsum.p, dtl.p, de.p,
                                                            dcy.p, 1.f / tau, eps, dper.p,
                                                            dloss.p, dgrad.p, nullptr)));
  CHECK(max_abs_diff(dper.get(), per) <= 1e-5);
  CHECK(std::fabs(dloss.get()[0] - loss[0]) <= 1e-5);
  CHECK(max_abs_diff(dgrad.get(), grad) <= 1e-5);
  // backward
  Dev<float> dgl(std::vector<float>{2.f}), dgps(std::vector<float>(b, 0.25f)), dout(b * d);
  CHECK_OK_V(smcr::hybrid_memory_backward_cuda<float>(b, d, dgl.p, dgps.p, dgrad.p, dout.p, nullptr));
  auto out = dout.get();
  auto g = dgrad.get();
  for (index_t k = 0; k < b * d; ++k) CHECK_NEAR(out[k], (2.f / b + 0.25f) * g[k], 1e-6);
}

void test_update() {
  std::mt19937 rng(3);
  const index_t m = 300, d = 2049, b = 64;
  auto mem = unit_rows(m, d, rng);
  auto f = unit_rows(b, d, rng);
  std::vector<index_t> rows(b);
  for (auto& r : rows) r = static_cast<index_t>(rng() % 40);  // many duplicates
  auto cpu = mem;
  CHECK_OK_V((smcr::hybrid_memory_update_cpu<float, float>(cpu.data(), m, d, rows.data(), f.data(),
                                                         b, 0.2f)));
  Dev<float> dmem(mem), df(f);
  Dev<index_t> drows(rows);
  CHECK_OK_V((smcr::hybrid_memory_update_cuda<float, float>(dmem.p, m, d, drows.p, df.p, b, 0.2f,
                                                          nullptr)));
  CHECK(max_abs_diff(dmem.get(), cpu) <= 1e-6);
  // bf16
  std::vector<smcr::bf16> mb(m * d);
  for (index_t k = 0; k < m * d; ++k) mb[k] = smcr::float_to_bf16(mem[k]);
  auto mb_cpu = mb;
  CHECK_OK_V((smcr::hybrid_memory_update_cpu<smcr::bf16, float>(mb_cpu.data(), m, d, rows.data(),
                                                              f.data(), b, 0.2f)));
  Dev<smcr::bf16> dmb(mb);
  CHECK_OK_V((smcr::hybrid_memory_update_cuda<smcr::bf16, float>(dmb.p, m, d, drows.p, df.p, b,
                                                               0.2f, nullptr)));
  auto got = dmb.get();
  int differ = 0;
  for (index_t k = 0; k < m * d; ++k) differ += got[k].bits != mb_cpu[k].bits;
  CHECK(differ <= m * d / 1000);  // a last-bit tie may round differently, rarely
}

// The in-place refresh of cluster-mean rows, in HybridMemory's layout: rows [0, nl) one per
// label (rows [10, 10 + k) the means of clusters 10..; the others their own label), then the
// cluster members; against the CPU kernel, bitwise (the same sums), bad rows skipped.
void test_refresh_means() {
  std::mt19937 rng(5);
  const index_t nl = 200, k = 60, members = 900, d = 1030, m = nl + members, b = 96;
  std::vector<index_t> lab(m), means_lab(m);
  for (index_t r = 0; r < nl; ++r) lab[r] = r;
  for (index_t r = nl; r < m; ++r) lab[r] = 10 + static_cast<index_t>(rng() % k);
  means_lab = lab;
  for (index_t c = 10; c < 10 + k; ++c) means_lab[c] = nl;  // the spare label
  std::vector<index_t> ptr(nl + 2), lrows(m);
  CHECK_OK_V(smcr::hybrid_memory_label_index_cpu(means_lab.data(), m, nl + 1, ptr.data(),
                                                 lrows.data()));
  std::vector<index_t> rows(b);
  for (auto& r : rows) r = rng() % 3 ? nl + static_cast<index_t>(rng() % members)
                                     : static_cast<index_t>(rng() % 10);
  auto mem = unit_rows(m, d, rng);
  auto cpu = mem;
  CHECK_OK_V(smcr::hybrid_memory_refresh_means_cpu<float, float>(
      cpu.data(), m, d, rows.data(), b, lab.data(), ptr.data(), lrows.data(), nl + 1));
  CHECK(cpu != mem);
  std::vector<index_t> with_bad = rows;
  with_bad.push_back(-1);
  with_bad.push_back(m);
  Dev<float> dmem(mem);
  Dev<index_t> drows(with_bad), dlab(lab), dptr(ptr), dlrows(lrows);
  CHECK_OK_V(smcr::hybrid_memory_refresh_means_cuda<float>(
      dmem.p, m, d, drows.p, b + 2, dlab.p, dptr.p, dlrows.p, nl + 1, nullptr));
  CHECK(dmem.get() == cpu);
}

void test_soft_triplet() {
  std::mt19937 rng(4);
  const index_t b = 48, d = 130;
  auto x = unit_rows(b, d, rng);
  auto te = unit_rows(b, d, rng);
  std::vector<index_t> lab(b);
  for (index_t i = 0; i < b; ++i) lab[i] = i % 12;
  lab[5] = 100;  // no positive
  std::vector<float> gram(b * b);
  for (index_t i = 0; i < b; ++i)
    for (index_t j = 0; j < b; ++j) {
      float s = 0;
      for (index_t t = 0; t < d; ++t) s += x[i * d + t] * x[j * d + t];
      gram[i * b + j] = s;
    }
  for (int soft = 0; soft < 2; ++soft) {
    std::vector<float> per(b), loss(1), dap(b), dan(b), coef(b), grad(b * d);
    std::vector<index_t> pos(b), neg(b);
    CHECK_OK_V(smcr::soft_triplet_forward_cpu<float>(x.data(), soft ? te.data() : nullptr,
                                                   gram.data(), lab.data(), b, d, 0.f, per.data(),
                                                   loss.data(), pos.data(), neg.data(),
                                                   dap.data(), dan.data(), coef.data()));
    const float gl = 1.5f;
    CHECK_OK_V(smcr::soft_triplet_backward_cpu<float>(x.data(), b, d, pos.data(), neg.data(),
                                                    dap.data(), dan.data(), coef.data(), &gl,
                                                    nullptr, grad.data()));
    Dev<float> dx(x), dte(te), dgram(gram), dper(b), dloss(1), ddap(b), ddan(b), dcoef(b);
    Dev<float> dgrad(b * d), dgl(std::vector<float>{gl});
    Dev<index_t> dlab(lab), dpos(b), dneg(b);
    CHECK_OK_V(smcr::soft_triplet_forward_cuda<float>(dx.p, soft ? dte.p : nullptr, dgram.p, dlab.p,
                                                    b, d, 0.f, dper.p, dloss.p, dpos.p, dneg.p,
                                                    ddap.p, ddan.p, dcoef.p, nullptr));
    CHECK(dpos.get() == pos && dneg.get() == neg);
    CHECK(max_abs_diff(dper.get(), per) <= 1e-5);
    CHECK(std::fabs(dloss.get()[0] - loss[0]) <= 1e-5);
    CHECK_OK_V(smcr::soft_triplet_backward_cuda<float>(dx.p, b, d, dpos.p, dneg.p, ddap.p, ddan.p,
                                                     dcoef.p, dgl.p, nullptr, dgrad.p, nullptr));
    CHECK(max_abs_diff(dgrad.get(), grad) <= 1e-5);
  }
  // Rows of norm ~7e19: the float Gram matrix overflows (inf on its diagonal), so both
  // backends mine on exact squared distances and find the pairs of the unscaled batch.
  std::vector<float> huge(x), hgram(b * b);
  for (float& v : huge) v = std::ldexp(v, 66);
  for (index_t i = 0; i < b; ++i)
    for (index_t j = 0; j < b; ++j) {
      float s = 0;
      for (index_t t = 0; t < d; ++t) s += huge[i * d + t] * huge[j * d + t];
      hgram[i * b + j] = s;
    }
  CHECK(smcr::gram_overflows(hgram.data(), b));
  std::vector<float> per(b), loss(1), dap(b), dan(b), coef(b), sdap(b), sdan(b);
  std::vector<index_t> pos(b), neg(b), spos(b), sneg(b);
  CHECK_OK_V(smcr::soft_triplet_forward_cpu<float>(x.data(), nullptr, gram.data(), lab.data(), b,
                                                 d, 0.f, per.data(), loss.data(), spos.data(),
                                                 sneg.data(), sdap.data(), sdan.data(),
                                                 coef.data()));
  CHECK_OK_V(smcr::soft_triplet_forward_cpu<float>(huge.data(), nullptr, hgram.data(), lab.data(),
                                                 b, d, 0.f, per.data(), loss.data(), pos.data(),
                                                 neg.data(), dap.data(), dan.data(), coef.data()));
  CHECK(pos == spos && neg == sneg);
  Dev<float> dx(huge), dgram(hgram), dper(b), dloss(1), ddap(b), ddan(b), dcoef(b);
  Dev<index_t> dlab(lab), dpos(b), dneg(b);
  CHECK_OK_V(smcr::soft_triplet_forward_cuda<float>(dx.p, nullptr, dgram.p, dlab.p, b, d, 0.f,
                                                  dper.p, dloss.p, dpos.p, dneg.p, ddap.p,
                                                  ddan.p, dcoef.p, nullptr));
  CHECK(dpos.get() == pos && dneg.get() == neg);
  const auto gdap = ddap.get();
  for (index_t i = 0; i < b; ++i)
    if (pos[i] >= 0) CHECK(std::fabs(gdap[i] - dap[i]) <= 1e-6f * dap[i]);
  CHECK(std::fabs(dloss.get()[0] - loss[0]) <= 1e-6f * std::fabs(loss[0]));
}

}  // namespace

// The value checks agree with the CPU scan: smallest offending row / position or -1.
static void test_value_checks() {
  std::vector<float> x(1000 * 300, 0.25f);
  x[999 * 300 + 299] = HUGE_VALF;
  x[517 * 300 + 7] = std::nanf("");
  x[518 * 300 + 0] = -HUGE_VALF;
  Dev<float> dx(x);
  Dev<index_t> out(std::vector<index_t>{7, 7, 7});
  CHECK_OK_V(smcr::first_nonfinite_row_cuda<float>(dx.p, 1000, 300, out.p, nullptr));
  CHECK(out.get()[0] == 517);
  CHECK_OK_V(smcr::first_nonfinite_row_cuda<float>(dx.p, 500, 300, out.p, nullptr));
  CHECK(out.get()[0] == -1);
  const std::vector<index_t> counts{2, 0, 1, 0};
  const std::vector<index_t> bad{0, 3, 2, 4, -1, 1};
  Dev<index_t> dc(counts), db(bad);
  CHECK_OK(smcr::first_bad_index_cuda(db.p, 6, 4, dc.p, out.p + 1, nullptr));
  std::vector<index_t> h = out.get();
  CHECK(h[1] == 3 && h[2] == 1);
  CHECK_OK(smcr::first_bad_index_cuda(db.p, 3, 4, nullptr, out.p + 1, nullptr));
  h = out.get();
  CHECK(h[1] == -1 && h[2] == -1);

  // all of one call in one kernel: x (row 517 bad), y (row 2 bad), the index
  std::vector<float> y(4 * 300, 1.f);
  y[2 * 300 + 150] = std::nanf("");
  y[3 * 300] = HUGE_VALF;
  Dev<float> dy(y);
  Dev<index_t> all(std::vector<index_t>{7, 7, 7, 7});
  CHECK_OK(smcr::first_invalid_cuda<float>(dx.p, 1000, 300, dy.p, 4, 300, db.p, 6, 4, dc.p,
                                           all.p, nullptr));
  h = all.get();
  CHECK(h[0] == 517 && h[1] == 2 && h[2] == 3 && h[3] == 1);
  CHECK_OK(smcr::first_invalid_cuda<float>(dx.p, 500, 300, nullptr, 0, 0, nullptr, 0, 4, nullptr,
                                           all.p, nullptr));
  h = all.get();
  CHECK(h[0] == -1 && h[1] == -1 && h[2] == -1 && h[3] == -1);
}

int main() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    std::printf("test_losses_cuda: no CUDA device visible, skipped\n");
    return 77;
  }
  test_value_checks();
  test_label_index_and_means();
  test_loss(false);
  test_loss(true);
  test_update();
  test_refresh_means();
  test_soft_triplet();
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  return report("test_losses_cuda");
}
#endif
