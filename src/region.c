/* Region: one mmap region (file-backed or anonymous) exporting the buffer protocol,
 * and _core.ndarray, the numpy arrays over it.  This file holds the Python type
 * (arguments, buffer exports, close, flush, attributes); map.c makes the mapping.
 *
 * Close policy ("deferred unmap"): close() marks the region closed at once, closes
 * its descriptor and refuses new exports and new work with ValueError; the memory
 * itself is unmapped as soon as no buffer export is alive (immediately when there is
 * none).  Every numpy array mmarray makes holds an export, so no array can ever point
 * at unmapped memory, and close() never breaks an array that is still in use.
 */
#include "mmarray.h"

#define NO_IMPORT_ARRAY
#define PY_ARRAY_UNIQUE_SYMBOL MMARRAY_ARRAY_API
#include <numpy/arrayobject.h>

#include <errno.h>
#include <structmember.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Unmaps and closes what the region still holds. Safe on a half-built region. */
static void
region_release_resources(mm_region *self)
{
    if (self->map_base != NULL) {
        munmap(self->map_base, self->map_len);
        self->map_base = NULL;
        self->map_len = 0;
    }
    self->data = NULL;
    if (self->fd >= 0) {
        close(self->fd);
        self->fd = -1;
    }
}

static mm_region *
region_alloc(PyTypeObject *type, PyObject *name)
{
    mm_region *self = (mm_region *)type->tp_alloc(type, 0);
    if (self != NULL) {
        self->fd = -1;
        self->name = Py_NewRef(name);
    }
    return self;
}

/* Maps [offset, offset + length) of the descriptor fd, which the region takes over
 * (it is closed on failure too).  length < 0 means "to the end of the file". */
static PyObject *
region_map_fd(PyTypeObject *type, int fd, long long length, long long offset, mm_access access,
              int shared, PyObject *name, int check_fd)
{
    mm_region *self = region_alloc(type, name);

    if (self == NULL)
        close(fd);
    else if (mm_map_file(self, fd, length, offset, access, shared, check_fd) < 0)
        Py_CLEAR(self);
    return (PyObject *)self;
}

static PyObject *
region_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"fileno", "length", "offset", "access", "shared", "name", NULL};
    int fd, newfd, shared = 1;
    mm_access access = MM_ACCESS_READ;
    long long length = 0, offset = 0;
    PyObject *access_obj = NULL, *name = Py_None;
    PyObject *res = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i|LL$OpO:Region", kwlist, &fd, &length,
                                     &offset, &access_obj, &shared, &name))
        goto done;
    if (!mm_map_parse_mode(access_obj, length, &access, &shared))
        goto done;
    if (fd < 0) {
        mm_set_oserror_fmt(EBADF, name, "fileno must be an open file descriptor");
        goto done;
    }
    newfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (newfd < 0) {
        mm_set_oserror(errno, "dup", name);
        goto done;
    }
    res = region_map_fd(type, newfd, length == 0 ? -1 : length, offset, access, shared, name, 1);
done:
    return res;
}

static PyObject *
region_open(PyObject *cls, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", "length", "offset", "access", "shared", NULL};
    PyObject *path = NULL, *fspath = NULL, *bytes = NULL, *access_obj = NULL, *res = NULL;
    long long length = 0, offset = 0;
    mm_access access = MM_ACCESS_READ;
    int shared = 1, fd, oflag;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|LL$Op:open", kwlist, &path, &length,
                                     &offset, &access_obj, &shared))
        goto done;
    if (!mm_map_parse_mode(access_obj, length, &access, &shared))
        goto done;
    fspath = PyOS_FSPath(path);
    if (fspath == NULL || !PyUnicode_FSConverter(fspath, &bytes))
        goto done;
    /* O_NONBLOCK: opening a FIFO returns at once (and mapping it then fails) instead of
     * waiting for a writer forever; it changes nothing for regular files. */
    oflag = (access == MM_ACCESS_WRITE ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK;
    fd = open(PyBytes_AS_STRING(bytes), oflag);
    if (fd < 0) {
        mm_set_oserror(errno, "open", fspath);
        goto done;
    }
    res = region_map_fd((PyTypeObject *)cls, fd, length == 0 ? -1 : length, offset, access,
                        shared, fspath, 0);
done:
    Py_XDECREF(bytes);
    Py_XDECREF(fspath);
    return res;
}

