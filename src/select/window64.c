/* The sampled window of a long 32- or 64-bit lane: one pass where the radix passes
 * take two or three.
 *
 * Blocks of MM_W64_BLOCK values at the start of up to MM_W64_BLOCKS chunks spread over
 * the lane are loaded first, as a sample.  The sample's quantiles a little below and
 * above each wanted rank (8 standard errors of a sample quantile each way, and 1/8192
 * more) give a window of keys; windows that overlap are merged.  One pass over the whole
 * lane then counts, per window, the keys below it and inside it, gathers the keys inside
 * into the window's bounded buffer and keeps the largest key (the last rank, which
 * floats always want for numpy's NaN check).  The counts are exact, so the result is
 * checked: a rank outside every window, or a window with more keys than its buffer
 * holds (the sample misled), sends the lane to the radix passes.  The gathered keys are
 * selected in memory, the windows in parallel.  The histogram pass of many float64
 * windows files each window's keys by runs of its buckets (slots): the chunks of the
 * window's buffer that a thread takes are tagged with their slot, and each rank is then
 * selected among the keys of the one slot that holds it (a small part of the window's). */
#include "select.h"
#include "lanes.h"
#include "simd.h"
#include "window64.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MM_W64_MIN_CHUNKS 16              /* full chunks a lane needs for a window */
#define MM_W64_BLOCKS 32                  /* sampled blocks, at most */
#define MM_W64_BLOCK ((npy_intp)1 << 16)  /* values per sampled block */
#define MM_W64_EVERY 8                    /* the blocks' means: every 8th of their keys */
#define MM_W64_MEANT 8192 /* keys in a block's mean: MM_W64_BLOCK / MM_W64_EVERY */
#define MM_W64_MAX_FRAC (1.0 / 8)         /* windows expected to hold more: no window */
#define MM_W64_GATHER ((npy_intp)1 << 24) /* keys the buffers hold in all (128 MiB) */
#define MM_W64_STRIDED 512                /* strided values copied at a time for hist */

atomic_int mm_w64_narrow;
static atomic_llong mm_w64_slot_selects; /* ranks selected in a slot of several (tests) */

long long
mm_window64_slot_count(void)
{
    return (long long)atomic_load(&mm_w64_slot_selects);
}

int
mm_window64_test_avx512(int on, int *cpu)
{
    int was = !atomic_exchange(&mm_w64_narrow, !on);
    *cpu = mm_w64_cpu512();
    return was;
}

struct mm_w64 {
    npy_intp step;           /* chunks from one sampled block to the next */
    npy_intp n_blocks, ns;   /* sampled blocks, sampled keys */
    uint64_t *sample;        /* the sampled keys */
    double *bmean, *bm2;     /* per block: its mean key, its squared deviations summed */
    int kind;                /* 0 unsigned, 1 signed, 2 float (simd.h's key transform) */
    npy_intp n_wranks;       /* ranks [0, n_wranks) go by the windows; the rest are the last */
    npy_intp wr0[MM_WMAX], wr1[MM_WMAX]; /* window j's ranks */
    uint64_t below[MM_WMAX], inside[MM_WMAX], max;
    uint64_t skeys[MM_SMAX];  /* keys of slot s */
    long long fillers[MM_SMAX]; /* fillers in slot s's chunks (window64.h's mm_wfinish) */
    int16_t *tags;            /* the chunks' tags of every window */
    atomic_int astray;        /* a slot's chunks did not hold its keys (cannot be) */
    uint64_t *arena;
    uint64_t *outk;
    mm_wpass w;
};

int
mm_window64_applies(const mm_sel *s, npy_intp n_chunks)
{
    return s->type->key_bits >= 32 && n_chunks >= MM_W64_MIN_CHUNKS &&
           s->lane_len / MM_CHUNK >= MM_W64_MIN_CHUNKS;
}

typedef struct {
    const mm_type *type;
    uint64_t *cursor;
} mm_w64_load;

static void
run_load(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_w64_load *a = arg;
    a->type->load(p, cnt, st, a->cursor);
    a->cursor += cnt;
}

