/* The selection engine's Python entry points: _core.select, _core.count_nan,
 * _core.first_nan and the test-only _core._test_window_counts (keyhist.c adds the distributed radix kernels). */
#include "select.h"
#include "nans.h"

#include <errno.h>
#include <string.h>

/* The bytes x spans (SIGBUS there is caught) and the Region under it (None or a
 * Region, named in the error message).  Returns 0, or -1 with TypeError set. */
static int
sel_guard(mm_sel *s, PyObject *module, PyArrayObject *x, PyObject *region)
{
    int rc = -1;
    if (region != NULL && region != Py_None && !mm_region_check(module, region)) {
        PyErr_Format(PyExc_TypeError, "region must be a Region or None, not %.100s",
                     Py_TYPE(region)->tp_name);
        goto done;
    }
    s->region = region != Py_None ? region : NULL;
    s->guard_lo = s->guard_hi = PyArray_BYTES(x);
    if (PyArray_SIZE(x) > 0) {
        for (int d = 0; d < PyArray_NDIM(x); d++) {
            npy_intp ext = (PyArray_DIM(x, d) - 1) * PyArray_STRIDE(x, d);
            if (ext < 0)
                s->guard_lo += ext;
            else
                s->guard_hi += ext;
        }
        s->guard_hi += PyArray_ITEMSIZE(x);
    }
    rc = 0;
done:
    return rc;
}

/* The lanes of x: its first D - r axes enumerate them, its last r axes are one lane. */
static void
sel_geometry(mm_sel *s, PyArrayObject *x, int r)
{
    int D = PyArray_NDIM(x);
    s->data = PyArray_BYTES(x);
    s->itemsize = PyArray_ITEMSIZE(x);
    s->outer_ndim = D - r;
    s->lane_ndim = r;
    s->n_lanes = 1;
    s->lane_len = 1;
    for (int d = 0; d < D - r; d++) {
        s->outer_shape[d] = PyArray_DIM(x, d);
        s->outer_strides[d] = PyArray_STRIDE(x, d);
        s->n_lanes *= s->outer_shape[d];
    }
    for (int d = 0; d < r; d++) {
        s->lane_shape[d] = PyArray_DIM(x, D - r + d);
        s->lane_strides[d] = PyArray_STRIDE(x, D - r + d);
        s->lane_len *= s->lane_shape[d];
    }
}

/* Fills s from x (whose last r axes are the lane), the workers, progress and region.
 * Returns 0, or -1 with an exception set. */
int
mm_sel_init(mm_sel *s, PyObject *module, PyArrayObject *x, int r, int workers, PyObject *progress,
         PyObject *region)
{
    int D = PyArray_NDIM(x), rc = -1;
    memset(s, 0, sizeof(*s));
    if (sel_guard(s, module, x, region) < 0)
        goto done;
    s->type = mm_type_of(PyArray_DESCR(x));
    if (s->type == NULL) {
        PyErr_SetString(PyExc_TypeError, "select: unsupported dtype (need native bool, int, "
                                         "uint or float16/32/64)");
        goto done;
    }
    if (r < 1 || r > D) {
        PyErr_Format(PyExc_ValueError, "select: r=%d lane axes for an array of %d dims", r, D);
        goto done;
    }
    if (workers < 1) {
        PyErr_SetString(PyExc_ValueError, "workers must be at least 1");
        goto done;
    }
    s->n_threads = workers > MM_MAX_WORKERS ? MM_MAX_WORKERS : workers;
    sel_geometry(s, x, r);
    s->progress = (progress != NULL && progress != Py_None) ? progress : NULL;
    rc = 0;
done:
    return rc;
}

/* The ranks ro as an int64 array of 1 or n_lanes rows, each sorted and within the lane,
 * in s; returns it (a new reference), or NULL with an exception set. */
