/* The float64 histogram pass of window64.c (simd.h's mm_w64_avx2_hrun) with AVX-512:
 * sixteen values a step, whose buckets are compared with the windows' first buckets
 * (no gather: on the AMD EPYC this was measured on, an eight-lane gather cost more than
 * the compares of sixteen buckets with a dozen windows).  A value's position (the
 * windows starting at or below its bucket) picks, by a permute, the field of the packed
 * counts it adds one to and the last bucket of the window before it, which tells
 * whether it is inside that window.  The values inside go to their windows block by
 * block, so the vector loop has no call (across which its registers would go to memory)
 * and no branch on the data.  Chosen at run time (simd.h's mm_w64_wide) where the CPU
 * has AVX-512 F, DQ and VL; under valgrind, whose CPU has not, the AVX2 pass runs.
 * Included by simd.h. */
#ifndef MM_SELECT_HIST512_H
#define MM_SELECT_HIST512_H

#include "keys.h"
#include "window64.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#define MM_512_TARGET __attribute__((target("avx512f,avx512dq,avx512vl,popcnt")))
#define MM_512_INLINE MM_512_TARGET __attribute__((always_inline)) static inline
#define MM_H512_BLK 64 /* steps (of 16 values) between two hand-overs of the values inside */

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

/* What a step compares its buckets with: window j's first bucket (b0[j]; past the
 * last window, none: the step reads b0 two at a time), and by a value's position p,
 * entries p of sh (the shift of its count's field; 64, none, for p = nw and the lanes
 * left out, p = 31) and hi (window p - 1's last bucket; -1 for p = 0) as two vectors of
 * 16 each. */
_Static_assert(MM_WMAX < 31, "a position must fit below 31, the lanes left out");
typedef struct {
    __m512i b0[MM_WMAX + 1];
    __m512i sh[2], hi[2];
    __m512d vs, vc;
    int nw;
} mm_h512_plan;

MM_512_TARGET static inline void
mm_h512_plan_of(const mm_wpass *w, mm_h512_plan *pl)
{
    int32_t sh[32], hi[32];
    for (int p = 0; p < 32; p++) {
        sh[p] = p < w->n_win ? w->hbits * p : 64;
        hi[p] = p == 0 || p > w->n_win ? -1 : w->hb1[p - 1];
    }
    for (int j = 0; j <= MM_WMAX; j++) /* past the last: no bucket */
        pl->b0[j] = _mm512_set1_epi32(j < w->n_win ? w->hb0[j] : INT32_MAX);
    for (int h = 0; h < 2; h++) {
        pl->sh[h] = _mm512_loadu_si512((const void *)(sh + (ptrdiff_t)16 * h));
        pl->hi[h] = _mm512_loadu_si512((const void *)(hi + (ptrdiff_t)16 * h));
    }
    pl->vs = _mm512_set1_pd(w->hs);
    pl->vc = _mm512_set1_pd(w->hc);
    pl->nw = w->n_win;
}

/* The count increments of eight lanes by their fields' shifts. */
MM_512_INLINE __m512i
mm_h512_inc(__m256i sh)
{
    return _mm512_sllv_epi64(_mm512_set1_epi64(1), _mm512_cvtepu32_epi64(sh));
}

/* Step k of a block, two vectors: their lanes keep counted by their positions into
 * acc[0] (the first vector's) and acc[1], the largest key, their buckets to sb[16k..]
 * and the lanes inside a window to the bits of in[k]. */
MM_512_INLINE void
mm_h512_step(__m512d v0, __m512d v1, __mmask16 keep, const mm_h512_plan *pl, __m512i *acc,
             uint64_t *best, __m512d *mxf, int32_t *sb, uint16_t *in)
{
    const __m512i b = _mm512_inserti64x4(
        _mm512_castsi256_si512(mm_h512_idx(v0, pl->vs, pl->vc)), mm_h512_idx(v1, pl->vs, pl->vc),
        1);
    const __m512i one = _mm512_set1_epi32(1);
    __m512i p0 = _mm512_setzero_si512(), p1 = _mm512_setzero_si512(), p, sh, hi;
    __mmask8 ge0, ge1;
    for (int j = 0; j < pl->nw; j += 2) { /* two sums: half the chain of adds */
        p0 = _mm512_mask_add_epi32(p0, _mm512_cmpge_epi32_mask(b, pl->b0[j]), p0, one);
        p1 = _mm512_mask_add_epi32(p1, _mm512_cmpge_epi32_mask(b, pl->b0[j + 1]), p1, one);
    }
    p = _mm512_mask_add_epi32(_mm512_set1_epi32(31), keep, p0, p1);
    sh = _mm512_permutex2var_epi32(pl->sh[0], p, pl->sh[1]);
    hi = _mm512_permutex2var_epi32(pl->hi[0], p, pl->hi[1]);
    acc[0] = _mm512_add_epi64(acc[0], mm_h512_inc(_mm512_castsi512_si256(sh)));
    acc[1] = _mm512_add_epi64(acc[1], mm_h512_inc(_mm512_extracti64x4_epi64(sh, 1)));
    _mm512_storeu_si512((void *)sb, b);
    *in = (uint16_t)_mm512_cmple_epi32_mask(b, hi);
    ge0 = _mm512_mask_cmp_pd_mask((__mmask8)keep, v0, *mxf, _CMP_NLT_UQ);
    ge1 = _mm512_mask_cmp_pd_mask((__mmask8)(keep >> 8), v1, *mxf, _CMP_NLT_UQ);
    if ((ge0 | ge1) != 0) {
        mm_h512_max(v0, ge0, best, mxf);
        mm_h512_max(v1, ge1, best, mxf);
    }
}

