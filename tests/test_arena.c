/*
 * test_arena.c — arenas: allocation, wrap-around, reclaim, bounds-checked
 * reads, refusal of scribbled positions, and a two-process hand-off of
 * variable-size payloads through an SPSC ring with every byte checked.
 */
#include <errno.h>
#include <string.h>

#include "helpers.h"
#include "pard/ipc.h"

static void *arena_mem(uint64_t capacity)
{
    void *mem = test_shared_alloc(pard_arena_footprint(capacity));
    return mem;
}

Test(arena, allocates_aligned_spans_until_full, .timeout = 10)
{
    struct pard_arena a;
    void *mem = arena_mem(1024);
    cr_assert_eq(pard_arena_init(&a, mem, pard_arena_footprint(1024), 1024), 0);
    struct pard_span s;
    cr_assert_eq(pard_arena_alloc(&a, 100, &s), 0);
    cr_assert_eq(s.off, 0);
    cr_assert_eq(s.len, 100);
    cr_assert_eq(s.end, 104, "rounded up to 8");
    cr_assert_eq(pard_arena_alloc(&a, 900, &s), 0);
    cr_assert_eq(s.off, 104);
    cr_assert_eq(pard_arena_alloc(&a, 100, &s), 1, "no room is a value, not an error");
    cr_assert_eq(pard_arena_used(&a), 1008);
}

Test(arena, skips_to_the_start_rather_than_straddle_the_end, .timeout = 10)
{
    struct pard_arena a;
    void *mem = arena_mem(1024);
    cr_assert_eq(pard_arena_init(&a, mem, pard_arena_footprint(1024), 1024), 0);
    struct pard_span s1, s2, s3;
    cr_assert_eq(pard_arena_alloc(&a, 800, &s1), 0);
    cr_assert_eq(pard_arena_release(&a, s1.end), 0);
    cr_assert_eq(pard_arena_alloc(&a, 100, &s2), 0);
    cr_assert_eq(s2.off, 800);
    cr_assert_eq(pard_arena_alloc(&a, 200, &s3), 0);
    cr_assert_eq(s3.off, 0, "wrapped to the start");
    cr_assert_eq(s3.end, 1024 + 200);
    cr_assert_eq(pard_arena_release(&a, s3.end), 0, "frees the skipped bytes too");
    cr_assert_eq(pard_arena_used(&a), 0);
}

Test(arena, rejects_a_span_that_can_never_fit, .timeout = 10)
{
    struct pard_arena a;
    void *mem = arena_mem(1024);
    cr_assert_eq(pard_arena_init(&a, mem, pard_arena_footprint(1024), 1024), 0);
    struct pard_span s;
    cr_assert_eq(pard_arena_alloc(&a, 1025, &s), -PARD_ETOOBIG);
    cr_assert_eq(pard_arena_alloc(&a, UINT64_MAX, &s), -PARD_ETOOBIG);
    cr_assert_eq(pard_arena_alloc(&a, 0, &s), 0, "empty payloads are fine");
}

Test(arena, bounds_checks_every_read, .timeout = 10)
{
    struct pard_arena a;
    void *mem = arena_mem(1024);
    cr_assert_eq(pard_arena_init(&a, mem, pard_arena_footprint(1024), 1024), 0);
    cr_assert_not_null(pard_arena_read(&a, 0, 1024));
    cr_assert_not_null(pard_arena_read(&a, 1024, 0));
    cr_assert_null(pard_arena_read(&a, 1, 1024));
    cr_assert_null(pard_arena_read(&a, 1025, 0));
    cr_assert_null(pard_arena_read(&a, UINT64_MAX, 2), "no overflow in off + len");
    cr_assert_null(pard_arena_read(&a, 8, UINT64_MAX));
}

