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
#include <type_traits>
#include <utility>
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

// HybridMemory's layout: rows [0, nl) one per label, rows [c0, c0 + k) holding the means of
// clusters c0 .. c0 + k - 1, then `members` rows of those clusters. lab: each row's label;
// ptr / lrows: the label index of the sample rows, the mean rows carrying the spare label nl.
struct MeansLayout {
  std::vector<index_t> lab, ptr, lrows;
};
MeansLayout means_layout(index_t nl, index_t c0, index_t k, index_t members, std::mt19937& rng) {
  const index_t m = nl + members;
  MeansLayout out{std::vector<index_t>(m), std::vector<index_t>(nl + 2), std::vector<index_t>(m)};
  for (index_t r = 0; r < nl; ++r) out.lab[r] = r;
  for (index_t r = nl; r < m; ++r) out.lab[r] = c0 + static_cast<index_t>(rng() % k);
  std::vector<index_t> means_lab = out.lab;
  for (index_t c = c0; c < c0 + k; ++c) means_lab[c] = nl;  // the spare label
  CHECK_OK_V(smcr::hybrid_memory_label_index_cpu(means_lab.data(), m, nl + 1, out.ptr.data(),
                                                 out.lrows.data()));
  return out;
}

// Host value conversions for the typed tests below.
double as_double(float v) { return v; }
double as_double(double v) { return v; }
double as_double(smcr::bf16 v) { return smcr::bf16_to_float(v); }
template <typename V>
V from_double(double v);
template <>
float from_double<float>(double v) { return static_cast<float>(v); }
template <>
double from_double<double>(double v) { return v; }
template <>
smcr::bf16 from_double<smcr::bf16>(double v) { return smcr::float_to_bf16(static_cast<float>(v)); }

