/* Read-ahead and drop-behind for a file that is not in memory (a cold file).
 *
 * A call over one long lane of a file-backed array may carry a stream (mm_stream):
 * the byte range the lane spans, which of its pages were resident when the call began
 * (mincore), and whether to read ahead and to drop behind.  While a job that covers
 * the range runs on the worker pool (pool.c), MM_RA_THREADS streamer threads claim the
 * next blocks, a bounded distance ahead of the tasks in progress, and read them in
 * (MADV_POPULATE_READ: read and mapped, so the workers find them ready).  Each waits
 * for its read, so several are in flight at once, as with that many faulting workers;
 * one thread issuing MADV_WILLNEED measured no faster than the workers' own faults.
 * In drop mode the first streamer also hands the pages that were cold before the call
 * back to the kernel (MADV_PAGEOUT) once every task in progress has passed them, and
 * the stream drops the rest when the call ends: a file larger than memory then passes
 * through the page cache without evicting everything else, and pages that were
 * resident before the call (a warm file, or part of one) are never dropped.
 *
 * The streamer only advises: its errors are ignored (a truncated file makes the
 * workers' own reads fault, which pool.c turns into OSError), and where a job's tasks
 * run ahead of it, it skips what they have passed. */
#include "select.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define MM_RA_BLOCK ((size_t)8 << 20)   /* bytes advised at a time */
#define MM_RA_LEAD ((size_t)64 << 20)   /* read ahead this far past the claimed tasks */
#define MM_RA_MIN_COLD ((size_t)32 << 20) /* fewer cold bytes: no stream */
#define MM_RA_NAP_NS 200000L            /* the streamer's wait when it is far enough ahead */
#define MM_RA_THREADS 4                 /* streamer threads: reads in flight at once */

struct mm_stream {
    char *lo;                /* page-aligned start of the range */
    size_t len;              /* bytes, whole pages */
    size_t page;
    size_t n_blocks;
    unsigned char *cold;     /* per page: not resident when the call began */
    unsigned char *fetched;  /* per block: read ahead since the call began (or last drop) */
    int ahead;               /* read the cold pages ahead of the pass */
    int drop;                /* drop the cold pages behind the pass */
};

struct mm_streamer {
    mm_stream *st;
    mm_job *job;
    pthread_t th[MM_RA_THREADS];
    int n_started;
    atomic_int stop;
    atomic_int ids;        /* hands each thread its number: 0 also drops behind */
    atomic_llong next;     /* the next block to read ahead */
};

/* ---- platform helpers: each returns 0 or an errno value ---------------------------- */

static int
ra_advise(char *addr, size_t len, int advice)
{
    int err = 0;
    if (madvise(addr, len, advice) != 0)
        err = errno;
    return err;
}

/* Hands the pages back: reclaimed at once where the kernel has MADV_PAGEOUT (5.4), else
 * unmapped from this process (MADV_DONTNEED on a file mapping), which leaves them for
 * reclaim.  Both leave pages that another mapping uses, and write nothing away. */
static int
ra_pageout(char *addr, size_t len)
{
    int err;
#ifdef MADV_PAGEOUT
    err = ra_advise(addr, len, MADV_PAGEOUT);
#else
    err = ra_advise(addr, len, MADV_DONTNEED);
#endif
    return err;
}

/* Reads the pages in, waiting for them (MADV_POPULATE_READ, Linux 5.14: a streamer
 * thread then holds one read in flight, as a faulting worker does), else queues the
 * read (MADV_WILLNEED). */
static void
ra_fetch(char *addr, size_t len)
{
#ifdef MADV_POPULATE_READ
    if (ra_advise(addr, len, MADV_POPULATE_READ) == EINVAL)
        ra_advise(addr, len, MADV_WILLNEED);
#else
    ra_advise(addr, len, MADV_WILLNEED);
#endif
}

static void
ra_nap(void)
{
    struct timespec ts = {0, MM_RA_NAP_NS};
    nanosleep(&ts, NULL);
}

