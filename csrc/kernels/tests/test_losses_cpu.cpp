// C++ tests of the CPU training-loss kernels (hybrid memory, soft triplet) against dense
// double-precision re-implementations written here from the definitions, finite
// differences, and a hand-computed case (no torch, no Python).
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "check.h"
#include "hybrid_memory.h"
#include "soft_triplet.h"
#include "validate.h"

using smcr::index_t;

// Aliases without template commas, so that calls fit in the CHECK macros.
static const auto hm_loss_d = smcr::hybrid_memory_loss_cpu<double, double>;
static const auto hm_loss_f = smcr::hybrid_memory_loss_cpu<float, float>;
static const auto hm_update_d = smcr::hybrid_memory_update_cpu<double, double>;
static const auto hm_update_bf = smcr::hybrid_memory_update_cpu<smcr::bf16, float>;
static const auto hm_refresh_d = smcr::hybrid_memory_refresh_means_cpu<double, double>;

static std::vector<double> unit_rows(index_t n, index_t d, std::mt19937& rng) {
  std::normal_distribution<double> g(0.0, 1.0);
  std::vector<double> x(n * d);
  for (index_t i = 0; i < n; ++i) {
    double norm = 0;
    for (index_t t = 0; t < d; ++t) norm += (x[i * d + t] = g(rng)) * x[i * d + t];
    for (index_t t = 0; t < d; ++t) x[i * d + t] /= std::sqrt(norm);
  }
  return x;
}

// SpCL's formula, dense: row logits, mean per present label, eps-masked softmax, -log(p+eps).
static std::vector<double> dense_hm_loss(const std::vector<double>& f, index_t b,
                                         const std::vector<double>& mem, index_t m, index_t d,
                                         const std::vector<index_t>& lab, index_t nl,
                                         const std::vector<index_t>& tgt, double tau, double eps) {
  std::vector<double> out(b);
  for (index_t i = 0; i < b; ++i) {
    std::vector<double> s(nl, 0.0), cnt(nl, 0.0);
    for (index_t j = 0; j < m; ++j) {
      double z = 0;
      for (index_t t = 0; t < d; ++t) z += f[i * d + t] * mem[j * d + t];
      s[lab[j]] += z / tau;
      cnt[lab[j]] += 1;
    }
    double zsum = 0;
    for (index_t c = 0; c < nl; ++c)
      if (cnt[c] > 0) zsum += std::exp(s[c] / cnt[c]);
    const double p = std::exp(s[tgt[i]] / cnt[tgt[i]]) / (zsum + eps);
    out[i] = -std::log(p + eps);
  }
  return out;
}

static void test_label_index() {
  const std::vector<index_t> lab{3, 0, 3, 1, 0, 3};
  std::vector<index_t> ptr(6), rows(6);
  CHECK_OK(smcr::hybrid_memory_label_index_cpu(lab.data(), 6, 5, ptr.data(), rows.data()));
  CHECK((ptr == std::vector<index_t>{0, 2, 3, 3, 6, 6}));
  CHECK((rows == std::vector<index_t>{1, 4, 3, 0, 2, 5}));
  // Singleton runs on consecutive rows: labels 0..5 of rows 2, 3, 4 (label 0..2), then 0 and 1
  // share label 3, label 4 absent, label 5 = row 5.
  const std::vector<index_t> lab2{3, 3, 0, 1, 2, 5};
  std::vector<index_t> ptr2(7), rows2(6), run(6);
  CHECK_OK(smcr::hybrid_memory_label_index_cpu(lab2.data(), 6, 6, ptr2.data(), rows2.data()));
  CHECK_OK(smcr::hybrid_memory_singleton_runs_cpu(ptr2.data(), rows2.data(), 6, run.data()));
  CHECK((run == std::vector<index_t>{3, 2, 1, 0, 0, 1}));
  const std::vector<index_t> bad{0, 5};
  CHECK(!smcr::hybrid_memory_label_index_cpu(bad.data(), 2, 5, ptr.data(), rows.data()).ok());
}

