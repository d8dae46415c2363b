/* mmarray._core: the module definition.  Each part adds its own types, functions and
 * constants from the exec slot (mm_region_add, mm_pages_add, ...); the module state
 * (mmarray.h) is traversed and cleared here. */
#include "mmarray.h"

#define PY_ARRAY_UNIQUE_SYMBOL MMARRAY_ARRAY_API
#include <numpy/arrayobject.h>

static struct PyModuleDef module_def;

mm_state *
mm_state_of_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &module_def); /* borrowed */
    return module != NULL ? PyModule_GetState(module) : NULL;
}

static int
module_exec(PyObject *module)
{
    int rc = -1;
    if (PyArray_ImportNumPyAPI() < 0)
        goto done;
    if (mm_region_add(module) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "PAGESIZE", (long)mm_page_size()) < 0)
        goto done;
    if (PyModule_AddIntConstant(module, "MAX_WORKERS", MM_MAX_WORKERS) < 0)
        goto done;
    if (mm_kernels_add(module) < 0)
        goto done;
    if (mm_pages_add(module) < 0)
        goto done;
    if (mm_sparse_add(module) < 0)
        goto done;
    if (mm_identity_add(module) < 0)
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
    Py_VISIT(st->repr_html);
    return 0;
}

static int
module_clear(PyObject *module)
{
    mm_state *st = PyModule_GetState(module);
    Py_CLEAR(st->region_type);
    Py_CLEAR(st->repr_html);
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
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
