/* NaN scans of lanes (nans.c) beyond the counts that select.h declares: the first NaN
 * of chosen lanes, with its bits as stored. */
#ifndef MM_SELECT_NANS_H
#define MM_SELECT_NANS_H

#include "select.h"

/* For each of the n >= 1 lanes lanes[0:n) of s (indexes below s->n_lanes): the first NaN in
 * the lane's C order into out[i * itemsize] and found[i] = 1, or np.nan's bits and
 * found[i] = 0 where the lane holds none.  Each lane's chunks are searched in order and
 * the search of a lane stops at its first hit.  Returns 0, or -1 with an exception set
 * (MemoryError; OSError for a SIGBUS). */
int mm_first_lane_nans(const mm_sel *s, const npy_int64 *lanes, npy_intp n, char *out,
                       npy_bool *found);

#endif
