/* mmarray internal header: shared by every C file of mmarray._core. */
#ifndef MMARRAY_H
#define MMARRAY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include <stdint.h>

/* Most threads a kernel starts (workers= above this is clamped); _core.MAX_WORKERS. */
#define MM_MAX_WORKERS 256

/* ---- the module (module.c) ----------------------------------------------- */

/* Per-module state: created, traversed and cleared by module.c. */
typedef struct {
    PyTypeObject *region_type;
    PyObject *repr_html; /* Region._repr_html_'s drawing function, or NULL (_set_repr_html) */
} mm_state;

/* The state of the module whose heap type type is (or derives from), or NULL with
 * TypeError set. */
mm_state *mm_state_of_type(PyTypeObject *type);

/* ---- Region (region.c, mapping in map.c) ---------------------------------- */

typedef enum { MM_ACCESS_READ = 'r', MM_ACCESS_WRITE = 'w', MM_ACCESS_COPY = 'c' } mm_access;

typedef struct {
    PyObject_HEAD
    char *map_base;       /* what mmap returned (page aligned), NULL when unmapped */
    size_t map_len;       /* length given to mmap */
    char *data;           /* first requested byte: map_base + (offset % page) */
    Py_ssize_t size;      /* requested bytes */
    long long offset;     /* file offset of data (0 for anonymous memory) */
    int fd;               /* owned descriptor, -1 for anonymous memory or after close */
    mm_access access;     /* 'r', 'w' or 'c' */
    int shared;           /* MAP_SHARED (1) or MAP_PRIVATE (0) */
    int anonymous;        /* made by Region.anonymous (memfd or MAP_ANONYMOUS) */
    int closed;           /* close() was called: no new exports, unmap at last release */
    Py_ssize_t exports;   /* live buffer exports */
    PyObject *name;       /* path (str) or None, for messages and repr */
    PyObject *weakreflist;
} mm_region;

/* Adds the Region type, ndarray() and _set_repr_html() to the module. */
int mm_region_add(PyObject *module);
/* 1 if obj is a Region of this module, else 0. */
int mm_region_check(PyObject *module, PyObject *obj);
/* A close-on-exec duplicate of the region's descriptor, owned by the caller; -1 with
 * ValueError (no descriptor) or OSError set.  Call with the GIL held. */
int mm_region_dup_fd(mm_region *self);

/* map.c: fills a fresh region (fd -1, nothing mapped) with its mapping.  Each returns
 * 0, or -1 with an exception set (the caller then drops the region, which unmaps and
 * closes what it holds).  mm_map_file takes over fd, which it stores in the region
 * first; length < 0 means "to the end of the file"; check_fd: the descriptor came
 * from the caller, so its open mode must be checked. */
int mm_map_file(mm_region *region, int fd, long long length, long long offset,
                mm_access access, int shared, int check_fd);
int mm_map_anonymous(mm_region *region, long long length, int shared);
/* OverflowError unless a mapping of length bytes (plus a page) fits a Py_ssize_t. */
int mm_map_check_length(long long length);
/* ValueError for a negative length: 0, or -1 with the exception set. */
int mm_map_check_nonnegative(long long length);
/* Region()'s and Region.open()'s access= and length, checked, with the mode normalised
 * ('c' is private; 'w' on a private mapping means 'c').  1, or 0 with an exception set. */
int mm_map_parse_mode(PyObject *access_obj, long long length, mm_access *access, int *shared);

/* ---- byte spans of a region (span.c) --------------------------------------- */

/* An export of a region plus the page-rounded address range of a byte range. */
typedef struct {
    Py_buffer view;     /* the export that keeps the mapping alive */
    mm_region *region;  /* NULL when no export is held */
    char *addr;         /* first byte of the page-rounded range */
    size_t len;         /* its length; 0 means there is nothing to do */
} mm_span;

/* Takes an export of obj (a Region) and rounds [start, stop) outwards to pages.
 * Returns 0, or -1 with an exception set and no export held. */
int mm_span_acquire(PyObject *module, PyObject *obj, Py_ssize_t start, Py_ssize_t stop,
                    mm_span *span);
/* Gives the export back (nothing when none is held). */
void mm_span_release(mm_span *span);
/* File offset of the mapped byte at addr (addr lies inside the region's mapping). */
long long mm_span_file_offset(const mm_span *span, const char *addr);
/* Runs fn(arg) under a SIGBUS guard over the span; releases the GIL if nogil.  Returns
 * 0, or -1 with OSError set (a SIGBUS names the region and the offset). */
int mm_span_guarded(mm_span *span, void (*fn)(void *), void *arg, int nogil, int write);

/* ---- helpers (util.c) ---------------------------------------------------- */

size_t mm_page_size(void);
/* Sets OSError (the subclass errno err selects) with the message PyUnicode_FromFormat
 * makes of format and the path as its filename (path NULL or None: none). */
void mm_set_oserror_fmt(int err, PyObject *path, const char *format, ...);
/* Sets OSError from the errno value err, "syscall: <strerror>", naming the path (may
 * be NULL). */
void mm_set_oserror(int err, const char *syscall, PyObject *path);

/* ---- SIGBUS guards (guard.c) --------------------------------------------- */

/* Installs the SIGBUS handler for one guarded call (counted; call with or without the
 * GIL).  Returns 0, or -1 with errno set (sigaction failed).  Pair with release. */
int mm_guard_acquire(void);
void mm_guard_release(void);
/* Runs fn(arg) on this thread so that a SIGBUS at an address in [lo, hi) ends it early:
 * returns 0 when fn returned, -1 after a fault, with *fault = the faulting address.
 * Needs an mm_guard_acquire() held.  fn must hold no lock and own no memory only a
 * local variable points to (the jump abandons fn mid-way).  No Python API needed. */
int mm_guarded(void (*fn)(void *), void *arg, const void *lo, const void *hi, void **fault);
/* Sets OSError(EFAULT) for a SIGBUS at addr, naming region's path and the offset of the
 * fault (region: an mm_region or NULL when unknown).  write: the fault was a write. */
void mm_set_fault_error(PyObject *region, const void *addr, int write);

/* ---- the other parts of the module: each adds its functions and constants ---- */

/* src/select/: selection and histogram kernels (median, quantiles). */
int mm_kernels_add(PyObject *module);
/* pages.c: page-cache advice and residency (madvise, mincore, fadvise, write-back). */
int mm_pages_add(PyObject *module);
/* sparse.c: sparse-file operations (punching holes, data extents). */
int mm_sparse_add(PyObject *module);
/* identity.c: file_identity(fd), what tells a file from one that reuses its inode. */
int mm_identity_add(PyObject *module);

#endif
