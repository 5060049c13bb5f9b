/*
 * pard/ipc.h — libipc: the shared-memory core of pard.
 *
 * Design
 * ------
 * libipc knows nothing about daemons, jobs or sockets. It gives:
 *
 *   - Regions: a POSIX shared-memory object created with shm_open(O_EXCL),
 *     mode 0600 and unlinked at once, so only processes that are handed the
 *     file descriptor can map it and nothing outlives its users. A region
 *     starts with a header (magic, layout version, sizes, a table of
 *     sections) that the creator publishes last with a release store; an
 *     attacher validates every field before it touches anything else.
 *
 *   - Rings living in a region and addressed by offsets (there are no
 *     pointers in shared memory): a single-producer/single-consumer ring and
 *     a bounded multi-producer/multi-consumer ring (per-slot sequence
 *     numbers, in the style of Vyukov's MPMC queue) of fixed-size
 *     descriptors, both with burst operations. Producer and consumer fields
 *     live on their own cache lines.
 *
 *   - Events: an eventcount over a 32-bit futex word plus a waiter count, so
 *     that a producer makes a system call only when a consumer is asleep.
 *     pard_wait_until() layers the wait modes on it: spin, adaptive (spin,
 *     then yield, then block; the default) and block, each with a deadline.
 *
 *   - Arenas: a circular byte buffer for variable-size payloads with one
 *     allocator and one reclaimer; every read is bounds-checked.
 *
 *   - A monotonic clock and a latency histogram (p50 … p99.9, max).
 *
 * Trust
 * -----
 * Everything read from shared memory is untrusted: another process may have
 * scribbled over it. Every function that reads an index, offset or length
 * from shared memory checks it and returns -PARD_ECORRUPT instead of
 * following it. Views (struct pard_*_view) hold the sizes that were
 * validated at attach time in private memory, so a later overwrite of the
 * shared header cannot widen them.
 *
 * Errors
 * ------
 * Functions return int: 0 (or a count) on success, a negative value on
 * failure: -errno for system failures, or one of the PARD_E* codes below
 * (also negative when returned). Outcomes that are not failures — "ring
 * full", "ring empty" — are plain values (a count of 0), not errors.
 *
 * Thread and process safety is in each function's name and contract.
 */
#ifndef PARD_IPC_H
#define PARD_IPC_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PARD_CACHELINE 64

/* ======================================================================
 * Errors
 * ====================================================================== */

/*
 * Every pard-specific error code, in one list. Codes are returned negated
 * (-PARD_ECORRUPT), like -errno, and sit above every errno value.
 */
#define PARD_ERRNO_MAP(XX)                                                                         \
    XX(EBADMAGIC, 4001, "shared memory region has a wrong magic number (not a pard region)")       \
    XX(EVERSION, 4002, "layout or protocol version mismatch (daemon and client differ)")           \
    XX(ESIZE, 4003, "size does not match what the header declares")                                \
    XX(ECORRUPT, 4004, "shared memory is corrupted (index, offset or length out of bounds)")       \
    XX(ENOTREADY, 4005, "shared memory region is not published yet")                               \
    XX(EPROTO, 4010, "malformed protocol frame")                                                   \
    XX(ETOOBIG, 4011, "message, input or output exceeds its size limit")                           \
    XX(ENOFUNC, 4012, "no worker serves this function")                                            \
    XX(EDAEMON, 4013, "the pard daemon is gone (connection lost); restart it and retry")           \
    XX(ECANCELED, 4014, "the job was cancelled")                                                   \
    XX(ETASKTIMEOUT, 4015, "the task exceeded its time limit")                                     \
    XX(EWORKERDIED, 4016, "the worker running the task died")                                      \
    XX(ETASK, 4017, "the task failed (see its message)")                                           \
    XX(ELIMIT, 4018, "a configured limit was reached")                                             \
    XX(EDENIED, 4019, "permission denied (another user)")                                          \
    XX(EBUSY, 4020, "another pard daemon is already running on this socket")                       \
    XX(ENOJOB, 4021, "no such job")