static PyObject *
region_anonymous(PyObject *cls, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"length", "shared", NULL};
    long long length;
    int shared = 1;
    mm_region *self = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "L|$p:anonymous", kwlist, &length, &shared))
        goto done;
    if (mm_map_check_nonnegative(length) < 0 || mm_map_check_length(length) < 0)
        goto done;
    self = region_alloc((PyTypeObject *)cls, Py_None);
    if (self != NULL && mm_map_anonymous(self, length, shared) < 0)
        Py_CLEAR(self);
done:
    return (PyObject *)self;
}

static void
region_dealloc(mm_region *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    region_release_resources(self);
    Py_CLEAR(self->name);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static int
region_check_open(mm_region *self)
{
    int rc = 0;
    if (self->closed) {
        PyErr_SetString(PyExc_ValueError, "operation on a closed Region");
        rc = -1;
    }
    return rc;
}

static int
region_getbuffer(mm_region *self, Py_buffer *view, int flags)
{
    int rc = -1;
    if (region_check_open(self) < 0)
        goto done;
    if ((flags & PyBUF_WRITABLE) && self->access == MM_ACCESS_READ) {
        PyErr_SetString(PyExc_BufferError, "Region is read-only (access 'r')");
        goto done;
    }
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size,
                          self->access == MM_ACCESS_READ, flags) < 0)
        goto done;
    self->exports++; /* counted only once the buffer is filled */
    rc = 0;
done:
    return rc;
}

static void
region_releasebuffer(mm_region *self, Py_buffer *Py_UNUSED(view))
{
    self->exports--;
    if (self->exports == 0 && self->closed)
        region_release_resources(self);
}

static PyObject *
region_close(mm_region *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->closed) {
        self->closed = 1;
        if (self->fd >= 0) {
            close(self->fd);
            self->fd = -1;
        }
        if (self->exports == 0)
            region_release_resources(self);
    }
    Py_RETURN_NONE;
}

static PyObject *
region_flush(mm_region *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"offset", "size", "sync", NULL};
    Py_ssize_t offset = 0, size;
    PyObject *size_obj = Py_None;
    int sync = 1, rc, err = 0, fd = -1, held = 0;
    size_t page = mm_page_size(), start, end;
    char *base;
    Py_buffer view;
    PyObject *res = NULL;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|nO$p:flush", kwlist, &offset, &size_obj, &sync))
        goto done;
    if (region_check_open(self) < 0)
        goto done;
    if (offset < 0 || offset > self->size) {
        PyErr_Format(PyExc_ValueError, "flush offset %zd is outside the region (%zd bytes)",
                     offset, self->size);
        goto done;
    }
    if (size_obj == Py_None)
        size = self->size - offset;
    else {
        size = PyNumber_AsSsize_t(size_obj, PyExc_OverflowError);
        if (size == -1 && PyErr_Occurred())
            goto done;
        if (size < 0 || self->size - offset < size) {
            PyErr_Format(PyExc_ValueError,
                         "flush of %zd bytes at offset %zd does not fit the region (%zd bytes)",
                         size, offset, self->size);
            goto done;
        }
    }
    if (size == 0 || self->map_base == NULL || self->access != MM_ACCESS_WRITE || !self->shared) {
        res = Py_NewRef(Py_None);
        goto done;
    }
    /* Without the GIL another thread may close() the region: the export keeps the
     * mapping, and fdatasync runs on a descriptor of our own, never on a number that
     * close() freed and some other open() reused. */
    if (PyObject_GetBuffer((PyObject *)self, &view, PyBUF_SIMPLE) < 0)
        goto done;
    held = 1;
    if (sync && self->fd >= 0 && (fd = mm_region_dup_fd(self)) < 0)
        goto done;
    base = self->map_base;
    start = (size_t)(self->data - base) + (size_t)offset;
    end = start + (size_t)size;
    start -= start % page;
    Py_BEGIN_ALLOW_THREADS
    rc = msync(base + start, end - start, sync ? MS_SYNC : MS_ASYNC);
    if (rc != 0)
        err = errno;
    /* The file's size (set by create or grow) must reach the disk too. */
    else if (fd >= 0 && fdatasync(fd) != 0) {
        err = errno;
        rc = 1;
    }
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        mm_set_oserror(err, rc == 1 ? "fdatasync" : "msync", self->name);
        goto done;
    }
    res = Py_NewRef(Py_None);
