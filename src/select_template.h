/* Dtype template for the selection kernels (included by kernels.c only).
 *
 * Every supported dtype is mapped to an order-preserving unsigned key of W bits:
 * unsigned ints as they are, signed ints with the sign bit flipped, floats with
 * the sign bit flipped for positives and all bits flipped for negatives.  Every
 * NaN becomes the all-ones key, so NaNs sort after +inf, as in numpy's sort.
 * MM_KERNELS(T, W, KEY, STORE) stamps out the per-dtype loops over one strided
 * run of elements: the first-digit histogram, the filtered pass of the later
 * digits, the key loader (short lanes, gathers) and the NaN counter. */
#ifndef MM_SELECT_TEMPLATE_H
#define MM_SELECT_TEMPLATE_H

#include <stdint.h>
#include <string.h>

/* ---- keys ---------------------------------------------------------------- */

static inline uint64_t
key_bool(const char *p)
{
    unsigned char v;
    memcpy(&v, p, 1);
    return v != 0;
}

static inline uint64_t
key_u8(const char *p)
{
    uint8_t v;
    memcpy(&v, p, 1);
    return v;
}

static inline uint64_t
key_i8(const char *p)
{
    uint8_t v;
    memcpy(&v, p, 1);
    return (uint8_t)(v ^ 0x80u);
}

static inline uint64_t
key_u16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint64_t
key_i16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return (uint16_t)(v ^ 0x8000u);
}

static inline uint64_t
key_f16(const char *p)
{
    uint16_t b;
    memcpy(&b, p, 2);
    /* branch-free: negatives flip all bits, positives the sign bit; NaN -> all ones */
    uint16_t flip = (uint16_t)((uint16_t)(0u - (uint16_t)(b >> 15)) | 0x8000u);
    uint16_t nan = (uint16_t)(0u - (uint16_t)((b & 0x7FFFu) > 0x7C00u));
    return (uint16_t)((b ^ flip) | nan);
}

static inline uint64_t
key_u32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t
key_i32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v ^ 0x80000000u;
}

static inline uint64_t
key_f32(const char *p)
{
    uint32_t b;
    memcpy(&b, p, 4);
    uint32_t flip = (0u - (b >> 31)) | 0x80000000u;
    uint32_t nan = 0u - (uint32_t)((b & 0x7FFFFFFFu) > 0x7F800000u);
    return (b ^ flip) | nan;
}

static inline uint64_t
key_u64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t
key_i64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v ^ 0x8000000000000000u;
}

static inline uint64_t
key_f64(const char *p)
{
    uint64_t b;
    memcpy(&b, p, 8);
    uint64_t flip = (0u - (b >> 63)) | 0x8000000000000000u;
    uint64_t nan = 0u - (uint64_t)((b & 0x7FFFFFFFFFFFFFFFu) > 0x7FF0000000000000u);
    return (b ^ flip) | nan;
}

/* ---- key -> value ---------------------------------------------------------- */

static void
store_bool(char *d, uint64_t k)
{
    unsigned char v = (unsigned char)(k != 0);
    memcpy(d, &v, 1);
}

static void
store_u8(char *d, uint64_t k)
{
    uint8_t v = (uint8_t)k;
    memcpy(d, &v, 1);
}

static void
store_i8(char *d, uint64_t k)
{
    uint8_t v = (uint8_t)(k ^ 0x80u);
    memcpy(d, &v, 1);
}

static void
store_u16(char *d, uint64_t k)
{
    uint16_t v = (uint16_t)k;
    memcpy(d, &v, 2);
}

static void
store_i16(char *d, uint64_t k)
{
    uint16_t v = (uint16_t)(k ^ 0x8000u);
    memcpy(d, &v, 2);
}

static void
store_f16(char *d, uint64_t k)
{
    uint16_t k16 = (uint16_t)k;
    uint16_t v = (k16 & 0x8000u) ? (uint16_t)(k16 ^ 0x8000u) : (uint16_t)~k16;
    memcpy(d, &v, 2);
}

