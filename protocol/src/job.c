/*
 * job.c — creating and attaching job regions (see pard/job.h).
 *
 * Owns: the geometry of a job (defaults, limits, sizes), the order of the
 * sections, and their validation on attach. The geometry travels in the
 * region header's user[] words and is re-derived and checked against the
 * section table, so an attacher never trusts a size it did not compute.
 *
 * Must not: run any part of the data plane (that is libpard's), or keep
 * pointers derived from unchecked shared values.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pard/job.h"

#define IS_POW2(x) ((x) != 0 && ((x) & ((x)-1)) == 0)
#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)

int pard_job_geometry_fill(struct pard_job_geometry *g)
{
    if (g->ring_capacity == 0)
        g->ring_capacity = PARD_JOB_DEFAULT_RING;
    if (g->lanes == 0)
        g->lanes = PARD_JOB_DEFAULT_LANES;
    if (g->lane_ring == 0)
        g->lane_ring = PARD_JOB_DEFAULT_LRING;
    if (g->window == 0)
        g->window = PARD_JOB_DEFAULT_WINDOW;
    if (g->input_arena == 0)
        g->input_arena = PARD_JOB_DEFAULT_INPUT;
    if (g->output_arena == 0)
        g->output_arena = PARD_JOB_DEFAULT_OUTPUT;
    g->input_arena = ALIGN64(g->input_arena);
    g->output_arena = ALIGN64(g->output_arena);
    if (!IS_POW2(g->ring_capacity) || !IS_POW2(g->lane_ring) || !IS_POW2(g->window))
        return -EINVAL;
    if (g->ring_capacity > PARD_RING_MAX_CAPACITY || g->lane_ring > PARD_RING_MAX_CAPACITY ||
        g->lanes > PARD_JOB_MAX_LANES || g->window > PARD_JOB_MAX_WINDOW ||
        g->input_arena > PARD_JOB_MAX_ARENA || g->output_arena > PARD_JOB_MAX_ARENA ||
        g->ring_capacity < 2 || g->lane_ring < 2)
        return -PARD_ELIMIT;
    return 0;
}

static uint64_t lane_ring_bytes(const struct pard_job_geometry *g)
{
    return ALIGN64(
        pard_ring_footprint(PARD_RING_SPSC, g->lane_ring, sizeof(struct pard_result_desc)));
}

static uint64_t lane_stride(const struct pard_job_geometry *g)
{
    return sizeof(struct pard_lane_ctl) + lane_ring_bytes(g) +
           ALIGN64(pard_arena_footprint(g->output_arena));
}

/* Section sizes in layout order. */
static void section_sizes(const struct pard_job_geometry *g, uint64_t sizes[5])
{
    sizes[0] = sizeof(struct pard_job_ctl);
    sizes[1] = pard_ring_footprint(PARD_RING_MPMC, g->ring_capacity, sizeof(struct pard_task_desc));
    sizes[2] = pard_arena_footprint(g->input_arena);
    sizes[3] = lane_stride(g) * g->lanes;
    sizes[4] = (uint64_t)g->window * sizeof(uint64_t);
}

static const uint32_t section_kinds[5] = {PARD_SEC_JOB, PARD_SEC_TASKS, PARD_SEC_INPUT,
                                          PARD_SEC_LANES, PARD_SEC_DONE};

uint64_t pard_job_region_size(const struct pard_job_geometry *g)
{
    uint64_t sizes[5], total = ALIGN64(sizeof(struct pard_region_header));
    section_sizes(g, sizes);
    for (int i = 0; i < 5; i++)
        total += ALIGN64(sizes[i]);
    return total;
}

static void pack_geometry(const struct pard_job_geometry *g, uint64_t user[4])
{
    user[0] = (uint64_t)g->ring_capacity << 32 | g->lanes;
    user[1] = (uint64_t)g->lane_ring << 32 | g->window;
    user[2] = g->input_arena;
    user[3] = g->output_arena;
}

static void unpack_geometry(const uint64_t user[4], struct pard_job_geometry *g)
{
    g->ring_capacity = (uint32_t)(user[0] >> 32);
    g->lanes = (uint32_t)user[0];
    g->lane_ring = (uint32_t)(user[1] >> 32);
    g->window = (uint32_t)user[1];
    g->input_arena = user[2];
    g->output_arena = user[3];
}

