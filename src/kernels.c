/* Selection kernels: exact order statistics of strided lanes (median, quantiles).
 *
 * Python hands over an array whose last r axes form one lane (the elements reduced
 * together) and whose first axes enumerate the lanes, plus the sorted ranks wanted in
 * every lane.  The kernels return the values at those ranks in numpy's sort order
 * (NaN last); mmarray/_stats.py turns them into numpy's exact results.
 *
 * Long lanes are solved one after the other by radix selection: a histogram of the
 * key's top digit over fixed chunks of the lane, spread over worker threads with
 * one histogram per thread merged after the join; then, for 32- and 64-bit keys,
 * filtered passes that either gather a small bucket into memory or histogram the
 * next 16 bits of a big one.  Many short lanes run in parallel across lanes, each
 * copied into a per-thread buffer and solved by an in-memory multi-select.
 *
 * The chunking never depends on the number of threads and every merge is a sum of
 * counts, so results do not depend on `workers`.  The calling thread waits with the
 * GIL released in short slices, runs Python's signal handlers and the progress
 * callback between them, and cancels the workers on an exception. */
#include "mmarray.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL MMARRAY_ARRAY_API
#include <numpy/arrayobject.h>

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#define MM_CHUNK ((npy_intp)1 << 20)        /* elements per task of a long lane */
#define MM_SHORT ((npy_intp)1 << 20)        /* lanes up to this length: one thread each */
#define MM_GATHER_ONE ((npy_intp)1 << 22)   /* a bucket this small is gathered */
#define MM_GATHER_ALL ((npy_intp)1 << 24)   /* keys gathered in one pass, all buckets */
#define MM_STAGE 64                         /* keys a thread stages before a gather write */
#define MM_HIST_BUDGET ((size_t)64 << 20)   /* bytes of narrowing histograms, all threads */
#define MM_PARALLEL_MIN ((npy_intp)1 << 16) /* fewer elements: run inline, GIL held */
#define MM_SPARSE 32                        /* fewer hits than 1 in this: branchy filter */
#define MM_SMALL_SELECT 4096                /* gathered buckets this small: introselect */
/* 16-bit long lanes of at least MM_WIN_MIN_CHUNKS chunks: every MM_WIN_STRIDE-th chunk
 * is histogrammed first, as a sample; if it shows where the wanted ranks lie, the other
 * chunks count only the keys in that window bin by bin (and the others as below or
 * above), which is a few times cheaper than a 65,536-bin histogram of every key. */
#define MM_WIN_STRIDE 32
#define MM_WIN_MIN_CHUNKS 64
#define MM_WIN_MAX_FRAC (1.0 / 32) /* a wider window (share of the sample): no window */
#define MM_POLL_NS 50000000L /* the calling thread wakes every 50 ms */

enum { T_GATHER = 1, T_HIST = 2 };
#define MM_NOSLOT INT32_MIN

/* One bucket of keys that holds some of the wanted ranks. */
typedef struct {
    uint64_t prefix;   /* the top 16*level bits of the keys in the bucket */
    int level;         /* digits known */
    int mode;          /* T_GATHER or T_HIST while active in a pass, else 0 */
    int slot;          /* T_HIST: histogram slot; T_GATHER: index of its fill counter */
    npy_intp count;    /* keys in the bucket */
    npy_intp base;     /* keys of the lane below the bucket */
    npy_intp r0, r1;   /* the lane's ranks (indexes into the sorted list) in the bucket */
    uint64_t *buf;     /* T_GATHER: the keys (a slice of the gather arena) */
} mm_target;

struct mm_filter {
    /* bitmap[L-1]: the last known digit of every active target at level L, so that a
     * key is looked at only if one of its digits matches (a few false positives) */
    uint64_t bitmap[3][65536 / 64];
    uint64_t rawmap[65536 / 64]; /* bitmap[0] over the stored values' top 16 bits */
    int deep;             /* targets at level 2 or 3 are active */
    int sparse;           /* under one key in MM_SPARSE is expected to hit */
    int32_t *slot1;       /* top digit of a level-1 target -> its gather slot (>= 0), or
                           * -1 - its index in active (histogrammed targets); other
                           * digits -> MM_NOSLOT */
    mm_target **active;   /* level-1 targets */
    mm_target **deeper;   /* targets at level 2 and 3 */
    int nactive, ndeeper;
    int W;
    uint64_t *slots; /* per thread: nslots histograms of 65536 counters */
    int nslots;
    atomic_llong *fill; /* per gathered target */
    uint64_t *arena;    /* the gathered targets' keys */
    mm_target **gathered; /* by fill index */
    int ngather;
    int tstride; /* staged counters per thread: ngather rounded up to a cache line */
    uint64_t *stage;   /* per thread and gathered target: MM_STAGE keys */
    int *staged;       /* per thread and gathered target: keys staged */
};
typedef struct mm_filter mm_filter;

/* Moves a thread's staged keys of gathered target g into the target's buffer: one
 * atomic add per MM_STAGE keys, so threads rarely touch the same counter. */
static void
flush_stage(mm_filter *f, int tid, int g)
{
    size_t idx = (size_t)tid * (size_t)f->tstride + (size_t)g;
    const mm_target *t = f->gathered[g];
    long long n = f->staged[idx];
    long long at = atomic_fetch_add_explicit(&f->fill[g], n, memory_order_relaxed);
    long long room = (long long)t->count - at;
    if (n > room) /* more keys than counted: the array changed (caught after the pass) */
        n = room > 0 ? room : 0;
    if (n > 0)
        memcpy(t->buf + at, f->stage + idx * MM_STAGE, (size_t)n * sizeof(uint64_t));
    f->staged[idx] = 0;
}

/* A key that passed the bitmap test but is not in a level-1 gathered target: finds its
 * target (a histogrammed one, or a deeper one) and stages or counts it. */
static void
mm_filter_other(mm_filter *f, int tid, uint64_t *stage, int *staged, uint64_t k)
{
    uint32_t top = (uint32_t)(k >> (f->W - 16));
    mm_target *t = NULL;
    int shift;
    if ((f->bitmap[0][top >> 6] >> (top & 63)) & 1u)
        t = f->active[-1 - f->slot1[top]];
    else {
        for (int j = 0; j < f->ndeeper; j++) {
            mm_target *d = f->deeper[j];
            if ((k >> (f->W - 16 * d->level)) == d->prefix) {
                t = d;
                break;
            }
        }
    }
    if (t == NULL)
        return;
    shift = f->W - 16 * t->level;
    if (t->mode == T_GATHER) {
        stage[(size_t)t->slot * MM_STAGE + (size_t)staged[t->slot]++] = k;
        if (staged[t->slot] == MM_STAGE)
            flush_stage(f, tid, t->slot);
    }
    else {
        size_t h = ((size_t)tid * (size_t)f->nslots + (size_t)t->slot) * 65536u;
        f->slots[h + ((k >> (shift - 16)) & 0xFFFFu)]++;
    }
}

/* A key that passed the bitmap test.  stage and staged are this thread's rows.  The
 * common case, a key of a level-1 gathered target, is staged here, inline. */
static inline void
mm_filter_hit(mm_filter *f, int tid, uint64_t *stage, int *staged, uint64_t k)
{
    int32_t c = f->slot1[(uint32_t)(k >> (f->W - 16))];
    if (c >= 0) {
        int n = staged[c];
        stage[(size_t)c * MM_STAGE + (size_t)n] = k;
        staged[c] = ++n;
        if (n == MM_STAGE)
            flush_stage(f, tid, c);
    }
    else
        mm_filter_other(f, tid, stage, staged, k);
}


#include "select_template.h"

/* ---- the dtype table ------------------------------------------------------- */

typedef struct {
    int W; /* key bits */
    int isfloat;
    void (*hist0)(const char *, npy_intp, npy_intp, uint32_t *);
    void (*filter)(const char *, npy_intp, npy_intp, mm_filter *, int);
    void (*load)(const char *, npy_intp, npy_intp, uint64_t *);
    npy_intp (*nans)(const char *, npy_intp, npy_intp);
    void (*store)(char *, uint64_t);
    void (*rawmap)(const uint64_t *, uint64_t *);
    uint32_t (*keytop)(uint32_t, unsigned);
    int wkx; /* 16-bit ints: the XOR that makes a stored value its key; else -1 (no window) */
} mm_type;

