/*
 * ring.c — the SPSC and MPMC descriptor rings.
 *
 * Owns: the layout of a ring in shared memory, its validation at attach
 * time, the lock-free push/pop paths (single and burst) and the blocking
 * helpers that layer pard_wait_until() over them. Must not: allocate, make
 * a system call on the fast path (pard_event_notify makes one only when a
 * peer sleeps), or follow anything read from shared memory unchecked.
 *
 * Layout
 * ------
 *   [struct pard_ring_header: 5 cache lines][slot 0][slot 1]...[slot cap-1]
 *
 *   Every slot is a 64-bit sequence, then the payload.
 *
 *   SPSC slot: stride = 8 + elem_size rounded up to 16, 32 or 64 bytes, or
 *   to a multiple of 64 above that, so that a slot never straddles a cache
 *   line it does not have to: a message of up to 56 bytes and its sequence
 *   move between cores as one line.
 *
 *   MPMC slot: stride = 8 + elem_size. Slots are packed, not padded to a
 *   cache line: a burst claims consecutive slots, so packing keeps it on
 *   few lines and the ring small; the price, false sharing between
 *   neighbouring single-element operations, is what bursts amortise.
 *
 * Positions are free-running 64-bit counters (they do not wrap in practice);
 * position p lives in slot p & mask. Every slot index is masked with the
 * private, validated mask, so a scribbled index can produce wrong elements
 * but never an access outside the slots.
 *
 * SPSC
 * ----
 * Slot i starts with seq = i + 1 - capacity: "holds the element of
 * position i - capacity, already consumed". The producer writes position p
 * by copying the payload into slot p & mask and then storing seq = p + 1
 * (release); the consumer, at position p, reads seq (acquire):
 *
 *   seq == p + 1             p's element is there: take it
 *   seq == p + 1 - capacity  not written yet this lap: empty
 *   anything else            -PARD_ECORRUPT, the payload is not read
 *
 * so the consumer polls the very line the message arrives in, and a message
 * of up to 56 bytes crosses between cores as one cache-line transfer (the
 * raw ping-pong's cost) instead of an index line and then a slot line.
 * A burst is published last slot first, so a consumer that sees its first
 * slot ready finds the whole burst ready: it probes the last position it
 * wants and, if that one is ready too, takes everything up to it (the
 * release/acquire pair on that sequence orders every payload before it).
 * Only the first slot's sequence is checked for corruption; a scribbled
 * sequence further on can end a burst early or, if it looks ready, yield
 * a wrong element, never an access outside the slots.
 *
 * Each side keeps its own index privately (prod_tail, cons_head in the
 * view) and stores it to the shared header (tail, head) after each burst:
 * the producer reads the shared head, with acquire, only when its last
 * copy (prod_head) says there is not enough room, and must find
 * 0 <= tail - head <= capacity. Nobody needs the shared tail on the fast
 * path; it is there for pard_ring_count and attach. A shared index that no
 * longer equals the private one it was stored from was scribbled over:
 * -PARD_ECORRUPT (one load of a line the side itself writes).
 *
 * MPMC (Vyukov's bounded queue, with bursts)
 * ------------------------------------------
 * Slot i starts with seq = i. For position p (in slot p & mask):
 *
 *   seq == p            free for p: a producer may claim p
 *   seq == p + 1        holds p's element: a consumer may claim p
 *   seq == p + capacity released: free for position p + capacity
 *
 * push: read tail t, count k slots t, t+1, ... that are free (seq == pos),
 * CAS tail t -> t+k, write the k payloads, then publish each with a release
 * store seq = pos + 1. pop: read head h, count k ready slots (seq == pos+1)
 * copying their payloads as it goes, CAS head h -> h+k (a successful CAS
 * means nobody else claimed those positions, so what was copied is what
 * was published; a failed one drops it), then release each slot with
 * seq = pos + capacity. A producer's elements occupy increasing positions and
 * a consumer claims increasing positions, so each consumer sees each
 * producer's elements in push order.
 *
 * Corruption rules (MPMC). Every value a slot ever holds is congruent to its
 * index or index + 1 modulo capacity, and the slot of position p always
 * holds at least p - capacity (position p - capacity was claimed by a
 * producer before tail could reach p). So, for the first slot examined:
 *
 *   push at t: d = seq - t
 *     d == 0                    free: claim it
 *     d == -cap, d == 1 - cap   full (the previous lap's producer has not
 *                               published, or its element has not been
 *                               released yet): 0 moved, not corruption
 *     d > 0                     another producer took t: re-read tail; if
 *                               tail is still t the value is impossible
 *     anything else             -PARD_ECORRUPT
 *   pop at h: d = seq - (h + 1), symmetric: 0 ready; -1 (nothing published
 *     at h yet, perhaps claimed by a producer still writing) and -cap (the
 *     previous lap's consumer has not released) are "empty"; d > 0 with head
 *     still h, or any other value, is -PARD_ECORRUPT.
 *
 * A consumer that dies between claiming a position (the CAS on head) and
 * releasing its slot leaves that slot at seq == p + 1 for good, and every
 * producer stops there a lap later. pard_ring_mpmc_reclaim lets a producer
 * that has decided the claimer is gone take the slot back: it copies the
 * abandoned element out and moves seq from p + 1 to p + capacity with a CAS.
 * Consumers release with a CAS from the same p + 1, so exactly one of the
 * two wins; a consumer that was only stalled and loses drops the element it
 * copied (it may be torn by the producer's next write) instead of returning
 * it. The element is then the reclaiming producer's to hand out again.
 *
 * A burst stops at the first slot that is not free/ready, so an in-progress
 * neighbour (claimed but not yet published or released) means "fewer moved",
 * never an error. When nothing moves, the indices are checked as well
 * (0 <= tail - head <= capacity in a consistent snapshot).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

/* A slot: the sequence, then elem_size payload bytes. */
struct slot {
    _Atomic uint64_t seq; /* see the protocol above */
    unsigned char data[]; /* elem_size bytes */
};
_Static_assert(offsetof(struct slot, data) == 8, "the payload follows an 8-byte sequence");
_Static_assert(sizeof(struct pard_ring_header) % PARD_CACHELINE == 0,
               "slots start on a cache line");
