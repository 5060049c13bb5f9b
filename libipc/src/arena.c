/*
 * arena.c — a circular byte buffer for variable-size payloads.
 *
 * Owns: allocation (one allocator advances `head`), reclamation (one
 * reclaimer advances `tail`) and bounds-checked reads. Positions are
 * free-running byte counts; the data offset of a position is pos % capacity.
 * An allocation never straddles the end: if it would, the allocator skips
 * to the start and the skipped bytes belong to that allocation's span, so
 * releasing up to span.end frees them too.
 *
 * Must not: trust `head` or `tail` as read from shared memory (a peer may
 * have scribbled them); every use is range-checked against the private,
 * validated capacity.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define ARENA_ALIGN 8

size_t pard_arena_footprint(uint64_t capacity)
{
    if (capacity == 0 || capacity % PARD_CACHELINE != 0 || capacity > PARD_REGION_MAX_SIZE)
        return 0;
    return sizeof(struct pard_arena_header) + capacity;
}

int pard_arena_init(struct pard_arena *a, void *mem, size_t len, uint64_t capacity)
{
    size_t need = pard_arena_footprint(capacity);
    if (need == 0)
        return -EINVAL;
    if (len < need)
        return -PARD_ESIZE;
    struct pard_arena_header *h = mem;
    memset(h, 0, sizeof(*h));
    h->magic = PARD_ARENA_MAGIC;
    h->capacity = capacity;
    a->hdr = h;
    a->data = (uint8_t *)mem + sizeof(*h);
    a->capacity = capacity;
    a->alloc_head = 0;
    a->alloc_off = 0;
    a->tail_seen = 0;
    return 0;
}

int pard_arena_attach(struct pard_arena *a, void *mem, size_t len)
{
    memset(a, 0, sizeof(*a));
    if (len < sizeof(struct pard_arena_header))
        return -PARD_ESIZE;
    struct pard_arena_header *h = mem;
    if (h->magic != PARD_ARENA_MAGIC)
        return -PARD_EBADMAGIC;
    uint64_t capacity = h->capacity;
    size_t need = pard_arena_footprint(capacity);
    if (need == 0 || need > len)
        return -PARD_ESIZE;
    /* A snapshot of both positions while others allocate and reclaim: tail
     * read before and after head, equal both times, held that value when
     * head was read, so the pair must be at most a capacity apart. A tail
     * that keeps moving leaves only "tail never passes head" to check. */
    uint64_t head = 0, tail = 0;
    for (int attempt = 0;; attempt++) {
        uint64_t t1 = atomic_load_explicit(&h->tail, memory_order_acquire);
        head = atomic_load_explicit(&h->head, memory_order_acquire);
        tail = atomic_load_explicit(&h->tail, memory_order_acquire);
        if (t1 == tail) {
            if (head - tail > capacity)
                return -PARD_ECORRUPT;
            break;
        }
        if (attempt == 63) {
            tail = t1;
            if ((int64_t)(head - tail) < 0)
                return -PARD_ECORRUPT;
            break;
        }
    }
    if (head % ARENA_ALIGN != 0)
        return -PARD_ECORRUPT;
    a->hdr = h;
    a->data = (uint8_t *)mem + sizeof(*h);
    a->capacity = capacity;
    a->alloc_head = head;
    a->alloc_off = head % capacity;
    a->tail_seen = tail;
    return 0;
}

int pard_arena_alloc(struct pard_arena *a, uint64_t len, struct pard_span *span)
{
    const uint64_t cap = a->capacity;
    if (len > cap) /* cap is a multiple of 64, so need <= cap when len is */
        return -PARD_ETOOBIG;
    const uint64_t need = PARD__ALIGN_UP(len, ARENA_ALIGN);
    /* Only we write head: relaxed, and it must be where we left it. */
    const uint64_t head = a->alloc_head;
    if (atomic_load_explicit(&a->hdr->head, memory_order_relaxed) != head)
        return -PARD_ECORRUPT;
    uint64_t off = a->alloc_off; /* head % cap, kept without a division */
    uint64_t start = head;
    if (need > cap - off) {
        start = head + (cap - off); /* skip the tail end of the buffer */
        off = 0;
    }
    const uint64_t end = start + need;
    if (end - a->tail_seen > cap) {
        /* Our last look at tail says no room: look again. Acquire: the
         * reclaimer's readers are done with the bytes before tail. */
        uint64_t tail = atomic_load_explicit(&a->hdr->tail, memory_order_acquire);
        if (head - tail > cap || tail - a->tail_seen > cap)
            return -PARD_ECORRUPT;
        a->tail_seen = tail;
        if (end - tail > cap)
            return 1; /* no room now */
    }
    /* The bytes themselves are published by whatever carries the span (a
     * ring push with release); head only bounds the reclaimer's check. */
    a->alloc_head = end;
    a->alloc_off = off + need == cap ? 0 : off + need;
    atomic_store_explicit(&a->hdr->head, end, memory_order_release);
    span->off = off;
    span->len = len;
    span->end = end;
    return 0;
}

int pard_arena_release(struct pard_arena *a, uint64_t end)
{
    uint64_t head = atomic_load_explicit(&a->hdr->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&a->hdr->tail, memory_order_relaxed);
    /* end must lie in [tail, head]: unsigned distances avoid wrap bugs. */
    if (head - tail > a->capacity || end - tail > head - tail)
        return -PARD_ECORRUPT;
    /* Release: our reads of the span happen before the allocator reuses it. */
    atomic_store_explicit(&a->hdr->tail, end, memory_order_release);
    return 0;
}

const void *pard_arena_read(const struct pard_arena *a, uint64_t off, uint64_t len)
{
    if (off > a->capacity || len > a->capacity - off)
        return NULL;
    return a->data + off;
}

void *pard_arena_ptr(const struct pard_arena *a, uint64_t off)
{
    if (off >= a->capacity)
        return NULL;
    return a->data + off;
}

uint64_t pard_arena_used(const struct pard_arena *a)
{
    uint64_t head = atomic_load_explicit(&a->hdr->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&a->hdr->tail, memory_order_acquire);
    uint64_t used = head - tail;
    return used > a->capacity ? a->capacity : used;
}
