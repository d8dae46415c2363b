/* The SIMD parts of the 16-bit window (window.c) and of the 32/64-bit window pass
 * (window64.c), behind small helpers that take the longest stretch of a contiguous run
 * they handle and move the caller's index past it; the caller finishes the run element
 * by element.  Without SSE2 (16-bit) or AVX2 at run time (32/64-bit) they do nothing. */
#ifndef MM_SELECT_SIMD_H
#define MM_SELECT_SIMD_H

#include "select.h"
#include "window64.h"

#include <math.h>
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

/* The window count (window.c's mm_win_count) of a run of 16-bit values with stride st,
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

/* ---- the 32/64-bit window pass (window64.c): AVX2, chosen at run time --------------- */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#include "hist512.h"

#define MM_AVX2_INLINE __attribute__((target("avx2"), always_inline)) static inline

/* The signed key of four 64-bit values (its order is the key's, and key = skey ^ sign):
 * kind 0 unsigned, 1 signed, 2 float (NaN: the largest).  Floats pick by the sign bit
 * and find NaN by an unordered compare, so no 64-bit integer compare (one port) is
 * spent on the key. */
MM_AVX2_INLINE __m256i
mm_skey64(__m256i v, int kind)
{
    const __m256i sign = _mm256_set1_epi64x(INT64_MIN), absm = _mm256_set1_epi64x(INT64_MAX);
    __m256i k = v;
    if (kind == 0)
        k = _mm256_xor_si256(v, sign);
    else if (kind == 2) {
        __m256d d = _mm256_castsi256_pd(v), nan = _mm256_cmp_pd(d, d, _CMP_UNORD_Q);
        __m256d f = _mm256_blendv_pd(d, _mm256_castsi256_pd(_mm256_xor_si256(v, absm)), d);
        k = _mm256_castpd_si256(_mm256_blendv_pd(f, _mm256_castsi256_pd(absm), nan));
    }
    return k;
}

/* The same for eight 32-bit values. */
MM_AVX2_INLINE __m256i
mm_skey32(__m256i v, int kind)
{
    const __m256i sign = _mm256_set1_epi32(INT32_MIN), absm = _mm256_set1_epi32(INT32_MAX);
    __m256i k = v;
    if (kind == 0)
        k = _mm256_xor_si256(v, sign);
    else if (kind == 2) {
        __m256 d = _mm256_castsi256_ps(v), nan = _mm256_cmp_ps(d, d, _CMP_UNORD_Q);
        __m256 f = _mm256_blendv_ps(d, _mm256_castsi256_ps(_mm256_xor_si256(v, absm)), d);
        k = _mm256_castps_si256(_mm256_blendv_ps(f, _mm256_castsi256_ps(absm), nan));
    }
    return k;
}

/* The lanes' counts into thread t's, and their largest signed key (W bits) into its max. */
MM_AVX2_INLINE void
mm_w64_avx2_reduce(const __m256i *acc, __m256i mx, int W, int nw, mm_wthread *t)
{
    const uint64_t sb = W == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << 31;
    for (int j = 0; j < nw; j++) {
        int64_t l64[4];
        int32_t l32[8];
        _mm256_storeu_si256((__m256i *)(void *)l64, acc[j]);
        _mm256_storeu_si256((__m256i *)(void *)l32, acc[j]);
        for (int l = 0; l < 256 / W; l++)
            t->below[j] += W == 64 ? (uint64_t)l64[l] : (uint64_t)(uint32_t)l32[l];
    }
    for (int l = 0; l < 256 / W; l++) {
        uint64_t k = 0;
        memcpy(&k, (const char *)&mx + (ptrdiff_t)l * (W / 8), (size_t)(W / 8));
        k ^= sb;
        t->max = k > t->max ? k : t->max;
    }
}

/* The keys inside some window among the lanes of k (one bit a lane), staged: lane l is
 * inside window j when its lo[j] <= k <= hi[j]; nw windows. */