enum pard_errno {
#define PARD__ERR_ENUM(name, code, msg) PARD_##name = code,
    PARD_ERRNO_MAP(PARD__ERR_ENUM)
#undef PARD__ERR_ENUM
};

/*
 * pard_strerror - a static, human-readable string for an error returned by
 * any pard function (negative pard code or negative errno). Thread-safe.
 */
const char *pard_strerror(int err);

/* ======================================================================
 * Clock
 * ====================================================================== */

/* pard_now_ns - CLOCK_MONOTONIC in nanoseconds. */
int64_t pard_now_ns(void);

/* pard_cpu_relax - a pause hint for spin loops. */
static inline void pard_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* ======================================================================
 * Regions
 * ====================================================================== */

#define PARD_REGION_MAGIC        0x70617264u /* "pard" */
#define PARD_REGION_VERSION      1u
#define PARD_REGION_MAX_SECTIONS 32
#define PARD_REGION_MAX_SIZE     ((uint64_t)1 << 40)

/*
 * One section of a region: what it holds (a kind number chosen by the
 * layer above), and where. Offsets are from the region base, 64-byte
 * aligned, and within the region.
 */
struct pard_section {
    uint32_t kind;   /* caller-defined; 0 = unused */
    uint32_t flags;  /* caller-defined */
    uint64_t offset; /* bytes from the region base */
    uint64_t size;   /* bytes */
};

/*
 * The region header, at offset 0. magic is written last (release) by the
 * creator; an attacher acquires it first.
 */
struct pard_region_header {
    _Atomic uint32_t magic; /* PARD_REGION_MAGIC once published */
    uint32_t version;       /* PARD_REGION_VERSION */
    uint64_t size;          /* total bytes, equals the object's size */
    uint32_t header_size;   /* sizeof(struct pard_region_header) */
    uint32_t nsections;     /* used entries of sections[] */
    uint32_t user_version;  /* layout version of the layer above */
    uint32_t reserved;      /* zero */
    uint64_t user[4];       /* small values for the layer above */
    struct pard_section sections[PARD_REGION_MAX_SECTIONS];
};

/*
 * A mapped region, in private memory. base/size are what this process
 * mapped; the section table is a private copy validated at attach time.
 */
struct pard_region {
    void *base;            /* start of the mapping */
    size_t size;           /* length of the mapping */
    int fd;                /* the shm file descriptor, or -1 */
    uint32_t nsections;    /* validated copy */
    uint32_t user_version; /* validated copy */
    struct pard_section sections[PARD_REGION_MAX_SECTIONS];
};

/*
 * pard_region_open - create an anonymous shared-memory region of `size`
 * bytes: shm_open(O_CREAT|O_EXCL, 0600) under a random name, shm_unlink at
 * once, ftruncate, posix_fallocate (so that a full /dev/shm is -ENOSPC
 * here, never a SIGBUS later), mmap(MAP_SHARED). The descriptor is
 * close-on-exec.
 * The header is zeroed and NOT published: lay out sections with
 * pard_region_add_section(), initialise their contents, then call
 * pard_region_publish().
 * Returns 0 or -errno (-ENOSPC: no room in /dev/shm) / -PARD_ESIZE (size
 * too small or too large).
 */
int pard_region_open(struct pard_region *r, size_t size);

/*
 * pard_region_add_section - reserve `size` bytes (rounded up to 64) for a
 * section of `kind`. Only before publish. Returns the section index (>= 0)
 * and stores its offset in *offset, or -PARD_ESIZE when it does not fit /
 * -PARD_ELIMIT when the table is full.
 */
int pard_region_add_section(struct pard_region *r, uint32_t kind, uint64_t size, uint64_t *offset);

/*
 * pard_region_publish - write the header (version, sizes, the section
 * table, user_version, user[]) and then, last, the magic with a release
 * store. After this, attachers may map it.
 */
void pard_region_publish(struct pard_region *r, uint32_t user_version, const uint64_t user[4]);

