/*
 * test_hist.c — the latency histogram: exact extremes, percentiles within
 * a bucket's width, merging.
 */
#include "helpers.h"
#include "pard/ipc.h"

static void assert_close(uint64_t got, uint64_t want)
{
    /* A bucket is at most 1/16 of its value wide. */
    uint64_t tol = want / 16 + 1;
    cr_assert(got + tol >= want && got <= want + tol, "got %llu, want %llu ± %llu",
              (unsigned long long)got, (unsigned long long)want, (unsigned long long)tol);
}

Test(hist, reports_exact_min_max_and_count, .timeout = 10)
{
    struct pard_hist h;
    pard_hist_init(&h);
    cr_assert_eq(pard_hist_percentile(&h, 50), 0, "empty histogram");
    pard_hist_record(&h, 7);
    pard_hist_record(&h, 123456789);
    pard_hist_record(&h, 500);
    cr_assert_eq(h.count, 3);
    cr_assert_eq(h.min, 7);
    cr_assert_eq(h.max, 123456789);
    cr_assert_eq(pard_hist_percentile(&h, 100), 123456789);
    cr_assert_eq(pard_hist_percentile(&h, 0), 7);
}

Test(hist, finds_percentiles_of_a_uniform_distribution, .timeout = 10)
{
    struct pard_hist h;
    pard_hist_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        pard_hist_record(&h, v);
    assert_close(pard_hist_percentile(&h, 50), 50000);
    assert_close(pard_hist_percentile(&h, 90), 90000);
    assert_close(pard_hist_percentile(&h, 99), 99000);
    assert_close(pard_hist_percentile(&h, 99.9), 99900);
    cr_assert_float_eq(pard_hist_mean(&h), 50000.5, 1e-6);
}

Test(hist, keeps_small_values_exact, .timeout = 10)
{
    struct pard_hist h;
    pard_hist_init(&h);
    for (int i = 0; i < 10; i++)
        pard_hist_record(&h, 3);
    pard_hist_record(&h, 9);
    cr_assert_eq(pard_hist_percentile(&h, 50), 3);
    cr_assert_eq(pard_hist_percentile(&h, 99), 9);
}

Test(hist, covers_every_value_with_contiguous_buckets, .timeout = 10)
{
    uint64_t prev_hi = 0;
    for (unsigned i = 1; i < PARD_HIST_BUCKETS; i++) {
        uint64_t lo, hi;
        pard_hist_bucket_bounds(i, &lo, &hi);
        cr_assert_eq(lo, prev_hi + 1, "bucket %u starts where %u ended", i, i - 1);
        cr_assert_geq(hi, lo);
        prev_hi = hi;
    }
    struct pard_hist h;
    pard_hist_init(&h);
    pard_hist_record(&h, UINT64_MAX); /* clamps into the last bucket */
    cr_assert_eq(h.buckets[PARD_HIST_BUCKETS - 1], 1);
}

Test(hist, merges_two_histograms, .timeout = 10)
{
    struct pard_hist a, b;
    pard_hist_init(&a);
    pard_hist_init(&b);
    for (uint64_t v = 1; v <= 1000; v++)
        pard_hist_record(&a, v);
    for (uint64_t v = 1001; v <= 2000; v++)
        pard_hist_record(&b, v);
    pard_hist_merge(&a, &b);
    cr_assert_eq(a.count, 2000);
    cr_assert_eq(a.min, 1);
    cr_assert_eq(a.max, 2000);
    assert_close(pard_hist_percentile(&a, 50), 1000);
}