_Static_assert(offsetof(struct pard_ring_header, not_empty) == 3 * PARD_CACHELINE,
               "events follow the geometry line");
/* The largest footprint, header + 2^24 slots of at most 8 + 256 bytes rounded
 * up to 320, fits in 64 bits with room to spare; pard_ring_footprint still
 * checks it against SIZE_MAX. */
_Static_assert((uint64_t)PARD_RING_MAX_CAPACITY * 320 < ((uint64_t)1 << 40),
               "ring footprint arithmetic cannot overflow");

/* ======================================================================
 * Geometry
 * ====================================================================== */

static bool geometry_valid(uint32_t kind, uint32_t capacity, uint32_t elem_size)
{
    if (kind != PARD_RING_SPSC && kind != PARD_RING_MPMC)
        return false;
    if (capacity < 2 || capacity > PARD_RING_MAX_CAPACITY || !PARD__IS_POW2(capacity))
        return false;
    return elem_size >= 8 && elem_size <= PARD_RING_MAX_ELEM_SIZE && elem_size % 8 == 0;
}

static uint32_t slot_stride(uint32_t kind, uint32_t elem_size)
{
    uint32_t bytes = 8 + elem_size; /* a multiple of 8: elem_size is */
    if (kind == PARD_RING_MPMC)
        return bytes;
    if (bytes > PARD_CACHELINE)
        return (uint32_t)PARD__ALIGN_UP(bytes, PARD_CACHELINE);
    uint32_t stride = 16;
    while (stride < bytes)
        stride *= 2;
    return stride;
}

size_t pard_ring_footprint(uint32_t kind, uint32_t capacity, uint32_t elem_size)
{
    if (!geometry_valid(kind, capacity, elem_size))
        return 0;
    uint64_t bytes =
        sizeof(struct pard_ring_header) + (uint64_t)capacity * slot_stride(kind, elem_size);
    return bytes > SIZE_MAX ? 0 : (size_t)bytes;
}

