/* Radix selection of long lanes, one after the other (32- and 64-bit lanes try the
 * one-pass window of window64.c first): the first digit's histogram
 * (hist.c, or window.c for 16-bit integers), then, for 32- and 64-bit keys, filtered
 * passes that gather each small bucket into memory (arena.c) and select there
 * (memselect.c), or histogram the next 16 bits of a big one, until every wanted rank's
 * key is known. */
#include "select.h"
#include "lanes.h"

#include <stdlib.h>
#include <string.h>

#define MM_GATHER_ONE ((npy_intp)1 << 22)   /* a bucket this small is gathered */
#define MM_GATHER_ALL ((npy_intp)1 << 24)   /* keys gathered in one pass, all buckets */
#define MM_HIST_BUDGET ((size_t)64 << 20)   /* bytes of narrowing histograms, all threads */
#define MM_SPARSE 32                        /* fewer hits than 1 in this: branchy filter */

/* One long lane's buckets from pass to pass. */
typedef struct {
    mm_target *pend;      /* this pass's targets */
    mm_target *next;      /* the next pass's */
    npy_intp n_pend, n_next;
    uint64_t *total;      /* one histogram, summed over the threads */
    uint64_t *out_keys;   /* the keys of the lane's ranks */
    npy_intp n_chunks;
    int levels;           /* digits of a key */
    int max_slots;        /* histogrammed targets a pass can take */
    int pass;             /* the filtered pass under way, from 1 */
    double pbase, pspan;  /* the lane's share of the progress */
} mm_lane_state;

static void
set_changed_error(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "the array changed while its order statistics were computed");
}

/* The bucket of keys with digit b (of nbins) of target t that holds ranks
 * [r, r1): resolved (its keys are known) when it is the key's last digit. */
static void
split_one(const mm_target *t, int nbins, int levels, uint32_t b, npy_intp count,
          npy_intp base, npy_intp r, npy_intp r1, uint64_t *outk, mm_target *pend,
          npy_intp *npend)
{
    if (t->level + 1 == levels) {
        uint64_t key = (t->level == 0 ? 0 : t->prefix << (nbins == 256 ? 8 : 16)) | (uint64_t)b;
        for (npy_intp i = r; i < r1; i++)
            outk[i] = key;
    }
    else {
        mm_target *c = &pend[(*npend)++];
        memset(c, 0, sizeof(*c));
        c->prefix = (t->level == 0 ? 0 : t->prefix << 16) | (uint64_t)b;
        c->level = t->level + 1;
        c->count = count;
        c->base = base;
        c->rank_lo = r;
        c->rank_hi = r1;
    }
}

int
mm_split_target(const mm_sel *s, const mm_target *t, const uint64_t *hist, int nbins,
                int levels, uint64_t *outk, mm_target *pend, npy_intp *npend)
{
    const npy_int64 *rk = s->ranks;
    npy_intp cum = t->base, total = 0;
    int b = 0, rc = -1;
    for (int i = 0; i < nbins; i++)
        total += (npy_intp)hist[i];
    if (total != t->count)
        goto done;
    for (npy_intp r = t->rank_lo; r < t->rank_hi;) {
        npy_intp r1 = r + 1;
        while (b < nbins && cum + (npy_intp)hist[b] <= rk[r]) {
            cum += (npy_intp)hist[b];
            b++;
        }
        if (b >= nbins)
            goto done;
        while (r1 < t->rank_hi && rk[r1] < cum + (npy_intp)hist[b])
            r1++;
        split_one(t, nbins, levels, (uint32_t)b, (npy_intp)hist[b], cum, r, r1, outk, pend,
                  npend);
        r = r1;
    }
    rc = 0;
done:
    if (rc < 0)
        set_changed_error();
    return rc;
}

/* Frees what one pass allocated: the targets' gather buffers and the filter's tables.
 * Safe to call twice. */
static void
pass_free(mm_filter *f, mm_target *pend, npy_intp npend)
{
    for (npy_intp i = 0; i < npend; i++)
        pend[i].keys = NULL;
    mm_arena_put(f->arena);
    f->arena = NULL;
    free(f->hist_slots);
    free(f->fill);
    free(f->gathered);
    free(f->stage);
    free(f->staged);
    f->gathered = NULL;
    f->stage = NULL;
    f->staged = NULL;
    f->hist_slots = NULL;
    f->fill = NULL;
}

/* Chooses what this pass does with each pending target (gather, histogram or wait) and
 * marks the active ones in the filter's bitmaps.  Returns the keys to gather; *hits:
 * the keys expected to pass the filter. */
