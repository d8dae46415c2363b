/* Lane geometry: where a lane starts, and the elements of one chunk of a long lane.
 * (mm_for_runs, which walks a lane's strided runs, is in lanes.c.) */
#ifndef MM_SELECT_LANES_H
#define MM_SELECT_LANES_H

#include "select.h"

/* The first element of lane l (C order over the outer dimensions). */
static inline const char *
mm_lane_ptr(const mm_sel *s, npy_intp l)
{
    const char *p = s->data;
    for (int d = s->outer_ndim - 1; d >= 0; d--) {
        p += (l % s->outer_shape[d]) * s->outer_strides[d];
        l /= s->outer_shape[d];
    }
    return p;
}

/* Elements [*i0, *i1) of the lane: chunk c. */
static inline void
mm_chunk_bounds(const mm_sel *s, npy_intp c, npy_intp *i0, npy_intp *i1)
{
    *i0 = c * MM_CHUNK;
    *i1 = s->lane_len - *i0 < MM_CHUNK ? s->lane_len : *i0 + MM_CHUNK;
}

#endif