/* Fill the private view from validated geometry. */
static void view_fill(struct pard_ring *ring, struct pard_ring_header *hdr, uint32_t kind,
                      uint32_t capacity, uint32_t elem_size, uint64_t head, uint64_t tail)
{
    ring->hdr = hdr;
    ring->slots = (uint8_t *)hdr + sizeof(*hdr);
    ring->capacity = capacity;
    ring->mask = capacity - 1;
    ring->elem_size = elem_size;
    ring->stride = slot_stride(kind, elem_size);
    ring->kind = kind;
    ring->pad_ = 0;
    ring->prod_tail = tail;
    ring->prod_head = head;
    ring->cons_head = head;
}

static struct slot *slot_at(const struct pard_ring *ring, uint64_t pos)
{
    return (struct slot *)(ring->slots + (size_t)(pos & ring->mask) * ring->stride);
}

/*
 * snapshot_used - tail - head as the ring really held it at one instant, or
 * -PARD_ECORRUPT when the indices are impossible. Safe against concurrent
 * pushes and pops.
 *
 * head is read before and after tail. head never decreases and never passes
 * tail (a position is claimed by a producer before any consumer can claim
 * it), so h1 <= h2 and h1 <= t always. When h1 == h2, head held that value
 * when tail was read, so t - h1 is a count the ring really held and must be
 * at most capacity; when head moved, h2 is at least the head of that
 * instant, so t - h2 is still bounded by capacity. After a few attempts with
 * head moving, the weaker bound is all we report.
 */
static int64_t snapshot_used(struct pard_ring_header *hdr, uint64_t capacity)
{
    int64_t used = 0;
    for (int attempt = 0; attempt < 4; attempt++) {
        /* Acquire on each load keeps the three reads in this order, and
         * pairs with the release that advanced each index, so that the tail
         * we read covers every claim the head we read depends on. */
        uint64_t h1 = atomic_load_explicit(&hdr->head, memory_order_acquire);
        uint64_t t = atomic_load_explicit(&hdr->tail, memory_order_acquire);
        uint64_t h2 = atomic_load_explicit(&hdr->head, memory_order_acquire);
        if ((int64_t)(h2 - h1) < 0 || (int64_t)(t - h1) < 0)
            return -PARD_ECORRUPT;
        if (h1 == h2)
            return t - h1 <= capacity ? (int64_t)(t - h1) : -PARD_ECORRUPT;
        if ((int64_t)(t - h2) > (int64_t)capacity)
            return -PARD_ECORRUPT;
        used = (int64_t)(t - h2) > 0 ? (int64_t)(t - h2) : 0;
    }
    return used;
}

/* ======================================================================
 * Init and attach
 * ====================================================================== */

int pard_ring_init(struct pard_ring *ring, void *mem, size_t len, uint32_t kind, uint32_t capacity,
                   uint32_t elem_size)
{
    if (ring == NULL || mem == NULL || (uintptr_t)mem % PARD_CACHELINE != 0)
        return -EINVAL;
    size_t need = pard_ring_footprint(kind, capacity, elem_size);
    if (need == 0)
        return -EINVAL;
    if (len < need)
        return -PARD_ESIZE;

    struct pard_ring_header *hdr = mem;
    memset(hdr, 0, sizeof(*hdr));
    /* Plain and relaxed stores: nobody may attach yet. The caller publishes
     * the ring (pard_region_publish's release store of the region magic, or
     * a fork) after this returns. */
    atomic_store_explicit(&hdr->tail, 0, memory_order_relaxed);
    atomic_store_explicit(&hdr->head, 0, memory_order_relaxed);
    hdr->magic = PARD_RING_MAGIC;
    hdr->kind = kind;
    hdr->capacity = capacity;
    hdr->elem_size = elem_size;
    pard_event_init(&hdr->not_empty);
    pard_event_init(&hdr->not_full);

    view_fill(ring, hdr, kind, capacity, elem_size, 0, 0);
    /* Payloads are not cleared: none is read before it is written. Slots
     * start free for their first lap: MPMC seq = i, SPSC seq = i + 1 - cap
     * (see the protocols at the top). */
    for (uint32_t i = 0; i < capacity; i++) {
        uint64_t seq = kind == PARD_RING_MPMC ? i : (uint64_t)i + 1 - capacity;
        atomic_store_explicit(&slot_at(ring, i)->seq, seq, memory_order_relaxed);
    }
    return 0;
}

