/* Order-preserving keys of the supported dtypes, and back (the dtype table's parameters).
 *
 * Every supported dtype is mapped to an order-preserving unsigned key of W bits:
 * unsigned ints as they are, signed ints with the sign bit flipped, floats with
 * the sign bit flipped for positives and all bits flipped for negatives.  Every
 * NaN becomes the all-ones key, so NaNs sort after +inf, as in numpy's sort; the
 * all-ones key decodes to numpy's NaN (np.nan's bits: a positive quiet NaN).
 * Included by dtypes.c (with the per-dtype loops of kernel_template.h), by
 * hist512.h (float64's) and by winplan.c (the ends of the histogram buckets). */
#ifndef MM_SELECT_KEYS_H
#define MM_SELECT_KEYS_H

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

static inline void
store_bool(char *d, uint64_t k)
{
    unsigned char v = (unsigned char)(k != 0);
    memcpy(d, &v, 1);
}

static inline void
store_u8(char *d, uint64_t k)
{
    uint8_t v = (uint8_t)k;
    memcpy(d, &v, 1);
}

static inline void
store_i8(char *d, uint64_t k)
{
    uint8_t v = (uint8_t)(k ^ 0x80u);
    memcpy(d, &v, 1);
}

static inline void
store_u16(char *d, uint64_t k)
{
    uint16_t v = (uint16_t)k;
    memcpy(d, &v, 2);
}

static inline void
store_i16(char *d, uint64_t k)
{
    uint16_t v = (uint16_t)(k ^ 0x8000u);
    memcpy(d, &v, 2);
}

static inline void
store_f16(char *d, uint64_t k)
{
    uint16_t k16 = (uint16_t)k;
    uint16_t v = (k16 & 0x8000u) ? (uint16_t)(k16 ^ 0x8000u) : (uint16_t)~k16;
    if (k16 == 0xFFFFu)
        v = 0x7E00u; /* a NaN: np.nan's bits, not the all-ones key's 0x7FFF */
    memcpy(d, &v, 2);
}

static inline void
store_u32(char *d, uint64_t k)
{
    uint32_t v = (uint32_t)k;
    memcpy(d, &v, 4);
}

static inline void
store_i32(char *d, uint64_t k)
{
    uint32_t v = (uint32_t)k ^ 0x80000000u;
    memcpy(d, &v, 4);
}

static inline void
store_f32(char *d, uint64_t k)
{
    uint32_t k32 = (uint32_t)k;
    uint32_t v = (k32 & 0x80000000u) ? (k32 ^ 0x80000000u) : ~k32;
    if (k32 == 0xFFFFFFFFu)
        v = 0x7FC00000u; /* a NaN: np.nan's bits */
    memcpy(d, &v, 4);
}

static inline void
store_u64(char *d, uint64_t k)
{
    memcpy(d, &k, 8);
}

static inline void
store_i64(char *d, uint64_t k)
{
    uint64_t v = k ^ 0x8000000000000000u;
    memcpy(d, &v, 8);
}

static inline void
store_f64(char *d, uint64_t k)
{
    uint64_t v = (k & 0x8000000000000000u) ? (k ^ 0x8000000000000000u) : ~k;
    if (k == UINT64_MAX)
        v = 0x7FF8000000000000u; /* a NaN: np.nan's bits */
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

#endif