// The loss as the CUDA glue (csrc/torch/losses_cuda.cpp) runs it, per memory type: label
// means in MeansT (bf16 for a bf16 memory: the tensor-core path, whose products take the
// features rounded to bf16 too), probabilities in MeansT (a buffer of their own when that is
// not Acc), blocks of single-row labels multiplied straight from the memory (zero copy), the
// target means in MeansT and finalize<Acc, MeansT>; the products on the host with Acc sums.
// Against hybrid_memory_loss_cpu<T, Acc> on the same memory.
template <typename T, typename MeansT, typename Acc>
void test_loss_path(double tol, double grad_rel_tol) {
  std::mt19937 rng(7);
  const index_t b = 20, d = 72, nl = 230, nb = 40;
  // labels [0, 100) hold 1-4 rows each, labels [100, 230) one row each on consecutive rows
  // (a run, as HybridMemory lays them out), a few labels absent
  std::vector<index_t> lab;
  for (index_t c = 0; c < 100; ++c)
    if (c % 17 != 5)
      for (index_t k = 0, n = 1 + static_cast<index_t>(rng() % 4); k < n; ++k) lab.push_back(c);
  std::shuffle(lab.begin(), lab.end(), rng);
  const index_t run_row0 = static_cast<index_t>(lab.size()), run_label0 = 100;
  for (index_t c = run_label0; c < nl; ++c) lab.push_back(c);
  const index_t m = static_cast<index_t>(lab.size());
  std::vector<float> unit = unit_rows(m, d, rng), funit = unit_rows(b, d, rng);
  std::vector<T> mem(m * d);
  for (index_t k = 0; k < m * d; ++k) mem[k] = from_double<T>(unit[k]);
  std::vector<Acc> f(b * d);
  for (index_t k = 0; k < b * d; ++k) f[k] = static_cast<Acc>(funit[k]);
  std::vector<index_t> tgt(b);
  for (auto& v : tgt) v = lab[rng() % m];
  std::vector<index_t> ptr(nl + 1), rows(m);
  CHECK_OK_V(smcr::hybrid_memory_label_index_cpu(lab.data(), m, nl, ptr.data(), rows.data()));
  const Acc tau = Acc(0.05), eps = Acc(1e-6);
  std::vector<Acc> per(b), loss(1), grad(b * d);
  CHECK_OK_V((smcr::hybrid_memory_loss_cpu<T, Acc>(f.data(), b, mem.data(), m, d, ptr.data(),
                                                   rows.data(), nl, tgt.data(), tau, eps, nb,
                                                   per.data(), loss.data(), grad.data())));
  constexpr bool kSeparateProbs = !std::is_same<MeansT, Acc>::value;
  std::vector<double> fg(b * d);  // the product's feature operand (bf16-rounded on that path)
  for (index_t k = 0; k < b * d; ++k) fg[k] = as_double(from_double<MeansT>(f[k]));
  Dev<T> dmem(mem);
  Dev<index_t> dptr(ptr), drows(rows), dtgt(tgt);
  std::vector<Acc> nans(b, Acc(NAN)), e0(b * d, Acc(NAN));
  Dev<Acc> dmax(nans), dsum(nans), dtl(nans), de(e0), ds(b * nl);
  Dev<MeansT> dmeans(nb * d), dprobs(kSeparateProbs ? b * nl : 1);
  // blocks: means blocks of nb labels below the run, then the run in one zero-copy block
  // (the glue's zero-copy block needs the memory stored as the products take it: T == MeansT)
  constexpr bool kZeroCopy = std::is_same<T, MeansT>::value;
  std::vector<std::pair<index_t, index_t>> blocks;
  for (index_t l0 = 0; l0 < run_label0; l0 += nb) blocks.push_back({l0, std::min(nb, run_label0 - l0)});
  if (kZeroCopy)
    blocks.push_back({run_label0, nl - run_label0});
  else
    for (index_t l0 = run_label0; l0 < nl; l0 += nb) blocks.push_back({l0, std::min(nb, nl - l0)});
  for (auto [l0, n] : blocks) {
    std::vector<MeansT> c;  // (n, D)
    if (kZeroCopy && l0 == run_label0) {
      for (index_t k = 0; k < n * d; ++k) c.push_back(from_double<MeansT>(as_double(mem[run_row0 * d + k])));
    } else {
      CHECK(n <= nb);
      CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<T, MeansT>(
          dmem.p, m, d, dptr.p, drows.p, nl, nullptr, l0, n, dmeans.p, nullptr)));
      c = dmeans.get();
      c.resize(n * d);
    }
    std::vector<Acc> sc(b * n);
    for (index_t i = 0; i < b; ++i)
      for (index_t k = 0; k < n; ++k) {
        Acc acc = 0;
        for (index_t t = 0; t < d; ++t) acc += static_cast<Acc>(fg[i * d + t] * as_double(c[k * d + t]));
        sc[i * n + k] = acc;
      }
    ds.put(sc);
    MeansT* probs = kSeparateProbs ? dprobs.p : reinterpret_cast<MeansT*>(ds.p);
    CHECK_OK_V((smcr::hybrid_memory_softmax_block_cuda<Acc, MeansT>(
        ds.p, probs, b, n, n, l0, dptr.p, dtgt.p, Acc(1) / tau, dmax.p, dsum.p, dtl.p, de.p, d,
        l0 == 0, nullptr)));
    std::vector<double> pr(b * n);
    if (kSeparateProbs) {
      auto p = dprobs.get();
      for (index_t k = 0; k < b * n; ++k) pr[k] = as_double(p[k]);
    } else {
      auto p = ds.get();
      for (index_t k = 0; k < b * n; ++k) pr[k] = as_double(p[k]);
    }
    auto e = de.get();
    if (l0 == 0) std::fill(e.begin(), e.end(), Acc(0));  // the glue's E = P C
    for (index_t i = 0; i < b; ++i)
      for (index_t t = 0; t < d; ++t) {
        Acc acc = 0;
        for (index_t k = 0; k < n; ++k) acc += static_cast<Acc>(pr[i * n + k] * as_double(c[k * d + t]));
        e[i * d + t] += acc;
      }
    de.put(e);
  }
  Dev<MeansT> dcy(b * d);
  Dev<Acc> dper(b), dloss(1), dgrad(b * d);
  CHECK_OK_V((smcr::hybrid_memory_label_means_cuda<T, MeansT>(dmem.p, m, d, dptr.p, drows.p, nl,
                                                              dtgt.p, 0, b, dcy.p, nullptr)));
  CHECK_OK_V((smcr::hybrid_memory_finalize_cuda<Acc, MeansT>(b, d, dmax.p, dsum.p, dtl.p, de.p,
                                                             dcy.p, Acc(1) / tau, eps, dper.p,
                                                             dloss.p, dgrad.p, nullptr)));
  const auto gper = dper.get(), gloss = dloss.get(), ggrad = dgrad.get();
  for (index_t i = 0; i < b; ++i)
    CHECK(std::fabs(double(gper[i]) - per[i]) <= tol * std::max(1.0, std::fabs(double(per[i]))));
  CHECK(std::fabs(double(gloss[0]) - loss[0]) <= tol * std::max(1.0, std::fabs(double(loss[0]))));
  double num = 0, den = 0;
  for (index_t k = 0; k < b * d; ++k) {
    num += (double(ggrad[k]) - grad[k]) * (double(ggrad[k]) - grad[k]);
    den += double(grad[k]) * grad[k];
  }
  CHECK(std::sqrt(num) <= grad_rel_tol * std::sqrt(den));
  // backward in Acc
  Dev<Acc> dgl(std::vector<Acc>{Acc(2)}), dout(b * d);
  CHECK_OK_V(smcr::hybrid_memory_backward_cuda<Acc>(b, d, dgl.p, nullptr, dgrad.p, dout.p, nullptr));
  const auto out = dout.get();
  for (index_t k = 0; k < b * d; ++k)
    CHECK(std::fabs(double(out[k]) - 2.0 / b * ggrad[k]) <= 1e-6 * std::fabs(double(ggrad[k])) + 1e-12);
}

