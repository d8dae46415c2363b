/* The plan of window64.c's pass: one slot a window, the windows' ends as floats for
 * the float compare, and the float64 histogram pass's buckets, their table and slots
 * (runs of a window's buckets).  Needs no GIL; keywin.c plans its passes here too. */
#include "select.h"
#include "keys.h"
#include "simd.h"
#include "window64.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static atomic_llong mm_w64_hists; /* lanes counted by the histogram pass (tests only) */

long long
mm_window64_hist_count(void)
{
    return (long long)atomic_load(&mm_w64_hists);
}

void
mm_w64_slots(mm_wpass *w)
{
    uint64_t top = UINT64_MAX;
    w->n_slot = w->n_win;
    for (int j = 0; j <= w->n_win; j++)
        w->ws0[j] = j;
    for (int j = 0; j < w->n_win; j++) {
        uint64_t hi = w->width[j] > top - w->lo[j] ? top : w->lo[j] + w->width[j];
        w->swin[j] = j;
        w->slo[j] = w->lo[j];
        w->sbits[j] = hi > w->lo[j] ? 64 - __builtin_clzll(hi - w->lo[j]) : 0;
    }
}

/* The float whose key is k, as its bits (W bits), and whether it is an ordinary end for
 * a float compare: not +-0 and not NaN (key 0 lies below every float: -inf). */
static int
float_end(const mm_type *t, uint64_t k, uint64_t *bits)
{
    unsigned char v[8] = {0};
    uint64_t mag;
    int W = t->key_bits;
    t->store((char *)v, k);
    memcpy(bits, v, 8);
    mag = *bits & (W == 64 ? INT64_MAX : INT32_MAX);
    if (k == 0)
        *bits = W == 64 ? 0xFFF0000000000000u : 0xFF800000u;
    return k == 0 || (mag != 0 && mag <= (W == 64 ? 0x7FF0000000000000u : 0x7F800000u));
}

void
mm_w64_ends(const mm_type *t, int kind, mm_wpass *w)
{
    uint64_t top = t->key_bits == 64 ? UINT64_MAX : UINT32_MAX;
    w->fp_ok = kind == 2;
    for (int j = 0; j < w->n_win && w->fp_ok; j++) {
        uint64_t hi = w->width[j] > top - w->lo[j] ? top : w->lo[j] + w->width[j];
        w->fp_ok = hi != top && float_end(t, w->lo[j], &w->flo[j]) &&
                   float_end(t, hi, &w->fhi[j]);
    }
}

/* The key of a float64 a little below (dir -1) or above (dir 1) where bucket b of the
 * histogram pass begins: a value's bucket is a rounded product, so the end is widened
 * by far more than the rounding can move it (bucket 0 begins at key 0: -inf, below). */
static uint64_t
bucket_key(const mm_wpass *w, int b, double dir)
{
    double t = (double)b + w->hc, x = (t + dir * 1e-12 * (fabs(t) + fabs(w->hc) + 1.0)) / w->hs;
    return b == 0 ? 0 : key_f64((const char *)&x);
}

/* The bits of key - lo, for keys from bucket b0 up to bucket b1 (lo: b0's lowest key). */
static int
bucket_bits(const mm_wpass *w, int b0, int b1, uint64_t *lo)
{
    uint64_t hi = bucket_key(w, b1 + 1, 1.0);
    *lo = bucket_key(w, b0, -1.0);
    return hi > *lo ? 64 - __builtin_clzll(hi - *lo) : 0;
}

/* How many slots window j's nb buckets get, for n_threads threads (0: one): one for
 * every 1024 keys of room a thread, so that the chunks left part-filled (one a thread
 * and slot) cost at most a 16th of the room; at most MM_SMAX in all (want: the sum of
 * what the windows would get). */
static int
window_slots(const mm_wpass *w, int j, int nb, int n_threads, long long want)
{
    long long d = n_threads > 0 ? w->cap[j] / (1024 * (long long)n_threads) : 1;
    d = d < 1 ? 1 : d > nb ? nb : d;
    if (want > MM_SMAX - w->n_win) /* scaled down: at most MM_SMAX - n_win, and one each */
        d = d * (MM_SMAX - w->n_win) / want;
    return d < 1 ? 1 : (int)d;
}