/* Lay out lane block b's result ring and output arena (after its ctl). */
static int lane_lay_out(const struct pard_job *job, uint8_t *b)
{
    const uint64_t ctl_bytes = sizeof(struct pard_lane_ctl);
    struct pard_ring ring;
    struct pard_arena arena;
    uint64_t rbytes = lane_ring_bytes(&job->geo);
    int rc = pard_ring_init(&ring, b + ctl_bytes, rbytes, PARD_RING_SPSC, job->geo.lane_ring,
                            sizeof(struct pard_result_desc));
    if (rc == 0)
        rc = pard_arena_init(&arena, b + ctl_bytes + rbytes, job->lane_stride - ctl_bytes - rbytes,
                             job->geo.output_arena);
    return rc;
}

static int lane_init(const struct pard_job *job, uint32_t i)
{
    uint8_t *b = job->lanes_base + (uint64_t)i * job->lane_stride;
    struct pard_lane_ctl *ctl = (struct pard_lane_ctl *)b;
    memset(ctl, 0, sizeof(*ctl));
    return lane_lay_out(job, b);
}

/* Lay out and initialise every section of job->region (open, not yet
 * published) for job->geo, then publish. `fresh`: the region was just
 * created, so its contents are zero (ftruncate). */
static int job_lay_out(struct pard_job *job, bool fresh)
{
    uint64_t sizes[5], offs[5];
    section_sizes(&job->geo, sizes);
    for (int i = 0; i < 5; i++) {
        int rc = pard_region_add_section(&job->region, section_kinds[i], sizes[i], &offs[i]);
        if (rc < 0)
            return rc;
    }
    uint8_t *base = job->region.base;
    job->ctl = (struct pard_job_ctl *)(base + offs[0]);
    memset(job->ctl, 0, sizeof(*job->ctl));
    pard_event_init(&job->ctl->results);
    int rc = pard_ring_init(&job->tasks, base + offs[1], sizes[1], PARD_RING_MPMC,
                            job->geo.ring_capacity, sizeof(struct pard_task_desc));
    if (rc == 0)
        rc = pard_arena_init(&job->input, base + offs[2], sizes[2], job->geo.input_arena);
    if (rc != 0)
        return rc;
    job->lanes_base = base + offs[3];
    job->lane_stride = lane_stride(&job->geo);
    for (uint32_t i = 0; i < job->geo.lanes && rc == 0; i++) {
        /* Reused: keep the lane's generation counting, so that a worker
         * the daemon lost track of in the last job (it checks gen before
         * it writes) never matches the next one. */
        struct pard_lane_ctl *ctl =
            (struct pard_lane_ctl *)(job->lanes_base + (uint64_t)i * job->lane_stride);
        uint32_t gen = fresh ? 0 : atomic_load_explicit(&ctl->gen, memory_order_relaxed) + 1;
        rc = lane_init(job, i);
        atomic_store_explicit(&ctl->gen, gen, memory_order_relaxed);
    }
    if (rc != 0)
        return rc;
    /* The done marks are left as the last job wrote them: a submitter
     * clears them before it writes its first (pard/job.h). */
    job->done = (_Atomic uint64_t *)(base + offs[4]);
    uint64_t user[4];
    pack_geometry(&job->geo, user);
    pard_region_publish(&job->region, PARD_JOB_LAYOUT_VERSION, user);
    return 0;
}

int pard_job_create(struct pard_job *job, const struct pard_job_geometry *geo)
{
    memset(job, 0, sizeof(*job));
    job->geo = *geo;
    int rc = pard_job_geometry_fill(&job->geo);
    if (rc != 0)
        return rc;
    rc = pard_region_open(&job->region, pard_job_region_size(&job->geo));
    if (rc != 0)
        return rc;
    rc = job_lay_out(job, true);
    if (rc != 0) {
        pard_region_close(&job->region);
        return rc < 0 ? rc : -EINVAL;
    }
    return 0;
}

int pard_job_reuse(struct pard_job *job)
{
    pard_region_unpublish(&job->region);
    int rc = job_lay_out(job, false);
    return rc < 0 ? rc : rc > 0 ? -EINVAL : 0;
}

int pard_job_attach(struct pard_job *job, int fd)
{
    return pard_job_attach_kept(job, fd, NULL);
}