MM_KERNELS(bool, 8, key_bool, 0)
MM_KERNELS(u8, 8, key_u8, 0)
MM_KERNELS(i8, 8, key_i8, 0)
MM_KERNELS(u16, 16, key_u16, 0)
MM_KERNELS(i16, 16, key_i16, 0)
MM_KERNELS(f16, 16, key_f16, 0)
MM_KERNELS(u32, 32, key_u32, 0)
MM_KERNELS(i32, 32, key_i32, 0)
MM_KERNELS(f32, 32, key_f32, 0x7F80u)
MM_KERNELS(u64, 64, key_u64, 0)
MM_KERNELS(i64, 64, key_i64, 0)
MM_KERNELS(f64, 64, key_f64, 0x7FF0u)

#define MM_ROW(T, W, F, K) {W, F, hist0_##T, filter_##T, load_##T, nans_##T, store_##T,    \
                            rawmap_##T, keytop_##T, K}
static const mm_type mm_types[] = {
    MM_ROW(bool, 8, 0, -1),     MM_ROW(u8, 8, 0, -1),   MM_ROW(i8, 8, 0, -1),
    MM_ROW(u16, 16, 0, 0),      MM_ROW(i16, 16, 0, 0x8000), MM_ROW(f16, 16, 1, -1),
    MM_ROW(u32, 32, 0, -1),     MM_ROW(i32, 32, 0, -1), MM_ROW(f32, 32, 1, -1),
    MM_ROW(u64, 64, 0, -1),     MM_ROW(i64, 64, 0, -1), MM_ROW(f64, 64, 1, -1),
};
enum { D_BOOL, D_U8, D_I8, D_U16, D_I16, D_F16, D_U32, D_I32, D_F32, D_U64, D_I64, D_F64 };

/* The table row for a dtype, or NULL (byte-swapped, complex, object, ...). */
static const mm_type *
mm_type_of(PyArray_Descr *d)
{
    npy_intp size = PyDataType_ELSIZE(d);
    if (!PyArray_ISNBO(d->byteorder))
        return NULL;
    switch (d->kind) {
    case 'b':
        return size == 1 ? &mm_types[D_BOOL] : NULL;
    case 'u':
        return size == 1   ? &mm_types[D_U8]
               : size == 2 ? &mm_types[D_U16]
               : size == 4 ? &mm_types[D_U32]
               : size == 8 ? &mm_types[D_U64]
                           : NULL;
    case 'i':
        return size == 1   ? &mm_types[D_I8]
               : size == 2 ? &mm_types[D_I16]
               : size == 4 ? &mm_types[D_I32]
               : size == 8 ? &mm_types[D_I64]
                           : NULL;
    case 'f':
        return size == 2   ? &mm_types[D_F16]
               : size == 4 ? &mm_types[D_F32]
               : size == 8 ? &mm_types[D_F64]
                           : NULL;
    default:
        return NULL;
    }
}

/* ---- one call's state ---------------------------------------------------------- */

typedef struct mm_job mm_job;
typedef void (*mm_task)(mm_job *job, int tid, npy_intp task);

typedef struct {
    const mm_type *ty;
    const char *data;
    int ond, lnd; /* outer (lane-enumerating) and lane dimensions */
    npy_intp oshape[NPY_MAXDIMS], ostrides[NPY_MAXDIMS];
    npy_intp lshape[NPY_MAXDIMS], lstrides[NPY_MAXDIMS];
    npy_intp L, n; /* lanes, elements per lane */
    const npy_int64 *ranks;
    npy_intp m, rank_rows;
    char *out; /* (L, m) values, C order */
    npy_intp itemsize;
    int nthreads;
    PyObject *progress; /* borrowed, or NULL */
    PyObject *region;   /* borrowed Region under data (named in SIGBUS errors), or NULL */
    const char *glo, *ghi; /* the bytes the lanes span: SIGBUS there is caught */
    /* long lanes */
    const char *lane;
    int hbins; /* counters per thread in the first-digit histogram */
    uint32_t *h32;
    uint64_t *h64;
    npy_intp *since_flush;
    /* the window of a 16-bit long lane (MM_WIN_STRIDE) */
    npy_intp wsampled; /* sampled chunks: 0, MM_WIN_STRIDE, 2 * MM_WIN_STRIDE, ... */
    int wfull;         /* the other chunks too get the full histogram (no window) */
    uint32_t wlo, whi; /* the keys the other chunks count bin by bin */
    uint64_t *wout;    /* per thread, 8 apart: keys below the window, above it */
    double *wmean;     /* per sampled chunk: its mean key */
    mm_filter filt;
    uint64_t *outk; /* keys of the current long lane's ranks */
    /* short lanes */
    uint64_t **tbuf;
    npy_intp lanes_per_task;
    /* NaN counts */
    npy_intp tasks_per_lane;
    npy_intp *partial;
} mm_sel;

struct mm_job {
    mm_sel *s;
    mm_task fn;
    npy_intp ntasks;
    atomic_llong next;
    atomic_llong done;
    atomic_int cancel;
    atomic_int nomem;
    void *_Atomic fault;     /* the first SIGBUS address, NULL if none */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int running;
};

static const char *
lane_ptr(const mm_sel *s, npy_intp l)
{
    const char *p = s->data;
    for (int d = s->ond - 1; d >= 0; d--) {
        p += (l % s->oshape[d]) * s->ostrides[d];
        l /= s->oshape[d];
    }
    return p;
}

typedef void (*mm_run)(void *arg, const char *p, npy_intp cnt, npy_intp st);

