/* The one pass of the sampled window of a long 32- or 64-bit lane (window64.c): the
 * windows of keys it counts and gathers, each thread's counters and staging, and the
 * step for one key inside a window.  Included by dtypes.c (the per-dtype scalar loop of
 * kernel_template.h), simd.h (the vector loop) and window64.c. */
#ifndef MM_SELECT_WINDOW64_H
#define MM_SELECT_WINDOW64_H

#include "select.h"

#include <string.h>

#define MM_WMAX 24   /* windows of one pass, at most */
#define MM_WSTAGE 32 /* keys a thread stages per window before a write to its buffer */
#define MM_HB 4096   /* buckets of the histogram pass, and one below and one above them */

/* One thread's share of the pass, on cache lines of its own. */
typedef struct {
    _Alignas(64) uint64_t below[MM_WMAX]; /* keys below window j's lowest key */
    uint64_t inside[MM_WMAX];             /* keys inside window j, flushed */
    uint64_t ones[MM_WMAX], zeros[MM_WMAX]; /* the bits set in any gathered key of window
                                             * j, and those clear in any */
    uint64_t max;                         /* the largest key seen */
    int staged[MM_WMAX];
    uint64_t stage[MM_WMAX][MM_WSTAGE];
} mm_wthread;

/* The windows of one pass (sorted, disjoint) and their buffers. */
struct mm_wpass {
    int n_win;
    uint64_t lo[MM_WMAX], width[MM_WMAX]; /* window j: keys lo[j] .. lo[j] + width[j] */
    uint64_t *buf[MM_WMAX];               /* window j's gathered keys (cap 0: counted only) */
    long long cap[MM_WMAX];
    atomic_llong fill[MM_WMAX];           /* keys offered to buf[j] (more than cap: lost) */
    mm_wthread *th;                       /* per thread */
    /* floats whose windows' ends are ordinary floats (not +-0, not NaN, no window up to
     * the NaN key): the ends as floats' bits, compared as floats (simd.h) */
    int fp_ok;
    uint64_t flo[MM_WMAX], fhi[MM_WMAX];
    /* float64 with many windows (hist): bucket (x * hs - hc) clamped to [0, MM_HB + 1]
     * (monotone), each bucket's increment of the packed counts of the windows' starts
     * at or below it (hbits bits each, bit 63: inside a window) and its window (-1) */
    int hist, hbits;
    double hs, hc;
    uint64_t *htab;
    signed char *hwin;
};

/* Set by the tests (_core._test_avx512): the histogram pass keeps to AVX2. */
extern atomic_int mm_w64_narrow;

/* Moves thread t's staged keys of window j into the window's buffer, as far as it has
 * room (a window that overflows is found after the pass: its counts exceed cap; a
 * window of one key only counts them), and counts them, with the bits they set and
 * clear: per 32 keys, not per key. */
static inline void
mm_wflush(mm_wpass *w, mm_wthread *t, int j)
{
    long long n = t->staged[j];
    uint64_t ones = 0, zeros = 0;
    t->inside[j] += (uint64_t)n;
    for (long long i = 0; i < n; i++) {
        ones |= t->stage[j][i];
        zeros |= ~t->stage[j][i];
    }
    t->ones[j] |= ones;
    t->zeros[j] |= zeros;
    if (w->cap[j] > 0 && n > 0) {
        long long at = atomic_fetch_add_explicit(&w->fill[j], n, memory_order_relaxed);
        long long room = w->cap[j] - at;
        if (n > room)
            n = room > 0 ? room : 0;
        if (n > 0)
            memcpy(w->buf[j] + at, t->stage[j], (size_t)n * sizeof(uint64_t));
    }
    t->staged[j] = 0;
}

/* Key k lies inside window j: staged (t->inside counts it when it is flushed). */
static inline void
mm_wstage(mm_wpass *w, mm_wthread *t, int j, uint64_t k)
{
    t->stage[j][t->staged[j]++] = k;
    if (t->staged[j] == MM_WSTAGE)
        mm_wflush(w, t, j);
}

/* For floats (kind 2): the windows' ends as floats (w->flo, w->fhi), and w->fp_ok where
 * every end is an ordinary float (not +-0, not NaN, no window up to the top key). */
void mm_w64_ends(const mm_type *t, int kind, mm_wpass *w);
/* w->htab and w->hwin, sized for the histogram pass.  0, or -1 with MemoryError set. */
int mm_w64_hist_tables(mm_wpass *w);
/* The float64 histogram pass for w's windows (after mm_w64_ends), where it applies
 * (the tables allocated, enough windows, their buckets apart): its tables filled and
 * w->hist set.  Returns w->hist.  Needs no GIL. */
int mm_w64_hist_plan(const mm_type *t, int kind, mm_wpass *w);
/* The pass over one strided run of thread tid: the vector loop over contiguous values
 * (strided float64 in hist mode through a contiguous copy), the dtype's scalar loop
 * over the rest. */
void mm_w64_run(const mm_type *t, int kind, mm_wpass *w, int tid, const char *p,
                npy_intp cnt, npy_intp st);

#endif