static void
store_u32(char *d, uint64_t k)
{
    uint32_t v = (uint32_t)k;
    memcpy(d, &v, 4);
}

static void
store_i32(char *d, uint64_t k)
{
    uint32_t v = (uint32_t)k ^ 0x80000000u;
    memcpy(d, &v, 4);
}

static void
store_f32(char *d, uint64_t k)
{
    uint32_t k32 = (uint32_t)k;
    uint32_t v = (k32 & 0x80000000u) ? (k32 ^ 0x80000000u) : ~k32;
    memcpy(d, &v, 4);
}

static void
store_u64(char *d, uint64_t k)
{
    memcpy(d, &k, 8);
}

static void
store_i64(char *d, uint64_t k)
{
    uint64_t v = k ^ 0x8000000000000000u;
    memcpy(d, &v, 8);
}

static void
store_f64(char *d, uint64_t k)
{
    uint64_t v = (k & 0x8000000000000000u) ? (k ^ 0x8000000000000000u) : ~k;
    memcpy(d, &v, 8);
}

/* The top 16 bits of a value as stored (all of an 8- or 16-bit one). */
static inline uint32_t
mm_rawtop_8(const char *p)
{
    uint8_t v;
    memcpy(&v, p, 1);
    return v;
}

static inline uint32_t
mm_rawtop_16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

static inline uint32_t
mm_rawtop_32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v >> 16;
}

static inline uint32_t
mm_rawtop_64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return (uint32_t)(v >> 48);
}

/* The first-digit bin of the 32- and 64-bit NaNs that share their top 16 bits with an
 * infinity: these top bits (exponent all ones, mantissa's top bits all ones) only ever
 * belong to NaNs, in float32 and float64 alike. */
#define MM_NANBIN 0x7FFFu

/* ---- loops over one strided run ---------------------------------------------- */

/* hist0: counts the first digit (the top 16 bits, or all 8 bits of an 8-bit key).
 * Keys of 8 bits spread over four sub-histograms of 256 bins, 32- and 64-bit keys over
 * two of 65536, so that runs of equal top digits do not serialise on one counter. */
