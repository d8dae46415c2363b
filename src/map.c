/* Making a Region's mapping: the checks on the file and the descriptor, then mmap.
 *
 * region.c owns the object; the functions here check the access mode and the length,
 * and fill a fresh region with its descriptor and its mapping.  Every check runs before mmap, in checked
 * arithmetic (size - offset < length, never offset + length > size), and every error
 * names the syscall or the cause and the path.
 */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The buffer handed out for zero-length regions: never written, never read. */
static char mm_empty[1];

/* Sets ValueError from a printf-style message, followed by ": <name>" when the region
 * has a name (path). */
static void
set_value_error_at(PyObject *name, const char *format, ...)
{
    va_list ap;
    PyObject *msg;

    va_start(ap, format);
    msg = PyUnicode_FromFormatV(format, ap);
    va_end(ap);
    if (msg != NULL && name != NULL && name != Py_None)
        PyErr_Format(PyExc_ValueError, "%U: %R", msg, name);
    else if (msg != NULL)
        PyErr_SetObject(PyExc_ValueError, msg);
    Py_XDECREF(msg);
}

static int
parse_access(PyObject *obj, mm_access *access)
{
    const char *s;
    int ok = 0;

    if (!PyUnicode_Check(obj)) {
        PyErr_Format(PyExc_TypeError, "access must be 'r', 'w' or 'c', not %.100s",
                     Py_TYPE(obj)->tp_name);
        goto done;
    }
    s = PyUnicode_AsUTF8(obj);
    if (s == NULL)
        goto done;
    if (strcmp(s, "r") == 0)
        *access = MM_ACCESS_READ;
    else if (strcmp(s, "w") == 0)
        *access = MM_ACCESS_WRITE;
    else if (strcmp(s, "c") == 0)
        *access = MM_ACCESS_COPY;
    else {
        PyErr_Format(PyExc_ValueError, "access must be 'r', 'w' or 'c', not %R", obj);
        goto done;
    }
    ok = 1;
done:
    return ok;
}

int
mm_map_check_nonnegative(long long length)
{
    int rc = 0;
    if (length < 0) {
        PyErr_Format(PyExc_ValueError, "length must be non-negative, got %lld", length);
        rc = -1;
    }
    return rc;
}

/* The access= and length arguments of Region() and Region.open(), checked, with the
 * mode normalised: 'c' is private, and 'w' on a private mapping means 'c'.  Returns 1,
 * or 0 with an exception set. */
int
mm_map_parse_mode(PyObject *access_obj, long long length, mm_access *access, int *shared)
{
    int ok = 0;

    if (access_obj != NULL && !parse_access(access_obj, access))
        goto done;
    if (mm_map_check_nonnegative(length) < 0)
        goto done;
    if (*access == MM_ACCESS_COPY)
        *shared = 0;
    else if (*access == MM_ACCESS_WRITE && !*shared)
        *access = MM_ACCESS_COPY;
    ok = 1;
done:
    return ok;
}

int
mm_map_check_length(long long length)
{
    int rc = 0;
    if ((unsigned long long)length > (unsigned long long)PY_SSIZE_T_MAX - mm_page_size()) {
        PyErr_Format(PyExc_OverflowError, "length %lld is too large to map", length);
        rc = -1;
    }
    return rc;
}

/* The length to map of the file under fd: checks that [offset, offset + *length) lies
 * in a regular file (and sets *length when it is < 0, "to the end"), or that a length
 * was given for anything else.  Directories are refused. */
static int
fit_file(int fd, PyObject *name, long long offset, long long *length)
{
    struct stat st;
    long long fsize;
    int rc = -1;

    if (fstat(fd, &st) != 0) {
        mm_set_oserror(errno, "fstat", name);
        goto done;
    }
    if (S_ISDIR(st.st_mode)) {
        mm_set_oserror_fmt(EISDIR, name, "cannot map a directory");
        goto done;
    }
    fsize = (long long)st.st_size;
    if (!S_ISREG(st.st_mode)) {
        if (*length < 0) {
            set_value_error_at(name, "length is required when mapping something that is not a regular file");
            goto done;
        }
    }
    else if (offset > fsize) {
        set_value_error_at(name, "offset %lld is past the end of the file (%lld bytes)", offset,
                           fsize);
        goto done;
    }
    else if (*length < 0)
        *length = fsize - offset;
    else if (fsize - offset < *length) {
        /* the sum in unsigned arithmetic: both are non-negative, it cannot overflow */
        set_value_error_at(name, "%lld bytes at offset %lld need a file of %llu bytes, but it has %lld",
                           *length, offset,
                           (unsigned long long)offset + (unsigned long long)*length, fsize);
        goto done;
    }
    rc = 0;
done:
    return rc;
}

