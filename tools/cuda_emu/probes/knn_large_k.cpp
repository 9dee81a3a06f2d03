// Extra probe run by tools/cuda_emu/run.sh (not a project test): knn_merge_block_cuda against
// knn_merge_block_cpu for k > 32, i.e. knn_merge_kernel<2> and <4>, which test_cluster_cuda
// (k = 20) never launches; with many tied similarities, several column blocks, and more list
// slots than candidates. Compares indices and similarities of the filled slots after the
// merges, and all distances after finalize. (Empty slots hold -FLT_MAX on CUDA and -inf on the
// CPU before finalize, +inf on both after it; that difference is reported, not counted.)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <vector>

#include "knn.h"

using smcr::index_t;

int main() {
  int fails = 0;
  std::mt19937 rng(7);
  for (int k : {1, 5, 31, 32, 33, 40, 64, 65, 100, 128}) {
    for (index_t total_cols : {index_t(20), index_t(200)}) {
      const index_t rows = 19, ld = total_cols + 3;
      std::vector<float> sims(rows * ld);
      for (auto& v : sims) v = float(int(rng() % 9)) / 8.f;  // many ties
      std::vector<float> cs(rows * k), gs(rows * k);
      std::vector<index_t> ci(rows * k), gi(rows * k);
      smcr::knn_init_cpu(rows, k, cs.data(), ci.data());
      float *ds = nullptr, *dbs = nullptr;
      index_t* dbi = nullptr;
      cudaMalloc(&ds, sizeof(float) * sims.size());
      cudaMalloc(&dbs, sizeof(float) * rows * k);
      cudaMalloc(&dbi, sizeof(index_t) * rows * k);
      cudaMemcpy(ds, sims.data(), sizeof(float) * sims.size(), cudaMemcpyHostToDevice);
      smcr::Status st = smcr::knn_init_cuda(rows, k, dbs, dbi, nullptr);
      for (index_t c0 = 0; st.ok() && c0 < total_cols; c0 += 45) {
        const index_t cols = std::min<index_t>(45, total_cols - c0);
        smcr::knn_merge_block_cpu(sims.data() + c0, rows, cols, ld, c0, k, cs.data(), ci.data());
        st = smcr::knn_merge_block_cuda(ds + c0, rows, cols, ld, c0, k, dbs, dbi, nullptr);
      }
      if (!st.ok()) {
        std::printf("k=%d: %s\n", k, st.message.c_str());
        ++fails;
        continue;
      }
      cudaMemcpy(gs.data(), dbs, sizeof(float) * rows * k, cudaMemcpyDeviceToHost);
      cudaMemcpy(gi.data(), dbi, sizeof(index_t) * rows * k, cudaMemcpyDeviceToHost);
      int bad = 0, empty_differ = 0;
      for (index_t e = 0; e < rows * k; ++e) {
        if (gi[e] != ci[e] || (ci[e] >= 0 && gs[e] != cs[e])) ++bad;
        if (ci[e] < 0 && gs[e] != cs[e]) ++empty_differ;
      }
      smcr::knn_finalize_cpu(rows, k, cs.data());
      smcr::knn_finalize_cuda(rows, k, dbs, nullptr);
      cudaMemcpy(gs.data(), dbs, sizeof(float) * rows * k, cudaMemcpyDeviceToHost);
      for (index_t e = 0; e < rows * k; ++e) bad += !(gs[e] == cs[e]);
      std::printf("knn k=%3d, %3ld candidates: %s", k, static_cast<long>(total_cols),
                  bad ? "MISMATCH" : "same lists");
      if (empty_differ) std::printf(" (%d empty slots: -FLT_MAX on CUDA, -inf on CPU before finalize)", empty_differ);
      std::printf("\n");
      fails += bad != 0;
      cudaFree(ds);
      cudaFree(dbs);
      cudaFree(dbi);
    }
  }
  std::printf("probe_knn_large_k: %s\n", fails ? "FAILED" : "all lists agree");
  return fails != 0;
}