/*
 * pard_region_attach - map the region behind `fd` (not consumed: the caller
 * keeps ownership of fd; the region keeps a dup of it) and validate the
 * header: magic (-PARD_EBADMAGIC, or -PARD_ENOTREADY when still zero),
 * version (-PARD_EVERSION), size against fstat (-PARD_ESIZE), and every
 * section in bounds, aligned and not overlapping the header
 * (-PARD_ECORRUPT). `user_version`, when non-zero, must match too. On
 * failure nothing stays mapped.
 */
int pard_region_attach(struct pard_region *r, int fd, uint32_t user_version);

/*
 * pard_region_attach_kept - pard_region_attach, taking over the mapping of
 * *kept (a region attached before and not closed; may be NULL or empty)
 * when fd names the same object, whole: its pages stay mapped, so nothing
 * faults in again (a fault per 4 KiB page costs microseconds). Otherwise
 * *kept is closed and fd mapped anew. Either way *kept is empty after.
 */
int pard_region_attach_kept(struct pard_region *r, int fd, uint32_t user_version,
                            struct pard_region *kept);

/*
 * pard_region_find - the first validated section of `kind`: returns a
 * pointer into the mapping (valid until pard_region_close) and its size
 * in *size, or NULL when there is none.
 */
void *pard_region_find(const struct pard_region *r, uint32_t kind, uint64_t *size);

/* pard_region_section - the index-th validated section, or NULL. */
void *pard_region_section(const struct pard_region *r, uint32_t index, uint64_t *size);

/* pard_region_user - the header's user[i] values (read from shared memory;
 * the caller must validate them). */
uint64_t pard_region_user(const struct pard_region *r, unsigned i);

/*
 * pard_region_unpublish - for the creator, to use a region again: clear the
 * magic (nobody can attach it) and the section table, as after
 * pard_region_open, but keep the mapping, the descriptor and the contents
 * (nothing is zeroed: the layer above re-initialises what it relies on).
 * Only once nobody else maps it any more: a holder of the old descriptor
 * would see the next use.
 */
void pard_region_unpublish(struct pard_region *r);

/* pard_region_close - unmap and close the descriptor. Idempotent. */
void pard_region_close(struct pard_region *r);

/* ======================================================================
 * Events (eventcount over a futex word) and waiting
 * ====================================================================== */

/*
 * A process-shared event, in shared memory, on its own cache line.
 *
 *   waiter:  key = pard_event_prepare(ev);      // registers as a waiter
 *            if (condition) { pard_event_cancel(ev); done; }
 *            pard_event_wait(ev, key, deadline); // sleeps unless notified
 *            (pard_event_wait unregisters the waiter itself)
 *   notifier: publish the data the condition reads; pard_event_notify(ev);
 *
 * notify costs a fence and a load when nobody waits; it makes a system call
 * (FUTEX_WAKE) only when the waiter count says someone is registered.
 */
struct pard_event {
    _Atomic uint32_t seq;     /* the futex word; bumped by each notify that wakes */
    _Atomic uint32_t waiters; /* registered waiters */
    uint8_t pad_[PARD_CACHELINE - 8];
};
_Static_assert(sizeof(struct pard_event) == PARD_CACHELINE, "event takes one cache line");

enum pard_wait_mode {
    PARD_WAIT_ADAPTIVE = 0, /* spin briefly, then yield, then block (default) */
    PARD_WAIT_SPIN = 1,     /* busy-poll with a pause hint until the deadline */
    PARD_WAIT_BLOCK = 2,    /* go straight to the futex */
};

/* pard_wait_mode_parse - "spin" / "adaptive" / "block" → mode; -EINVAL. */
int pard_wait_mode_parse(const char *s, enum pard_wait_mode *mode);
const char *pard_wait_mode_name(enum pard_wait_mode mode);

/* pard_event_init - zero the event. Not concurrent with anything. */
void pard_event_init(struct pard_event *ev);

