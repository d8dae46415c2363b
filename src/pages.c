/* Page-cache and sparse-file operations: filled in by the pages work. */
#include "mmarray.h"

int
mm_pages_add(PyObject *module)
{
    (void)module;
    return 0;
}
