/* The float64 histogram pass of window64.c (simd.h's mm_w64_avx2_hrun) with AVX-512:
 * eight values a vector, one gather of their buckets' packed increments (an eight-lane
 * gather costs here about half of what two four-lane ones do), and a bit for each value
 * inside a window.  The values of those bits go to their windows block by block, so the
 * vector loop has no call (across which its registers would go to memory) and no branch
 * on the data.  Chosen at run time (simd.h's mm_w64_wide) where the CPU has AVX-512 F,
 * DQ and VL; under valgrind, whose CPU has not, the AVX2 pass runs.  Included by simd.h. */
#ifndef MM_SELECT_HIST512_H
#define MM_SELECT_HIST512_H

#include "keys.h"
#include "window64.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define MM_512_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,popcnt")))
#define MM_512_INLINE MM_512_TARGET __attribute__((always_inline)) static inline
#define MM_H512_BLK 128 /* vectors between two hand-overs of the values they packed */

/* The buckets of eight float64, as simd.h's mm_hb_idx computes those of four (the same
 * operations in the same order, so the same buckets). */
MM_512_INLINE __m256i
mm_h512_idx(__m512d x, __m512d vs, __m512d vc)
{
    __m512d t = _mm512_sub_pd(_mm512_mul_pd(x, vs), vc);
    t = _mm512_min_pd(_mm512_max_pd(_mm512_setzero_pd(), t), _mm512_set1_pd(MM_HB + 1.0));
    return _mm512_cvttpd_epi32(t); /* NaN: the top, as above */
}

/* The lanes ge of v, not below the threshold *mxf: the largest key *best raised by
 * them, and the threshold moved to it (+inf once it is NaN's: only NaN and inf look
 * again, and neither can raise it). */
MM_512_INLINE void
mm_h512_max(__m512d v, __mmask8 ge, uint64_t *best, __m512d *mxf)
{
    double u[8], d = INFINITY;
    _mm512_storeu_pd(u, v);
    for (int l = 0; l < 8; l++) {
        uint64_t k = key_f64((const char *)&u[l]);
        *best = (ge >> l & 1) != 0 && k > *best ? k : *best;
    }
    if (*best != UINT64_MAX)
        store_f64((char *)&d, *best);
    *mxf = _mm512_set1_pd(d);
}

/* Vector k of a block: its lanes keep counted by their buckets' packed increments into
 * acc, the largest key, its buckets to sb[8k..] and the lanes inside a window to the
 * bits of in[k] (storing them costs less than packing the lanes). */
MM_512_INLINE void
mm_h512_step(__m512d v, __mmask8 keep, __m512d vs, __m512d vc, const long long *tab,
             __m512i *acc, uint64_t *best, __m512d *mxf, int32_t *sb, unsigned char *in)
{
    const __m256i b = mm_h512_idx(v, vs, vc);
    const __m512i g = _mm512_mask_i32gather_epi64(_mm512_setzero_si512(), keep, b, tab, 8);
    const __mmask8 ge = _mm512_mask_cmp_pd_mask(keep, v, *mxf, _CMP_NLT_UQ);
    *acc = _mm512_add_epi64(*acc, g);
    _mm256_storeu_si256((__m256i *)(void *)sb, b);
    *in = (unsigned char)_mm512_movepi64_mask(g); /* bit 63: inside a window */
    if (ge != 0)
        mm_h512_max(v, ge, best, mxf);
}

/* The values of a block (from p on) inside a window, by the bits of in (n bytes, one
 * for each vector's lanes), staged into the windows of their buckets sb: their offsets
 * first packed into off (one compress for two vectors, no branch: n is even, or in[n]
 * is 0), then one loop over those. */
