/* SIGBUS guards: a fault in mapped memory becomes an OSError instead of a dead process.
 *
 * Touching a page of a file mapping past the end of the file (truncated by another
 * process after it was mapped), or a page the file system cannot back (an I/O error,
 * a hole of a sparse file on a full disk), raises SIGBUS in the touching thread.  The
 * C code of mmarray that reads or writes mapped memory (selection kernels, NaN counts,
 * touching and populating pages, zeroing the edges of a punched hole) runs its work
 * through mm_guarded(): the thread records a sigjmp_buf and the address range it is
 * about to touch in a thread-local slot, and the process-wide handler, finding a
 * SIGBUS inside that range on a thread with an armed guard, jumps back out with the
 * fault address.  The caller then cancels its work and raises OSError (errno EFAULT,
 * the errno madvise(MADV_POPULATE_READ) reports for the same condition) naming the
 * region's path and the offset of the fault.
 *
 * The handler is installed with sigaction() while at least one guarded call runs
 * (mm_guard_acquire/mm_guard_release, counted under a mutex) and the previous action
 * is restored when the count drops to zero.  It always chains: a SIGBUS on a thread
 * without an armed guard, or outside the guarded range, or sent by kill(), goes to
 * the previous handler (faulthandler's dump still appears), or, if that was SIG_DFL
 * or SIG_IGN, the default action is restored and the signal raised again, so the
 * process dies as it would have without mmarray.  If some other code installs its own
 * SIGBUS handler while a guarded call runs, we cannot unlink ourselves from its chain
 * at the end; the handler then stays below it for good ("buried") and is never put on
 * top again (that would make a cycle); guarded faults keep working only if that other
 * handler chains to us.
 *
 * Guarded code must hold no lock and own no memory that only a local variable points
 * to, since the jump abandons it mid-way; the selection tasks of src/select/ qualify.
 */
#include "mmarray.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>

/* The guard of the code a thread is running: a sigjmp_buf and the range it may fault on. */
typedef struct mm_guard mm_guard;
struct mm_guard {
    sigjmp_buf env;
    const char *lo, *hi;        /* faults at addresses in [lo, hi) are caught */
    void *volatile fault;       /* si_addr of the caught fault */
    volatile int caught;        /* the handler jumped back: a fault was caught */
    mm_guard *outer;            /* the guard this one nests in, or NULL */
};

/* Initial-exec TLS: reading it in a signal handler is one load, never an allocation. */
#if defined(__GNUC__)
static _Thread_local mm_guard *volatile mm_guard_cur __attribute__((tls_model("initial-exec")));
#else
static _Thread_local mm_guard *volatile mm_guard_cur;
#endif

static pthread_mutex_t mm_guard_mu = PTHREAD_MUTEX_INITIALIZER;
static long mm_guard_users;       /* guarded calls running */
static int mm_guard_buried;       /* someone installed over us: we stay in their chain */
static struct sigaction mm_guard_prev; /* the action before ours */

static void
mm_guard_default(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    /* Blocked while this handler runs: delivered with the default action on return.
     * A fault would also recur on return; raise() covers signals sent by kill(). */
    (void)raise(sig);
}

static void
mm_guard_handler(int sig, siginfo_t *si, void *uc)
{
    mm_guard *guard = mm_guard_cur;
    int saved = errno;
    const char *addr = si != NULL ? (const char *)si->si_addr : NULL;

    if (guard != NULL && si != NULL && si->si_code > 0 && addr >= guard->lo &&
        addr < guard->hi) {
        guard->fault = si->si_addr;
        guard->caught = 1;
        mm_guard_cur = guard->outer; /* disarmed before the jump */
        siglongjmp(guard->env, 1);
    }
    /* Not ours: chain to what was there before. */
    if (mm_guard_prev.sa_flags & SA_SIGINFO) {
        if (mm_guard_prev.sa_sigaction != NULL)
            mm_guard_prev.sa_sigaction(sig, si, uc);
        else
            mm_guard_default(sig);
    }
    else if (mm_guard_prev.sa_handler == SIG_IGN && si != NULL && si->si_code <= 0)
        ; /* sent by kill() and ignored before us: still ignored */
    else if (mm_guard_prev.sa_handler == SIG_DFL || mm_guard_prev.sa_handler == SIG_IGN)
        mm_guard_default(sig); /* a fault cannot be ignored: the kernel would kill us too */
    else
        mm_guard_prev.sa_handler(sig);
    errno = saved;
}

static int
mm_guard_is_ours(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == mm_guard_handler;
}

