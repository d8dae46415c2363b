/* The sampled window of a long 16-bit integer lane.
 *
 * Lanes of at least MM_WIN_MIN_CHUNKS chunks: every MM_WIN_STRIDE-th chunk is
 * histogrammed first, as a sample; if it shows where the wanted ranks lie, the other
 * chunks count only the keys in that window bin by bin (and the others as below or
 * above), which is a few times cheaper than a 65,536-bin histogram of every key. */
#include "select.h"
#include "lanes.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MM_WIN_STRIDE 32
#define MM_WIN_MIN_CHUNKS 64
#define MM_WIN_MAX_FRAC (1.0 / 32) /* a wider window (share of the sample): no window */

/* Lanes that took the windowed first pass: sampled, counted through a window, and
 * missed by it (read by mm_window_test_counts, for the tests only). */
static atomic_llong mm_win_sampled, mm_win_windowed, mm_win_missed;

void
mm_window_test_counts(long long counts[3])
{
    counts[0] = (long long)atomic_load(&mm_win_sampled);
    counts[1] = (long long)atomic_load(&mm_win_windowed);
    counts[2] = (long long)atomic_load(&mm_win_missed);
}

void
mm_window_note(int which)
{
    atomic_fetch_add(which == 0 ? &mm_win_sampled : which == 1 ? &mm_win_windowed : &mm_win_missed,
                     1);
}

int
mm_window_applies(const mm_sel *s, npy_intp n_chunks)
{
    return s->type->key_bits == 16 && s->type->window_xor >= 0 &&
           n_chunks >= MM_WIN_MIN_CHUNKS;
}

/* Counts the keys (stored value ^ kx) of one strided run of 16-bit values: a key in
 * [lo, hi] in its bin of h, the others in wo[0] (below lo) or wo[1] (above hi).  On
 * contiguous runs SIMD compares many values at a time (simd.h). */
void
mm_win_count(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint32_t lo, uint32_t hi,
             uint32_t *h, uint64_t *wo)
{
    uint64_t below = 0, above = 0;
    const uint32_t width = hi - lo;
    npy_intp i = 0;
    mm_win_count_simd(p, cnt, st, kx, lo, hi, h, &below, &above, &i);
    for (; i < cnt; i++) {
        uint16_t v;
        uint32_t k;
        memcpy(&v, p + i * st, 2);
        k = (uint16_t)(v ^ kx);
        below += k < lo;
        above += k > hi;
        if (k - lo <= width)
            h[k]++;
    }
    wo[0] += below;
    wo[1] += above;
}

typedef struct {
    mm_sel *sel;
    int tid;
} mm_count_arg;

static void
run_wcount(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_count_arg *a = arg;
    const mm_sel *s = a->sel;
    mm_win_count(p, cnt, st, (unsigned)s->type->window_xor, s->win_lo, s->win_hi,
                 s->hist32 + (size_t)a->tid * s->hist_bins, s->win_outside + (size_t)a->tid * 8);
}

typedef struct {
    unsigned key_xor;
    uint64_t sum;
} mm_keysum_arg;

static void
run_keysum(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_keysum_arg *a = arg;
    uint64_t sum = 0;
    npy_intp i = 0;
    mm_keysum_simd(p, cnt, st, a->key_xor, &sum, &i);
    for (; i < cnt; i++) {
        uint16_t v;
        memcpy(&v, p + i * st, 2);
        sum += (uint16_t)(v ^ a->key_xor);
    }
    a->sum += sum;
}

/* A sampled chunk of a windowed lane: its full histogram, and its mean key. */
static void
task_wsample(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp c = t * MM_WIN_STRIDE, i0, i1;
    mm_keysum_arg a = {(unsigned)s->type->window_xor, 0};
    mm_chunk_bounds(s, c, &i0, &i1);
    mm_hist0_chunk(s, tid, c);
    mm_for_runs(s, s->lane, i0, i1, run_keysum, &a);
    s->win_mean[t] = (double)a.sum / (double)(i1 - i0);
}

/* Task t of the chunks that were not sampled: the window count, or (win_full) the full
 * histogram. */
static void
task_wrest(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp c = t / (MM_WIN_STRIDE - 1) * MM_WIN_STRIDE + 1 + t % (MM_WIN_STRIDE - 1), i0, i1;
    mm_count_arg a = {s, tid};
    if (s->win_full)
        mm_hist0_chunk(s, tid, c);
    else {
        mm_chunk_bounds(s, c, &i0, &i1);
        mm_hist32_reserve(s, tid, i1 - i0);
        mm_for_runs(s, s->lane, i0, i1, run_wcount, &a);
    }
}

/* Whether the sampled chunks' mean keys differ no more than those of a shuffled lane
 * would: mean and var are the sample's. */
static int
win_means_agree(const mm_sel *s, double mean, double var)
{
    int agree = 1;
    for (npy_intp t = 0; t < s->win_sampled && agree; t++) {
        npy_intp i0, i1;
        double d = s->win_mean[t] - mean;
        mm_chunk_bounds(s, t * MM_WIN_STRIDE, &i0, &i1);
        if (d * d > 36.0 * var / (double)(i1 - i0) + 1e-9)
            agree = 0;
    }
    return agree;
}

