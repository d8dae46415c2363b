/* mmarray._core: module definition and the ndarray-over-region constructor. */
#include "mmarray.h"

#define PY_ARRAY_UNIQUE_SYMBOL MMARRAY_ARRAY_API
#include <numpy/arrayobject.h>

/* ndarray(region, dtype, shape, offset=0, fortran=False, subtype=None)
 *
 * A numpy array (or subtype instance) over region's bytes starting at offset.  The
 * array's base is a memoryview of the region, so it holds a real export: the region
 * cannot be unmapped while the array (or any view of it) is alive. */
static PyObject *
mm_ndarray(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"region", "dtype", "shape", "offset", "fortran", "subtype", NULL};
    PyObject *region = NULL, *dtype_obj = NULL, *shape_obj = NULL, *subtype = Py_None;
    PyObject *mview = NULL, *arr = NULL;
    PyArray_Descr *descr = NULL;
    PyArray_Dims shape = {NULL, 0};
    Py_ssize_t offset = 0, itemsize, nbytes, i;
    int fortran = 0, flags;
    mm_region *r;
    PyTypeObject *tp = &PyArray_Type;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|npO:ndarray", kwlist, &region, &dtype_obj,
                                     &shape_obj, &offset, &fortran, &subtype))
        goto fail;
    if (!mm_region_check(module, region)) {
        PyErr_Format(PyExc_TypeError, "expected a Region, got %.100s", Py_TYPE(region)->tp_name);
        goto fail;
    }
    r = (mm_region *)region;
    if (subtype != Py_None) {
        if (!PyType_Check(subtype) || !PyType_IsSubtype((PyTypeObject *)subtype, &PyArray_Type)) {
            PyErr_SetString(PyExc_TypeError, "subtype must be a subclass of numpy.ndarray");
            goto fail;
        }
        tp = (PyTypeObject *)subtype;
    }
    if (!PyArray_DescrConverter(dtype_obj, &descr))
        goto fail;
    if (PyDataType_REFCHK(descr)) {
        PyErr_SetString(PyExc_TypeError, "cannot map arrays of Python objects (dtype with object fields)");
        goto fail;
    }
    if (!PyArray_IntpConverter(shape_obj, &shape))
        goto fail;
    itemsize = PyDataType_ELSIZE(descr);
    nbytes = itemsize;
    for (i = 0; i < shape.len; i++) {
        if (shape.ptr[i] < 0) {
            PyErr_Format(PyExc_ValueError, "negative dimension %zd in shape", (Py_ssize_t)shape.ptr[i]);
            goto fail;
        }
    }
    for (i = 0; i < shape.len; i++) {
        if (shape.ptr[i] == 0) {
            nbytes = 0;
            break;
        }
        if (nbytes > PY_SSIZE_T_MAX / shape.ptr[i]) {
            PyErr_SetString(PyExc_ValueError, "array is too big: the shape's byte size overflows");
            goto fail;
        }
        nbytes *= shape.ptr[i];
    }
    if (offset < 0 || offset > r->size || r->size - offset < nbytes) {
        PyErr_Format(PyExc_ValueError,
                     "an array of %zd bytes at offset %zd does not fit in a region of %zd bytes",
                     nbytes, offset, r->size);
        goto fail;
    }
    mview = PyMemoryView_FromObject(region); /* takes the export; fails on a closed region */
    if (mview == NULL)
        goto fail;
    flags = (fortran ? NPY_ARRAY_F_CONTIGUOUS : 0) |
            (r->access == MM_ACCESS_READ ? 0 : NPY_ARRAY_WRITEABLE);
    arr = PyArray_NewFromDescr(tp, descr, shape.len, shape.ptr, NULL, r->data + offset, flags, NULL);
    descr = NULL; /* stolen */
    if (arr == NULL)
        goto fail;
    if (PyArray_SetBaseObject((PyArrayObject *)arr, mview) < 0) {
        mview = NULL; /* stolen even on failure */
        goto fail;
    }
    PyDimMem_FREE(shape.ptr);
    return arr;
fail:
    PyDimMem_FREE(shape.ptr);
    Py_XDECREF(descr);
    Py_XDECREF(arr);
    Py_XDECREF(mview);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"ndarray", (PyCFunction)(void (*)(void))mm_ndarray, METH_VARARGS | METH_KEYWORDS,
     "ndarray(region, dtype, shape, offset=0, fortran=False, subtype=None)\n--\n\n"
     "A numpy array over region's bytes that holds an export of the region."},
    {NULL, NULL, 0, NULL},
};

static int
module_exec(PyObject *module)
{
    int rc = -1;
    if (PyArray_ImportNumPyAPI() < 0)
        goto done;
    if (mm_region_add_type(module) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "PAGESIZE", (long)mm_page_size()) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "MAX_WORKERS", MM_MAX_WORKERS) < 0)
        goto done;
    if (mm_kernels_add(module) < 0)
        goto done;
    if (mm_pages_add(module) < 0)
        goto done;
    rc = 0;
done:
    return rc;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    mm_state *st = PyModule_GetState(module);
    Py_VISIT(st->region_type);
    return 0;
}

static int
module_clear(PyObject *module)
{
    mm_state *st = PyModule_GetState(module);
    Py_CLEAR(st->region_type);
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "mmarray._core",
    .m_doc = "C core of mmarray: the Region type and GIL-free kernels.",
    .m_size = sizeof(mm_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
