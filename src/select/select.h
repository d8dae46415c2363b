/* The selection engine's internal header: exact order statistics of strided lanes
 * (median, quantiles), shared by the files of src/select/ and by no other.
 *
 * Python hands over an array whose last r axes form one lane (the elements reduced
 * together) and whose first axes enumerate the lanes, plus the sorted ranks wanted in
 * every lane.  The engine returns the values at those ranks in numpy's sort order
 * (NaN last); mmarray's statistics turn them into numpy's exact results.
 *
 * Long lanes are solved one after the other by radix selection (radix.c): a histogram
 * of the key's top digit over fixed chunks of the lane (hist.c; for 16-bit integers
 * through a sampled window, window.c), spread over worker threads (pool.c) with one
 * histogram per thread merged after the join; then, for 32- and 64-bit keys, filtered
 * passes that either gather a small bucket into memory (arena.c) or histogram the next
 * 16 bits of a big one.  Many short lanes run in parallel across lanes (short.c), each
 * copied into a per-thread buffer and solved by an in-memory multi-select (memselect.c).
 * The per-dtype loops come from one template (kernel_template.h, dtypes.c).
 *
 * The chunking never depends on the number of threads and every merge is a sum of
 * counts, so results do not depend on `workers`.  The calling thread waits with the
 * GIL released in short slices, runs Python's signal handlers and the progress
 * callback between them, and cancels the workers on an exception. */
#ifndef MM_SELECT_H
#define MM_SELECT_H

#include "mmarray.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL MMARRAY_ARRAY_API
#include <numpy/arrayobject.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MM_CHUNK ((npy_intp)1 << 20)        /* elements per task of a long lane */
#define MM_SHORT ((npy_intp)1 << 20)        /* lanes up to this length: one thread each */
#define MM_STAGE 64                         /* keys a thread stages before a gather write */
#define MM_NO_SLOT INT32_MIN                /* mm_filter.top_slot of an inactive digit */

/* ---- the buckets of a long lane and the filtered pass (radix.c) ---------------- */

/* What a pass does with a bucket. */
typedef enum {
    MM_TARGET_WAITING = 0, /* nothing in this pass: deferred to the next one */
    MM_TARGET_GATHER = 1,  /* its keys are gathered into memory and selected there */
    MM_TARGET_HIST = 2     /* its next digit is histogrammed */
} mm_target_mode;

/* One bucket of keys that holds some of the wanted ranks. */
typedef struct {
    uint64_t prefix;   /* the top 16*level bits of the keys in the bucket */
    int level;         /* digits known */
    int mode;          /* mm_target_mode */
    int slot;          /* MM_TARGET_HIST: histogram slot; MM_TARGET_GATHER: fill counter */
    npy_intp count;    /* keys in the bucket */
    npy_intp base;     /* keys of the lane below the bucket */
    npy_intp rank_lo;  /* the lane's ranks (indexes into the sorted list) in the bucket: */
    npy_intp rank_hi;  /* ranks[rank_lo:rank_hi] */
    uint64_t *keys;    /* MM_TARGET_GATHER: the keys (a slice of the gather arena) */
} mm_target;

/* The tables of one filtered pass, read by every thread. */
typedef struct {
    /* bitmap[L-1]: the last known digit of every active target at level L, so that a
     * key is looked at only if one of its digits matches (a few false positives) */
    uint64_t bitmap[3][65536 / 64];
    uint64_t rawmap[65536 / 64]; /* bitmap[0] over the stored values' top 16 bits */
    int deep;             /* targets at level 2 or 3 are active */
    int sparse;           /* under one key in MM_SPARSE is expected to hit */
    int32_t *top_slot;    /* top digit of a level-1 target -> its gather slot (>= 0), or
                           * -1 - its index in active (histogrammed targets); other
                           * digits -> MM_NO_SLOT */
    mm_target **active;   /* level-1 targets */
    mm_target **deeper;   /* targets at level 2 and 3 */
    int n_active, n_deeper;
    int key_bits;
    uint64_t *hist_slots; /* per thread: n_hist_slots histograms of 65536 counters */
    int n_hist_slots;
    atomic_llong *fill;   /* per gathered target: keys written */
    uint64_t *arena;      /* the gathered targets' keys */
    mm_target **gathered; /* by fill index */
    int n_gathered;
    int thread_stride;    /* staged counters per thread: n_gathered rounded to a cache line */
    uint64_t *stage;      /* per thread and gathered target: MM_STAGE keys */
    int *staged;          /* per thread and gathered target: keys staged */
} mm_filter;

