/*
 * test_ring.c — the SPSC and MPMC rings: geometry, full/empty/burst
 * behaviour, wrap-around, refusal of scribbled shared memory, the blocking
 * helpers, and multi-process stress in which every item is checked (no
 * loss, no duplicate, per-producer order, payload intact).
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"
#include "pard/ipc.h"

static const uint32_t kinds[] = {PARD_RING_SPSC, PARD_RING_MPMC};
static const enum pard_wait_mode modes[] = {PARD_WAIT_ADAPTIVE, PARD_WAIT_SPIN, PARD_WAIT_BLOCK};

#define HDR_SIZE sizeof(struct pard_ring_header)
#define MS       1000000LL

/* ======================================================================
 * Helpers
 * ====================================================================== */

static const char *kind_name(uint32_t kind)
{
    return kind == PARD_RING_MPMC ? "mpmc" : "spsc";
}

/* A well-mixed 64-bit hash, so that a payload word depends on its tag. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x7fb5d329728ea185ULL;
    x ^= x >> 27;
    x *= 0x81dadef4bc2dd44dULL;
    x ^= x >> 33;
    return x;
}

/* An element: word 0 is the tag, every further word a hash of tag and index. */
static void elem_fill(void *e, size_t es, uint64_t tag)
{
    uint64_t w[PARD_RING_MAX_ELEM_SIZE / 8];
    w[0] = tag;
    for (size_t i = 1; i < es / 8; i++)
        w[i] = mix(tag + i);
    memcpy(e, w, es);
}

/* Returns whether the payload matches its tag; the tag goes in *tag. */
static bool elem_check(const void *e, size_t es, uint64_t *tag)
{
    uint64_t w[PARD_RING_MAX_ELEM_SIZE / 8];
    memcpy(w, e, es);
    *tag = w[0];
    for (size_t i = 1; i < es / 8; i++)
        if (w[i] != mix(w[0] + i))
            return false;
    return true;
}

/* Map and initialise a ring; its length goes in *len. */
static void *ring_new(struct pard_ring *ring, uint32_t kind, uint32_t cap, uint32_t es, size_t *len)
{
    size_t fp = pard_ring_footprint(kind, cap, es);
    cr_assert(fp > 0, "footprint of %s cap %u elem %u", kind_name(kind), cap, es);
    void *mem = test_shared_alloc(fp);
    cr_assert_eq(pard_ring_init(ring, mem, fp, kind, cap, es), 0);
    if (len)
        *len = fp;
    return mem;
}

static int push_burst(struct pard_ring *r, const void *src, unsigned n)
{
    return r->kind == PARD_RING_MPMC ? pard_ring_mpmc_push_burst(r, src, n)
                                     : pard_ring_spsc_push_burst(r, src, n);
}

static int pop_burst(struct pard_ring *r, void *dst, unsigned n)
{
    return r->kind == PARD_RING_MPMC ? pard_ring_mpmc_pop_burst(r, dst, n)
                                     : pard_ring_spsc_pop_burst(r, dst, n);
}

static int push_one(struct pard_ring *r, const void *elem)
{
    return r->kind == PARD_RING_MPMC ? pard_ring_mpmc_push(r, elem) : pard_ring_spsc_push(r, elem);
}

static int pop_one(struct pard_ring *r, void *elem)
{
    return r->kind == PARD_RING_MPMC ? pard_ring_mpmc_pop(r, elem) : pard_ring_spsc_pop(r, elem);
}

/* Push tags first .. first+n-1 one by one; all must fit. */
static void push_tags(struct pard_ring *r, uint64_t first, unsigned n)
{
    uint8_t e[PARD_RING_MAX_ELEM_SIZE];
    for (unsigned i = 0; i < n; i++) {
        elem_fill(e, r->elem_size, first + i);
        cr_assert_eq(push_one(r, e), 1, "%s: push of tag %llu", kind_name(r->kind),
                     (unsigned long long)(first + i));
    }
}

/* Pop n elements one by one and check they are tags first .. first+n-1. */
static void pop_tags(struct pard_ring *r, uint64_t first, unsigned n)
{
    uint8_t e[PARD_RING_MAX_ELEM_SIZE];
    for (unsigned i = 0; i < n; i++) {
        uint64_t tag;
        cr_assert_eq(pop_one(r, e), 1, "%s: pop %u of %u", kind_name(r->kind), i, n);
        cr_assert(elem_check(e, r->elem_size, &tag), "%s: torn element", kind_name(r->kind));
        cr_assert_eq(tag, first + i, "%s: got tag %llu, want %llu", kind_name(r->kind),
                     (unsigned long long)tag, (unsigned long long)(first + i));
    }
}

/* The sequence word of the MPMC slot that holds position pos. */
static _Atomic uint64_t *slot_seq(const struct pard_ring *r, uint64_t pos)
{
    return (_Atomic uint64_t *)(r->slots + (pos & r->mask) * r->stride);
}

/* ======================================================================
 * Geometry, init and attach
 * ====================================================================== */

Test(ring, footprint_rejects_bad_geometry, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        uint32_t kind = kinds[k];
        cr_expect_eq(pard_ring_footprint(kind, 0, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, 1, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, 3, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, 1000, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, PARD_RING_MAX_CAPACITY * 2, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, 0x80000000u, 16), 0);
        cr_expect_eq(pard_ring_footprint(kind, 64, 0), 0);
        cr_expect_eq(pard_ring_footprint(kind, 64, 4), 0);
        cr_expect_eq(pard_ring_footprint(kind, 64, 12), 0);
        cr_expect_eq(pard_ring_footprint(kind, 64, PARD_RING_MAX_ELEM_SIZE + 8), 0);
    }
    cr_expect_eq(pard_ring_footprint(0, 64, 16), 0);
    cr_expect_eq(pard_ring_footprint(3, 64, 16), 0);
}

Test(ring, footprint_covers_the_header_and_every_slot, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        uint32_t kind = kinds[k];
        const uint32_t caps[] = {2, 64, PARD_RING_MAX_CAPACITY};
        const uint32_t sizes[] = {8, 24, PARD_RING_MAX_ELEM_SIZE};
        for (size_t c = 0; c < 3; c++)
            for (size_t s = 0; s < 3; s++) {
                size_t fp = pard_ring_footprint(kind, caps[c], sizes[s]);
                cr_expect_geq(fp, HDR_SIZE + (size_t)caps[c] * sizes[s], "%s cap %u elem %u",
                              kind_name(kind), caps[c], sizes[s]);
            }
    }
}

Test(ring, init_rejects_bad_geometry_and_short_memory, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        uint32_t kind = kinds[k];
        size_t fp = pard_ring_footprint(kind, 16, 16);
        void *mem = test_shared_alloc(fp);
        struct pard_ring r;
        cr_expect_eq(pard_ring_init(&r, mem, fp, kind, 12, 16), -EINVAL);
        cr_expect_eq(pard_ring_init(&r, mem, fp, kind, 16, 20), -EINVAL);
        cr_expect_eq(pard_ring_init(&r, mem, fp, 7, 16, 16), -EINVAL);
        cr_expect_eq(pard_ring_init(&r, (uint8_t *)mem + 8, fp - 8, kind, 16, 16), -EINVAL,
                     "memory that is not 64-byte aligned");
        cr_expect_eq(pard_ring_init(&r, mem, fp - 1, kind, 16, 16), -PARD_ESIZE);
        cr_expect_eq(pard_ring_init(&r, mem, fp, kind, 16, 16), 0);
        munmap(mem, fp);
    }
}

Test(ring, attach_sees_what_init_laid_out, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        uint32_t kind = kinds[k];
        struct pard_ring prod, cons;
        size_t len;
        void *mem = ring_new(&prod, kind, 32, 40, &len);
        cr_assert_eq(pard_ring_attach(&cons, mem, len, kind), 0);
        cr_expect_eq(cons.hdr, prod.hdr);
        cr_expect_eq(cons.slots, prod.slots);
        cr_expect_eq(cons.capacity, 32);
        cr_expect_eq(cons.mask, 31);
        cr_expect_eq(cons.elem_size, 40);
        cr_expect_eq(cons.stride, prod.stride);
        cr_expect_geq(cons.stride, 40);
        cr_expect_eq(cons.kind, kind);
        cr_expect_eq(pard_ring_count(&cons), 0);
        /* One view pushes, the other pops. */
        push_tags(&prod, 100, 20);
        cr_expect_eq(pard_ring_count(&cons), 20);
        pop_tags(&cons, 100, 20);
        cr_expect_eq(pard_ring_count(&prod), 0);
        munmap(mem, len);
    }
}

