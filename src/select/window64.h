/* The one pass of the sampled window of a long 32- or 64-bit lane (window64.c): the
 * windows of keys it counts and gathers, each thread's counters and staging, and the
 * step for one key inside a window.  Included by dtypes.c (the per-dtype scalar loop of
 * kernel_template.h), simd.h (the vector loop) and window64.c. */
#ifndef MM_SELECT_WINDOW64_H
#define MM_SELECT_WINDOW64_H

#include "select.h"

#include <string.h>

#define MM_WMAX 24    /* windows of one pass, at most */
#define MM_WCHUNK 4096 /* slots of a window's buffer a thread takes at a time, at most */
#define MM_WSPILL 64   /* keys with no room (or a counted-only window's) cycle here */
#define MM_HB 4096     /* buckets of the histogram pass, and one below and one above them */

/* One thread's share of the pass, on cache lines of its own.  A thread writes window
 * j's keys straight into a chunk of the window's buffer that it alone holds (from[j] up
 * to end[j]: written up to cur[j], counted up to from[j]); one atomic add takes the
 * next chunk.  Keys that find no room go round spill and set lost. */
typedef struct {
    _Alignas(64) uint64_t below[MM_WMAX]; /* keys below window j's lowest key */
    uint64_t inside[MM_WMAX];             /* keys inside window j, counted */
    uint64_t max;                         /* the largest key seen */
    uint64_t *cur[MM_WMAX], *end[MM_WMAX], *from[MM_WMAX];
    int lost;                             /* a key of a gathered window found no room */
    uint64_t spill[MM_WSPILL];
} mm_wthread;

/* The windows of one pass (sorted, disjoint) and their buffers. */
struct mm_wpass {
    int n_win;
    uint64_t lo[MM_WMAX], width[MM_WMAX]; /* window j: keys lo[j] .. lo[j] + width[j] */
    uint64_t *buf[MM_WMAX];               /* window j's gathered keys (cap 0: counted only) */
    long long cap[MM_WMAX];
    long long chunk[MM_WMAX];             /* slots a thread takes at a time (0: MM_WCHUNK) */
    atomic_llong fill[MM_WMAX];           /* slots of buf[j] taken (more than cap: no room) */
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
    int hb0[MM_WMAX], hb1[MM_WMAX];       /* window j's first and last bucket */
    uint64_t *htab;
    signed char *hwin;
};

/* Set by the tests (_core._test_avx512): the histogram pass keeps to AVX2. */
extern atomic_int mm_w64_narrow;

/* Thread t's keys of window j written since it last counted them: counted. */
static inline void
mm_wcount(mm_wthread *t, int j)
{
    if (t->from[j] != t->cur[j]) {
        t->inside[j] += (uint64_t)(t->cur[j] - t->from[j]);
        t->from[j] = t->cur[j];
    }
}

/* Thread t's chunk of window j is full (or it has none): its keys counted, and the next
 * chunk taken (window64.c). */
void mm_wnext(mm_wpass *w, mm_wthread *t, int j);

/* Key k lies inside window j: written to thread t's chunk of the window's buffer. */
static inline void
mm_wstage(mm_wpass *w, mm_wthread *t, int j, uint64_t k)
{
    if (t->cur[j] == t->end[j])
        mm_wnext(w, t, j);
    *t->cur[j]++ = k;
}

/* After the pass, thread t's keys of window j counted and the unwritten rest of its
 * chunk filled with the window's lowest key (so that the buffer's first min(fill, cap)
 * slots are all keys: the fillers lie below every key of the window).  Returns how many
 * fillers. */
long long mm_wfinish(mm_wpass *w, mm_wthread *t, int j);

/* One thread's pass (w->th[0]) between two drains: the number of keys in window j's
 * buffer, buf[j][0:n] (one thread's chunks follow each other, its last one ends at
 * its cursor), counted; the buffer is then empty for the next keys. */
long long mm_wtake(mm_wpass *w, int j);

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
