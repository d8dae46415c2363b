/* NaN counts per lane, over chunks of every lane at once, and the first NaN of chosen
 * lanes (its bits as stored: numpy returns one of a lane's own NaNs). */
#include "select.h"
#include "lanes.h"

#include "nans.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const mm_type *type;
    npy_intp nans;
} mm_nans_arg;

static void
run_nans(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_nans_arg *a = arg;
    a->nans += a->type->nans(p, cnt, st);
}

/* Task t: chunk t % tasks_per_lane of lane t / tasks_per_lane. */
static void
task_nans(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp l = t / s->tasks_per_lane, i0, i1;
    mm_nans_arg a = {s->type, 0};
    (void)tid;
    mm_chunk_bounds(s, t % s->tasks_per_lane, &i0, &i1);
    mm_for_runs(s, mm_lane_ptr(s, l), i0, i1, run_nans, &a);
    s->partial[t] = a.nans;
}

int
mm_count_lane_nans(mm_sel *s, npy_intp *counts)
{
    npy_intp ntasks;
    int rc = -1;
    s->tasks_per_lane = (s->lane_len + MM_CHUNK - 1) / MM_CHUNK;
    if (s->n_lanes > PY_SSIZE_T_MAX / s->tasks_per_lane) {
        PyErr_NoMemory();
        goto done;
    }
    ntasks = s->n_lanes * s->tasks_per_lane;
    s->partial = calloc((size_t)ntasks, sizeof(npy_intp));
    if (s->partial == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    if (mm_run_job(s, task_nans, ntasks, s->n_lanes * s->lane_len, 0.0, 1.0) < 0)
        goto done;
    for (npy_intp t = 0; t < ntasks; t++)
        counts[t / s->tasks_per_lane] += s->partial[t];
    rc = 0;
done:
    free(s->partial);
    s->partial = NULL;
    return rc;
}

/* ---- the first NaN of chosen lanes --------------------------------------------------- */

#define MM_NAN_BLOCK 256 /* elements counted at once before the first NaN is located */

/* One call's state: the job's sel points at sel, its first member. */
typedef struct {
    mm_sel sel;
    const npy_int64 *lanes; /* the lanes searched */
    atomic_llong *first;    /* per lane searched: the lowest chunk known to hold a NaN */
    char *bits;             /* per task: the first NaN of its chunk */
} mm_find;

typedef struct {
    const mm_type *type;
    size_t itemsize;
    char *dest;
    int hit;
} mm_find_arg;

/* The first NaN of a run, unless one was found before it: counted a block at a time
 * (the dtype's NaN test), then located element by element within the block. */
static void
run_find(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_find_arg *a = arg;
    for (npy_intp i = 0; i < cnt && !a->hit; i += MM_NAN_BLOCK) {
        npy_intp k = cnt - i < MM_NAN_BLOCK ? cnt - i : MM_NAN_BLOCK;
        const char *q = p + i * st;
        if (a->type->nans(q, k, st) > 0) {
            while (a->type->nans(q, 1, st) == 0)
                q += st;
            memcpy(a->dest, q, a->itemsize);
            a->hit = 1;
        }
    }
}

/* Task t: chunk t % tasks_per_lane of searched lane t / tasks_per_lane, skipped once a
 * lower chunk of that lane has found a NaN. */
static void
task_find(mm_job *job, int tid, npy_intp t)
{
    mm_find *f = (mm_find *)job->sel;
    const mm_sel *s = &f->sel;
    npy_intp j = t / s->tasks_per_lane, c = t % s->tasks_per_lane, i0, i1;
    mm_find_arg a = {s->type, (size_t)s->itemsize, f->bits + t * s->itemsize, 0};
    (void)tid;
    mm_chunk_bounds(s, c, &i0, &i1);
    if (i0 < i1 && atomic_load_explicit(&f->first[j], memory_order_relaxed) > c)
        mm_for_runs(s, mm_lane_ptr(s, f->lanes[j]), i0, i1, run_find, &a);
    s->partial[t] = a.hit;
    if (a.hit) {
        long long seen = atomic_load(&f->first[j]);
        while (c < seen && !atomic_compare_exchange_weak(&f->first[j], &seen, (long long)c))
            ;
    }
}

/* Lane j's answer from its lowest chunk with a hit (np.nan's bits if none). */
static void
find_result(const mm_find *f, npy_intp j, char *out, npy_bool *found)
{
    const mm_sel *s = &f->sel;
    npy_intp tpl = s->tasks_per_lane, c = 0;
    while (c < tpl && !s->partial[j * tpl + c])
        c++;
    found[j] = (npy_bool)(c < tpl);
    if (c < tpl)
        memcpy(out + j * s->itemsize, f->bits + (j * tpl + c) * s->itemsize,
               (size_t)s->itemsize);
    else
        s->type->store(out + j * s->itemsize, UINT64_MAX >> (64 - s->type->key_bits));
}

int
mm_first_lane_nans(const mm_sel *s, const npy_int64 *lanes, npy_intp n, char *out,
                   npy_bool *found)
{
    mm_find *f = calloc(1, sizeof(mm_find));
    npy_intp ntasks = 0, tpl = s->lane_len > 0 ? (s->lane_len + MM_CHUNK - 1) / MM_CHUNK : 1;
    int rc = -1;
    if (f == NULL || n > PY_SSIZE_T_MAX / tpl / s->itemsize) {
        PyErr_NoMemory();
        goto done;
    }
    f->sel = *s;
    f->sel.tasks_per_lane = tpl;
    f->lanes = lanes;
    ntasks = n * tpl;
    f->sel.partial = calloc((size_t)ntasks, sizeof(npy_intp));
    f->bits = malloc((size_t)(ntasks * s->itemsize));
    f->first = malloc((size_t)n * sizeof(atomic_llong));
    if (f->sel.partial == NULL || f->bits == NULL || f->first == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (npy_intp j = 0; j < n; j++)
        atomic_init(&f->first[j], (long long)tpl);
    if (mm_run_job(&f->sel, task_find, ntasks, n * s->lane_len, 0.0, 1.0) < 0)
        goto done;
    for (npy_intp j = 0; j < n; j++)
        find_result(f, j, out, found);
    rc = 0;
done:
    if (f != NULL) {
        free(f->sel.partial);
        free(f->bits);
        free(f->first);
    }
    free(f);
    return rc;
}
