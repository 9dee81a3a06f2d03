// cuda_emu: host implementations of the CUB device algorithms the kernels use, with CUB's
// two-call protocol (d_temp_storage == nullptr: only set temp_storage_bytes) and semantics:
//   DeviceScan::ExclusiveSum               out[i] = in[0] + ... + in[i-1], out[0] = 0
//   DeviceRadixSort::SortPairs/SortKeys    stable, by the bits [begin_bit, end_bit) of the
//                                          key's radix-ordered image (sign bit flipped for
//                                          signed integers, IEEE order for floats)
//   DeviceSegmentedSort::SortPairs/SortKeys  each segment [begin[s], end[s]) sorted by the
//                                          whole key (ascending); entries outside every
//                                          segment are not written. (CUB's SortPairs is not
//                                          stable; this one is: equal keys are not expected.)
// Every device range is checked to lie inside one cudaMalloc allocation.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <numeric>
#include <type_traits>
#include <vector>

namespace emu {
void check_device_range(const void* p, std::size_t bytes, const char* what);
void error(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
}  // namespace emu

namespace cub {
namespace emu_detail {

constexpr std::size_t kTempBytes = 16;

inline bool temp_query(void* d_temp, std::size_t& bytes) {
  if (d_temp == nullptr) {
    bytes = kTempBytes;
    return true;
  }
  return false;
}
inline cudaError_t temp_check(void* d_temp, std::size_t bytes, const char* what) {
  if (bytes < kTempBytes) return cudaErrorInvalidValue;  // CUB: temporary storage too small
  ::emu::check_device_range(d_temp, bytes, what);
  return cudaSuccess;
}

template <typename T>
void check(const T* p, long long n, const char* what) {
  if (n > 0) ::emu::check_device_range(p, sizeof(T) * static_cast<std::size_t>(n), what);
}

// The unsigned radix-ordered image of a key (CUB's Traits<Key>::TwiddleIn).
template <typename K>
auto radix_bits(K k) {
  static_assert(std::is_arithmetic<K>::value, "cub emu: arithmetic keys only");
  using U = std::conditional_t<sizeof(K) == 1, std::uint8_t,
            std::conditional_t<sizeof(K) == 2, std::uint16_t,
            std::conditional_t<sizeof(K) == 4, std::uint32_t, std::uint64_t>>>;
  U u;
  std::memcpy(&u, &k, sizeof(K));
  constexpr U high = static_cast<U>(U(1) << (8 * sizeof(K) - 1));
  if constexpr (std::is_floating_point<K>::value) {
    u = (u & high) ? static_cast<U>(~u) : static_cast<U>(u | high);
  } else if constexpr (std::is_signed<K>::value) {
    u = static_cast<U>(u ^ high);
  }
  return u;
}

template <typename K>
std::uint64_t digit(K k, int begin_bit, int end_bit) {
  const std::uint64_t u = static_cast<std::uint64_t>(radix_bits(k));
  const int nb = end_bit - begin_bit;
  if (nb <= 0) return 0;
  const std::uint64_t m = nb >= 64 ? ~0ull : ((1ull << nb) - 1);
  return (u >> begin_bit) & m;
}

// Stable order of keys[0, n) by digit(); writes keys/values (values may be null).
template <typename K, typename V>
void sort_range(const K* keys_in, K* keys_out, const V* vals_in, V* vals_out, long long n,
                int begin_bit, int end_bit) {
  std::vector<long long> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0ll);
  std::stable_sort(idx.begin(), idx.end(), [&](long long a, long long b) {
    return digit(keys_in[a], begin_bit, end_bit) < digit(keys_in[b], begin_bit, end_bit);
  });
  std::vector<K> k(static_cast<std::size_t>(n));
  for (long long i = 0; i < n; ++i) k[i] = keys_in[idx[i]];
  std::vector<V> v;
  if (vals_in) {
    v.resize(static_cast<std::size_t>(n));
    for (long long i = 0; i < n; ++i) v[i] = vals_in[idx[i]];
  }
  std::copy(k.begin(), k.end(), keys_out);  // in == out allowed
  if (vals_in) std::copy(v.begin(), v.end(), vals_out);
}

struct NullValue {};

}  // namespace emu_detail

struct DeviceScan {
  template <typename InputIteratorT, typename OutputIteratorT, typename NumItemsT>
  static cudaError_t ExclusiveSum(void* d_temp_storage, std::size_t& temp_storage_bytes,
                                  InputIteratorT d_in, OutputIteratorT d_out, NumItemsT num_items,
                                  cudaStream_t stream = 0) {
    (void)stream;
    if (emu_detail::temp_query(d_temp_storage, temp_storage_bytes)) return cudaSuccess;
    if (cudaError_t e = emu_detail::temp_check(d_temp_storage, temp_storage_bytes, "cub::DeviceScan::ExclusiveSum temp storage")) return e;
    const long long n = static_cast<long long>(num_items);
    if (n <= 0) return cudaSuccess;
    using V = typename std::iterator_traits<InputIteratorT>::value_type;
    if constexpr (std::is_pointer<InputIteratorT>::value)
      emu_detail::check(d_in, n, "cub::DeviceScan::ExclusiveSum input");
    if constexpr (std::is_pointer<OutputIteratorT>::value)
      emu_detail::check(d_out, n, "cub::DeviceScan::ExclusiveSum output");
    V acc = V();
    for (long long i = 0; i < n; ++i) {
      const V x = d_in[i];
      d_out[i] = acc;
      acc = acc + x;
    }
    return cudaSuccess;
  }
};

struct DeviceRadixSort {
  template <typename KeyT, typename ValueT, typename NumItemsT>
  static cudaError_t SortPairs(void* d_temp_storage, std::size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                               ValueT* d_values_out, NumItemsT num_items, int begin_bit = 0,
                               int end_bit = sizeof(KeyT) * 8, cudaStream_t stream = 0) {
    (void)stream;
    if (emu_detail::temp_query(d_temp_storage, temp_storage_bytes)) return cudaSuccess;
    if (cudaError_t e = emu_detail::temp_check(d_temp_storage, temp_storage_bytes, "cub::DeviceRadixSort::SortPairs temp storage")) return e;
    const long long n = static_cast<long long>(num_items);
    if (begin_bit < 0 || end_bit > static_cast<int>(sizeof(KeyT) * 8) || begin_bit > end_bit)
      ::emu::error("cub::DeviceRadixSort::SortPairs: bad bit range [%d, %d)", begin_bit, end_bit);
    if (n <= 0) return cudaSuccess;
    emu_detail::check(d_keys_in, n, "cub::DeviceRadixSort::SortPairs keys_in");
    emu_detail::check(d_keys_out, n, "cub::DeviceRadixSort::SortPairs keys_out");
    emu_detail::check(d_values_in, n, "cub::DeviceRadixSort::SortPairs values_in");
    emu_detail::check(d_values_out, n, "cub::DeviceRadixSort::SortPairs values_out");
    emu_detail::sort_range(d_keys_in, d_keys_out, d_values_in, d_values_out, n, begin_bit, end_bit);
    return cudaSuccess;
  }
  template <typename KeyT, typename NumItemsT>
  static cudaError_t SortKeys(void* d_temp_storage, std::size_t& temp_storage_bytes,
                              const KeyT* d_keys_in, KeyT* d_keys_out, NumItemsT num_items,
                              int begin_bit = 0, int end_bit = sizeof(KeyT) * 8,
                              cudaStream_t stream = 0) {
    (void)stream;
    if (emu_detail::temp_query(d_temp_storage, temp_storage_bytes)) return cudaSuccess;
    if (cudaError_t e = emu_detail::temp_check(d_temp_storage, temp_storage_bytes, "cub::DeviceRadixSort::SortKeys temp storage")) return e;
    const long long n = static_cast<long long>(num_items);
    if (begin_bit < 0 || end_bit > static_cast<int>(sizeof(KeyT) * 8) || begin_bit > end_bit)
      ::emu::error("cub::DeviceRadixSort::SortKeys: bad bit range [%d, %d)", begin_bit, end_bit);
    if (n <= 0) return cudaSuccess;
    emu_detail::check(d_keys_in, n, "cub::DeviceRadixSort::SortKeys keys_in");
    emu_detail::check(d_keys_out, n, "cub::DeviceRadixSort::SortKeys keys_out");
    emu_detail::sort_range<KeyT, emu_detail::NullValue>(d_keys_in, d_keys_out, nullptr, nullptr, n,
                                                         begin_bit, end_bit);
    return cudaSuccess;
  }
};

struct DeviceSegmentedSort {
 private:
  template <typename KeyT, typename ValueT, typename BeginT, typename EndT>
  static cudaError_t run(const char* what, void* d_temp_storage, std::size_t& temp_storage_bytes,
                         const KeyT* keys_in, KeyT* keys_out, const ValueT* vals_in,
                         ValueT* vals_out, int num_items, int num_segments, BeginT begin,
                         EndT end) {
    if (emu_detail::temp_query(d_temp_storage, temp_storage_bytes)) return cudaSuccess;
    if (cudaError_t e = emu_detail::temp_check(d_temp_storage, temp_storage_bytes, what)) return e;
    if (num_items <= 0 || num_segments <= 0) return cudaSuccess;
    emu_detail::check(keys_in, num_items, what);
    emu_detail::check(keys_out, num_items, what);
    if (vals_in) emu_detail::check(vals_in, num_items, what);
    if (vals_out) emu_detail::check(vals_out, num_items, what);
    if constexpr (std::is_pointer<BeginT>::value) emu_detail::check(begin, num_segments, what);
    if constexpr (std::is_pointer<EndT>::value) emu_detail::check(end, num_segments, what);
    for (int s = 0; s < num_segments; ++s) {
      const long long a = static_cast<long long>(begin[s]), b = static_cast<long long>(end[s]);
      if (b <= a) continue;
      if (a < 0 || b > num_items)
        ::emu::error("%s: segment %d = [%lld, %lld) outside [0, num_items = %d)", what, s, a, b, num_items);
      emu_detail::sort_range(keys_in + a, keys_out + a, vals_in ? vals_in + a : nullptr,
                             vals_out ? vals_out + a : nullptr, b - a, 0,
                             static_cast<int>(sizeof(KeyT) * 8));
    }
    return cudaSuccess;
  }