#define MM_KERNELS(T, W, KEY, SPECIAL)                                                              \
    /* hist_bin: the first-digit histogram bin of a 32- or 64-bit value: its stored top    \
     * 16 bits, except that a NaN whose top bits are those of an infinity goes to the      \
     * bin MM_NANBIN, which holds NaNs only (SPECIAL: the exponent's bits there). */       \
    static inline uint32_t hist_bin_##T(const char *p)                                     \
    {                                                                                      \
        uint32_t r = mm_rawtop_##W(p);                                                     \
        if ((SPECIAL) != 0 && (r & (SPECIAL)) == (SPECIAL) &&                              \
            KEY(p) == ((W) == 64 ? UINT64_MAX : (((uint64_t)1 << ((W) & 63)) - 1)))        \
            r = MM_NANBIN;                                                                 \
        return r;                                                                          \
    }                                                                                      \
    /* keytop: the key's top digit of the value whose stored top 16 bits are r and whose   \
     * other bits are all zero (low = 0) or zero but the lowest (low = 1) */               \
    static uint32_t keytop_##T(uint32_t r, unsigned low)                                   \
    {                                                                                      \
        unsigned char v[8] = {0};                                                          \
        if ((W) == 64) {                                                                   \
            uint64_t x = (uint64_t)r << 48 | low;                                          \
            memcpy(v, &x, 8);                                                              \
        }                                                                                  \
        else if ((W) == 32) {                                                              \
            uint32_t x = r << 16 | low;                                                    \
            memcpy(v, &x, 4);                                                              \
        }                                                                                  \
        else if ((W) == 16) {                                                              \
            uint16_t x = (uint16_t)r;                                                      \
            memcpy(v, &x, 2);                                                              \
        }                                                                                  \
        else                                                                               \
            v[0] = (unsigned char)r;                                                       \
        return (uint32_t)(KEY((const char *)v) >> ((W) > 16 ? (W) - 16 : 0));              \
    }                                                                                      \
    static void hist0_##T(const char *p, npy_intp cnt, npy_intp st, uint32_t *h)            \
    {                                                                                      \
        npy_intp i = 0;                                                                    \
        if ((W) == 8) {                                                                    \
            for (; i + 4 <= cnt; i += 4, p += 4 * st) {                                    \
                h[KEY(p)]++;                                                               \
                h[256 + KEY(p + st)]++;                                                    \
                h[512 + KEY(p + 2 * st)]++;                                                \
                h[768 + KEY(p + 3 * st)]++;                                                \
            }                                                                              \
            for (; i < cnt; i++, p += st)                                                  \
                h[KEY(p)]++;                                                               \
        }                                                                                  \
        else if ((W) == 16) {                                                              \
            if (st == 2) { /* contiguous: four keys from one 8-byte load */                \
                for (; i + 4 <= cnt; i += 4, p += 8) {                                     \
                    uint64_t w8;                                                           \
                    memcpy(&w8, p, 8);                                                     \
                    h[KEY((const char *)&w8)]++;                                           \
                    h[KEY((const char *)&w8 + 2)]++;                                       \
                    h[KEY((const char *)&w8 + 4)]++;                                       \
                    h[KEY((const char *)&w8 + 6)]++;                                       \
                }                                                                          \
            }                                                                              \
            for (; i + 4 <= cnt; i += 4, p += 4 * st) {                                    \
                uint64_t k0 = KEY(p), k1 = KEY(p + st), k2 = KEY(p + 2 * st);              \
                uint64_t k3 = KEY(p + 3 * st);                                             \
                h[k0]++;                                                                   \
                h[k1]++;                                                                   \
                h[k2]++;                                                                   \
                h[k3]++;                                                                   \
            }                                                                              \
            for (; i < cnt; i++, p += st)                                                  \
                h[KEY(p)]++;                                                               \
        }                                                                                  \
        else { /* by the stored top bits (the key's top digit comes at the merge) */       \
            for (; i + 2 <= cnt; i += 2, p += 2 * st) {                                    \
                h[hist_bin_##T(p)]++;                                                      \
                h[65536 + hist_bin_##T(p + st)]++;                                         \
            }                                                                              \
            for (; i < cnt; i++, p += st)                                                  \
                h[hist_bin_##T(p)]++;                                                      \
        }                                                                                  \
    }                                                                                      \
    /* rawmap: the first-digit bitmap of the keys, turned into one over the top 16 bits        \
     * of the values as stored, so that the filter can test a value before making its          \
     * key.  A value's top bits decide its key's top digit except where the value may be       \
     * a NaN (every NaN has the largest key): both cases are marked there. */                  \
    static void rawmap_##T(const uint64_t *kb, uint64_t *rb)                               \
    {                                                                                      \
        const uint32_t nr = (W) < 16 ? (1u << ((W) & 15)) : 65536u;                             \
        memset(rb, 0, 65536 / 8);                                                          \
        for (uint32_t r = 0; r < nr; r++) {                                                \
            uint32_t a = keytop_##T(r, 0), b = keytop_##T(r, 1);                           \
            if (((kb[a >> 6] >> (a & 63)) | (kb[b >> 6] >> (b & 63))) & 1u)                \
                rb[r >> 6] |= (uint64_t)1 << (r & 63);                                     \
        }                                                                                  \
    }                                                                                      \
    /* hit: whether the value at p may belong to an active target.  Targets at level 1         \
     * only: one test of the stored top bits.  Deeper targets: each digit of the key. */       \
    static inline __attribute__((always_inline)) uint64_t hit_##T(                             \
        const char *p, const mm_filter *f, int deep)                                           \
    {                                                                                          \
        if (!deep) {                                                                           \
            uint32_t r = mm_rawtop_##W(p);                                                     \
            return (f->rawmap[r >> 6] >> (r & 63)) & 1u;                                       \
        }                                                                                      \
        else {                                                                                 \
            uint64_t k = KEY(p);                                                               \
            uint32_t d1 = (uint32_t)(k >> ((W) > 16 ? (W) - 16 : 0));                          \
            uint32_t d2 = (uint32_t)(k >> ((W) > 32 ? (W) - 32 : 0)) & 0xFFFFu;                \
            uint32_t d3 = (uint32_t)(k >> ((W) > 48 ? (W) - 48 : 0)) & 0xFFFFu;                \
            return ((f->bitmap[0][d1 >> 6] >> (d1 & 63)) | (f->bitmap[1][d2 >> 6] >> (d2 & 63)) |\
                    (f->bitmap[2][d3 >> 6] >> (d3 & 63))) & 1u;                                \
        }                                                                                      \
    }                                                                                          \
    /* filter: the values that may belong to an active target go to mm_filter_hit.  Few        \
     * expected hits: one well-predicted branch per value.  Many: blocks of 64 values          \
     * set one bit each, then only the hits are visited (no misprediction per hit). */         \
    static inline __attribute__((always_inline)) void filter_run_##T(                          \
        const char *p, npy_intp cnt, npy_intp st, mm_filter *f, int tid, int deep)             \
    {                                                                                          \
        uint64_t *stage = f->stage + (size_t)tid * (size_t)f->tstride * MM_STAGE;              \
        int *staged = f->staged + (size_t)tid * (size_t)f->tstride;                            \
        if (f->sparse) {                                                                       \
            for (npy_intp i = 0; i < cnt; i++, p += st)                                        \
                if (hit_##T(p, f, deep))                                                       \
                    mm_filter_hit(f, tid, stage, staged, KEY(p));                              \
            return;                                                                            \
        }                                                                                      \
        for (npy_intp i0 = 0; i0 < cnt; i0 += 64, p += 64 * st) {                              \
            int nb = cnt - i0 < 64 ? (int)(cnt - i0) : 64, j = 0;                              \
            uint64_t m0 = 0, m1 = 0, m2 = 0, m3 = 0, mask;                                     \
            const char *q = p;                                                                 \
            /* value j is bit j; four masks, so that no chain of shifts and ors runs           \
             * through all 64 values (that chain alone took 2 cycles a value) */               \
            for (; j + 4 <= nb; j += 4, q += 4 * st) {                                         \
                m0 |= hit_##T(q, f, deep) << j;                                                \
                m1 |= hit_##T(q + st, f, deep) << (j + 1);                                     \
                m2 |= hit_##T(q + 2 * st, f, deep) << (j + 2);                                 \
                m3 |= hit_##T(q + 3 * st, f, deep) << (j + 3);                                 \
            }                                                                                  \
            for (; j < nb; j++, q += st)                                                       \
                m0 |= hit_##T(q, f, deep) << j;                                                \
            mask = m0 | m1 | m2 | m3;                                                          \
            while (mask != 0) {                                                                \
                int k = __builtin_ctzll(mask);                                                 \
                mask &= mask - 1;                                                              \
                mm_filter_hit(f, tid, stage, staged, KEY(p + k * st));                         \
            }                                                                                  \
        }                                                                                      \
    }                                                                                          \
    static void filter_##T(const char *p, npy_intp cnt, npy_intp st, mm_filter *f, int tid)    \
    {                                                                                          \
        if (f->deep)                                                                           \
            filter_run_##T(p, cnt, st, f, tid, 1);                                             \
        else                                                                                   \
            filter_run_##T(p, cnt, st, f, tid, 0);                                             \
    }                                                                                          \
    static void load_##T(const char *p, npy_intp cnt, npy_intp st, uint64_t *out)           \
    {                                                                                      \
        for (npy_intp i = 0; i < cnt; i++, p += st)                                        \
            out[i] = KEY(p);                                                               \
    }                                                                                      \
    static npy_intp nans_##T(const char *p, npy_intp cnt, npy_intp st)                     \
    {                                                                                      \
        const uint64_t all = (W) == 64 ? UINT64_MAX : (((uint64_t)1 << ((W) & 63)) - 1);    \
        npy_intp c = 0;                                                                    \
        for (npy_intp i = 0; i < cnt; i++, p += st)                                        \
            c += KEY(p) == all;                                                            \
        return c;                                                                          \
    }

#endif