/* pard_event_prepare - register as a waiter and return the key to wait on.
 * Must be followed by pard_event_wait() or pard_event_cancel(). */
uint32_t pard_event_prepare(struct pard_event *ev);

/* pard_event_cancel - unregister without sleeping. */
void pard_event_cancel(struct pard_event *ev);

/*
 * pard_event_wait - sleep until notified after `key` was taken, or until
 * `deadline_ns` (pard_now_ns() clock; <0 = no deadline). Unregisters.
 * Returns 0 (woken, or the key was already stale, or a spurious wake:
 * re-check the condition) or -ETIMEDOUT.
 */
int pard_event_wait(struct pard_event *ev, uint32_t key, int64_t deadline_ns);

/*
 * pard_event_notify - wake every waiter, if any is registered. Call after
 * publishing (a seq_cst fence inside orders the publish before the waiter
 * check). Any process, any thread.
 */
void pard_event_notify(struct pard_event *ev);

/*
 * pard_wait_until - wait in `mode` until ready(arg) returns true or
 * `deadline_ns` passes (<0: none). ready() is called often; it must be
 * cheap and have no side effects beyond what it reports.
 * Returns 0 when ready() returned true, -ETIMEDOUT at the deadline. To
 * abort early (a peer died), make ready() return true and let the caller
 * tell why from its own state.
 */
typedef bool (*pard_ready_fn)(void *arg);
int pard_wait_until(struct pard_event *ev, enum pard_wait_mode mode, pard_ready_fn ready, void *arg,
                    int64_t deadline_ns);

/* Tunables of the adaptive mode (process-wide; defaults suit a busy VM). */
struct pard_wait_tuning {
    uint32_t spin_iters;  /* pause-loop iterations before yielding (default 2000) */
    uint32_t yield_iters; /* sched_yield() calls before blocking (default 4) */
};
void pard_wait_tuning_get(struct pard_wait_tuning *t);
void pard_wait_tuning_set(const struct pard_wait_tuning *t);

/* ======================================================================
 * Rings
 * ====================================================================== */

/*
 * Both rings hold `capacity` (a power of two, 2 .. 2^24) elements of
 * `elem_size` bytes (a multiple of 8, 8 .. 256). The shared part is a
 * header (producer line, consumer line, geometry line) followed by the
 * slots. A view holds the geometry validated at attach time.
 *
 * The rings do not wait: push/pop return how many elements moved (0 when
 * full / empty). Each ring has two events (not_empty, not_full) in its
 * header that the caller may wait on with pard_wait_until(); push and pop
 * notify them (a fence and a load when nobody waits).
 */

#define PARD_RING_MAGIC         0x72696e67u /* "ring" */
#define PARD_RING_MAX_CAPACITY  (1u << 24)
#define PARD_RING_MAX_ELEM_SIZE 256u

struct pard_ring_header {
    /* producer line */
    _Atomic uint64_t tail; /* next position to write (free-running) */
    uint8_t pad0_[PARD_CACHELINE - 8];
    /* consumer line */
    _Atomic uint64_t head; /* next position to read (free-running) */
    uint8_t pad1_[PARD_CACHELINE - 8];
    /* geometry line: written once at init, read-only after */
    uint32_t magic;     /* PARD_RING_MAGIC */
    uint32_t kind;      /* 1 = SPSC, 2 = MPMC */
    uint32_t capacity;  /* elements, power of two */
    uint32_t elem_size; /* bytes per element (the payload, excluding the slot sequence) */
    uint8_t pad2_[PARD_CACHELINE - 16];
    struct pard_event not_empty; /* consumers sleep here */
    struct pard_event not_full;  /* producers sleep here */
};
_Static_assert(sizeof(struct pard_ring_header) == 5 * PARD_CACHELINE, "ring header layout");
_Static_assert(offsetof(struct pard_ring_header, head) == PARD_CACHELINE, "head on its own line");
_Static_assert(offsetof(struct pard_ring_header, magic) == 2 * PARD_CACHELINE, "geometry line");

