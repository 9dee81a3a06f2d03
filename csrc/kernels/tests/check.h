// A tiny test harness for the kernel tests: CHECK(cond) records a failure with its
// location; main() returns the failure count through report().
#pragma once

#include <cmath>
#include <cstdio>

static int g_failures = 0;

#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

#define CHECK_OK(status)                                                    \
  do {                                                                      \
    auto _st = (status);                                                    \
    if (!_st.ok()) {                                                        \
      std::fprintf(stderr, "%s:%d: status error: %s\n", __FILE__, __LINE__, \
                   _st.message.c_str());                                    \
      ++g_failures;                                                         \
    }                                                                       \
  } while (0)

#define CHECK_NEAR(a, b, tol) CHECK(std::fabs(double(a) - double(b)) <= (tol))

inline int report(const char* name) {
  if (g_failures == 0) std::printf("%s: all checks passed\n", name);
  else std::printf("%s: %d check(s) failed\n", name, g_failures);
  return g_failures == 0 ? 0 : 1;
}
