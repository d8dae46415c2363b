/* Sparse-file operations: punching holes (fallocate PUNCH_HOLE) and the data extents
 * of a file (lseek SEEK_DATA/SEEK_HOLE).
 *
 * punch works on a Region and a byte range [start, stop) counted from the region's
 * first byte, held as a span (span.c): the whole pages inside the range are
 * deallocated on a private duplicate of the descriptor, with the GIL released, and the
 * partial pages at its edges are zeroed through the shared mapping under a SIGBUS
 * guard.  extents works on a descriptor.  Policy lives in the Python layer.
 */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

/* ---- platform helpers: each returns 0 or an errno value -------------------- */

static int
mm_sys_punch(int fd, long long start, long long len)
{
    int err = EOPNOTSUPP;
#if defined(FALLOC_FL_PUNCH_HOLE) && defined(FALLOC_FL_KEEP_SIZE)
    err = 0;
    if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)start, (off_t)len) != 0)
        err = errno;
#else
    (void)fd;
    (void)start;
    (void)len;
#endif
    return err;
}

/* lseek with SEEK_DATA (data=1) or SEEK_HOLE (data=0).  *out gets the result. */
static int
mm_sys_seek(int fd, long long pos, int data, long long *out)
{
    int err = EINVAL;
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
    off_t found = lseek(fd, (off_t)pos, data ? SEEK_DATA : SEEK_HOLE);
    err = 0;
    if (found < 0)
        err = errno;
    else
        *out = (long long)found;
#else
    (void)fd;
    (void)pos;
    (void)data;
    (void)out;
#endif
    return err;
}

/* ---- punch ------------------------------------------------------------------ */

/* The bytes punch zeroes through the mapping: the partial pages at the edges. */
typedef struct {
    char *head;         /* first byte of the range, when its page is not whole */
    size_t head_len;
    char *tail;         /* first byte after the last whole page */
    size_t tail_len;
} mm_edges;

static void
zero_edges(void *arg)
{
    const mm_edges *edges = arg;
    if (edges->head_len > 0)
        memset(edges->head, 0, edges->head_len);
    if (edges->tail_len > 0)
        memset(edges->tail, 0, edges->tail_len);
}

/* ValueError unless the span's region is a writable shared file mapping. */
static int
check_punchable(const mm_region *region)
{
    int rc = -1;

    if (region->fd < 0 || region->anonymous) {
        PyErr_SetString(PyExc_ValueError, "punch needs a file-backed region (this one is anonymous)");
        goto done;
    }
    if (region->access != MM_ACCESS_WRITE || !region->shared) {
        PyErr_Format(PyExc_ValueError,
                     "punch needs a writable shared mapping (access 'w'); this region has access "
                     "'%c' (%s)%s%R", (int)region->access, region->shared ? "shared" : "private",
                     region->name == Py_None ? "" : ": ", region->name);
        goto done;
    }
    rc = 0;
done:
    return rc;
}

