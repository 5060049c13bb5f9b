/*
 * pard/job.h — the shared-memory layout of one job: the data plane's
 * contract between the daemon (which creates it), the submitter and the
 * workers (which attach to it).
 *
 * Layout (sections of one pard region, see pard/ipc.h):
 *
 *   JOB    struct pard_job_ctl: state, counters, the results doorbell
 *   TASKS  MPMC ring of struct pard_task_desc (submitter → workers)
 *   INPUT  arena of input records (allocated and reclaimed by the submitter)
 *   LANES  nlanes × lane blocks: struct pard_lane_ctl (lease, liveness),
 *          an SPSC ring of struct pard_result_desc and an output arena;
 *          lane L is written by the one worker the daemon gave it to and
 *          read by the submitter
 *   DONE   window × uint64: done[i % window] == i + 1 once task i's
 *          result was delivered (written by the submitter from the
 *          first re-queue on: only a re-queued descriptor, attempt > 0,
 *          makes a worker read them; a reused region holds the last
 *          job's, which the submitter clears before that first re-queue)
 *
 * Who writes what:
 *   - the daemon: job state (cancel/end), lane state and pid on assignment,
 *     death and death reason; it reads leases (timeouts) and counters
 *     (stats). It never touches a ring or an arena: it copies no task.
 *   - the submitter: the task ring (producer), the input arena, `submitted`,
 *     `delivered`, the done marks; lane result rings (consumer); it
 *     reclaims dead lanes (drains them, re-queues their leases, resets).
 *   - a worker: the task ring (consumer), its lane's lease, result ring
 *     (producer) and output arena.
 *
 * Records in an arena span: per task, a struct pard_record header followed
 * by `len` bytes, then padding to 8 bytes. An input batch holds `count`
 * records (status 0); an output batch holds one record per task of the
 * result descriptor, status 0 (result), PARD_REC_ERROR (message) or
 * PARD_REC_SKIPPED (already delivered, nothing to say).
 *
 * An array job (submit's `array`, pard_map_array) has fixed-size items and
 * results instead: an input span is `count` items of item_size bytes back
 * to back; a result span is `count` results of result_size bytes, padded
 * to 8 (pard_array_bytes), then one record for each task of the span that
 * has no value, in task order: status PARD_REC_ERROR with a payload of the
 * task's index (uint64) and the message, or PARD_REC_SKIPPED with the index
 * alone. The value bytes of such a task are meaningless.
 *
 * Everything here is read from shared memory by processes that do not trust
 * each other: pard_job_attach validates the geometry once into a private
 * struct pard_job, and every descriptor and record is checked on use.
 */
#ifndef PARD_JOB_H
#define PARD_JOB_H

#include <string.h>

#include "pard/ipc.h"

