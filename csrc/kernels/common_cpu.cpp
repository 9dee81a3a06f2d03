#include "common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace smcr {

int cpu_num_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

bool cpu_has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace smcr