Test(ring, attach_refuses_a_wrong_magic, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        r.hdr->magic = PARD_RING_MAGIC ^ 1;
        cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), -PARD_EBADMAGIC);
        memset(mem, 0, len); /* never initialised */
        cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), -PARD_EBADMAGIC);
        munmap(mem, len);
    }
}

Test(ring, attach_refuses_the_other_kind_or_an_unknown_kind, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 16, 16, &len);
    cr_expect_eq(pard_ring_attach(&r, mem, len, PARD_RING_SPSC), -PARD_ECORRUPT);
    cr_expect_eq(pard_ring_attach(&r, mem, len, PARD_RING_MPMC), 0);
    r.hdr->kind = 9;
    cr_expect_eq(pard_ring_attach(&r, mem, len, PARD_RING_MPMC), -PARD_ECORRUPT);
    munmap(mem, len);

    mem = ring_new(&r, PARD_RING_SPSC, 16, 16, &len);
    cr_expect_eq(pard_ring_attach(&r, mem, len, PARD_RING_MPMC), -PARD_ECORRUPT);
    cr_expect_eq(pard_ring_attach(&r, mem, len, PARD_RING_SPSC), 0);
    munmap(mem, len);
}

Test(ring, attach_refuses_an_impossible_capacity, .timeout = 10)
{
    const uint32_t bad[] = {0, 1, 3, 24, PARD_RING_MAX_CAPACITY * 2, 0xffffffffu};
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            r.hdr->capacity = bad[i];
            cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), -PARD_ECORRUPT, "%s capacity %u",
                         kind_name(kinds[k]), bad[i]);
        }
        /* A valid capacity larger than the memory is a size problem. */
        r.hdr->capacity = 1024;
        cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), -PARD_ESIZE);
        r.hdr->capacity = 16;
        cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), 0);
        munmap(mem, len);
    }
}

Test(ring, attach_refuses_an_impossible_elem_size, .timeout = 10)
{
    const uint32_t bad[] = {0, 4, 12, 33, PARD_RING_MAX_ELEM_SIZE + 8, 0xfffffff8u};
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            r.hdr->elem_size = bad[i];
            cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), -PARD_ECORRUPT,
                         "%s elem_size %u", kind_name(kinds[k]), bad[i]);
        }
        munmap(mem, len);
    }
}

Test(ring, attach_refuses_memory_shorter_than_the_ring, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        cr_expect_eq(pard_ring_attach(&r, mem, len - 1, kinds[k]), -PARD_ESIZE);
        cr_expect_eq(pard_ring_attach(&r, mem, HDR_SIZE, kinds[k]), -PARD_ESIZE);
        cr_expect_eq(pard_ring_attach(&r, mem, 16, kinds[k]), -PARD_ESIZE);
        cr_expect_eq(pard_ring_attach(&r, mem, 0, kinds[k]), -PARD_ESIZE);
        cr_expect_eq(pard_ring_attach(&r, mem, len, kinds[k]), 0);
        munmap(mem, len);
    }
}

Test(ring, attach_refuses_garbage_indices, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r, view;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        const uint64_t pairs[][2] = {
            /* head, tail */
            {5, 4},                      /* head past tail */
            {0, 17},                     /* more than a ring apart */
            {0xdeadbeefcafef00dULL, 3},  /* noise */
            {1000, 1000 + 16 + 1},       /* far along, one too many */
            {UINT64_MAX, UINT64_MAX - 1} /* head past tail at the top */
        };
        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
            atomic_store(&r.hdr->head, pairs[i][0]);
            atomic_store(&r.hdr->tail, pairs[i][1]);
            cr_expect_eq(pard_ring_attach(&view, mem, len, kinds[k]), -PARD_ECORRUPT,
                         "%s head %llu tail %llu", kind_name(kinds[k]),
                         (unsigned long long)pairs[i][0], (unsigned long long)pairs[i][1]);
        }
        /* A full ring far along is fine. */
        atomic_store(&r.hdr->head, 1000);
        atomic_store(&r.hdr->tail, 1016);
        cr_expect_eq(pard_ring_attach(&view, mem, len, kinds[k]), 0);
        munmap(mem, len);
    }
}

Test(ring, attach_keeps_the_validated_geometry_private, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 8, 16, &len);
        cr_assert_eq(pard_ring_attach(&r, mem, len, kinds[k]), 0);
        /* Scribble a wider geometry after attach: the view must not follow. */
        r.hdr->capacity = PARD_RING_MAX_CAPACITY;
        r.hdr->elem_size = PARD_RING_MAX_ELEM_SIZE;
        uint8_t many[16 * 16];
        for (int i = 0; i < 16; i++)
            elem_fill(many + i * 16, 16, (uint64_t)i);
        cr_expect_eq(push_burst(&r, many, 16), 8, "%s pushed past its validated capacity",
                     kind_name(kinds[k]));
        pop_tags(&r, 0, 8);
        munmap(mem, len);
    }
}

/* ======================================================================
 * Full, empty, bursts, wrap-around
 * ====================================================================== */

Test(ring, rejects_push_when_full, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 24, &len);
        push_tags(&r, 0, 16);
        uint8_t e[24];
        elem_fill(e, 24, 99);
        cr_expect_eq(push_one(&r, e), 0, "%s accepted a push when full", kind_name(kinds[k]));
        cr_expect_eq(push_burst(&r, e, 1), 0);
        cr_expect_eq(pard_ring_count(&r), 16);
        /* One pop makes room for exactly one. */
        pop_tags(&r, 0, 1);
        cr_expect_eq(push_one(&r, e), 1);
        cr_expect_eq(push_one(&r, e), 0);
        munmap(mem, len);
    }
}

Test(ring, returns_nothing_when_empty, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        uint8_t e[16 * 4];
        memset(e, 0xa5, sizeof(e));
        cr_expect_eq(pop_one(&r, e), 0);
        cr_expect_eq(pop_burst(&r, e, 4), 0);
        push_tags(&r, 7, 1);
        pop_tags(&r, 7, 1);
        cr_expect_eq(pop_one(&r, e), 0, "%s popped from an empty ring", kind_name(kinds[k]));
        cr_expect_eq(pard_ring_count(&r), 0);
        munmap(mem, len);
    }
}

Test(ring, burst_push_moves_only_what_fits, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        uint8_t buf[40 * 16];
        for (int i = 0; i < 40; i++)
            elem_fill(buf + i * 16, 16, (uint64_t)i);
        cr_expect_eq(push_burst(&r, buf, 10), 10);
        cr_expect_eq(push_burst(&r, buf + 10 * 16, 30), 6, "%s: the first 6 of 30 fit",
                     kind_name(kinds[k]));
        cr_expect_eq(push_burst(&r, buf, 30), 0);
        cr_expect_eq(push_burst(&r, buf, 0), 0);
        pop_tags(&r, 0, 16);
        munmap(mem, len);
    }
}

Test(ring, burst_pop_moves_only_what_is_there, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        push_tags(&r, 50, 5);
        uint8_t buf[32 * 16];
        cr_expect_eq(pop_burst(&r, buf, 0), 0);
        cr_expect_eq(pop_burst(&r, buf, 32), 5, "%s: 5 of 32 are there", kind_name(kinds[k]));
        for (int i = 0; i < 5; i++) {
            uint64_t tag;
            cr_expect(elem_check(buf + i * 16, 16, &tag));
            cr_expect_eq(tag, 50 + (uint64_t)i);
        }
        cr_expect_eq(pop_burst(&r, buf, 32), 0);
        munmap(mem, len);
    }
}

