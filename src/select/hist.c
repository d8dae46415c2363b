/* The first-digit histogram of a long lane: per-thread 32-bit counters over fixed
 * chunks, flushed into 64-bit ones before they could overflow, summed after the join. */
#include "select.h"
#include "lanes.h"

#include <string.h>

typedef struct {
    mm_sel *sel;
    int tid;
} mm_hist_arg;

static void
run_hist0(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_hist_arg *a = arg;
    a->sel->type->hist0(p, cnt, st, a->sel->hist32 + (size_t)a->tid * a->sel->hist_bins);
}

/* Moves thread tid's 32-bit counters to the 64-bit ones before cnt more could overflow. */
void
mm_hist32_reserve(mm_sel *s, int tid, npy_intp cnt)
{
    if (s->since_flush[tid] > (npy_intp)UINT32_MAX - cnt) {
        uint32_t *h = s->hist32 + (size_t)tid * s->hist_bins;
        uint64_t *g = s->hist64 + (size_t)tid * s->hist_bins;
        for (int b = 0; b < s->hist_bins; b++) {
            g[b] += h[b];
            h[b] = 0;
        }
        s->since_flush[tid] = 0;
    }
    s->since_flush[tid] += cnt;
}

void
mm_hist0_chunk(mm_sel *s, int tid, npy_intp c)
{
    npy_intp i0, i1;
    mm_hist_arg a = {s, tid};
    mm_chunk_bounds(s, c, &i0, &i1);
    mm_hist32_reserve(s, tid, i1 - i0);
    mm_for_runs(s, s->lane, i0, i1, run_hist0, &a);
}

void
mm_task_hist0(mm_job *job, int tid, npy_intp t)
{
    mm_hist0_chunk(job->sel, tid, t);
}

void
mm_merge_hist0(const mm_sel *s, uint64_t *total)
{
    const mm_type *ty = s->type;
    int W = ty->key_bits, nbins = W == 8 ? 256 : 65536;
    memset(total, 0, (size_t)nbins * sizeof(uint64_t));
    for (int b = 0; b < nbins; b++) { /* 32/64 bits: bins of stored top bits to key digits */
        uint64_t c = 0;
        for (int t = 0; t < s->n_threads; t++)
            for (int j = b; j < s->hist_bins; j += nbins)
                c += s->hist64[(size_t)t * s->hist_bins + j] +
                     s->hist32[(size_t)t * s->hist_bins + j];
        total[W > 16 ? ty->keytop((uint32_t)b, 0) : (uint32_t)b] += c;
    }
}

void
mm_hist0_reset(mm_sel *s)
{
    memset(s->hist32, 0, (size_t)s->n_threads * (size_t)s->hist_bins * sizeof(uint32_t));
    memset(s->hist64, 0, (size_t)s->n_threads * (size_t)s->hist_bins * sizeof(uint64_t));
    memset(s->since_flush, 0, (size_t)s->n_threads * sizeof(npy_intp));
}