static PyArrayObject *
sel_ranks(mm_sel *s, PyObject *ro)
{
    PyArrayObject *rk = (PyArrayObject *)PyArray_FROMANY(ro, NPY_INT64, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (rk == NULL)
        goto done;
    s->rank_rows = PyArray_DIM(rk, 0);
    s->n_ranks = PyArray_DIM(rk, 1);
    s->ranks = (const npy_int64 *)PyArray_DATA(rk);
    if (s->rank_rows != 1 && s->rank_rows != s->n_lanes) {
        PyErr_Format(PyExc_ValueError, "select: ranks has %zd rows for %zd lanes",
                     (Py_ssize_t)s->rank_rows, (Py_ssize_t)s->n_lanes);
        Py_CLEAR(rk);
        goto done;
    }
    for (npy_intp i = 0; i < s->rank_rows * s->n_ranks && rk != NULL; i++) {
        npy_intp j = i % s->n_ranks;
        if (s->ranks[i] < 0 || s->ranks[i] >= s->lane_len ||
            (j > 0 && s->ranks[i] < s->ranks[i - 1])) {
            PyErr_SetString(PyExc_ValueError,
                            "select: ranks must be sorted and within the lane length");
            Py_CLEAR(rk);
        }
    }
done:
    return rk;
}

/* Acquires the SIGBUS guard; returns 0, or -1 with OSError set. */
static int
sel_acquire_guard(void)
{
    int rc = mm_guard_acquire();
    if (rc < 0)
        mm_set_oserror(errno, "sigaction(SIGBUS)", NULL);
    return rc;
}

static PyObject *
mm_select(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "ranks", "workers", "progress", "region", "stream",
                             NULL};
    PyObject *xo, *ro, *progress = Py_None, *region = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *rk = NULL, *out = NULL;
    int r, workers = 1, guarded = 0, rc = 0, stream = 0;
    mm_sel s;
    npy_intp dims[2];

    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|iOO$i:select", kwlist, &xo, &r, &ro,
                                     &workers, &progress, &region, &stream))
        goto done;
    if (!PyArray_Check(xo)) {
        PyErr_SetString(PyExc_TypeError, "select: x must be a numpy array");
        goto done;
    }
    x = (PyArrayObject *)xo;
    Py_INCREF(x); /* keeps the array (and the region it exports) alive while we run */
    if (mm_sel_init(&s, module, x, r, workers, progress, region) < 0)
        goto done;
    rk = sel_ranks(&s, ro);
    if (rk == NULL)
        goto done;
    dims[0] = s.n_lanes;
    dims[1] = s.n_ranks;
    Py_INCREF(PyArray_DESCR(x));
    out = (PyArrayObject *)PyArray_SimpleNewFromDescr(2, dims, PyArray_DESCR(x));
    if (out == NULL)
        goto done;
    s.out = PyArray_BYTES(out);
    if (sel_acquire_guard() < 0)
        goto done;
    guarded = 1;
    mm_sel_stream_begin(&s, stream);
    if (s.n_lanes > 0 && s.n_ranks > 0)
        rc = s.lane_len <= MM_SHORT ? mm_select_short_lanes(&s) : mm_select_long_lanes(&s);
    mm_sel_stream_end(&s);
    if (rc == 0) {
        result = (PyObject *)out;
        out = NULL;
    }
done:
    if (guarded)
        mm_guard_release();
    Py_XDECREF(out);
    Py_XDECREF(rk);
    Py_XDECREF(x);
    return result;
}

static PyObject *
mm_count_nan(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "workers", "progress", "region", "stream", NULL};
    PyObject *xo, *progress = Py_None, *region = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *out = NULL;
    int r, workers = 1, guarded = 0, rc, stream = 0;
    mm_sel s;
    npy_intp dims[1];

    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oi|iOO$i:count_nan", kwlist, &xo, &r, &workers,
                                     &progress, &region, &stream))
        goto done;
    if (!PyArray_Check(xo)) {
        PyErr_SetString(PyExc_TypeError, "count_nan: x must be a numpy array");
        goto done;
    }
    x = (PyArrayObject *)xo;
    Py_INCREF(x);
    if (mm_sel_init(&s, module, x, r, workers, progress, region) < 0)
        goto done;
    dims[0] = s.n_lanes;
    out = (PyArrayObject *)PyArray_ZEROS(1, dims, NPY_INTP, 0);
    if (out == NULL)
        goto done;
    if (s.type->is_float && s.n_lanes > 0 && s.lane_len > 0) {
        if (sel_acquire_guard() < 0)
            goto done;
        guarded = 1;
        mm_sel_stream_begin(&s, stream);
        rc = mm_count_lane_nans(&s, (npy_intp *)PyArray_DATA(out));
        mm_sel_stream_end(&s);
        if (rc < 0)
            goto done;
    }
    result = (PyObject *)out;
    out = NULL;
