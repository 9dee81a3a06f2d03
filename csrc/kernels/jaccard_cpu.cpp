#include "jaccard.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace smcr {
namespace {

inline int thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// A sparse row-major matrix with float values and 32-bit column indices (n < 2^31 is
// checked by the caller; offsets are 64-bit).
struct SparseRows {
  std::vector<index_t> ptr;
  std::vector<int32_t> col;
  std::vector<float> val;
};

// Per-thread scratch of size n, reset lazily with a stamp so that no O(n) clear is
// ever paid per row.
struct Scratch {
  std::vector<index_t> stamp;   // last row that touched the slot
  std::vector<index_t> stamp2;  // a second independent marker
  std::vector<int32_t> pos;     // slot payload (e.g. position in a list)
  std::vector<float> acc;
  explicit Scratch(index_t n) : stamp(n, -1), stamp2(n, -1), pos(n, 0), acc(n, 0.f) {}
};

// k-reciprocal set of i: members j of N(i, L) with i in N(j, L), in list order.
void reciprocal(const index_t* knn_idx, index_t K, index_t i, index_t L, int32_t* out,
                int32_t* out_len) {
  const index_t* fwd = knn_idx + i * K;
  int32_t cnt = 0;
  for (index_t a = 0; a < L; ++a) {
    const index_t j = fwd[a];
    const index_t* back = knn_idx + j * K;
    for (index_t b = 0; b < L; ++b) {
      if (back[b] == i) {
        out[cnt++] = static_cast<int32_t>(j);
        break;
      }
    }
  }
  *out_len = cnt;
}

}  // namespace

Status kreciprocal_jaccard_cpu(const float* x, index_t n, index_t d, const index_t* knn_idx,
                               const float* knn_dist, index_t K, int k1, int k2,
                               float max_dist, index_t* indptr_out,
                               const CsrOutputAlloc& alloc_out) {
  if (n < 1 || d < 1) return Status::Error("kreciprocal_jaccard: need n >= 1 and d >= 1");
  if (n >= (index_t(1) << 31))
    return Status::Error("kreciprocal_jaccard: n must be < 2^31, got " + std::to_string(n));
  if (K < 1 || K > n)
    return Status::Error("kreciprocal_jaccard: knn width K must be in [1, n], got " +
                         std::to_string(K));
  if (k1 < 1) return Status::Error("kreciprocal_jaccard: k1 must be >= 1");
  if (k2 < 1 || k2 > K)
    return Status::Error("kreciprocal_jaccard: k2 must be in [1, K], got k2=" +
                         std::to_string(k2) + " K=" + std::to_string(K));
  for (index_t t = 0; t < n * K; ++t) {
    if (knn_idx[t] < 0 || knn_idx[t] >= n)
      return Status::Error("kreciprocal_jaccard: knn index out of range at flat position " +
                           std::to_string(t) + ": " + std::to_string(knn_idx[t]));
  }

  const int k1h = jaccard_half_k(k1);
  const index_t L1 = std::min<index_t>(k1 + 1, K);
  const index_t Lh = std::min<index_t>(k1h + 1, K);

  // 1. Reciprocal sets R(i, k1) and R(i, k1h), fixed width with lengths.
  std::vector<int32_t> r1(n * L1), rh(n * Lh), r1_len(n), rh_len(n);
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i) {
    reciprocal(knn_idx, K, i, L1, r1.data() + i * L1, &r1_len[i]);
    reciprocal(knn_idx, K, i, Lh, rh.data() + i * Lh, &rh_len[i]);
  }

  int nthreads = 1;
#ifdef _OPENMP
  nthreads = omp_get_max_threads();
