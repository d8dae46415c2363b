/* Page-cache advice and residency: madvise, MADV_POPULATE_READ, mincore,
 * posix_fadvise and write-back (sync_file_range).
 *
 * Each function works on a Region and a byte range [start, stop) counted from the
 * region's first byte, held as a span (span.c): the range is rounded outwards to whole
 * pages of the mapping, and an export of the region keeps the mapping in place.
 *
 * GIL policy: calls that only touch page tables (madvise, mincore) release the GIL
 * for ranges of MM_NOGIL_BYTES and more; calls that may wait for the disk
 * (MADV_POPULATE_READ, touching pages, posix_fadvise, sync_file_range) always release
 * it, since even one page can take a disk read.  Policy (which advice, which fallback,
 * arrays to byte ranges) lives in the Python layer.
 */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

/* Ranges at least this long run with the GIL released. */
#define MM_NOGIL_BYTES ((size_t)1 << 20)

/* ---- platform helpers: each returns 0 or an errno value -------------------- */

static int
mm_sys_madvise(char *addr, size_t len, int advice)
{
    int err = 0;
    if (madvise(addr, len, advice) != 0)
        err = errno;
    return err;
}

static int
mm_sys_populate_read(char *addr, size_t len)
{
    int err = ENOSYS;
#ifdef MADV_POPULATE_READ
    err = mm_sys_madvise(addr, len, MADV_POPULATE_READ);
#else
    (void)addr;
    (void)len;
#endif
    return err;
}

static int
mm_sys_mincore(char *addr, size_t len, unsigned char *vec)
{
    int err = 0;
    if (mincore(addr, len, vec) != 0)
        err = errno;
    return err;
}

/* Writes back the dirty page-cache pages of [start, start+len) of the file and waits. */
static int
mm_sys_writeback(int fd, long long start, long long len)
{
    int err = 0;
#if defined(SYNC_FILE_RANGE_WRITE) && defined(SYNC_FILE_RANGE_WAIT_AFTER)
    unsigned flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
    if (sync_file_range(fd, (off_t)start, (off_t)len, flags) != 0)
        err = errno;
    if (err == ENOSYS || err == EINVAL || err == ESPIPE) { /* not offered: the whole file */
        err = 0;
        if (fdatasync(fd) != 0)
            err = errno;
    }
#else
    (void)start;
    (void)len;
    if (fdatasync(fd) != 0)
        err = errno;
#endif
    return err;
}

/* ---- module functions ----------------------------------------------------- */

