/* NaN counts per lane, over chunks of every lane at once. */
#include "select.h"
#include "lanes.h"

#include <stdlib.h>

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