/* ---- the stream of one call ------------------------------------------------------- */

/* Counts the cold pages of the range into st->cold; returns how many, or 0 if mincore
 * fails (no stream then). */
static size_t
stream_mincore(mm_stream *st)
{
    size_t n_cold = 0, n = st->len / st->page;
    if (mincore(st->lo, st->len, st->cold) != 0)
        n = 0;
    for (size_t i = 0; i < n; i++) {
        st->cold[i] = !(st->cold[i] & 1);
        n_cold += st->cold[i];
    }
    return n_cold;
}

mm_stream *
mm_stream_new(const char *lo, const char *hi, int ahead, int drop)
{
    mm_stream *st = calloc(1, sizeof(*st));
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t head = (size_t)((uintptr_t)lo % page); /* lo's offset in its page */
    size_t len = hi > lo ? ((size_t)(hi - lo) + head + page - 1) / page * page : 0;
    if (st == NULL || len < MM_RA_MIN_COLD)
        goto fail;
    st->lo = (char *)lo - head; /* the page lo is on: inside the array's mapping */
    st->len = len;
    st->page = page;
    st->n_blocks = (st->len + MM_RA_BLOCK - 1) / MM_RA_BLOCK;
    st->ahead = ahead;
    st->drop = drop;
    st->cold = malloc(st->len / page);
    st->fetched = calloc(st->n_blocks, 1);
    if (st->cold == NULL || st->fetched == NULL)
        goto fail;
    if (stream_mincore(st) * page < MM_RA_MIN_COLD)
        goto fail;
    goto done;
fail:
    mm_stream_free(st, 0);
    st = NULL;
done:
    return st;
}

/* Block k's first byte and length. */
static void
block_span(const mm_stream *st, size_t k, char **p, size_t *n)
{
    size_t off = k * MM_RA_BLOCK;
    *p = st->lo + off;
    *n = st->len - off < MM_RA_BLOCK ? st->len - off : MM_RA_BLOCK;
}

/* Reads block k ahead unless it was already, or holds no cold page (blocks are claimed
 * once each: no two threads write the same fetched[k]). */
static void
block_fetch(mm_stream *st, size_t k)
{
    char *p;
    size_t n, first;
    block_span(st, k, &p, &n);
    first = (size_t)(p - st->lo) / st->page;
    if (!st->fetched[k] && memchr(st->cold + first, 1, n / st->page) != NULL) {
        ra_fetch(p, n);
        st->fetched[k] = 1;
    }
}

/* Hands back the pages of block k that were cold when the call began. */
static void
block_drop(mm_stream *st, size_t k)
{
    char *p;
    size_t n, first, i = 0;
    block_span(st, k, &p, &n);
    first = (size_t)(p - st->lo) / st->page;
    n /= st->page;
    while (i < n) {
        size_t j = i;
        while (j < n && st->cold[first + j])
            j++;
        if (j > i)
            ra_pageout(p + i * st->page, (j - i) * st->page);
        i = j + 1;
    }
    st->fetched[k] = 0;
}

void
mm_stream_free(mm_stream *st, int finish)
{
    if (st != NULL) {
        for (size_t k = 0; finish && st->drop && k < st->n_blocks; k++)
            block_drop(st, k);
        free(st->cold);
        free(st->fetched);
        free(st);
    }
}

/* ---- the streamer of one job ------------------------------------------------------ */

/* The blocks [lo, hi) between the lowest task in progress (or claimed next) and the
 * read-ahead limit past the claimed tasks, by the job's tasks spread evenly over the
 * range. */
