/* Page-cache and sparse-file operations: madvise, mincore, MADV_POPULATE_READ,
 * posix_fadvise, fallocate(PUNCH_HOLE) and lseek(SEEK_DATA/SEEK_HOLE).
 *
 * Each function works on a Region and a byte range [start, stop) counted from the
 * region's first byte.  The range is rounded outwards to whole pages of the mapping
 * (inwards for punching holes).  While it works, a function holds a buffer export of
 * the region, so the mapping stays put even if another thread calls close(); any
 * descriptor used with the GIL released is a private duplicate, so a concurrent
 * close() cannot make the syscall land on some other file.
 *
 * GIL policy: calls that only touch page tables (madvise, mincore) release the GIL
 * for ranges of MM_NOGIL_BYTES and more; calls that may wait for the disk
 * (MADV_POPULATE_READ, touching pages, posix_fadvise, sync_file_range, fallocate)
 * always release it, since even one page can take a disk read.  Policy (which advice,
 * which fallback, arrays to byte ranges) lives in mmarray/_pages.py.
 */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
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
#ifdef MADV_POPULATE_READ
    return mm_sys_madvise(addr, len, MADV_POPULATE_READ);
#else
    (void)addr;
    (void)len;
    return ENOSYS;
#endif
}

static int
mm_sys_punch(int fd, long long start, long long len)
{
#if defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_KEEP_SIZE)
    int err = 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start, (off_t)len) != 0)
        err = errno;
    return err;
#else
    (void)fd;
    (void)start;
    (void)len;
    return EOPNOTSUPP;
#endif
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

/* lseek with SEEK_DATA (data=1) or SEEK_HOLE (data=0).  *out gets the result. */
static int
mm_sys_seek(int fd, long long pos, int data, long long *out)
{
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
    int err = 0;
    off_t r = lseek(fd, (off_t)pos, data ? SEEK_DATA : SEEK_HOLE);
    if (r < 0)
        err = errno;
    else
        *out = (long long)r;
    return err;
#else
    (void)fd;
    (void)pos;
    (void)data;
    (void)out;
    return EINVAL;
#endif
}

/* ---- the span: an export plus a page-rounded address range ----------------- */

typedef struct {
    Py_buffer view; /* the export that keeps the mapping alive */
    mm_region *r;   /* NULL when no export is held */
    char *addr;     /* first byte of the page-rounded range */
    size_t len;     /* its length; 0 means there is nothing to do */
} mm_span;

/* Takes an export of obj (a Region) and rounds [start, stop) outwards to pages.
 * Returns 0, or -1 with an exception set and no export held. */
static int
span_acquire(PyObject *module, PyObject *obj, Py_ssize_t start, Py_ssize_t stop, mm_span *sp)
{
    size_t page = mm_page_size();
    size_t lo, hi;
    int rc = -1;

    sp->r = NULL;
    sp->addr = NULL;
    sp->len = 0;
    if (!mm_region_check(module, obj)) {
        PyErr_Format(PyExc_TypeError, "expected a Region, got %.100s", Py_TYPE(obj)->tp_name);
        goto done;
    }
    if (PyObject_GetBuffer(obj, &sp->view, PyBUF_SIMPLE) < 0)
        goto done;
    sp->r = (mm_region *)obj;
    if (start < 0 || stop < start || sp->r->size < stop) {
        PyErr_Format(PyExc_ValueError, "byte range [%zd, %zd) is outside the region (%zd bytes)",
                     start, stop, sp->r->size);
        PyBuffer_Release(&sp->view);
        sp->r = NULL;
        goto done;
    }
    if (start < stop && sp->r->map_base != NULL) {
        /* Offsets from the page-aligned map_base, so the address stays a pointer. */
        lo = (size_t)(sp->r->data - sp->r->map_base) + (size_t)start;
        hi = (size_t)(sp->r->data - sp->r->map_base) + (size_t)stop;
        lo -= lo % page;
        hi += (page - hi % page) % page;
        sp->addr = sp->r->map_base + lo;
        sp->len = hi - lo;
    }
    rc = 0;
done:
    return rc;
}

static void
span_release(mm_span *sp)
{
    if (sp->r != NULL) {
        PyBuffer_Release(&sp->view);
        sp->r = NULL;
    }
}

/* File offset of the mapped byte at addr (addr lies inside the region's mapping). */
static long long
span_file_offset(const mm_span *sp, const char *addr)
{
    return sp->r->offset + (long long)(addr - sp->r->data);
}