int
mm_guard_acquire(void)
{
    struct sigaction cur, ours;
    int rc = -1, err = 0;

    pthread_mutex_lock(&mm_guard_mu);
    if (mm_guard_users == 0) {
        if (sigaction(SIGBUS, NULL, &cur) != 0) {
            err = errno;
            goto done;
        }
        if (mm_guard_is_ours(&cur))
            mm_guard_buried = 0; /* on top again: whoever was above us has left */
        else if (!mm_guard_buried) {
            memset(&ours, 0, sizeof(ours));
            ours.sa_sigaction = mm_guard_handler;
            ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
            sigemptyset(&ours.sa_mask);
            mm_guard_prev = cur; /* set before the handler can run */
            if (sigaction(SIGBUS, &ours, NULL) != 0) {
                err = errno;
                goto done;
            }
        }
    }
    mm_guard_users++;
    rc = 0;
done:
    pthread_mutex_unlock(&mm_guard_mu);
    if (rc < 0)
        errno = err;
    return rc;
}

void
mm_guard_release(void)
{
    struct sigaction cur;

    pthread_mutex_lock(&mm_guard_mu);
    if (mm_guard_users > 0 && --mm_guard_users == 0) {
        if (sigaction(SIGBUS, NULL, &cur) == 0) {
            if (mm_guard_is_ours(&cur))
                sigaction(SIGBUS, &mm_guard_prev, NULL);
            else
                mm_guard_buried = 1;
        }
    }
    pthread_mutex_unlock(&mm_guard_mu);
}

int
mm_guarded(void (*fn)(void *), void *arg, const void *lo, const void *hi, void **fault)
{
    mm_guard guard;

    guard.lo = lo;
    guard.hi = hi;
    guard.fault = NULL;
    guard.caught = 0;
    guard.outer = mm_guard_cur;
    if (sigsetjmp(guard.env, 1) == 0) {
        mm_guard_cur = &guard;
        atomic_signal_fence(memory_order_seq_cst);
        fn(arg);
        atomic_signal_fence(memory_order_seq_cst);
        mm_guard_cur = guard.outer;
    }
    /* After a fault the handler has disarmed guard and jumped back to the sigsetjmp with
     * guard.caught and guard.fault set (volatile, so valid here). */
    *fault = guard.fault;
    return guard.caught ? -1 : 0;
}

/* Where a SIGBUS at byte off of region (file offset foff) happened, for the message. */
static PyObject *
fault_place(const mm_region *region, const char *verb, long long off, long long foff)
{
    PyObject *where;

    if (region->anonymous)
        where = PyUnicode_FromFormat("SIGBUS %s byte %lld of anonymous shared memory", verb, off);
    else if (region->offset == 0)
        where = PyUnicode_FromFormat("SIGBUS %s file offset %lld", verb, foff);
    else
        where = PyUnicode_FromFormat("SIGBUS %s file offset %lld (byte %lld of the region)", verb,
                                     foff, off);
    return where;
}

void
mm_set_fault_error(PyObject *region, const void *addr, int write)
{
    const char *verb = write ? "writing" : "reading", *at = addr;
    const mm_region *reg = (const mm_region *)region;
    PyObject *where = NULL;
    long long off, foff;
    struct stat st;

    if (reg == NULL || reg->map_base == NULL || at < reg->map_base ||
        at >= reg->map_base + reg->map_len) {
        mm_set_oserror_fmt(EFAULT, NULL,
                           "SIGBUS %s mapped memory at address %p: the file under the mapping "
                           "is shorter than the mapping (truncated by another process?) or the "
                           "page could not be read",
                           verb, addr);
        goto done;
    }
    /* A page-rounded fault address before the first byte counts as that byte. */
    off = at < reg->data ? 0 : (long long)(at - reg->data);
    foff = reg->offset + off;
    where = fault_place(reg, verb, off, foff);
    if (where == NULL)
        goto done;
    if (reg->anonymous)
        mm_set_oserror_fmt(EFAULT, reg->name,
                           "%U: its memory file was truncated (by another process?)", where);
    else if (reg->fd >= 0 && fstat(reg->fd, &st) == 0 && (long long)st.st_size <= foff)
        mm_set_oserror_fmt(EFAULT, reg->name,
                           "%U: the file has %lld bytes, fewer than its mapping (truncated by "
                           "another process?)",
                           where, (long long)st.st_size);
    else if (reg->fd >= 0)
        mm_set_oserror_fmt(EFAULT, reg->name,
                           "%U: the page could not be read or allocated (an I/O error, or a "
                           "full disk under a sparse file?)",
                           where);
    else
        mm_set_oserror_fmt(EFAULT, reg->name,
                           "%U: the file is shorter than its mapping (truncated by another "
                           "process?) or the page could not be read",
                           where);
done:
    Py_XDECREF(where);
}