Test(arena, refuses_scribbled_positions, .timeout = 10)
{
    struct pard_arena a, view;
    size_t len = pard_arena_footprint(1024);
    void *mem = arena_mem(1024);
    cr_assert_eq(pard_arena_init(&a, mem, len, 1024), 0);
    struct pard_span s;
    cr_assert_eq(pard_arena_alloc(&a, 64, &s), 0);
    cr_assert_eq(pard_arena_release(&a, s.end + 8), -PARD_ECORRUPT, "past head");
    cr_assert_eq(pard_arena_release(&a, 12345678), -PARD_ECORRUPT);

    atomic_store(&a.hdr->head, 999999);
    cr_assert_eq(pard_arena_attach(&view, mem, len), -PARD_ECORRUPT);
    cr_assert_eq(pard_arena_alloc(&a, 8, &s), -PARD_ECORRUPT);
    atomic_store(&a.hdr->head, 64);
    cr_assert_eq(pard_arena_attach(&view, mem, len), 0);

    a.hdr->capacity = 1 << 30;
    cr_assert_eq(pard_arena_attach(&view, mem, len), -PARD_ESIZE, "capacity past the memory");
    a.hdr->capacity = 1024;
    a.hdr->magic = 0;
    cr_assert_eq(pard_arena_attach(&view, mem, len), -PARD_EBADMAGIC);
    cr_assert_eq(pard_arena_attach(&view, mem, 10), -PARD_ESIZE);
}

/* ---- two processes: payloads of varying size through ring + arena ---- */

#define HANDOFF_ITEMS 200000
#define HANDOFF_CAP   (64 * 1024)

struct desc {
    uint64_t seq;
    uint64_t off;
    uint64_t len;
    uint64_t end;
};

struct shared_setup {
    void *ring_mem;
    size_t ring_len;
    void *arena_mem;
    size_t arena_len;
};

static uint8_t pattern(uint64_t seq, uint64_t i)
{
    return (uint8_t)(seq * 31 + i * 7);
}

static int producer(void *arg, int unused)
{
    struct shared_setup *s = arg;
    struct pard_ring ring;
    struct pard_arena arena;
    if (pard_ring_attach(&ring, s->ring_mem, s->ring_len, PARD_RING_SPSC) != 0)
        return 10;
    if (pard_arena_attach(&arena, s->arena_mem, s->arena_len) != 0)
        return 11;
    for (uint64_t seq = 0; seq < HANDOFF_ITEMS; seq++) {
        uint64_t len = (seq * 2654435761u) % 3000;
        struct pard_span span;
        int rc;
        while ((rc = pard_arena_alloc(&arena, len, &span)) == 1)
            pard_cpu_relax();
        if (rc != 0)
            return 12;
        uint8_t *p = pard_arena_ptr(&arena, span.off);
        for (uint64_t i = 0; i < len; i++)
            p[i] = pattern(seq, i);
        struct desc d = {seq, span.off, span.len, span.end};
        if (pard_ring_push_wait(&ring, &d, 1, PARD_WAIT_ADAPTIVE, -1) != 1)
            return 13;
    }
    return 0;
}

Test(arena, hands_variable_payloads_between_processes_intact, .timeout = 120)
{
    struct shared_setup *s = test_shared_alloc(sizeof(*s));
    s->ring_len = pard_ring_footprint(PARD_RING_SPSC, 256, sizeof(struct desc));
    s->ring_mem = test_shared_alloc(s->ring_len);
    s->arena_len = pard_arena_footprint(HANDOFF_CAP);
    s->arena_mem = test_shared_alloc(s->arena_len);
    struct pard_ring ring;
    struct pard_arena arena;
    cr_assert_eq(pard_ring_init(&ring, s->ring_mem, s->ring_len, PARD_RING_SPSC, 256,
                                sizeof(struct desc)),
                 0);
    cr_assert_eq(pard_arena_init(&arena, s->arena_mem, s->arena_len, HANDOFF_CAP), 0);
    pid_t pid = test_fork(producer, s, 0);
    uint64_t bad = 0;
    for (uint64_t seq = 0; seq < HANDOFF_ITEMS; seq++) {
        struct desc d;
        int rc = pard_ring_pop_wait(&ring, &d, 1, PARD_WAIT_ADAPTIVE, pard_now_ns() + 10000000000);
        cr_assert_eq(rc, 1, "pop %llu: %d", (unsigned long long)seq, rc);
        cr_assert_eq(d.seq, seq);
        const uint8_t *p = pard_arena_read(&arena, d.off, d.len);
        cr_assert_not_null(p);
        for (uint64_t i = 0; i < d.len; i++)
            bad += p[i] != pattern(seq, i);
        cr_assert_eq(pard_arena_release(&arena, d.end), 0);
    }
    test_wait_ok(pid, "producer");
    cr_assert_eq(bad, 0, "%llu bytes differ", (unsigned long long)bad);
}
