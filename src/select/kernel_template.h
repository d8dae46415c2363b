/* The per-dtype loops of the selection engine over one strided run of elements (the
 * first-digit histogram, the filtered pass of the later digits, the key loader of short
 * lanes and the NaN counter), written once for every dtype.
 *
 * dtypes.c includes this file once per dtype, with its parameters defined before:
 *   MM_T        the dtype's name in the functions' names (hist0_f64, filter_f64, ...)
 *   MM_W        the key's bits: 8, 16, 32 or 64 (a literal: it names mm_rawtop_W)
 *   MM_KEY      the key of the value at a pointer (keys.h: key_f64, ...)
 *   MM_SPECIAL  32/64-bit floats: the exponent's bits in the top 16 (their NaNs that share
 *               top bits with an infinity get the first-digit bin MM_NANBIN); else 0
 * and the file undefines them at its end.  No include guard: it is read once per dtype.
 * It needs select.h (mm_filter), keys.h, filter_hit.h (mm_filter_hit) and window64.h
 * (mm_wstage) first. */

#define MM_PASTE(name, type) name##_##type
#define MM_NAME(name, type) MM_PASTE(name, type)
#define MM_FN(name) MM_NAME(name, MM_T)
/* the key with all MM_W bits set: every NaN's */
#define MM_ALL_ONES (MM_W == 64 ? UINT64_MAX : (((uint64_t)1 << (MM_W & 63)) - 1))

/* hist_bin: the first-digit histogram bin of a 32- or 64-bit value: its stored top 16
 * bits, except that a NaN whose top bits are those of an infinity goes to the bin
 * MM_NANBIN, which holds NaNs only (MM_SPECIAL: the exponent's bits there). */
static inline uint32_t
MM_FN(hist_bin)(const char *p)
{
    uint32_t r = MM_NAME(mm_rawtop, MM_W)(p);
    if ((MM_SPECIAL) != 0 && (r & (MM_SPECIAL)) == (MM_SPECIAL) && MM_KEY(p) == MM_ALL_ONES)
        r = MM_NANBIN;
    return r;
}

/* keytop: the key's top digit of the value whose stored top 16 bits are r and whose
 * other bits are all zero (low = 0) or zero but the lowest (low = 1) */
static uint32_t
MM_FN(keytop)(uint32_t r, unsigned low)
{
    unsigned char v[8] = {0};
    if (MM_W == 64) {
        uint64_t x = (uint64_t)r << 48 | low;
        memcpy(v, &x, 8);
    }
    else if (MM_W == 32) {
        uint32_t x = r << 16 | low;
        memcpy(v, &x, 4);
    }
    else if (MM_W == 16) {
        uint16_t x = (uint16_t)r;
        memcpy(v, &x, 2);
    }
    else
        v[0] = (unsigned char)r;
    return (uint32_t)(MM_KEY((const char *)v) >> (MM_W > 16 ? MM_W - 16 : 0));
}

/* hist0: counts the first digit (the top 16 bits, or all 8 bits of an 8-bit key).
 * Keys of 8 bits spread over four sub-histograms of 256 bins, 32- and 64-bit keys over
 * two of 65536, so that runs of equal top digits do not serialise on one counter. */
static void
MM_FN(hist0)(const char *p, npy_intp cnt, npy_intp st, uint32_t *h)
{
    npy_intp i = 0;
    if (MM_W == 8) {
        for (; i + 4 <= cnt; i += 4, p += 4 * st) {
            h[MM_KEY(p)]++;
            h[256 + MM_KEY(p + st)]++;
            h[512 + MM_KEY(p + 2 * st)]++;
            h[768 + MM_KEY(p + 3 * st)]++;
        }
        for (; i < cnt; i++, p += st)
            h[MM_KEY(p)]++;
    }
    else if (MM_W == 16) {
        if (st == 2) { /* contiguous: four keys from one 8-byte load */
            for (; i + 4 <= cnt; i += 4, p += 8) {
                uint64_t w8;
                memcpy(&w8, p, 8);
                h[MM_KEY((const char *)&w8)]++;
                h[MM_KEY((const char *)&w8 + 2)]++;
                h[MM_KEY((const char *)&w8 + 4)]++;
                h[MM_KEY((const char *)&w8 + 6)]++;
            }
        }
        for (; i + 4 <= cnt; i += 4, p += 4 * st) {
            uint64_t k0 = MM_KEY(p), k1 = MM_KEY(p + st), k2 = MM_KEY(p + 2 * st);
            uint64_t k3 = MM_KEY(p + 3 * st);
            h[k0]++;
            h[k1]++;
            h[k2]++;
            h[k3]++;
        }
        for (; i < cnt; i++, p += st)
            h[MM_KEY(p)]++;
    }
    else { /* by the stored top bits (the key's top digit comes at the merge) */
        for (; i + 2 <= cnt; i += 2, p += 2 * st) {
            h[MM_FN(hist_bin)(p)]++;
            h[65536 + MM_FN(hist_bin)(p + st)]++;
        }
        for (; i < cnt; i++, p += st)
            h[MM_FN(hist_bin)(p)]++;
    }
}

/* rawmap: the first-digit bitmap of the keys, turned into one over the top 16 bits
 * of the values as stored, so that the filter can test a value before making its
 * key.  A value's top bits decide its key's top digit except where the value may be
 * a NaN (every NaN has the largest key): both cases are marked there. */