done:
    if (guarded)
        mm_guard_release();
    Py_XDECREF(out);
    Py_XDECREF(x);
    return result;
}

/* The lanes ln (int64, 1-d) as indexes into the lanes of s; a new reference, or NULL
 * with an exception set. */
static PyArrayObject *
sel_lane_list(const mm_sel *s, PyObject *ln)
{
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(ln, NPY_INT64, 1, 1, NPY_ARRAY_IN_ARRAY);
    const npy_int64 *v = a != NULL ? (const npy_int64 *)PyArray_DATA(a) : NULL;
    for (npy_intp i = 0; a != NULL && i < PyArray_DIM(a, 0); i++) {
        if (v[i] < 0 || v[i] >= s->n_lanes) {
            PyErr_Format(PyExc_ValueError, "first_nan: lane %lld is not in 0..%zd",
                         (long long)v[i], (Py_ssize_t)s->n_lanes - 1);
            Py_CLEAR(a);
        }
    }
    return a;
}

static PyObject *
mm_first_nan(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "lanes", "workers", "region", NULL};
    PyObject *xo, *lo, *region = Py_None, *result = NULL;
    PyArrayObject *x = NULL, *ln = NULL, *out = NULL, *found = NULL;
    int r, workers = 1, guarded = 0;
    mm_sel s;
    npy_intp n;

    memset(&s, 0, sizeof(s));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|iO:first_nan", kwlist, &xo, &r, &lo,
                                     &workers, &region))
        goto done;
    if (!PyArray_Check(xo)) {
        PyErr_SetString(PyExc_TypeError, "first_nan: x must be a numpy array");
        goto done;
    }
    x = (PyArrayObject *)xo;
    Py_INCREF(x);
    if (mm_sel_init(&s, module, x, r, workers, Py_None, region) < 0)
        goto done;
    if (!s.type->is_float) {
        PyErr_SetString(PyExc_TypeError, "first_nan: x must be float16, float32 or float64");
        goto done;
    }
    ln = sel_lane_list(&s, lo);
    if (ln == NULL)
        goto done;
    n = PyArray_DIM(ln, 0);
    Py_INCREF(PyArray_DESCR(x));
    out = (PyArrayObject *)PyArray_SimpleNewFromDescr(1, &n, PyArray_DESCR(x));
    found = (PyArrayObject *)PyArray_ZEROS(1, &n, NPY_BOOL, 0);
    if (out == NULL || found == NULL)
        goto done;
    if (n > 0) {
        if (sel_acquire_guard() < 0)
            goto done;
        guarded = 1;
        if (mm_first_lane_nans(&s, (const npy_int64 *)PyArray_DATA(ln), n, PyArray_BYTES(out),
                               (npy_bool *)PyArray_DATA(found)) < 0)
            goto done;
    }
    result = Py_BuildValue("(OO)", out, found);
done:
    if (guarded)
        mm_guard_release();
    Py_XDECREF(found);
    Py_XDECREF(out);
    Py_XDECREF(ln);
    Py_XDECREF(x);
    return result;
}

static PyObject *
mm_test_window_counts(PyObject *module, PyObject *noargs)
{
    long long counts[3];
    (void)module;
    (void)noargs;
    mm_window_test_counts(counts);
    return Py_BuildValue("(LLL)", counts[0], counts[1], counts[2]);
}