static void test_hybrid_memory_loss() {
  std::mt19937 rng(7);
  const index_t b = 6, m = 23, d = 9, nl = 12;  // label 5 and 11 absent
  const double tau = 0.05, eps = 1e-6;
  auto mem = unit_rows(m, d, rng);
  auto f = unit_rows(b, d, rng);
  std::vector<index_t> lab(m);
  for (index_t j = 0; j < m; ++j) {
    index_t c = static_cast<index_t>((j * 7) % 10);
    lab[j] = c >= 5 ? c + 1 : c;  // labels {0..4, 6..10}
  }
  const std::vector<index_t> tgt{0, 3, 6, 10, 3, 7};
  std::vector<index_t> ptr(nl + 1), rows(m);
  CHECK_OK(smcr::hybrid_memory_label_index_cpu(lab.data(), m, nl, ptr.data(), rows.data()));
  auto ref = dense_hm_loss(f, b, mem, m, d, lab, nl, tgt, tau, eps);
  for (index_t block : {1, 4, 5, 100}) {
    std::vector<double> per(b), loss(1), grad(b * d);
    CHECK_OK(hm_loss_d(
        f.data(), b, mem.data(), m, d, ptr.data(), rows.data(), nl, tgt.data(), tau, eps, block,
        per.data(), loss.data(), grad.data()));
    double mean = 0;
    for (index_t i = 0; i < b; ++i) {
      CHECK_NEAR(per[i], ref[i], 1e-10);
      mean += ref[i] / b;
    }
    CHECK_NEAR(loss[0], mean, 1e-10);
    // Gradient of loss_i w.r.t. f_i against central differences.
    for (index_t i = 0; i < b; ++i)
      for (index_t t = 0; t < d; ++t) {
        const double h = 1e-6;
        auto fp = f, fm = f;
        fp[i * d + t] += h;
        fm[i * d + t] -= h;
        const double num = (dense_hm_loss(fp, b, mem, m, d, lab, nl, tgt, tau, eps)[i] -
                            dense_hm_loss(fm, b, mem, m, d, lab, nl, tgt, tau, eps)[i]) / (2 * h);
        CHECK_NEAR(grad[i * d + t], num, 1e-5);
      }
    std::vector<double> gout(b * d), gl{2.0}, gps(b, 0.5);
    CHECK_OK(smcr::hybrid_memory_backward_cpu<double>(b, d, gl.data(), gps.data(), grad.data(),
                                                      gout.data()));
    CHECK_NEAR(gout[3 * d + 2], (2.0 / b + 0.5) * grad[3 * d + 2], 1e-15);
  }
  // float32 path agrees with the double reference to float rounding.
  std::vector<float> f32(f.begin(), f.end()), m32(mem.begin(), mem.end());
  std::vector<float> per(b), loss(1), grad(b * d);
  CHECK_OK(hm_loss_f(f32.data(), b, m32.data(), m, d, ptr.data(),
                                                      rows.data(), nl, tgt.data(), 0.05f, 1e-6f, 4,
                                                      per.data(), loss.data(), grad.data()));
  for (index_t i = 0; i < b; ++i) CHECK_NEAR(per[i], ref[i], 2e-4 * std::max(1.0, ref[i]));
  // Targets that are absent or out of range are errors.
  std::vector<index_t> bad{0, 5, 6, 10, 3, 7};
  std::vector<double> perd(b), lossd(1);
  CHECK(!hm_loss_d(f.data(), b, mem.data(), m, d, ptr.data(),
                                                      rows.data(), nl, bad.data(), tau, eps, 4,
                                                      perd.data(), lossd.data(), nullptr)
             .ok());
  bad[1] = 12;
  CHECK(!hm_loss_d(f.data(), b, mem.data(), m, d, ptr.data(),
                                                      rows.data(), nl, bad.data(), tau, eps, 4,
                                                      perd.data(), lossd.data(), nullptr)
             .ok());
}