/* ---- the kernel table (dtypes.c) ------------------------------------------------- */

typedef struct mm_wpass mm_wpass; /* the one pass of a 32/64-bit window (window64.h) */

/* The loops of one dtype over one strided run (p, count, stride), from kernel_template.h. */
typedef struct {
    char kind;        /* numpy's dtype kind ('b', 'u', 'i', 'f') */
    int itemsize;     /* bytes per value */
    int key_bits;     /* bits of the order-preserving key (keys.h) */
    int is_float;
    int window_xor;   /* 16-bit ints: the XOR that makes a stored value its key; else -1
                       * (no sampled window) */
    /* the first-digit histogram: 8/16-bit keys by key, 32/64-bit ones by stored top bits */
    void (*hist0)(const char *p, npy_intp count, npy_intp stride, uint32_t *hist);
    /* the filtered pass: keys that may belong to an active target to their buckets */
    void (*filter)(const char *p, npy_intp count, npy_intp stride, mm_filter *f, int tid);
    void (*load)(const char *p, npy_intp count, npy_intp stride, uint64_t *keys);
    npy_intp (*nans)(const char *p, npy_intp count, npy_intp stride);
    void (*store)(char *dest, uint64_t key);
    /* the first-digit bitmap of the keys as one over the stored values' top 16 bits */
    void (*rawmap)(const uint64_t *keymap, uint64_t *rawmap);
    /* the key's top digit of the value whose stored top 16 bits are raw */
    uint32_t (*keytop)(uint32_t raw, unsigned low);
    /* the window pass of a 32/64-bit lane (window64.c): counts below and inside each
     * window, the keys inside staged, the largest key kept, by thread tid */
    void (*wcount)(const char *p, npy_intp count, npy_intp stride, mm_wpass *w, int tid);
} mm_type;

/* The table row for a dtype, or NULL (byte-swapped, complex, object, ...). */
const mm_type *mm_type_of(PyArray_Descr *descr);
/* The end of a filter task: thread tid's staged keys to their buckets. */
void mm_filter_flush(mm_filter *f, int tid);

/* ---- one call's state -------------------------------------------------------------- */

typedef struct {
    const mm_type *type;
    const char *data;
    int outer_ndim;       /* the lane-enumerating dimensions */
    int lane_ndim;        /* the lane's dimensions */
    npy_intp outer_shape[NPY_MAXDIMS], outer_strides[NPY_MAXDIMS];
    npy_intp lane_shape[NPY_MAXDIMS], lane_strides[NPY_MAXDIMS];
    npy_intp n_lanes;
    npy_intp lane_len;    /* elements per lane */
    const npy_int64 *ranks; /* the current lane's (long lanes) or all rows (short lanes) */
    npy_intp n_ranks;     /* ranks per lane */
    npy_intp rank_rows;   /* 1 (the same ranks in every lane) or n_lanes */
    char *out;            /* (n_lanes, n_ranks) values, C order */
    npy_intp itemsize;
    int n_threads;
    PyObject *progress;   /* borrowed, or NULL */
    PyObject *region;     /* borrowed Region under data (named in SIGBUS errors), or NULL */
    const char *guard_lo, *guard_hi; /* the bytes the lanes span: SIGBUS there is caught */
    /* long lanes */
    const char *lane;
    int hist_bins;        /* counters per thread in the first-digit histogram */
    uint32_t *hist32;     /* per thread: the counts since the last flush to hist64 */
    uint64_t *hist64;
    npy_intp *since_flush;
    /* the window of a 16-bit long lane (window.c) */
    npy_intp win_sampled; /* sampled chunks: 0, MM_WIN_STRIDE, 2 * MM_WIN_STRIDE, ... */
    int win_full;         /* the other chunks too get the full histogram (no window) */
    uint32_t win_lo, win_hi; /* the keys the other chunks count bin by bin */
    uint64_t *win_outside;   /* per thread, 8 apart: keys below the window, above it */
    double *win_mean;     /* per sampled chunk: its mean key */
    struct mm_w64 *win64; /* the window of a 32/64-bit long lane (window64.c) */
    mm_filter filter;
    uint64_t *out_keys;   /* keys of the current long lane's ranks */
    /* short lanes */
    uint64_t **thread_keys;
    npy_intp lanes_per_task;
    /* NaN counts */
    npy_intp tasks_per_lane;
    npy_intp *partial;
    /* read-ahead and drop-behind over a cold file (readahead.c), or NULL */
    struct mm_stream *stream;
} mm_sel;