Test(ring, wraps_around_many_times_in_order, .timeout = 20)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 8, 24, &len);
        uint8_t in[8 * 24], out[8 * 24];
        uint64_t pushed = 0, popped = 0;
        /* Burst sizes 1..8 that do not divide the capacity evenly, so every
         * offset of the split copy at the end of the slots is hit. Plain
         * checks in the loop: with --full-stats every passing cr_assert is
         * a message to the runner. */
        const char *kn = kind_name(kinds[k]);
        for (unsigned round = 0; round < 5000; round++) {
            unsigned n = 1 + (round * 5) % 8;
            uint64_t room = 8 - (pushed - popped);
            for (unsigned i = 0; i < n; i++)
                elem_fill(in + i * 24, 24, pushed + i);
            int got = push_burst(&r, in, n);
            if (got < 0 || (uint64_t)got != (n < room ? n : room))
                cr_assert_fail("%s round %u: pushed %d of %u with room for %llu", kn, round, got, n,
                               (unsigned long long)room);
            pushed += (uint64_t)got;
            unsigned m = 1 + (round * 3) % 8;
            got = pop_burst(&r, out, m);
            if (got < 0 || (uint64_t)got != (m < pushed - popped ? m : pushed - popped))
                cr_assert_fail("%s round %u: popped %d of %u with %llu there", kn, round, got, m,
                               (unsigned long long)(pushed - popped));
            for (int i = 0; i < got; i++) {
                uint64_t tag;
                if (!elem_check(out + i * 24, 24, &tag))
                    cr_assert_fail("%s: torn element at %llu", kn, (unsigned long long)popped);
                if (tag != popped)
                    cr_assert_fail("%s: got %llu, want %llu", kn, (unsigned long long)tag,
                                   (unsigned long long)popped);
                popped++;
            }
            if (pard_ring_count(&r) != (int64_t)(pushed - popped))
                cr_assert_fail("%s round %u: count %lld, want %llu", kn, round,
                               (long long)pard_ring_count(&r),
                               (unsigned long long)(pushed - popped));
        }
        cr_expect_gt(popped, 8 * 1000, "the test must wrap many times");
        munmap(mem, len);
    }
}

Test(ring, copies_the_largest_elements_intact, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 4, PARD_RING_MAX_ELEM_SIZE, &len);
        for (uint64_t round = 0; round < 10; round++) {
            push_tags(&r, round * 3, 3);
            pop_tags(&r, round * 3, 3);
        }
        munmap(mem, len);
    }
}

Test(ring, works_at_the_smallest_geometry, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 2, 8, &len);
        for (uint64_t round = 0; round < 20; round++) {
            push_tags(&r, round * 2, 2);
            uint8_t e[8] = {0};
            cr_expect_eq(push_one(&r, e), 0);
            pop_tags(&r, round * 2, 2);
            cr_expect_eq(pop_one(&r, e), 0);
        }
        munmap(mem, len);
    }
}

/* ======================================================================
 * Scribbled shared memory
 * ====================================================================== */

Test(ring, spsc_pop_refuses_a_scribbled_head_without_reading, .timeout = 10)
{
    /* The consumer keeps its head privately; a shared head that is not
     * where it left it was written by someone else. */
    const uint64_t heads[] = {1, 3, 17, 0xdeadbeefcafef00dULL};
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, PARD_RING_SPSC, 16, 16, &len);
        push_tags(&r, 0, 2);
        atomic_store(&r.hdr->head, heads[i]);
        uint8_t buf[4 * 16];
        memset(buf, 0xa5, sizeof(buf));
        cr_expect_eq(pard_ring_spsc_pop_burst(&r, buf, 4), -PARD_ECORRUPT, "head %llu",
                     (unsigned long long)heads[i]);
        cr_expect_eq(pard_ring_spsc_pop(&r, buf), -PARD_ECORRUPT);
        for (size_t b = 0; b < sizeof(buf); b++)
            cr_assert_eq(buf[b], 0xa5, "pop wrote to the buffer while refusing");
        munmap(mem, len);
    }
}

Test(ring, spsc_pop_follows_slot_sequences_not_the_shared_tail, .timeout = 10)
{
    /* A tail scribbled far ahead does not make the consumer read slots
     * nobody wrote: it takes the two elements that are there, then finds
     * the ring empty. */
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_SPSC, 16, 16, &len);
    push_tags(&r, 0, 2);
    atomic_store(&r.hdr->tail, 15);
    uint8_t buf[4 * 16];
    cr_expect_eq(pard_ring_spsc_pop_burst(&r, buf, 4), 2);
    for (unsigned i = 0; i < 2; i++) {
        uint64_t tag;
        cr_expect(elem_check(buf + i * 16, 16, &tag) && tag == i, "element %u", i);
    }
    cr_expect_eq(pard_ring_spsc_pop_burst(&r, buf, 4), 0);
    munmap(mem, len);
}

Test(ring, spsc_pop_refuses_an_impossible_slot_sequence, .timeout = 10)
{
    const uint64_t bad[] = {2, 5, 1 + 16 + 16, 0xdeadbeefcafef00dULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, PARD_RING_SPSC, 16, 16, &len);
        /* Slot 0 should say 1 (written) or 1 - 16 (not yet). */
        atomic_store((_Atomic uint64_t *)r.slots, bad[i]);
        uint8_t buf[16];
        memset(buf, 0xa5, sizeof(buf));
        cr_expect_eq(pard_ring_spsc_pop(&r, buf), -PARD_ECORRUPT, "seq %llu",
                     (unsigned long long)bad[i]);
        for (size_t b = 0; b < sizeof(buf); b++)
            cr_assert_eq(buf[b], 0xa5, "pop wrote to the buffer while refusing");
        munmap(mem, len);
    }
}

Test(ring, spsc_push_refuses_garbage_indices, .timeout = 10)
{
    /* The producer re-reads head only when its cached copy says "full", so
     * fill the ring first: the next push must look at the shared head. Its
     * own tail it keeps privately, and a shared one that moved is refused. */
    const uint64_t pairs[][2] = {
        /* head, tail */
        {0, 17},                     /* tail not where the producer left it */
        {17, 16},                    /* head past tail */
        {0xdeadbeefcafef00dULL, 16}, /* noise */
    };
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, PARD_RING_SPSC, 16, 16, &len);
        push_tags(&r, 0, 16);
        atomic_store(&r.hdr->head, pairs[i][0]);
        atomic_store(&r.hdr->tail, pairs[i][1]);
        uint8_t e[16];
        elem_fill(e, 16, 1);
        cr_expect_eq(pard_ring_spsc_push(&r, e), -PARD_ECORRUPT, "head %llu tail %llu",
                     (unsigned long long)pairs[i][0], (unsigned long long)pairs[i][1]);
        cr_expect_eq(atomic_load(&r.hdr->tail), pairs[i][1], "push moved a garbage tail");
        munmap(mem, len);
    }
}

Test(ring, mpmc_refuses_garbage_indices, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 16, 16, &len);
    push_tags(&r, 0, 3);
    uint8_t e[16];
    elem_fill(e, 16, 1);

    atomic_store(&r.hdr->head, 0xdeadbeefcafef00dULL);
    cr_expect_eq(pard_ring_mpmc_pop(&r, e), -PARD_ECORRUPT, "garbage head");
    atomic_store(&r.hdr->head, 0);

    atomic_store(&r.hdr->tail, 3 + 5 * 16 + 7);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), -PARD_ECORRUPT, "garbage tail");
    atomic_store(&r.hdr->tail, 2); /* behind the published elements */
    cr_expect_eq(pard_ring_mpmc_push(&r, e), -PARD_ECORRUPT, "tail behind a published slot");
    atomic_store(&r.hdr->tail, 3);

    pop_tags(&r, 0, 3);
    atomic_store(&r.hdr->head, 1); /* head moved back over consumed slots */
    cr_expect_eq(pard_ring_mpmc_pop(&r, e), -PARD_ECORRUPT, "head behind released slots");
    munmap(mem, len);
}

Test(ring, mpmc_refuses_an_impossible_slot_sequence, .timeout = 10)
{
    struct {
        const char *what;
        uint64_t pos;  /* position whose slot is scribbled */
        uint64_t seq;  /* the garbage */
        bool pop_side; /* scribbled slot is the next to pop (else next to push) */
    } cases[] = {
        {"not congruent to the slot", 0, 12345, true},
        {"a lap ahead of head", 0, 0 + 1 + 3 * 16, true},
        {"laps behind head", 0, (uint64_t) - (3 * 16), true},
        {"noise at the head slot", 0, 0xdeadbeefcafef00dULL, true},
        {"not congruent to the tail slot", 2, 77, false},
        {"a lap ahead of tail", 2, 2 + 5 * 16, false},
        {"published at tail that nobody claimed", 2, 3, false},
        {"laps behind tail", 2, 2 - 3 * 16, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, PARD_RING_MPMC, 16, 16, &len);
        push_tags(&r, 0, 2); /* positions 0 and 1 hold elements; tail is 2 */
        atomic_store(slot_seq(&r, cases[i].pos), cases[i].seq);
        uint8_t buf[4 * 16] = {0};
        int rc = cases[i].pop_side ? pard_ring_mpmc_pop_burst(&r, buf, 4)
                                   : pard_ring_mpmc_push_burst(&r, buf, 4);
        cr_expect_eq(rc, -PARD_ECORRUPT, "%s: got %d", cases[i].what, rc);
        munmap(mem, len);
    }
}