/* Deallocates the file's pages [whole_start, whole_stop) (file offsets, page aligned). */
static int
punch_whole_pages(const mm_span *span, long long whole_start, long long whole_stop)
{
    int fd, err, rc = -1;

    fd = mm_region_dup_fd(span->region);
    if (fd < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    err = mm_sys_punch(fd, whole_start, whole_stop - whole_start);
    Py_END_ALLOW_THREADS
    close(fd);
    if (err != 0) {
        mm_set_oserror(err, "fallocate(FALLOC_FL_PUNCH_HOLE)", span->region->name);
        goto done;
    }
    rc = 0;
done:
    return rc;
}

static PyObject *
sparse_punch(PyObject *module, PyObject *args)
{
    PyObject *obj, *res = NULL;
    Py_ssize_t start, stop;
    long long page = (long long)mm_page_size(), file_start, file_stop, whole_start, whole_stop;
    mm_span span = {.region = NULL};
    mm_edges edges = {NULL, 0, NULL, 0};
    char *data;

    if (!PyArg_ParseTuple(args, "Onn:punch", &obj, &start, &stop))
        goto done;
    if (mm_span_acquire(module, obj, start, stop, &span) < 0)
        goto done;
    if (check_punchable(span.region) < 0)
        goto done;
    if (span.len == 0) {
        res = PyLong_FromLong(0);
        goto done;
    }
    data = span.region->data;
    file_start = span.region->offset + start;
    file_stop = span.region->offset + stop;
    whole_start = file_start + (page - file_start % page) % page; /* first whole page */
    whole_stop = file_stop - file_stop % page;                    /* end of the last one */
    edges.head = data + start;
    if (whole_start < whole_stop) {
        if (punch_whole_pages(&span, whole_start, whole_stop) < 0)
            goto done;
        /* The partial pages at the edges are zeroed through the shared mapping. */
        edges.head_len = (size_t)(whole_start - file_start);
        edges.tail = data + (whole_stop - span.region->offset);
        edges.tail_len = (size_t)(file_stop - whole_stop);
    }
    else
        edges.head_len = (size_t)(stop - start);
    if ((edges.head_len > 0 || edges.tail_len > 0) &&
        mm_span_guarded(&span, zero_edges, &edges, 0, 1) < 0)
        goto done;
    res = PyLong_FromLongLong(whole_start < whole_stop ? whole_stop - whole_start : 0);
done:
    mm_span_release(&span);
    return res;
}

/* ---- extents ---------------------------------------------------------------- */

/* The data extent of fd that begins at or after pos, cut at stop: [*data, *hole).
 * Returns 1 with the extent, 0 when no data begins before stop, or -1 with OSError set.
 * Without hole support (at pos == start) everything is data. */
static int
next_extent(int fd, long long pos, long long start, long long stop, PyObject *path,
            long long *data, long long *hole)
{
    int err, rc = -1;

    err = mm_sys_seek(fd, pos, 1, data);
    if (err != 0 && pos == start && (err == EINVAL || err == EOPNOTSUPP)) {
        *data = start; /* no hole support: everything is data */
        *hole = stop;
        rc = 1;
    }
    else if (err != 0 && err != ENXIO)
        mm_set_oserror(err, "lseek(SEEK_DATA)", path);
    else if (err == ENXIO || stop <= *data) /* no data after pos, or none before stop */
        rc = 0;
    else {
        err = mm_sys_seek(fd, *data, 0, hole);
        if (err != 0)
            mm_set_oserror(err, "lseek(SEEK_HOLE)", path);
        else {
            if (*hole <= *data) /* cannot happen on a sane filesystem: avoid looping */
                *hole = stop;
            rc = 1;
        }
    }
    return rc;
}

/* extents(fd, start, stop, path=None): the data ranges of the file within [start, stop)
 * as a list of (start, stop) byte pairs.  The descriptor's file offset is restored. */
static PyObject *
sparse_extents(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *path = Py_None, *list = NULL, *item = NULL, *res = NULL;
    long long start, stop, pos, data = 0, hole = 0;
    off_t saved = -1;
    int fd, found;

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
    for (pos = start; pos < stop; pos = hole) {
        found = next_extent(fd, pos, start, stop, path, &data, &hole);
        if (found < 0)
            goto done;
        if (found == 0)
            break;
        item = Py_BuildValue("(LL)", data, hole < stop ? hole : stop);
        if (item == NULL || PyList_Append(list, item) < 0)
            goto done;
        Py_CLEAR(item);
    }
    res = Py_NewRef(list);
done:
    if (saved >= 0)
        (void)lseek(fd, saved, SEEK_SET);
    Py_XDECREF(item);
    Py_XDECREF(list);
    return res;
}

static PyMethodDef sparse_methods[] = {
    {"punch", sparse_punch, METH_VARARGS,
     "punch(region, start, stop)\n--\n\n"
     "Deallocate the whole pages of [start, stop) (fallocate PUNCH_HOLE|KEEP_SIZE) and zero "
     "the partial pages at the edges; returns the bytes deallocated."},
    {"extents", sparse_extents, METH_VARARGS,
     "extents(fd, start, stop, path=None)\n--\n\n"
     "Data ranges of the file within [start, stop), from lseek(SEEK_DATA/SEEK_HOLE)."},
    {NULL, NULL, 0, NULL},
};

int
mm_sparse_add(PyObject *module)
{
    return PyModule_AddFunctions(module, sparse_methods);
}
