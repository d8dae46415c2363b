/* The per-chunk kernels of a distributed radix selection: _core.key_histogram,
 * _core.key_window, _core.key_collect and _core.key_values (mmarray.dask's exact statistics).
 *
 * A dask task holds one chunk of an array whose last r axes are (part of) the lanes
 * reduced together.  Every value has the engine's order-preserving key (keys.h, through
 * the dtype table's `load` and `store`).  The client keeps, per lane, the buckets that
 * hold the wanted ranks, each named by its prefix (the key's top bits, key >> shift);
 * a task either histograms the next `bits` bits of the keys in those buckets
 * (key_histogram) or gathers their values (key_collect), so that only counts and the
 * few values of the final buckets leave the worker.  For 16-bit integers a sampled
 * window may stand for the first pass: key_window counts the keys in [lo, hi] bin by
 * bin and the others as below or above (window.c's SIMD count).  Single-threaded (a
 * dask worker runs one task per thread), with the GIL released around the pass over a
 * big chunk and a SIGBUS there (a truncated file) raised as OSError naming the region. */
#include "keyhist.h"
#include "lanes.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static inline uint64_t
kh_prefix(uint64_t k, int shift)
{
    return shift >= 64 ? 0 : k >> shift;
}

/* The first j with row[j] == p in the sorted row[0:m], or -1. */
static inline npy_intp
kh_find(const uint64_t *row, npy_intp m, uint64_t p)
{
    npy_intp lo = 0, hi = m;
    while (lo < hi) {
        npy_intp mid = lo + (hi - lo) / 2;
        if (row[mid] < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < m && row[lo] == p) ? lo : -1;
}

static void
kh_hist_run(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    kh_state *k = arg;
    uint64_t keys[KH_BLOCK];
    const uint64_t mask = ((uint64_t)1 << k->bits) - 1;
    const int low = k->shift - k->bits;
    const npy_intp nb = (npy_intp)1 << k->bits;
    uint64_t *h = k->hist + (size_t)k->lane * (size_t)k->m * (size_t)nb;
    for (npy_intp i0 = 0; i0 < cnt; i0 += KH_BLOCK, p += KH_BLOCK * st) {
        npy_intp n = cnt - i0 < KH_BLOCK ? cnt - i0 : KH_BLOCK;
        k->s->type->load(p, n, st, keys);
        if (k->m == 1) {
            const uint64_t want = k->row[0];
            for (npy_intp i = 0; i < n; i++)
                if (kh_prefix(keys[i], k->shift) == want)
                    h[(keys[i] >> low) & mask]++;
        }
        else {
            for (npy_intp i = 0; i < n; i++) {
                npy_intp j = kh_find(k->row, k->m, kh_prefix(keys[i], k->shift));
                if (j >= 0)
                    h[j * nb + (npy_intp)((keys[i] >> low) & mask)]++;
            }
        }
    }
}

/* Adds the 32-bit counters (every sub-histogram) to the lane's histogram, and clears
 * them. */
void
mm_kh_flush32(kh_state *k)
{
    const npy_intp nb = (npy_intp)1 << k->bits;
    uint64_t *h = k->hist + (size_t)k->lane * (size_t)nb;
    for (npy_intp c = 0; c < k->h32_bins; c += nb)
        for (npy_intp b = 0; b < nb; b++)
            h[b] += k->h32[c + b];
    memset(k->h32, 0, (size_t)k->h32_bins * sizeof(uint32_t));
    k->since = 0;
}

/* The first digit of 32- and 64-bit keys (the stored top bits cannot tell a NaN from
 * an infinity, so the keys are made): two sub-histograms, alternating. */
static void
kh_top_digits(kh_state *k, const char *p, npy_intp cnt, npy_intp st)
{
    uint64_t keys[KH_BLOCK];
    const int low = k->shift - k->bits;
    uint32_t *h0 = k->h32, *h1 = k->h32 + ((npy_intp)1 << k->bits);
    for (npy_intp i0 = 0; i0 < cnt; i0 += KH_BLOCK, p += KH_BLOCK * st) {
        npy_intp n = cnt - i0 < KH_BLOCK ? cnt - i0 : KH_BLOCK, i = 0;
        k->s->type->load(p, n, st, keys);
        for (; i + 2 <= n; i += 2) {
            h0[keys[i] >> low]++;
            h1[keys[i + 1] >> low]++;
        }
        if (i < n)
            h0[keys[i] >> low]++;
    }
}

/* key_histogram's first pass over a long lane (every key counted by its top digit):
 * the dtype's first-digit kernel (hist0) for keys of 8 and 16 bits, which are their own
 * first digit, kh_top_digits for wider ones; 32-bit counters, flushed before they
 * could overflow and at the end of the lane (kh_lanes). */
static void
kh_first_run(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    kh_state *k = arg;
    while (cnt > 0) {
        npy_intp n = cnt < KH_PIECE ? cnt : KH_PIECE;
        if (k->since > (npy_intp)UINT32_MAX - n)
            mm_kh_flush32(k);
        if (k->s->type->key_bits <= 16)
            k->s->type->hist0(p, n, st, k->h32);
        else
            kh_top_digits(k, p, n, st);
        k->since += n;
        p += n * st;
        cnt -= n;
    }
}

/* Room for one more collected value; 0, or -1 (no memory: k->nomem set). */
static int
kh_reserve(kh_state *k)
{
    int rc = 0;
    if (k->n == k->cap) {
        npy_intp cap = k->cap ? 2 * k->cap : 1024;
        char *v = realloc(k->values, (size_t)cap * (size_t)k->s->itemsize);
        if (v != NULL)
            k->values = v;
        npy_int64 *d = v != NULL ? realloc(k->ids, (size_t)cap * sizeof(npy_int64)) : NULL;
        if (d != NULL) {
            k->ids = d;
            k->cap = cap;
        }
        else {
            k->nomem = 1;
            rc = -1;
        }
    }
    return rc;
}

static void
kh_collect_run(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    kh_state *k = arg;
    uint64_t keys[KH_BLOCK];
    for (npy_intp i0 = 0; i0 < cnt && !k->nomem; i0 += KH_BLOCK, p += KH_BLOCK * st) {
        npy_intp n = cnt - i0 < KH_BLOCK ? cnt - i0 : KH_BLOCK;
        k->s->type->load(p, n, st, keys);
        for (npy_intp i = 0; i < n; i++) {
            npy_intp j = kh_find(k->row, k->m, kh_prefix(keys[i], k->shift));
            if (j >= 0 && kh_reserve(k) == 0) {
                memcpy(k->values + (size_t)k->n * (size_t)k->s->itemsize, p + i * st,
                       (size_t)k->s->itemsize);
                k->ids[k->n++] = (npy_int64)(k->lane * k->m + j);
            }
        }
    }
}

typedef struct {
    kh_state *k;
    mm_run fn;
    kh_lane_fn begin, end;
} kh_pass;

/* Every lane of the chunk through fn (guarded: no Python API). */
static void
kh_lanes(void *arg)
{
    kh_pass *ps = arg;
    kh_state *k = ps->k;
    const mm_sel *s = k->s;
    for (npy_intp l = 0; l < s->n_lanes && !k->nomem; l++) {
        k->lane = l;
        if (k->prefixes != NULL)
            k->row = k->prefixes + (size_t)(k->rows == 1 ? 0 : l) * (size_t)k->m;
        if (ps->begin != NULL)
            ps->begin(k);
        if (s->lane_len > 0)
            mm_for_runs(s, mm_lane_ptr(s, l), 0, s->lane_len, ps->fn, k);
        if (ps->end != NULL)
            ps->end(k);
    }
}

int
mm_kh_run(kh_state *k, mm_run fn, kh_lane_fn begin, kh_lane_fn end)
{
    int rc = -1, ok = -1;
    void *fault = NULL;
    kh_pass ps = {k, fn, begin, end};
    if (mm_guard_acquire() < 0) {
        mm_set_oserror(errno, "sigaction(SIGBUS)", NULL);
        goto done;
    }
    if (k->s->n_lanes * k->s->lane_len >= KH_NOGIL) {
        Py_BEGIN_ALLOW_THREADS
        ok = mm_guarded(kh_lanes, &ps, k->s->guard_lo, k->s->guard_hi, &fault);
        Py_END_ALLOW_THREADS
    }
    else
        ok = mm_guarded(kh_lanes, &ps, k->s->guard_lo, k->s->guard_hi, &fault);
    mm_guard_release();
    if (ok < 0)
        mm_set_fault_error(k->s->region, fault, 0);
    else if (k->nomem)
        PyErr_NoMemory();
    else
        rc = 0;
done:
    return rc;
}

int
mm_kh_sel(kh_state *k, mm_sel *s, PyObject *module, PyObject *xo, int r, PyObject *region)
{
    int rc = -1;
    memset(k, 0, sizeof(*k));
    if (!PyArray_Check(xo))
        PyErr_SetString(PyExc_TypeError, "x must be a numpy array");
    else if (mm_sel_init(s, module, (PyArrayObject *)xo, r, 1, Py_None, region) == 0) {
        k->s = s;
        rc = 0;
    }
    return rc;
}

/* Parses (x, r, prefixes, shift[, bits], region) into k and s; returns the prefixes
 * array (a new reference), or NULL with an exception set. */
static PyArrayObject *
kh_init(kh_state *k, mm_sel *s, PyObject *module, PyObject *xo, int r, PyObject *po,
        int shift, int bits, PyObject *region)
{
    PyArrayObject *pr = NULL;
    if (mm_kh_sel(k, s, module, xo, r, region) < 0)
        goto done;
    if (bits < 0 || bits > 16 || shift < bits || shift > s->type->key_bits) {
        PyErr_Format(PyExc_ValueError, "shift=%d, bits=%d: need 0 <= bits <= 16 and "
                     "bits <= shift <= %d (the key's bits)", shift, bits, s->type->key_bits);
        goto done;
    }
    pr = (PyArrayObject *)PyArray_FROMANY(po, NPY_UINT64, 2, 2, NPY_ARRAY_IN_ARRAY);
    if (pr == NULL)
        goto done;
    k->s = s;
    k->rows = PyArray_DIM(pr, 0);
    k->m = PyArray_DIM(pr, 1);
    k->prefixes = (const uint64_t *)PyArray_DATA(pr);
    k->shift = shift;
    k->bits = bits;
    if ((k->rows != 1 && k->rows != s->n_lanes) || k->m < 1) {
        PyErr_Format(PyExc_ValueError, "prefixes: %zd rows of %zd for %zd lanes (need 1 or "
                     "one per lane, and at least one column)", (Py_ssize_t)k->rows,
                     (Py_ssize_t)k->m, (Py_ssize_t)s->n_lanes);
        Py_CLEAR(pr);
        goto done;
    }
    for (npy_intp i = 1; i < k->rows * k->m && pr != NULL; i++)
        if (i % k->m != 0 && k->prefixes[i] < k->prefixes[i - 1]) {
            PyErr_SetString(PyExc_ValueError, "prefixes: every row must be sorted");
            Py_CLEAR(pr);
        }
done:
    return pr;
}

/* Whether key_histogram's pass is the first over long lanes: one all-matching prefix
 * (0, the key shifted out), the top digit (16 bits, or all of an 8-bit key). */
static int
kh_first_pass(const kh_state *k)
{
    const int w = k->s->type->key_bits;
    return k->rows == 1 && k->m == 1 && k->prefixes[0] == 0 && k->shift == w &&
           k->bits == (w < 16 ? w : 16) && k->s->lane_len >= KH_FIRST_LANE;
}

int
mm_kh_counters(kh_state *k)
{
    int rc = 0;
    const int w = k->s->type->key_bits;
    k->h32_bins = w == 8 ? 1024 : w == 16 ? 65536 : 2 * 65536;
    k->h32 = calloc((size_t)k->h32_bins, sizeof(uint32_t));
    if (k->h32 == NULL) {
        PyErr_NoMemory();
        rc = -1;
    }
    return rc;
}

static PyObject *
mm_key_histogram(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "prefixes", "shift", "bits", "region", NULL};
    PyObject *xo = NULL, *po, *region = Py_None, *result = NULL;
    PyArrayObject *pr = NULL, *out = NULL;
    int r, shift, bits;
    npy_intp dims[3];
    kh_state k;
    mm_sel s;

    memset(&k, 0, sizeof(k));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiOii|O:key_histogram", kwlist, &xo, &r, &po,
                                     &shift, &bits, &region)) {
        xo = NULL;
        goto done;
    }
    Py_INCREF(xo); /* the array (and the region it exports) stays alive while we run */
    pr = kh_init(&k, &s, module, xo, r, po, shift, bits, region);
    if (pr == NULL)
        goto done;
    dims[0] = s.n_lanes;
    dims[1] = k.m;
    dims[2] = (npy_intp)1 << bits;
    out = (PyArrayObject *)PyArray_ZEROS(3, dims, NPY_UINT64, 0);
    if (out == NULL)
        goto done;
    k.hist = (uint64_t *)PyArray_DATA(out);
    if (kh_first_pass(&k) && mm_kh_counters(&k) < 0)
        goto done;
    if (k.h32 != NULL ? mm_kh_run(&k, kh_first_run, NULL, mm_kh_flush32) == 0
                     : mm_kh_run(&k, kh_hist_run, NULL, NULL) == 0) {
        result = (PyObject *)out;
        out = NULL;
    }