Test(ring, mpmc_pop_waits_for_a_producer_still_writing, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 16, 16, &len);
    /* A producer claims position 0 and stalls before publishing it. */
    atomic_store(&r.hdr->tail, 1);
    /* Another producer pushes position 1 and publishes it. */
    push_tags(&r, 101, 1);
    uint8_t buf[4 * 16];
    cr_expect_eq(pard_ring_mpmc_pop_burst(&r, buf, 4), 0,
                 "a claimed, unpublished slot is not corruption, and blocks what follows");
    cr_expect_eq(pard_ring_mpmc_pop(&r, buf), 0);
    cr_expect_eq(pard_ring_count(&r), 2);
    /* The stalled producer finishes: payload after the 8-byte sequence. */
    elem_fill(r.slots + 8, 16, 100);
    atomic_store(slot_seq(&r, 0), 1);
    cr_expect_eq(pard_ring_mpmc_pop_burst(&r, buf, 4), 2);
    uint64_t tag;
    cr_expect(elem_check(buf, 16, &tag) && tag == 100);
    cr_expect(elem_check(buf + 16, 16, &tag) && tag == 101);
    munmap(mem, len);
}

Test(ring, mpmc_push_waits_for_a_consumer_still_reading, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 4, 16, &len);
    push_tags(&r, 0, 4);
    /* A consumer claims position 0 and stalls before releasing the slot. */
    atomic_store(&r.hdr->head, 1);
    uint8_t e[16];
    elem_fill(e, 16, 4);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), 0, "full, not corrupt");
    /* Others drain positions 1..3; the slot of position 4 is still in use. */
    pop_tags(&r, 1, 3);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), 0,
                 "a claimed, unreleased slot is not corruption, and is not reused");
    /* The stalled consumer releases it. */
    atomic_store(slot_seq(&r, 0), 0 + 4);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), 1);
    pop_tags(&r, 4, 1);
    munmap(mem, len);
}

/* Two elements join when their tags follow one another. */
static bool tags_follow(const void *prev, const void *next, void *arg)
{
    (void)arg;
    uint64_t a, b;
    memcpy(&a, prev, 8);
    memcpy(&b, next, 8);
    return b == a + 1;
}

Test(ring, mpmc_pop_run_takes_the_joined_prefix_with_one_claim, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 16, 16, &len);
    uint8_t buf[8 * 16];
    cr_expect_eq(pard_ring_mpmc_pop_run(&r, buf, 8, tags_follow, NULL), 0, "empty");
    push_tags(&r, 0, 3);
    push_tags(&r, 5, 4);
    int n = pard_ring_mpmc_pop_run(&r, buf, 8, tags_follow, NULL);
    cr_assert_eq(n, 3, "0, 1, 2 follow one another; 5 does not follow 2 (got %d)", n);
    for (int i = 0; i < n; i++) {
        uint64_t tag;
        cr_assert(elem_check(buf + i * 16, 16, &tag) && tag == (uint64_t)i);
    }
    cr_assert_eq(pard_ring_mpmc_pop_run(&r, buf, 2, tags_follow, NULL), 2, "at most n");
    cr_assert_eq(pard_ring_count(&r), 2);
    pop_tags(&r, 7, 2);
    /* Scribbled head: refused like pop. */
    push_tags(&r, 9, 1);
    atomic_store(&r.hdr->head, 0xdeadbeefULL);
    cr_expect_eq(pard_ring_mpmc_pop_run(&r, buf, 8, tags_follow, NULL), -PARD_ECORRUPT);
    munmap(mem, len);
}

/* Consumers taking runs while a producer pushes: every element once, and
 * every run a run. */
struct run_consumer {
    pthread_t tid;
    struct pard_ring *ring;
    uint64_t items;
    _Atomic uint8_t *seen;
    _Atomic uint64_t *popped;
    uint64_t runs, longest;
    int failed; /* 1 torn, 2 twice, 3 not a run, 4 ring error */
};

static void *run_consumer_main(void *arg)
{
    struct run_consumer *c = arg;
    uint8_t buf[8 * 32];
    while (atomic_load(c->popped) < c->items) {
        int n = pard_ring_mpmc_pop_run(c->ring, buf, 8, tags_follow, NULL);
        if (n < 0) {
            c->failed = 4;
            break;
        }
        if (n == 0) {
            sched_yield();
            continue;
        }
        uint64_t first = 0;
        for (int i = 0; i < n; i++) {
            uint64_t tag;
            if (!elem_check(buf + i * 32, 32, &tag) || tag >= c->items) {
                c->failed = 1;
                return NULL;
            }
            if (i == 0)
                first = tag;
            else if (tag != first + (uint64_t)i) {
                c->failed = 3;
                return NULL;
            }
            if (atomic_fetch_add(&c->seen[tag], 1) != 0) {
                c->failed = 2;
                return NULL;
            }
        }
        c->runs++;
        if ((uint64_t)n > c->longest)
            c->longest = (uint64_t)n;
        atomic_fetch_add(c->popped, (uint64_t)n);
    }
    return NULL;
}

Test(ring, mpmc_pop_run_takes_every_element_once_from_a_live_producer, .timeout = 60)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 64, 32, &len);
    const uint64_t items = PARD_TEST_STRESS_ITEMS / 10;
    _Atomic uint8_t *seen = calloc(items, 1);
    _Atomic uint64_t popped = 0;
    cr_assert(seen);
    struct run_consumer cons[3];
    for (int i = 0; i < 3; i++) {
        cons[i] =
            (struct run_consumer){.ring = &r, .items = items, .seen = seen, .popped = &popped};
        cr_assert_eq(pthread_create(&cons[i].tid, NULL, run_consumer_main, &cons[i]), 0);
    }
    uint8_t e[32];
    for (uint64_t next = 0; next < items;) {
        elem_fill(e, 32, next);
        int rc = pard_ring_mpmc_push(&r, e);
        cr_assert_geq(rc, 0);
        if (rc == 1)
            next++;
        else
            sched_yield();
    }
    uint64_t runs = 0, longest = 0;
    for (int i = 0; i < 3; i++) {
        pthread_join(cons[i].tid, NULL);
        cr_assert_eq(cons[i].failed, 0,
                     "consumer %d: failure %d (1 torn, 2 twice, 3 not a run, "
                     "4 ring error)",
                     i, cons[i].failed);
        runs += cons[i].runs;
        longest = cons[i].longest > longest ? cons[i].longest : longest;
    }
    for (uint64_t i = 0; i < items; i++)
        cr_assert_eq(atomic_load(&seen[i]), 1, "element %llu popped %u times",
                     (unsigned long long)i, (unsigned)atomic_load(&seen[i]));
    cr_log_info("pop_run: %llu elements in %llu runs (longest %llu)", (unsigned long long)items,
                (unsigned long long)runs, (unsigned long long)longest);
    free((void *)seen);
    munmap(mem, len);
}

/* A ring of 4 after a lap whose position 0 a consumer claimed and died
 * holding (head moved past it, its slot still says "holds 0"), and whose
 * other positions were popped: the producer's next slot is stuck. */
static void stuck_behind_a_dead_claim(struct pard_ring *r)
{
    cr_assert_eq(r->capacity, 4);
    push_tags(r, 0, 4);
    cr_assert_eq(atomic_load(slot_seq(r, 0)), 1, "position 0 holds an element");
    uint64_t h = 0;
    cr_assert(atomic_compare_exchange_strong(&r->hdr->head, &h, 1));
    pop_tags(r, 1, 3);
}

Test(ring, mpmc_reclaim_takes_back_a_slot_whose_consumer_died, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 4, 32, &len);
    uint8_t e[32], lost[32];
    cr_expect_eq(pard_ring_mpmc_reclaim(&r, lost), 0, "first lap: nothing to take back");
    stuck_behind_a_dead_claim(&r);
    elem_fill(e, 32, 4);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), 0, "the dead consumer's slot blocks the producer");
    cr_expect_eq(pard_ring_count(&r), 0, "head passed it: the ring counts it as consumed");

    cr_assert_eq(pard_ring_mpmc_reclaim(&r, lost), 1);
    uint64_t tag;
    cr_expect(elem_check(lost, 32, &tag) && tag == 0, "the abandoned element comes back whole");
    cr_expect_eq(pard_ring_mpmc_reclaim(&r, lost), 0, "taken back once only");
    /* The producer goes on: the slot takes the next lap, then the rest. */
    push_tags(&r, 4, 4);
    cr_expect_eq(pard_ring_mpmc_push(&r, e), 0, "full again");
    cr_expect_eq(pard_ring_mpmc_reclaim(&r, lost), 0, "full with unclaimed elements: not stuck");
    pop_tags(&r, 4, 4);
    cr_expect_eq(pard_ring_count(&r), 0);
    munmap(mem, len);
}