// Large logits: exp(s) alone would overflow float (s = 1/tau = 1000), the stable form must not.
static void test_hybrid_memory_stability() {
  const index_t b = 2, m = 3, d = 2, nl = 3;
  const std::vector<float> f{1.f, 0.f, 0.f, 1.f};
  const std::vector<float> mem{1.f, 0.f, 0.f, 1.f, -1.f, 0.f};
  const std::vector<index_t> lab{0, 1, 2}, tgt{0, 2};
  std::vector<index_t> ptr(nl + 1), rows(m);
  CHECK_OK(smcr::hybrid_memory_label_index_cpu(lab.data(), m, nl, ptr.data(), rows.data()));
  std::vector<float> per(b), loss(1), grad(b * d);
  CHECK_OK(hm_loss_f(f.data(), b, mem.data(), m, d, ptr.data(),
                                                      rows.data(), nl, tgt.data(), 0.001f, 0.f, 2,
                                                      per.data(), loss.data(), grad.data()));
  CHECK(std::isfinite(per[0]) && std::isfinite(per[1]));
  CHECK_NEAR(per[0], 0.0, 1e-6);              // the target dominates
  CHECK_NEAR(per[1], 1000.0, 1e-3);           // s_y = 0 vs max 1000: loss = 1000 + log(1+...)
  for (float g : grad) CHECK(std::isfinite(g));
}

static void test_hybrid_memory_update() {
  std::mt19937 rng(3);
  const index_t m = 7, d = 5, b = 6;
  auto mem = unit_rows(m, d, rng);
  auto f = unit_rows(b, d, rng);
  const std::vector<index_t> rows{4, 1, 4, 6, 4, 1};
  const double mom = 0.2;
  auto ref = mem;
  for (index_t i = 0; i < b; ++i) {  // SpCL's sequential loop
    double n2 = 0;
    for (index_t t = 0; t < d; ++t) {
      double& v = ref[rows[i] * d + t];
      v = mom * v + (1 - mom) * f[i * d + t];
      n2 += v * v;
    }
    for (index_t t = 0; t < d; ++t) ref[rows[i] * d + t] /= std::sqrt(n2);
  }
  auto out = mem;
  CHECK_OK(hm_update_d(out.data(), m, d, rows.data(), f.data(),
                                                          b, mom));
  for (index_t k = 0; k < m * d; ++k) CHECK_NEAR(out[k], ref[k], 1e-14);
  for (index_t t = 0; t < d; ++t) CHECK(out[0 * d + t] == mem[0 * d + t]);  // untouched row
  // bf16 memory: each update rounded back to bf16 before the next one.
  std::vector<smcr::bf16> mb(m * d);
  for (index_t k = 0; k < m * d; ++k) mb[k] = smcr::float_to_bf16(static_cast<float>(mem[k]));
  std::vector<float> f32(f.begin(), f.end());
  CHECK_OK(hm_update_bf(mb.data(), m, d, rows.data(),
                                                             f32.data(), b, 0.2f));
  for (index_t k = 0; k < m * d; ++k) CHECK_NEAR(smcr::bf16_to_float(mb[k]), ref[k], 2e-2);
  const std::vector<index_t> bad{0, 7};
  CHECK(!hm_update_d(out.data(), m, d, bad.data(), f.data(), 2,
                                                        mom).ok());
  CHECK(!hm_update_d(out.data(), m, d, rows.data(), f.data(),
                                                        b, 1.5).ok());
}