// update and refresh of float64 and bf16 memories against the CPU (bitwise: the same sums).
template <typename T, typename Acc>
void test_update_and_refresh_typed(double rel) {
  std::mt19937 rng(8);
  const index_t nl = 120, k = 30, members = 500, d = 257, m = nl + members, b = 48;
  const MeansLayout lay = means_layout(nl, 5, k, members, rng);
  const auto &lab = lay.lab, &ptr = lay.ptr, &lrows = lay.lrows;
  std::vector<index_t> rows(b);
  for (auto& r : rows) r = nl + static_cast<index_t>(rng() % 60);  // duplicates
  auto unit = unit_rows(m, d, rng), funit = unit_rows(b, d, rng);
  std::vector<T> mem(m * d);
  for (index_t q = 0; q < m * d; ++q) mem[q] = from_double<T>(unit[q]);
  std::vector<Acc> f(funit.begin(), funit.end());
  auto cpu = mem;
  CHECK_OK_V((smcr::hybrid_memory_update_cpu<T, Acc>(cpu.data(), m, d, rows.data(), f.data(), b,
                                                     Acc(0.2))));
  CHECK_OK_V((smcr::hybrid_memory_refresh_means_cpu<T, Acc>(
      cpu.data(), m, d, rows.data(), b, lab.data(), ptr.data(), lrows.data(), nl + 1)));
  Dev<T> dmem(mem);
  Dev<Acc> df(f);
  Dev<index_t> drows(rows), dlab(lab), dptr(ptr), dlrows(lrows);
  CHECK_OK_V((smcr::hybrid_memory_update_cuda<T, Acc>(dmem.p, m, d, drows.p, df.p, b, Acc(0.2),
                                                      nullptr)));
  CHECK_OK_V(smcr::hybrid_memory_refresh_means_cuda<T>(dmem.p, m, d, drows.p, b, dlab.p, dptr.p,
                                                       dlrows.p, nl + 1, nullptr));
  const auto got = dmem.get();
  index_t far = 0;
  for (index_t q = 0; q < m * d; ++q)
    far += std::fabs(as_double(got[q]) - as_double(cpu[q])) > 1e-15 + rel * std::fabs(as_double(cpu[q]));
  CHECK(far == 0);
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
  const MeansLayout lay = means_layout(nl, 10, k, members, rng);
  const auto &lab = lay.lab, &ptr = lay.ptr, &lrows = lay.lrows;
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
  test_loss_path<float, float, float>(1e-5, 1e-5);
  test_loss_path<smcr::bf16, smcr::bf16, float>(2e-3, 2e-2);  // bf16 products (the glue's)
  test_loss_path<smcr::bf16, float, float>(1e-5, 1e-5);
  test_loss_path<double, double, double>(1e-12, 1e-12);
  test_update_and_refresh_typed<double, double>(1e-13);
  test_update_and_refresh_typed<smcr::bf16, float>(8e-3);  // a last-bit tie, rarely
  test_update();
  test_refresh_means();
  test_soft_triplet();
  CHECK(cudaDeviceSynchronize() == cudaSuccess);
  return report("test_losses_cuda");
}
#endif