Test(ring, mpmc_reclaim_leaves_a_slot_its_consumer_released_in_time, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 4, 16, &len);
    uint8_t lost[16];
    stuck_behind_a_dead_claim(&r);
    /* Only stalled: it releases before the producer decides. */
    atomic_store(slot_seq(&r, 0), 0 + 4);
    cr_expect_eq(pard_ring_mpmc_reclaim(&r, lost), 0);
    push_tags(&r, 4, 1);
    pop_tags(&r, 4, 1);
    munmap(mem, len);
}

Test(ring, mpmc_reclaim_refuses_impossible_indices, .timeout = 10)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 4, 16, &len);
    uint8_t lost[16];
    push_tags(&r, 0, 4);
    pop_tags(&r, 0, 4);
    /* Tail is 4; its slot says "holds position 0", and head is past tail:
     * garbage, not a claim. */
    atomic_store(slot_seq(&r, 4), 0 + 1);
    atomic_store(&r.hdr->head, 99);
    cr_expect_eq(pard_ring_mpmc_reclaim(&r, lost), -PARD_ECORRUPT);
    munmap(mem, len);
}

/*
 * Consumers that die holding a claim, and a producer that takes every stuck
 * slot back at once, even from consumers that are only between their claim
 * and their release: each element is still popped exactly once and whole.
 * One consumer thread abandons a claim now and then; the producer re-pushes
 * whatever it takes back.
 */
struct reclaim_run {
    struct pard_ring *ring;
    uint64_t items;
    _Atomic uint8_t *seen;
    _Atomic uint64_t popped;
    _Atomic uint64_t abandoned;
    _Atomic uint64_t reclaimed;
    _Atomic int failed; /* 1 torn, 2 duplicate, 3 ring error */
};

struct reclaim_consumer {
    pthread_t tid;
    struct reclaim_run *run;
    bool abandons;
};

static void *reclaim_consumer_main(void *arg)
{
    struct reclaim_consumer *c = arg;
    struct reclaim_run *run = c->run;
    struct pard_ring *r = run->ring;
    uint8_t e[32];
    uint64_t n = 0;
    bool want_abandon = false;
    while (atomic_load(&run->popped) < run->items && !atomic_load(&run->failed)) {
        /* About every 1000 turns, until a claim succeeds; only in the first
         * half: the producer must still lap every abandoned slot. */
        if (c->abandons && ++n % 997 == 0)
            want_abandon = true;
        if (want_abandon && atomic_load(&run->abandoned) < 50 &&
            atomic_load(&run->popped) < run->items / 2) {
            /* Claim the head position if it holds an element, never release. */
            uint64_t h = atomic_load(&r->hdr->head);
            if (atomic_load(slot_seq(r, h)) == h + 1 &&
                atomic_compare_exchange_strong(&r->hdr->head, &h, h + 1)) {
                atomic_fetch_add(&run->abandoned, 1);
                want_abandon = false;
            } else {
                sched_yield();
            }
            continue;
        }
        int got = pard_ring_mpmc_pop(r, e);
        if (got < 0) {
            atomic_store(&run->failed, 3);
            break;
        }
        if (got == 0) {
            sched_yield();
            continue;
        }
        uint64_t tag;
        if (!elem_check(e, 32, &tag) || tag >= run->items) {
            atomic_store(&run->failed, 1);
            break;
        }
        if (atomic_fetch_add(&run->seen[tag], 1) != 0) {
            atomic_store(&run->failed, 2);
            break;
        }
        atomic_fetch_add(&run->popped, 1);
    }
    return NULL;
}

Test(ring, mpmc_every_element_once_while_a_producer_reclaims_stuck_slots, .timeout = 60)
{
    struct pard_ring r;
    size_t len;
    void *mem = ring_new(&r, PARD_RING_MPMC, 16, 32, &len);
    struct reclaim_run run = {.ring = &r, .items = PARD_TEST_STRESS_ITEMS / 10};
    run.seen = calloc(run.items, 1);
    cr_assert(run.seen);
    struct reclaim_consumer cons[3];
    for (int i = 0; i < 3; i++) {
        cons[i] = (struct reclaim_consumer){.run = &run, .abandons = i == 0};
        cr_assert_eq(pthread_create(&cons[i].tid, NULL, reclaim_consumer_main, &cons[i]), 0);
    }
    /* Taken-back elements wait here to be pushed again (at most one per
     * abandoned or stolen claim, so a small stack is plenty). */
    uint8_t again[64][32];
    unsigned nagain = 0;
    uint64_t next = 0;
    uint8_t e[32];
    while ((next < run.items || nagain > 0) && !atomic_load(&run.failed)) {
        bool fresh = nagain == 0;
        if (fresh)
            elem_fill(e, 32, next);
        int rc = pard_ring_mpmc_push(&r, fresh ? e : again[nagain - 1]);
        cr_assert_geq(rc, 0, "push: %d", rc);
        if (rc == 1) {
            if (fresh)
                next++;
            else
                nagain--;
            continue;
        }
        cr_assert_lt(nagain, 64);
        rc = pard_ring_mpmc_reclaim(&r, again[nagain]);
        cr_assert_geq(rc, 0, "reclaim: %d", rc);
        if (rc == 1) {
            nagain++;
            atomic_fetch_add(&run.reclaimed, 1);
        } else {
            sched_yield();
        }
    }
    for (int i = 0; i < 3; i++)
        pthread_join(cons[i].tid, NULL);
    cr_assert_eq(atomic_load(&run.failed), 0, "consumer failure %d (1 torn, 2 twice, 3 error)",
                 atomic_load(&run.failed));
    cr_assert_eq(atomic_load(&run.popped), run.items);
    for (uint64_t i = 0; i < run.items; i++)
        cr_assert_eq(atomic_load(&run.seen[i]), 1, "element %llu popped %u times",
                     (unsigned long long)i, (unsigned)atomic_load(&run.seen[i]));
    /* Every abandoned claim had to be taken back for the producer to pass
     * it (more were taken from consumers only between claim and release). */
    cr_assert_geq(atomic_load(&run.reclaimed), atomic_load(&run.abandoned));
    cr_assert_gt(atomic_load(&run.abandoned), 0, "the test abandoned no claim");
    cr_log_info("reclaim: %llu elements, %llu claims abandoned, %llu slots taken back (the "
                "others from consumers only between claim and release, which dropped them)",
                (unsigned long long)run.items, (unsigned long long)atomic_load(&run.abandoned),
                (unsigned long long)atomic_load(&run.reclaimed));
    free(run.seen);
    munmap(mem, len);
}

Test(ring, count_refuses_garbage_indices, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 16, 16, &len);
        push_tags(&r, 0, 5);
        cr_expect_eq(pard_ring_count(&r), 5);
        atomic_store(&r.hdr->tail, 100);
        cr_expect_eq(pard_ring_count(&r), -PARD_ECORRUPT);
        atomic_store(&r.hdr->tail, 5);
        atomic_store(&r.hdr->head, 6);
        cr_expect_eq(pard_ring_count(&r), -PARD_ECORRUPT);
        munmap(mem, len);
    }
}

/* ======================================================================
 * Blocking helpers
 * ====================================================================== */

Test(ring, pop_wait_times_out_when_empty_and_push_wait_when_full, .timeout = 20)
{
    for (size_t k = 0; k < 2; k++)
        for (size_t m = 0; m < 3; m++) {
            struct pard_ring r;
            size_t len;
            void *mem = ring_new(&r, kinds[k], 4, 16, &len);
            uint8_t buf[4 * 16];
            cr_expect_eq(pard_ring_pop_wait(&r, buf, 4, modes[m], pard_now_ns() + 2 * MS),
                         -ETIMEDOUT, "%s %s pop", kind_name(kinds[k]),
                         pard_wait_mode_name(modes[m]));
            push_tags(&r, 0, 4);
            cr_expect_eq(pard_ring_push_wait(&r, buf, 4, modes[m], pard_now_ns() + 2 * MS),
                         -ETIMEDOUT, "%s %s push", kind_name(kinds[k]),
                         pard_wait_mode_name(modes[m]));
            cr_expect_eq(pard_ring_count(&r), 4);
            pop_tags(&r, 0, 4);
            munmap(mem, len);
        }
}

