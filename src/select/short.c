/* Short lanes (up to MM_SHORT elements), many at a time: each task copies a few lanes'
 * keys into its thread's buffer and solves them there by multi-select. */
#include "select.h"
#include "lanes.h"

#include <stdlib.h>

typedef struct {
    const mm_type *type;
    uint64_t *cursor;
} mm_load_arg;

static void
run_load(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_load_arg *a = arg;
    a->type->load(p, cnt, st, a->cursor);
    a->cursor += cnt;
}

/* The values at the ranks of lanes [l0, l1) into s->out; keys: room for a lane's keys,
 * then its ranks' keys. */
static void
short_lanes(const mm_sel *s, npy_intp l0, npy_intp l1, uint64_t *keys)
{
    uint64_t *outk = keys + s->lane_len;
    for (npy_intp l = l0; l < l1; l++) {
        const npy_int64 *rk = s->ranks + (s->rank_rows == 1 ? 0 : l * s->n_ranks);
        mm_load_arg a = {s->type, keys};
        char *o = s->out + (size_t)l * (size_t)s->n_ranks * (size_t)s->itemsize;
        mm_for_runs(s, mm_lane_ptr(s, l), 0, s->lane_len, run_load, &a);
        mm_multiselect(keys, 0, s->lane_len, rk, 0, 0, s->n_ranks, outk);
        for (npy_intp i = 0; i < s->n_ranks; i++)
            s->type->store(o + i * s->itemsize, outk[i]);
    }
}

static void
task_short(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->sel;
    npy_intp l0 = t * s->lanes_per_task;
    npy_intp l1 = s->n_lanes - l0 < s->lanes_per_task ? s->n_lanes : l0 + s->lanes_per_task;
    uint64_t *keys = s->thread_keys[tid];
    if (keys == NULL) {
        keys = malloc(((size_t)s->lane_len + (size_t)s->n_ranks) * sizeof(uint64_t));
        s->thread_keys[tid] = keys;
    }
    if (keys == NULL)
        mm_job_fail_nomem(job);
    else
        short_lanes(s, l0, l1, keys);
}

int
mm_select_short_lanes(mm_sel *s)
{
    npy_intp ntasks;
    int rc = -1;
    s->lanes_per_task = s->lane_len >= 65536 ? 1 : 65536 / s->lane_len;
    ntasks = (s->n_lanes + s->lanes_per_task - 1) / s->lanes_per_task;
    s->thread_keys = calloc((size_t)s->n_threads, sizeof(uint64_t *));
    if (s->thread_keys == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    rc = mm_run_job(s, task_short, ntasks, s->n_lanes * s->lane_len, 0.0, 1.0);
done:
    if (s->thread_keys != NULL) {
        for (int i = 0; i < s->n_threads; i++)
            free(s->thread_keys[i]);
        free(s->thread_keys);
        s->thread_keys = NULL;
    }
    return rc;
}