MM_AVX2_INLINE void
mm_w64_avx2_inside(__m256i k, unsigned in, int W, int nw, const __m256i *vlo,
                   const __m256i *vhi, mm_wpass *w, mm_wthread *t)
{
    const uint64_t sb = W == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << 31;
    unsigned char lanes[32];
    _mm256_storeu_si256((__m256i *)(void *)lanes, k);
    while (in != 0) { /* the rare keys inside a window */
        int l = __builtin_ctz(in);
        uint64_t key = 0;
        memcpy(&key, lanes + (ptrdiff_t)l * (W / 8), (size_t)(W / 8));
        key ^= sb;
        for (int j = 0; j < nw; j++) /* windows are disjoint: one holds it */
            if (key - w->lo[j] <= w->width[j])
                mm_wstage(w, t, j, key);
        in &= in - 1;
    }
    (void)vlo, (void)vhi;
}

/* The window pass over values [*ip, cnt) of a contiguous run of W-bit values (W = 32 or
 * 64: 256 / W a vector) with nw windows (a literal 1 lets the compiler drop that loop).
 * Per window the keys below it are counted in vector lanes (acc); a lane is inside some
 * window when the windows above it (lo > k) and below it (hi < k) do not add up to nw,
 * and only such rare vectors leave the loop's straight line.  The largest key is kept,
 * updated only when a lane exceeds it (no chain through every vector).  A run is at most
 * a chunk, so 32-bit lane counters do not overflow. */
MM_AVX2_INLINE void
mm_w64_avx2_run(const char *p, npy_intp cnt, int W, int kind, int nw, mm_wpass *w, int tid,
                npy_intp *ip)
{
    mm_wthread *t = &w->th[tid];
    const int L = 256 / W;
    const uint64_t sb = W == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << 31;
    __m256i vlo[MM_WMAX], vhi[MM_WMAX], acc[MM_WMAX], mx, vnw;
    npy_intp i = *ip;
    for (int j = 0; j < nw; j++) {
        uint64_t top = W == 64 ? UINT64_MAX : UINT32_MAX, lo = w->lo[j];
        uint64_t hi = w->width[j] > top - lo ? top : lo + w->width[j];
        vlo[j] = W == 64 ? _mm256_set1_epi64x((long long)(lo ^ sb))
                         : _mm256_set1_epi32((int)(uint32_t)(lo ^ sb));
        vhi[j] = W == 64 ? _mm256_set1_epi64x((long long)(hi ^ sb))
                         : _mm256_set1_epi32((int)(uint32_t)(hi ^ sb));
        acc[j] = _mm256_setzero_si256();
    }
    mx = W == 64 ? _mm256_set1_epi64x(INT64_MIN) : _mm256_set1_epi32(INT32_MIN);
    vnw = W == 64 ? _mm256_set1_epi64x(-nw) : _mm256_set1_epi32(-nw);
    for (; cnt - i >= L; i += L) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + (W / 8) * i));
        __m256i k = W == 64 ? mm_skey64(v, kind) : mm_skey32(v, kind);
        __m256i up = W == 64 ? _mm256_cmpgt_epi64(k, mx) : _mm256_cmpgt_epi32(k, mx);
        __m256i out = _mm256_setzero_si256();
        unsigned in;
        if (!_mm256_testz_si256(up, up))
            mx = W == 64 ? _mm256_blendv_epi8(mx, k, up) : _mm256_max_epi32(mx, k);
        for (int j = 0; j < nw; j++) {
            __m256i b = W == 64 ? _mm256_cmpgt_epi64(vlo[j], k) : _mm256_cmpgt_epi32(vlo[j], k);
            __m256i a = W == 64 ? _mm256_cmpgt_epi64(k, vhi[j]) : _mm256_cmpgt_epi32(k, vhi[j]);
            acc[j] = W == 64 ? _mm256_sub_epi64(acc[j], b) : _mm256_sub_epi32(acc[j], b);
            out = W == 64 ? _mm256_add_epi64(out, _mm256_add_epi64(a, b))
                          : _mm256_add_epi32(out, _mm256_add_epi32(a, b));
        }
        /* a lane outside every window has out == -nw */
        out = W == 64 ? _mm256_cmpeq_epi64(out, vnw) : _mm256_cmpeq_epi32(out, vnw);
        in = ~(unsigned)(W == 64 ? _mm256_movemask_pd(_mm256_castsi256_pd(out))
                                 : _mm256_movemask_ps(_mm256_castsi256_ps(out))) &
             ((1u << L) - 1);
        if (in != 0)
            mm_w64_avx2_inside(k, in, W, nw, vlo, vhi, w, t);
    }
    mm_w64_avx2_reduce(acc, mx, W, nw, t);
    *ip = i;
}