static npy_intp
pass_plan(mm_filter *f, mm_lane_state *ls, npy_intp *hits)
{
    npy_intp gathered = 0;
    f->n_active = 0;
    f->n_deeper = 0;
    f->n_hist_slots = 0;
    f->n_gathered = 0;
    *hits = 0;
    memset(f->bitmap, 0, sizeof(f->bitmap));
    for (int d = 0; d < 65536; d++)
        f->top_slot[d] = MM_NO_SLOT;
    for (npy_intp i = 0; i < ls->n_pend; i++) {
        mm_target *t = &ls->pend[i];
        uint32_t digit;
        t->mode = MM_TARGET_WAITING;
        if (t->count <= MM_GATHER_ONE && MM_GATHER_ALL - gathered >= t->count) {
            t->mode = MM_TARGET_GATHER;
            t->slot = f->n_gathered++;
            gathered += t->count;
        }
        else if (f->n_hist_slots < ls->max_slots) { /* too big, or the gather budget is spent */
            t->mode = MM_TARGET_HIST;
            t->slot = f->n_hist_slots++;
        }
        if (t->mode == MM_TARGET_WAITING)
            continue;
        *hits += t->count;
        digit = (uint32_t)(t->prefix & 0xFFFFu);
        f->bitmap[t->level - 1][digit >> 6] |= (uint64_t)1 << (digit & 63);
        if (t->level == 1) {
            f->top_slot[digit] = t->mode == MM_TARGET_GATHER ? t->slot : -1 - f->n_active;
            f->active[f->n_active++] = t;
        }
        else
            f->deeper[f->n_deeper++] = t;
    }
    return gathered;
}

/* One buffer for every gathered bucket (kept for the next call), the histogram slots and
 * the staging tables.  Returns 0, or -1 with MemoryError set. */
static int
pass_alloc(mm_sel *s, mm_lane_state *ls, npy_intp gathered)
{
    mm_filter *f = &s->filter;
    int nth = s->n_threads, ngather = f->n_gathered, slots = ngather > 0 ? ngather : 1, rc = -1;
    npy_intp at = 0;
    if (ngather > 0) {
        f->arena = mm_arena_get((size_t)gathered * sizeof(uint64_t));
        if (f->arena == NULL)
            goto done;
        for (npy_intp i = 0; i < ls->n_pend; i++) {
            if (ls->pend[i].mode == MM_TARGET_GATHER) {
                ls->pend[i].keys = f->arena + at;
                at += ls->pend[i].count;
            }
        }
    }
    if (f->n_hist_slots > 0) {
        f->hist_slots = calloc((size_t)nth * (size_t)f->n_hist_slots * 65536u, sizeof(uint64_t));
        if (f->hist_slots == NULL)
            goto done;
    }
    /* Each thread's counters on cache lines of their own: no false sharing. */
    f->thread_stride = (slots + 15) & ~15;
    f->fill = malloc((size_t)slots * sizeof(atomic_llong));
    f->gathered = malloc((size_t)slots * sizeof(mm_target *));
    f->stage = malloc((size_t)nth * (size_t)f->thread_stride * MM_STAGE * sizeof(uint64_t));
    f->staged = aligned_alloc(64, (size_t)nth * (size_t)f->thread_stride * sizeof(int));
    if (f->staged != NULL)
        memset(f->staged, 0, (size_t)nth * (size_t)f->thread_stride * sizeof(int));
    if (f->fill == NULL || f->gathered == NULL || f->stage == NULL || f->staged == NULL)
        goto done;
    for (int g = 0; g < ngather; g++)
        atomic_init(&f->fill[g], 0);
    for (npy_intp i = 0; i < ls->n_pend; i++)
        if (ls->pend[i].mode == MM_TARGET_GATHER)
            f->gathered[ls->pend[i].slot] = &ls->pend[i];
    rc = 0;
done:
    if (rc < 0)
        PyErr_NoMemory();
    return rc;
}

typedef struct {
    mm_sel *sel;
    int tid;
} mm_filter_arg;

static void
run_filter(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_filter_arg *a = arg;
    a->sel->type->filter(p, cnt, st, &a->sel->filter, a->tid);
}

static void
task_filter(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp i0, i1;
    mm_filter_arg a = {s, tid};
    mm_chunk_bounds(s, t, &i0, &i1);
    mm_for_runs(s, s->lane, i0, i1, run_filter, &a);
    mm_filter_flush(&s->filter, tid);
}

static void
task_gselect(mm_job *job, int tid, npy_intp g)
{
    mm_sel *s = job->sel;
    mm_target *t = s->filter.gathered[g];
    (void)tid;
    if (mm_bucket_select(t->keys, t->count, 0, s->type->key_bits - 16 * t->level, s->ranks,
                         t->base, t->rank_lo, t->rank_hi, s->out_keys) < 0)
        mm_multiselect(t->keys, 0, t->count, s->ranks, t->base, t->rank_lo, t->rank_hi,
                       s->out_keys);
}