// HybridMemory's layout: rows 0..3 one per label (rows 1 and 2 hold the means of clusters 1
// and 2, rows 0 and 3 are their own label), then members 4, 5 (cluster 1) and 6, 7, 8
// (cluster 2). The means index gives rows 1, 2 the spare label 4.
static void test_hybrid_memory_refresh_means() {
  std::mt19937 rng(4);
  const index_t m = 9, d = 3, nl = 5;
  const auto mem = unit_rows(m, d, rng);
  const std::vector<index_t> row_labels{0, 1, 2, 3, 1, 1, 2, 2, 2};
  std::vector<index_t> means_labels = row_labels;
  means_labels[1] = means_labels[2] = 4;
  std::vector<index_t> ptr(nl + 1), lrows(m);
  CHECK_OK(smcr::hybrid_memory_label_index_cpu(means_labels.data(), m, nl, ptr.data(),
                                               lrows.data()));
  const std::vector<index_t> rows{7, 0, 5, 8, 3};  // clusters 2, 1 (and 2 again); labels 0, 3
  auto out = mem;
  CHECK_OK(hm_refresh_d(out.data(), m, d, rows.data(), 5, row_labels.data(), ptr.data(),
                        lrows.data(), nl));
  for (index_t t = 0; t < d; ++t) {
    CHECK_NEAR(out[1 * d + t], (mem[4 * d + t] + mem[5 * d + t]) / 2, 1e-15);
    CHECK_NEAR(out[2 * d + t], (mem[6 * d + t] + mem[7 * d + t] + mem[8 * d + t]) / 3, 1e-15);
  }
  for (index_t r : {0, 3, 4, 5, 6, 7, 8})  // every other row untouched
    for (index_t t = 0; t < d; ++t) CHECK(out[r * d + t] == mem[r * d + t]);
  const std::vector<index_t> bad{4, 9};
  CHECK(!hm_refresh_d(out.data(), m, d, bad.data(), 2, row_labels.data(), ptr.data(),
                      lrows.data(), nl).ok());
}

static void test_bf16_rounding() {
  CHECK(smcr::float_to_bf16(1.0f).bits == 0x3f80);
  CHECK(smcr::float_to_bf16(1.00390625f).bits == 0x3f80);  // tie -> even
  CHECK(smcr::float_to_bf16(1.01171875f).bits == 0x3f82);  // tie -> even (up)
  CHECK(std::isnan(smcr::bf16_to_float(smcr::float_to_bf16(NAN))));
}

// Dense MMT soft triplet in double (self excluded from the positives).
static double dense_triplet(const std::vector<double>& x, const std::vector<double>* teacher,
                            const std::vector<index_t>& lab, index_t b, index_t d, double margin,
                            std::vector<index_t>* pos = nullptr) {
  auto dist = [&](const std::vector<double>& v, index_t i, index_t j) {
    double s = 0;
    for (index_t t = 0; t < d; ++t) s += (v[i * d + t] - v[j * d + t]) * (v[i * d + t] - v[j * d + t]);
    return std::sqrt(std::max(s, 1e-12));
  };
  double total = 0;
  index_t valid = 0;
  for (index_t i = 0; i < b; ++i) {
    index_t p = -1, n = -1;
    for (index_t j = 0; j < b; ++j) {
      if (lab[j] == lab[i] && j != i && (p < 0 || dist(x, i, j) > dist(x, i, p))) p = j;
      if (lab[j] != lab[i] && (n < 0 || dist(x, i, j) < dist(x, i, n))) n = j;
    }
    if (pos) pos->push_back(p);
    if (p < 0 || n < 0) continue;
    const double dp = dist(x, i, p), dn = dist(x, i, n);
    double t0 = margin;
    if (teacher) {
      const double tp = dist(*teacher, i, p), tn = dist(*teacher, i, n);
      t0 = std::exp(tp) / (std::exp(tp) + std::exp(tn));
    }
    const double lp0 = dp - std::log(std::exp(dp) + std::exp(dn));
    const double lp1 = dn - std::log(std::exp(dp) + std::exp(dn));
    total += -(t0 * lp0 + (1 - t0) * lp1);
    ++valid;
  }
  return valid ? total / valid : 0.0;
}