/* ---- module functions ----------------------------------------------------- */

static PyObject *
pages_madvise(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    int advice, err = 0;
    mm_span sp = {.r = NULL};

    if (!PyArg_ParseTuple(args, "Onni:madvise", &obj, &start, &stop, &advice))
        goto done;
    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    if (sp.len >= MM_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_madvise(sp.addr, sp.len, advice);
        Py_END_ALLOW_THREADS
    }
    else if (sp.len > 0)
        err = mm_sys_madvise(sp.addr, sp.len, advice);
    if (err != 0) {
        mm_set_oserror(err, "madvise", sp.r->name);
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    span_release(&sp);
    return res;
}

static void touch_pages(void *arg);
static int span_guarded(mm_span *sp, void (*fn)(void *), void *arg, int nogil, int write);

static PyObject *
pages_populate(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    int err = 0;
    mm_span sp = {.r = NULL};

    if (!PyArg_ParseTuple(args, "Onn:populate", &obj, &start, &stop))
        goto done;
    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    if (sp.len > 0) {
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_populate_read(sp.addr, sp.len);
        Py_END_ALLOW_THREADS
    }
    /* EFAULT: a page would raise SIGBUS (the file is shorter than the mapping): find it
     * with a guarded read, for an error that says where. */
    if (err == EFAULT && span_guarded(&sp, touch_pages, &sp, 1, 0) < 0)
        goto done;
    if (err != 0) {
        mm_set_oserror(err, "madvise(MADV_POPULATE_READ)", sp.r->name);
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    span_release(&sp);
    return res;
}

/* Reads one byte of every page of the span: the fallback when MADV_POPULATE_READ is
 * missing, and the way to find where it failed. */
static void
touch_pages(void *arg)
{
    const mm_span *sp = arg;
    size_t page = mm_page_size();
    for (size_t i = 0; i < sp->len; i += page)
        (void)*(const volatile unsigned char *)(sp->addr + i);
}

/* Runs fn(arg) under a SIGBUS guard over the span; releases the GIL if nogil.  Returns
 * 0, or -1 with OSError set (a SIGBUS names the region and the offset). */
static int
span_guarded(mm_span *sp, void (*fn)(void *), void *arg, int nogil, int write)
{
    void *fault = NULL;
    int rc = -1;

    if (mm_guard_acquire() < 0) {
        mm_set_oserror(errno, "sigaction(SIGBUS)", sp->r->name);
        goto done;
    }
    if (nogil) {
        Py_BEGIN_ALLOW_THREADS
        rc = mm_guarded(fn, arg, sp->addr, sp->addr + sp->len, &fault);
        Py_END_ALLOW_THREADS
    }
    else
        rc = mm_guarded(fn, arg, sp->addr, sp->addr + sp->len, &fault);
    mm_guard_release();
    if (rc < 0)
        mm_set_fault_error((PyObject *)sp->r, fault, write);
done:
    return rc;
}

static PyObject *
pages_touch(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    mm_span sp = {.r = NULL};

    if (!PyArg_ParseTuple(args, "Onn:touch", &obj, &start, &stop))
        goto done;
    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    if (sp.len > 0 && span_guarded(&sp, touch_pages, &sp, 1, 0) < 0)
        goto done;
    res = PyLong_FromSize_t(sp.len / mm_page_size());
done:
    span_release(&sp);
    return res;
}

static PyObject *
pages_mincore(PyObject *module, PyObject *args)
{
    PyObject *obj, *vec = NULL, *res = NULL;
    Py_ssize_t start, stop, npages, i;
    unsigned char *p;
    int err = 0;
    mm_span sp = {.r = NULL};

    if (!PyArg_ParseTuple(args, "Onn:mincore", &obj, &start, &stop))
        goto done;
    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    npages = (Py_ssize_t)(sp.len / mm_page_size());
    vec = PyBytes_FromStringAndSize(NULL, npages);
    if (vec == NULL)
        goto done;
    p = (unsigned char *)PyBytes_AS_STRING(vec);
    if (sp.len >= MM_NOGIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        if (mincore(sp.addr, sp.len, p) != 0)
            err = errno;
        Py_END_ALLOW_THREADS
    }
    else if (sp.len > 0 && mincore(sp.addr, sp.len, p) != 0)
        err = errno;
    if (err != 0) {
        mm_set_oserror(err, "mincore", sp.r->name);
        goto done;
    }
    for (i = 0; i < npages; i++)
        p[i] &= 1; /* the other bits are reserved */
    res = Py_NewRef(vec);
done:
    Py_XDECREF(vec);
    span_release(&sp);
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
    mm_span sp = {.r = NULL};

    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    if (sp.len == 0 || sp.r->fd < 0 || sp.r->anonymous) { /* nothing to do, or no file */
        res = Py_NewRef(Py_False);
        goto done;
    }
    fd = fcntl(sp.r->fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) {
        mm_set_oserror(errno, "fcntl(F_DUPFD_CLOEXEC)", sp.r->name);
        goto done;
    }
    fstart = span_file_offset(&sp, sp.addr);
    Py_BEGIN_ALLOW_THREADS
    if (advice >= 0)
        err = posix_fadvise(fd, (off_t)fstart, (off_t)sp.len, advice); /* returns the error */
    else
        err = mm_sys_writeback(fd, fstart, (long long)sp.len);
    Py_END_ALLOW_THREADS
    if (err != 0) {
        mm_set_oserror(err, advice >= 0 ? "posix_fadvise" : "sync_file_range", sp.r->name);
        goto done;
    }
    res = Py_NewRef(Py_True);
done:
    if (fd >= 0)
        close(fd);
    span_release(&sp);
    return res;
}

static PyObject *
pages_fadvise(PyObject *module, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t start, stop;
    int advice;

    if (!PyArg_ParseTuple(args, "Onni:fadvise", &obj, &start, &stop, &advice))
        return NULL;
    if (advice < 0) {
        PyErr_Format(PyExc_ValueError, "invalid fadvise advice %d", advice);
        return NULL;
    }
    return file_range_call(module, obj, start, stop, advice);
}

static PyObject *
pages_writeback(PyObject *module, PyObject *args)
{
    PyObject *obj;
    Py_ssize_t start, stop;

    if (!PyArg_ParseTuple(args, "Onn:writeback", &obj, &start, &stop))
        return NULL;
    return file_range_call(module, obj, start, stop, -1);
}

/* The bytes punch zeroes through the mapping: the partial pages at the edges. */
typedef struct {
    char *p0, *p1;
    size_t n0, n1;
} mm_zero;

static void
zero_edges(void *arg)
{
    const mm_zero *z = arg;
    if (z->n0 > 0)
        memset(z->p0, 0, z->n0);
    if (z->n1 > 0)
        memset(z->p1, 0, z->n1);
}

static PyObject *
pages_punch(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    long long page = (long long)mm_page_size(), flo, fhi, a, b;
    int fd = -1, err = 0;
    mm_span sp = {.r = NULL};
    mm_zero zero = {NULL, NULL, 0, 0};
    char *data;

    if (!PyArg_ParseTuple(args, "Onn:punch", &obj, &start, &stop))
        goto done;
    if (span_acquire(module, obj, start, stop, &sp) < 0)
        goto done;
    if (sp.r->fd < 0 || sp.r->anonymous) {
        PyErr_SetString(PyExc_ValueError, "punch needs a file-backed region (this one is anonymous)");
        goto done;
    }
    if (sp.r->access != MM_ACCESS_WRITE || !sp.r->shared) {
        PyErr_Format(PyExc_ValueError,
                     "punch needs a writable shared mapping (access 'w'); this region has access "
                     "'%c' (%s)%s%R", sp.r->access, sp.r->shared ? "shared" : "private",
                     sp.r->name == Py_None ? "" : ": ", sp.r->name == Py_None ? Py_None : sp.r->name);
        goto done;
    }
    if (sp.len == 0) {
        res = PyLong_FromLong(0);
        goto done;
    }
    data = sp.r->data;
    flo = sp.r->offset + start;
    fhi = sp.r->offset + stop;
    a = flo + (page - flo % page) % page; /* first whole page */
    b = fhi - fhi % page;                 /* end of the last whole page */
    if (a < b) {
        fd = fcntl(sp.r->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            mm_set_oserror(errno, "fcntl(F_DUPFD_CLOEXEC)", sp.r->name);
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        err = mm_sys_punch(fd, a, b - a);
        Py_END_ALLOW_THREADS
        if (err != 0) {
            mm_set_oserror(err, "fallocate(FALLOC_FL_PUNCH_HOLE)", sp.r->name);
            goto done;
        }
        /* The partial pages at the edges are zeroed through the shared mapping. */
        zero.p0 = data + start;
        zero.n0 = (size_t)(a - flo);
        zero.p1 = data + (b - sp.r->offset);
        zero.n1 = (size_t)(fhi - b);
    }
    else {
        zero.p0 = data + start;
        zero.n0 = (size_t)(stop - start);
    }
    if ((zero.n0 > 0 || zero.n1 > 0) && span_guarded(&sp, zero_edges, &zero, 0, 1) < 0)
        goto done;
    res = a < b ? PyLong_FromLongLong(b - a) : PyLong_FromLong(0);
done:
    if (fd >= 0)
        close(fd);
    span_release(&sp);
    return res;
}

/* extents(fd, start, stop, path=None): the data ranges of the file within [start, stop)
 * as a list of (start, stop) byte pairs.  The descriptor's file offset is restored. */
static PyObject *
pages_extents(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *path = Py_None, *list = NULL, *item = NULL, *res = NULL;
    long long start, stop, pos, d = 0, h = 0;
    off_t saved = -1;
    int fd, err;

    if (!PyArg_ParseTuple(args, "iLL|O:extents", &fd, &start, &stop, &path))
        goto done;
    if (start < 0 || stop < start) {
        PyErr_Format(PyExc_ValueError, "bad byte range [%lld, %lld)", start, stop);
        goto done;
    }
    list = PyList_New(0);
    if (list == NULL)
        goto done;
    saved = lseek(fd, 0, SEEK_CUR);
    if (saved < 0) {
        mm_set_oserror(errno, "lseek", path);
        goto done;
    }
    pos = start;
    while (pos < stop) {
        err = mm_sys_seek(fd, pos, 1, &d);
        if (err == ENXIO) /* no data after pos */
            break;
        if (err != 0 && pos == start && (err == EINVAL || err == EOPNOTSUPP)) {
            d = start; /* no hole support: everything is data */
            h = stop;
        }
        else if (err != 0) {
            mm_set_oserror(err, "lseek(SEEK_DATA)", path);
            goto done;
        }
        else {
            if (stop <= d)
                break;
            err = mm_sys_seek(fd, d, 0, &h);
            if (err != 0) {
                mm_set_oserror(err, "lseek(SEEK_HOLE)", path);
                goto done;
            }
            if (h <= d) { /* cannot happen on a sane filesystem: avoid looping */
                h = stop;
            }
        }
        item = Py_BuildValue("(LL)", d, h < stop ? h : stop);
        if (item == NULL || PyList_Append(list, item) < 0)
            goto done;
        Py_CLEAR(item);
        pos = h;
    }
    res = Py_NewRef(list);
done:
    if (saved >= 0)
        (void)lseek(fd, saved, SEEK_SET);
    Py_XDECREF(item);
    Py_XDECREF(list);
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
    {"punch", pages_punch, METH_VARARGS,
     "punch(region, start, stop)\n--\n\n"
     "Deallocate the whole pages of [start, stop) (fallocate PUNCH_HOLE|KEEP_SIZE) and zero "
     "the partial pages at the edges; returns the bytes deallocated."},
    {"extents", pages_extents, METH_VARARGS,
     "extents(fd, start, stop, path=None)\n--\n\n"
     "Data ranges of the file within [start, stop), from lseek(SEEK_DATA/SEEK_HOLE)."},
    {NULL, NULL, 0, NULL},
};

/* The advice names the kernel headers know, as a dict name -> MADV_* value. */
static int
add_advice(PyObject *module)
{
    PyObject *d = PyDict_New(), *v = NULL;
    int rc = -1;
    struct {
        const char *name;
        int value;
    } table[] = {
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
    size_t i;

    if (d == NULL)
        goto done;
    for (i = 0; table[i].name != NULL; i++) {
        v = PyLong_FromLong(table[i].value);
        if (v == NULL || PyDict_SetItemString(d, table[i].name, v) < 0)
            goto done;
        Py_CLEAR(v);
    }
    if (PyModule_AddObjectRef(module, "MADVICE", d) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "FADV_DONTNEED", POSIX_FADV_DONTNEED) < 0 ||
        PyModule_AddIntConstant(module, "FADV_WILLNEED", POSIX_FADV_WILLNEED) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(v);
    Py_XDECREF(d);
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