done:
    free(k.h32);
    Py_XDECREF(out);
    Py_XDECREF(pr);
    Py_XDECREF(xo);
    return result;
}

/* The collected values (n of x's dtype) and their ids as a tuple of two new arrays. */
static PyObject *
kh_collected(const kh_state *k, PyArrayObject *x)
{
    PyObject *result = NULL;
    npy_intp dims[1] = {k->n};
    Py_INCREF(PyArray_DESCR(x));
    PyArrayObject *v = (PyArrayObject *)PyArray_SimpleNewFromDescr(1, dims, PyArray_DESCR(x));
    PyArrayObject *d = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_INT64);
    if (v != NULL && d != NULL) {
        if (k->n > 0) {
            memcpy(PyArray_DATA(v), k->values, (size_t)k->n * (size_t)k->s->itemsize);
            memcpy(PyArray_DATA(d), k->ids, (size_t)k->n * sizeof(npy_int64));
        }
        result = Py_BuildValue("(OO)", (PyObject *)v, (PyObject *)d);
    }
    Py_XDECREF(v);
    Py_XDECREF(d);
    return result;
}

static PyObject *
mm_key_collect(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "prefixes", "shift", "region", NULL};
    PyObject *xo = NULL, *po, *region = Py_None, *result = NULL;
    PyArrayObject *pr = NULL;
    int r, shift;
    kh_state k;
    mm_sel s;

    memset(&k, 0, sizeof(k));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiOi|O:key_collect", kwlist, &xo, &r, &po,
                                     &shift, &region)) {
        xo = NULL;
        goto done;
    }
    Py_INCREF(xo);
    pr = kh_init(&k, &s, module, xo, r, po, shift, 0, region);
    if (pr == NULL)
        goto done;
    if (mm_kh_run(&k, kh_collect_run, NULL, NULL) == 0)
        result = kh_collected(&k, (PyArrayObject *)xo);