/* Sampled block b: its keys, and the mean and squared deviations of every
 * MM_W64_EVERY-th (u64 to double is slow, and the test needs no more). */
static void
task_sample(mm_job *job, int tid, npy_intp b)
{
    mm_sel *s = job->sel;
    struct mm_w64 *g = s->win64;
    npy_intp i0 = b * g->step * MM_CHUNK;
    uint64_t *keys = g->sample + b * MM_W64_BLOCK;
    mm_w64_load a = {s->type, keys};
    double sum = 0.0, m2 = 0.0, mean;
    (void)tid;
    mm_for_runs(s, s->lane, i0, i0 + MM_W64_BLOCK, run_load, &a);
    for (npy_intp i = 0; i < MM_W64_BLOCK; i += MM_W64_EVERY)
        sum += (double)keys[i];
    mean = sum / (double)MM_W64_MEANT;
    for (npy_intp i = 0; i < MM_W64_BLOCK; i += MM_W64_EVERY)
        m2 += ((double)keys[i] - mean) * ((double)keys[i] - mean);
    g->bmean[b] = mean;
    g->bm2[b] = m2;
}

/* Whether the blocks' mean keys differ no more than those of a shuffled lane would
 * (6 standard errors): sorted or drifting data fail, and their sample says little about
 * the chunks between. */
static int
sample_stationary(const struct mm_w64 *g)
{
    double mean = 0.0, var = 0.0, nb = (double)MM_W64_MEANT;
    int agree = 1;
    for (npy_intp b = 0; b < g->n_blocks; b++)
        mean += g->bmean[b];
    mean /= (double)g->n_blocks;
    for (npy_intp b = 0; b < g->n_blocks; b++)
        var += g->bm2[b] + nb * (g->bmean[b] - mean) * (g->bmean[b] - mean);
    var /= nb * (double)g->n_blocks;
    for (npy_intp b = 0; b < g->n_blocks && agree; b++) {
        double d = g->bmean[b] - mean, eps = mean * 1e-12;
        if (d * d > 36.0 * var / nb + eps * eps)
            agree = 0;
    }
    return agree;
}

static int
cmp_i64(const void *a, const void *b)
{
    npy_int64 x = *(const npy_int64 *)a, y = *(const npy_int64 *)b;
    return (x > y) - (x < y);
}

/* The sample ranks a little below and above rank i's quantile: lo[i], hi[i] (-1: the
 * window reaches the lane's first or last key).  A sample quantile's standard error is
 * sqrt(p (1 - p) / ns) for independent keys; the window reaches 8 of them each way (and
 * 1/8192 more), as far out for every rank (the median's half-width, 4 / sqrt(ns), was
 * every rank's: 13 errors of the 10% quantile's, whose window was 1.7 times as wide). */
static void
sample_span(const mm_sel *s, const struct mm_w64 *g, npy_intp i, npy_int64 *lo, npy_int64 *hi)
{
    double ns = (double)g->ns, p = ((double)s->ranks[i] + 0.5) / (double)s->lane_len;
    double delta = 8.0 * sqrt(p * (1.0 - p) / ns) + 1.0 / 8192;
    *lo = p - delta <= 0.0 ? -1 : (npy_int64)((p - delta) * ns);
    *hi = p + delta >= 1.0 ? -1 : (npy_int64)((p + delta) * ns);
    if (*lo > (npy_int64)g->ns - 1)
        *lo = (npy_int64)g->ns - 1;
    if (*hi > (npy_int64)g->ns - 1)
        *hi = (npy_int64)g->ns - 1;
}

/* The keys of the sample ranks (sorted, unique: srk[0:m]) into skeys. */
static void
sample_keys(const mm_sel *s, struct mm_w64 *g, const npy_int64 *srk, npy_intp m,
            uint64_t *skeys)
{
    if (mm_bucket_select(g->sample, g->ns, 0, s->type->key_bits, srk, 0, 0, m, skeys) < 0)
        mm_multiselect(g->sample, 0, g->ns, srk, 0, 0, m, skeys);
}