static PyObject *
mm_test_hist_passes(PyObject *module, PyObject *noargs)
{
    (void)module;
    (void)noargs;
    return PyLong_FromLongLong(mm_window64_hist_count());
}

static PyObject *
mm_test_slot_selects(PyObject *module, PyObject *noargs)
{
    (void)module;
    (void)noargs;
    return PyLong_FromLongLong(mm_window64_slot_count());
}

static PyObject *
mm_test_avx512(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg), cpu = 0;
    PyObject *result = NULL;
    (void)module;
    if (on >= 0) {
        int was = mm_window64_test_avx512(on, &cpu);
        result = Py_BuildValue("(NN)", PyBool_FromLong(was), PyBool_FromLong(cpu));
    }
    return result;
}

static PyMethodDef select_methods[] = {
    {"select", (PyCFunction)(void (*)(void))mm_select, METH_VARARGS | METH_KEYWORDS,
     "select(x, r, ranks, workers=1, progress=None, region=None, *, stream=0)\n--\n\n"
     "Order statistics of the lanes of x (its last r axes; the first axes enumerate the\n"
     "lanes).  ranks is an int64 array (1 or L rows, m columns, each row sorted).\n"
     "Returns an (L, m) array of x's dtype in numpy's sort order (NaN last).  A SIGBUS\n"
     "reading x (a truncated file) raises OSError naming region (the Region under x).\n"
     "stream: bit 1 reads a cold file ahead of the pass, bit 2 drops behind it the\n"
     "pages that were not resident before (one lane only; see readahead.c)."},
    {"count_nan", (PyCFunction)(void (*)(void))mm_count_nan, METH_VARARGS | METH_KEYWORDS,
     "count_nan(x, r, workers=1, progress=None, region=None, *, stream=0)\n--\n\n"
     "Number of NaNs in every lane of x (the last r axes), as an intp array.  A SIGBUS\n"
     "reading x raises OSError naming region (the Region under x).  stream: as select's."},
    {"first_nan", (PyCFunction)(void (*)(void))mm_first_nan, METH_VARARGS | METH_KEYWORDS,
     "first_nan(x, r, lanes, workers=1, region=None)\n--\n\n"
     "The first NaN (in C order) of each of the lanes of x (the last r axes) that the\n"
     "int64 indexes lanes name, with its bits as stored, and whether the lane holds one:\n"
     "(values of x's float dtype, bools).  A lane without a NaN gives np.nan's bits and\n"
     "False.  The search of a lane stops at its first NaN.  A SIGBUS reading x raises\n"
     "OSError naming region (the Region under x)."},
    {"_test_avx512", mm_test_avx512, METH_O,
     "_test_avx512(on, /)\n--\n\n"
     "For the tests only (not part of the API): lets the float64 histogram pass take\n"
     "AVX-512 where the CPU has it (on true) or keeps it to AVX2 (false).  Returns\n"
     "(whether it could before, whether the CPU has AVX-512)."},
    {"_test_hist_passes", mm_test_hist_passes, METH_NOARGS,
     "_test_hist_passes()\n--\n\n"
     "For the tests only (not part of the API): the 32/64-bit lanes since import whose\n"
     "window pass was the histogram pass (float64 with many windows)."},
    {"_test_slot_selects", mm_test_slot_selects, METH_NOARGS,
     "_test_slot_selects()\n--\n\n"
     "For the tests only (not part of the API): the ranks since import that the\n"
     "histogram pass selected among the keys of one run of a window's buckets."},
    {"_test_window_counts", mm_test_window_counts, METH_NOARGS,
     "_test_window_counts()\n--\n\n"
     "For the tests only (not part of the API): (sampled, windowed, missed), the long\n"
     "16-bit and 32/64-bit lanes since import whose first pass began with a sample, those\n"
     "then counted through a window, and those the window missed (which took the plain\n"
     "passes)."},
    {NULL, NULL, 0, NULL},
};

int
mm_kernels_add(PyObject *module)
{
    int rc = PyModule_AddFunctions(module, select_methods);
    if (rc == 0)
        rc = mm_keyhist_add(module);
    return rc;
}