/* ---- the worker pool (pool.c) ------------------------------------------------------ */

typedef struct mm_job mm_job;
typedef void (*mm_task)(mm_job *job, int tid, npy_intp task);

struct mm_job {
    mm_sel *sel;
    mm_task task;
    npy_intp n_tasks;
    atomic_llong next;
    atomic_llong done;
    atomic_int cancel;
    atomic_int no_memory;
    void *_Atomic fault;  /* the first SIGBUS address, NULL if none */
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int running;
    atomic_llong busy[MM_MAX_WORKERS]; /* per thread: the task it runs, or -1 */
};

/* Runs task on tasks 0..n_tasks-1.  Small jobs run inline with the GIL held; others on
 * worker threads while this thread polls for signals and reports progress as
 * pbase + pspan * (fraction of tasks done).  Returns 0, or -1 with an exception set
 * (the workers have stopped by then). */
int mm_run_job(mm_sel *s, mm_task task, npy_intp n_tasks, npy_intp n_elems, double pbase,
               double pspan);
/* Called by a task that could not allocate: cancels the job, which raises MemoryError. */
void mm_job_fail_nomem(mm_job *job);

/* ---- read-ahead and drop-behind over a cold file (readahead.c) ---------------------- */

typedef struct mm_stream mm_stream;
typedef struct mm_streamer mm_streamer;

/* The stream of a call over the bytes [lo, hi) of one long lane: which pages are not
 * resident now; ahead: read them ahead of the pass; drop: hand them back behind it.
 * NULL where fewer than a few MiB are cold (or no memory): the call runs without one. */
mm_stream *mm_stream_new(const char *lo, const char *hi, int ahead, int drop);
/* Frees the stream (NULL is fine); finish: in drop mode, first hand back every page that
 * was cold when the call began (the call is over: no task reads them any more). */
void mm_stream_free(mm_stream *st, int finish);
/* A streamer thread for job (of n_elems elements) while it runs, or NULL (no stream,
 * a job that reads little of the range, or no thread). */
mm_streamer *mm_streamer_start(mm_stream *st, mm_job *job, npy_intp n_elems);
/* Stops and joins it (NULL is fine). */
void mm_streamer_stop(mm_streamer *w);
/* The call's stream (entry.c): mode bit 1 read ahead, bit 2 drop behind (0: none);
 * only for one long lane, and only where enough of it is cold.  The GIL is released. */
void mm_sel_stream_begin(mm_sel *s, int mode);
/* After the call's last job: drop mode's last drop, and the stream freed. */
void mm_sel_stream_end(mm_sel *s);

/* ---- lane geometry (lanes.h, lanes.c) ------------------------------------------------ */

typedef void (*mm_run)(void *arg, const char *p, npy_intp count, npy_intp stride);

/* Calls fn on the strided runs that make up elements [i0, i1) of a lane (C order). */
void mm_for_runs(const mm_sel *s, const char *base, npy_intp i0, npy_intp i1, mm_run fn,
                 void *arg);

/* ---- in-memory selection (memselect.c) ------------------------------------------------- */

/* The keys of ranks rk[r0:r1] - off (sorted) among a[lo:hi] go to outk[r0:r1]. */
void mm_multiselect(uint64_t *a, npy_intp lo, npy_intp hi, const npy_int64 *rk, npy_intp off,
                    npy_intp r0, npy_intp r1, uint64_t *outk);
/* The same among a[0:n), whose keys less base differ only in their low `bits` (every
 * key - base has the same bits above them), narrowed by the digits of key - base first;
 * returns -1 only if a table could not be allocated (then call mm_multiselect). */
int mm_bucket_select(uint64_t *a, npy_intp n, uint64_t base, int bits, const npy_int64 *rk,
                     npy_intp off, npy_intp r0, npy_intp r1, uint64_t *outk);

/* ---- the first-digit histogram (hist.c) ----------------------------------------------- */