 public:
  template <typename KeyT, typename ValueT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
  static cudaError_t SortPairs(void* d_temp_storage, std::size_t& temp_storage_bytes,
                               const KeyT* d_keys_in, KeyT* d_keys_out, const ValueT* d_values_in,
                               ValueT* d_values_out, int num_items, int num_segments,
                               BeginOffsetIteratorT d_begin_offsets,
                               EndOffsetIteratorT d_end_offsets, cudaStream_t stream = 0) {
    (void)stream;
    return run("cub::DeviceSegmentedSort::SortPairs", d_temp_storage, temp_storage_bytes,
               d_keys_in, d_keys_out, d_values_in, d_values_out, num_items, num_segments,
               d_begin_offsets, d_end_offsets);
  }
  template <typename KeyT, typename BeginOffsetIteratorT, typename EndOffsetIteratorT>
  static cudaError_t SortKeys(void* d_temp_storage, std::size_t& temp_storage_bytes,
                              const KeyT* d_keys_in, KeyT* d_keys_out, int num_items,
                              int num_segments, BeginOffsetIteratorT d_begin_offsets,
                              EndOffsetIteratorT d_end_offsets, cudaStream_t stream = 0) {
    (void)stream;
    return run<KeyT, emu_detail::NullValue>("cub::DeviceSegmentedSort::SortKeys", d_temp_storage,
                                            temp_storage_bytes, d_keys_in, d_keys_out, nullptr,
                                            nullptr, num_items, num_segments, d_begin_offsets,
                                            d_end_offsets);
  }
  // CUB's stable variants: the same here.
  template <typename KeyT, typename ValueT, typename B, typename E>
  static cudaError_t StableSortPairs(void* t, std::size_t& tb, const KeyT* ki, KeyT* ko,
                                     const ValueT* vi, ValueT* vo, int n, int s, B b, E e,
                                     cudaStream_t stream = 0) {
    return SortPairs(t, tb, ki, ko, vi, vo, n, s, b, e, stream);
  }
  template <typename KeyT, typename B, typename E>
  static cudaError_t StableSortKeys(void* t, std::size_t& tb, const KeyT* ki, KeyT* ko, int n,
                                    int s, B b, E e, cudaStream_t stream = 0) {
    return SortKeys(t, tb, ki, ko, n, s, b, e, stream);
  }
};

}  // namespace cub