/* The filter job over the lane, then the gathered buckets solved in parallel. */
static int
pass_run(mm_sel *s, mm_lane_state *ls, npy_intp gathered)
{
    mm_filter *f = &s->filter;
    double pb = ls->pbase + ls->pspan * (1.0 - 0.4 / ls->pass);
    double ps = ls->pspan * (0.4 / ls->pass - 0.4 / (ls->pass + 1));
    int rc = -1;
    if (mm_run_job(s, task_filter, ls->n_chunks, s->lane_len, pb, ps) < 0)
        goto done;
    ls->pass++;
    for (int g = 0; g < f->n_gathered; g++) {
        if ((npy_intp)atomic_load(&f->fill[g]) != f->gathered[g]->count) {
            set_changed_error();
            goto done;
        }
    }
    s->out_keys = ls->out_keys;
    if (mm_run_job(s, task_gselect, f->n_gathered, gathered,
                   ls->pbase + ls->pspan * (1.0 - 0.4 / ls->pass), 0.0) < 0)
        goto done;
    rc = 0;
done:
    return rc;
}

/* The histogrammed targets split by their next digit, the waiting ones kept: the next
 * pass's targets in ls->next. */
static int
pass_collect(mm_sel *s, mm_lane_state *ls)
{
    const mm_filter *f = &s->filter;
    int rc = -1;
    ls->n_next = 0;
    for (npy_intp i = 0; i < ls->n_pend; i++) {
        mm_target *t = &ls->pend[i];
        if (t->mode == MM_TARGET_HIST) {
            memset(ls->total, 0, 65536u * sizeof(uint64_t));
            for (int th = 0; th < s->n_threads; th++) {
                const uint64_t *h =
                    f->hist_slots +
                    ((size_t)th * (size_t)f->n_hist_slots + (size_t)t->slot) * 65536u;
                for (int b = 0; b < 65536; b++)
                    ls->total[b] += h[b];
            }
            if (mm_split_target(s, t, ls->total, 65536, ls->levels, ls->out_keys, ls->next,
                                &ls->n_next) < 0)
                goto done;
        }
        else if (t->mode == MM_TARGET_WAITING) /* deferred to the next pass */
            ls->next[ls->n_next++] = *t;
    }
    rc = 0;
done:
    return rc;
}

/* One filtered pass over the lane: ls->pend becomes the next pass's targets. */
static int
pass_once(mm_sel *s, mm_lane_state *ls)
{
    mm_filter *f = &s->filter;
    npy_intp hits, gathered = pass_plan(f, ls, &hits);
    int rc = -1;
    mm_target *tmp;
    if (pass_alloc(s, ls, gathered) < 0)
        goto done;
    f->deep = f->n_deeper > 0;
    s->type->rawmap(f->bitmap[0], f->rawmap);
    f->sparse = hits < s->lane_len / MM_SPARSE;
    f->key_bits = s->type->key_bits;
    if (pass_run(s, ls, gathered) < 0 || pass_collect(s, ls) < 0)
        goto done;
    rc = 0;
done:
    pass_free(f, ls->pend, ls->n_pend);
    if (rc == 0) {
        tmp = ls->pend;
        ls->pend = ls->next;
        ls->next = tmp;
        ls->n_pend = ls->n_next;
    }
    return rc;
}

/* The first digit of lane l, by the window or the plain histogram: resolved ranks in
 * ls->out_keys, the buckets left in ls->pend. */
static int
first_digit(mm_sel *s, mm_lane_state *ls)
{
    int W = s->type->key_bits, nbins = W == 8 ? 256 : 65536, rc = -1;
    mm_target root;
    memset(&root, 0, sizeof(root));
    root.count = s->lane_len;
    root.rank_hi = s->n_ranks;
    if (mm_window_applies(s, ls->n_chunks)) {
        if (mm_first_digit_window(s, ls->n_chunks, ls->total, ls->out_keys, &root, ls->pend,
                                  &ls->n_pend, ls->pbase, ls->pspan * 0.6) < 0)
            goto done;
    }
    else {
        mm_hist0_reset(s);
        if (mm_run_job(s, mm_task_hist0, ls->n_chunks, s->lane_len, ls->pbase,
                       ls->pspan * 0.6) < 0)
            goto done;
        mm_merge_hist0(s, ls->total);
        if (mm_split_target(s, &root, ls->total, nbins, ls->levels, ls->out_keys, ls->pend,
                            &ls->n_pend) < 0)
            goto done;
    }
    rc = 0;
done:
    return rc;
}