/* Chooses the window of a 16-bit lane from its sample: hist holds the ns keys of the
 * sampled chunks, s->win_mean their chunks' mean keys.  The window runs from the
 * sample's quantile a little below the lowest wanted rank to the one a little above the
 * highest (8 standard errors of a sample quantile, and 1/8192 more).  Returns 1 with the
 * window in s->win_lo, s->win_hi, or 0 where a window would not pay: it would hold more
 * than MM_WIN_MAX_FRAC of the sample, or the chunks' means differ more than those of a
 * shuffled lane would (sorted or drifting data, whose sample says little about the
 * chunks between). */
static int
win_choose(mm_sel *s, const uint64_t *hist, npy_intp ns)
{
    double mean = 0.0, var = 0.0, nsd = (double)ns, delta, rlo, rhi;
    npy_intp slo, shi, cum = 0, inside = 0;
    int ok = 0, b, klo = -1, khi = -1;
    for (b = 0; b < 65536; b++)
        mean += (double)b * (double)hist[b];
    mean /= nsd;
    for (b = 0; b < 65536; b++)
        var += (double)hist[b] * ((double)b - mean) * ((double)b - mean);
    var /= nsd;
    if (!win_means_agree(s, mean, var))
        goto done;
    delta = 4.0 / sqrt(nsd) + 1.0 / 8192;
    rlo = ((double)s->ranks[0] + 0.5) / (double)s->lane_len - delta;
    rhi = ((double)s->ranks[s->n_ranks - 1] + 0.5) / (double)s->lane_len + delta;
    slo = rlo <= 0.0 ? 0 : (npy_intp)(rlo * nsd);
    shi = rhi >= 1.0 ? ns - 1 : (npy_intp)(rhi * nsd);
    if (slo > ns - 1)
        slo = ns - 1;
    if (shi > ns - 1)
        shi = ns - 1;
    for (b = 0; b < 65536 && khi < 0; b++) { /* the keys of sample ranks slo and shi */
        cum += (npy_intp)hist[b];
        if (klo < 0 && cum > slo)
            klo = b;
        if (cum > shi)
            khi = b;
    }
    if (klo < 0 || khi < 0)
        goto done;
    for (b = klo; b <= khi; b++)
        inside += (npy_intp)hist[b];
    if ((double)inside > MM_WIN_MAX_FRAC * nsd)
        goto done;
    s->win_lo = (uint32_t)klo;
    s->win_hi = (uint32_t)khi;
    ok = 1;
done:
    return ok;
}

/* The sample, the window it gives (or none) and the other chunks through it: the first
 * digits' counts in total.  Returns 1 (windowed), 0 (not) or -1 (an exception). */
static int
win_count_lane(mm_sel *s, npy_intp ntasks, uint64_t *total, double pb, double ps)
{
    int win = -1;
    npy_intp ns = 0;
    for (npy_intp t = 0; t < s->win_sampled; t++) {
        npy_intp i0, i1;
        mm_chunk_bounds(s, t * MM_WIN_STRIDE, &i0, &i1);
        ns += i1 - i0;
    }
    mm_hist0_reset(s);
    atomic_fetch_add(&mm_win_sampled, 1);
    if (mm_run_job(s, task_wsample, s->win_sampled, ns, pb, ps * 0.1) < 0)
        goto done;
    mm_merge_hist0(s, total);
    s->win_full = !win_choose(s, total, ns);
    if (!s->win_full)
        atomic_fetch_add(&mm_win_windowed, 1);
    if (mm_run_job(s, task_wrest, ntasks - s->win_sampled, s->lane_len - ns, pb + ps * 0.1,
                   ps * 0.9) < 0)
        goto done;
    mm_merge_hist0(s, total);
    if (!s->win_full) { /* the keys outside the window, lumped at the ends: sums stay exact */
        for (int t = 0; t < s->n_threads; t++) {
            total[0] += s->win_outside[(size_t)t * 8];
            total[65535] += s->win_outside[(size_t)t * 8 + 1];
        }
    }
    win = !s->win_full;
done:
    return win;
}

/* Fills total and outk like the plain first pass.  A wanted rank the window missed (the
 * sample misled) costs one more pass, the plain one.  progress runs from pb over ps. */
int
mm_first_digit_window(mm_sel *s, npy_intp ntasks, uint64_t *total, uint64_t *outk,
                      mm_target *root, mm_target *pend, npy_intp *npend, double pb, double ps)
{
    int rc = -1, win;
    s->win_sampled = (ntasks + MM_WIN_STRIDE - 1) / MM_WIN_STRIDE;
    s->win_mean = malloc((size_t)s->win_sampled * sizeof(double));
    s->win_outside = calloc((size_t)s->n_threads * 8u, sizeof(uint64_t));
    if (s->win_mean == NULL || s->win_outside == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    win = win_count_lane(s, ntasks, total, pb, ps);
    if (win < 0 || mm_split_target(s, root, total, 65536, 1, outk, pend, npend) < 0)
        goto done;
    for (npy_intp i = 0; win && i < s->n_ranks; i++) {
        if (outk[i] < s->win_lo || outk[i] > s->win_hi) { /* missed: the plain pass */
            atomic_fetch_add(&mm_win_missed, 1);
            mm_hist0_reset(s);
            if (mm_run_job(s, mm_task_hist0, ntasks, s->lane_len, pb + ps, 0.0) < 0)
                goto done;
            mm_merge_hist0(s, total);
            if (mm_split_target(s, root, total, 65536, 1, outk, pend, npend) < 0)
                goto done;
            break;
        }
    }
    rc = 0;
done:
    free(s->win_mean);
    free(s->win_outside);
    s->win_mean = NULL;
    s->win_outside = NULL;
    return rc;
}