/* Read a geometry field exactly once: another process may be rewriting it,
 * and the value we validate must be the value we use. */
static uint32_t read_once_u32(const uint32_t *p)
{
    return *(const volatile uint32_t *)p;
}

int pard_ring_attach(struct pard_ring *ring, void *mem, size_t len, uint32_t expected_kind)
{
    if (ring == NULL || mem == NULL || (uintptr_t)mem % PARD_CACHELINE != 0)
        return -EINVAL;
    if (expected_kind != PARD_RING_SPSC && expected_kind != PARD_RING_MPMC)
        return -EINVAL;
    if (len < sizeof(struct pard_ring_header))
        return -PARD_ESIZE;

    struct pard_ring_header *hdr = mem;
    if (read_once_u32(&hdr->magic) != PARD_RING_MAGIC)
        return -PARD_EBADMAGIC;
    uint32_t kind = read_once_u32(&hdr->kind);
    uint32_t capacity = read_once_u32(&hdr->capacity);
    uint32_t elem_size = read_once_u32(&hdr->elem_size);
    /* A ring of the other kind has a different slot layout: treat it like
     * any other impossible geometry. */
    if (kind != expected_kind || !geometry_valid(kind, capacity, elem_size))
        return -PARD_ECORRUPT;
    if (pard_ring_footprint(kind, capacity, elem_size) > len)
        return -PARD_ESIZE;
    if (snapshot_used(hdr, capacity) < 0)
        return -PARD_ECORRUPT;

    /* The caches only need to be lower bounds of the live indices; each
     * side reloads when they say "no room" / "no data". */
    uint64_t head = atomic_load_explicit(&hdr->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&hdr->tail, memory_order_acquire);
    view_fill(ring, hdr, kind, capacity, elem_size, head, tail);
    return 0;
}

int64_t pard_ring_count(const struct pard_ring *ring)
{
    return snapshot_used(ring->hdr, ring->capacity);
}

/* ======================================================================
 * SPSC
 * ====================================================================== */

/* Copy one element (a multiple of 8 bytes) without a call into memcpy: a
 * burst of small elements would otherwise pay a call per element. */
static inline void copy_elem(void *restrict dst, const void *restrict src, size_t es)
{
    if (es == 8) {
        memcpy(dst, src, 8);
        return;
    }
    for (size_t i = 0; i < es; i += 8)
        memcpy((uint8_t *)dst + i, (const uint8_t *)src + i, 8);
}

int pard_ring_spsc_push_burst(struct pard_ring *ring, const void *src, unsigned n)
{
    struct pard_ring_header *hdr = ring->hdr;
    const uint64_t cap = ring->capacity;
    const uint64_t tail = ring->prod_tail;
    /* Relaxed: only this producer stores tail; it must still be ours. */
    if (atomic_load_explicit(&hdr->tail, memory_order_relaxed) != tail)
        return -PARD_ECORRUPT;
    uint64_t used = tail - ring->prod_head;
    if (used > cap || cap - used < n) {
        /* Acquire pairs with the consumer's release store of head: its reads
         * of the slots we are about to overwrite are complete. */
        ring->prod_head = atomic_load_explicit(&hdr->head, memory_order_acquire);
        used = tail - ring->prod_head;
        if (used > cap) /* head ahead of tail, or more than a ring apart */
            return -PARD_ECORRUPT;
    }
    uint64_t k = cap - used < n ? cap - used : n;
    if (k == 0)
        return 0;

    const size_t es = ring->elem_size;
    for (uint64_t i = 0; i < k; i++)
        copy_elem(slot_at(ring, tail + i)->data, (const uint8_t *)src + i * es, es);
    /* Publish the burst last slot first: the consumer polls the first, so
     * once it sees that one it finds the whole burst ready and reads it
     * without pulling lines this loop is still writing. Release: each
     * store publishes every payload above (and the sequences stored before
     * it) to the consumer's acquire load of that sequence. */
    for (uint64_t i = k; i-- > 0;)
        atomic_store_explicit(&slot_at(ring, tail + i)->seq, tail + i + 1, memory_order_release);
    ring->prod_tail = tail + k;
    /* Release keeps pard_ring_count's snapshot sound; nobody waits on it. */
    atomic_store_explicit(&hdr->tail, tail + k, memory_order_release);
    pard_event_notify(&hdr->not_empty);
    return (int)k;
}

