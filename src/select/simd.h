/* The SIMD parts of the 16-bit window (window.c), behind small helpers that take the
 * longest stretch of a contiguous run they handle and move the caller's index past it;
 * the caller finishes the run element by element.  Without SSE2 they do nothing. */
#ifndef MM_SELECT_SIMD_H
#define MM_SELECT_SIMD_H

#include "select.h"

#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>

/* The sum of the eight unsigned 16-bit lanes of v. */
static inline uint64_t
mm_hsum_u16(__m128i v)
{
    const __m128i z = _mm_setzero_si128();
    uint32_t w[4];
    _mm_storeu_si128((__m128i *)w, _mm_add_epi32(_mm_unpacklo_epi16(v, z),
                                                 _mm_unpackhi_epi16(v, z)));
    return (uint64_t)w[0] + w[1] + w[2] + w[3];
}

/* The window count (window.c's win_count) of a run of 16-bit values with stride st,
 * from element *ip on, 16 at a time where the run is contiguous: keys (value ^ kx) in
 * [lo, hi] to their bins of h, the others added to *below and *above; *ip moves past
 * the elements done.  Only the rare keys inside the window touch the table. */
static inline void
mm_win_count_simd(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint32_t lo,
                  uint32_t hi, uint32_t *h, uint64_t *below, uint64_t *above, npy_intp *ip)
{
    npy_intp i = *ip;
    if (st == 2) {
        /* signed compares of the keys with their top bit flipped */
        const __m128i vx = _mm_set1_epi16((short)(int16_t)(uint16_t)(kx ^ 0x8000u));
        const __m128i vlo = _mm_set1_epi16((short)(int16_t)(uint16_t)(lo ^ 0x8000u));
        const __m128i vhi = _mm_set1_epi16((short)(int16_t)(uint16_t)(hi ^ 0x8000u));
        while (cnt - i >= 16) {
            /* at most 8192 steps of two per 16-bit lane counter before it is summed */
            npy_intp steps = (cnt - i) / 16 < 8192 ? (cnt - i) / 16 : 8192;
            npy_intp end = i + 16 * steps;
            __m128i nlo = _mm_setzero_si128(), nhi = _mm_setzero_si128();
            for (; i < end; i += 16) {
                __m128i v0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i)), vx);
                __m128i v1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i + 16)), vx);
                __m128i l0 = _mm_cmpgt_epi16(vlo, v0), g0 = _mm_cmpgt_epi16(v0, vhi);
                __m128i l1 = _mm_cmpgt_epi16(vlo, v1), g1 = _mm_cmpgt_epi16(v1, vhi);
                uint32_t in;
                nlo = _mm_sub_epi16(_mm_sub_epi16(nlo, l0), l1);
                nhi = _mm_sub_epi16(_mm_sub_epi16(nhi, g0), g1);
                in = ~((uint32_t)_mm_movemask_epi8(_mm_or_si128(l0, g0)) |
                       (uint32_t)_mm_movemask_epi8(_mm_or_si128(l1, g1)) << 16) &
                     0xAAAAAAAAu; /* one bit per value inside the window */
                while (in != 0) {
                    uint16_t v;
                    memcpy(&v, p + 2 * (i + (npy_intp)((unsigned)__builtin_ctz(in) >> 1)), 2);
                    h[(uint16_t)(v ^ kx)]++;
                    in &= in - 1;
                }
            }
            *below += mm_hsum_u16(nlo);
            *above += mm_hsum_u16(nhi);
        }
    }
    *ip = i;
}

/* The sum of the keys (value ^ kx) of a run of 16-bit values with stride st, from
 * element *ip on, 8 at a time where the run is contiguous, into *sum (pairs of keys, top
 * bit flipped: signed, summed into 32-bit lanes); *ip moves past the elements done. */
static inline void
mm_keysum_simd(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint64_t *sum,
               npy_intp *ip)
{
    npy_intp i = *ip;
    if (st == 2) {
        const __m128i vx = _mm_set1_epi16((short)(int16_t)(uint16_t)(kx ^ 0x8000u));
        const __m128i one = _mm_set1_epi16(1);
        int64_t ssum = 0;
        while (cnt - i >= 8) {
            /* at most 16384 steps: a lane's sum stays within 16384 * 2 * 32768 */
            npy_intp steps = (cnt - i) / 8 < 16384 ? (cnt - i) / 8 : 16384;
            npy_intp end = i + 8 * steps;
            int32_t w[4];
            __m128i acc = _mm_setzero_si128();
            for (; i < end; i += 8) {
                __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i)), vx);
                acc = _mm_add_epi32(acc, _mm_madd_epi16(v, one));
            }
            _mm_storeu_si128((__m128i *)w, acc);
            ssum += (int64_t)w[0] + w[1] + w[2] + w[3];
        }
        *sum = (uint64_t)(ssum + (int64_t)i * 32768);
    }
    *ip = i;
}

#else /* no SSE2: the callers do every element */

static inline void
mm_win_count_simd(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint32_t lo,
                  uint32_t hi, uint32_t *h, uint64_t *below, uint64_t *above, npy_intp *ip)
{
    (void)p, (void)cnt, (void)st, (void)kx, (void)lo, (void)hi, (void)h, (void)below;
    (void)above, (void)ip;
}

static inline void
mm_keysum_simd(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint64_t *sum,
               npy_intp *ip)
{
    (void)p, (void)cnt, (void)st, (void)kx, (void)sum, (void)ip;
}

#endif

#endif