static uint64_t
key_at(const npy_int64 *srk, npy_intp m, const uint64_t *skeys, npy_int64 r)
{
    const npy_int64 *f = bsearch(&r, srk, (size_t)m, sizeof(npy_int64), cmp_i64);
    return skeys[f - srk];
}

/* Window j from sample ranks [a, b] (the keys klo, khi): its buffer's room, from the
 * keys the sample says it holds (a window of one key only counts). */
static void
window_set(const mm_sel *s, struct mm_w64 *g, int j, uint64_t klo, uint64_t khi, npy_int64 a,
           npy_int64 b, npy_intp *expect)
{
    double share = (double)(b - a + 1) / (double)g->ns;
    npy_intp e = (npy_intp)(share * (double)s->lane_len);
    g->w.lo[j] = klo;
    g->w.width[j] = khi - klo;
    g->w.cap[j] = klo == khi ? 0 : e + e / 4 + 4096;
    *expect += klo == khi ? 0 : e;
}

/* The windows of ranks [0, n_wranks) from the sample ranks span[2i], span[2i+1] and the
 * keys there; overlapping windows merged.  Returns 1, or 0 where a window would not pay
 * (too many windows, or too many keys inside them). */
static int
windows_merge(const mm_sel *s, struct mm_w64 *g, const npy_int64 *span, const npy_int64 *srk,
              npy_intp m, const uint64_t *skeys)
{
    npy_intp expect = 0, room = 0;
    npy_int64 a = 0, b = 0;
    uint64_t klo = 0, khi = 0;
    int nw = 0, ok = 1;
    for (npy_intp i = 0; i < g->n_wranks && ok; i++) {
        npy_int64 lo = span[2 * i], hi = span[2 * i + 1];
        uint64_t k0 = lo < 0 ? 0 : key_at(srk, m, skeys, lo);
        uint64_t k1 = hi < 0 ? UINT64_MAX : key_at(srk, m, skeys, hi);
        if (nw > 0 && k0 <= khi) { /* overlaps the window before */
            khi = k1 > khi ? k1 : khi;
            b = hi < 0 ? (npy_int64)g->ns - 1 : hi;
            continue;
        }
        if (nw > 0)
            window_set(s, g, nw - 1, klo, khi, a, b, &expect);
        if (nw == MM_WMAX)
            ok = 0;
        nw++;
        klo = k0;
        khi = k1;
        a = lo < 0 ? 0 : lo;
        b = hi < 0 ? (npy_int64)g->ns - 1 : hi;
    }
    if (ok && nw > 0)
        window_set(s, g, nw - 1, klo, khi, a, b, &expect);
    g->w.n_win = ok ? nw : 0;
    for (int j = 0; j < g->w.n_win; j++)
        room += (npy_intp)g->w.cap[j];
    if ((double)expect > MM_W64_MAX_FRAC * (double)s->lane_len || room > MM_W64_GATHER)
        ok = 0;
    return ok;
}

/* The windows from the sample (after it was loaded).  Returns 1 (windows chosen), 0 (no
 * window pays) or -1 (MemoryError). */
