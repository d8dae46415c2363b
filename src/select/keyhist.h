/* The shared state and driver of the per-chunk kernels of mmarray.dask's radix
 * selection: keyhist.c (key_histogram, key_collect, key_values) and keywin.c (the
 * sampled windows: key_window, key_window_keys). */
#ifndef MM_SELECT_KEYHIST_H
#define MM_SELECT_KEYHIST_H

#include "select.h"
#include "window64.h"

#define KH_BLOCK 256                    /* keys loaded at once from a run */
#define KH_NOGIL ((npy_intp)1 << 15)    /* elements from which the GIL is released */
#define KH_PIECE ((npy_intp)1 << 30)    /* values counted between overflow checks */
#define KH_FIRST_LANE ((npy_intp)1 << 16) /* lane length from which the first pass uses
                                           * 32-bit counters (flushed once per lane) */

typedef struct {
    mm_sel *s;
    const uint64_t *prefixes;           /* rows x m, each row sorted */
    npy_intp rows, m;
    int shift, bits;                    /* prefix = key >> shift; bin: the next bits */
    uint64_t *hist;                     /* key_histogram: n_lanes x m x 2^bits */
    /* the first pass over long lanes (kh_first_run): 32-bit counters, h32_bins of them
     * (sub-histograms of 2^bits bins), and the values counted since their last flush */
    uint32_t *h32;
    npy_intp h32_bins, since;
    /* key_window: each lane's [lo, hi] (rows x 2) and its counts below and above */
    const uint64_t *bounds;
    uint64_t *outside;
    /* key_collect: values and target ids (lane * m + j), grown as needed; owned here
     * (not by a local variable) so that a fault's jump leaks nothing */
    char *values;
    npy_int64 *ids;
    npy_intp n, cap;
    int nomem;
    /* key_window_keys (keywin.c): the windows' pass, each lane's windows (rows x 2 nw:
     * lo, hi), its counts (L x nw x 2: below, inside), largest keys (L) and the
     * gathered keys */
    mm_wpass *wp;
    int nw, kind;
    uint64_t *arena, *wcounts, *wmax, *keys;
    npy_intp nkeys, capkeys;
    /* the lane being read */
    npy_intp lane;
    const uint64_t *row;
} kh_state;

/* Called before and after the runs of each lane (either may be NULL). */
typedef void (*kh_lane_fn)(kh_state *k);

/* Parses (x, r, region) into s, and clears k; 0, or -1 with an exception set. */
int mm_kh_sel(kh_state *k, mm_sel *s, PyObject *module, PyObject *xo, int r,
              PyObject *region);
/* The pass of fn over every lane's runs, begin and end around each lane, the GIL
 * released for big chunks.  0, or -1 with OSError (a SIGBUS) or MemoryError set. */
int mm_kh_run(kh_state *k, mm_run fn, kh_lane_fn begin, kh_lane_fn end);
/* The 32-bit counters (k->h32) for 2^k->bits bins per lane, in the layout of the
 * dtype's hist0.  0, or -1 with MemoryError set. */
int mm_kh_counters(kh_state *k);
/* Adds the 32-bit counters to the lane's histogram, and clears them. */
void mm_kh_flush32(kh_state *k);
/* Adds keywin.c's functions to the module.  0, or -1 with an exception set. */
int mm_keywin_add(PyObject *module);

#endif