Test(ring, blocking_helpers_return_at_once_when_they_can_move, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 8, 16, &len);
        uint8_t buf[12 * 16];
        for (int i = 0; i < 12; i++)
            elem_fill(buf + i * 16, 16, (uint64_t)i);
        /* No deadline: a hang here is the failure. */
        cr_expect_eq(pard_ring_push_wait(&r, buf, 12, PARD_WAIT_BLOCK, -1), 8);
        cr_expect_eq(pard_ring_push_wait(&r, buf, 0, PARD_WAIT_BLOCK, -1), 0);
        cr_expect_eq(pard_ring_pop_wait(&r, buf, 3, PARD_WAIT_BLOCK, -1), 3);
        cr_expect_eq(pard_ring_pop_wait(&r, buf, 0, PARD_WAIT_BLOCK, -1), 0);
        cr_expect_eq(pard_ring_pop_wait(&r, buf, 12, PARD_WAIT_BLOCK, -1), 5);
        munmap(mem, len);
    }
}

Test(ring, blocking_helpers_report_corruption_instead_of_waiting, .timeout = 10)
{
    for (size_t k = 0; k < 2; k++) {
        struct pard_ring r;
        size_t len;
        void *mem = ring_new(&r, kinds[k], 8, 16, &len);
        /* Garbage on both sides: a head no consumer could have reached and a
         * tail far more than a ring ahead. */
        atomic_store(&r.hdr->head, 0xdeadbeefcafef00dULL);
        atomic_store(&r.hdr->tail, 1000);
        uint8_t buf[16];
        elem_fill(buf, 16, 0);
        cr_expect_eq(pard_ring_pop_wait(&r, buf, 1, PARD_WAIT_BLOCK, -1), -PARD_ECORRUPT, "%s",
                     kind_name(kinds[k]));
        cr_expect_eq(pard_ring_push_wait(&r, buf, 1, PARD_WAIT_BLOCK, -1), -PARD_ECORRUPT, "%s",
                     kind_name(kinds[k]));
        munmap(mem, len);
    }
}

struct waker {
    void *mem;
    size_t len;
    uint32_t kind;
};

/* Wait until the parent is asleep (registered on ev) unless it spins, so
 * that the wake-up path is what gets exercised. */
static void await_sleeper(struct pard_event *ev, int mode)
{
    if (mode == PARD_WAIT_SPIN) {
        usleep(20000);
        return;
    }
    while (atomic_load(&ev->waiters) == 0)
        usleep(200);
}

static int push_when_parent_sleeps(void *arg, int mode)
{
    struct waker *w = arg;
    struct pard_ring r;
    if (pard_ring_attach(&r, w->mem, w->len, w->kind) != 0)
        return 1;
    await_sleeper(&r.hdr->not_empty, mode);
    uint8_t e[16];
    elem_fill(e, 16, 42);
    return push_one(&r, e) == 1 ? 0 : 2;
}

static int pop_when_parent_sleeps(void *arg, int mode)
{
    struct waker *w = arg;
    struct pard_ring r;
    if (pard_ring_attach(&r, w->mem, w->len, w->kind) != 0)
        return 1;
    await_sleeper(&r.hdr->not_full, mode);
    uint8_t e[16];
    uint64_t tag;
    if (pop_one(&r, e) != 1)
        return 2;
    return elem_check(e, 16, &tag) && tag == 0 ? 0 : 3;
}

Test(ring, pop_wait_wakes_when_another_process_pushes, .timeout = 30)
{
    for (size_t k = 0; k < 2; k++)
        for (size_t m = 0; m < 3; m++) {
            struct pard_ring r;
            struct waker w = {.kind = kinds[k]};
            w.mem = ring_new(&r, kinds[k], 4, 16, &w.len);
            pid_t pid = test_fork(push_when_parent_sleeps, &w, (int)modes[m]);
            uint8_t e[4 * 16];
            uint64_t tag;
            /* No deadline: a lost wake-up hangs, and the timeout reports it. */
            cr_expect_eq(pard_ring_pop_wait(&r, e, 4, modes[m], -1), 1, "%s %s",
                         kind_name(kinds[k]), pard_wait_mode_name(modes[m]));
            cr_expect(elem_check(e, 16, &tag) && tag == 42);
            test_wait_ok(pid, "pusher");
            munmap(w.mem, w.len);
        }
}

Test(ring, push_wait_wakes_when_another_process_pops, .timeout = 30)
{
    for (size_t k = 0; k < 2; k++)
        for (size_t m = 0; m < 3; m++) {
            struct pard_ring r;
            struct waker w = {.kind = kinds[k]};
            w.mem = ring_new(&r, kinds[k], 4, 16, &w.len);
            push_tags(&r, 0, 4);
            pid_t pid = test_fork(pop_when_parent_sleeps, &w, (int)modes[m]);
            uint8_t e[16];
            elem_fill(e, 16, 4);
            cr_expect_eq(pard_ring_push_wait(&r, e, 1, modes[m], -1), 1, "%s %s",
                         kind_name(kinds[k]), pard_wait_mode_name(modes[m]));
            test_wait_ok(pid, "popper");
            /* The child was the consumer; a new one attaches where it left
             * off (an SPSC view keeps its consumer position privately). */
            struct pard_ring cons;
            cr_assert_eq(pard_ring_attach(&cons, w.mem, w.len, kinds[k]), 0);
            pop_tags(&cons, 1, 4);
            munmap(w.mem, w.len);
        }
}

/* ======================================================================
 * Stress: every item checked
 * ====================================================================== */

#define STRESS_MAX_PRODUCERS 8
#define STRESS_MAX_BURST     32
#define STRESS_WAIT_NS       (20 * MS) /* per wait; then re-check whether to stop */

/* Producer p's items are (p, seq) for seq in [0, count[p]); item ids
 * base[p] + seq index the receipt counters. */
#define TAG(p, seq)  (((uint64_t)(p) << 48) | (seq))
#define TAG_P(tag)   ((tag) >> 48)
#define TAG_SEQ(tag) ((tag) & (((uint64_t)1 << 48) - 1))

enum stress_failure {
    STRESS_OK = 0,
    STRESS_ATTACH = 10, /* could not attach the ring */
    STRESS_RING,        /* push/pop returned an error */
    STRESS_TORN,        /* payload does not match its tag */
    STRESS_UNKNOWN,     /* tag names no producer or an out-of-range seq */
    STRESS_REORDERED,   /* a producer's items seen out of order by a consumer */
    STRESS_DUPLICATE,   /* an item received twice */
    STRESS_PEER_FAILED, /* stopped because another worker failed */
};

struct stress_cfg {
    uint32_t kind;
    enum pard_wait_mode mode;
    int producers;
    int consumers;
    uint32_t capacity;
    uint32_t elem_size;
    uint64_t items;
};

/* Shared by the parent and every worker (one mapping). */
struct stress {
    _Atomic uint64_t consumed; /* items received by all consumers */
    uint8_t pad0_[PARD_CACHELINE - 8];
    _Atomic int producers_done; /* set by the parent once every producer exited */
    _Atomic int failed;         /* first failure code, so that peers stop */
    _Atomic uint64_t bad_tag;   /* the tag that failed, for the message */
    uint8_t pad1_[PARD_CACHELINE - 16];
    struct stress_cfg cfg;
    uint64_t base[STRESS_MAX_PRODUCERS];  /* first item id of each producer */
    uint64_t count[STRESS_MAX_PRODUCERS]; /* items of each producer */
    size_t ring_len;
    uint8_t *ring_mem;         /* in this mapping, 64-byte aligned */
    _Atomic uint8_t *received; /* per item id: how many times received */
};

/* The per-consumer state the checker keeps. */
struct checker {
    struct stress *s;
    uint64_t next_seq[STRESS_MAX_PRODUCERS]; /* lowest seq acceptable next, per producer */
};

static int stress_fail(struct stress *s, int code, uint64_t tag)
{
    int none = 0;
    if (atomic_compare_exchange_strong(&s->failed, &none, code))
        atomic_store(&s->bad_tag, tag);
    return code;
}