/* Checks that fd's open mode allows the mapping.  A descriptor we opened ourselves
 * (check_fd 0) has the right mode: the syscall is skipped. */
static int
check_fd_mode(int fd, PyObject *name, mm_access access, int shared, int check_fd)
{
    int acc, rc = -1;

    acc = check_fd ? fcntl(fd, F_GETFL) : (access == MM_ACCESS_WRITE ? O_RDWR : O_RDONLY);
    if (acc == -1) {
        mm_set_oserror(errno, "fcntl", name);
        goto done;
    }
    acc &= O_ACCMODE;
    if (acc == O_WRONLY || (access == MM_ACCESS_WRITE && shared && acc != O_RDWR)) {
        mm_set_oserror_fmt(EACCES, name, "%s",
                           access == MM_ACCESS_WRITE && shared
                               ? "access 'w' needs a descriptor open for reading and writing"
                               : "mapping needs a descriptor open for reading");
        goto done;
    }
    rc = 0;
done:
    return rc;
}

int
mm_map_file(mm_region *region, int fd, long long length, long long offset, mm_access access,
            int shared, int check_fd)
{
    size_t page = mm_page_size(), delta;
    int flags, prot, rc = -1;
    void *p;

    region->fd = fd;
    if (offset < 0) {
        PyErr_Format(PyExc_ValueError, "offset must be non-negative, got %lld", offset);
        goto done;
    }
    if (fit_file(fd, region->name, offset, &length) < 0 ||
        check_fd_mode(fd, region->name, access, shared, check_fd) < 0)
        goto done;
    region->access = access;
    region->shared = shared;
    region->offset = offset;
    if (mm_map_check_length(length) < 0)
        goto done;
    region->size = (Py_ssize_t)length;
    if (length == 0) {
        region->data = mm_empty;
        rc = 0;
        goto done;
    }
    delta = (size_t)(offset % (long long)page);
    prot = PROT_READ | (access == MM_ACCESS_READ ? 0 : PROT_WRITE);
    /* A private writable mapping would otherwise be charged in full against the
     * commit limit, so a copy-on-write view of a file larger than RAM could not be
     * mapped; only the pages actually written take memory. */
    flags = shared ? MAP_SHARED : (MAP_PRIVATE | (access == MM_ACCESS_COPY ? MAP_NORESERVE : 0));
    p = mmap(NULL, (size_t)length + delta, prot, flags, fd, (off_t)(offset - (long long)delta));
    if (p == MAP_FAILED) {
        mm_set_oserror(errno, "mmap", region->name);
        goto done;
    }
    region->map_base = p;
    region->map_len = (size_t)length + delta;
    region->data = (char *)p + delta;
    rc = 0;
done:
    return rc;
}

/* A memory file of length bytes for shared anonymous memory, stored in region->fd.
 * A memfd rather than MAP_ANONYMOUS: other processes can map it through the descriptor
 * (fileno()), it is freed when its last descriptor and mapping are gone, and it does not
 * live in /dev/shm, so that mount's size does not limit it. */
static int
memory_file(mm_region *region, long long length)
{
    int rc = -1;

    region->fd = memfd_create("mmarray", MFD_CLOEXEC);
    if (region->fd < 0) {
        mm_set_oserror(errno, "memfd_create", NULL);
        goto done;
    }
    if (ftruncate(region->fd, (off_t)length) != 0) {
        mm_set_oserror(errno, "ftruncate", NULL);
        goto done;
    }
    rc = 0;
done:
    return rc;
}

int
mm_map_anonymous(mm_region *region, long long length, int shared)
{
    int rc = -1;
    void *p;

    region->access = shared ? MM_ACCESS_WRITE : MM_ACCESS_COPY;
    region->shared = shared;
    region->anonymous = 1;
    region->size = (Py_ssize_t)length;
    if (shared && memory_file(region, length) < 0)
        goto done;
    if (length == 0) {
        region->data = mm_empty;
        rc = 0;
        goto done;
    }
    if (shared)
        p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_SHARED, region->fd, 0);
    else /* cppcheck's posix.cfg allows only fd >= 0; MAP_ANONYMOUS requires -1 (mmap(2)) */
        /* cppcheck-suppress invalidFunctionArg */
        p = mmap(NULL, (size_t)length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        mm_set_oserror(errno, "mmap", NULL);
        goto done;
    }
    region->map_base = p;
    region->map_len = (size_t)length;
    region->data = p;
    rc = 0;
done:
    return rc;
}
