/* The sampled windows of mmarray.dask's radix selection: _core.key_window (16-bit
 * integers) and _core.key_window_keys (32- and 64-bit values).
 *
 * The client brackets each lane's wanted ranks in windows of keys from a sample; a task
 * then counts, per lane of its chunk, the keys below each window and those inside it,
 * with the engine's window passes: window.c's SIMD count for 16-bit keys (the keys
 * inside are histogrammed bin by bin), window64.h's pass for wider ones (the keys
 * inside are gathered).  The counts are exact, so the client knows for certain whether
 * every wanted rank fell in a window.  Single-threaded, as keyhist.c. */
#include "keyhist.h"
#include "simd.h"

#include <stdlib.h>
#include <string.h>

#define KW_PIECE ((npy_intp)1 << 20) /* keys offered to a window between two drains */

/* Parses windows ((1 or L) x 2 nw uint64: lo, hi of each window, sorted and disjoint,
 * hi below 2**top_bits, nw at most max_nw) into k; the array (a new reference), or NULL
 * with ValueError set. */
static PyArrayObject *
kw_windows(kh_state *k, PyObject *wo, int max_nw, int top_bits)
{
    PyArrayObject *w = (PyArrayObject *)PyArray_FROMANY(wo, NPY_UINT64, 2, 2,
                                                        NPY_ARRAY_IN_ARRAY);
    const uint64_t top = top_bits == 64 ? UINT64_MAX : ((uint64_t)1 << top_bits) - 1;
    if (w == NULL)
        goto done;
    k->bounds = (const uint64_t *)PyArray_DATA(w);
    k->rows = PyArray_DIM(w, 0);
    k->nw = (int)(PyArray_DIM(w, 1) / 2);
    int ok = PyArray_DIM(w, 1) % 2 == 0 && k->nw >= 1 && k->nw <= max_nw &&
             (k->rows == 1 || k->rows == k->s->n_lanes);
    for (npy_intp i = 0; i < k->rows * k->nw && ok; i++) {
        const uint64_t *b = k->bounds + 2 * i;
        ok = b[0] <= b[1] && b[1] <= top && (i % k->nw == 0 || b[-1] < b[0]);
    }
    if (!ok) {
        PyErr_Format(PyExc_ValueError, "windows: need 1 or %zd rows of 1 to %d windows "
                     "[lo, hi], sorted, disjoint, with lo <= hi < 2**%d",
                     (Py_ssize_t)k->s->n_lanes, max_nw, top_bits);
        Py_CLEAR(w);
    }
done:
    return w;
}

/* ---- key_window: 16-bit keys, one window, histogrammed inside -------------------- */

/* A run: the keys in the lane's window to their bins (32-bit counters, flushed before
 * they could overflow and at the lane's end), the others below or above it. */
static void
kw16_run(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    kh_state *k = arg;
    const uint64_t *b = k->bounds + (size_t)(k->rows == 1 ? 0 : k->lane) * 2;
    while (cnt > 0) {
        npy_intp n = cnt < KH_PIECE ? cnt : KH_PIECE;
        if (k->since > (npy_intp)UINT32_MAX - n)
            mm_kh_flush32(k);
        mm_win_count(p, n, st, (unsigned)k->s->type->window_xor, (uint32_t)b[0],
                     (uint32_t)b[1], k->h32, k->outside + (size_t)k->lane * 2);
        k->since += n;
        p += n * st;
        cnt -= n;
    }
}

static PyObject *
mm_key_window(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "bounds", "region", NULL};
    PyObject *xo = NULL, *bo, *region = Py_None, *result = NULL;
    PyArrayObject *b = NULL, *hist = NULL, *outside = NULL;
    int r;
    npy_intp dims[2];
    kh_state k;
    mm_sel s;

    memset(&k, 0, sizeof(k));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|O:key_window", kwlist, &xo, &r, &bo,
                                     &region)) {
        xo = NULL;
        goto done;
    }
    Py_INCREF(xo);
    if (mm_kh_sel(&k, &s, module, xo, r, region) < 0)
        goto done;
    k.bits = 16;
    if (s.type->window_xor < 0) {
        PyErr_SetString(PyExc_TypeError, "key_window: x must be int16 or uint16");
        goto done;
    }
    b = kw_windows(&k, bo, 1, 16);
    dims[0] = s.n_lanes;
    dims[1] = 65536;
    hist = b != NULL ? (PyArrayObject *)PyArray_ZEROS(2, dims, NPY_UINT64, 0) : NULL;
    dims[1] = 2;
    outside = hist != NULL ? (PyArrayObject *)PyArray_ZEROS(2, dims, NPY_UINT64, 0) : NULL;
    if (outside == NULL || mm_kh_counters(&k) < 0)
        goto done;
    k.hist = (uint64_t *)PyArray_DATA(hist);
    k.outside = (uint64_t *)PyArray_DATA(outside);
    if (mm_kh_run(&k, kw16_run, NULL, mm_kh_flush32) == 0)
        result = Py_BuildValue("(OO)", (PyObject *)hist, (PyObject *)outside);
