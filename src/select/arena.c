/* The gather arena: the gathered keys of one filtered pass live in one anonymous mapping
 * (at most MM_GATHER_ALL keys).  Fresh pages cost a fault and a zeroed page each, which
 * for ten million keys is as much as the gathering itself, so the mapping is kept for
 * the next call: one mapping at most, taken and put back with an atomic exchange (no
 * lock a fork could catch held), its pages given back lazily (mm_pages_lazy_free: the
 * kernel reclaims them under memory pressure, a later write reuses them if it has not).
 * Its first page holds the mapping's size and is never lazily freed. */
#include "select.h"
#include "platform.h"

#include <sys/mman.h>

typedef struct {
    size_t bytes; /* the whole mapping, this page included */
} mm_arena_head;

static _Atomic(mm_arena_head *) mm_arena_cache = NULL;

static void
arena_unmap(mm_arena_head *h)
{
    if (h != NULL)
        munmap(h, h->bytes);
}

uint64_t *
mm_arena_get(size_t bytes)
{
    size_t page = mm_page_size(), total;
    mm_arena_head *h = atomic_exchange(&mm_arena_cache, NULL);
    uint64_t *keys = NULL;
    void *p;
    if (h != NULL && h->bytes - page >= bytes) {
        keys = (uint64_t *)(void *)((char *)h + page);
        goto done;
    }
    arena_unmap(h);
    total = page + ((bytes + page - 1) & ~(page - 1));
    p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        goto done;
    h = p;
    h->bytes = total;
    keys = (uint64_t *)(void *)((char *)p + page);
done:
    return keys;
}

/* Gives back a buffer from mm_arena_get (NULL is ignored): kept if the cache is empty. */
void
mm_arena_put(uint64_t *keys)
{
    size_t page = mm_page_size();
    mm_arena_head *none = NULL;
    if (keys != NULL) {
        mm_arena_head *h = (mm_arena_head *)(void *)((char *)keys - page);
        mm_pages_lazy_free(keys, h->bytes - page); /* a hint: failure is harmless */
        if (!atomic_compare_exchange_strong(&mm_arena_cache, &none, h))
            arena_unmap(h);
    }
}