done:
    free(k.values);
    free(k.ids);
    Py_XDECREF(pr);
    Py_XDECREF(xo);
    return result;
}

static PyObject *
mm_key_values(PyObject *module, PyObject *args)
{
    PyObject *ko, *result = NULL;
    PyArray_Descr *descr = NULL;
    PyArrayObject *keys = NULL, *out = NULL;
    const mm_type *ty = NULL;
    (void)module;

    if (!PyArg_ParseTuple(args, "OO&:key_values", &ko, PyArray_DescrConverter, &descr))
        goto done;
    ty = mm_type_of(descr);
    if (ty == NULL) {
        PyErr_SetString(PyExc_TypeError, "key_values: unsupported dtype (need native bool, "
                                         "int, uint or float16/32/64)");
        goto done;
    }
    keys = (PyArrayObject *)PyArray_FROMANY(ko, NPY_UINT64, 1, 1, NPY_ARRAY_IN_ARRAY);
    if (keys == NULL)
        goto done;
    npy_intp dims[1] = {PyArray_DIM(keys, 0)};
    Py_INCREF(descr);
    out = (PyArrayObject *)PyArray_SimpleNewFromDescr(1, dims, descr);
    if (out == NULL)
        goto done;
    for (npy_intp i = 0; i < dims[0]; i++)
        ty->store(PyArray_BYTES(out) + i * ty->itemsize, ((const uint64_t *)PyArray_DATA(keys))[i]);
    result = (PyObject *)out;
    out = NULL;
done:
    Py_XDECREF(out);
    Py_XDECREF(keys);
    Py_XDECREF(descr);
    return result;
}

