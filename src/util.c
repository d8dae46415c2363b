/* Small helpers shared by the C files: page size, errors naming the syscall. */
#include "mmarray.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

size_t mm_page_size(void)
{
    static size_t page = 0;
    if (page == 0) {
        long p = sysconf(_SC_PAGESIZE);
        page = p > 0 ? (size_t)p : 4096;
    }
    return page;
}

/* The text of errno value err.  strerror_r, not strerror: strerror may format unknown
 * values into one static buffer, which C code running without the GIL could share. */
static const char *
errno_text(int err, char *buf, size_t len)
{
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    return strerror_r(err, buf, len); /* GNU form: the message, in buf or static */
#else
    if (strerror_r(err, buf, len) != 0)
        snprintf(buf, len, "error %d", err);
    return buf;
#endif
}

void mm_set_oserror(int err, const char *syscall, PyObject *path)
{
    PyObject *args = NULL;
    PyObject *exc = NULL;
    PyObject *msg = NULL;
    char buf[128];

    msg = PyUnicode_FromFormat("%s: %s", syscall, errno_text(err, buf, sizeof(buf)));
    if (msg == NULL)
        goto done;
    if (path != NULL && path != Py_None)
        args = Py_BuildValue("(iOO)", err, msg, path);
    else
        args = Py_BuildValue("(iO)", err, msg);
    if (args == NULL)
        goto done;
    exc = PyObject_Call(PyExc_OSError, args, NULL);
    if (exc == NULL)
        goto done;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
done:
    Py_XDECREF(exc);
    Py_XDECREF(args);
    Py_XDECREF(msg);
}
