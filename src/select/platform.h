/* Platform differences of the selection engine, each behind one small helper. */
#ifndef MM_SELECT_PLATFORM_H
#define MM_SELECT_PLATFORM_H

#include <stddef.h>
#include <sys/mman.h>

/* Tells the kernel that the pages of [p, p + len) may be reclaimed under memory pressure
 * (their contents are no longer needed; a later write reuses them if they were not).
 * A hint: where MADV_FREE is missing, or it fails, nothing happens. */
static inline void
mm_pages_lazy_free(void *p, size_t len)
{
#ifdef MADV_FREE
    (void)madvise(p, len, MADV_FREE);
#else
    (void)p;
    (void)len;
#endif
}

#endif