/* Calls fn on the strided runs that make up elements [i0, i1) of a lane (C order). */
static void
for_runs(const mm_sel *s, const char *base, npy_intp i0, npy_intp i1, mm_run fn, void *arg)
{
    npy_intp idx[NPY_MAXDIMS];
    int nd = s->lnd;
    npy_intp rem = i0, left = i1 - i0;
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = rem % s->lshape[d];
        rem /= s->lshape[d];
    }
    while (left > 0) {
        const char *p = base;
        npy_intp run = s->lshape[nd - 1] - idx[nd - 1];
        for (int d = 0; d < nd; d++)
            p += idx[d] * s->lstrides[d];
        if (run > left)
            run = left;
        fn(arg, p, run, s->lstrides[nd - 1]);
        left -= run;
        idx[nd - 1] += run;
        for (int d = nd - 1; d > 0 && idx[d] == s->lshape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
}

/* ---- the worker pool ----------------------------------------------------------- */

typedef struct {
    mm_job *job;
    int tid;
} mm_thread_arg;

static void
job_loop(void *p)
{
    const mm_thread_arg *a = p;
    mm_job *job = a->job;
    for (;;) {
        long long t;
        if (atomic_load_explicit(&job->cancel, memory_order_relaxed))
            break;
        t = atomic_fetch_add(&job->next, 1);
        if (t >= job->ntasks)
            break;
        job->fn(job, a->tid, (npy_intp)t);
        atomic_fetch_add(&job->done, 1);
    }
}

/* Runs tasks until none is left, under a SIGBUS guard over the array's bytes: a fault
 * (a truncated file) cancels the job and records the first fault address. */
static void
job_work(mm_job *job, int tid)
{
    mm_thread_arg a = {job, tid};
    void *fault = NULL;
    if (mm_guarded(job_loop, &a, job->s->glo, job->s->ghi, &fault) < 0) {
        void *none = NULL;
        atomic_compare_exchange_strong(&job->fault, &none, fault);
        atomic_store(&job->cancel, 1);
    }
}

static void *
thread_main(void *p)
{
    mm_thread_arg *a = p;
    job_work(a->job, a->tid);
    pthread_mutex_lock(&a->job->mu);
    a->job->running--;
    pthread_cond_signal(&a->job->cv);
    pthread_mutex_unlock(&a->job->mu);
    return NULL;
}

static void
job_fail_nomem(mm_job *job)
{
    atomic_store(&job->nomem, 1);
    atomic_store(&job->cancel, 1);
}

/* Runs fn on tasks 0..ntasks-1.  Small jobs run inline with the GIL held; others on
 * worker threads while this thread polls for signals and reports progress as
 * pbase + pspan * (fraction of tasks done).  Returns 0, or -1 with an exception set
 * (the workers have stopped by then). */
static int
run_job(mm_sel *s, mm_task fn, npy_intp ntasks, npy_intp nelems, double pbase, double pspan)
{
    mm_job job;
    pthread_t th[MM_MAX_WORKERS];
    mm_thread_arg targ[MM_MAX_WORKERS];
    int started = 0, failed = 0, nth = s->nthreads, rc = -1;

    memset(&job, 0, sizeof(job));
    job.s = s;
    job.fn = fn;
    job.ntasks = ntasks;
    atomic_init(&job.next, 0);
    atomic_init(&job.done, 0);
    atomic_init(&job.cancel, 0);
    atomic_init(&job.nomem, 0);
    atomic_init(&job.fault, NULL);
    if (ntasks <= 0) {
        rc = 0;
        goto done;
    }
    if (nelems < MM_PARALLEL_MIN) {
        job_work(&job, 0);
        goto finish;
    }
    if (nth > ntasks)
        nth = (int)ntasks;
    pthread_mutex_init(&job.mu, NULL);
    pthread_cond_init(&job.cv, NULL);
    job.running = 0;
    for (int i = 0; i < nth; i++) {
        targ[i].job = &job;
        targ[i].tid = i;
        pthread_mutex_lock(&job.mu);
        job.running++;
        pthread_mutex_unlock(&job.mu);
        if (pthread_create(&th[i], NULL, thread_main, &targ[i]) != 0) {
            pthread_mutex_lock(&job.mu);
            job.running--;
            pthread_mutex_unlock(&job.mu);
            break;
        }
        started++;
    }
    if (started == 0) {
        /* No thread could start: do the work here, still without the GIL. */
        Py_BEGIN_ALLOW_THREADS
        job_work(&job, 0);
        Py_END_ALLOW_THREADS
    }
    for (;;) {
        int finished;
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts;
        pthread_mutex_lock(&job.mu);
        if (job.running > 0) {
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += MM_POLL_NS;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec += 1;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&job.cv, &job.mu, &ts);
        }
        finished = job.running == 0;
        pthread_mutex_unlock(&job.mu);
        Py_END_ALLOW_THREADS
        if (finished)
            break;
        if (!failed) {
            if (PyErr_CheckSignals() < 0)
                failed = 1;
            else if (s->progress != NULL) {
                double f = (double)atomic_load(&job.done) / (double)ntasks;
                PyObject *r = PyObject_CallFunction(s->progress, "d", pbase + pspan * f);
                if (r == NULL)
                    failed = 1;
                Py_XDECREF(r);
            }
            if (failed)
                atomic_store(&job.cancel, 1);
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_cond_destroy(&job.cv);
    pthread_mutex_destroy(&job.mu);
    if (failed)
        goto done;
finish:
    if (atomic_load(&job.fault) != NULL) {
        mm_set_fault_error(s->region, atomic_load(&job.fault), 0);
        goto done;
    }
    if (atomic_load(&job.nomem)) {
        PyErr_NoMemory();
        goto done;
    }
    if (s->progress != NULL && nelems >= MM_PARALLEL_MIN) {
        PyObject *r = PyObject_CallFunction(s->progress, "d", pbase + pspan);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    rc = 0;
done:
    return rc;
}

/* ---- in-memory selection on keys --------------------------------------------------- */

static int
cmp_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Reorders a[lo:hi] so that a[k] holds the key of rank k, smaller keys before it and
 * larger after (introselect: median of three, falls back to a sort if unlucky). */
static void
nth_key(uint64_t *a, npy_intp lo, npy_intp hi, npy_intp k)
{
    int depth = 0;
    while (hi - lo > 16) {
        npy_intp mid = lo + (hi - lo) / 2, i = lo, j = hi - 1;
        uint64_t x = a[lo], y = a[mid], z = a[hi - 1], pv;
        if (++depth > 96) {
            qsort(a + lo, (size_t)(hi - lo), sizeof(uint64_t), cmp_key);
            return;
        }
        pv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        while (i <= j) {
            while (a[i] < pv)
                i++;
            while (a[j] > pv)
                j--;
            if (i <= j) {
                uint64_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j + 1;
        else if (k >= i)
            lo = i;
        else
            return;
    }
    for (npy_intp i = lo + 1; i < hi; i++) {
        uint64_t v = a[i];
        npy_intp j = i;
        for (; j > lo && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

/* The keys of ranks rk[r0:r1] - off (sorted) among a[lo:hi] go to outk[r0:r1].
 * Recurses only on the ranks left of the middle one (fewer than half), so the depth is
 * at most log2(r1 - r0). */
/* NOLINTBEGIN(misc-no-recursion): the depth is bounded, as said above */
static void
multiselect(uint64_t *a, npy_intp lo, npy_intp hi, const npy_int64 *rk, npy_intp off,
            npy_intp r0, npy_intp r1, uint64_t *outk)
{
    while (r0 < r1) {
        npy_intp mid = r0 + (r1 - r0) / 2, k = (npy_intp)rk[mid] - off;
        npy_intp a0 = mid, a1 = mid + 1;
        nth_key(a, lo, hi, k);
        while (a0 > r0 && rk[a0 - 1] == rk[mid])
            a0--;
        while (a1 < r1 && rk[a1] == rk[mid])
            a1++;
        for (npy_intp i = a0; i < a1; i++)
            outk[i] = a[k];
        multiselect(a, lo, k, rk, off, r0, a0, outk);
        lo = k + 1;
        r0 = a1;
    }
}
/* NOLINTEND(misc-no-recursion) */

/* One run of ranks that fall into the same digit of a bucket. */
typedef struct {
    uint32_t digit;
    npy_intp count, base; /* keys with this digit; keys below them in the lane */
    npy_intp r0, r1;
} mm_group;


/* The keys of ranks rk[r0:r1] - off (sorted) among a[0:n), whose bits above the low
 * `bits` are all equal, go to outk[r0:r1].  Large buckets are narrowed in memory by
 * the next digit, up to 16 bits with about 16 keys a bin (a histogram, then the keys
 * of the wanted digits moved to the front), which costs a few sequential passes where
 * introselect would take many branchy ones.  Returns -1 only if a table could not be allocated (outk then holds
 * nothing useful; the caller falls back to multiselect).
 * The recursion consumes at least 8 of the 64 key bits a level: at most 8 levels. */
/* NOLINTBEGIN(misc-no-recursion) */
static int
bucket_select(uint64_t *a, npy_intp n, int bits, const npy_int64 *rk, npy_intp off,
              npy_intp r0, npy_intp r1, uint64_t *outk)
{
    int w = bits < 16 ? bits : 16, sh, rc = -1;
    uint32_t nb, b = 0;
    uint32_t *hist = NULL;
    mm_group *grp = NULL;
    npy_intp ng = 0, cum = off, start = 0;

    if (n <= MM_SMALL_SELECT || bits <= 0) {
        multiselect(a, 0, n, rk, off, r0, r1, outk);
        rc = 0;
        goto done;
    }
    while (w > 8 && ((npy_intp)1 << (w + 4)) > n) /* about 16 keys a bin: a small table */
        w--;
    sh = bits - w;
    nb = (uint32_t)1 << w;
    hist = calloc(nb, sizeof(uint32_t));
    grp = malloc((size_t)(r1 - r0) * sizeof(mm_group));
    if (hist == NULL || grp == NULL)
        goto done;
    for (npy_intp i = 0; i < n; i++)
        hist[(a[i] >> sh) & (nb - 1)]++;
    for (npy_intp r = r0; r < r1;) {
        mm_group *g = &grp[ng++];
        while (b < nb && cum + (npy_intp)hist[b] <= rk[r])
            cum += (npy_intp)hist[b++];
        if (b == nb) /* the keys do not hold the ranks: let introselect say */
            goto done;
        g->digit = b;
        g->count = (npy_intp)hist[b];
        g->base = cum;
        g->r0 = r;
        while (r < r1 && rk[r] < cum + (npy_intp)hist[b])
            r++;
        g->r1 = r;
    }
    free(hist);
    hist = NULL;
    /* the keys of each group to the front, in digit order, then each group alone */
    for (npy_intp j = 0; j < ng; j++) {
        mm_group *g = &grp[j];
        npy_intp at = start;
        for (npy_intp i = start; i < n; i++) {
            uint64_t k = a[i];
            if (((k >> sh) & (nb - 1)) == g->digit) {
                a[i] = a[at];
                a[at++] = k;
            }
        }
        if (bucket_select(a + start, g->count, sh, rk, g->base, g->r0, g->r1, outk) < 0)
            multiselect(a + start, 0, g->count, rk, g->base, g->r0, g->r1, outk);
        start = at;
    }
    rc = 0;
done:
    free(hist);
    free(grp);
    return rc;
}
/* NOLINTEND(misc-no-recursion) */

/* ---- the window count of 16-bit keys ------------------------------------------------- */

#if defined(__SSE2__)
/* The sum of the eight unsigned 16-bit lanes of v. */
static uint64_t
hsum_u16(__m128i v)
{
    const __m128i z = _mm_setzero_si128();
    uint32_t w[4];
    _mm_storeu_si128((__m128i *)w, _mm_add_epi32(_mm_unpacklo_epi16(v, z),
                                                 _mm_unpackhi_epi16(v, z)));
    return (uint64_t)w[0] + w[1] + w[2] + w[3];
}
#endif

/* Counts the keys (stored value ^ kx) of one strided run of 16-bit values: a key in
 * [lo, hi] in its bin of h, the others in wo[0] (below lo) or wo[1] (above hi).  On
 * contiguous runs SSE2 compares 16 values at a time and only the rare keys inside the
 * window touch the table. */
static void
win_count(const char *p, npy_intp cnt, npy_intp st, unsigned kx, uint32_t lo, uint32_t hi,
          uint32_t *h, uint64_t *wo)
{
    uint64_t below = 0, above = 0;
    const uint32_t width = hi - lo;
    npy_intp i = 0;
#if defined(__SSE2__)
    if (st == 2) {
        /* signed compares of the keys with their top bit flipped */
        const __m128i vx = _mm_set1_epi16((short)(int16_t)(uint16_t)(kx ^ 0x8000u));
        const __m128i vlo = _mm_set1_epi16((short)(int16_t)(uint16_t)(lo ^ 0x8000u));
        const __m128i vhi = _mm_set1_epi16((short)(int16_t)(uint16_t)(hi ^ 0x8000u));
        while (cnt - i >= 16) {
            /* at most 8192 steps of two per 16-bit lane counter before it is summed */
            npy_intp steps = (cnt - i) / 16 < 8192 ? (cnt - i) / 16 : 8192;
            npy_intp end = i + 16 * steps;
            __m128i nlo = _mm_setzero_si128(), nhi = _mm_setzero_si128();
            for (; i < end; i += 16) {
                __m128i v0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i)), vx);
                __m128i v1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i + 16)), vx);
                __m128i l0 = _mm_cmpgt_epi16(vlo, v0), g0 = _mm_cmpgt_epi16(v0, vhi);
                __m128i l1 = _mm_cmpgt_epi16(vlo, v1), g1 = _mm_cmpgt_epi16(v1, vhi);
                uint32_t in;
                nlo = _mm_sub_epi16(_mm_sub_epi16(nlo, l0), l1);
                nhi = _mm_sub_epi16(_mm_sub_epi16(nhi, g0), g1);
                in = ~((uint32_t)_mm_movemask_epi8(_mm_or_si128(l0, g0)) |
                       (uint32_t)_mm_movemask_epi8(_mm_or_si128(l1, g1)) << 16) &
                     0xAAAAAAAAu; /* one bit per value inside the window */
                while (in != 0) {
                    uint16_t v;
                    memcpy(&v, p + 2 * (i + (npy_intp)((unsigned)__builtin_ctz(in) >> 1)), 2);
                    h[(uint16_t)(v ^ kx)]++;
                    in &= in - 1;
                }
            }
            below += hsum_u16(nlo);
            above += hsum_u16(nhi);
        }
    }
#endif
    for (; i < cnt; i++) {
        uint16_t v;
        uint32_t k;
        memcpy(&v, p + i * st, 2);
        k = (uint16_t)(v ^ kx);
        below += k < lo;
        above += k > hi;
        if (k - lo <= width)
            h[k]++;
    }
    wo[0] += below;
    wo[1] += above;
}

/* ---- tasks ------------------------------------------------------------------------ */

typedef struct {
    mm_sel *s;
    int tid;
} mm_run_arg;

static void
run_hist0(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_run_arg *a = arg;
    a->s->ty->hist0(p, cnt, st, a->s->h32 + (size_t)a->tid * a->s->hbins);
}

static void
run_filter(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_run_arg *a = arg;
    a->s->ty->filter(p, cnt, st, &a->s->filt, a->tid);
}

typedef struct {
    const mm_type *ty;
    uint64_t *cursor;
    npy_intp nans;
} mm_load_arg;

static void
run_load(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_load_arg *a = arg;
    a->ty->load(p, cnt, st, a->cursor);
    a->cursor += cnt;
}

static void
run_nans(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_load_arg *a = arg;
    a->nans += a->ty->nans(p, cnt, st);
}

/* Elements [*i0, *i1) of the lane: chunk c. */
static void
chunk_bounds(const mm_sel *s, npy_intp c, npy_intp *i0, npy_intp *i1)
{
    *i0 = c * MM_CHUNK;
    *i1 = s->n - *i0 < MM_CHUNK ? s->n : *i0 + MM_CHUNK;
}

/* Makes room for cnt more counts in this thread's 32-bit first-digit counters: moves
 * them to the 64-bit ones before they could overflow. */
static void
h32_reserve(mm_sel *s, int tid, npy_intp cnt)
{
    if (s->since_flush[tid] > (npy_intp)UINT32_MAX - cnt) {
        uint32_t *h = s->h32 + (size_t)tid * s->hbins;
        uint64_t *g = s->h64 + (size_t)tid * s->hbins;
        for (int b = 0; b < s->hbins; b++) {
            g[b] += h[b];
            h[b] = 0;
        }
        s->since_flush[tid] = 0;
    }
    s->since_flush[tid] += cnt;
}

static void
hist0_chunk(mm_sel *s, int tid, npy_intp c)
{
    npy_intp i0, i1;
    mm_run_arg a = {s, tid};
    chunk_bounds(s, c, &i0, &i1);
    h32_reserve(s, tid, i1 - i0);
    for_runs(s, s->lane, i0, i1, run_hist0, &a);
}

static void
task_hist0(mm_job *job, int tid, npy_intp t)
{
    hist0_chunk(job->s, tid, t);
}

typedef struct {
    unsigned kx;
    uint64_t sum;
} mm_keysum_arg;

static void
run_keysum(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_keysum_arg *a = arg;
    uint64_t sum = 0;
    npy_intp i = 0;
#if defined(__SSE2__)
    if (st == 2) { /* pairs of keys (top bit flipped: signed) summed into 32-bit lanes */
        const __m128i vx = _mm_set1_epi16((short)(int16_t)(uint16_t)(a->kx ^ 0x8000u));
        const __m128i one = _mm_set1_epi16(1);
        int64_t ssum = 0;
        while (cnt - i >= 8) {
            /* at most 16384 steps: a lane's sum stays within 16384 * 2 * 32768 */
            npy_intp steps = (cnt - i) / 8 < 16384 ? (cnt - i) / 8 : 16384;
            npy_intp end = i + 8 * steps;
            int32_t w[4];
            __m128i acc = _mm_setzero_si128();
            for (; i < end; i += 8) {
                __m128i v = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(p + 2 * i)), vx);
                acc = _mm_add_epi32(acc, _mm_madd_epi16(v, one));
            }
            _mm_storeu_si128((__m128i *)w, acc);
            ssum += (int64_t)w[0] + w[1] + w[2] + w[3];
        }
        sum = (uint64_t)(ssum + (int64_t)i * 32768);
    }
#endif
    for (; i < cnt; i++) {
        uint16_t v;
        memcpy(&v, p + i * st, 2);
        sum += (uint16_t)(v ^ a->kx);
    }
    a->sum += sum;
}