static void test_soft_triplet() {
  std::mt19937 rng(11);
  const index_t b = 10, d = 6;
  auto x = unit_rows(b, d, rng);
  auto te = unit_rows(b, d, rng);
  const std::vector<index_t> lab{0, 0, 1, 1, 1, 2, 2, 3, 0, 4};  // anchors 7 and 9: no positive
  for (int soft = 0; soft < 2; ++soft) {
    std::vector<double> per(b), loss(1), dap(b), dan(b), coef(b), grad(b * d);
    std::vector<index_t> pos(b), neg(b);
    CHECK_OK(smcr::soft_triplet_forward_cpu<double>(x.data(), soft ? te.data() : nullptr, nullptr,
                                                    lab.data(), b, d, 0.0, per.data(), loss.data(),
                                                    pos.data(), neg.data(), dap.data(), dan.data(),
                                                    coef.data()));
    std::vector<index_t> ref_pos;
    const double ref = dense_triplet(x, soft ? &te : nullptr, lab, b, d, 0.0, &ref_pos);
    CHECK_NEAR(loss[0], ref, 1e-12);
    CHECK(pos[7] == -1 && neg[7] == -1 && per[7] == 0.0 && pos[9] == -1);
    for (index_t i = 0; i < b; ++i)
      if (pos[i] >= 0) CHECK(pos[i] == ref_pos[i]);
    const double gl = 1.0;
    CHECK_OK(smcr::soft_triplet_backward_cpu<double>(x.data(), b, d, pos.data(), neg.data(),
                                                     dap.data(), dan.data(), coef.data(), &gl,
                                                     nullptr, grad.data()));
    for (index_t k = 0; k < b * d; ++k) {
      const double h = 1e-6;
      auto xp = x, xm = x;
      xp[k] += h;
      xm[k] -= h;
      const double num = (dense_triplet(xp, soft ? &te : nullptr, lab, b, d, 0.0) -
                          dense_triplet(xm, soft ? &te : nullptr, lab, b, d, 0.0)) / (2 * h);
      CHECK_NEAR(grad[k], num, 1e-7);
    }
  }
  // Hand case, hard version with margin 0: loss = softplus(d_ap - d_an).
  // 1-D points 0, 1 (label 0) and 3 (label 1): anchor 0: d_ap = 1, d_an = 3; anchor 1:
  // d_ap = 1, d_an = 2; anchor 2 has no positive.
  const std::vector<double> pts{0.0, 1.0, 3.0};
  const std::vector<index_t> l3{0, 0, 1};
  std::vector<double> per(3), loss(1), dap(3), dan(3), coef(3);
  std::vector<index_t> pos(3), neg(3);
  CHECK_OK(smcr::soft_triplet_forward_cpu<double>(pts.data(), nullptr, nullptr, l3.data(), 3, 1,
                                                  0.0, per.data(), loss.data(), pos.data(),
                                                  neg.data(), dap.data(), dan.data(), coef.data()));
  CHECK_NEAR(per[0], std::log1p(std::exp(-2.0)), 1e-12);
  CHECK_NEAR(per[1], std::log1p(std::exp(-1.0)), 1e-12);
  CHECK_NEAR(loss[0], (per[0] + per[1]) / 2, 1e-12);
  CHECK(pos[2] == -1 && neg[0] == 2 && neg[1] == 2 && pos[0] == 1);
  // One identity only: no valid anchor, loss 0.
  const std::vector<index_t> same{5, 5, 5};
  CHECK_OK(smcr::soft_triplet_forward_cpu<double>(pts.data(), nullptr, nullptr, same.data(), 3, 1,
                                                  0.0, per.data(), loss.data(), pos.data(),
                                                  neg.data(), dap.data(), dan.data(), coef.data()));
  CHECK(loss[0] == 0.0 && pos[0] == -1);

  // float32 rows of norm ~1e20 overflow the Gram matrix's squared distances: mining falls
  // back to exact ones, so a power-of-two scale only scales the distances, exactly.
  std::mt19937 rng2(12);
  const index_t fb = 12, fd = 5;
  const std::vector<index_t> flab{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3};
  auto unit = unit_rows(fb, fd, rng2);
  std::vector<float> small(unit.begin(), unit.end()), huge(small);
  for (float& v : huge) v = std::ldexp(v, 66);
  std::vector<float> fper(fb), floss(1), fdap(fb), fdan(fb), fcoef(fb), hdap(fb), hdan(fb);
  std::vector<index_t> fpos(fb), fneg(fb), hpos(fb), hneg(fb);
  CHECK(smcr::gram_overflows(std::vector<float>{1.0f, 0.0f, 0.0f, 1e38f}.data(), 2));
  CHECK(!smcr::gram_overflows(std::vector<float>{1.0f, 0.0f, 0.0f, 1e37f}.data(), 2));
  CHECK_OK(smcr::soft_triplet_forward_cpu<float>(small.data(), nullptr, nullptr, flab.data(), fb,
                                                 fd, 0.0f, fper.data(), floss.data(), fpos.data(),
                                                 fneg.data(), fdap.data(), fdan.data(),
                                                 fcoef.data()));
  CHECK_OK(smcr::soft_triplet_forward_cpu<float>(huge.data(), nullptr, nullptr, flab.data(), fb,
                                                 fd, 0.0f, fper.data(), floss.data(), hpos.data(),
                                                 hneg.data(), hdap.data(), hdan.data(),
                                                 fcoef.data()));
  for (index_t i = 0; i < fb; ++i) {
    CHECK(hpos[i] == fpos[i] && hneg[i] == fneg[i]);
    CHECK(hdap[i] == std::ldexp(fdap[i], 66) && hdan[i] == std::ldexp(fdan[i], 66));
  }
}