/* The state of position pos's slot for the consumer: 1 ready, 0 not written
 * yet this lap, -1 impossible. Acquire pairs with the producer's release
 * store of seq: the payload, and every earlier position's, is visible. */
static int spsc_ready(const struct pard_ring *ring, uint64_t pos)
{
    uint64_t seq = atomic_load_explicit(&slot_at(ring, pos)->seq, memory_order_acquire);
    if (seq == pos + 1)
        return 1;
    return seq == pos + 1 - ring->capacity ? 0 : -1;
}

int pard_ring_spsc_pop_burst(struct pard_ring *ring, void *dst, unsigned n)
{
    struct pard_ring_header *hdr = ring->hdr;
    const uint64_t cap = ring->capacity;
    const uint64_t head = ring->cons_head;
    /* Relaxed: only this consumer stores head; it must still be ours. */
    if (atomic_load_explicit(&hdr->head, memory_order_relaxed) != head)
        return -PARD_ECORRUPT;
    const uint64_t want = n < cap ? n : cap;
    if (want == 0)
        return 0;
    int first = spsc_ready(ring, head);
    if (first <= 0)
        return first < 0 ? -PARD_ECORRUPT : 0;
    /* The producer publishes in order, so when the last wanted position is
     * ready, all before it are: one probe for a full burst. Otherwise walk
     * forward to the first position that is not (a slot that is impossible
     * ends the burst; the next call reports it). */
    uint64_t k = 1;
    if (want > 1 && spsc_ready(ring, head + want - 1) == 1)
        k = want;
    else
        while (k < want && spsc_ready(ring, head + k) == 1)
            k++;

    const size_t es = ring->elem_size;
    for (uint64_t i = 0; i < k; i++)
        copy_elem((uint8_t *)dst + i * es, slot_at(ring, head + i)->data, es);
    ring->cons_head = head + k;
    /* Release: our reads of those slots are done before the producer, after
     * its acquire load of head, overwrites them. */
    atomic_store_explicit(&hdr->head, head + k, memory_order_release);
    pard_event_notify(&hdr->not_full);
    return (int)k;
}

int pard_ring_spsc_peek(const struct pard_ring *ring)
{
    const uint64_t head = ring->cons_head;
    if (atomic_load_explicit(&ring->hdr->head, memory_order_relaxed) != head)
        return -PARD_ECORRUPT;
    int ready = spsc_ready(ring, head);
    return ready < 0 ? -PARD_ECORRUPT : ready;
}

int pard_ring_spsc_push(struct pard_ring *ring, const void *elem)
{
    return pard_ring_spsc_push_burst(ring, elem, 1);
}

int pard_ring_spsc_pop(struct pard_ring *ring, void *elem)
{
    return pard_ring_spsc_pop_burst(ring, elem, 1);
}

/* ======================================================================
 * MPMC
 * ====================================================================== */

/* MPMC payloads move a word at a time with relaxed atomic accesses: after
 * pard_ring_mpmc_reclaim a stalled consumer's copy can overlap the next
 * producer's write. The consumer then drops what it read, but the overlap
 * must be a defined read, not a data race. On our targets these are the
 * same plain moves memcpy would make. (elem_size is a multiple of 8 and
 * every slot starts 8-aligned.) */