/* A sampled chunk of a windowed lane: its full histogram, and its mean key. */
static void
task_wsample(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->s;
    npy_intp c = t * MM_WIN_STRIDE, i0, i1;
    mm_keysum_arg a = {(unsigned)s->ty->wkx, 0};
    chunk_bounds(s, c, &i0, &i1);
    hist0_chunk(s, tid, c);
    for_runs(s, s->lane, i0, i1, run_keysum, &a);
    s->wmean[t] = (double)a.sum / (double)(i1 - i0);
}

static void
run_wcount(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    mm_run_arg *a = arg;
    const mm_sel *s = a->s;
    win_count(p, cnt, st, (unsigned)s->ty->wkx, s->wlo, s->whi,
              s->h32 + (size_t)a->tid * s->hbins, s->wout + (size_t)a->tid * 8);
}

/* Task t of the chunks that were not sampled: the window count, or (wfull) the full
 * histogram. */
static void
task_wrest(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->s;
    npy_intp c = t / (MM_WIN_STRIDE - 1) * MM_WIN_STRIDE + 1 + t % (MM_WIN_STRIDE - 1), i0, i1;
    mm_run_arg a = {s, tid};
    if (s->wfull)
        hist0_chunk(s, tid, c);
    else {
        chunk_bounds(s, c, &i0, &i1);
        h32_reserve(s, tid, i1 - i0);
        for_runs(s, s->lane, i0, i1, run_wcount, &a);
    }
}