done:
    if (fd >= 0)
        close(fd);
    if (held)
        PyBuffer_Release(&view);
    return res;
}

int
mm_region_dup_fd(mm_region *self)
{
    int fd = -1;

    if (self->fd < 0)
        PyErr_Format(PyExc_ValueError, "%s has no file descriptor",
                     self->closed ? "a closed Region" : "private anonymous memory");
    else if ((fd = fcntl(self->fd, F_DUPFD_CLOEXEC, 0)) < 0)
        mm_set_oserror(errno, "fcntl(F_DUPFD_CLOEXEC)", self->name);
    return fd;
}

static PyObject *
region_dup(mm_region *self, PyObject *Py_UNUSED(ignored))
{
    int fd = region_check_open(self) < 0 ? -1 : mm_region_dup_fd(self);
    return fd < 0 ? NULL : PyLong_FromLong(fd);
}

static PyObject *
region_fileno(mm_region *self, PyObject *Py_UNUSED(ignored))
{
    return region_check_open(self) < 0 ? NULL : PyLong_FromLong(self->fd);
}

/* Jupyter's rich repr: what the function the Python layer set with _set_repr_html
 * draws (the one-line repr and a picture of the resident pages), or None while none is
 * set (Jupyter then shows the plain repr).  The C core does no presentation. */
static PyObject *
region_repr_html(mm_region *self, PyObject *Py_UNUSED(ignored))
{
    mm_state *st = mm_state_of_type(Py_TYPE(self));
    PyObject *res = NULL;

    if (st != NULL && st->repr_html != NULL)
        res = PyObject_CallOneArg(st->repr_html, (PyObject *)self);
    else if (st != NULL)
        res = Py_NewRef(Py_None);
    return res;
}

static PyObject *
region_enter(mm_region *self, PyObject *Py_UNUSED(ignored))
{
    return region_check_open(self) < 0 ? NULL : Py_NewRef(self);
}

static PyObject *
region_exit(mm_region *self, PyObject *Py_UNUSED(args))
{
    return region_close(self, NULL);
}

static Py_ssize_t
region_length(mm_region *self)
{
    return region_check_open(self) < 0 ? -1 : self->size;
}

static PyObject *
region_repr(mm_region *self)
{
    const char *state = self->closed ? (self->map_base != NULL ? "closing" : "closed") : "open";
    const char *kind = self->shared ? "shared" : "private";
    PyObject *res;

    if (self->anonymous)
        res = PyUnicode_FromFormat("<mmarray.Region %s anonymous %s size=%zd access='%c' exports=%zd>",
                                   state, kind, self->size, (int)self->access, self->exports);
    else
        res = PyUnicode_FromFormat("<mmarray.Region %s %R %s offset=%lld size=%zd access='%c' exports=%zd>",
                                   state, self->name, kind, self->offset, self->size,
                                   (int)self->access, self->exports);
    return res;
}

