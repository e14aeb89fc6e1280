/*
 * scanData(buffer, start) -> index: the DATA framer's fast path (lib/smtp/data-framer.ts). Returns the first
 * position p >= start that needs the framer's attention, or buffer.length if there is none:
 *   - a CR not followed by LF (a bare CR, or a CR that is the last byte and must be carried to the next chunk);
 *   - an LF not preceded by CR (a bare LF; an LF at position 0 always counts, the framer carries a trailing CR);
 *   - a "." right after an LF (a dot at the start of a line: stuffed, or the end of data).
 * Everything before p is ordinary message content: CRLF-terminated lines, no leading dot, no bare line ending.
 * The framer's JavaScript loop stays the reference; spec/smtp/data-scan.spec.ts checks both agree on any input.
 * SSE2 (every x86-64) tests 16 bytes at a time; other CPUs use the byte loop.
 */
#include <node_api.h>

#include <stddef.h>
#include <stdint.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline int special_at(const uint8_t* d, size_t n, size_t p) {
  uint8_t c = d[p];
  if (c == '\r') return p + 1 >= n || d[p + 1] != '\n';
  if (c == '\n') return p == 0 || d[p - 1] != '\r';
  if (c == '.') return p > 0 && d[p - 1] == '\n';
  return 0;
}

static size_t scan_data(const uint8_t* d, size_t n, size_t p) {
  if (p < n && p == 0) {
    if (special_at(d, n, 0)) return 0;
    p = 1;
  }
#if defined(__SSE2__)
  const __m128i cr = _mm_set1_epi8('\r');
  const __m128i lf = _mm_set1_epi8('\n');
  const __m128i dot = _mm_set1_epi8('.');
  /* Block [p, p+16) reads d[p-1] .. d[p+16]: needs p >= 1 and p + 16 < n. */
  while (p + 16 < n) {
    __m128i v = _mm_loadu_si128((const __m128i*)(d + p));
    __m128i before = _mm_loadu_si128((const __m128i*)(d + p - 1));
    __m128i after = _mm_loadu_si128((const __m128i*)(d + p + 1));
    unsigned is_cr = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, cr));
    unsigned is_lf = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, lf));
    unsigned is_dot = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, dot));
    unsigned lf_after = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(after, lf));
    unsigned cr_before = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(before, cr));
    unsigned lf_before = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(before, lf));
    unsigned hit = (is_cr & ~lf_after) | (is_lf & ~cr_before) | (is_dot & lf_before);
    if (hit != 0) return p + (size_t)__builtin_ctz(hit);
    p += 16;
  }
#endif
  for (; p < n; p++) {
    if (special_at(d, n, p)) return p;
  }
  return n;
}

napi_value sluice_scan_data(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2) {
    napi_throw_type_error(env, NULL, "scanData(buffer, start)");
    return NULL;
  }
  void* data = NULL;
  size_t len = 0;
  if (napi_get_buffer_info(env, argv[0], &data, &len) != napi_ok) {
    napi_throw_type_error(env, NULL, "scanData: the first argument must be a Buffer");
    return NULL;
  }
  int64_t start = 0;
  if (napi_get_value_int64(env, argv[1], &start) != napi_ok || start < 0) {
    napi_throw_range_error(env, NULL, "scanData: start must be a non-negative integer");
    return NULL;
  }
  size_t from = (size_t)start > len ? len : (size_t)start;
  napi_value out;
  napi_create_double(env, (double)scan_data((const uint8_t*)data, len, from), &out);
  return out;
}