static void
task_filter(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->s;
    npy_intp i0 = t * MM_CHUNK, i1 = s->n - i0 < MM_CHUNK ? s->n : i0 + MM_CHUNK;
    mm_run_arg a = {s, tid};
    for_runs(s, s->lane, i0, i1, run_filter, &a);
    for (int g = 0; g < s->filt.ngather; g++)
        if (s->filt.staged[(size_t)tid * (size_t)s->filt.tstride + (size_t)g] > 0)
            flush_stage(&s->filt, tid, g);
}

static void
task_gselect(mm_job *job, int tid, npy_intp g)
{
    mm_sel *s = job->s;
    mm_target *t = s->filt.gathered[g];
    (void)tid;
    if (bucket_select(t->buf, t->count, s->ty->W - 16 * t->level, s->ranks, t->base, t->r0,
                      t->r1, s->outk) < 0)
        multiselect(t->buf, 0, t->count, s->ranks, t->base, t->r0, t->r1, s->outk);
}

static void
task_short(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->s;
    npy_intp l0 = t * s->lanes_per_task;
    npy_intp l1 = s->L - l0 < s->lanes_per_task ? s->L : l0 + s->lanes_per_task;
    uint64_t *keys = s->tbuf[tid], *outk;
    if (keys == NULL) {
        keys = malloc(((size_t)s->n + (size_t)s->m) * sizeof(uint64_t));
        if (keys == NULL) {
            job_fail_nomem(job);
            return;
        }
        s->tbuf[tid] = keys;
    }
    outk = keys + s->n;
    for (npy_intp l = l0; l < l1; l++) {
        const npy_int64 *rk = s->ranks + (s->rank_rows == 1 ? 0 : l * s->m);
        mm_load_arg a = {s->ty, keys, 0};
        char *o = s->out + (size_t)l * (size_t)s->m * (size_t)s->itemsize;
        for_runs(s, lane_ptr(s, l), 0, s->n, run_load, &a);
        multiselect(keys, 0, s->n, rk, 0, 0, s->m, outk);
        for (npy_intp i = 0; i < s->m; i++)
            s->ty->store(o + i * s->itemsize, outk[i]);
    }
}

static void
task_nans(mm_job *job, int tid, npy_intp t)
{
    mm_sel *s = job->s;
    npy_intp l = t / s->tasks_per_lane, c = t % s->tasks_per_lane;
    npy_intp i0 = c * MM_CHUNK, i1 = s->n - i0 < MM_CHUNK ? s->n : i0 + MM_CHUNK;
    mm_load_arg a = {s->ty, NULL, 0};
    (void)tid;
    for_runs(s, lane_ptr(s, l), i0, i1, run_nans, &a);
    s->partial[t] = a.nans;
}

/* ---- one long lane ------------------------------------------------------------------ */

static void
set_changed_error(void)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "the array changed while its order statistics were computed");
}

/* Splits target t (whose histogram of the next digit is hist) into the buckets that
 * hold its ranks: resolved keys go to outk, unresolved buckets are appended to pend. */
static int
split_target(const mm_sel *s, const mm_target *t, const uint64_t *hist, int nbins,
             int levels, uint64_t *outk, mm_target *pend, npy_intp *npend)
{
    const npy_int64 *rk = s->ranks;
    npy_intp cum = t->base, total = 0;
    int b = 0;
    for (int i = 0; i < nbins; i++)
        total += (npy_intp)hist[i];
    if (total != t->count) {
        set_changed_error();
        return -1;
    }
    for (npy_intp r = t->r0; r < t->r1;) {
        npy_intp r1 = r + 1;
        while (b < nbins && cum + (npy_intp)hist[b] <= rk[r]) {
            cum += (npy_intp)hist[b];
            b++;
        }
        if (b >= nbins) {
            set_changed_error();
            return -1;
        }
        while (r1 < t->r1 && rk[r1] < cum + (npy_intp)hist[b])
            r1++;
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
            c->count = (npy_intp)hist[b];
            c->base = cum;
            c->r0 = r;
            c->r1 = r1;
        }
        r = r1;
    }
    return 0;
}

/* ---- the gather arena ---------------------------------------------------------------- */

/* The gathered keys of one pass live in one anonymous mapping (at most MM_GATHER_ALL
 * keys).  Fresh pages cost a fault and a zeroed page each, which for ten million keys
 * is as much as the gathering itself, so the mapping is kept for the next call: one
 * mapping at most, taken and put back with an atomic exchange (no lock a fork could
 * catch held), its pages given back lazily (MADV_FREE: the kernel reclaims them under
 * memory pressure, a later write reuses them if it has not).  Its first page holds
 * the mapping's size and is never lazily freed. */
typedef struct {
    size_t bytes; /* the whole mapping, this page included */
} mm_arena_head;

static _Atomic(mm_arena_head *) mm_arena_cache = NULL;

static void
arena_unmap(mm_arena_head *h)
{
    if (h != NULL)
        munmap(h, h->bytes);
}

/* A buffer of at least `bytes` bytes, or NULL (no memory). */
static uint64_t *
arena_get(size_t bytes)
{
    size_t page = mm_page_size(), total;
    mm_arena_head *h = atomic_exchange(&mm_arena_cache, NULL);
    uint64_t *keys = NULL;
    void *p;
    if (h != NULL && h->bytes - page >= bytes) {
        keys = (uint64_t *)(void *)((char *)h + page);
        goto done;
    }
    arena_unmap(h);
    total = page + ((bytes + page - 1) & ~(page - 1));
    p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        goto done;
    h = p;
    h->bytes = total;
    keys = (uint64_t *)(void *)((char *)p + page);
done:
    return keys;
}

/* Gives back a buffer from arena_get (NULL is ignored): kept if the cache is empty. */
static void
arena_put(uint64_t *keys)
{
    size_t page = mm_page_size();
    mm_arena_head *h, *none = NULL;
    if (keys == NULL)
        return;
    h = (mm_arena_head *)(void *)((char *)keys - page);
#ifdef MADV_FREE
    (void)madvise(keys, h->bytes - page, MADV_FREE); /* a hint: failure is harmless */
#endif
    if (!atomic_compare_exchange_strong(&mm_arena_cache, &none, h))
        arena_unmap(h);
}

/* Frees what one pass of select_long allocated: the targets' gather buffers and the
 * filter's tables. Safe to call twice. */
static void
pass_free(mm_filter *f, mm_target *pend, npy_intp npend)
{
    for (npy_intp i = 0; i < npend; i++)
        pend[i].buf = NULL;
    arena_put(f->arena);
    f->arena = NULL;
    free(f->slots);
    free(f->fill);
    free(f->gathered);
    free(f->stage);
    free(f->staged);
    f->gathered = NULL;
    f->stage = NULL;
    f->staged = NULL;
    f->slots = NULL;
    f->fill = NULL;
}

/* The first-digit histograms of all threads, summed into total (by key digit). */
static void
merge_hist0(const mm_sel *s, uint64_t *total)
{
    const mm_type *ty = s->ty;
    int W = ty->W, nbins = W == 8 ? 256 : 65536;
    memset(total, 0, (size_t)nbins * sizeof(uint64_t));
    for (int b = 0; b < nbins; b++) { /* 32/64 bits: bins of stored top bits to key digits */
        uint64_t c = 0;
        for (int t = 0; t < s->nthreads; t++)
            for (int j = b; j < s->hbins; j += nbins)
                c += s->h64[(size_t)t * s->hbins + j] + s->h32[(size_t)t * s->hbins + j];
        total[W > 16 ? ty->keytop((uint32_t)b, 0) : (uint32_t)b] += c;
    }
}