// The value checks: the smallest offending row / position, -1 when there is none.
static void test_value_checks() {
  const double inf = HUGE_VAL, nan = std::nan("");
  std::vector<double> x(7 * 5, 0.5);
  index_t out = 0;
  CHECK_OK(smcr::first_nonfinite_row_cpu<double>(x.data(), 7, 5, &out));
  CHECK(out == -1);
  x[6 * 5 + 4] = nan;
  x[3 * 5 + 0] = -inf;
  CHECK_OK(smcr::first_nonfinite_row_cpu<double>(x.data(), 7, 5, &out));
  CHECK(out == 3);
  std::vector<float> big(1100 * 1000, 1e30f);  // large enough for the parallel scan
  big[1099 * 1000 + 999] = HUGE_VALF;
  big[734 * 1000 + 3] = std::nanf("");
  CHECK_OK(smcr::first_nonfinite_row_cpu<float>(big.data(), 1100, 1000, &out));
  CHECK(out == 734);
  CHECK_OK(smcr::first_nonfinite_row_cpu<float>(big.data(), 0, 1000, &out));
  CHECK(out == -1);

  const std::vector<index_t> counts{2, 0, 1, 0};
  index_t o[2] = {0, 0};
  const std::vector<index_t> good{0, 2, 2, 0};
  CHECK_OK(smcr::first_bad_index_cpu(good.data(), 4, 4, counts.data(), o));
  CHECK(o[0] == -1 && o[1] == -1);
  const std::vector<index_t> bad{0, 3, 2, 4, -1, 1};  // absent at 1 and 5, out of range at 3, 4
  CHECK_OK(smcr::first_bad_index_cpu(bad.data(), 6, 4, counts.data(), o));
  CHECK(o[0] == 3 && o[1] == 1);
  CHECK_OK(smcr::first_bad_index_cpu(bad.data(), 6, 4, nullptr, o));
  CHECK(o[0] == 3 && o[1] == -1);
  CHECK(!smcr::first_bad_index_cpu(bad.data(), -1, 4, nullptr, o).ok());

  // all of one call at once: x (rows 3 bad), y (row 1 bad), the index
  std::vector<double> y(2 * 5, 0.5);
  y[1 * 5 + 2] = inf;
  index_t all[4] = {0, 0, 0, 0};
  CHECK_OK(smcr::first_invalid_cpu<double>(x.data(), 7, 5, y.data(), 2, 5, bad.data(), 6, 4,
                                           counts.data(), all));
  CHECK(all[0] == 3 && all[1] == 1 && all[2] == 3 && all[3] == 1);
  CHECK_OK(smcr::first_invalid_cpu<double>(y.data(), 1, 5, nullptr, 0, 0, nullptr, 0, 4, nullptr,
                                           all));
  CHECK(all[0] == -1 && all[1] == -1 && all[2] == -1 && all[3] == -1);
}

int main() {
  test_value_checks();
  test_bf16_rounding();
  test_label_index();
  test_hybrid_memory_loss();
  test_hybrid_memory_stability();
  test_hybrid_memory_update();
  test_hybrid_memory_refresh_means();
  test_soft_triplet();
  return report("test_losses_cpu");
}