/* An ordered compare of W-bit floats as bit patterns: lanes of a below b (below = 1), or
 * lanes of a not at or below b, NaN included (below = 0); all ones where true. */
MM_AVX2_INLINE __m256i
mm_fcmp(__m256i a, __m256i b, int W, int below)
{
    __m256i r;
    if (W == 64)
        r = _mm256_castpd_si256(below ? _mm256_cmp_pd(_mm256_castsi256_pd(a),
                                                      _mm256_castsi256_pd(b), _CMP_LT_OQ)
                                      : _mm256_cmp_pd(_mm256_castsi256_pd(a),
                                                      _mm256_castsi256_pd(b), _CMP_NLE_UQ));
    else
        r = _mm256_castps_si256(below ? _mm256_cmp_ps(_mm256_castsi256_ps(a),
                                                      _mm256_castsi256_ps(b), _CMP_LT_OQ)
                                      : _mm256_cmp_ps(_mm256_castsi256_ps(a),
                                                      _mm256_castsi256_ps(b), _CMP_NLE_UQ));
    return r;
}

/* A new largest key among the lanes of k (signed keys) into *mx, and as a float bound
 * *mxf: a later value is looked at only if it is not below *mxf (or is NaN). */
MM_AVX2_INLINE void
mm_w64_avx2_fmax(__m256i k, int W, __m256i *mx, __m256i *mxf)
{
    const uint64_t sb = W == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << 31;
    unsigned char lanes[32];
    uint64_t best = 0, bits;
    _mm256_storeu_si256((__m256i *)(void *)lanes, k);
    memcpy(&best, (const char *)mx, (size_t)(W / 8)); /* lane 0 holds the broadcast max */
    best ^= sb;
    for (int l = 0; l < 256 / W; l++) {
        uint64_t key = 0;
        memcpy(&key, lanes + (ptrdiff_t)l * (W / 8), (size_t)(W / 8));
        key ^= sb;
        best = key > best ? key : best;
    }
    bits = best ^ sb; /* the signed key; as a float's bits: */
    *mx = W == 64 ? _mm256_set1_epi64x((long long)bits) : _mm256_set1_epi32((int)(uint32_t)bits);
    if (best == (W == 64 ? UINT64_MAX : UINT32_MAX)) /* a NaN: only NaN and inf look again */
        bits = W == 64 ? 0x7FF0000000000000u : 0x7F800000u;
    else if (best & sb) /* a positive float: its bits are its key's less the sign bit */
        bits = best ^ sb;
    else
        bits = ~best & (W == 64 ? UINT64_MAX : UINT32_MAX);
    *mxf = W == 64 ? _mm256_set1_epi64x((long long)bits) : _mm256_set1_epi32((int)(uint32_t)bits);
}

/* mm_w64_avx2_run for floats whose windows' ends are ordinary floats (w->fp_ok): the
 * values are compared as floats, which spares the key transform and uses two ports;
 * the rare lanes inside a window and new maxima go by their keys, exactly. */