static void
hist0_reset(mm_sel *s)
{
    memset(s->h32, 0, (size_t)s->nthreads * (size_t)s->hbins * sizeof(uint32_t));
    memset(s->h64, 0, (size_t)s->nthreads * (size_t)s->hbins * sizeof(uint64_t));
    memset(s->since_flush, 0, (size_t)s->nthreads * sizeof(npy_intp));
}

/* Chooses the window of a 16-bit lane from its sample: hist holds the ns keys of the
 * sampled chunks, s->wmean their chunks' mean keys.  The window runs from the sample's
 * quantile a little below the lowest wanted rank to the one a little above the highest
 * (8 standard errors of a sample quantile, and 1/8192 more).  Returns 1 with the window
 * in s->wlo, s->whi, or 0 where a window would not pay: it would hold more than
 * MM_WIN_MAX_FRAC of the sample, or the chunks' means differ more than those of a
 * shuffled lane would (sorted or drifting data, whose sample says little about the
 * chunks between). */
static int
win_choose(mm_sel *s, const uint64_t *hist, npy_intp ns)
{
    double mean = 0.0, var = 0.0, nsd = (double)ns, delta, rlo, rhi;
    npy_intp slo, shi, cum = 0, inside = 0;
    int ok = 0, b, klo = -1, khi = -1;
    for (b = 0; b < 65536; b++)
        mean += (double)b * (double)hist[b];
    mean /= nsd;
    for (b = 0; b < 65536; b++)
        var += (double)hist[b] * ((double)b - mean) * ((double)b - mean);
    var /= nsd;
    for (npy_intp t = 0; t < s->wsampled; t++) {
        npy_intp i0, i1;
        double d = s->wmean[t] - mean;
        chunk_bounds(s, t * MM_WIN_STRIDE, &i0, &i1);
        if (d * d > 36.0 * var / (double)(i1 - i0) + 1e-9)
            goto done;
    }
    delta = 4.0 / sqrt(nsd) + 1.0 / 8192;
    rlo = ((double)s->ranks[0] + 0.5) / (double)s->n - delta;
    rhi = ((double)s->ranks[s->m - 1] + 0.5) / (double)s->n + delta;
    slo = rlo <= 0.0 ? 0 : (npy_intp)(rlo * nsd);
    shi = rhi >= 1.0 ? ns - 1 : (npy_intp)(rhi * nsd);
    if (slo > ns - 1)
        slo = ns - 1;
    if (shi > ns - 1)
        shi = ns - 1;
    for (b = 0; b < 65536 && khi < 0; b++) { /* the keys of sample ranks slo and shi */
        cum += (npy_intp)hist[b];
        if (klo < 0 && cum > slo)
            klo = b;
        if (cum > shi)
            khi = b;
    }
    if (klo < 0 || khi < 0)
        goto done;
    for (b = klo; b <= khi; b++)
        inside += (npy_intp)hist[b];
    if ((double)inside > MM_WIN_MAX_FRAC * nsd)
        goto done;
    s->wlo = (uint32_t)klo;
    s->whi = (uint32_t)khi;
    ok = 1;
done:
    return ok;
}

/* Lanes that took the windowed first pass: sampled, counted through a window, and
 * missed by it (read by window_counts, for the tests). */
static atomic_llong mm_win_sampled, mm_win_windowed, mm_win_missed;

/* First digits of a long 16-bit lane by the window: the sampled chunks histogrammed,
 * then the others counted through the window the sample gives (or histogrammed too,
 * where it gives none).  Fills total and outk like the plain pass.  A wanted rank the
 * window missed (the sample misled) costs one more pass, the plain one.  progress runs
 * from pb over ps. */