static inline void payload_load(void *dst, const unsigned char *data, size_t es)
{
    for (size_t i = 0; i < es; i += 8) {
        uint64_t w = __atomic_load_n((const uint64_t *)(const void *)(data + i), __ATOMIC_RELAXED);
        memcpy((uint8_t *)dst + i, &w, 8);
    }
}

static inline void payload_store(unsigned char *data, const void *src, size_t es)
{
    for (size_t i = 0; i < es; i += 8) {
        uint64_t w;
        memcpy(&w, (const uint8_t *)src + i, 8);
        __atomic_store_n((uint64_t *)(void *)(data + i), w, __ATOMIC_RELAXED);
    }
}

/* Every value the slot of position pos can hold is pos or pos + 1 modulo
 * capacity (see the protocol at the top). */
static bool seq_plausible(const struct pard_ring *ring, uint64_t seq, uint64_t pos)
{
    return ((seq - pos) & ring->mask) <= 1;
}

/*
 * A consumer's end of a pop: positions h .. h+k-1 are claimed and their
 * payloads already in dst (read before the claim). Release each slot. Release: our read of the
 * payload is done before a producer, after its acquire load of seq, reuses the slot for the next
 * lap. A CAS, not a store: if we were stalled long enough for a producer to take the slot back
 * (pard_ring_mpmc_reclaim), the element is no longer ours and what we copied may be half
 * overwritten: drop it. Returns how many are kept (packed at the front of dst).
 */
static int release_popped(struct pard_ring *ring, void *dst, uint64_t h, uint64_t k)
{
    const size_t es = ring->elem_size;
    uint64_t kept = 0;
    for (uint64_t i = 0; i < k; i++) {
        struct slot *slot = slot_at(ring, h + i);
        uint8_t *out = (uint8_t *)dst + kept * es;
        if (kept != i)
            memmove(out, (uint8_t *)dst + i * es, es);
        uint64_t expect = h + i + 1;
        if (atomic_compare_exchange_strong_explicit(&slot->seq, &expect, h + i + ring->capacity,
                                                    memory_order_release, memory_order_relaxed))
            kept++;
    }
    pard_event_notify(&ring->hdr->not_full);
    return (int)kept;
}

int pard_ring_mpmc_push_burst(struct pard_ring *ring, const void *src, unsigned n)
{
    struct pard_ring_header *hdr = ring->hdr;
    const int64_t cap = ring->capacity;
    const uint64_t want = n < (uint64_t)cap ? n : (uint64_t)cap;
    if (want == 0)
        return 0;

    /* Acquire: see snapshot_used; the claim itself is decided by the CAS. */
    uint64_t t = atomic_load_explicit(&hdr->tail, memory_order_acquire);
    uint64_t k;
    for (;;) {
        int64_t d = 0;
        for (k = 0; k < want; k++) {
            /* Acquire pairs with the consumer's release of this slot
             * (seq = pos + capacity): its read of the old payload is done
             * before we overwrite it. */
            uint64_t seq = atomic_load_explicit(&slot_at(ring, t + k)->seq, memory_order_acquire);
            d = (int64_t)(seq - (t + k));
            if (d == 0)
                continue;
            if (!seq_plausible(ring, seq, t + k) || d < -cap)
                return -PARD_ECORRUPT;
            break;
        }
        if (k > 0) {
            /* Release on success: whoever reads this tail with acquire also
             * sees the head advances our slot checks depended on (keeps
             * snapshot_used sound). The payload is ordered by seq, not by
             * this CAS. On failure t becomes the current tail: rescan. */
            if (atomic_compare_exchange_weak_explicit(&hdr->tail, &t, t + k, memory_order_release,
                                                      memory_order_acquire))
                break;
            continue;
        }
        if (d > 0) {
            /* Another producer claimed t; unless tail moved, nobody could
             * have, and the sequence is garbage. */
            uint64_t now = atomic_load_explicit(&hdr->tail, memory_order_acquire);
            if (now == t)
                return -PARD_ECORRUPT;
            t = now;
            continue;
        }
        /* Full (d == -cap or 1 - cap): the previous lap is still in use. */
        return snapshot_used(hdr, (uint64_t)cap) < 0 ? -PARD_ECORRUPT : 0;
    }

    const size_t es = ring->elem_size;
    for (uint64_t i = 0; i < k; i++) {
        struct slot *slot = slot_at(ring, t + i);
        payload_store(slot->data, (const uint8_t *)src + i * es, es);
        /* Release: publishes the payload to the consumer's acquire load of
         * seq. */
        atomic_store_explicit(&slot->seq, t + i + 1, memory_order_release);
    }
    pard_event_notify(&hdr->not_empty);
    return (int)k;
}