#endif
  std::vector<Scratch*> scratch(nthreads, nullptr);
  auto get_scratch = [&](int tid) -> Scratch& {
    if (!scratch[tid]) scratch[tid] = new Scratch(n);
    return *scratch[tid];
  };
  struct ScratchOwner {
    std::vector<Scratch*>& s;
    ~ScratchOwner() {
      for (Scratch* p : s) delete p;
    }
  } owner{scratch};

  // Stamp epochs (each pass marks with epoch * n + i): 0 and 5 expansion, 1 kNN
  // positions, 2 and 3 query expansion, 4 Jaccard accumulation.
  // Expanded set E(i) into `out` (sorted ascending); returns its size.
  // `base` keeps the stamps of different passes apart (a thread may see row i twice).
  auto expand = [&](index_t i, index_t base, Scratch& S, std::vector<int32_t>& out) {
    const index_t mark = base + i;
    out.clear();
    const int32_t* Ri = r1.data() + i * L1;
    const int32_t ni = r1_len[i];
    for (int32_t a = 0; a < ni; ++a) {
      S.stamp[Ri[a]] = mark;   // membership in R(i, k1)
      S.stamp2[Ri[a]] = mark;  // membership in E(i)
      out.push_back(Ri[a]);
    }
    for (int32_t a = 0; a < ni; ++a) {
      const int32_t c = Ri[a];
      const int32_t* Rc = rh.data() + static_cast<index_t>(c) * Lh;
      const int32_t nc = rh_len[c];
      int32_t common = 0;
      for (int32_t b = 0; b < nc; ++b) common += (S.stamp[Rc[b]] == mark);
      if (common > (2.0 / 3.0) * nc) {
        for (int32_t b = 0; b < nc; ++b) {
          if (S.stamp2[Rc[b]] != mark) {
            S.stamp2[Rc[b]] = mark;
            out.push_back(Rc[b]);
          }
        }
      }
    }
    std::sort(out.begin(), out.end());
  };

  // 2. V: softmax(-d) over E(i). Pass a counts, pass b fills.
  SparseRows V;
  V.ptr.assign(n + 1, 0);
#pragma omp parallel
  {
    Scratch& S = get_scratch(thread_id());
    std::vector<int32_t> e;
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      expand(i, 0, S, e);
      V.ptr[i + 1] = static_cast<index_t>(e.size());
    }
  }
  for (index_t i = 0; i < n; ++i) V.ptr[i + 1] += V.ptr[i];
  V.col.resize(V.ptr[n]);
  V.val.resize(V.ptr[n]);
#pragma omp parallel
  {
    Scratch& S = get_scratch(thread_id());
    std::vector<int32_t> e;
    std::vector<double> dist;
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      expand(i, 5 * n, S, e);
      // Positions of i's kNN list, to reuse the distances the kNN step computed.
      const index_t* li = knn_idx + i * K;
      for (index_t a = 0; a < K; ++a) {
        S.stamp[li[a]] = n + i;  // distinct from the stamps of expand()
        S.pos[li[a]] = static_cast<int32_t>(a);
      }
      dist.resize(e.size());
      double dmin = 1e300;
      for (size_t a = 0; a < e.size(); ++a) {
        const index_t j = e[a];
        double dj;
        if (S.stamp[j] == n + i) {
          dj = knn_dist[i * K + S.pos[j]];
        } else {
          const float* xi = x + i * d;
          const float* xj = x + j * d;
          float dot = 0.f;
          for (index_t t = 0; t < d; ++t) dot += xi[t] * xj[t];
          dj = std::max(0.0, 2.0 - 2.0 * static_cast<double>(dot));
        }
        dist[a] = dj;
        dmin = std::min(dmin, dj);
      }
      double sum = 0.0;
      for (size_t a = 0; a < e.size(); ++a) {
        dist[a] = std::exp(-(dist[a] - dmin));
        sum += dist[a];
      }
      const index_t o = V.ptr[i];
      for (size_t a = 0; a < e.size(); ++a) {
        V.col[o + a] = e[a];
        V.val[o + a] = static_cast<float>(dist[a] / sum);
      }
    }
  }

  // 3. Query expansion: Vq[i] = mean of V over the first k2 kNN rows of i.
  SparseRows Q;
  Q.ptr.assign(n + 1, 0);
#pragma omp parallel
  {
    Scratch& S = get_scratch(thread_id());
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      index_t cnt = 0;
      for (int t = 0; t < k2; ++t) {
        const index_t j = knn_idx[i * K + t];
        for (index_t a = V.ptr[j]; a < V.ptr[j + 1]; ++a) {
          const int32_t c = V.col[a];
          if (S.stamp2[c] != 2 * n + i) {
            S.stamp2[c] = 2 * n + i;
            ++cnt;
          }
        }
      }
      Q.ptr[i + 1] = cnt;
    }
  }
  for (index_t i = 0; i < n; ++i) Q.ptr[i + 1] += Q.ptr[i];
  Q.col.resize(Q.ptr[n]);
  Q.val.resize(Q.ptr[n]);
  const float inv_k2 = 1.0f / static_cast<float>(k2);