static int
first_digit_window(mm_sel *s, npy_intp ntasks, uint64_t *total, uint64_t *outk,
                   mm_target *root, mm_target *pend, npy_intp *npend, double pb, double ps)
{
    int rc = -1, win = 0;
    npy_intp ns = 0;
    s->wsampled = (ntasks + MM_WIN_STRIDE - 1) / MM_WIN_STRIDE;
    s->wmean = malloc((size_t)s->wsampled * sizeof(double));
    s->wout = calloc((size_t)s->nthreads * 8u, sizeof(uint64_t));
    if (s->wmean == NULL || s->wout == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (npy_intp t = 0; t < s->wsampled; t++) {
        npy_intp i0, i1;
        chunk_bounds(s, t * MM_WIN_STRIDE, &i0, &i1);
        ns += i1 - i0;
    }
    hist0_reset(s);
    atomic_fetch_add(&mm_win_sampled, 1);
    if (run_job(s, task_wsample, s->wsampled, ns, pb, ps * 0.1) < 0)
        goto done;
    merge_hist0(s, total);
    win = win_choose(s, total, ns);
    s->wfull = !win;
    if (win)
        atomic_fetch_add(&mm_win_windowed, 1);
    if (run_job(s, task_wrest, ntasks - s->wsampled, s->n - ns, pb + ps * 0.1, ps * 0.9) < 0)
        goto done;
    merge_hist0(s, total);
    if (win) { /* the keys outside the window, lumped at the ends: the sums stay exact */
        for (int t = 0; t < s->nthreads; t++) {
            total[0] += s->wout[(size_t)t * 8];
            total[65535] += s->wout[(size_t)t * 8 + 1];
        }
    }
    if (split_target(s, root, total, 65536, 1, outk, pend, npend) < 0)
        goto done;
    for (npy_intp i = 0; win && i < s->m; i++) {
        if (outk[i] < s->wlo || outk[i] > s->whi) { /* missed: the plain pass */
            atomic_fetch_add(&mm_win_missed, 1);
            hist0_reset(s);
            if (run_job(s, task_hist0, ntasks, s->n, pb + ps, 0.0) < 0)
                goto done;
            merge_hist0(s, total);
            if (split_target(s, root, total, 65536, 1, outk, pend, npend) < 0)
                goto done;
            break;
        }
    }
    rc = 0;
done:
    free(s->wmean);
    free(s->wout);
    s->wmean = NULL;
    s->wout = NULL;
    return rc;
}

static int
select_long(mm_sel *s, npy_intp l, uint64_t *outk)
{
    const mm_type *ty = s->ty;
    int W = ty->W, nbins = W == 8 ? 256 : 65536, levels = W == 8 ? 1 : W / 16;
    int nth = s->nthreads, rc = -1, pass = 1;
    npy_intp ntasks = (s->n + MM_CHUNK - 1) / MM_CHUNK, npend = 0, nnext = 0;
    uint64_t *total = NULL;
    mm_target *pend = NULL, *next = NULL, root;
    mm_filter *f = &s->filt;
    const double lw = 1.0 / (double)s->L, lb = (double)l * lw;
    int maxslots = (int)(MM_HIST_BUDGET / ((size_t)nth * 65536u * sizeof(uint64_t)));

    if (maxslots < 1)
        maxslots = 1;
    s->lane = lane_ptr(s, l);
    total = calloc((size_t)nbins, sizeof(uint64_t));
    pend = calloc((size_t)s->m, sizeof(mm_target));
    next = calloc((size_t)s->m, sizeof(mm_target));
    if (total == NULL || pend == NULL || next == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    /* pass 0: histogram of the first digit */
    memset(&root, 0, sizeof(root));
    root.count = s->n;
    root.r1 = s->m;
    if (W == 16 && ty->wkx >= 0 && ntasks >= MM_WIN_MIN_CHUNKS) {
        if (first_digit_window(s, ntasks, total, outk, &root, pend, &npend, lb, lw * 0.6) < 0)
            goto done;
    }
    else {
        hist0_reset(s);
        if (run_job(s, task_hist0, ntasks, s->n, lb, lw * 0.6) < 0)
            goto done;
        merge_hist0(s, total);
        if (split_target(s, &root, total, nbins, levels, outk, pend, &npend) < 0)
            goto done;
    }

    /* later passes: gather small buckets, histogram the next digit of big ones */
    while (npend > 0) {
        npy_intp gathered = 0, hits = 0;
        int nslots = 0, ngather = 0;
        uint32_t digit;
        f->nactive = 0;
        f->ndeeper = 0;
        memset(f->bitmap, 0, sizeof(f->bitmap));
        for (int d = 0; d < 65536; d++)
            f->slot1[d] = MM_NOSLOT;
        for (npy_intp i = 0; i < npend; i++) {
            mm_target *t = &pend[i];
            t->mode = 0;
            if (t->count <= MM_GATHER_ONE && MM_GATHER_ALL - gathered >= t->count) {
                t->mode = T_GATHER;
                t->slot = ngather++;
                gathered += t->count;
            }
            else if (nslots < maxslots) { /* too big, or the gather budget is spent */
                t->mode = T_HIST;
                t->slot = nslots++;
            }
            if (t->mode == 0)
                continue;
            hits += t->count;
            digit = (uint32_t)(t->prefix & 0xFFFFu);
            f->bitmap[t->level - 1][digit >> 6] |= (uint64_t)1 << (digit & 63);
            if (t->level == 1) {
                f->slot1[digit] = t->mode == T_GATHER ? t->slot : -1 - f->nactive;
                f->active[f->nactive++] = t;
            }
            else
                f->deeper[f->ndeeper++] = t;
        }
        /* one buffer for every gathered bucket, kept for the next call */
        if (ngather > 0) {
            npy_intp at = 0;
            f->arena = arena_get((size_t)gathered * sizeof(uint64_t));
            if (f->arena == NULL) {
                PyErr_NoMemory();
                goto pass_fail;
            }
            for (npy_intp i = 0; i < npend; i++) {
                if (pend[i].mode == T_GATHER) {
                    pend[i].buf = f->arena + at;
                    at += pend[i].count;
                }
            }
        }
        f->deep = f->ndeeper > 0;
        ty->rawmap(f->bitmap[0], f->rawmap);
        f->sparse = hits < s->n / MM_SPARSE;
        f->W = W;
        f->nslots = nslots;
        f->slots = NULL;
        f->fill = NULL;
        if (nslots > 0) {
            f->slots = calloc((size_t)nth * (size_t)nslots * 65536u, sizeof(uint64_t));
            if (f->slots == NULL) {
                PyErr_NoMemory();
                goto pass_fail;
            }
        }
        f->ngather = ngather;
        /* Each thread's counters on cache lines of their own: no false sharing. */
        f->tstride = ((ngather > 0 ? ngather : 1) + 15) & ~15;
        f->fill = malloc((size_t)(ngather > 0 ? ngather : 1) * sizeof(atomic_llong));
        f->gathered = malloc((size_t)(ngather > 0 ? ngather : 1) * sizeof(mm_target *));
        f->stage = malloc((size_t)nth * (size_t)f->tstride * MM_STAGE *
                          sizeof(uint64_t));
        f->staged = aligned_alloc(64, (size_t)nth * (size_t)f->tstride * sizeof(int));
        if (f->staged != NULL)
            memset(f->staged, 0, (size_t)nth * (size_t)f->tstride * sizeof(int));
        if (f->fill == NULL || f->gathered == NULL || f->stage == NULL || f->staged == NULL) {
            PyErr_NoMemory();
            goto pass_fail;
        }
        for (int g = 0; g < ngather; g++)
            atomic_init(&f->fill[g], 0);
        for (npy_intp i = 0; i < npend; i++)
            if (pend[i].mode == T_GATHER)
                f->gathered[pend[i].slot] = &pend[i];
        {
            double pb = lb + lw * (1.0 - 0.4 / pass), ps = lw * (0.4 / pass - 0.4 / (pass + 1));
            if (run_job(s, task_filter, ntasks, s->n, pb, ps) < 0)
                goto pass_fail;
        }
        pass++;
        for (int g = 0; g < ngather; g++) {
            if ((npy_intp)atomic_load(&f->fill[g]) != f->gathered[g]->count) {
                set_changed_error();
                goto pass_fail;
            }
        }
        s->outk = outk; /* the gathered buckets are solved in parallel */
        if (run_job(s, task_gselect, ngather, gathered, lb + lw * (1.0 - 0.4 / pass), 0.0) < 0)
            goto pass_fail;
        nnext = 0;
        for (npy_intp i = 0; i < npend; i++) {
            mm_target *t = &pend[i];
            if (t->mode == T_HIST) {
                memset(total, 0, 65536u * sizeof(uint64_t));
                for (int th = 0; th < nth; th++) {
                    const uint64_t *h = f->slots + ((size_t)th * (size_t)nslots + (size_t)t->slot) * 65536u;
                    for (int b = 0; b < 65536; b++)
                        total[b] += h[b];
                }
                if (split_target(s, t, total, 65536, levels, outk, next, &nnext) < 0)
                    goto pass_fail;
            }
            else if (t->mode == 0) /* deferred to the next pass */
                next[nnext++] = *t;
        }
        pass_free(f, pend, npend);
        {
            mm_target *tmp = pend;
            pend = next;
            next = tmp;
            npend = nnext;
        }
        continue;
    pass_fail:
        pass_free(f, pend, npend);
        goto done;
    }
    rc = 0;
done:
    free(total);
    free(pend);
    free(next);
    return rc;
}

/* ---- Python entry points --------------------------------------------------------- */

/* Fills the geometry of s from x, whose last r axes are the lane, and the SIGBUS guard:
 * the bytes x spans, and region (None or the Region under x, for the error message). */
static int
sel_init(mm_sel *s, PyObject *module, PyArrayObject *x, int r, int workers, PyObject *progress,
         PyObject *region)
{
    int D = PyArray_NDIM(x);
    memset(s, 0, sizeof(*s));
    if (region != NULL && region != Py_None && !mm_region_check(module, region)) {
        PyErr_Format(PyExc_TypeError, "region must be a Region or None, not %.100s",
                     Py_TYPE(region)->tp_name);
        return -1;
    }
    s->region = region != Py_None ? region : NULL;
    s->glo = s->ghi = PyArray_BYTES(x);
    if (PyArray_SIZE(x) > 0) {
        for (int d = 0; d < D; d++) {
            npy_intp ext = (PyArray_DIM(x, d) - 1) * PyArray_STRIDE(x, d);
            if (ext < 0)
                s->glo += ext;
            else
                s->ghi += ext;
        }
        s->ghi += PyArray_ITEMSIZE(x);
    }
    s->ty = mm_type_of(PyArray_DESCR(x));
    if (s->ty == NULL) {
        PyErr_SetString(PyExc_TypeError, "select: unsupported dtype (need native bool, int, "
                                         "uint or float16/32/64)");
        return -1;
    }
    if (r < 1 || r > D) {
        PyErr_Format(PyExc_ValueError, "select: r=%d lane axes for an array of %d dims", r, D);
        return -1;
    }
    if (workers < 1) {
        PyErr_SetString(PyExc_ValueError, "workers must be at least 1");
        return -1;
    }
    s->nthreads = workers > MM_MAX_WORKERS ? MM_MAX_WORKERS : workers;
    s->data = PyArray_BYTES(x);
    s->itemsize = PyArray_ITEMSIZE(x);
    s->ond = D - r;
    s->lnd = r;
    s->L = 1;
    s->n = 1;
    for (int d = 0; d < D - r; d++) {
        s->oshape[d] = PyArray_DIM(x, d);
        s->ostrides[d] = PyArray_STRIDE(x, d);
        s->L *= s->oshape[d];
    }
    for (int d = 0; d < r; d++) {
        s->lshape[d] = PyArray_DIM(x, D - r + d);
        s->lstrides[d] = PyArray_STRIDE(x, D - r + d);
        s->n *= s->lshape[d];
    }
    s->progress = (progress != NULL && progress != Py_None) ? progress : NULL;
    return 0;
}

static PyObject *
mm_select(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "ranks", "workers", "progress", "region", NULL};
    PyObject *xo, *ro, *progress = Py_None, *region = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *rk = NULL, *out = NULL;
    int r, workers = 1, guarded = 0;
    mm_sel s;
    uint64_t *outk = NULL;
    npy_intp dims[2];

    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|iOO:select", kwlist, &xo, &r, &ro, &workers,
                                     &progress, &region))
        goto done;
    if (!PyArray_Check(xo)) {
        PyErr_SetString(PyExc_TypeError, "select: x must be a numpy array");
        goto done;
    }
    x = (PyArrayObject *)xo;
    Py_INCREF(x); /* keeps the array (and the region it exports) alive while we run */
    if (sel_init(&s, module, x, r, workers, progress, region) < 0)
        goto done;
    rk = (PyArrayObject *)PyArray_FROMANY(ro, NPY_INT64, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (rk == NULL)
        goto done;
    s.rank_rows = PyArray_DIM(rk, 0);
    s.m = PyArray_DIM(rk, 1);
    if (s.rank_rows != 1 && s.rank_rows != s.L) {
        PyErr_Format(PyExc_ValueError, "select: ranks has %zd rows for %zd lanes",
                     (Py_ssize_t)s.rank_rows, (Py_ssize_t)s.L);
        goto done;
    }
    s.ranks = (const npy_int64 *)PyArray_DATA(rk);
    for (npy_intp i = 0; i < s.rank_rows; i++) {
        const npy_int64 *row = s.ranks + i * s.m;
        for (npy_intp j = 0; j < s.m; j++) {
            if (row[j] < 0 || row[j] >= s.n || (j > 0 && row[j] < row[j - 1])) {
                PyErr_SetString(PyExc_ValueError,
                                "select: ranks must be sorted and within the lane length");
                goto done;
            }
        }
    }
    dims[0] = s.L;
    dims[1] = s.m;
    Py_INCREF(PyArray_DESCR(x));
    out = (PyArrayObject *)PyArray_SimpleNewFromDescr(2, dims, PyArray_DESCR(x));
    if (out == NULL)
        goto done;
    s.out = PyArray_BYTES(out);
    if (mm_guard_acquire() < 0) {
        mm_set_oserror(errno, "sigaction(SIGBUS)", NULL);
        goto done;
    }
    guarded = 1;
    if (s.L > 0 && s.m > 0) {
        if (s.n <= MM_SHORT) {
            npy_intp ntasks;
            s.lanes_per_task = s.n >= 65536 ? 1 : 65536 / s.n;
            ntasks = (s.L + s.lanes_per_task - 1) / s.lanes_per_task;
            s.tbuf = calloc((size_t)s.nthreads, sizeof(uint64_t *));
            if (s.tbuf == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            if (run_job(&s, task_short, ntasks, s.L * s.n, 0.0, 1.0) < 0)
                goto done;
        }
        else {
            const npy_int64 *all = s.ranks;
            npy_intp chunks = (s.n + MM_CHUNK - 1) / MM_CHUNK;
            if (s.nthreads > chunks) /* no more per-thread tables than there are chunks */
                s.nthreads = (int)chunks;
            s.hbins = s.ty->W == 8 ? 1024 : s.ty->W == 16 ? 65536 : 2 * 65536;
            s.h32 = malloc((size_t)s.nthreads * (size_t)s.hbins * sizeof(uint32_t));
            s.h64 = malloc((size_t)s.nthreads * (size_t)s.hbins * sizeof(uint64_t));
            s.since_flush = malloc((size_t)s.nthreads * sizeof(npy_intp));
            s.filt.slot1 = malloc(65536u * sizeof(int32_t));
            s.filt.active = malloc((size_t)s.m * sizeof(mm_target *));
            s.filt.deeper = malloc((size_t)s.m * sizeof(mm_target *));
            outk = malloc((size_t)s.m * sizeof(uint64_t));
            if (s.h32 == NULL || s.h64 == NULL || s.since_flush == NULL || s.filt.slot1 == NULL ||
                s.filt.active == NULL || s.filt.deeper == NULL || outk == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            for (npy_intp l = 0; l < s.L; l++) {
                char *o = s.out + (size_t)l * (size_t)s.m * (size_t)s.itemsize;
                s.ranks = all + (s.rank_rows == 1 ? 0 : l * s.m);
                if (select_long(&s, l, outk) < 0)
                    goto done;
                for (npy_intp i = 0; i < s.m; i++)
                    s.ty->store(o + i * s.itemsize, outk[i]);
            }
        }
    }
    result = (PyObject *)out;
    out = NULL;
done:
    if (guarded)
        mm_guard_release();
    if (s.tbuf != NULL) {
        for (int i = 0; i < s.nthreads; i++)
            free(s.tbuf[i]);
        free(s.tbuf);
    }
    free(s.h32);
    free(s.h64);
    free(s.since_flush);
    free(s.filt.slot1);
    free(s.filt.active);
    free(s.filt.deeper);
    free(outk);
    Py_XDECREF(out);
    Py_XDECREF(rk);
    Py_XDECREF(x);
    return result;
}

static PyObject *
mm_count_nan(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "workers", "progress", "region", NULL};
    PyObject *xo, *progress = Py_None, *region = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    int r, workers = 1, guarded = 0;
    mm_sel s;
    npy_intp dims[1];

    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oi|iOO:count_nan", kwlist, &xo, &r, &workers,
                                     &progress, &region))
        goto done;
    if (!PyArray_Check(xo)) {
        PyErr_SetString(PyExc_TypeError, "count_nan: x must be a numpy array");
        goto done;
    }
    x = (PyArrayObject *)xo;
    Py_INCREF(x);
    if (sel_init(&s, module, x, r, workers, progress, region) < 0)
        goto done;
    dims[0] = s.L;
    out = (PyArrayObject *)PyArray_ZEROS(1, dims, NPY_INTP, 0);
    if (out == NULL)
        goto done;
    if (s.ty->isfloat && s.L > 0 && s.n > 0) {
        npy_intp *res = (npy_intp *)PyArray_DATA(out), ntasks;
        s.tasks_per_lane = (s.n + MM_CHUNK - 1) / MM_CHUNK;
        if (s.L > PY_SSIZE_T_MAX / s.tasks_per_lane) {
            PyErr_NoMemory();
            goto done;
        }
        ntasks = s.L * s.tasks_per_lane;
        s.partial = calloc((size_t)ntasks, sizeof(npy_intp));
        if (s.partial == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        if (mm_guard_acquire() < 0) {
            mm_set_oserror(errno, "sigaction(SIGBUS)", NULL);
            goto done;
        }
        guarded = 1;
        if (run_job(&s, task_nans, ntasks, s.L * s.n, 0.0, 1.0) < 0)
            goto done;
        for (npy_intp t = 0; t < ntasks; t++)
            res[t / s.tasks_per_lane] += s.partial[t];
    }
    result = (PyObject *)out;
    out = NULL;
done:
    if (guarded)
        mm_guard_release();
    free(s.partial);
    Py_XDECREF(out);
    Py_XDECREF(x);
    return result;
}