MM_512_INLINE void
mm_h512_hand(const char *p, const unsigned char *in, const int32_t *sb, npy_intp n,
             int32_t *off, mm_wpass *w, mm_wthread *t)
{
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                            14, 15);
    int m = 0;
    for (npy_intp k = 0; k < n; k += 2) {
        const unsigned b = (unsigned)in[k] | (unsigned)in[k + 1] << 8;
        const __m512i at = _mm512_add_epi32(lanes, _mm512_set1_epi32(8 * (int)k));
        _mm512_storeu_si512((void *)(off + m), _mm512_maskz_compress_epi32((__mmask16)b, at));
        m += _mm_popcnt_u32(b);
    }
    for (int q = 0; q < m; q++) {
        mm_wstage(w, t, w->hslot[sb[off[q]]], key_f64(p + 8 * (npy_intp)off[q]));
    }
}

/* The packed counts of acc (eight lanes, nw fields of f bits) into cnt. */
MM_512_INLINE void
mm_h512_fold(__m512i acc, int f, int nw, uint64_t *cnt)
{
    uint64_t x[8];
    const uint64_t m = ((uint64_t)1 << f) - 1;
    _mm512_storeu_si512((void *)x, acc);
    for (int l = 0; l < 8; l++)
        for (int r = 0; r < nw; r++)
            cnt[r] += (x[l] >> (f * r)) & m;
}

/* The histogram pass over values [*ip, cnt) of a contiguous run of float64 (all of
 * them: the last few by a masked load), as mm_w64_avx2_hrun's: the packed counts are
 * unpacked before a field can overflow (a field gains at most one a vector). */
MM_512_TARGET static inline void
mm_w64_avx512_hrun(const char *p, npy_intp cnt, mm_wpass *w, int tid, npy_intp *ip)
{
    mm_wthread *t = &w->th[tid];
    const int nw = w->n_win, f = w->hbits;
    const npy_intp most = ((npy_intp)1 << f) - 1;
    const __m512d vs = _mm512_set1_pd(w->hs), vc = _mm512_set1_pd(w->hc);
    const long long *tab = (const long long *)(const void *)w->htab;
    uint64_t cnt_r[MM_WMAX] = {0}, sum = 0, best = 0;
    int32_t sb[8 * MM_H512_BLK], off[8 * MM_H512_BLK + 16];
    unsigned char in[MM_H512_BLK + 1];
    __m512d mxf = _mm512_set1_pd(-INFINITY);
    npy_intp i = *ip;
    while (i < cnt) {
        const npy_intp left = (cnt - i + 7) / 8, steps = left < most ? left : most;
        __m512i acc = _mm512_setzero_si512();
        for (npy_intp s = 0; s < steps; s += MM_H512_BLK) {
            const npy_intp e = steps - s < MM_H512_BLK ? steps - s : MM_H512_BLK, i0 = i;
            const npy_intp whole = (cnt - i) / 8 < e ? (cnt - i) / 8 : e;
            const double *x = (const double *)(const void *)(p + 8 * i);
            for (npy_intp k = 0; k < whole; k++) /* whole vectors: no mask to compute */
                mm_h512_step(_mm512_loadu_pd(x + 8 * k), 0xFF, vs, vc, tab, &acc, &best, &mxf,
                             sb + 8 * k, in + k);
            if (whole < e) { /* the run's last few values */
                const __mmask8 keep = (__mmask8)((1u << (cnt - i - 8 * whole)) - 1);
                mm_h512_step(_mm512_maskz_loadu_pd(keep, x + 8 * whole), keep, vs, vc, tab, &acc,
                             &best, &mxf, sb + 8 * whole, in + whole);
            }
            i += 8 * e;
            in[e] = 0; /* an odd count: the pair of the last is empty */
            mm_h512_hand(p + 8 * i0, in, sb, e, off, w, t);
        }
        mm_h512_fold(acc, f, nw, cnt_r);
    }
    for (int j = 0; j < nw; j++) {
        sum += cnt_r[j];
        t->below[j] += sum;
    }
    t->max = best > t->max ? best : t->max;
    *ip = cnt > *ip ? cnt : *ip;
}

#endif