/* The keys of lane l's ranks into outk. */
static int
select_long(mm_sel *s, npy_intp l, uint64_t *outk)
{
    int W = s->type->key_bits, nbins = W == 8 ? 256 : 65536, rc = -1, win = 0;
    mm_lane_state ls;
    memset(&ls, 0, sizeof(ls));
    ls.levels = W == 8 ? 1 : W / 16;
    ls.n_chunks = (s->lane_len + MM_CHUNK - 1) / MM_CHUNK;
    ls.max_slots = (int)(MM_HIST_BUDGET / ((size_t)s->n_threads * 65536u * sizeof(uint64_t)));
    if (ls.max_slots < 1)
        ls.max_slots = 1;
    ls.pass = 1;
    ls.pspan = 1.0 / (double)s->n_lanes;
    ls.pbase = (double)l * ls.pspan;
    ls.out_keys = outk;
    s->lane = mm_lane_ptr(s, l);
    ls.total = calloc((size_t)nbins, sizeof(uint64_t));
    ls.pend = calloc((size_t)s->n_ranks, sizeof(mm_target));
    ls.next = calloc((size_t)s->n_ranks, sizeof(mm_target));
    if (ls.total == NULL || ls.pend == NULL || ls.next == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (mm_window64_applies(s, ls.n_chunks)) { /* one pass, if the sample says where */
        win = mm_window64_select(s, ls.n_chunks, outk, ls.pbase, ls.pspan);
        if (win < 0)
            goto done;
        ls.pbase += win ? 0.0 : ls.pspan * 0.5;
        ls.pspan *= win ? 1.0 : 0.5;
    }
    if (!win && first_digit(s, &ls) < 0)
        goto done;
    /* later passes: gather small buckets, histogram the next digit of big ones */
    while (!win && ls.n_pend > 0)
        if (pass_once(s, &ls) < 0)
            goto done;
    rc = 0;
done:
    free(ls.total);
    free(ls.pend);
    free(ls.next);
    return rc;
}

/* The tables every long lane uses, sized for s; freed by long_free. */
static int
long_alloc(mm_sel *s, uint64_t **outk)
{
    npy_intp chunks = (s->lane_len + MM_CHUNK - 1) / MM_CHUNK;
    int rc = 0;
    if (s->n_threads > chunks) /* no more per-thread tables than there are chunks */
        s->n_threads = (int)chunks;
    s->hist_bins = s->type->key_bits == 8 ? 1024 : s->type->key_bits == 16 ? 65536 : 2 * 65536;
    s->hist32 = malloc((size_t)s->n_threads * (size_t)s->hist_bins * sizeof(uint32_t));
    s->hist64 = malloc((size_t)s->n_threads * (size_t)s->hist_bins * sizeof(uint64_t));
    s->since_flush = malloc((size_t)s->n_threads * sizeof(npy_intp));
    s->filter.top_slot = malloc(65536u * sizeof(int32_t));
    s->filter.active = malloc((size_t)s->n_ranks * sizeof(mm_target *));
    s->filter.deeper = malloc((size_t)s->n_ranks * sizeof(mm_target *));
    *outk = malloc((size_t)s->n_ranks * sizeof(uint64_t));
    if (s->hist32 == NULL || s->hist64 == NULL || s->since_flush == NULL ||
        s->filter.top_slot == NULL || s->filter.active == NULL || s->filter.deeper == NULL ||
        *outk == NULL) {
        PyErr_NoMemory();
        rc = -1;
    }
    return rc;
}

static void
long_free(mm_sel *s, uint64_t *outk)
{
    free(s->hist32);
    free(s->hist64);
    free(s->since_flush);
    free(s->filter.top_slot);
    free(s->filter.active);
    free(s->filter.deeper);
    free(outk);
    s->hist32 = NULL;
    s->hist64 = NULL;
    s->since_flush = NULL;
    s->filter.top_slot = NULL;
    s->filter.active = NULL;
    s->filter.deeper = NULL;
}

int
mm_select_long_lanes(mm_sel *s)
{
    const npy_int64 *all = s->ranks;
    uint64_t *outk = NULL;
    int rc = -1;
    if (long_alloc(s, &outk) < 0)
        goto done;
    for (npy_intp l = 0; l < s->n_lanes; l++) {
        char *o = s->out + (size_t)l * (size_t)s->n_ranks * (size_t)s->itemsize;
        s->ranks = all + (s->rank_rows == 1 ? 0 : l * s->n_ranks);
        if (select_long(s, l, outk) < 0)
            goto done;
        for (npy_intp i = 0; i < s->n_ranks; i++)
            s->type->store(o + i * s->itemsize, outk[i]);
    }
    rc = 0;
done:
    s->ranks = all;
    long_free(s, outk);
    return rc;
}