/* Check one received element: payload, identity, order, once-only. */
static int check_elem(struct checker *c, const void *e)
{
    struct stress *s = c->s;
    uint64_t tag;
    if (!elem_check(e, s->cfg.elem_size, &tag))
        return stress_fail(s, STRESS_TORN, tag);
    uint64_t p = TAG_P(tag), seq = TAG_SEQ(tag);
    if (p >= (uint64_t)s->cfg.producers || seq >= s->count[p])
        return stress_fail(s, STRESS_UNKNOWN, tag);
    /* Strictly increasing per producer, as this consumer sees them. */
    if (seq < c->next_seq[p])
        return stress_fail(s, STRESS_REORDERED, tag);
    c->next_seq[p] = seq + 1;
    if (atomic_fetch_add_explicit(&s->received[s->base[p] + seq], 1, memory_order_relaxed) != 0)
        return stress_fail(s, STRESS_DUPLICATE, tag);
    return STRESS_OK;
}

/* The parent's final check: every item received exactly once. Returns the
 * number of bad items; the first bad id goes in *first. */
static uint64_t check_all_received(struct stress *s, uint64_t *first)
{
    uint64_t bad = 0;
    for (uint64_t id = 0; id < s->cfg.items; id++)
        if (atomic_load_explicit(&s->received[id], memory_order_relaxed) != 1) {
            if (bad++ == 0)
                *first = id;
        }
    return bad;
}

static uint64_t xorshift(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static int stress_producer(void *arg, int p)
{
    struct stress *s = arg;
    const struct stress_cfg *cfg = &s->cfg;
    struct pard_ring ring;
    if (pard_ring_attach(&ring, s->ring_mem, s->ring_len, cfg->kind) != 0)
        return stress_fail(s, STRESS_ATTACH, 0);
    const size_t es = cfg->elem_size;
    uint8_t buf[STRESS_MAX_BURST * PARD_RING_MAX_ELEM_SIZE];
    uint64_t rng = 0x9e3779b97f4a7c15ULL * (uint64_t)(p + 1);
    for (uint64_t next = 0; next < s->count[p];) {
        unsigned burst = 1 + (unsigned)(xorshift(&rng) % STRESS_MAX_BURST);
        if (burst > s->count[p] - next)
            burst = (unsigned)(s->count[p] - next);
        for (unsigned i = 0; i < burst; i++)
            elem_fill(buf + i * es, es, TAG(p, next + i));
        for (unsigned done = 0; done < burst;) {
            int r = pard_ring_push_wait(&ring, buf + done * es, burst - done, cfg->mode,
                                        pard_now_ns() + STRESS_WAIT_NS);
            if (r == -ETIMEDOUT) {
                if (atomic_load(&s->failed))
                    return STRESS_PEER_FAILED;
                continue;
            }
            if (r <= 0)
                return stress_fail(s, STRESS_RING, (uint64_t)(int64_t)r);
            done += (unsigned)r;
        }
        next += burst;
    }
    return STRESS_OK;
}

static int stress_consumer(void *arg, int c)
{
    struct stress *s = arg;
    const struct stress_cfg *cfg = &s->cfg;
    struct pard_ring ring;
    if (pard_ring_attach(&ring, s->ring_mem, s->ring_len, cfg->kind) != 0)
        return stress_fail(s, STRESS_ATTACH, 0);
    const size_t es = cfg->elem_size;
    uint8_t buf[STRESS_MAX_BURST * PARD_RING_MAX_ELEM_SIZE];
    struct checker chk = {.s = s};
    uint64_t rng = 0xd1b54a32d192ed03ULL * (uint64_t)(c + 1);
    for (;;) {
        if (atomic_load(&s->consumed) >= cfg->items)
            return STRESS_OK;
        unsigned burst = 1 + (unsigned)(xorshift(&rng) % STRESS_MAX_BURST);
        int r = pard_ring_pop_wait(&ring, buf, burst, cfg->mode, pard_now_ns() + STRESS_WAIT_NS);
        if (r == -ETIMEDOUT) {
            if (atomic_load(&s->failed))
                return STRESS_PEER_FAILED;
            /* Every producer is gone and the ring is empty: nothing more
             * will come. The parent's count says whether anything was lost. */
            if (atomic_load(&s->producers_done) && pard_ring_count(&ring) == 0)
                return STRESS_OK;
            continue;
        }
        if (r <= 0)
            return stress_fail(s, STRESS_RING, (uint64_t)(int64_t)r);
        for (int i = 0; i < r; i++) {
            int rc = check_elem(&chk, buf + (size_t)i * es);
            if (rc != STRESS_OK)
                return rc;
        }
        atomic_fetch_add(&s->consumed, (uint64_t)r);
    }
}

/* Map the shared state, the ring and the receipt counters in one mapping. */
static struct stress *stress_new(const struct stress_cfg *cfg, size_t *map_len)
{
    size_t ring_len = pard_ring_footprint(cfg->kind, cfg->capacity, cfg->elem_size);
    cr_assert(ring_len > 0);
    size_t off_ring = (sizeof(struct stress) + 63) & ~(size_t)63;
    size_t off_recv = off_ring + ((ring_len + 63) & ~(size_t)63);
    *map_len = off_recv + cfg->items;
    struct stress *s = test_shared_alloc(*map_len); /* zeroed */
    s->cfg = *cfg;
    s->ring_len = ring_len;
    s->ring_mem = (uint8_t *)s + off_ring;
    s->received = (_Atomic uint8_t *)((uint8_t *)s + off_recv);
    cr_assert_leq(cfg->producers, STRESS_MAX_PRODUCERS);
    uint64_t base = 0;
    for (int p = 0; p < cfg->producers; p++) {
        s->base[p] = base;
        s->count[p] = cfg->items / (uint64_t)cfg->producers +
                      ((uint64_t)p < cfg->items % (uint64_t)cfg->producers ? 1 : 0);
        base += s->count[p];
    }
    cr_assert_eq(base, cfg->items);
    struct pard_ring ring;
    cr_assert_eq(
        pard_ring_init(&ring, s->ring_mem, ring_len, cfg->kind, cfg->capacity, cfg->elem_size), 0);
    return s;
}

static const char *stress_failure_name(int code)
{
    switch (code) {
    case STRESS_ATTACH:
        return "attach failed";
    case STRESS_RING:
        return "ring returned an error";
    case STRESS_TORN:
        return "torn payload";
    case STRESS_UNKNOWN:
        return "unknown item";
    case STRESS_REORDERED:
        return "producer order violated";
    case STRESS_DUPLICATE:
        return "item received twice";
    case STRESS_PEER_FAILED:
        return "stopped after a peer failed";
    default:
        return "?";
    }
}

/* After the workers: every item received exactly once, ring empty. */
static void stress_verify(struct stress *s, const char *label, int64_t t0)
{
    int failed = atomic_load(&s->failed);
    cr_assert_eq(failed, 0, "%s: %s (tag/rc %#llx)", label, stress_failure_name(failed),
                 (unsigned long long)atomic_load(&s->bad_tag));
    uint64_t first = 0, bad = check_all_received(s, &first);
    cr_assert_eq(bad, 0, "%s: %llu items not received exactly once (first: id %llu, %u times)",
                 label, (unsigned long long)bad, (unsigned long long)first,
                 bad ? (unsigned)atomic_load(&s->received[first]) : 0u);
    cr_assert_eq(atomic_load(&s->consumed), s->cfg.items);
    struct pard_ring ring;
    cr_assert_eq(pard_ring_attach(&ring, s->ring_mem, s->ring_len, s->cfg.kind), 0);
    cr_assert_eq(pard_ring_count(&ring), 0);
    double secs = (double)(pard_now_ns() - t0) / 1e9;
    cr_log_info("%s: %llu items in %.2f s (%.2f M items/s)", label,
                (unsigned long long)s->cfg.items, secs, (double)s->cfg.items / secs / 1e6);
}

/* Run the workers as processes: P producers and C consumers forked. The
 * parent reaps them in exit order, so that any failure stops the test at
 * once (the others die with it, by PDEATHSIG). */
static void stress_processes(const struct stress_cfg *cfg)
{
    char label[96];
    snprintf(label, sizeof(label), "%s %s %dp/%dc (processes)", kind_name(cfg->kind),
             pard_wait_mode_name(cfg->mode), cfg->producers, cfg->consumers);
    size_t map_len;
    struct stress *s = stress_new(cfg, &map_len);
    int64_t t0 = pard_now_ns();
    pid_t pids[2 * STRESS_MAX_PRODUCERS];
    int n = 0;
    for (int p = 0; p < cfg->producers; p++)
        pids[n++] = test_fork(stress_producer, s, p);
    for (int c = 0; c < cfg->consumers; c++)
        pids[n++] = test_fork(stress_consumer, s, c);
    int producers_left = cfg->producers;
    for (int reaped = 0; reaped < n; reaped++) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        cr_assert_gt(pid, 0, "waitpid");
        int who = 0;
        while (who < n && pids[who] != pid)
            who++;
        cr_assert_lt(who, n, "reaped an unknown child %d", (int)pid);
        bool producer = who < cfg->producers;
        cr_assert(WIFEXITED(status), "%s: %s %d died with signal %d", label,
                  producer ? "producer" : "consumer", who,
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        int code = WEXITSTATUS(status);
        cr_assert_eq(code, 0, "%s: %s %d: %s (tag/rc %#llx)", label,
                     producer ? "producer" : "consumer", who, stress_failure_name(code),
                     (unsigned long long)atomic_load(&s->bad_tag));
        if (producer && --producers_left == 0)
            atomic_store(&s->producers_done, 1);
    }
    stress_verify(s, label, t0);
    munmap(s, map_len);
}

struct stress_thread {
    pthread_t tid;
    int (*fn)(void *arg, int i);
    struct stress *s;
    int i;
    int rc;
};

static void *stress_thread_main(void *arg)
{
    struct stress_thread *t = arg;
    t->rc = t->fn(t->s, t->i);
    return NULL;
}

/* The same workers as threads of one process: what ThreadSanitizer can see
 * (it does not follow memory shared between processes). */
static void stress_threads(const struct stress_cfg *cfg)
{
    char label[96];
    snprintf(label, sizeof(label), "%s %s %dp/%dc (threads)", kind_name(cfg->kind),
             pard_wait_mode_name(cfg->mode), cfg->producers, cfg->consumers);
    size_t map_len;
    struct stress *s = stress_new(cfg, &map_len);
    int64_t t0 = pard_now_ns();
    struct stress_thread th[2 * STRESS_MAX_PRODUCERS];
    int n = 0;
    for (int p = 0; p < cfg->producers; p++)
        th[n++] = (struct stress_thread){.fn = stress_producer, .s = s, .i = p};
    for (int c = 0; c < cfg->consumers; c++)
        th[n++] = (struct stress_thread){.fn = stress_consumer, .s = s, .i = c};
    for (int i = 0; i < n; i++)
        cr_assert_eq(pthread_create(&th[i].tid, NULL, stress_thread_main, &th[i]), 0);
    for (int i = 0; i < cfg->producers; i++)
        pthread_join(th[i].tid, NULL);
    atomic_store(&s->producers_done, 1);
    for (int i = cfg->producers; i < n; i++)
        pthread_join(th[i].tid, NULL);
    for (int i = 0; i < n; i++)
        cr_assert_eq(th[i].rc, 0, "%s: %s %d: %s", label,
                     i < cfg->producers ? "producer" : "consumer", th[i].i,
                     stress_failure_name(th[i].rc));
    stress_verify(s, label, t0);
    munmap(s, map_len);
}

#define STRESS_ITEMS ((uint64_t)PARD_TEST_STRESS_ITEMS)

/*
 * Ring sizes. Every full/empty turn of a waiting mode that yields or sleeps
 * costs a scheduler round trip (tens of microseconds to wake an idle vCPU,
 * milliseconds when the machine is busy), so processes that wait get 256
 * slots: with bursts of up to 32 from up to 8 processes the ring still fills
 * and drains constantly, but a wake-up moves many items. Spinning peers get
 * 4096: when both land on one core each spins out its time slice, and a
 * slice switch moves at most one ring's worth. The thread runs use a tiny
 * ring, where producers and the previous lap's consumers meet on nearly
 * every slot, and where ThreadSanitizer can watch them.
 */
#define WAIT_CAPACITY 256
#define SPIN_CAPACITY 4096
#define TINY_CAPACITY 16

Test(ring_stress, checker_catches_loss_duplicates_reordering_and_torn_items, .timeout = 10)
{
    /* The stress tests are only as good as their checker: feed it each
     * kind of mistake and make sure it notices. */
    struct stress_cfg cfg = {.kind = PARD_RING_MPMC,
                             .producers = 2,
                             .consumers = 1,
                             .capacity = 8,
                             .elem_size = 16,
                             .items = 10};
    size_t map_len;
    struct stress *s = stress_new(&cfg, &map_len);
    uint8_t e[16];
    struct checker c = {.s = s};

    elem_fill(e, 16, TAG(0, 0));
    cr_expect_eq(check_elem(&c, e), STRESS_OK);
    elem_fill(e, 16, TAG(1, 0));
    cr_expect_eq(check_elem(&c, e), STRESS_OK);
    elem_fill(e, 16, TAG(0, 2));
    cr_expect_eq(check_elem(&c, e), STRESS_OK, "a gap is not a reorder (another consumer)");
    elem_fill(e, 16, TAG(0, 1));
    cr_expect_eq(check_elem(&c, e), STRESS_REORDERED);

    struct checker other = {.s = s};
    elem_fill(e, 16, TAG(1, 0));
    cr_expect_eq(check_elem(&other, e), STRESS_DUPLICATE);
    elem_fill(e, 16, TAG(2, 0));
    cr_expect_eq(check_elem(&other, e), STRESS_UNKNOWN, "no producer 2");
    elem_fill(e, 16, TAG(1, 5));
    cr_expect_eq(check_elem(&other, e), STRESS_UNKNOWN, "producer 1 has 5 items");
    elem_fill(e, 16, TAG(1, 3));
    e[12] ^= 1;
    cr_expect_eq(check_elem(&other, e), STRESS_TORN);

    uint64_t first = 99;
    /* Received once: ids 0 and 2; twice: id 5 (producer 1, seq 0); never:
     * the other 7. */
    cr_expect_eq(check_all_received(s, &first), 8);
    cr_expect_eq(first, 1, "item (0, 1) was refused, so it counts as lost");
    munmap(s, map_len);
}

Test(ring_stress, mpmc_4_producers_4_consumers_adaptive_deliver_every_item_once_in_order,
     .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_MPMC, PARD_WAIT_ADAPTIVE, 4, 4, WAIT_CAPACITY,
                                          16, STRESS_ITEMS});
}