static void
job_window(const mm_streamer *w, size_t *lo, size_t *hi)
{
    const mm_job *job = w->job;
    const mm_stream *st = w->st;
    long long next = atomic_load(&job->next), low = next;
    double per_task = (double)st->len / (double)job->n_tasks;
    size_t lead = MM_RA_LEAD + 2 * (size_t)job->sel->n_threads * (size_t)per_task;
    for (int t = 0; t < job->sel->n_threads; t++) {
        long long b = atomic_load(&job->busy[t]);
        if (b >= 0 && b < low)
            low = b;
    }
    if (next > job->n_tasks)
        next = job->n_tasks;
    if (low > job->n_tasks) /* every task claimed: next runs past the last one */
        low = job->n_tasks;
    *lo = (size_t)((double)low * per_task) / MM_RA_BLOCK;
    *hi = ((size_t)((double)next * per_task) + lead) / MM_RA_BLOCK + 1;
    if (*hi > st->n_blocks)
        *hi = st->n_blocks;
    if (*lo > st->n_blocks)
        *lo = st->n_blocks;
}

/* Claims the next block to read ahead within [lo, hi) (skipping what the tasks have
 * passed); returns it, or -1 if none is due. */
static long long
claim_block(mm_streamer *w, size_t lo, size_t hi)
{
    long long k = atomic_load(&w->next), got = -1;
    while (got < 0 && (size_t)(k < (long long)lo ? (long long)lo : k) < hi) {
        long long want = k < (long long)lo ? (long long)lo : k;
        if (atomic_compare_exchange_weak(&w->next, &k, want + 1))
            got = want;
    }
    return got;
}

static void *
streamer_main(void *p)
{
    mm_streamer *w = p;
    mm_stream *st = w->st;
    int dropper = atomic_fetch_add(&w->ids, 1) == 0;
    size_t dropped = 0;
    while (!atomic_load(&w->stop)) {
        size_t lo, hi;
        long long k = -1;
        job_window(w, &lo, &hi);
        for (; dropper && st->drop && dropped + 1 < lo; dropped++)
            block_drop(st, dropped); /* behind every task in progress, and one more block */
        if (st->ahead)
            k = claim_block(w, lo, hi);
        if (k >= 0)
            block_fetch(st, (size_t)k);
        else
            ra_nap();
    }
    return NULL;
}

mm_streamer *
mm_streamer_start(mm_stream *st, mm_job *job, npy_intp n_elems)
{
    mm_streamer *w = NULL;
    /* only a job that reads most of the range (not a sample, nor an in-memory one) */
    if (st != NULL && job->n_tasks > 0 &&
        (double)n_elems * (double)job->sel->itemsize * 2.0 >= (double)st->len)
        w = calloc(1, sizeof(*w));
    if (w != NULL) {
        w->st = st;
        w->job = job;
        atomic_init(&w->stop, 0);
        atomic_init(&w->ids, 0);
        atomic_init(&w->next, 0);
        for (int i = 0; i < (st->ahead ? MM_RA_THREADS : 1); i++)
            if (pthread_create(&w->th[w->n_started], NULL, streamer_main, w) == 0)
                w->n_started++;
        if (w->n_started == 0) {
            free(w);
            w = NULL;
        }
    }
    return w;
}

void
mm_streamer_stop(mm_streamer *w)
{
    if (w != NULL) {
        atomic_store(&w->stop, 1);
        for (int i = 0; i < w->n_started; i++)
            pthread_join(w->th[i], NULL);
        free(w);
    }
}

/* ---- a call's stream, for entry.c ------------------------------------------------- */

void
mm_sel_stream_begin(mm_sel *s, int mode)
{
    if ((mode & 3) != 0 && s->n_lanes == 1 && s->lane_len > MM_SHORT) {
        Py_BEGIN_ALLOW_THREADS
        s->stream = mm_stream_new(s->guard_lo, s->guard_hi, mode & 1, (mode & 2) != 0);
        Py_END_ALLOW_THREADS
    }
}

void
mm_sel_stream_end(mm_sel *s)
{
    if (s->stream != NULL) {
        Py_BEGIN_ALLOW_THREADS
        mm_stream_free(s->stream, 1);
        Py_END_ALLOW_THREADS
        s->stream = NULL;
    }
}