static PyObject *
get_size(mm_region *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->size); }
static PyObject *
get_offset(mm_region *self, void *Py_UNUSED(c)) { return PyLong_FromLongLong(self->offset); }
static PyObject *
get_access(mm_region *self, void *Py_UNUSED(c)) { return PyUnicode_FromOrdinal((int)self->access); }
static PyObject *
get_shared(mm_region *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->shared); }
static PyObject *
get_closed(mm_region *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->closed); }
static PyObject *
get_mapped(mm_region *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->map_base != NULL); }
static PyObject *
get_exports(mm_region *self, void *Py_UNUSED(c)) { return PyLong_FromSsize_t(self->exports); }
static PyObject *
get_anonymous(mm_region *self, void *Py_UNUSED(c)) { return PyBool_FromLong(self->anonymous); }
static PyObject *
get_name(mm_region *self, void *Py_UNUSED(c)) { return Py_NewRef(self->name); }
static PyObject *
get_address(mm_region *self, void *Py_UNUSED(c))
{
    PyObject *res = NULL;
    if (self->data == NULL)
        PyErr_SetString(PyExc_ValueError, "Region is unmapped");
    else
        res = PyLong_FromVoidPtr(self->data);
    return res;
}

static PyGetSetDef region_getset[] = {
    {"size", (getter)get_size, NULL, "Number of bytes in the region.", NULL},
    {"offset", (getter)get_offset, NULL, "File offset of the first byte (0 when anonymous).", NULL},
    {"access", (getter)get_access, NULL, "'r' read-only, 'w' read-write, 'c' copy-on-write.", NULL},
    {"shared", (getter)get_shared, NULL, "True for MAP_SHARED, False for MAP_PRIVATE.", NULL},
    {"closed", (getter)get_closed, NULL, "True once close() was called.", NULL},
    {"mapped", (getter)get_mapped, NULL, "True while the memory is mapped.", NULL},
    {"exports", (getter)get_exports, NULL, "Number of live buffer exports (arrays, memoryviews).", NULL},
    {"is_anonymous", (getter)get_anonymous, NULL, "True for memory that belongs to no file.", NULL},
    {"name", (getter)get_name, NULL, "The path the region maps, or None.", NULL},
    {"address", (getter)get_address, NULL, "Address of the first byte, as an int.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef region_methods[] = {
    {"open", (PyCFunction)(void (*)(void))region_open, METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "open(path, length=0, offset=0, *, access='r', shared=True)\n--\n\n"
     "Open path and map [offset, offset+length) of it (length 0: to the end of the file)."},
    {"anonymous", (PyCFunction)(void (*)(void))region_anonymous,
     METH_VARARGS | METH_KEYWORDS | METH_CLASS,
     "anonymous(length, *, shared=True)\n--\n\nMap anonymous zero-filled memory."},
    {"close", (PyCFunction)region_close, METH_NOARGS,
     "close()\n--\n\nClose the region: no new exports; unmapped once no export is alive."},
    {"flush", (PyCFunction)(void (*)(void))region_flush, METH_VARARGS | METH_KEYWORDS,
     "flush(offset=0, size=None, *, sync=True)\n--\n\n"
     "msync the given byte range: MS_SYNC then fdatasync of the file (so that its size\n"
     "reaches the disk too), or only MS_ASYNC when sync is False."},
    {"dup", (PyCFunction)region_dup, METH_NOARGS,
     "dup()\n--\n\nA new descriptor of the mapped file (close-on-exec) that the caller owns and\n"
     "must close: what to act on instead of fileno()'s number, which another thread's\n"
     "close() frees for reuse.  ValueError for a closed region or private anonymous memory."},
    {"fileno", (PyCFunction)region_fileno, METH_NOARGS,
     "fileno()\n--\n\nThe region's own descriptor of the mapped file (a memfd for shared anonymous\nmemory, -1 for private anonymous memory)."},
    {"_repr_html_", (PyCFunction)region_repr_html, METH_NOARGS,
     "_repr_html_()\n--\n\nHTML for Jupyter: the repr and the resident-page map, drawn by the\n"
     "function _core._set_repr_html set (None while none is set)."},
    {"__enter__", (PyCFunction)region_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)region_exit, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef region_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(mm_region, weakreflist), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

PyDoc_STRVAR(region_doc,
"Region(fileno, length=0, offset=0, *, access='r', shared=True, name=None)\n--\n\n"
"A memory-mapped region of a file (or of anonymous memory) that exports the buffer\n"
"protocol.  Any byte offset is accepted.  access: 'r' read-only, 'w' read-write,\n"
"'c' copy-on-write (MAP_PRIVATE); shared=False with 'w' means 'c'.\n\n"
"close() is deferred while buffers are exported: the region refuses new work at once\n"
"and unmaps when the last array over it is released.");

static PyType_Slot region_slots[] = {
    {Py_tp_new, region_new},
    {Py_tp_dealloc, region_dealloc},
    {Py_tp_repr, region_repr},
    {Py_tp_methods, region_methods},
    {Py_tp_getset, region_getset},
    {Py_tp_members, region_members},
    {Py_tp_doc, (void *)region_doc},
    {Py_bf_getbuffer, region_getbuffer},
    {Py_bf_releasebuffer, region_releasebuffer},
    {Py_sq_length, region_length},
    {0, NULL},
};

static PyType_Spec region_spec = {
    .name = "mmarray._core.Region",
    .basicsize = sizeof(mm_region),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_IMMUTABLETYPE,
    .slots = region_slots,
};

/* ---- arrays over a region ------------------------------------------------ */

/* The byte size of an array of shape with items of itemsize bytes, checked: no
 * negative dimension, no overflow.  Returns 0, or -1 with ValueError set. */
static int
shape_nbytes(const PyArray_Dims *shape, Py_ssize_t itemsize, Py_ssize_t *nbytes)
{
    int i, rc = -1;

    *nbytes = itemsize;
    for (i = 0; i < shape->len; i++) {
        if (shape->ptr[i] < 0) {
            PyErr_Format(PyExc_ValueError, "negative dimension %zd in shape", (Py_ssize_t)shape->ptr[i]);
            goto done;
        }
    }
    for (i = 0; i < shape->len; i++) {
        if (shape->ptr[i] == 0) {
            *nbytes = 0;
            break;
        }
        if (*nbytes > PY_SSIZE_T_MAX / shape->ptr[i]) {
            PyErr_SetString(PyExc_ValueError, "array is too big: the shape's byte size overflows");
            goto done;
        }
        *nbytes *= shape->ptr[i];
    }
    rc = 0;
done:
    return rc;
}

/* The array type ndarray() makes: numpy.ndarray for None, else a subclass of it. */
static int
array_subtype(PyObject *subtype, PyTypeObject **type)
{
    int rc = 0;

    if (subtype == Py_None)
        *type = &PyArray_Type;
    else if (PyType_Check(subtype) && PyType_IsSubtype((PyTypeObject *)subtype, &PyArray_Type))
        *type = (PyTypeObject *)subtype;
    else {
        PyErr_SetString(PyExc_TypeError, "subtype must be a subclass of numpy.ndarray");
        rc = -1;
    }
    return rc;
}

/* The ndarray of type over the region's bytes from offset, based on a memoryview of
 * the region (a real export).  Steals descr. */
static PyObject *
array_over(PyObject *region, PyTypeObject *type, PyArray_Descr *descr, const PyArray_Dims *shape,
           Py_ssize_t offset, int fortran)
{
    const mm_region *reg = (const mm_region *)region;
    PyObject *mview = NULL, *arr = NULL;
    int flags;

    mview = PyMemoryView_FromObject(region); /* takes the export; fails on a closed region */
    if (mview == NULL)
        goto fail;
    flags = (fortran ? NPY_ARRAY_F_CONTIGUOUS : 0) |
            (reg->access == MM_ACCESS_READ ? 0 : NPY_ARRAY_WRITEABLE);
    arr = PyArray_NewFromDescr(type, descr, shape->len, shape->ptr, NULL, reg->data + offset,
                               flags, NULL);
    descr = NULL; /* stolen */
    if (arr == NULL)
        goto fail;
    if (PyArray_SetBaseObject((PyArrayObject *)arr, mview) < 0) {
        mview = NULL; /* stolen even on failure */
        goto fail;
    }
    goto done;
fail:
    Py_XDECREF(descr);
    Py_CLEAR(arr);
    Py_XDECREF(mview);
done:
    return arr;
}

/* ndarray(region, dtype, shape, offset=0, fortran=False, subtype=None)
 *
 * A numpy array (or subtype instance) over region's bytes starting at offset.  The
 * array's base is a memoryview of the region, so it holds a real export: the region
 * cannot be unmapped while the array (or any view of it) is alive. */
static PyObject *
region_ndarray(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"region", "dtype", "shape", "offset", "fortran", "subtype", NULL};
    PyObject *region = NULL, *dtype_obj = NULL, *shape_obj = NULL, *subtype = Py_None;
    PyObject *arr = NULL;
    PyArray_Descr *descr = NULL;
    PyArray_Dims shape = {NULL, 0};
    Py_ssize_t offset = 0, nbytes, size;
    PyTypeObject *type;
    int fortran = 0;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|npO:ndarray", kwlist, &region, &dtype_obj,
                                     &shape_obj, &offset, &fortran, &subtype))
        goto done;
    if (!mm_region_check(module, region)) {
        PyErr_Format(PyExc_TypeError, "expected a Region, got %.100s", Py_TYPE(region)->tp_name);
        goto done;
    }
    if (array_subtype(subtype, &type) < 0 || !PyArray_DescrConverter(dtype_obj, &descr))
        goto done;
    if (PyDataType_REFCHK(descr)) {
        PyErr_SetString(PyExc_TypeError, "cannot map arrays of Python objects (dtype with object fields)");
        goto done;
    }
    if (!PyArray_IntpConverter(shape_obj, &shape) ||
        shape_nbytes(&shape, PyDataType_ELSIZE(descr), &nbytes) < 0)
        goto done;
    size = ((mm_region *)region)->size;
    if (offset < 0 || offset > size || size - offset < nbytes) {
        PyErr_Format(PyExc_ValueError,
                     "an array of %zd bytes at offset %zd does not fit in a region of %zd bytes",
                     nbytes, offset, size);
        goto done;
    }
    arr = array_over(region, type, descr, &shape, offset, fortran);
    descr = NULL; /* stolen */