MM_AVX2_INLINE void
mm_w64_avx2_frun(const char *p, npy_intp cnt, int W, int nw, mm_wpass *w, int tid,
                 npy_intp *ip)
{
    mm_wthread *t = &w->th[tid];
    const int L = 256 / W;
    __m256i vlo[MM_WMAX], vhi[MM_WMAX], acc[MM_WMAX], mx, mxf, vnw;
    npy_intp i = *ip;
    for (int j = 0; j < nw; j++) {
        vlo[j] = W == 64 ? _mm256_set1_epi64x((long long)w->flo[j])
                         : _mm256_set1_epi32((int)(uint32_t)w->flo[j]);
        vhi[j] = W == 64 ? _mm256_set1_epi64x((long long)w->fhi[j])
                         : _mm256_set1_epi32((int)(uint32_t)w->fhi[j]);
        acc[j] = _mm256_setzero_si256();
    }
    mx = W == 64 ? _mm256_set1_epi64x(INT64_MIN) : _mm256_set1_epi32(INT32_MIN);
    mxf = W == 64 ? _mm256_set1_epi64x((long long)0xFFF0000000000000u)
                  : _mm256_set1_epi32((int)0xFF800000u); /* -inf: the first vector looks */
    vnw = W == 64 ? _mm256_set1_epi64x(-nw) : _mm256_set1_epi32(-nw);
    for (; cnt - i >= L; i += L) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(p + (W / 8) * i));
        __m256i out = _mm256_setzero_si256(), vge; /* lanes not below mxf, or NaN: */
        unsigned in;
        if (W == 64)
            vge = _mm256_castpd_si256(_mm256_cmp_pd(_mm256_castsi256_pd(v),
                                                    _mm256_castsi256_pd(mxf), _CMP_NLT_UQ));
        else
            vge = _mm256_castps_si256(_mm256_cmp_ps(_mm256_castsi256_ps(v),
                                                    _mm256_castsi256_ps(mxf), _CMP_NLT_UQ));
        if (!_mm256_testz_si256(vge, vge))
            mm_w64_avx2_fmax(W == 64 ? mm_skey64(v, 2) : mm_skey32(v, 2), W, &mx, &mxf);
        for (int j = 0; j < nw; j++) {
            __m256i b = mm_fcmp(v, vlo[j], W, 1), a = mm_fcmp(v, vhi[j], W, 0);
            acc[j] = W == 64 ? _mm256_sub_epi64(acc[j], b) : _mm256_sub_epi32(acc[j], b);
            out = W == 64 ? _mm256_add_epi64(out, _mm256_add_epi64(a, b))
                          : _mm256_add_epi32(out, _mm256_add_epi32(a, b));
        }
        out = W == 64 ? _mm256_cmpeq_epi64(out, vnw) : _mm256_cmpeq_epi32(out, vnw);
        in = ~(unsigned)(W == 64 ? _mm256_movemask_pd(_mm256_castsi256_pd(out))
                                 : _mm256_movemask_ps(_mm256_castsi256_ps(out))) &
             ((1u << L) - 1);
        if (in != 0)
            mm_w64_avx2_inside(W == 64 ? mm_skey64(v, 2) : mm_skey32(v, 2), in, W, nw, vlo, vhi,
                               w, t);
    }
    mm_w64_avx2_reduce(acc, mx, W, nw, t);
    *ip = i;
}

/* ---- the histogram pass of float64 with many windows (window64.c's hist) ---------- */

/* The buckets of four float64: x * hs - hc clamped to [0, MM_HB + 1], truncated (NaN:
 * the top).  Rounding is monotone, so the buckets are in the values' order. */
MM_AVX2_INLINE __m128i
mm_hb_idx(__m256d x, __m256d vs, __m256d vc)
{
    const __m256d top = _mm256_set1_pd((double)(MM_HB + 1));
    __m256d t = _mm256_sub_pd(_mm256_mul_pd(x, vs), vc);
    t = _mm256_min_pd(_mm256_max_pd(_mm256_setzero_pd(), t), top); /* NaN: top */
    return _mm256_cvttpd_epi32(t);
}

/* The lanes `in` of v, inside a window: staged into the window of their bucket. */
MM_AVX2_INLINE void
mm_w64_avx2_hin(__m256d v, __m128i b, unsigned in, mm_wpass *w, mm_wthread *t)
{
    uint64_t keys[4];
    int32_t bk[4];
    _mm256_storeu_si256((__m256i *)(void *)keys, mm_skey64(_mm256_castpd_si256(v), 2));
    _mm_storeu_si128((__m128i *)(void *)bk, b);
    while (in != 0) {
        int l = __builtin_ctz(in);
        mm_wstage(w, t, w->hslot[bk[l]], keys[l] ^ ((uint64_t)1 << 63));
        in &= in - 1;
    }
}

/* The packed counts of acc (four lanes, nw fields of f bits) into cnt. */
MM_AVX2_INLINE void
mm_hfold(__m256i acc, int f, int nw, uint64_t *cnt)
{
    uint64_t x[4];
    const uint64_t m = ((uint64_t)1 << f) - 1;
    memcpy(x, &acc, sizeof(x));
    for (int l = 0; l < 4; l++)
        for (int r = 0; r < nw; r++)
            cnt[r] += (x[l] >> (f * r)) & m;
}