static void
MM_FN(rawmap)(const uint64_t *kb, uint64_t *rb)
{
    const uint32_t nr = MM_W < 16 ? (1u << (MM_W & 15)) : 65536u;
    memset(rb, 0, 65536 / 8);
    for (uint32_t r = 0; r < nr; r++) {
        uint32_t a = MM_FN(keytop)(r, 0), b = MM_FN(keytop)(r, 1);
        if (((kb[a >> 6] >> (a & 63)) | (kb[b >> 6] >> (b & 63))) & 1u)
            rb[r >> 6] |= (uint64_t)1 << (r & 63);
    }
}

/* hit: whether the value at p may belong to an active target.  Targets at level 1
 * only: one test of the stored top bits.  Deeper targets: each digit of the key. */
static inline __attribute__((always_inline)) uint64_t
MM_FN(hit)(const char *p, const mm_filter *f, int deep)
{
    uint64_t hit;
    if (!deep) {
        uint32_t r = MM_NAME(mm_rawtop, MM_W)(p);
        hit = (f->rawmap[r >> 6] >> (r & 63)) & 1u;
    }
    else {
        uint64_t k = MM_KEY(p);
        uint32_t d1 = (uint32_t)(k >> (MM_W > 16 ? MM_W - 16 : 0));
        uint32_t d2 = (uint32_t)(k >> (MM_W > 32 ? MM_W - 32 : 0)) & 0xFFFFu;
        uint32_t d3 = (uint32_t)(k >> (MM_W > 48 ? MM_W - 48 : 0)) & 0xFFFFu;
        hit = ((f->bitmap[0][d1 >> 6] >> (d1 & 63)) | (f->bitmap[1][d2 >> 6] >> (d2 & 63)) |
               (f->bitmap[2][d3 >> 6] >> (d3 & 63))) & 1u;
    }
    return hit;
}

/* filter_run: the values that may belong to an active target go to mm_filter_hit.  Few
 * expected hits: one well-predicted branch per value.  Many: blocks of 64 values set
 * one bit each, then only the hits are visited (no misprediction per hit). */
static inline __attribute__((always_inline)) void
MM_FN(filter_run)(const char *p, npy_intp cnt, npy_intp st, mm_filter *f, int tid, int deep)
{
    uint64_t *stage = f->stage + (size_t)tid * (size_t)f->thread_stride * MM_STAGE;
    int *staged = f->staged + (size_t)tid * (size_t)f->thread_stride;
    if (f->sparse) {
        for (npy_intp i = 0; i < cnt; i++, p += st)
            if (MM_FN(hit)(p, f, deep))
                mm_filter_hit(f, tid, stage, staged, MM_KEY(p));
        goto done;
    }
    for (npy_intp i0 = 0; i0 < cnt; i0 += 64, p += 64 * st) {
        int nb = cnt - i0 < 64 ? (int)(cnt - i0) : 64, j = 0;
        uint64_t m0 = 0, m1 = 0, m2 = 0, m3 = 0, mask;
        const char *q = p;
        /* value j is bit j; four masks, so that no chain of shifts and ors runs
         * through all 64 values (that chain alone took 2 cycles a value) */
        for (; j + 4 <= nb; j += 4, q += 4 * st) {
            m0 |= MM_FN(hit)(q, f, deep) << j;
            m1 |= MM_FN(hit)(q + st, f, deep) << (j + 1);
            m2 |= MM_FN(hit)(q + 2 * st, f, deep) << (j + 2);
            m3 |= MM_FN(hit)(q + 3 * st, f, deep) << (j + 3);
        }
        for (; j < nb; j++, q += st)
            m0 |= MM_FN(hit)(q, f, deep) << j;
        mask = m0 | m1 | m2 | m3;
        while (mask != 0) {
            int k = __builtin_ctzll(mask);
            mask &= mask - 1;
            mm_filter_hit(f, tid, stage, staged, MM_KEY(p + k * st));
        }
    }
done:;
}

static void
MM_FN(filter)(const char *p, npy_intp cnt, npy_intp st, mm_filter *f, int tid)
{
    if (f->deep)
        MM_FN(filter_run)(p, cnt, st, f, tid, 1);
    else
        MM_FN(filter_run)(p, cnt, st, f, tid, 0);
}

static void
MM_FN(load)(const char *p, npy_intp cnt, npy_intp st, uint64_t *out)
{
    for (npy_intp i = 0; i < cnt; i++, p += st)
        out[i] = MM_KEY(p);
}

/* wcount: the window pass (window64.h) over a run, one key at a time: per window, the
 * keys below it counted and those inside staged; the largest key kept.  (The vector loop
 * of simd.h does the long contiguous stretches first.) */
static void
MM_FN(wcount)(const char *p, npy_intp cnt, npy_intp st, mm_wpass *w, int tid)
{
    mm_wthread *t = &w->th[tid];
    uint64_t mx = t->max;
    const int nw = w->n_win;
    for (npy_intp i = 0; i < cnt; i++, p += st) {
        uint64_t k = MM_KEY(p);
        mx = k > mx ? k : mx;
        for (int j = 0; j < nw; j++) {
            t->below[j] += k < w->lo[j];
            if (k - w->lo[j] <= w->width[j])
                mm_wstage(w, t, j, k);
        }
    }
    t->max = mx;
}

static npy_intp
MM_FN(nans)(const char *p, npy_intp cnt, npy_intp st)
{
    const uint64_t all = MM_ALL_ONES;
    npy_intp c = 0;
    for (npy_intp i = 0; i < cnt; i++, p += st)
        c += MM_KEY(p) == all;
    return c;
}

#undef MM_ALL_ONES
#undef MM_FN
#undef MM_NAME
#undef MM_PASTE
#undef MM_SPECIAL
#undef MM_KEY
#undef MM_W
#undef MM_T