/* Pop up to n ready elements with one claim of head, each joining the one
 * before (joins NULL: all do). */
static int mpmc_pop(struct pard_ring *ring, void *dst, unsigned n,
                    bool (*joins)(const void *prev, const void *next, void *arg), void *arg)
{
    struct pard_ring_header *hdr = ring->hdr;
    const int64_t cap = ring->capacity;
    const uint64_t want = n < (uint64_t)cap ? n : (uint64_t)cap;
    if (want == 0)
        return 0;
    const size_t es = ring->elem_size;
    uint64_t h = atomic_load_explicit(&hdr->head, memory_order_acquire);
    uint64_t k;
    for (;;) {
        int64_t d = 0;
        /* Each ready element is read before it is claimed: when the CAS
         * below succeeds, nobody else claimed these positions, so nobody
         * released their slots and no producer rewrote what we read. When
         * it fails, what we read is dropped. */
        for (k = 0; k < want; k++) {
            struct slot *slot = slot_at(ring, h + k);
            uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
            d = (int64_t)(seq - (h + k + 1));
            if (d != 0) {
                if (k == 0 && (!seq_plausible(ring, seq, h) || d < -cap))
                    return -PARD_ECORRUPT;
                break;
            }
            uint8_t *e = (uint8_t *)dst + k * es;
            payload_load(e, slot->data, es);
            if (k > 0 && joins && !joins(e - es, e, arg)) {
                d = 0; /* ready, but not part of the run: not an error */
                break;
            }
        }
        if (k > 0) {
            if (atomic_compare_exchange_weak_explicit(&hdr->head, &h, h + k, memory_order_release,
                                                      memory_order_acquire))
                break;
            continue;
        }
        if (d > 0) { /* another consumer took h; unless head moved, garbage */
            uint64_t now = atomic_load_explicit(&hdr->head, memory_order_acquire);
            if (now == h)
                return -PARD_ECORRUPT;
            h = now;
            continue;
        }
        return snapshot_used(hdr, (uint64_t)cap) < 0 ? -PARD_ECORRUPT : 0;
    }
    return release_popped(ring, dst, h, k);
}

int pard_ring_mpmc_pop_burst(struct pard_ring *ring, void *dst, unsigned n)
{
    return mpmc_pop(ring, dst, n, NULL, NULL);
}

int pard_ring_mpmc_pop_run(struct pard_ring *ring, void *dst, unsigned n,
                           bool (*joins)(const void *prev, const void *next, void *arg), void *arg)
{
    return mpmc_pop(ring, dst, n, joins, arg);
}