static PyMethodDef keyhist_methods[] = {
    {"key_histogram", (PyCFunction)(void (*)(void))mm_key_histogram,
     METH_VARARGS | METH_KEYWORDS,
     "key_histogram(x, r, prefixes, shift, bits, region=None)\n--\n\n"
     "For every lane of x (its last r axes) and every column j of its row of prefixes\n"
     "(a uint64 array of 1 or L sorted rows): the histogram of the `bits` key bits below\n"
     "`shift` over the values whose order-preserving key has key >> shift ==\n"
     "prefixes[l, j] (the first of equal columns counts).  Returns uint64 (L, m, 2**bits)."},
    {"key_collect", (PyCFunction)(void (*)(void))mm_key_collect, METH_VARARGS | METH_KEYWORDS,
     "key_collect(x, r, prefixes, shift, region=None)\n--\n\n"
     "The values of x whose key >> shift is one of their lane's prefixes, in the lane's\n"
     "order, and their ids (lane * m + j) as int64: a tuple (values, ids)."},
    {"key_values", (PyCFunction)(void (*)(void))mm_key_values, METH_VARARGS,
     "key_values(keys, dtype)\n--\n\n"
     "The values of dtype whose order-preserving keys are keys (a 1-d uint64 array);\n"
     "the key of NaN gives one NaN."},
    {NULL, NULL, 0, NULL},
};

int
mm_keyhist_add(PyObject *module)
{
    int rc = PyModule_AddFunctions(module, keyhist_methods);
    if (rc == 0)
        rc = mm_keywin_add(module);
    return rc;
}