static PyObject *
mm_window_counts(PyObject *module, PyObject *noargs)
{
    (void)module;
    (void)noargs;
    return Py_BuildValue("(LLL)", (long long)atomic_load(&mm_win_sampled),
                         (long long)atomic_load(&mm_win_windowed),
                         (long long)atomic_load(&mm_win_missed));
}

static PyMethodDef kernel_methods[] = {
    {"select", (PyCFunction)(void (*)(void))mm_select, METH_VARARGS | METH_KEYWORDS,
     "select(x, r, ranks, workers=1, progress=None, region=None)\n--\n\n"
     "Order statistics of the lanes of x (its last r axes; the first axes enumerate the\n"
     "lanes).  ranks is an int64 array (1 or L rows, m columns, each row sorted).\n"
     "Returns an (L, m) array of x's dtype in numpy's sort order (NaN last).  A SIGBUS\n"
     "reading x (a truncated file) raises OSError naming region (the Region under x)."},
    {"count_nan", (PyCFunction)(void (*)(void))mm_count_nan, METH_VARARGS | METH_KEYWORDS,
     "count_nan(x, r, workers=1, progress=None, region=None)\n--\n\n"
     "Number of NaNs in every lane of x (the last r axes), as an intp array.  A SIGBUS\n"
     "reading x raises OSError naming region (the Region under x)."},
    {"_window_counts", mm_window_counts, METH_NOARGS,
     "_window_counts()\n--\n\n"
     "(sampled, windowed, missed): long 16-bit lanes since import whose first pass began\n"
     "with a sample, those then counted through a window, and those the window missed\n"
     "(which took a second, plain pass).  For the tests."},
    {NULL, NULL, 0, NULL},
};

int
mm_kernels_add(PyObject *module)
{
    return PyModule_AddFunctions(module, kernel_methods);
}