/*
 * A ring as seen by one process: pointers into its own mapping plus the
 * geometry validated at attach time (private, so a later scribble on the
 * shared header cannot widen it). Producer-side and consumer-side caches
 * are private too, so one view must be used by one producer and/or one
 * consumer thread at a time for SPSC; MPMC views may be shared by threads.
 */
struct pard_ring {
    struct pard_ring_header *hdr;
    uint8_t *slots;     /* first slot */
    uint32_t capacity;  /* validated */
    uint32_t mask;      /* capacity - 1 */
    uint32_t elem_size; /* validated payload bytes */
    uint32_t stride;    /* bytes per slot */
    uint32_t kind;      /* PARD_RING_SPSC or PARD_RING_MPMC */
    uint32_t pad_;
    /* SPSC only: each side keeps its own index privately (the shared copy
     * is for the other side, and for checking), so a scribbled index
     * cannot move it. */
    uint64_t prod_tail; /* producer: next position to write */
    uint64_t prod_head; /* producer: the last head it read (a lower bound) */
    uint64_t cons_head; /* consumer: next position to read */
};

enum { PARD_RING_SPSC = 1, PARD_RING_MPMC = 2 };

/*
 * pard_ring_footprint - bytes needed in shared memory for a ring of `kind`,
 * `capacity` and `elem_size`, or 0 when the geometry is invalid.
 */
size_t pard_ring_footprint(uint32_t kind, uint32_t capacity, uint32_t elem_size);

/*
 * pard_ring_init - lay out a ring in `mem` (64-byte aligned, `len` bytes,
 * at least the footprint) and fill in the view. Before anyone attaches.
 * Returns 0 or -EINVAL (bad geometry) / -PARD_ESIZE (too small).
 */
int pard_ring_init(struct pard_ring *ring, void *mem, size_t len, uint32_t kind, uint32_t capacity,
                   uint32_t elem_size);

/*
 * pard_ring_attach - validate the ring at `mem` (`len` bytes available) and
 * fill in the view: magic, kind == expected_kind, capacity a power of two
 * within limits, elem_size within limits and a multiple of 8, footprint
 * within len, and the current indices sane (tail - head <= capacity).
 * Returns 0, -PARD_EBADMAGIC, -PARD_ESIZE or -PARD_ECORRUPT.
 */
int pard_ring_attach(struct pard_ring *ring, void *mem, size_t len, uint32_t expected_kind);

/*
 * SPSC: one producer process/thread, one consumer process/thread.
 * push_burst copies up to n elements from src (n * elem_size bytes) and
 * returns how many it pushed (0 when full), or -PARD_ECORRUPT when the
 * shared indices are impossible (head past tail or more than a ring
 * behind, or tail not where this producer left it). pop_burst copies up
 * to n into dst and returns how many (0 when empty), or -PARD_ECORRUPT when
 * a slot's sequence is impossible or head is not where this consumer left
 * it; it never reads a payload it refuses.
 */
int pard_ring_spsc_push_burst(struct pard_ring *ring, const void *src, unsigned n);
int pard_ring_spsc_pop_burst(struct pard_ring *ring, void *dst, unsigned n);
int pard_ring_spsc_push(struct pard_ring *ring, const void *elem);
int pard_ring_spsc_pop(struct pard_ring *ring, void *elem);

/*
 * pard_ring_spsc_peek - for the consumer: 1 when pop would take an element
 * now, 0 when the ring is empty, -PARD_ECORRUPT when pop would refuse
 * (the same checks). Reads the slot the consumer polls, never the shared
 * tail: use it, not pard_ring_count, to decide whether to wake.
 */
int pard_ring_spsc_peek(const struct pard_ring *ring);

/*
 * MPMC: any number of producers and consumers, in any processes.
 * push_burst pushes up to n elements (all-or-some: the first k of src)
 * and returns k; pop_burst pops up to n and returns k. Elements pushed by
 * one producer are popped in the order it pushed them (FIFO per producer;
 * with several consumers, each consumer sees them in that order too; an
 * element taken back with pard_ring_mpmc_reclaim and pushed again is a new
 * push). pop_burst can return fewer elements than it claimed, even 0 with
 * the ring not empty, when a producer took a claimed slot back from under
 * it (see reclaim). Returns -PARD_ECORRUPT when a slot sequence or the
 * indices are impossible.
 */