Test(ring_stress, mpmc_4_producers_4_consumers_block_deliver_every_item_once_in_order,
     .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_MPMC, PARD_WAIT_BLOCK, 4, 4, WAIT_CAPACITY, 16,
                                          STRESS_ITEMS});
}

Test(ring_stress, mpmc_1_producer_1_consumer_spin_deliver_every_item_once_in_order, .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_MPMC, PARD_WAIT_SPIN, 1, 1, SPIN_CAPACITY, 16,
                                          STRESS_ITEMS});
}

Test(ring_stress, spsc_adaptive_delivers_every_item_once_in_order, .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_SPSC, PARD_WAIT_ADAPTIVE, 1, 1, WAIT_CAPACITY,
                                          24, STRESS_ITEMS});
}

Test(ring_stress, spsc_block_delivers_every_item_once_in_order, .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_SPSC, PARD_WAIT_BLOCK, 1, 1, WAIT_CAPACITY, 24,
                                          STRESS_ITEMS});
}

Test(ring_stress, spsc_spin_delivers_every_item_once_in_order, .timeout = 240)
{
    stress_processes(&(struct stress_cfg){PARD_RING_SPSC, PARD_WAIT_SPIN, 1, 1, SPIN_CAPACITY, 24,
                                          STRESS_ITEMS});
}

Test(ring_stress, mpmc_threads_4_producers_4_consumers_deliver_every_item_once_in_order,
     .timeout = 240)
{
    stress_threads(&(struct stress_cfg){PARD_RING_MPMC, PARD_WAIT_ADAPTIVE, 4, 4, TINY_CAPACITY, 16,
                                        STRESS_ITEMS / 10});
}

Test(ring_stress, spsc_threads_deliver_every_item_once_in_order, .timeout = 240)
{
    stress_threads(&(struct stress_cfg){PARD_RING_SPSC, PARD_WAIT_ADAPTIVE, 1, 1, TINY_CAPACITY, 24,
                                        STRESS_ITEMS / 10});
}
