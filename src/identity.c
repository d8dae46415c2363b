/* _core.file_identity(fd): what tells one file from another that reuses its inode number.
 *
 * Device and inode numbers are reused: ext4 gives a file created after another was
 * deleted the freed inode at once.  What changes when a file is replaced: its birth time
 * (statx's STATX_BTIME; ext4, tmpfs, xfs, btrfs; coarse, one clock tick) and its inode
 * generation (FS_IOC_GETVERSION; ext4 draws a random one for every inode it allocates).
 * Both are kept where both exist; the change time, which also moves on every write and
 * chmod, only where neither does. */
#include "mmarray.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <linux/fs.h>

typedef struct {
    struct stat st;
    int st_err;          /* errno of fstat, 0 when it worked */
    int has_btime;
    long long btime;     /* nanoseconds since the epoch */
    int has_generation;
    unsigned int generation;
} identity;

/* The birth time of fd's file: 1 with *ns set, 0 when the file system does not keep one
 * (or the kernel lacks statx). */
static int
birth_time(int fd, long long *ns)
{
    int found = 0;
#if defined(STATX_BTIME)
    struct statx stx;
    memset(&stx, 0, sizeof(stx));
    if (statx(fd, "", AT_EMPTY_PATH | AT_STATX_SYNC_AS_STAT, STATX_BTIME, &stx) == 0
        && (stx.stx_mask & STATX_BTIME)) {
        *ns = (long long)stx.stx_btime.tv_sec * 1000000000LL + stx.stx_btime.tv_nsec;
        found = 1;
    }
#else
    (void)fd;
    (void)ns;
#endif
    return found;
}

/* The inode generation of fd's file: 1 with *gen set, 0 where the file system has no
 * FS_IOC_GETVERSION (tmpfs, overlay, xfs answer ENOTTY or EOPNOTSUPP). */
static int
generation(int fd, unsigned int *gen)
{
    int found = 0;
#if defined(FS_IOC_GETVERSION)
    long buf = 0; /* declared as a long, written as an int by ext4: room for either */
    if (ioctl(fd, FS_IOC_GETVERSION, &buf) == 0) {
        int value;
        memcpy(&value, &buf, sizeof(value));
        *gen = (unsigned int)value;
        found = 1;
    }
#else
    (void)fd;
    (void)gen;
#endif
    return found;
}

/* Pure C, called without the GIL. */
static void
read_identity(int fd, identity *id)
{
    memset(id, 0, sizeof(*id));
    if (fstat(fd, &id->st) != 0) {
        id->st_err = errno;
        return;
    }
    id->has_btime = birth_time(fd, &id->btime);
    id->has_generation = generation(fd, &id->generation);
}

/* The stamp: a tuple of (name, value) pairs. */
static PyObject *
stamp_of(const identity *id)
{
    PyObject *res = NULL;

    if (id->has_btime && id->has_generation)
        res = Py_BuildValue("((sL)(sI))", "btime", id->btime, "generation", id->generation);
    else if (id->has_btime)
        res = Py_BuildValue("((sL))", "btime", id->btime);
    else if (id->has_generation)
        res = Py_BuildValue("((sI))", "generation", id->generation);
    else
        res = Py_BuildValue(
            "((sL))", "ctime",
            (long long)id->st.st_ctim.tv_sec * 1000000000LL + id->st.st_ctim.tv_nsec);
    return res;
}

static PyObject *
file_identity(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *res = NULL, *stamp = NULL;
    identity id;
    int fd = -1;

    if (!PyArg_ParseTuple(args, "i:file_identity", &fd))
        goto done;
    if (fd < 0) {
        mm_set_oserror_fmt(EBADF, NULL, "file_identity: %d is not a file descriptor", fd);
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    read_identity(fd, &id);
    Py_END_ALLOW_THREADS
    if (id.st_err != 0) {
        mm_set_oserror(id.st_err, "fstat", NULL);
        goto done;
    }
    stamp = stamp_of(&id);
    if (stamp == NULL)
        goto done;
    res = Py_BuildValue("(KKLO)", (unsigned long long)id.st.st_dev,
                        (unsigned long long)id.st.st_ino, (long long)id.st.st_size, stamp);
done:
    Py_XDECREF(stamp);
    return res;
}

static PyMethodDef identity_methods[] = {
    {"file_identity", file_identity, METH_VARARGS,
     "file_identity(fd, /)\n--\n\n(device, inode, size, stamp) of the file open on fd; stamp\n"
     "is a tuple of (name, value) pairs that change when the file is replaced by another\n"
     "with the same inode number: ('btime', ns) and ('generation', n) where the file\n"
     "system keeps them, else ('ctime', ns)."},
    {NULL, NULL, 0, NULL},
};

int
mm_identity_add(PyObject *module)
{
    return PyModule_AddFunctions(module, identity_methods);
}
