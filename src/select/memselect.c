/* In-memory selection on keys: introselect for a few ranks among a few keys, and a
 * digit-narrowing multi-select for buckets of many keys. */
#include "select.h"

#include <stdlib.h>
#include <string.h>

#define MM_SMALL_SELECT 4096 /* buckets this small: introselect */

static int
cmp_key(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Reorders a[lo:hi] so that a[k] holds the key of rank k, smaller keys before it and
 * larger after (introselect: median of three, falls back to a sort if unlucky). */
static void
nth_key(uint64_t *a, npy_intp lo, npy_intp hi, npy_intp k)
{
    int depth = 0;
    while (hi - lo > 16) {
        npy_intp mid = lo + (hi - lo) / 2, i = lo, j = hi - 1;
        uint64_t x = a[lo], y = a[mid], z = a[hi - 1], pv;
        if (++depth > 96) {
            qsort(a + lo, (size_t)(hi - lo), sizeof(uint64_t), cmp_key);
            goto done;
        }
        pv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        while (i <= j) {
            while (a[i] < pv)
                i++;
            while (a[j] > pv)
                j--;
            if (i <= j) {
                uint64_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (k <= j)
            hi = j + 1;
        else if (k >= i)
            lo = i;
        else
            goto done;
    }
    for (npy_intp i = lo + 1; i < hi; i++) {
        uint64_t v = a[i];
        npy_intp j = i;
        for (; j > lo && a[j - 1] > v; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
done:;
}

/* Recurses only on the ranks left of the middle one (fewer than half), so the depth is
 * at most log2(r1 - r0). */
/* NOLINTBEGIN(misc-no-recursion): the depth is bounded, as said above */
void
mm_multiselect(uint64_t *a, npy_intp lo, npy_intp hi, const npy_int64 *rk, npy_intp off,
               npy_intp r0, npy_intp r1, uint64_t *outk)
{
    while (r0 < r1) {
        npy_intp mid = r0 + (r1 - r0) / 2, k = (npy_intp)rk[mid] - off;
        npy_intp a0 = mid, a1 = mid + 1;
        nth_key(a, lo, hi, k);
        while (a0 > r0 && rk[a0 - 1] == rk[mid])
            a0--;
        while (a1 < r1 && rk[a1] == rk[mid])
            a1++;
        for (npy_intp i = a0; i < a1; i++)
            outk[i] = a[k];
        mm_multiselect(a, lo, k, rk, off, r0, a0, outk);
        lo = k + 1;
        r0 = a1;
    }
}
/* NOLINTEND(misc-no-recursion) */

/* One run of ranks that fall into the same digit of a bucket. */
typedef struct {
    uint32_t digit;
    npy_intp count;   /* keys with this digit */
    npy_intp base;    /* keys below them in the lane */
    npy_intp rank_lo; /* the ranks rk[rank_lo:rank_hi] */
    npy_intp rank_hi;
} mm_group;

/* The keys of the ng groups' digits (of key - base, at bits sh of nb bins) moved to
 * the front of a, group after group, in one pass over the n keys (then a pass over
 * those alone): hist, the digits' counts, becomes the digits' groups.  0, or -1 on no
 * memory. */
static int
gather_groups(uint64_t *a, npy_intp n, uint64_t base, int sh, uint32_t nb, uint32_t *hist,
              const mm_group *grp, npy_intp ng)
{
    npy_intp at = 0, m = 0, *pos = malloc((size_t)(ng + 1) * sizeof(npy_intp)); /* not 0 */
    uint64_t *tmp = NULL;
    int rc = -1;
    for (npy_intp j = 0; j < ng; j++)
        m += grp[j].count;
    tmp = malloc((size_t)(m + 1) * sizeof(uint64_t));
    if (pos == NULL || tmp == NULL)
        goto done;
    memset(hist, 0, nb * sizeof(uint32_t));
    for (npy_intp j = 0; j < ng; j++) {
        hist[grp[j].digit] = (uint32_t)j + 1;
        pos[j] = j == 0 ? 0 : pos[j - 1] + grp[j - 1].count;
    }
    for (npy_intp i = 0; i < n; i++) { /* the groups' keys to the front, in any order */
        uint64_t k = a[i];
        if (hist[((k - base) >> sh) & (nb - 1)] != 0) {
            a[i] = a[at];
            a[at++] = k;
        }
    }
    for (npy_intp i = 0; i < m; i++) /* then in their groups' order */
        tmp[pos[hist[((a[i] - base) >> sh) & (nb - 1)] - 1]++] = a[i];
    memcpy(a, tmp, (size_t)m * sizeof(uint64_t));
    rc = 0;
done:
    free(pos);
    free(tmp);
    return rc;
}

/* Large buckets are narrowed in memory by the next digit, up to 16 bits with about 16
 * keys a bin (a histogram, then the keys of the wanted digits moved to the front),
 * which costs a few sequential passes where introselect would take many branchy ones.
 * The recursion consumes at least 8 of the 64 key bits a level: at most 8 levels. */
/* NOLINTBEGIN(misc-no-recursion) */
int
mm_bucket_select(uint64_t *a, npy_intp n, uint64_t base, int bits, const npy_int64 *rk,
                 npy_intp off, npy_intp r0, npy_intp r1, uint64_t *outk)
{
    int w = bits < 16 ? bits : 16, sh, rc = -1;
    uint32_t nb, b = 0;
    uint32_t *hist = NULL;
    mm_group *grp = NULL;
    npy_intp ng = 0, cum = off, start = 0;

    if (n <= MM_SMALL_SELECT || bits <= 0) { /* bits 0: the keys are all one key */
        mm_multiselect(a, 0, n, rk, off, r0, r1, outk);
        rc = 0;
        goto done;
    }
    while (w > 8 && ((npy_intp)1 << (w + 4)) > n) /* about 16 keys a bin: a small table */
        w--;
    sh = bits - w;
    nb = (uint32_t)1 << w;
    hist = calloc(nb, sizeof(uint32_t));
    grp = malloc((size_t)(r1 - r0) * sizeof(mm_group));
    if (hist == NULL || grp == NULL)
        goto done;
    for (npy_intp i = 0; i < n; i++)
        hist[((a[i] - base) >> sh) & (nb - 1)]++;
    for (npy_intp r = r0; r < r1;) {
        mm_group *g = &grp[ng++];
        while (b < nb && cum + (npy_intp)hist[b] <= rk[r])
            cum += (npy_intp)hist[b++];
        if (b == nb) /* the keys do not hold the ranks: let introselect say */
            goto done;
        g->digit = b;
        g->count = (npy_intp)hist[b];
        g->base = cum;
        g->rank_lo = r;
        while (r < r1 && rk[r] < cum + (npy_intp)hist[b])
            r++;
        g->rank_hi = r;
    }
    if (gather_groups(a, n, base, sh, nb, hist, grp, ng) < 0)
        goto done;
    free(hist);
    hist = NULL;
    for (npy_intp j = 0; j < ng; j++) { /* each group alone */
        mm_group *g = &grp[j];
        if (mm_bucket_select(a + start, g->count, base, sh, rk, g->base, g->rank_lo,
                             g->rank_hi, outk) < 0)
            mm_multiselect(a + start, 0, g->count, rk, g->base, g->rank_lo, g->rank_hi, outk);
        start += g->count;
    }
    rc = 0;
done:
    free(hist);
    free(grp);
    return rc;
}
/* NOLINTEND(misc-no-recursion) */