int pard_ring_mpmc_reclaim(struct pard_ring *ring, void *lost)
{
    struct pard_ring_header *hdr = ring->hdr;
    const uint64_t cap = ring->capacity;
    uint64_t t = atomic_load_explicit(&hdr->tail, memory_order_acquire);
    if (t < cap)
        return 0;                 /* first lap: every slot was free from the start */
    const uint64_t pos = t - cap; /* the previous lap's position */
    struct slot *slot = slot_at(ring, t);
    /* Acquire pairs with the publishing store of seq = pos + 1: the payload
     * we copy below is the element that was pushed. */
    uint64_t seq = atomic_load_explicit(&slot->seq, memory_order_acquire);
    if (seq != pos + 1)
        return 0; /* free, or a producer of pos is still writing */
    /* Head never moves back: once past pos, pos was claimed by a consumer.
     * Before that the ring is simply full. */
    uint64_t h = atomic_load_explicit(&hdr->head, memory_order_acquire);
    if ((int64_t)(h - pos) <= 0)
        return 0;
    if (snapshot_used(hdr, cap) < 0)
        return -PARD_ECORRUPT;
    payload_load(lost, slot->data, ring->elem_size);
    /* The consumer's late release and this CAS expect the same value: one of
     * them wins. Winning, the slot is free for position t. */
    uint64_t expect = pos + 1;
    if (!atomic_compare_exchange_strong_explicit(&slot->seq, &expect, t, memory_order_acq_rel,
                                                 memory_order_relaxed))
        return 0; /* released meanwhile: the consumer had it after all */
    return 1;
}

int pard_ring_mpmc_push(struct pard_ring *ring, const void *elem)
{
    return pard_ring_mpmc_push_burst(ring, elem, 1);
}

int pard_ring_mpmc_pop(struct pard_ring *ring, void *elem)
{
    return pard_ring_mpmc_pop_burst(ring, elem, 1);
}

/* ======================================================================
 * Blocking helpers
 * ====================================================================== */

/* One attempt of a blocking push or pop, run by pard_wait_until's ready(). */
struct ring_attempt {
    struct pard_ring *ring;
    const void *src; /* push: caller's elements */
    void *dst;       /* pop: caller's buffer */
    unsigned n;
    int result; /* elements moved or a negative error; 0 = keep waiting */
};

/*
 * push_ready / pop_ready - try the operation; true once it moved something
 * or failed. The outcome is kept in the attempt, and once there is one no
 * further attempt is made: elements that moved must be reported exactly once
 * even if the waiter calls ready() again.
 */
static bool push_ready(void *arg)
{
    struct ring_attempt *a = arg;
    if (a->result == 0)
        a->result = a->ring->kind == PARD_RING_MPMC
                        ? pard_ring_mpmc_push_burst(a->ring, a->src, a->n)
                        : pard_ring_spsc_push_burst(a->ring, a->src, a->n);
    return a->result != 0;
}

static bool pop_ready(void *arg)
{
    struct ring_attempt *a = arg;
    if (a->result == 0)
        a->result = a->ring->kind == PARD_RING_MPMC
                        ? pard_ring_mpmc_pop_burst(a->ring, a->dst, a->n)
                        : pard_ring_spsc_pop_burst(a->ring, a->dst, a->n);
    return a->result != 0;
}

/* Run one blocking operation; the event is the one the opposite side
 * notifies when it makes room (not_full) or data (not_empty). */
static int ring_wait(struct pard_event *ev, pard_ready_fn ready, struct ring_attempt *a,
                     enum pard_wait_mode mode, int64_t deadline_ns)
{
    if (a->ring->kind != PARD_RING_SPSC && a->ring->kind != PARD_RING_MPMC)
        return -EINVAL;
    if (a->n == 0)
        return 0;
    int rc = pard_wait_until(ev, mode, ready, a, deadline_ns);
    /* What moved counts even if the deadline passed at the same moment. */
    return a->result != 0 ? a->result : rc;
}

int pard_ring_push_wait(struct pard_ring *ring, const void *src, unsigned n,
                        enum pard_wait_mode mode, int64_t deadline_ns)
{
    struct ring_attempt a = {.ring = ring, .src = src, .n = n};
    return ring_wait(&ring->hdr->not_full, push_ready, &a, mode, deadline_ns);
}

int pard_ring_pop_wait(struct pard_ring *ring, void *dst, unsigned n, enum pard_wait_mode mode,
                       int64_t deadline_ns)
{
    struct ring_attempt a = {.ring = ring, .dst = dst, .n = n};
    return ring_wait(&ring->hdr->not_empty, pop_ready, &a, mode, deadline_ns);
}
