/* The one pass of the sampled window of a long 32- or 64-bit lane (window64.c): the
 * windows of keys it counts and gathers, each thread's counters and staging, and the
 * step for one key inside a window.  Included by dtypes.c (the per-dtype scalar loop of
 * kernel_template.h), simd.h (the vector loop), window64.c, winplan.c (its plan) and
 * keywin.c. */
#ifndef MM_SELECT_WINDOW64_H
#define MM_SELECT_WINDOW64_H

#include "select.h"

#include <string.h>

#define MM_WMAX 24     /* windows of one pass, at most */
#define MM_SMAX 128    /* slots of one pass, at most: a window, or a run of its buckets */
#define MM_WCHUNK 4096 /* keys of a buffer a thread takes at a time, at most */
#define MM_WSPILL 64   /* keys with no room (or a counted-only window's) cycle here */
#define MM_HB 4096     /* buckets of the histogram pass, and one below and one above them */
#define MM_W64_HIST 3  /* float64 windows from which the histogram pass pays */

/* One thread's share of the pass, on cache lines of its own.  A window's keys go to
 * its slots: the window itself, or in the histogram pass (window64.c) each run of a
 * few of its buckets.  A thread writes slot s's keys straight into a chunk of the
 * window's buffer that it alone holds (from[s] up to end[s]: written up to cur[s],
 * counted up to from[s]); one atomic add takes the next chunk, tagged with its slot.
 * Keys that find no room go round spill and set lost. */
typedef struct {
    _Alignas(64) uint64_t below[MM_WMAX]; /* keys below window j's lowest key */
    uint64_t inside[MM_SMAX];             /* keys of slot s, counted */
    uint64_t max;                         /* the largest key seen */
    uint64_t *cur[MM_SMAX], *end[MM_SMAX], *from[MM_SMAX];
    int lost;                             /* a key of a gathered window found no room */
    uint64_t spill[MM_WSPILL];
} mm_wthread;

/* The windows of one pass (sorted, disjoint), their buffers and slots. */
struct mm_wpass {
    int n_win;
    uint64_t lo[MM_WMAX], width[MM_WMAX]; /* window j: keys lo[j] .. lo[j] + width[j] */
    uint64_t *buf[MM_WMAX];               /* window j's gathered keys (cap 0: counted only) */
    long long cap[MM_WMAX];               /* a multiple of chunk[j] */
    long long chunk[MM_WMAX];             /* keys a thread takes at a time (0: MM_WCHUNK) */
    atomic_llong fill[MM_WMAX];           /* keys of buf[j] taken (more than cap: no room) */
    int16_t *tag[MM_WMAX];                /* chunk c of buf[j]: its slot (NULL: not kept) */
    int ws0[MM_WMAX + 1];                 /* window j's slots: ws0[j] .. ws0[j + 1] - 1 */
    int n_slot;
    int swin[MM_SMAX];                    /* slot s's window */
    /* its keys lie in [slo, slo + 2**sbits) (its buckets' keys, for the histogram pass: a
     * little outside the window's lo and width) */
    uint64_t slo[MM_SMAX];
    int sbits[MM_SMAX];
    mm_wthread *th;                       /* per thread */
    /* floats whose windows' ends are ordinary floats (not +-0, not NaN, no window up to
     * the NaN key): the ends as floats' bits, compared as floats (simd.h) */
    int fp_ok;
    uint64_t flo[MM_WMAX], fhi[MM_WMAX];
    /* float64 with many windows (hist): bucket (x * hs - hc) clamped to [0, MM_HB + 1]
     * (monotone), each bucket's increment of the packed counts of the windows' starts
     * at or below it (hbits bits each, bit 63: inside a window) and its slot (-1);
     * window j's buckets hb0[j] .. hb1[j] */
    int hist, hbits;
    int hb0[MM_WMAX], hb1[MM_WMAX];
    double hs, hc;
    uint64_t *htab;
    int16_t *hslot;
};

/* Set by the tests (_core._test_avx512): the histogram pass keeps to AVX2. */
extern atomic_int mm_w64_narrow;

/* Thread t's keys of slot s written since it last counted them: counted. */
static inline void
mm_wcount(mm_wthread *t, int s)
{
    if (t->from[s] != t->cur[s]) {
        t->inside[s] += (uint64_t)(t->cur[s] - t->from[s]);
        t->from[s] = t->cur[s];
    }
}

/* Thread t's chunk of slot s is full (or it has none): its keys counted, and the next
 * chunk taken (window64.c). */
void mm_wnext(mm_wpass *w, mm_wthread *t, int s);

/* Key k belongs to slot s: written to thread t's chunk of it. */
static inline void
mm_wstage(mm_wpass *w, mm_wthread *t, int s, uint64_t k)
{
    if (t->cur[s] == t->end[s])
        mm_wnext(w, t, s);
    *t->cur[s]++ = k;
}

/* After the pass, thread t's keys of slot s counted and the unwritten rest of its
 * chunk filled with the key filler (at most every key of the slot: so that a buffer's
 * first min(fill, cap) keys are all keys, and a slot's fillers lie below its keys).
 * Returns how many fillers. */
long long mm_wfinish(mm_wthread *t, int s, uint64_t filler);

/* One thread's pass (w->th[0]) with one slot a window, between two drains: the number
 * of keys in window j's buffer, buf[j][0:n] (one thread's chunks follow each other, its
 * last one ends at its cursor), counted; the buffer is then empty for the next keys. */
long long mm_wtake(mm_wpass *w, int j);

/* One slot a window (the window's keys): after the windows are set, before
 * mm_w64_hist_plan. */
void mm_w64_slots(mm_wpass *w);

/* For floats (kind 2): the windows' ends as floats (w->flo, w->fhi), and w->fp_ok where
 * every end is an ordinary float (not +-0, not NaN, no window up to the top key). */
void mm_w64_ends(const mm_type *t, int kind, mm_wpass *w);
/* w->htab and w->hslot, sized for the histogram pass.  0, or -1 with MemoryError set. */
int mm_w64_hist_tables(mm_wpass *w);
/* The float64 histogram pass for w's windows (after mm_w64_ends and mm_w64_slots),
 * where it applies (the tables allocated, enough windows, their buckets apart): its
 * tables filled and w->hist set; for n_threads threads (0: a slot a window), every
 * window's buckets in runs, a slot each.  Returns w->hist.  Needs no GIL. */
int mm_w64_hist_plan(const mm_type *t, int kind, mm_wpass *w, int n_threads);
/* The pass over one strided run of thread tid: the vector loop over contiguous values
 * (strided float64 in hist mode through a contiguous copy), the dtype's scalar loop
 * over the rest. */
void mm_w64_run(const mm_type *t, int kind, mm_wpass *w, int tid, const char *p,
                npy_intp cnt, npy_intp st);

#endif
