/* The filtered pass's step for one key that passed the bitmap test: the key is staged
 * for its gathered bucket, or counted in its bucket's next-digit histogram.
 *
 * Included by dtypes.c only, before kernel_template.h: the per-dtype filter loops inline
 * mm_filter_hit and call the other two in their translation unit, as they always have
 * (a call to another file would cost the compiler its view of what they touch).  The
 * rest of the engine reaches them through mm_filter_flush (dtypes.c). */
#ifndef MM_SELECT_FILTER_HIT_H
#define MM_SELECT_FILTER_HIT_H

#include "select.h"

#include <string.h>

/* Moves a thread's staged keys of gathered target g into the target's buffer: one
 * atomic add per MM_STAGE keys, so threads rarely touch the same counter. */
static void
flush_stage(mm_filter *f, int tid, int g)
{
    size_t idx = (size_t)tid * (size_t)f->thread_stride + (size_t)g;
    const mm_target *t = f->gathered[g];
    long long n = f->staged[idx];
    long long at = atomic_fetch_add_explicit(&f->fill[g], n, memory_order_relaxed);
    long long room = (long long)t->count - at;
    if (n > room) /* more keys than counted: the array changed (caught after the pass) */
        n = room > 0 ? room : 0;
    if (n > 0)
        memcpy(t->keys + at, f->stage + idx * MM_STAGE, (size_t)n * sizeof(uint64_t));
    f->staged[idx] = 0;
}

/* A key that passed the bitmap test but is not in a level-1 gathered target: finds its
 * target (a histogrammed one, or a deeper one) and stages or counts it. */
static void
mm_filter_other(mm_filter *f, int tid, uint64_t *stage, int *staged, uint64_t k)
{
    uint32_t top = (uint32_t)(k >> (f->key_bits - 16));
    mm_target *t = NULL;
    int shift;
    if ((f->bitmap[0][top >> 6] >> (top & 63)) & 1u)
        t = f->active[-1 - f->top_slot[top]];
    else {
        for (int j = 0; j < f->n_deeper; j++) {
            mm_target *d = f->deeper[j];
            if ((k >> (f->key_bits - 16 * d->level)) == d->prefix) {
                t = d;
                break;
            }
        }
    }
    if (t == NULL)
        goto done;
    shift = f->key_bits - 16 * t->level;
    if (t->mode == MM_TARGET_GATHER) {
        stage[(size_t)t->slot * MM_STAGE + (size_t)staged[t->slot]++] = k;
        if (staged[t->slot] == MM_STAGE)
            flush_stage(f, tid, t->slot);
    }
    else {
        size_t h = ((size_t)tid * (size_t)f->n_hist_slots + (size_t)t->slot) * 65536u;
        f->hist_slots[h + ((k >> (shift - 16)) & 0xFFFFu)]++;
    }
done:;
}

/* A key that passed the bitmap test.  stage and staged are this thread's rows.  The
 * common case, a key of a level-1 gathered target, is staged here, inline. */
static inline void
mm_filter_hit(mm_filter *f, int tid, uint64_t *stage, int *staged, uint64_t k)
{
    int32_t c = f->top_slot[(uint32_t)(k >> (f->key_bits - 16))];
    if (c >= 0) {
        int n = staged[c];
        stage[(size_t)c * MM_STAGE + (size_t)n] = k;
        staged[c] = ++n;
        if (n == MM_STAGE)
            flush_stage(f, tid, c);
    }
    else
        mm_filter_other(f, tid, stage, staged, k);
}

#endif