/* The slots of the windows' buckets b0[j] .. b1[j] (runs of them, window_slots a
 * window), each slot's keys' span, and the table from bucket to slot. */
static void
hist_slots(mm_wpass *w, const int *b0, const int *b1, int n_threads)
{
    long long want = 0;
    int q = 0;
    for (int j = 0; j < w->n_win; j++)
        want += window_slots(w, j, b1[j] - b0[j] + 1, n_threads, 0);
    for (int b = 0; b < MM_HB + 2; b++)
        w->hslot[b] = -1;
    for (int j = 0; j < w->n_win; j++) {
        const int nb = b1[j] - b0[j] + 1, d = window_slots(w, j, nb, n_threads, want);
        const int step = (nb + d - 1) / d;
        w->ws0[j] = q;
        for (int c = b0[j]; c <= b1[j]; c += step, q++) {
            const int e = c + step - 1 < b1[j] ? c + step - 1 : b1[j];
            w->swin[q] = j;
            w->sbits[q] = bucket_bits(w, c, e, &w->slo[q]);
            for (int b = c; b <= e; b++)
                w->hslot[b] = (int16_t)q;
        }
    }
    w->ws0[w->n_win] = w->n_slot = q;
}

int
mm_w64_hist_plan(const mm_type *t, int kind, mm_wpass *w, int n_threads)
{
    int nw = w->n_win, b0[MM_WMAX], b1[MM_WMAX], ok, from_first;
    double lo = 0.0, hi = 0.0;
    w->hist = 0;
    ok = w->htab != NULL && w->hslot != NULL && kind == 2 && t->key_bits == 64 && w->fp_ok &&
         nw >= MM_W64_HIST;
    /* a first window from the lowest key (rank 0 wanted) takes bucket 0, every value
     * below the buckets' span, which then starts at that window's high end */
    from_first = ok && w->lo[0] == 0;
    if (ok) {
        memcpy(&lo, from_first ? &w->fhi[0] : &w->flo[0], 8);
        memcpy(&hi, &w->fhi[nw - 1], 8);
        w->hs = (double)(MM_HB - 2) / (hi - lo);
        w->hc = floor(lo * w->hs) - 1.0; /* an integer: lo's bucket is at least 1 */
        ok = isfinite(lo) && isfinite(hi) && hi > lo && isfinite(w->hs) && isfinite(w->hc);
    }
    if (ok) {
        mm_hb_buckets(w->flo, nw, w->hs, w->hc, b0);
        mm_hb_buckets(w->fhi, nw, w->hs, w->hc, b1);
        if (from_first)
            b0[0] = 0;
        ok = (from_first || b0[0] >= 1) && b1[nw - 1] <= MM_HB;
        for (int j = 0; j < nw && ok; j++) /* a window of one key is not gathered */
            ok = w->cap[j] > 0 && (j + 1 == nw || b1[j] < b0[j + 1]);
    }
    if (ok) {
        int p = 0;
        hist_slots(w, b0, b1, n_threads);
        memcpy(w->hb0, b0, (size_t)nw * sizeof(int));
        memcpy(w->hb1, b1, (size_t)nw * sizeof(int));
        w->hbits = 63 / nw;
        for (int b = 0; b < MM_HB + 2; b++) {
            while (p < nw && b0[p] <= b)
                p++;
            w->htab[b] = (p < nw ? (uint64_t)1 << (w->hbits * p) : 0) |
                         (w->hslot[b] >= 0 ? (uint64_t)1 << 63 : 0);
        }
        w->hist = 1;
        atomic_fetch_add(&mm_w64_hists, 1);
    }
    return w->hist;
}

int
mm_w64_hist_tables(mm_wpass *w)
{
    int rc = 0;
    w->htab = malloc((MM_HB + 2) * sizeof(uint64_t));
    w->hslot = malloc((MM_HB + 2) * sizeof(int16_t));
    if (w->htab == NULL || w->hslot == NULL) {
        PyErr_NoMemory();
        rc = -1;
    }
    return rc;
}