/* The values of a block (from p on) inside a window, by the bits of in (n steps of 16
 * values), staged into the windows of their buckets sb: their offsets first packed into
 * off (one compress a step, no branch), then one loop over those. */
MM_512_INLINE void
mm_h512_hand(const char *p, const uint16_t *in, const int32_t *sb, npy_intp n, int32_t *off,
             mm_wpass *w, mm_wthread *t)
{
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,
                                            14, 15);
    int m = 0;
    for (npy_intp k = 0; k < n; k++) {
        const __m512i at = _mm512_add_epi32(lanes, _mm512_set1_epi32(16 * (int)k));
        _mm512_storeu_si512((void *)(off + m), _mm512_maskz_compress_epi32(in[k], at));
        m += _mm_popcnt_u32(in[k]);
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

/* One block of a run's values from *i: e steps, the last of them masked where the run
 * ends inside it, then the hand-over of the values inside. */
MM_512_INLINE void
mm_h512_block(const char *p, npy_intp cnt, npy_intp e, const mm_h512_plan *pl, __m512i *acc,
              uint64_t *best, __m512d *mxf, mm_wpass *w, mm_wthread *t, npy_intp *i)
{
    int32_t sb[16 * MM_H512_BLK], off[16 * MM_H512_BLK + 16];
    uint16_t in[MM_H512_BLK];
    const npy_intp i0 = *i, whole = (cnt - i0) / 16 < e ? (cnt - i0) / 16 : e;
    const double *x = (const double *)(const void *)(p + 8 * i0);
    for (npy_intp k = 0; k < whole; k++) /* whole steps: no mask to compute */
        mm_h512_step(_mm512_loadu_pd(x + 16 * k), _mm512_loadu_pd(x + 16 * k + 8), 0xFFFF, pl,
                     acc, best, mxf, sb + 16 * k, in + k);
    if (whole < e) { /* the run's last few values */
        const __mmask16 keep = (__mmask16)((1u << (cnt - i0 - 16 * whole)) - 1);
        mm_h512_step(_mm512_maskz_loadu_pd((__mmask8)keep, x + 16 * whole),
                     _mm512_maskz_loadu_pd((__mmask8)(keep >> 8), x + 16 * whole + 8), keep, pl,
                     acc, best, mxf, sb + 16 * whole, in + whole);
    }
    *i = i0 + 16 * e < cnt ? i0 + 16 * e : cnt;
    mm_h512_hand(p + 8 * i0, in, sb, e, off, w, t);
}

/* The histogram pass over values [*ip, cnt) of a contiguous run of float64 (all of
 * them: the last few by masked loads), as mm_w64_avx2_hrun's: the packed counts are
 * unpacked before a field can overflow (a field of acc[h] gains at most one a step). */
MM_512_TARGET static inline void
mm_w64_avx512_hrun(const char *p, npy_intp cnt, mm_wpass *w, int tid, npy_intp *ip)
{
    mm_wthread *t = &w->th[tid];
    const int nw = w->n_win, f = w->hbits;
    const npy_intp most = ((npy_intp)1 << f) - 1;
    uint64_t cnt_r[MM_WMAX] = {0}, sum = 0, best = 0;
    __m512d mxf = _mm512_set1_pd(-INFINITY);
    mm_h512_plan pl;
    npy_intp i = *ip;
    mm_h512_plan_of(w, &pl);
    while (i < cnt) {
        const npy_intp left = (cnt - i + 15) / 16, steps = left < most ? left : most;
        __m512i acc[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
        for (npy_intp s = 0; s < steps; s += MM_H512_BLK)
            mm_h512_block(p, cnt, steps - s < MM_H512_BLK ? steps - s : MM_H512_BLK, &pl, acc,
                          &best, &mxf, w, t, &i);
        mm_h512_fold(acc[0], f, nw, cnt_r);
        mm_h512_fold(acc[1], f, nw, cnt_r);
    }
    for (int j = 0; j < nw; j++) {
        sum += cnt_r[j];
        t->below[j] += sum;
    }
    t->max = best > t->max ? best : t->max;
    *ip = cnt > *ip ? cnt : *ip;
}

#endif