int pard_ring_mpmc_push_burst(struct pard_ring *ring, const void *src, unsigned n);
int pard_ring_mpmc_pop_burst(struct pard_ring *ring, void *dst, unsigned n);
int pard_ring_mpmc_push(struct pard_ring *ring, const void *elem);
int pard_ring_mpmc_pop(struct pard_ring *ring, void *elem);

/*
 * pard_ring_mpmc_pop_run - pop a run: the element at head, and after it up
 * to n - 1 more ready elements as long as joins(previous, next, arg) says
 * each belongs with the one before (the first that does not stays in the
 * ring), all with one claim of head. Returns how many, 0 when empty, or
 * -PARD_ECORRUPT like pop_burst. joins() sees elements read before they are
 * claimed: it may be called with one that another consumer takes first (the
 * attempt is then repeated), and must only compare. After a reclaim (below)
 * an element of the run can be missing: callers that need the run whole
 * check joins() again on what they got.
 */
int pard_ring_mpmc_pop_run(struct pard_ring *ring, void *dst, unsigned n,
                           bool (*joins)(const void *prev, const void *next, void *arg), void *arg);

/*
 * pard_ring_mpmc_reclaim - for a producer stopped at a slot that a consumer
 * claimed (head moved past it) and never released, because that consumer
 * died in between: take the slot back. Copies the abandoned element into
 * `lost` (elem_size bytes) and returns 1; the next push can use the slot.
 * Returns 0 when the slot at tail is not in that state (free, full with an
 * unclaimed element, or released meanwhile; `lost` may have been written
 * and means nothing then), -PARD_ECORRUPT when the
 * indices are impossible. Safe against a consumer that was only stalled:
 * its release then fails and its pop drops the element, which is now the
 * caller's to push again. Deciding that the claimer is gone (how long to
 * wait) is the caller's policy; reclaiming too early costs a re-delivery,
 * never a loss or a duplicate pop.
 */
int pard_ring_mpmc_reclaim(struct pard_ring *ring, void *lost);

/*
 * pard_ring_count - elements in the ring right now (a snapshot; exact only
 * when nobody is pushing or popping), or -PARD_ECORRUPT.
 */
int64_t pard_ring_count(const struct pard_ring *ring);

/*
 * Blocking helpers: push or pop at least one element, waiting in `mode`
 * until `deadline_ns` (<0 = none). Return the count moved, -ETIMEDOUT, or
 * -PARD_ECORRUPT. They notify the opposite event after moving.
 */
int pard_ring_push_wait(struct pard_ring *ring, const void *src, unsigned n,
                        enum pard_wait_mode mode, int64_t deadline_ns);
int pard_ring_pop_wait(struct pard_ring *ring, void *dst, unsigned n, enum pard_wait_mode mode,
                       int64_t deadline_ns);

/* ======================================================================
 * Arenas
 * ====================================================================== */

/*
 * A circular byte buffer in shared memory for variable-size payloads.
 * One allocator (advances head) and one reclaimer (advances tail); any
 * number of readers. Allocations are 8-byte aligned and contiguous: one
 * that would straddle the end skips to the start (the skipped bytes are
 * reclaimed with it). Positions are free-running 64-bit byte counts;
 * offsets handed out are relative to the arena's data area.
 */
#define PARD_ARENA_MAGIC 0x6172656eu /* "aren" */

struct pard_arena_header {
    _Atomic uint64_t head; /* allocator: end of the newest allocation */
    uint8_t pad0_[PARD_CACHELINE - 8];
    _Atomic uint64_t tail; /* reclaimer: everything before this is free */
    uint8_t pad1_[PARD_CACHELINE - 8];
    uint32_t magic;    /* PARD_ARENA_MAGIC */
    uint32_t reserved; /* zero */
    uint64_t capacity; /* data bytes, a multiple of 64 */
    uint8_t pad2_[PARD_CACHELINE - 16];
};
_Static_assert(sizeof(struct pard_arena_header) == 3 * PARD_CACHELINE, "arena header layout");