int pard_job_attach_kept(struct pard_job *job, int fd, struct pard_region *kept)
{
    memset(job, 0, sizeof(*job));
    int rc = pard_region_attach_kept(&job->region, fd, PARD_JOB_LAYOUT_VERSION, kept);
    if (rc != 0)
        return rc;
    uint64_t user[4];
    for (unsigned i = 0; i < 4; i++)
        user[i] = pard_region_user(&job->region, i);
    unpack_geometry(user, &job->geo);
    struct pard_job_geometry check = job->geo;
    rc = -PARD_ECORRUPT;
    /* Filling must change nothing: every field present and in range. */
    if (pard_job_geometry_fill(&check) != 0 || memcmp(&check, &job->geo, sizeof(check)) != 0)
        goto fail;
    if (job->region.nsections != 5)
        goto fail;
    uint64_t sizes[5];
    section_sizes(&job->geo, sizes);
    void *sec[5];
    for (int i = 0; i < 5; i++) {
        uint64_t have = 0;
        sec[i] = pard_region_section(&job->region, (uint32_t)i, &have);
        if (job->region.sections[i].kind != section_kinds[i] || have < sizes[i])
            goto fail;
    }
    job->ctl = sec[0];
    rc = pard_ring_attach(&job->tasks, sec[1], sizes[1], PARD_RING_MPMC);
    if (rc == 0 && job->tasks.elem_size != sizeof(struct pard_task_desc))
        rc = -PARD_ECORRUPT;
    if (rc == 0)
        rc = pard_arena_attach(&job->input, sec[2], sizes[2]);
    if (rc != 0)
        goto fail;
    job->lanes_base = sec[3];
    job->lane_stride = lane_stride(&job->geo);
    job->done = sec[4];
    return 0;
fail:
    pard_region_close(&job->region);
    return rc;
}

int pard_job_lane(const struct pard_job *job, uint32_t index, struct pard_lane *lane)
{
    if (index >= job->geo.lanes)
        return -EINVAL;
    uint8_t *b = job->lanes_base + (uint64_t)index * job->lane_stride;
    uint64_t rbytes = lane_ring_bytes(&job->geo);
    lane->ctl = (struct pard_lane_ctl *)b;
    int rc = pard_ring_attach(&lane->results, b + sizeof(*lane->ctl), rbytes, PARD_RING_SPSC);
    if (rc == 0 && lane->results.elem_size != sizeof(struct pard_result_desc))
        rc = -PARD_ECORRUPT;
    if (rc == 0)
        rc = pard_arena_attach(&lane->output, b + sizeof(*lane->ctl) + rbytes,
                               job->lane_stride - sizeof(*lane->ctl) - rbytes);
    if (rc == 0 && lane->output.capacity != job->geo.output_arena)
        rc = -PARD_ECORRUPT;
    return rc == -PARD_EBADMAGIC || rc == -PARD_ESIZE ? -PARD_ECORRUPT : rc;
}

int pard_job_lane_reset(const struct pard_job *job, uint32_t index)
{
    if (index >= job->geo.lanes)
        return -EINVAL;
    uint8_t *b = job->lanes_base + (uint64_t)index * job->lane_stride;
    struct pard_lane_ctl *ctl = (struct pard_lane_ctl *)b;
    /* Clear the worker's line and re-lay the ring and arena, but never
     * write the daemon's line: it reads state concurrently, and a state
     * that read FREE for a moment could be handed out mid-reset. */
    memset((uint8_t *)ctl + offsetof(struct pard_lane_ctl, leased), 0,
           sizeof(*ctl) - offsetof(struct pard_lane_ctl, leased));
    return lane_lay_out(job, b);
}

void pard_job_close(struct pard_job *job)
{
    pard_region_close(&job->region);
    memset(job, 0, sizeof(*job));
}

void pard_job_close_kept(struct pard_job *job, struct pard_region *kept)
{
    pard_region_close(kept);
    *kept = job->region;
    memset(job, 0, sizeof(*job));
}

int pard_socket_path(const char *explicit_path, char *buf, size_t cap)
{
    const char *env;
    int n;
    if (explicit_path && *explicit_path)
        n = snprintf(buf, cap, "%s", explicit_path);
    else if ((env = getenv("PARD_SOCKET")) && *env)
        n = snprintf(buf, cap, "%s", env);
    else if ((env = getenv("XDG_RUNTIME_DIR")) && *env)
        n = snprintf(buf, cap, "%s/pard.sock", env);
    else
        n = snprintf(buf, cap, "/tmp/pard-%u/pard.sock", (unsigned)getuid());
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    return 0;
}