/* One vector of the histogram pass: its lanes `keep` (all, but at a run's end) counted
 * by their buckets' packed increments, staged where inside a window, and the maximum. */
MM_AVX2_INLINE void
mm_w64_avx2_hstep(__m256d v, __m256i keep, __m256d vs, __m256d vc, const long long *tab,
                  __m256i *acc, __m256i *mx, __m256i *mxf, mm_wpass *w, mm_wthread *t)
{
    __m128i b = mm_hb_idx(v, vs, vc);
    __m256i g = _mm256_and_si256(_mm256_i32gather_epi64(tab, b, 8), keep);
    __m256i vge = _mm256_and_si256(
        _mm256_castpd_si256(_mm256_cmp_pd(v, _mm256_castsi256_pd(*mxf), _CMP_NLT_UQ)), keep);
    unsigned in = (unsigned)_mm256_movemask_pd(_mm256_castsi256_pd(g));
    *acc = _mm256_add_epi64(*acc, g);
    if (!_mm256_testz_si256(vge, vge)) /* padding lanes repeat a real one */
        mm_w64_avx2_fmax(mm_skey64(_mm256_castpd_si256(v), 2), 64, mx, mxf);
    if (in != 0)
        mm_w64_avx2_hin(v, b, in, w, t);
}

/* The histogram pass over values [*ip, cnt) of a contiguous run of float64 (all of
 * them: the last few in a padded vector).  Each value's bucket gives, by one gather,
 * the increment of packed 63/nw-bit counts (of the values with p windows starting at
 * or below their bucket, p < nw), so the cost does not grow with the windows; the
 * counts are unpacked before a field can overflow. */
MM_AVX2_INLINE void
mm_w64_avx2_hrun(const char *p, npy_intp cnt, mm_wpass *w, int tid, npy_intp *ip)
{
    mm_wthread *t = &w->th[tid];
    const int nw = w->n_win, f = w->hbits;
    const npy_intp most = ((npy_intp)1 << f) - 1;
    const __m256d vs = _mm256_set1_pd(w->hs), vc = _mm256_set1_pd(w->hc);
    const __m256i all = _mm256_set1_epi64x(-1);
    const long long *tab = (const long long *)(const void *)w->htab;
    uint64_t cnt_r[MM_WMAX] = {0}, sum = 0;
    __m256i mx = _mm256_set1_epi64x(INT64_MIN), acc[1] = {_mm256_setzero_si256()};
    __m256i mxf = _mm256_set1_epi64x((long long)0xFFF0000000000000u);
    npy_intp i = *ip;
    while (i < cnt) {
        npy_intp steps = (cnt - i) / 4 < most ? (cnt - i) / 4 : most, end = i + 4 * steps;
        acc[0] = _mm256_setzero_si256();
        for (; i < end; i += 4)
            mm_w64_avx2_hstep(_mm256_loadu_pd((const double *)(const void *)(p + 8 * i)), all,
                              vs, vc, tab, acc, &mx, &mxf, w, t);
        if (steps == 0) { /* fewer than four left: the first of them pads the vector */
            double x[4];
            int64_t k[4];
            for (int l = 0; l < 4; l++) {
                memcpy(&x[l], p + 8 * (i + (l < cnt - i ? l : 0)), 8);
                k[l] = l < cnt - i ? -1 : 0;
            }
            mm_w64_avx2_hstep(_mm256_loadu_pd(x), _mm256_loadu_si256((const __m256i *)(void *)k),
                              vs, vc, tab, acc, &mx, &mxf, w, t);
            i = cnt;
        }
        mm_hfold(acc[0], f, nw, cnt_r);
    }
    for (int j = 0; j < nw; j++) {
        sum += cnt_r[j];
        t->below[j] += sum;
    }
    mm_w64_avx2_reduce(acc, mx, 64, 0, t);
    *ip = i;
}