struct pard_arena {
    struct pard_arena_header *hdr;
    uint8_t *data;     /* first data byte */
    uint64_t capacity; /* validated */
    /* The allocator's private state: its own head (the shared one must
     * still equal it, else someone scribbled on it) and the last tail it
     * read, a lower bound it refreshes only when that says "full". */
    uint64_t alloc_head;
    uint64_t alloc_off; /* alloc_head % capacity */
    uint64_t tail_seen;
};

/* A span in an arena: what goes into a descriptor. */
struct pard_span {
    uint64_t off; /* offset from the arena's data area */
    uint64_t len; /* bytes */
    uint64_t end; /* position to reclaim up to once this span is consumed */
};

size_t pard_arena_footprint(uint64_t capacity);
int pard_arena_init(struct pard_arena *a, void *mem, size_t len, uint64_t capacity);
int pard_arena_attach(struct pard_arena *a, void *mem, size_t len);

/*
 * pard_arena_alloc - allocator only. Reserve `len` bytes; on success fill
 * *span and return 0 (write the bytes at pard_arena_ptr(a, span->off), then
 * publish the span through a ring, whose release store orders the bytes).
 * Returns 1 when there is no room now (not an error: wait for the
 * reclaimer), -PARD_ETOOBIG when len can never fit, -PARD_ECORRUPT when the
 * shared positions are impossible. Allocations of 0 bytes are allowed.
 */
int pard_arena_alloc(struct pard_arena *a, uint64_t len, struct pard_span *span);

/*
 * pard_arena_release - reclaimer only. Free everything before `end` (a
 * span's end). Returns 0, or -PARD_ECORRUPT when end is not between the
 * current tail and head (a scribbled descriptor).
 */
int pard_arena_release(struct pard_arena *a, uint64_t end);

/*
 * pard_arena_read - any reader. Bounds-check [off, off+len) against the
 * validated capacity and return a pointer into the mapping (valid while the
 * span is not released), or NULL when out of bounds.
 */
const void *pard_arena_read(const struct pard_arena *a, uint64_t off, uint64_t len);

/* pard_arena_ptr - the allocator's writable pointer for a span it owns. */
void *pard_arena_ptr(const struct pard_arena *a, uint64_t off);

/* pard_arena_used - bytes allocated and not yet reclaimed (snapshot). */
uint64_t pard_arena_used(const struct pard_arena *a);

/* ======================================================================
 * Latency histogram
 * ====================================================================== */

/*
 * Log-linear buckets (16 per power of two: relative error under 6.25%)
 * from 1 ns to about 2^40 ns; count, min, max and sum are exact. Caller
 * storage; not thread-safe (one recorder), merge to combine.
 */
#define PARD_HIST_SUB     16
#define PARD_HIST_BUCKETS (41 * PARD_HIST_SUB)

struct pard_hist {
    uint64_t count;
    uint64_t min;
    uint64_t max;
    double sum;
    uint64_t buckets[PARD_HIST_BUCKETS];
};

void pard_hist_init(struct pard_hist *h);
void pard_hist_record(struct pard_hist *h, uint64_t value_ns);
void pard_hist_merge(struct pard_hist *into, const struct pard_hist *from);
/* pard_hist_percentile - the value at percentile p (0..100); exact max at 100. */
uint64_t pard_hist_percentile(const struct pard_hist *h, double p);
double pard_hist_mean(const struct pard_hist *h);
/* pard_hist_bucket_bounds - [lo, hi] values of bucket i. */
void pard_hist_bucket_bounds(unsigned i, uint64_t *lo, uint64_t *hi);

#ifdef __cplusplus
}
#endif
#endif /* PARD_IPC_H */