static PyObject *
pages_madvise(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    int advice, err = 0;
    mm_span span = {.region = NULL};

    if (!PyArg_ParseTuple(args, "Onni:madvise", &obj, &start, &stop, &advice))
        goto done;
    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    if (span.len >= MM_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_madvise(span.addr, span.len, advice);
        Py_END_ALLOW_THREADS
    }
    else if (span.len > 0)
        err = mm_sys_madvise(span.addr, span.len, advice);
    if (err != 0) {
        mm_set_oserror(err, "madvise", span.region->name);
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    mm_span_release(&span);
    return res;
}

/* Reads one byte of every page of the span: the fallback when MADV_POPULATE_READ is
 * missing, and the way to find where it failed. */
static void
touch_pages(void *arg)
{
    const mm_span *span = arg;
    size_t page = mm_page_size();
    for (size_t i = 0; i < span->len; i += page)
        (void)*(const volatile unsigned char *)(span->addr + i);
}

static PyObject *
pages_populate(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    int err = 0;
    mm_span span = {.region = NULL};

    if (!PyArg_ParseTuple(args, "Onn:populate", &obj, &start, &stop))
        goto done;
    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    if (span.len > 0) {
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_populate_read(span.addr, span.len);
        Py_END_ALLOW_THREADS
    }
    /* EFAULT: a page would raise SIGBUS (the file is shorter than the mapping): find it
     * with a guarded read, for an error that says where. */
    if (err == EFAULT && mm_span_guarded(&span, touch_pages, &span, 1, 0) < 0)
        goto done;
    if (err != 0) {
        mm_set_oserror(err, "madvise(MADV_POPULATE_READ)", span.region->name);
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    mm_span_release(&span);
    return res;
}

static PyObject *
pages_touch(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    mm_span span = {.region = NULL};

    if (!PyArg_ParseTuple(args, "Onn:touch", &obj, &start, &stop))
        goto done;
    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    if (span.len > 0 && mm_span_guarded(&span, touch_pages, &span, 1, 0) < 0)
        goto done;
    res = PyLong_FromSize_t(span.len / mm_page_size());
done:
    mm_span_release(&span);
    return res;
}

static PyObject *
pages_mincore(PyObject *module, PyObject *args)
{
    PyObject *obj, *vec = NULL, *res = NULL;
    Py_ssize_t start, stop, npages, i;
    unsigned char *resident;
    int err = 0;
    mm_span span = {.region = NULL};

    if (!PyArg_ParseTuple(args, "Onn:mincore", &obj, &start, &stop))
        goto done;
    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    npages = (Py_ssize_t)(span.len / mm_page_size());
    vec = PyBytes_FromStringAndSize(NULL, npages);
    if (vec == NULL)
        goto done;
    resident = (unsigned char *)PyBytes_AS_STRING(vec);
    if (span.len >= MM_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_mincore(span.addr, span.len, resident);
        Py_END_ALLOW_THREADS
    }
    else if (span.len > 0)
        err = mm_sys_mincore(span.addr, span.len, resident);
    if (err != 0) {
        mm_set_oserror(err, "mincore", span.region->name);
        goto done;
    }
    for (i = 0; i < npages; i++)
        resident[i] &= 1; /* the other bits are reserved */
    res = Py_NewRef(vec);
done:
    Py_XDECREF(vec);
    mm_span_release(&span);
    return res;
}

/* posix_fadvise (advice >= 0) or write-back (advice < 0) of the file pages under
 * [start, stop) of obj's region, on a private duplicate of its descriptor so that a
 * close() in another thread cannot redirect the call. False for anonymous memory. */
static PyObject *
file_range_call(PyObject *module, PyObject *obj, Py_ssize_t start, Py_ssize_t stop, int advice)
{
    PyObject *res = NULL;
    long long fstart;
    int fd = -1, err = 0;
    mm_span span = {.region = NULL};

    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    if (span.len == 0 || span.region->fd < 0 || span.region->anonymous) { /* nothing to do */
        res = Py_NewRef(Py_False);
        goto done;
    }
    fd = mm_region_dup_fd(span.region);
    if (fd < 0)
        goto done;
    fstart = mm_span_file_offset(&span, span.addr);
    Py_BEGIN_ALLOW_THREADS
    if (advice >= 0)
        err = posix_fadvise(fd, (off_t)fstart, (off_t)span.len, advice); /* returns the error */
    else
        err = mm_sys_writeback(fd, fstart, (long long)span.len);
    Py_END_ALLOW_THREADS
    if (err != 0) {
        mm_set_oserror(err, advice >= 0 ? "posix_fadvise" : "sync_file_range", span.region->name);
        goto done;
    }
    res = Py_NewRef(Py_True);
done:
    if (fd >= 0)
        close(fd);
    mm_span_release(&span);
    return res;
}

static PyObject *
pages_fadvise(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    int advice;

    if (!PyArg_ParseTuple(args, "Onni:fadvise", &obj, &start, &stop, &advice))
        goto done;
    if (advice < 0) {
        PyErr_Format(PyExc_ValueError, "invalid fadvise advice %d", advice);
        goto done;
    }
    res = file_range_call(module, obj, start, stop, advice);
done:
    return res;
}

static PyObject *
pages_writeback(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;

    if (PyArg_ParseTuple(args, "Onn:writeback", &obj, &start, &stop))
        res = file_range_call(module, obj, start, stop, -1);
    return res;
}

static PyMethodDef pages_methods[] = {
    {"madvise", pages_madvise, METH_VARARGS,
     "madvise(region, start, stop, advice)\n--\n\n"
     "madvise() the pages under bytes [start, stop) of region (page-rounded outwards)."},
    {"populate", pages_populate, METH_VARARGS,
     "populate(region, start, stop)\n--\n\n"
     "MADV_POPULATE_READ the pages under [start, stop); OSError where the kernel lacks it."},
    {"touch", pages_touch, METH_VARARGS,
     "touch(region, start, stop)\n--\n\n"
     "Read one byte of every page under [start, stop); returns the number of pages."},
    {"mincore", pages_mincore, METH_VARARGS,
     "mincore(region, start, stop)\n--\n\n"
     "bytes with one 0/1 entry per page under [start, stop): 1 when the page is resident."},
    {"fadvise", pages_fadvise, METH_VARARGS,
     "fadvise(region, start, stop, advice)\n--\n\n"
     "posix_fadvise() the file pages under [start, stop); False for anonymous memory."},
    {"writeback", pages_writeback, METH_VARARGS,
     "writeback(region, start, stop)\n--\n\n"
     "Write the file's dirty page-cache pages under [start, stop) to disk and wait "
     "(sync_file_range, else fdatasync); False for anonymous memory."},
    {NULL, NULL, 0, NULL},
};

/* The advice names the kernel headers know: _core.MADVICE, a dict name -> MADV_* value. */
static const struct {
    const char *name;
    int value;
} mm_advice_names[] = {
    {"normal", MADV_NORMAL},
    {"sequential", MADV_SEQUENTIAL},
    {"random", MADV_RANDOM},
    {"willneed", MADV_WILLNEED},
    {"dontneed", MADV_DONTNEED},
#ifdef MADV_HUGEPAGE
    {"hugepage", MADV_HUGEPAGE},
#endif
#ifdef MADV_NOHUGEPAGE
    {"nohugepage", MADV_NOHUGEPAGE},
#endif
    {NULL, 0},
};

static int
add_advice(PyObject *module)
{
    PyObject *names = PyDict_New(), *value = NULL;
    int rc = -1;
    size_t i;

    if (names == NULL)
        goto done;
    for (i = 0; mm_advice_names[i].name != NULL; i++) {
        value = PyLong_FromLong(mm_advice_names[i].value);
        if (value == NULL || PyDict_SetItemString(names, mm_advice_names[i].name, value) < 0)
            goto done;
        Py_CLEAR(value);
    }
    if (PyModule_AddObjectRef(module, "MADVICE", names) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "FADV_DONTNEED", POSIX_FADV_DONTNEED) < 0 ||
        PyModule_AddIntConstant(module, "FADV_WILLNEED", POSIX_FADV_WILLNEED) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(value);
    Py_XDECREF(names);
    return rc;
}

int
mm_pages_add(PyObject *module)
{
    int rc = -1;
    if (PyModule_AddFunctions(module, pages_methods) < 0)
        goto done;
    if (add_advice(module) < 0)
        goto done;
    rc = 0;
done:
    return rc;
}