#ifdef __cplusplus
extern "C" {
#endif

/* 3: array jobs' spans, done marks cleared by the submitter (a process
 * of an earlier layout refuses the region rather than misread it). */
#define PARD_JOB_LAYOUT_VERSION 3u

/* A shared block (pard_share) is a region with one section of this kind. */
#define PARD_SHARE_LAYOUT_VERSION 1u
#define PARD_SEC_SHARED           16u

enum pard_job_section {
    PARD_SEC_JOB = 1,
    PARD_SEC_TASKS = 2,
    PARD_SEC_INPUT = 3,
    PARD_SEC_LANES = 4,
    PARD_SEC_DONE = 5,
};

/* A batch of consecutive tasks, in the task ring. */
struct pard_task_desc {
    uint64_t first;   /* index of the first task */
    uint32_t count;   /* tasks in the batch, >= 1 */
    uint32_t attempt; /* 0 the first time; > 0 when re-queued */
    uint64_t off;     /* input records: offset in the input arena */
    uint64_t len;     /* input records: total bytes */
};
_Static_assert(sizeof(struct pard_task_desc) == 32, "task descriptor is 32 bytes");

/* The results of consecutive tasks, in a lane's result ring. */
struct pard_result_desc {
    uint64_t first;   /* index of the first task */
    uint32_t count;   /* records in the span */
    uint32_t busy_ns; /* time the worker spent running these tasks (capped) */
    uint64_t off;     /* output records: offset in the lane's output arena */
    uint64_t len;     /* output records: total bytes */
    uint64_t end;     /* arena position to release once consumed */
};
_Static_assert(sizeof(struct pard_result_desc) == 40, "result descriptor is 40 bytes");

/* One record in an input or output span. */
struct pard_record {
    uint32_t len;    /* payload bytes that follow */
    uint32_t status; /* 0 ok; PARD_REC_ERROR; PARD_REC_SKIPPED */
};
enum { PARD_REC_OK = 0, PARD_REC_ERROR = 1, PARD_REC_SKIPPED = 2 };

/* Bytes a record of `len` payload bytes takes in a span. */
static inline uint64_t pard_record_size(uint64_t len)
{
    return (sizeof(struct pard_record) + len + 7) & ~(uint64_t)7;
}

/* Bytes of the values of `count` results of `size` bytes in an array job's
 * result span (and of `count` items in its input span, which take no
 * padding of their own). */
static inline uint64_t pard_array_bytes(uint64_t count, uint64_t size)
{
    return (count * size + 7) & ~(uint64_t)7;
}

enum pard_job_state {
    PARD_JOB_RUNNING = 0,
    PARD_JOB_CANCELLED = 1, /* cancel asked: the submitter returns -PARD_ECANCELED */
    PARD_JOB_ENDED = 2,     /* the submitter is done: workers detach */
};

enum pard_lane_state {
    PARD_LANE_FREE = 0,   /* no worker; the daemon may assign it */
    PARD_LANE_ACTIVE = 1, /* a worker serves the job through it */
    PARD_LANE_DEAD = 2,   /* its worker died: the submitter must reclaim it */
};

enum pard_death {
    PARD_DEATH_NONE = 0,
    PARD_DEATH_EXIT = 1,    /* socket closed: killed, exited, or crashed */
    PARD_DEATH_TIMEOUT = 2, /* the daemon killed it: a task ran too long */
};

/* The job control block (section JOB). */
struct pard_job_ctl {
    /* submitter line */
    _Atomic uint64_t submitted; /* tasks whose descriptors were pushed */
    _Atomic uint64_t delivered; /* results handed to the user */
    _Atomic uint64_t failed;    /* of which errors */
    _Atomic uint64_t requeued;  /* tasks re-queued after a death or a reconcile */
    uint8_t pad0_[PARD_CACHELINE - 32];
    /* daemon line */
    _Atomic uint32_t state;       /* enum pard_job_state */
    _Atomic uint32_t lanes_epoch; /* bumped when a lane changes state */
    uint8_t pad1_[PARD_CACHELINE - 8];
    struct pard_event results; /* rung by workers after pushing results, and
                                  by the daemon on cancel or a death */
};
_Static_assert(sizeof(struct pard_job_ctl) == 3 * PARD_CACHELINE, "job ctl layout");

/* A lane's control block, at the start of each lane block. */
struct pard_lane_ctl {
    /* daemon line */
    _Atomic uint32_t state; /* enum pard_lane_state */
    _Atomic uint32_t death; /* enum pard_death, set before state = DEAD */
    _Atomic int32_t pid;    /* the worker's pid */
    _Atomic uint32_t gen;   /* bumped by the daemon at each assignment */
    uint8_t pad0_[PARD_CACHELINE - 16];
    /* worker line: the lease */
    _Atomic uint32_t leased;      /* 1 while the batch below is held */
    _Atomic int32_t crash_signal; /* set by the worker's crash handler */
    _Atomic uint64_t tasks_done;  /* by this lane, for stats */
    _Atomic uint64_t current;     /* index of the task running now */
    _Atomic int64_t started_ns;   /* when `current` started (pard_now_ns) */
    struct pard_task_desc lease;  /* the batch held (valid while leased) */
};
_Static_assert(sizeof(struct pard_lane_ctl) == 2 * PARD_CACHELINE, "lane ctl layout");

/* Sizes a job is created with. Zero fields take the defaults below. */
struct pard_job_geometry {
    uint32_t ring_capacity; /* task descriptors (power of two) */
    uint32_t lanes;         /* lanes = workers that can serve the job at once */
    uint32_t lane_ring;     /* result descriptors per lane (power of two) */
    uint32_t window;        /* done marks; max tasks outstanding (power of two) */
    uint64_t input_arena;   /* bytes of input records */
    uint64_t output_arena;  /* bytes of output records per lane */
};

#define PARD_JOB_DEFAULT_RING   1024u
#define PARD_JOB_DEFAULT_LANES  16u
#define PARD_JOB_DEFAULT_LRING  256u
#define PARD_JOB_DEFAULT_WINDOW (1u << 18)
#define PARD_JOB_DEFAULT_INPUT  (4u << 20)
#define PARD_JOB_DEFAULT_OUTPUT (512u << 10)
#define PARD_JOB_MAX_LANES      256u
#define PARD_JOB_MAX_WINDOW     (1u << 22)
#define PARD_JOB_MAX_ARENA      ((uint64_t)1 << 32)

/* A job as one process sees it: validated geometry and views. */
struct pard_job {
    struct pard_region region;
    struct pard_job_geometry geo; /* validated */
    struct pard_job_ctl *ctl;
    struct pard_ring tasks;
    struct pard_arena input;
    uint8_t *lanes_base; /* first lane block */
    uint64_t lane_stride;
    _Atomic uint64_t *done; /* window marks */
};

/* A lane as one process sees it. */
struct pard_lane {
    struct pard_lane_ctl *ctl;
    struct pard_ring results;
    struct pard_arena output;
};

/*
 * pard_job_geometry_fill - apply defaults and check limits.
 * Returns 0 or -EINVAL / -PARD_ELIMIT with the field out of range.
 */
int pard_job_geometry_fill(struct pard_job_geometry *geo);

/* pard_job_region_size - bytes of the region for a filled geometry. */
uint64_t pard_job_region_size(const struct pard_job_geometry *geo);

/*
 * pard_job_create - daemon side: create the region, lay out and initialise
 * every section, publish. The region's fd is job->region.fd (pass it with
 * SCM_RIGHTS). Returns 0 or a negative code.
 */
int pard_job_create(struct pard_job *job, const struct pard_job_geometry *geo);

/*
 * pard_job_reuse - daemon side: make a closed-over job's region new again
 * for the next job of the same geometry, without the cost of creating one
 * (a fresh region of the default size is ~13 MB to allocate and zero):
 * unpublish it, re-initialise every section the protocol reads (control
 * block, rings, arena headers, lanes, done marks), publish. Only once
 * nobody else maps it: its submitter ended the job (or died) and every
 * worker detached. Returns 0 or a negative code (then close it).
 */
int pard_job_reuse(struct pard_job *job);

/*
 * pard_job_attach - submitter/worker side: map the region behind fd (the
 * caller keeps fd), validate header, geometry and every section, attach
 * the task ring and input arena. Lanes are attached one at a time with
 * pard_job_lane. Returns 0, -PARD_EBADMAGIC, -PARD_EVERSION, -PARD_ESIZE
 * or -PARD_ECORRUPT.
 */
int pard_job_attach(struct pard_job *job, int fd);

/*
 * pard_job_lane - attach lane `index`: validate its ring and arena headers.
 * Returns 0, -EINVAL (index out of range) or -PARD_ECORRUPT.
 */
int pard_job_lane(const struct pard_job *job, uint32_t index, struct pard_lane *lane);

/*
 * pard_job_lane_reset - re-initialise a lane's ring, arena and lease (the
 * submitter, after draining a dead lane; nobody else may use it then).
 */
int pard_job_lane_reset(const struct pard_job *job, uint32_t index);

/* pard_job_close - unmap. */
void pard_job_close(struct pard_job *job);

/*
 * pard_job_attach_kept, pard_job_close_kept - for a process that attaches
 * one job after another: close keeps the mapping in *kept (an empty
 * region to start with: pard_region_close leaves one), and the next attach
 * takes it over when the daemon gave the same region again (it keeps the
 * last one for the next job of the same sizes), else unmaps it. *kept
 * holds memory while nothing runs: close it when done.
 */
int pard_job_attach_kept(struct pard_job *job, int fd, struct pard_region *kept);
void pard_job_close_kept(struct pard_job *job, struct pard_region *kept);

/*
 * Record cursors: walk the records of a span, bounds-checked. `base` and
 * `len` come from pard_arena_read. pard_records_next returns 1 with the
 * record's header and payload, 0 at the end of the span, -PARD_ECORRUPT
 * when a record runs past the span.
 */
struct pard_records {
    const uint8_t *base;
    uint64_t len;
    uint64_t pos;
};
static inline void pard_records_init(struct pard_records *it, const void *base, uint64_t len)
{
    it->base = (const uint8_t *)base;
    it->len = len;
    it->pos = 0;
}

/* Inline: both ends of a job call it once per task. */
static inline int pard_records_next(struct pard_records *it, struct pard_record *rec,
                                    const void **payload)
{
    if (it->pos >= it->len)
        return 0;
    if (it->len - it->pos < sizeof(*rec))
        return -PARD_ECORRUPT;
    memcpy(rec, it->base + it->pos, sizeof(*rec));
    uint64_t size = pard_record_size(rec->len);
    if (size > it->len - it->pos) {
        /* The last record may omit its padding. */
        if (sizeof(*rec) + (uint64_t)rec->len > it->len - it->pos)
            return -PARD_ECORRUPT;
        size = it->len - it->pos;
    }
    *payload = it->base + it->pos + sizeof(*rec);
    it->pos += size;
    return 1;
}

/*
 * pard_socket_path - the control socket path: `explicit_path` when not
 * NULL, else $PARD_SOCKET, else $XDG_RUNTIME_DIR/pard.sock, else
 * /tmp/pard-$UID/pard.sock. Writes at most `cap` bytes; returns 0 or
 * -ENAMETOOLONG.
 */
int pard_socket_path(const char *explicit_path, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif /* PARD_JOB_H */