done:
    PyDimMem_FREE(shape.ptr);
    Py_XDECREF(descr);
    return arr;
}

/* _set_repr_html(func): func(region) draws Region._repr_html_ from now on (None: no
 * rich repr).  Returns the function set before, or None. */
static PyObject *
region_set_repr_html(PyObject *module, PyObject *func)
{
    mm_state *st = PyModule_GetState(module);
    PyObject *res = NULL;

    if (func != Py_None && !PyCallable_Check(func)) {
        PyErr_Format(PyExc_TypeError, "_set_repr_html needs a callable or None, not %.100s",
                     Py_TYPE(func)->tp_name);
        goto done;
    }
    res = st->repr_html != NULL ? st->repr_html : Py_NewRef(Py_None); /* takes its reference */
    st->repr_html = func != Py_None ? Py_NewRef(func) : NULL;
done:
    return res;
}

static PyMethodDef region_functions[] = {
    {"ndarray", (PyCFunction)(void (*)(void))region_ndarray, METH_VARARGS | METH_KEYWORDS,
     "ndarray(region, dtype, shape, offset=0, fortran=False, subtype=None)\n--\n\n"
     "A numpy array over region's bytes that holds an export of the region."},
    {"_set_repr_html", region_set_repr_html, METH_O,
     "_set_repr_html(func, /)\n--\n\n"
     "Make Region._repr_html_ return func(region) (None: return None); returns the previous func."},
    {NULL, NULL, 0, NULL},
};

int
mm_region_add(PyObject *module)
{
    mm_state *st = PyModule_GetState(module);
    PyObject *tp = PyType_FromModuleAndSpec(module, &region_spec, NULL);
    int rc = -1;
    if (tp == NULL)
        goto done;
    st->region_type = (PyTypeObject *)tp;
    if (PyModule_AddObjectRef(module, "Region", tp) < 0)
        goto done;
    if (PyModule_AddFunctions(module, region_functions) < 0)
        goto done;
    rc = 0;
done:
    return rc;
}

int
mm_region_check(PyObject *module, PyObject *obj)
{
    mm_state *st = PyModule_GetState(module);
    return PyObject_TypeCheck(obj, st->region_type);
}