done:
    free(k.h32);
    Py_XDECREF(outside);
    Py_XDECREF(hist);
    Py_XDECREF(b);
    Py_XDECREF(xo);
    return result;
}

/* ---- key_window_keys: 32- and 64-bit keys, windows gathered ----------------------- */

/* Moves every window's buffered keys to the output (k->keys, grown; on no memory
 * k->nomem is set and the keys are dropped), emptying the buffers. */
static void
kw_drain(kh_state *k)
{
    mm_wpass *w = k->wp;
    for (int j = 0; j < k->nw; j++) {
        npy_intp n = (npy_intp)mm_wtake(w, j);
        if (k->nkeys + n > k->capkeys && !k->nomem) {
            npy_intp cap = 2 * (k->nkeys + n) + 1024;
            uint64_t *grown = realloc(k->keys, (size_t)cap * sizeof(uint64_t));
            if (grown == NULL)
                k->nomem = 1;
            else {
                k->keys = grown;
                k->capkeys = cap;
            }
        }
        if (!k->nomem && n > 0) {
            memcpy(k->keys + k->nkeys, w->buf[j], (size_t)n * sizeof(uint64_t));
            k->nkeys += n;
        }
    }
}

/* Before a lane: its windows, fresh counters and empty buffers. */
static void
kw_begin(kh_state *k)
{
    mm_wpass *w = k->wp;
    const uint64_t *b = k->bounds + (size_t)(k->rows == 1 ? 0 : k->lane) * 2 * (size_t)k->nw;
    w->n_win = k->nw;
    for (int j = 0; j < k->nw; j++) {
        w->lo[j] = b[2 * (size_t)j];
        w->width[j] = b[2 * (size_t)j + 1] - b[2 * (size_t)j];
        w->buf[j] = k->arena + (size_t)j * KW_PIECE;
        w->cap[j] = KW_PIECE; /* chunks of MM_WCHUNK, untagged */
        atomic_store(&w->fill[j], 0);
    }
    mm_w64_slots(w); /* a slot a window */
    memset(w->th, 0, sizeof(mm_wthread));
    mm_w64_ends(k->s->type, k->kind, w);
    mm_w64_hist_plan(k->s->type, k->kind, w, 0);
}

/* After a lane: its keys drained, its counts (below, inside) and largest key kept. */
static void
kw_end(kh_state *k)
{
    uint64_t *c = k->wcounts + (size_t)k->lane * 2 * (size_t)k->nw;
    kw_drain(k);
    for (int j = 0; j < k->nw; j++) {
        c[2 * (size_t)j] = k->wp->th->below[j];
        c[2 * (size_t)j + 1] = k->wp->th->inside[j];
    }
    k->wmax[k->lane] = k->wp->th->max;
}

/* A run, in pieces of at most KW_PIECE keys (so no window's buffer overflows), each
 * through the engine's window pass (window64.c). */
static void
kw_run(void *arg, const char *p, npy_intp cnt, npy_intp st)
{
    kh_state *k = arg;
    while (cnt > 0) {
        npy_intp n = cnt < KW_PIECE ? cnt : KW_PIECE;
        mm_w64_run(k->s->type, k->kind, k->wp, 0, p, n, st);
        kw_drain(k);
        p += n * st;
        cnt -= n;
    }
}

/* The pass's tables: the windows' pass with one thread, its buffers, and the float64
 * histogram pass's tables where the CPU can run it.  0, or -1 with MemoryError set. */
static int
kw_alloc(kh_state *k, mm_wpass *w)
{
    int rc = 0;
    memset(w, 0, sizeof(*w));
    w->th = aligned_alloc(64, sizeof(mm_wthread));
    k->arena = malloc((size_t)k->nw * (size_t)KW_PIECE * sizeof(uint64_t));
    k->wp = w;
    k->kind = k->s->type->kind == 'f' ? 2 : k->s->type->kind == 'i' ? 1 : 0;
    if (w->th == NULL || k->arena == NULL) {
        PyErr_NoMemory();
        rc = -1;
    }
    /* cppcheck-suppress knownConditionTrueFalse ; 0 only in simd.h's non-x86 stub */
    else if (k->kind == 2 && k->s->type->key_bits == 64 && mm_hist_cpu())
        rc = mm_w64_hist_tables(w);
    return rc;
}

