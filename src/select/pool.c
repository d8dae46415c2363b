/* The worker pool: a job's tasks run on worker threads, each under a SIGBUS guard over
 * the array's bytes, while the calling thread waits with the GIL released in short
 * slices, runs Python's signal handlers and the progress callback between them, and
 * cancels the workers on an exception.  Over a cold file a streamer thread reads ahead
 * of the tasks in progress (and drops behind them) meanwhile (readahead.c). */
#include "select.h"

#include <string.h>
#include <time.h>

#define MM_PARALLEL_MIN ((npy_intp)1 << 16) /* fewer elements: run inline, GIL held */
#define MM_POLL_NS 50000000L                /* the calling thread wakes every 50 ms */

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
        if (t >= job->n_tasks)
            break;
        atomic_store(&job->busy[a->tid], t);
        job->task(job, a->tid, (npy_intp)t);
        atomic_store(&job->busy[a->tid], -1);
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
    if (mm_guarded(job_loop, &a, job->sel->guard_lo, job->sel->guard_hi, &fault) < 0) {
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
    pthread_mutex_lock(&a->job->mutex);
    a->job->running--;
    pthread_cond_signal(&a->job->cond);
    pthread_mutex_unlock(&a->job->mutex);
    return NULL;
}

void
mm_job_fail_nomem(mm_job *job)
{
    atomic_store(&job->no_memory, 1);
    atomic_store(&job->cancel, 1);
}

static void
job_init(mm_job *job, mm_sel *s, mm_task task, npy_intp n_tasks)
{
    memset(job, 0, sizeof(*job));
    job->sel = s;
    job->task = task;
    job->n_tasks = n_tasks;
    atomic_init(&job->next, 0);
    atomic_init(&job->done, 0);
    atomic_init(&job->cancel, 0);
    atomic_init(&job->no_memory, 0);
    atomic_init(&job->fault, NULL);
    for (int i = 0; i < MM_MAX_WORKERS; i++)
        atomic_init(&job->busy[i], -1);
}

/* Starts up to n_threads workers; returns how many started. */
static int
job_start(mm_job *job, pthread_t *th, mm_thread_arg *targ, int n_threads)
{
    int started = 0;
    job->running = 0;
    for (int i = 0; i < n_threads; i++) {
        targ[i].job = job;
        targ[i].tid = i;
        pthread_mutex_lock(&job->mutex);
        job->running++;
        pthread_mutex_unlock(&job->mutex);
        if (pthread_create(&th[i], NULL, thread_main, &targ[i]) != 0) {
            pthread_mutex_lock(&job->mutex);
            job->running--;
            pthread_mutex_unlock(&job->mutex);
            break;
        }
        started++;
    }
    return started;
}

/* Waits, without the GIL, until the workers have finished or MM_POLL_NS has passed;
 * returns whether they have finished. */
static int
job_sleep(mm_job *job)
{
    int finished;
    Py_BEGIN_ALLOW_THREADS
    struct timespec ts;
    pthread_mutex_lock(&job->mutex);
    if (job->running > 0) {
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += MM_POLL_NS;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec += 1;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&job->cond, &job->mutex, &ts);
    }
    finished = job->running == 0;
    pthread_mutex_unlock(&job->mutex);
    Py_END_ALLOW_THREADS
    return finished;
}

/* Python's turn between two waits: signal handlers, then the progress callback.
 * Returns -1 (and cancels the job) if either raised, else 0. */
static int
job_poll_python(mm_job *job, double pbase, double pspan)
{
    int rc = 0;
    const mm_sel *s = job->sel;
    if (PyErr_CheckSignals() < 0)
        rc = -1;
    else if (s->progress != NULL) {
        double f = (double)atomic_load(&job->done) / (double)job->n_tasks;
        PyObject *r = PyObject_CallFunction(s->progress, "d", pbase + pspan * f);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    if (rc < 0)
        atomic_store(&job->cancel, 1);
    return rc;
}

/* The job (of n_elems elements) on worker threads (this thread does the work if none
 * starts), polled until they are joined, with a streamer reading ahead where the call
 * has a stream (readahead.c).  Returns 0, or -1 with an exception from Python's side
 * set. */
static int
job_run_threads(mm_job *job, npy_intp n_elems, double pbase, double pspan)
{
    pthread_t th[MM_MAX_WORKERS];
    mm_thread_arg targ[MM_MAX_WORKERS];
    int started, failed = 0, n_threads = job->sel->n_threads;
    mm_streamer *streamer;
    if (n_threads > job->n_tasks)
        n_threads = (int)job->n_tasks;
    pthread_mutex_init(&job->mutex, NULL);
    pthread_cond_init(&job->cond, NULL);
    streamer = mm_streamer_start(job->sel->stream, job, n_elems);
    started = job_start(job, th, targ, n_threads);
    if (started == 0) {
        /* No thread could start: do the work here, still without the GIL. */
        Py_BEGIN_ALLOW_THREADS
        job_work(job, 0);
        Py_END_ALLOW_THREADS
    }
    while (!job_sleep(job))
        if (!failed && job_poll_python(job, pbase, pspan) < 0)
            failed = 1;
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    mm_streamer_stop(streamer);
    pthread_cond_destroy(&job->cond);
    pthread_mutex_destroy(&job->mutex);
    return failed ? -1 : 0;
}

/* After the workers: the error a task left (SIGBUS, no memory), else the final
 * progress report of a parallel job.  Returns 0 or -1 with an exception set. */
static int
job_finish(mm_job *job, npy_intp n_elems, double pbase, double pspan)
{
    int rc = -1;
    const mm_sel *s = job->sel;
    if (atomic_load(&job->fault) != NULL) {
        mm_set_fault_error(s->region, atomic_load(&job->fault), 0);
        goto done;
    }
    if (atomic_load(&job->no_memory)) {
        PyErr_NoMemory();
        goto done;
    }
    if (s->progress != NULL && n_elems >= MM_PARALLEL_MIN) {
        PyObject *r = PyObject_CallFunction(s->progress, "d", pbase + pspan);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    rc = 0;
done:
    return rc;
}

int
mm_run_job(mm_sel *s, mm_task task, npy_intp n_tasks, npy_intp n_elems, double pbase,
           double pspan)
{
    mm_job job;
    int rc = 0;
    job_init(&job, s, task, n_tasks);
    if (n_tasks <= 0)
        goto done;
    if (n_elems < MM_PARALLEL_MIN)
        job_work(&job, 0);
    else
        rc = job_run_threads(&job, n_elems, pbase, pspan);
    if (rc == 0)
        rc = job_finish(&job, n_elems, pbase, pspan);
done:
    return rc;
}