void mm_hist0_reset(mm_sel *s);
/* Makes room for count more counts in thread tid's 32-bit first-digit counters. */
void mm_hist32_reserve(mm_sel *s, int tid, npy_intp count);
/* The first-digit histogram of chunk c of the current lane, in thread tid's counters. */
void mm_hist0_chunk(mm_sel *s, int tid, npy_intp c);
/* The task of the plain first pass: chunk t. */
void mm_task_hist0(mm_job *job, int tid, npy_intp t);
/* The first-digit histograms of all threads, summed into total (by key digit). */
void mm_merge_hist0(const mm_sel *s, uint64_t *total);

/* ---- radix passes (radix.c), the gather arena (arena.c), the window (window.c) -------- */

/* Splits target t (whose histogram of the next digit is hist) into the buckets that
 * hold its ranks: resolved keys go to outk, unresolved buckets are appended to pend.
 * Returns 0, or -1 with RuntimeError set (the counts do not add up: the array changed). */
int mm_split_target(const mm_sel *s, const mm_target *t, const uint64_t *hist, int nbins,
                    int levels, uint64_t *outk, mm_target *pend, npy_intp *npend);
/* Every long lane of s: the values at its ranks into s->out.  Returns 0 or -1. */
int mm_select_long_lanes(mm_sel *s);

/* A buffer of at least `bytes` bytes, or NULL (no memory); give it back with arena_put. */
uint64_t *mm_arena_get(size_t bytes);
void mm_arena_put(uint64_t *keys);

/* Whether the first digits of the current lane (of n_chunks chunks) go by the window. */
int mm_window_applies(const mm_sel *s, npy_intp n_chunks);
/* First digits of a long 16-bit lane by the window (window.c).  Returns 0 or -1. */
int mm_first_digit_window(mm_sel *s, npy_intp ntasks, uint64_t *total, uint64_t *outk,
                          mm_target *root, mm_target *pend, npy_intp *npend, double pb,
                          double ps);
/* The window count of a run of 16-bit values (key = stored ^ kx): keys in [lo, hi] in
 * their bins of h (65536 32-bit counters), the others added to wo[0] (below lo) and
 * wo[1] (above hi).  SIMD on contiguous runs. */
void mm_win_count(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint32_t lo,
                  uint32_t hi, uint32_t *h, uint64_t *wo);
/* Lanes since import that took the windowed first pass: sampled, windowed, missed. */
void mm_window_test_counts(long long counts[3]);
/* Counts one lane as sampled (0), windowed (1) or missed (2), for the test counts. */
void mm_window_note(int which);
/* Whether a long 32/64-bit lane of n_chunks chunks is tried through the window. */
int mm_window64_applies(const mm_sel *s, npy_intp n_chunks);
/* Lanes since import whose window pass was window64.c's histogram pass (tests only). */
long long mm_window64_hist_count(void);
/* Ranks since import selected among the keys of one slot of a window of several (the
 * histogram pass's runs of buckets; tests only). */
long long mm_window64_slot_count(void);
/* For the tests: lets the float64 histogram pass take AVX-512 (on) or keeps it to AVX2;
 * returns whether it could before, and *cpu whether the CPU has AVX-512. */
int mm_window64_test_avx512(int on, int *cpu);
/* The keys of the current lane's ranks into outk in one pass, through windows that a
 * sample chose (window64.c).  Returns 1 (done), 0 (no window, or the sample misled:
 * take the radix passes) or -1 (an exception).  progress runs from pb over ps. */
int mm_window64_select(mm_sel *s, npy_intp n_chunks, uint64_t *outk, double pb, double ps);

/* ---- short lanes (short.c) and NaN counts (nans.c) ------------------------------------- */

/* Every short lane of s: the values at its ranks into s->out.  Returns 0 or -1. */
int mm_select_short_lanes(mm_sel *s);
/* NaNs per lane of s into counts (n_lanes of them, zeroed).  Returns 0 or -1. */
int mm_count_lane_nans(mm_sel *s, npy_intp *counts);

/* ---- the call's state from Python's arguments (entry.c), the dask kernels (keyhist.c) -- */

/* Fills s from x (whose last r axes are the lane), the workers, progress and region.
 * Returns 0, or -1 with an exception set. */
int mm_sel_init(mm_sel *s, PyObject *module, PyArrayObject *x, int r, int workers,
                PyObject *progress, PyObject *region);
/* Adds _core.key_histogram, key_collect and key_values to the module; 0 or -1. */
int mm_keyhist_add(PyObject *module);

#endif
