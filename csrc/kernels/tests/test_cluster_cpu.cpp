// C++ tests of the CPU clustering kernels against plain dense re-implementations
// written here from the definitions (no torch, no Python).
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "check.h"
#include "dbscan.h"
#include "jaccard.h"
#include "knn.h"
#include "reliability.h"

using smcr::index_t;

static std::vector<float> clustered_unit_vectors(index_t n, index_t d, int groups, unsigned seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.f, 1.f);
  std::vector<float> centers(groups * d), x(n * d);
  for (auto& v : centers) v = g(rng);
  for (index_t i = 0; i < n; ++i) {
    const int c = static_cast<int>(i % groups);
    double norm = 0;
    for (index_t t = 0; t < d; ++t) {
      x[i * d + t] = centers[c * d + t] + 0.6f * g(rng);
      norm += double(x[i * d + t]) * x[i * d + t];
    }
    for (index_t t = 0; t < d; ++t) x[i * d + t] = float(x[i * d + t] / std::sqrt(norm));
  }
  return x;
}

static double dot(const std::vector<float>& x, index_t d, index_t i, index_t j) {
  double s = 0;
  for (index_t t = 0; t < d; ++t) s += double(x[i * d + t]) * x[j * d + t];
  return s;
}

// Dense reference kNN: full sort by (distance, index).
static std::vector<index_t> knn_dense(const std::vector<float>& x, index_t n, index_t d, int k) {
  std::vector<index_t> out(n * k);
  for (index_t i = 0; i < n; ++i) {
    std::vector<index_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::vector<double> dist(n);
    for (index_t j = 0; j < n; ++j) dist[j] = 2 - 2 * dot(x, d, i, j);
    std::stable_sort(order.begin(), order.end(), [&](index_t a, index_t b) { return dist[a] < dist[b]; });
    std::copy(order.begin(), order.begin() + k, out.begin() + i * k);
  }
  return out;
}

static void test_knn() {
  const index_t n = 97, d = 16;
  const int k = 7;
  auto x = clustered_unit_vectors(n, d, 6, 1);
  auto ref = knn_dense(x, n, d, k);
  for (index_t block : {index_t(5), index_t(32), index_t(200)}) {
    std::vector<index_t> idx(n * k);
    std::vector<float> dist(n * k);
    CHECK_OK(smcr::knn_cpu(x.data(), n, d, k, block, idx.data(), dist.data()));
    CHECK(idx == ref);
    for (index_t i = 0; i < n; ++i) {
      CHECK(idx[i * k] == i);  // tie-free data: a point is its own nearest neighbour
      for (int a = 0; a < k; ++a) CHECK_NEAR(dist[i * k + a], 2 - 2 * dot(x, d, i, idx[i * k + a]), 1e-5);
    }
  }
  std::vector<index_t> idx(n * k);
  std::vector<float> dist(n * k);
  CHECK(!smcr::knn_cpu(x.data(), n, d, 0, 8, idx.data(), dist.data()).ok());
}

// Dense Jaccard from the definition in jaccard.h (double precision).
static std::vector<double> jaccard_dense(const std::vector<float>& x, index_t n, index_t d,
                                         const std::vector<index_t>& nn, int K, int k1, int k2) {
  auto R = [&](index_t i, int k) {
    const int L = std::min(k + 1, K);
    std::vector<index_t> r;
    for (int a = 0; a < L; ++a) {
      const index_t j = nn[i * K + a];
      for (int b = 0; b < L; ++b)
        if (nn[j * K + b] == i) { r.push_back(j); break; }
    }
    return r;
  };
  const int k1h = smcr::jaccard_half_k(k1);
  std::vector<double> V(n * n, 0.0);
  for (index_t i = 0; i < n; ++i) {
    auto r1 = R(i, k1);
    std::set<index_t> e(r1.begin(), r1.end());
    for (index_t c : r1) {
      auto rc = R(c, k1h);
      int common = 0;
      for (index_t j : rc) common += std::count(r1.begin(), r1.end(), j) > 0;
      if (common > 2.0 / 3.0 * rc.size()) e.insert(rc.begin(), rc.end());
    }
    double sum = 0;
    for (index_t j : e) sum += std::exp(-(2 - 2 * dot(x, d, i, j)));
    for (index_t j : e) V[i * n + j] = std::exp(-(2 - 2 * dot(x, d, i, j))) / sum;
  }
  std::vector<double> Q(n * n, 0.0);
  for (index_t i = 0; i < n; ++i)
    for (int t = 0; t < k2; ++t)
      for (index_t c = 0; c < n; ++c) Q[i * n + c] += V[nn[i * K + t] * n + c] / k2;
  std::vector<double> J(n * n);
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      double mn = 0, mx = 0;
      for (index_t c = 0; c < n; ++c) {
        mn += std::min(Q[i * n + c], Q[j * n + c]);
        mx += std::max(Q[i * n + c], Q[j * n + c]);
      }
      J[i * n + j] = 1 - mn / mx;
    }
  return J;
}

