/* Byte spans of a Region for the page and sparse-file operations (pages.c, sparse.c).
 *
 * A span is a byte range [start, stop) counted from the region's first byte, rounded
 * outwards to whole pages of the mapping, together with a buffer export of the region:
 * while a function works on a span the mapping stays put, even if another thread calls
 * close().  A descriptor used with the GIL released is a private duplicate
 * (mm_region_dup_fd), so a concurrent close() cannot make the syscall land on some other
 * file.
 */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>

int
mm_span_acquire(PyObject *module, PyObject *obj, Py_ssize_t start, Py_ssize_t stop, mm_span *span)
{
    size_t page = mm_page_size();
    size_t lo, hi;
    mm_region *region;
    int rc = -1;

    span->region = NULL;
    span->addr = NULL;
    span->len = 0;
    if (!mm_region_check(module, obj)) {
        PyErr_Format(PyExc_TypeError, "expected a Region, got %.100s", Py_TYPE(obj)->tp_name);
        goto done;
    }
    if (PyObject_GetBuffer(obj, &span->view, PyBUF_SIMPLE) < 0)
        goto done;
    region = (mm_region *)obj;
    if (start < 0 || stop < start || region->size < stop) {
        PyErr_Format(PyExc_ValueError, "byte range [%zd, %zd) is outside the region (%zd bytes)",
                     start, stop, region->size);
        PyBuffer_Release(&span->view);
        goto done;
    }
    span->region = region;
    if (start < stop && region->map_base != NULL) {
        /* Offsets from the page-aligned map_base, so the address stays a pointer. */
        lo = (size_t)(region->data - region->map_base) + (size_t)start;
        hi = (size_t)(region->data - region->map_base) + (size_t)stop;
        lo -= lo % page;
        hi += (page - hi % page) % page;
        span->addr = region->map_base + lo;
        span->len = hi - lo;
    }
    rc = 0;
done:
    return rc;
}

void
mm_span_release(mm_span *span)
{
    if (span->region != NULL) {
        PyBuffer_Release(&span->view);
        span->region = NULL;
    }
}

long long
mm_span_file_offset(const mm_span *span, const char *addr)
{
    return span->region->offset + (long long)(addr - span->region->data);
}

int
mm_span_guarded(mm_span *span, void (*fn)(void *), void *arg, int nogil, int write)
{
    void *fault = NULL;
    int rc = -1;

    if (mm_guard_acquire() < 0) {
        mm_set_oserror(errno, "sigaction(SIGBUS)", span->region->name);
        goto done;
    }
    if (nogil) {
        Py_BEGIN_ALLOW_THREADS
        rc = mm_guarded(fn, arg, span->addr, span->addr + span->len, &fault);
        Py_END_ALLOW_THREADS
    }
    else
        rc = mm_guarded(fn, arg, span->addr, span->addr + span->len, &fault);
    mm_guard_release();
    if (rc < 0)
        mm_set_fault_error((PyObject *)span->region, fault, write);
done:
    return rc;
}