static int
windows_choose(const mm_sel *s, struct mm_w64 *g)
{
    npy_intp n = g->n_wranks, m = 0;
    npy_int64 *span = malloc((size_t)(2 * n + 1) * sizeof(npy_int64));
    npy_int64 *srk = malloc((size_t)(2 * n + 1) * sizeof(npy_int64));
    uint64_t *skeys = malloc((size_t)(2 * n + 1) * sizeof(uint64_t));
    int rc = -1;
    if (span == NULL || srk == NULL || skeys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    rc = 0;
    if (!sample_stationary(g))
        goto done;
    for (npy_intp i = 0; i < n; i++) {
        sample_span(s, g, i, &span[2 * i], &span[2 * i + 1]);
        for (int e = 0; e < 2; e++)
            if (span[2 * i + e] >= 0)
                srk[m++] = span[2 * i + e];
    }
    qsort(srk, (size_t)m, sizeof(npy_int64), cmp_i64);
    if (m > 0) { /* unique */
        npy_intp u = 1;
        for (npy_intp i = 1; i < m; i++)
            if (srk[i] != srk[u - 1])
                srk[u++] = srk[i];
        m = u;
    }
    sample_keys(s, g, srk, m, skeys);
    rc = windows_merge(s, g, span, srk, m, skeys);
done:
    free(span);
    free(srk);
    free(skeys);
    return rc;
}

void
mm_wnext(mm_wpass *w, mm_wthread *t, int s)
{
    const int j = w->swin[s];
    const long long want = w->chunk[j] > 0 ? w->chunk[j] : MM_WCHUNK;
    long long at = 0, n = 0;
    mm_wcount(t, s);
    if (w->cap[j] > 0) {
        at = atomic_fetch_add_explicit(&w->fill[j], want, memory_order_relaxed);
        n = at >= w->cap[j] ? 0 : (w->cap[j] - at < want ? w->cap[j] - at : want);
    }
    if (n > 0) {
        t->cur[s] = t->from[s] = w->buf[j] + at;
        t->end[s] = t->cur[s] + n;
        if (w->tag[j] != NULL)
            w->tag[j][at / want] = (int16_t)s;
    }
    else { /* no room (or a window that only counts): round the spill */
        t->lost |= w->cap[j] > 0;
        t->cur[s] = t->from[s] = t->spill;
        t->end[s] = t->spill + MM_WSPILL;
    }
}

long long
mm_wfinish(mm_wthread *t, int s, uint64_t filler)
{
    long long n = 0;
    mm_wcount(t, s);
    if (t->cur[s] != NULL && t->end[s] != t->spill + MM_WSPILL) { /* a chunk of the buffer */
        n = (long long)(t->end[s] - t->cur[s]);
        for (uint64_t *p = t->cur[s]; p != t->end[s]; p++)
            *p = filler;
    }
    t->cur[s] = t->from[s] = t->end[s] = NULL;
    return n;
}

long long
mm_wtake(mm_wpass *w, int j)
{
    mm_wthread *t = w->th;
    long long n = 0;
    mm_wcount(t, j);
    if (t->cur[j] != NULL && t->end[j] != t->spill + MM_WSPILL)
        n = (long long)(t->cur[j] - w->buf[j]);
    t->cur[j] = t->from[j] = t->end[j] = NULL;
    atomic_store(&w->fill[j], 0);
    return n;
}

typedef struct {
    mm_sel *sel;
    int tid;
} mm_w64_arg;

void
mm_w64_run(const mm_type *t, int kind, mm_wpass *w, int tid, const char *p, npy_intp cnt,
           npy_intp st)
{
    npy_intp i = 0;
    if (st == t->itemsize)
        mm_w64_count_simd(p, cnt, kind, t->key_bits, w, tid, &i);
    while (w->hist && i < cnt) { /* strided: through a contiguous copy */
        uint64_t buf[MM_W64_STRIDED];
        npy_intp m = cnt - i < MM_W64_STRIDED ? cnt - i : MM_W64_STRIDED, at = 0;
        for (npy_intp e = 0; e < m; e++)
            memcpy(&buf[e], p + (i + e) * st, 8);
        mm_w64_count_simd((const char *)buf, m, 2, 64, w, tid, &at);
        i += m;
    }
    if (i < cnt)
        t->wcount(p + i * st, cnt - i, st, w, tid);
}

static void
run_pass(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_w64_arg *a = arg;
    struct mm_w64 *g = a->sel->win64;
    mm_w64_run(a->sel->type, g->kind, &g->w, a->tid, p, cnt, st);
}

/* Chunk t of the pass. */
static void
task_pass(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp i0, i1;
    mm_w64_arg a = {s, tid};
    mm_chunk_bounds(s, t, &i0, &i1);
    mm_for_runs(s, s->lane, i0, i1, run_pass, &a);
}

/* After the pass: every thread's keys counted (the rest of its chunks filled with its
 * slot's lowest key), the counts summed, and each wanted rank placed in the window
 * that holds it.
 * Returns 1 (every rank in a window whose keys were all gathered) or 0 (the sample
 * misled). */
static int
pass_check(const mm_sel *s, struct mm_w64 *g)
{
    mm_wpass *w = &g->w;
    npy_intp i = 0;
    int ok = 1;
    g->max = 0;
    memset(g->below, 0, sizeof(g->below));
    memset(g->inside, 0, sizeof(g->inside));
    memset(g->skeys, 0, sizeof(g->skeys));
    memset(g->fillers, 0, sizeof(g->fillers));
    for (int t = 0; t < s->n_threads; t++) {
        mm_wthread *th = &w->th[t];
        g->max = th->max > g->max ? th->max : g->max;
        ok = ok && !th->lost;
        for (int j = 0; j < w->n_win; j++)
            g->below[j] += th->below[j];
        for (int q = 0; q < w->n_slot; q++) {
            g->fillers[q] += mm_wfinish(th, q, w->slo[q]);
            g->skeys[q] += th->inside[q];
        }
    }
    for (int q = 0; q < w->n_slot; q++)
        g->inside[w->swin[q]] += g->skeys[q];
    for (int j = 0; j < w->n_win && ok; j++) {
        if (i < g->n_wranks && (uint64_t)s->ranks[i] < g->below[j])
            ok = 0; /* below this window and above the one before */
        g->wr0[j] = i;
        while (i < g->n_wranks && (uint64_t)s->ranks[i] < g->below[j] + g->inside[j])
            i++;
        g->wr1[j] = i;
    }
    return ok && i == g->n_wranks;
}

/* Window j's chunks of slot q moved to its chunks at, at + 1, ... (swapped with those
 * there, tags too), among its n chunks of c keys.  Returns how many. */
static npy_intp
chunks_front(const mm_wpass *w, int j, int q, npy_intp at, npy_intp n, npy_intp c)
{
    int16_t *tag = w->tag[j];
    npy_intp k = at;
    for (npy_intp i = at; i < n; i++) {
        if (tag[i] != q)
            continue;
        if (i != k) {
            uint64_t *x = w->buf[j] + i * c, *y = w->buf[j] + k * c;
            for (npy_intp e = 0; e < c; e++) {
                uint64_t v = x[e];
                x[e] = y[e];
                y[e] = v;
            }
            tag[i] = tag[k];
            tag[k] = (int16_t)q;
        }
        k++;
    }
    return k - at;
}

/* The ranks [r0, r1) of window j among the keys of slot q (cum keys of the window's
 * slots before it), which first go together, after the slots selected before (at
 * chunks): its keys and fillers (its lowest key's, as many more below).  Returns the
 * chunks it took.  Chunks that do not hold the slot's count set astray (the lane then
 * takes the radix passes). */
static npy_intp
slot_select(struct mm_w64 *g, const npy_int64 *ranks, int q, npy_intp cum, npy_intp r0,
            npy_intp r1, npy_intp at)
{
    mm_wpass *w = &g->w;
    const int j = w->swin[q];
    const npy_intp c = (npy_intp)w->chunk[j];
    const long long f = atomic_load(&w->fill[j]);
    npy_intp k = chunks_front(w, j, q, at, (npy_intp)((f < w->cap[j] ? f : w->cap[j]) / c), c);
    npy_intp n = (npy_intp)g->skeys[q] + (npy_intp)g->fillers[q];
    npy_intp off = (npy_intp)g->below[j] + cum - (npy_intp)g->fillers[q];
    uint64_t *keys = w->buf[j] + at * c;
    if (w->ws0[j + 1] - w->ws0[j] > 1)
        atomic_fetch_add(&mm_w64_slot_selects, (long long)(r1 - r0));
    if (n != k * c) /* cannot be: every chunk of the slot is tagged and full */
        atomic_store(&g->astray, 1);
    else if (mm_bucket_select(keys, n, w->slo[q], w->sbits[q], ranks, off, r0, r1,
                              g->outk) < 0)
        mm_multiselect(keys, 0, n, ranks, off, r0, r1, g->outk);
    return k;
}

/* Window j's ranks (a window of one key: that key), each among the keys of the slot
 * that holds it (a window of one slot: all its keys). */
static void
task_wselect(mm_job *job, int tid, npy_intp jj)
{
    mm_sel *s = job->sel;
    struct mm_w64 *g = s->win64;
    mm_wpass *w = &g->w;
    const int j = (int)jj;
    npy_intp r = g->wr0[j];
    (void)tid;
    if (w->cap[j] == 0) {
        for (npy_intp i = g->wr0[j]; i < g->wr1[j]; i++)
            g->outk[i] = w->lo[j];
    }
    else {
        npy_intp cum = 0, at = 0;
        for (int q = w->ws0[j]; q < w->ws0[j + 1] && r < g->wr1[j]; q++) {
            npy_intp r1 = r, top = (npy_intp)g->below[j] + cum + (npy_intp)g->skeys[q];
            while (r1 < g->wr1[j] && s->ranks[r1] < top)
                r1++;
            if (r1 > r)
                at += slot_select(g, s->ranks, q, cum, r, r1, at);
            cum += (npy_intp)g->skeys[q];
            r = r1;
        }
    }
}

/* The sample's tables, sized for the lane.  Returns 0, or -1 with MemoryError set. */
static int
w64_alloc(mm_sel *s, struct mm_w64 *g, npy_intp n_chunks)
{
    npy_intp full = s->lane_len / MM_CHUNK;
    int rc = 0;
    (void)n_chunks;
    g->n_blocks = full < MM_W64_BLOCKS ? full : MM_W64_BLOCKS;
    g->step = full / g->n_blocks;
    g->ns = g->n_blocks * MM_W64_BLOCK;
    g->kind = s->type->kind == 'f' ? 2 : s->type->kind == 'i' ? 1 : 0;
    g->n_wranks = s->n_ranks;
    while (g->n_wranks > 0 && s->ranks[g->n_wranks - 1] == s->lane_len - 1)
        g->n_wranks--; /* the last key: the pass's maximum */
    g->sample = malloc((size_t)g->ns * sizeof(uint64_t));
    g->bmean = malloc((size_t)g->n_blocks * sizeof(double));
    g->bm2 = malloc((size_t)g->n_blocks * sizeof(double));
    g->w.th = aligned_alloc(64, (size_t)s->n_threads * sizeof(mm_wthread));
    if (g->sample == NULL || g->bmean == NULL || g->bm2 == NULL || g->w.th == NULL) {
        PyErr_NoMemory();
        rc = -1;
    }
    else
        memset(g->w.th, 0, (size_t)s->n_threads * sizeof(mm_wthread));
    return rc;
}

static void
w64_free(struct mm_w64 *g)
{
    free(g->sample);
    free(g->bmean);
    free(g->bm2);
    free(g->w.th);
    free(g->w.htab);
    free(g->w.hslot);
    free(g->tags);
    mm_arena_put(g->arena);
    g->sample = NULL;
    g->arena = NULL;
}

/* The float64 histogram pass (window64.h's hist) where there are many windows and the
 * CPU has AVX2: its tables, then its plan, a slot for every few buckets.  Returns 0, or
 * -1 with MemoryError set. */
static int
hist_setup(const mm_sel *s, struct mm_w64 *g)
{
    int rc = 0;
    if (g->kind == 2 && s->type->key_bits == 64 && g->w.n_win >= MM_W64_HIST) {
        rc = mm_w64_hist_tables(&g->w);
        if (rc == 0)
            mm_w64_hist_plan(s->type, g->kind, &g->w, s->n_threads);
    }
    return rc;
}

/* Window j's chunks: the keys a thread takes at a time (a 16th of a thread's share of
 * a slot, so that the chunks left part-filled at the end, one a thread and slot, cost
 * little room and few fillers), and its room made a multiple of them. */
static void
window_chunks(mm_wpass *w, int j, int n_threads)
{
    const long long slots = w->ws0[j + 1] - w->ws0[j];
    long long c = w->cap[j] / (16 * (long long)n_threads * slots);
    c = c < 64 ? 64 : c > MM_WCHUNK ? MM_WCHUNK : c;
    w->chunk[j] = c;
    w->cap[j] = (w->cap[j] + c - 1) / c * c;
}

/* One buffer for every window's keys, in chunks tagged with their slots.  Returns 0, or
 * -1 with MemoryError set. */
static int
w64_buffers(struct mm_w64 *g, int n_threads)
{
    mm_wpass *w = &g->w;
    npy_intp room = 0, n_tags = 0;
    int rc = 0;
    for (int j = 0; j < w->n_win; j++) {
        window_chunks(w, j, n_threads);
        room += (npy_intp)w->cap[j];
        n_tags += (npy_intp)(w->cap[j] / w->chunk[j]);
    }
    g->tags = malloc((size_t)(n_tags + 1) * sizeof(int16_t));
    if (room > 0)
        g->arena = mm_arena_get((size_t)room * sizeof(uint64_t));
    if (g->tags == NULL || (room > 0 && g->arena == NULL)) {
        PyErr_NoMemory();
        rc = -1;
    }
    room = n_tags = 0;
    for (int j = 0; j < w->n_win && rc == 0; j++) {
        w->buf[j] = g->arena + room;
        w->tag[j] = g->tags + n_tags;
        room += (npy_intp)w->cap[j];
        n_tags += (npy_intp)(w->cap[j] / w->chunk[j]);
        atomic_init(&w->fill[j], 0);
    }
    return rc;
}

/* The pass and its check, then the windows' ranks and the last key into outk.  Returns
 * 1, 0 (missed) or -1. */
static int
w64_pass(mm_sel *s, struct mm_w64 *g, npy_intp n_chunks, double pb, double ps)
{
    int rc = -1;
    npy_intp gathered = 0;
    mm_w64_ends(s->type, g->kind, &g->w);
    mm_w64_slots(&g->w);
    /* cppcheck-suppress knownConditionTrueFalse ; 0 only in simd.h's non-x86 stub */
    if ((mm_hist_cpu() && hist_setup(s, g) < 0) || w64_buffers(g, s->n_threads) < 0 || mm_run_job(s, task_pass, n_chunks, s->lane_len, pb, ps * 0.45) < 0)
        goto done;
    rc = pass_check(s, g);
    if (rc == 0)
        goto done;
    for (int j = 0; j < g->w.n_win; j++)
        gathered += g->w.cap[j] > 0 ? (npy_intp)g->inside[j] : 0;
    if (mm_run_job(s, task_wselect, g->w.n_win, gathered, pb + ps * 0.45, ps * 0.5) < 0) {
        rc = -1;
        goto done;
    }
    if (atomic_load(&g->astray)) {
        rc = 0;
        goto done;
    }
    for (npy_intp i = g->n_wranks; i < s->n_ranks; i++)
        g->outk[i] = g->max;
done:
    return rc;
}

int
mm_window64_select(mm_sel *s, npy_intp n_chunks, uint64_t *outk, double pb, double ps)
{
    struct mm_w64 g;
    int rc = -1, win;
    memset(&g, 0, sizeof(g));
    atomic_init(&g.astray, 0);
    g.outk = outk;
    s->win64 = &g;
    if (w64_alloc(s, &g, n_chunks) < 0)
        goto done;
    mm_window_note(0);
    if (mm_run_job(s, task_sample, g.n_blocks, g.ns, pb, ps * 0.05) < 0)
        goto done;
    win = windows_choose(s, &g);
    if (win <= 0) {
        rc = win;
        goto done;
    }
    mm_window_note(1);
    rc = w64_pass(s, &g, n_chunks, pb + ps * 0.05, ps * 0.95);
    if (rc == 0)
        mm_window_note(2);
done:
    w64_free(&g);
    s->win64 = NULL;
    return rc;
}