/* The result: (counts, keys, largest) as new arrays, or NULL with an exception set. */
static PyObject *
kw_result(const kh_state *k, PyArrayObject *counts, PyArrayObject *largest)
{
    PyObject *result = NULL;
    npy_intp dims[1] = {k->nkeys};
    PyArrayObject *keys = (PyArrayObject *)PyArray_SimpleNew(1, dims, NPY_UINT64);
    if (keys != NULL) {
        if (k->nkeys > 0)
            memcpy(PyArray_DATA(keys), k->keys, (size_t)k->nkeys * sizeof(uint64_t));
        result = Py_BuildValue("(OOO)", (PyObject *)counts, (PyObject *)keys,
                               (PyObject *)largest);
        Py_DECREF(keys);
    }
    return result;
}

static PyObject *
mm_key_window_keys(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"x", "r", "windows", "region", NULL};
    PyObject *xo = NULL, *wo, *region = Py_None, *result = NULL;
    PyArrayObject *w = NULL, *counts = NULL, *largest = NULL;
    int r;
    npy_intp dims[3];
    kh_state k;
    mm_sel s;
    mm_wpass pass;

    memset(&k, 0, sizeof(k));
    memset(&pass, 0, sizeof(pass));
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiO|O:key_window_keys", kwlist, &xo, &r,
                                     &wo, &region)) {
        xo = NULL;
        goto done;
    }
    Py_INCREF(xo);
    if (mm_kh_sel(&k, &s, module, xo, r, region) < 0)
        goto done;
    if (s.type->key_bits < 32) {
        PyErr_SetString(PyExc_TypeError, "key_window_keys: x must hold 32- or 64-bit values");
        goto done;
    }
    w = kw_windows(&k, wo, MM_WMAX, s.type->key_bits);
    dims[0] = s.n_lanes;
    dims[1] = k.nw;
    dims[2] = 2;
    counts = w != NULL ? (PyArrayObject *)PyArray_ZEROS(3, dims, NPY_UINT64, 0) : NULL;
    largest = counts != NULL ? (PyArrayObject *)PyArray_ZEROS(1, dims, NPY_UINT64, 0) : NULL;
    if (largest == NULL || kw_alloc(&k, &pass) < 0)
        goto done;
    k.wcounts = (uint64_t *)PyArray_DATA(counts);
    k.wmax = (uint64_t *)PyArray_DATA(largest);
    if (mm_kh_run(&k, kw_run, kw_begin, kw_end) == 0)
        result = kw_result(&k, counts, largest);
done:
    free(pass.th);
    free(pass.htab);
    free(pass.hslot);
    free(k.arena);
    free(k.keys);
    Py_XDECREF(largest);
    Py_XDECREF(counts);
    Py_XDECREF(w);
    Py_XDECREF(xo);
    return result;
}

static PyMethodDef keywin_methods[] = {
    {"key_window", (PyCFunction)(void (*)(void))mm_key_window, METH_VARARGS | METH_KEYWORDS,
     "key_window(x, r, bounds, region=None)\n--\n\n"
     "For every lane of x (int16 or uint16; its last r axes), with bounds[l] = [lo, hi]\n"
     "(a uint64 array of 1 or L rows): the histogram of its keys in [lo, hi] (uint64\n"
     "(L, 65536), zero outside) and its counts of keys below lo and above hi (L, 2)."},
    {"key_window_keys", (PyCFunction)(void (*)(void))mm_key_window_keys,
     METH_VARARGS | METH_KEYWORDS,
     "key_window_keys(x, r, windows, region=None)\n--\n\n"
     "For every lane of x (32- or 64-bit values; its last r axes) and each of its\n"
     "windows (windows[l] = [lo0, hi0, lo1, hi1, ...] of keys, 1 or L rows, sorted and\n"
     "disjoint): the counts of its keys below the window and inside it (uint64\n"
     "(L, nw, 2)), the keys inside the windows (uint64, lane by lane) and each lane's\n"
     "largest key (uint64 (L,))."},
    {NULL, NULL, 0, NULL},
};

int
mm_keywin_add(PyObject *module)
{
    return PyModule_AddFunctions(module, keywin_methods);
}
