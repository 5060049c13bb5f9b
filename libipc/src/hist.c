/*
 * hist.c — a log-linear latency histogram for parbench.
 *
 * Owns: recording values in O(1) and reading percentiles back. Values below
 * PARD_HIST_SUB fall in exact unit buckets; above, each power of two is cut
 * into PARD_HIST_SUB equal buckets, so a bucket is at most 1/16 of its value
 * wide. Count, min, max and sum are exact.
 */
#include <string.h>

#include "internal.h"

#define SUB_BITS 4 /* log2(PARD_HIST_SUB) */
_Static_assert((1 << SUB_BITS) == PARD_HIST_SUB, "SUB_BITS matches PARD_HIST_SUB");

static unsigned bucket_of(uint64_t v)
{
    if (v < PARD_HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v); /* >= SUB_BITS */
    unsigned shift = msb - SUB_BITS;
    unsigned idx =
        (msb - SUB_BITS + 1) * PARD_HIST_SUB + (unsigned)((v >> shift) & (PARD_HIST_SUB - 1));
    return idx < PARD_HIST_BUCKETS ? idx : PARD_HIST_BUCKETS - 1;
}

void pard_hist_bucket_bounds(unsigned i, uint64_t *lo, uint64_t *hi)
{
    if (i < PARD_HIST_SUB) {
        *lo = *hi = i;
        return;
    }
    unsigned group = i / PARD_HIST_SUB; /* >= 1 */
    unsigned sub = i % PARD_HIST_SUB;
    unsigned shift = group - 1;
    uint64_t base = (uint64_t)(PARD_HIST_SUB + sub) << shift;
    *lo = base;
    *hi = base + ((uint64_t)1 << shift) - 1;
}

void pard_hist_init(struct pard_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

void pard_hist_record(struct pard_hist *h, uint64_t v)
{
    h->buckets[bucket_of(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void pard_hist_merge(struct pard_hist *into, const struct pard_hist *from)
{
    for (unsigned i = 0; i < PARD_HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
    into->count += from->count;
    into->sum += from->sum;
    if (from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
}

uint64_t pard_hist_percentile(const struct pard_hist *h, double p)
{
    if (h->count == 0)
        return 0;
    if (p >= 100.0)
        return h->max;
    if (p <= 0.0)
        return h->min;
    /* The smallest value v such that at least p% of samples are <= v. */
    uint64_t rank = (uint64_t)((p / 100.0) * (double)h->count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < PARD_HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            pard_hist_bucket_bounds(i, &lo, &hi);
            /* Report the bucket's midpoint, clamped to the exact extremes. */
            uint64_t v = lo + (hi - lo) / 2;
            if (v > h->max)
                v = h->max;
            if (v < h->min)
                v = h->min;
            return v;
        }
    }
    return h->max;
}

double pard_hist_mean(const struct pard_hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