#pragma omp parallel
  {
    Scratch& S = get_scratch(thread_id());
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      const index_t o = Q.ptr[i];
      index_t cnt = 0;
      for (int t = 0; t < k2; ++t) {
        const index_t j = knn_idx[i * K + t];
        for (index_t a = V.ptr[j]; a < V.ptr[j + 1]; ++a) {
          const int32_t c = V.col[a];
          if (S.stamp2[c] != 3 * n + i) {
            S.stamp2[c] = 3 * n + i;
            S.acc[c] = 0.f;
            Q.col[o + cnt++] = c;
          }
          S.acc[c] += V.val[a];
        }
      }
      std::sort(Q.col.begin() + o, Q.col.begin() + o + cnt);
      for (index_t a = 0; a < cnt; ++a) Q.val[o + a] = S.acc[Q.col[o + a]] * inv_k2;
    }
  }

  // 4. Inverted index: for every column, the rows holding it, ascending.
  SparseRows T;
  T.ptr.assign(n + 1, 0);
  for (index_t a = 0; a < Q.ptr[n]; ++a) ++T.ptr[Q.col[a] + 1];
  for (index_t c = 0; c < n; ++c) T.ptr[c + 1] += T.ptr[c];
  T.col.resize(Q.ptr[n]);
  T.val.resize(Q.ptr[n]);
  {
    std::vector<index_t> fill(T.ptr.begin(), T.ptr.end() - 1);
    for (index_t i = 0; i < n; ++i) {
      for (index_t a = Q.ptr[i]; a < Q.ptr[i + 1]; ++a) {
        const index_t p = fill[Q.col[a]]++;
        T.col[p] = static_cast<int32_t>(i);
        T.val[p] = Q.val[a];
      }
    }
  }

  // 5. Jaccard rows. Each thread appends its rows' entries to its own buffer.
  struct Entry {
    float dist;
    int32_t j;
  };
  std::vector<std::vector<Entry>> buf(nthreads);
  std::vector<index_t> row_start(n), row_count(n);
  std::vector<int32_t> row_owner(n);
#pragma omp parallel
  {
    const int tid = thread_id();
    Scratch& S = get_scratch(tid);
    std::vector<int32_t> touched;
    std::vector<Entry>& out = buf[tid];
#pragma omp for schedule(dynamic, 64)
    for (index_t i = 0; i < n; ++i) {
      touched.clear();
      for (index_t a = Q.ptr[i]; a < Q.ptr[i + 1]; ++a) {
        const int32_t c = Q.col[a];
        const float v = Q.val[a];
        for (index_t b = T.ptr[c]; b < T.ptr[c + 1]; ++b) {
          const int32_t j = T.col[b];
          if (S.stamp[j] != 4 * n + i) {
            S.stamp[j] = 4 * n + i;
            S.acc[j] = 0.f;
            touched.push_back(j);
          }
          S.acc[j] += std::min(v, T.val[b]);
        }
      }
      const index_t start = static_cast<index_t>(out.size());
      out.push_back(Entry{0.f, static_cast<int32_t>(i)});  // self, at distance 0
      for (int32_t j : touched) {
        if (j == i) continue;
        const float s = S.acc[j];
        const float dist = std::max(0.f, 1.f - s / (2.f - s));
        if (dist <= max_dist) out.push_back(Entry{dist, j});
      }
      std::sort(out.begin() + start + 1, out.end(), [](const Entry& p, const Entry& q) {
        return p.dist < q.dist || (p.dist == q.dist && p.j < q.j);
      });
      row_owner[i] = tid;
      row_start[i] = start;
      row_count[i] = static_cast<index_t>(out.size()) - start;
    }
  }

  indptr_out[0] = 0;
  for (index_t i = 0; i < n; ++i) indptr_out[i + 1] = indptr_out[i] + row_count[i];
  index_t* out_idx = nullptr;
  float* out_dist = nullptr;
  Status st = alloc_out(indptr_out[n], &out_idx, &out_dist);
  if (!st.ok()) return st;
#pragma omp parallel for schedule(static)
  for (index_t i = 0; i < n; ++i) {
    const Entry* src = buf[row_owner[i]].data() + row_start[i];
    const index_t o = indptr_out[i];
    for (index_t a = 0; a < row_count[i]; ++a) {
      out_idx[o + a] = src[a].j;
      out_dist[o + a] = src[a].dist;
    }
  }
  return Status::Ok();
}

}  // namespace smcr
