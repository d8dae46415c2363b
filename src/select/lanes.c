/* Lane geometry: the strided runs (stretches of constant stride) that make up part of
 * a lane whose elements span several dimensions. */
#include "select.h"

void
mm_for_runs(const mm_sel *s, const char *base, npy_intp i0, npy_intp i1, mm_run fn, void *arg)
{
    npy_intp idx[NPY_MAXDIMS];
    int nd = s->lane_ndim;
    npy_intp rem = i0, left = i1 - i0;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % s->lane_shape[d];
        rem /= s->lane_shape[d];
    }
    while (left > 0) {
        const char *p = base;
        npy_intp run = s->lane_shape[nd - 1] - idx[nd - 1];
        for (int d = 0; d < nd; d++)
            p += idx[d] * s->lane_strides[d];
        if (run > left)
            run = left;
        fn(arg, p, run, s->lane_strides[nd - 1]);
        left -= run;
        idx[nd - 1] += run;
        for (int d = nd - 1; d > 0 && idx[d] == s->lane_shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}