static void test_jaccard() {
  const index_t n = 90, d = 12;
  const int k1 = 9, k2 = 3;
  auto x = clustered_unit_vectors(n, d, 5, 2);
  auto nn = knn_dense(x, n, d, k1);
  std::vector<float> nd(n * k1);
  for (index_t i = 0; i < n; ++i)
    for (int a = 0; a < k1; ++a) nd[i * k1 + a] = float(2 - 2 * dot(x, d, i, nn[i * k1 + a]));
  std::vector<index_t> indptr(n + 1), idx;
  std::vector<float> dist;
  smcr::CsrOutputAlloc alloc = [&](index_t nnz, index_t** pi, float** pd) {
    idx.resize(nnz);
    dist.resize(nnz);
    *pi = idx.data();
    *pd = dist.data();
    return smcr::Status::Ok();
  };
  CHECK_OK(smcr::kreciprocal_jaccard_cpu(x.data(), n, d, nn.data(), nd.data(), k1, k1, k2, 1.0f,
                                         indptr.data(), alloc));
  auto J = jaccard_dense(x, n, d, nn, k1, k1, k2);
  std::map<std::pair<index_t, index_t>, float> got;
  for (index_t i = 0; i < n; ++i) {
    CHECK(indptr[i + 1] > indptr[i]);
    CHECK(idx[indptr[i]] == i && dist[indptr[i]] == 0.f);
    for (index_t a = indptr[i]; a < indptr[i + 1]; ++a) {
      got[{i, idx[a]}] = dist[a];
      if (a > indptr[i]) CHECK(dist[a] >= dist[a - 1]);
    }
  }
  int compared = 0;
  for (index_t i = 0; i < n; ++i)
    for (index_t j = 0; j < n; ++j) {
      auto it = got.find({i, j});
      if (i == j) continue;
      if (J[i * n + j] < 1 - 1e-9) {
        CHECK(it != got.end());
        if (it != got.end()) { CHECK_NEAR(it->second, J[i * n + j], 1e-5); ++compared; }
        auto sym = got.find({j, i});
        if (it != got.end() && sym != got.end()) CHECK(it->second == sym->second);  // bitwise
      } else {
        CHECK(it == got.end());
      }
    }
  CHECK(compared > n);
  CHECK(smcr::jaccard_half_k(30) == 15 && smcr::jaccard_half_k(25) == 12 &&
        smcr::jaccard_half_k(31) == 16 && smcr::jaccard_half_k(21) == 10);
}

static void test_dbscan() {
  // A hand-made graph on 7 points (symmetric, rows sorted by distance):
  //   0-1 0.1, 1-2 0.1, 0-2 0.15: a triangle; 2-3 0.3: 3 is border at eps 0.2..0.29;
  //   4-5 0.05, 5-6 0.05, 4-6 0.08: a second triangle.
  std::vector<std::vector<std::pair<index_t, float>>> rows(7);
  auto edge = [&](index_t a, index_t b, float w) { rows[a].push_back({b, w}); rows[b].push_back({a, w}); };
  edge(0, 1, 0.1f); edge(1, 2, 0.1f); edge(0, 2, 0.15f); edge(2, 3, 0.3f);
  edge(4, 5, 0.05f); edge(5, 6, 0.05f); edge(4, 6, 0.08f);
  std::vector<index_t> indptr{0}, idx;
  std::vector<float> dist;
  for (auto& r : rows) {
    std::sort(r.begin(), r.end(), [](auto& p, auto& q) { return p.second < q.second; });
    for (auto& e : r) { idx.push_back(e.first); dist.push_back(e.second); }
    indptr.push_back(index_t(idx.size()));
  }
  smcr::CsrGraphView g{7, indptr.data(), idx.data(), dist.data()};
  const float eps[3] = {0.2f, 0.3f, 0.04f};
  std::vector<index_t> labels(3 * 7);
  CHECK_OK(smcr::dbscan_cpu(g, eps, 3, 3, labels.data()));
  const std::vector<index_t> e0{0, 0, 0, -1, 1, 1, 1};  // 3 is not within 0.2 of anyone
  const std::vector<index_t> e1{0, 0, 0, 0, 1, 1, 1};   // boundary inclusive: 2-3 at 0.3
  const std::vector<index_t> e2{-1, -1, -1, -1, -1, -1, -1};
  CHECK(std::vector<index_t>(labels.begin(), labels.begin() + 7) == e0);
  CHECK(std::vector<index_t>(labels.begin() + 7, labels.begin() + 14) == e1);
  CHECK(std::vector<index_t>(labels.begin() + 14, labels.end()) == e2);
  // min_samples = 1: every point is core; singletons are clusters of their own.
  CHECK_OK(smcr::dbscan_cpu(g, eps, 1, 1, labels.data()));
  CHECK((std::vector<index_t>(labels.begin(), labels.begin() + 7) == std::vector<index_t>{0, 0, 0, 1, 2, 2, 2}));
  CHECK(!smcr::dbscan_cpu(g, eps, 1, 0, labels.data()).ok());
}

static void test_reliability() {
  // normal: {0,1,2,3} {4,5} noise 6; other: {0,1} {2,3,4} noise 5, {6}
  const std::vector<index_t> a{0, 0, 0, 0, 1, 1, -1};
  const std::vector<index_t> b{3, 3, 1, 1, 1, -1, 2};
  std::vector<float> iou(7);
  CHECK_OK(smcr::cluster_iou_cpu(a.data(), b.data(), 7, iou.data()));
  CHECK_NEAR(iou[0], 2.0 / 4.0, 1e-7);  // {0,1,2,3} vs {0,1}
  CHECK_NEAR(iou[2], 2.0 / 5.0, 1e-7);  // {0,1,2,3} vs {2,3,4}
  CHECK_NEAR(iou[4], 1.0 / 4.0, 1e-7);  // {4,5} vs {2,3,4}
  CHECK_NEAR(iou[5], 1.0 / 2.0, 1e-7);  // {4,5} vs {5}
  CHECK_NEAR(iou[6], 1.0, 1e-7);        // {6} vs {6}
  const std::vector<index_t> bad{0, 0, 0, 0, 1, 1, 7};
  CHECK(!smcr::cluster_iou_cpu(bad.data(), b.data(), 7, iou.data()).ok());
}

int main() {
  test_knn();
  test_jaccard();
  test_dbscan();
  test_reliability();
  return report("test_cluster_cpu");
}
