/* Small helpers shared by the C files: page size, OSError naming the syscall or cause. */
#include "mmarray.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

size_t
mm_page_size(void)
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
    const char *text = buf;
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    text = strerror_r(err, buf, len); /* GNU form: the message, in buf or static */
#else
    if (strerror_r(err, buf, len) != 0)
        snprintf(buf, len, "error %d", err);
#endif
    return text;
}

void
mm_set_oserror_fmt(int err, PyObject *path, const char *format, ...)
{
    PyObject *msg = NULL, *exc = NULL;
    va_list ap;

    va_start(ap, format);
    msg = PyUnicode_FromFormatV(format, ap);
    va_end(ap);
    if (msg == NULL)
        goto done;
    /* Calling the class, not PyErr_SetFromErrno: OSError(errno, ...) picks the subclass
     * (FileNotFoundError, PermissionError, ...) and the path becomes its filename. */
    if (path != NULL && path != Py_None)
        exc = PyObject_CallFunction(PyExc_OSError, "iOO", err, msg, path);
    else
        exc = PyObject_CallFunction(PyExc_OSError, "iO", err, msg);
    if (exc == NULL)
        goto done;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
done:
    Py_XDECREF(exc);
    Py_XDECREF(msg);
}

void
mm_set_oserror(int err, const char *syscall, PyObject *path)
{
    char buf[128];
    mm_set_oserror_fmt(err, path, "%s: %s", syscall, errno_text(err, buf, sizeof(buf)));
}