/* The buckets of n float64 (as bits) for hist's tables, as the pass finds them. */
__attribute__((target("avx2"))) static inline void
mm_hb_buckets(const uint64_t *bits, int n, double hs, double hc, int *out)
{
    for (int i = 0; i < n; i++) {
        double x[4];
        int32_t b[4];
        memcpy(&x[0], &bits[i], 8);
        x[1] = x[2] = x[3] = x[0];
        _mm_storeu_si128((__m128i *)(void *)b,
                         mm_hb_idx(_mm256_loadu_pd(x), _mm256_set1_pd(hs), _mm256_set1_pd(hc)));
        out[i] = b[0];
    }
}

/* Whether the CPU runs hist512.h's pass. */
static inline int
mm_w64_cpu512(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl");
}

/* Whether the histogram pass takes AVX-512 (hist512.h): the CPU has it, and the tests
 * have not turned it off (window64.h's mm_w64_narrow). */
static inline int
mm_w64_wide(void)
{
    return !atomic_load_explicit(&mm_w64_narrow, memory_order_relaxed) && mm_w64_cpu512();
}

/* Whether the CPU runs the histogram pass. */
static inline int
mm_hist_cpu(void)
{
    return __builtin_cpu_supports("avx2");
}

/* mm_w64_avx2_run with W, kind and (for one window) nw as literals. */
#define MM_W64_RUNS(W, kind)                                                                 \
    do {                                                                                     \
        if (w->n_win == 1)                                                                   \
            mm_w64_avx2_run(p, cnt, W, kind, 1, w, tid, ip);                                 \
        else                                                                                 \
            mm_w64_avx2_run(p, cnt, W, kind, w->n_win, w, tid, ip);                          \
    } while (0)

__attribute__((target("avx2"))) static inline void
mm_w64_avx2(const char *p, npy_intp cnt, int kind, int W, mm_wpass *w, int tid, npy_intp *ip)
{
    if (w->hist)
        mm_w64_avx2_hrun(p, cnt, w, tid, ip);
    else if (W == 64 && kind == 0)
        MM_W64_RUNS(64, 0);
    else if (W == 64 && kind == 1)
        MM_W64_RUNS(64, 1);
    else if (W == 64 && w->fp_ok && w->n_win == 1)
        mm_w64_avx2_frun(p, cnt, 64, 1, w, tid, ip);
    else if (W == 64 && w->fp_ok)
        mm_w64_avx2_frun(p, cnt, 64, w->n_win, w, tid, ip);
    else if (W == 64)
        MM_W64_RUNS(64, 2);
    else if (kind == 0)
        MM_W64_RUNS(32, 0);
    else if (kind == 1)
        MM_W64_RUNS(32, 1);
    else if (w->fp_ok && w->n_win == 1)
        mm_w64_avx2_frun(p, cnt, 32, 1, w, tid, ip);
    else if (w->fp_ok)
        mm_w64_avx2_frun(p, cnt, 32, w->n_win, w, tid, ip);
    else
        MM_W64_RUNS(32, 2);
}

/* The window pass (window64.h) over a contiguous run of 32- or 64-bit values of kind
 * (0 unsigned, 1 signed, 2 float), from *ip on, where the CPU has AVX2. */
static inline void
mm_w64_count_simd(const char *p, npy_intp cnt, int kind, int W, mm_wpass *w, int tid,
                  npy_intp *ip)
{
    if (w->hist && mm_w64_wide())
        mm_w64_avx512_hrun(p, cnt, w, tid, ip);
    else if ((cnt - *ip >= 64 || w->hist) && __builtin_cpu_supports("avx2"))
        mm_w64_avx2(p, cnt, kind, W, w, tid, ip);
}

#else /* not x86-64: the scalar loop does every element */

static inline int
mm_hist_cpu(void)
{
    return 0;
}

static inline int
mm_w64_cpu512(void)
{
    return 0;
}

static inline void
mm_hb_buckets(const uint64_t *bits, int n, double hs, double hc, int *out)
{
    (void)bits, (void)n, (void)hs, (void)hc, (void)out;
}

static inline void
mm_w64_count_simd(const char *p, npy_intp cnt, int kind, int W, mm_wpass *w, int tid,
                  npy_intp *ip)
{
    (void)p, (void)cnt, (void)kind, (void)W, (void)w, (void)tid, (void)ip;
}

#endif

#endif
