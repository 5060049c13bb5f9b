/*
 * jobs.c — jobs and lanes: create a job's region, give lanes to workers,
 * notice deaths and time limits, end jobs and free them.
 *
 * What the daemon writes in a job region (docs/architecture.md, pard/job.h):
 * the job's state (CANCELLED, ENDED), and per lane its state, death, pid
 * and generation; it rings ctl->results (the submitter) and the task
 * ring's not_empty (waiting workers) when the job's state changes or a lane
 * dies. It reads leases (time limits) and counters (stats). It never
 * touches a ring's indices or an arena, and re-queues nothing: the
 * submitter reclaims dead lanes.
 *
 * Lane life: FREE --daemon assigns--> ACTIVE --worker's socket closes, or
 * it leaves on its own--> DEAD --submitter drains and resets--> FREE. The
 * daemon assigns only lanes it sees FREE (compare-and-swap, so a hostile
 * submitter cannot make two workers share a lane) and that no connected
 * worker holds.
 *
 * Scheduling: a worker serves one job at a time. Idle workers (just
 * registered, or just detached) join the oldest running job that serves
 * one of their functions and has a FREE lane; jobs for one function run
 * first come, first served. Lanes come FREE without telling us (the
 * submitter writes shared memory), so the watch timer re-runs the
 * scheduler while an idle worker could use a busy job.
 *
 * A job is freed (its mapping closed; the region vanishes with its last
 * user) once it has ended — job_end, its submitter gone, or shutdown — and
 * no worker holds a lane of it any more (dead workers count as gone).
 *
 * Must not: block, copy tasks, or trust a value read from a region beyond
 * using it as a number in a report.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

/* ======================================================================
 * Helpers
 * ====================================================================== */

struct pard_lane_ctl *pard__job_lane_ctl(const struct pard__job *j, uint32_t i)
{
    /* lanes_base and lane_stride are our own (we created the region). */
    return (struct pard_lane_ctl *)(j->shm.lanes_base + (uint64_t)i * j->shm.lane_stride);
}

bool pard__worker_serves(const struct pard__session *s, const char *function)
{
    for (uint32_t i = 0; i < s->nfunctions; i++)
        if (strcmp(s->functions[i], function) == 0)
            return true;
    return false;
}

static struct pard__job *job_find(struct pard__daemon *d, uint64_t id)
{
    struct pard__list *pos;
    for (pos = d->jobs.next; pos != &d->jobs; pos = pos->next) {
        struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->id == id)
            return j;
    }
    return NULL;
}

/* A worker that is connected (busy or idle) serves the function. */
static bool any_worker_serves(struct pard__daemon *d, const char *function)
{
    struct pard__list *pos;
    for (pos = d->sessions.next; pos != &d->sessions; pos = pos->next) {
        struct pard__session *s = PARD__CONTAINER(pos, struct pard__session, link);
        if (!s->closed && s->greeted && s->role == PARD_ROLE_WORKER &&
            pard__worker_serves(s, function))
            return true;
    }
    return false;
}

/*
 * Workers may yet come: supervised children not registered yet, or
 * connected workers between their hello and their register. A submit then
 * waits (up to PARD__PENDING_MS) instead of failing with ENOFUNC.
 */
static bool workers_starting(struct pard__daemon *d)
{
    if (pard__supervise_starting(d))
        return true;
    struct pard__list *pos;
    for (pos = d->sessions.next; pos != &d->sessions; pos = pos->next) {
        struct pard__session *s = PARD__CONTAINER(pos, struct pard__session, link);
        if (!s->closed && s->greeted && s->role == PARD_ROLE_WORKER && s->nfunctions == 0)
            return true;
    }
    return false;
}

static bool job_running(const struct pard__job *j)
{
    /* Acquire: pairs with whoever set CANCELLED (us, or a stray writer). */
    return j->live && !j->ended &&
           atomic_load_explicit(&j->shm.ctl->state, memory_order_acquire) == PARD_JOB_RUNNING;
}

uint64_t pard__worker_tasks_done(const struct pard__session *s)
{
    uint64_t n = s->tasks_done;
    if (s->job && s->job->live) {
        struct pard_lane_ctl *ctl = pard__job_lane_ctl(s->job, s->lane);
        uint64_t now = atomic_load_explicit(&ctl->tasks_done, memory_order_relaxed);
        if (now >= s->lane_done_base) /* a reset lane restarts at 0 */
            n += now - s->lane_done_base;
    }
    return n;
}

uint64_t pard__jobs_delivered(const struct pard__daemon *d)
{
    uint64_t n = d->done_finished;
    const struct pard__list *pos;
    for (pos = d->jobs.next; pos != &d->jobs; pos = pos->next) {
        const struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->live)
            n += atomic_load_explicit(&j->shm.ctl->delivered, memory_order_relaxed);
    }
    return n;
}

/* Ring everyone who may be asleep on the job: the submitter (results),
 * workers waiting for tasks (not_empty) or for room in their lane
 * (not_full). */
static void ring_all(struct pard__job *j)
{
    pard_event_notify(&j->shm.ctl->results);
    pard_event_notify(&j->shm.tasks.hdr->not_empty);
    for (uint32_t i = 0; i < j->geo.lanes; i++) {
        if (!j->owner[i])
            continue;
        struct pard_lane lane;
        if (pard_job_lane(&j->shm, i, &lane) == 0)
            pard_event_notify(&lane.results.hdr->not_full);
    }
}

/* ======================================================================
 * Freeing
 * ====================================================================== */

#define SPARE_IDLE_NS (10 * 1000000000LL)

void pard__jobs_drop_spare(struct pard__daemon *d)
{
    if (!d->has_spare)
        return;
    pard__log_debug("spare job region given back (%s)", pard__fmt_bytes(d->spare.region.size, 0));
    pard_job_close(&d->spare);
    d->has_spare = false;
}

void pard__jobs_trim(struct pard__daemon *d, int64_t now)
{
    if (d->has_spare && now - d->spare_since_ns > SPARE_IDLE_NS)
        pard__jobs_drop_spare(d);
}

/*
 * A freed job's region becomes the spare, unless pard is stopping. Safe to
 * use again: a live job ends only through its submitter (its job_end frame,
 * sent once it is done with the memory, or its death), and it is freed
 * only when every worker has detached (they unmap first) or died.
 */
static void keep_or_close_region(struct pard__daemon *d, struct pard__job *j)
{
    if (d->stopping) {
        pard_job_close(&j->shm);
        return;
    }
    pard__jobs_drop_spare(d); /* the newest is the likeliest to fit the next */
    d->spare = j->shm;
    d->has_spare = true;
    d->spare_since_ns = pard_now_ns();
    memset(&j->shm, 0, sizeof(j->shm));
}

static void job_unlink_free(struct pard__job *j)
{
    struct pard__daemon *d = j->d;
    pard__list_remove(&j->link);
    d->njobs--;
    if (j->live) {
        d->done_finished += atomic_load_explicit(&j->shm.ctl->delivered, memory_order_relaxed);
        d->requeued_finished += atomic_load_explicit(&j->shm.ctl->requeued, memory_order_relaxed);
        d->shm_bytes -= j->shm_bytes;
        keep_or_close_region(d, j);
    }
    pard__share_put(j->share);
    free(j->owner);
    free(j);
}

static void job_maybe_free(struct pard__job *j)
{
    if (!j->ended || j->nattached > 0)
        return;
    pard__log_debug("job %llu freed (%s of shared memory released)", (unsigned long long)j->id,
                    pard__fmt_bytes(j->shm_bytes, 0));
    job_unlink_free(j);
}

/* The worker leaves its lane in our books (the lane's state is the
 * caller's business). */
static void worker_leave(struct pard__session *w)
{
    struct pard__job *j = w->job;
    if (!j)
        return;
    w->tasks_done = pard__worker_tasks_done(w);
    j->owner[w->lane] = NULL;
    j->nattached--;
    w->job = NULL;
    w->detach_sent = false;
    w->timeout_killed = false;
}

/* The lane dies: the submitter must drain and reset it. */
static void lane_dead(struct pard__job *j, uint32_t lane, uint32_t death)
{
    struct pard_lane_ctl *ctl = pard__job_lane_ctl(j, lane);
    uint32_t none = PARD_DEATH_NONE;
    /* Keep a TIMEOUT we set before the kill; otherwise record the reason. */
    atomic_compare_exchange_strong_explicit(&ctl->death, &none, death, memory_order_relaxed,
                                            memory_order_relaxed);
    /* Release: the death reason is visible to whoever sees DEAD. */
    atomic_store_explicit(&ctl->state, PARD_LANE_DEAD, memory_order_release);
    atomic_fetch_add_explicit(&j->shm.ctl->lanes_epoch, 1, memory_order_release);
    /* notify() fences before it looks for sleepers: DEAD is published. */
    pard_event_notify(&j->shm.ctl->results);
}

/* ======================================================================
 * Ending
 * ====================================================================== */

static void job_end(struct pard__job *j, const char *why)
{
    if (j->ended)
        return;
    j->ended = true;
    if (!j->live) {
        pard__log_debug("pending job %llu dropped: %s", (unsigned long long)j->id, why);
        job_unlink_free(j);
        return;
    }
    /* Release: everything we wrote before is visible with ENDED. */
    atomic_store_explicit(&j->shm.ctl->state, PARD_JOB_ENDED, memory_order_release);
    ring_all(j);
    struct pard_msg *m = j->d->msg_out;
    for (uint32_t i = 0; i < j->geo.lanes; i++) {
        struct pard__session *w = j->owner[i];
        if (!w || w->detach_sent)
            continue;
        pard_msg_init(m, PARD_MSG_DETACH);
        m->detach.job_id = j->id;
        w->detach_sent = true;
        pard__session_send(w, m, -1);
    }
    pard__log_info("job %llu (%s) ended: %s; %llu task%s delivered%s", (unsigned long long)j->id,
                   j->function, why, (unsigned long long)atomic_load(&j->shm.ctl->delivered),
                   atomic_load(&j->shm.ctl->delivered) == 1 ? "" : "s",
                   j->nattached ? "; waiting for its workers to detach" : "");
    job_maybe_free(j);
}

void pard__job_end_msg(struct pard__session *s, uint64_t job_id)
{
    struct pard__job *j = job_find(s->d, job_id);
    if (!j || j->submitter != s) {
        pard__session_send_error(s, -PARD_ENOJOB, job_id,
                                 "job_end: you have no job %llu (it is not yours, or it is "
                                 "already gone)",
                                 (unsigned long long)job_id);
        return;
    }
    job_end(j, "its submitter ended it");
}

void pard__jobs_submitter_gone(struct pard__session *s)
{
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &s->d->jobs)
    {
        struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->submitter != s)
            continue;
        j->submitter = NULL;
        if (!j->ended && j->live) {
            /* Cancelled first, so anyone who looks sees why it stopped. */
            atomic_store_explicit(&j->shm.ctl->state, PARD_JOB_CANCELLED, memory_order_release);
            pard__log_warn("job %llu (%s): its submitter (pid %d) disconnected before it "
                           "ended; cancelling it and reclaiming its memory",
                           (unsigned long long)j->id, j->function, (int)s->pid);
        }
        job_end(j, "its submitter disconnected");
    }
}

void pard__job_cancel_msg(struct pard__session *s, uint64_t job_id)
{
    struct pard__daemon *d = s->d;
    struct pard__job *j = job_find(d, job_id);
    if (!j || j->ended) {
        pard__session_send_error(s, -PARD_ENOJOB, job_id,
                                 "no job %llu: it finished already or never existed (`parctl "
                                 "jobs` lists the running ones)",
                                 (unsigned long long)job_id);
        return;
    }
    if (!j->live) {
        /* Nobody has the job yet: tell its submitter instead of the job. */
        if (j->submitter)
            pard__session_send_error(j->submitter, -PARD_ECANCELED, 0,
                                     "job %llu (%s) was cancelled before a worker took it",
                                     (unsigned long long)j->id, j->function);
        pard__log_info("pending job %llu (%s) cancelled by %s", (unsigned long long)j->id,
                       j->function, pard__session_desc(s));
        job_end(j, "cancelled");
    } else {
        uint32_t running = PARD_JOB_RUNNING;
        /* Release: pairs with the submitter's and workers' acquire loads. */
        if (atomic_compare_exchange_strong_explicit(&j->shm.ctl->state, &running,
                                                    PARD_JOB_CANCELLED, memory_order_acq_rel,
                                                    memory_order_acquire)) {
            ring_all(j);
            pard__log_info("job %llu (%s) cancelled by %s", (unsigned long long)j->id, j->function,
                           pard__session_desc(s));
        }
    }
    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_OK);
    m->ok.ref = job_id;
    pard__session_send(s, m, -1);
}

/* ======================================================================
 * Workers: death, detach
 * ====================================================================== */

void pard__jobs_worker_gone(struct pard__session *w)
{
    struct pard__job *j = w->job;
    if (!j)
        return;
    struct pard__daemon *d = w->d;
    struct pard_lane_ctl *ctl = pard__job_lane_ctl(j, w->lane);
    /* Read before the lane is marked: a worker that leaves between batches
     * (--max-tasks, or a crash outside any task) took nothing with it. */
    bool leased = atomic_load_explicit(&ctl->leased, memory_order_acquire) != 0;
    lane_dead(j, w->lane, PARD_DEATH_EXIT);
    bool timeout = atomic_load(&ctl->death) == PARD_DEATH_TIMEOUT && w->timeout_killed;
    if (!j->ended && !w->detach_sent && !leased && !timeout) {
        pard__log_info("%s disconnected between batches of job %llu (%s) on lane %u; it held "
                       "no task",
                       pard__session_desc(w), (unsigned long long)j->id, j->function, w->lane);
    } else if (!j->ended && !w->detach_sent) {
        d->worker_deaths++;
        pard__log_warn("%s died while serving job %llu (%s) on lane %u%s; the submitter "
                       "re-queues its unfinished tasks",
                       pard__session_desc(w), (unsigned long long)j->id, j->function, w->lane,
                       timeout ? " (killed for its time limit)" : "");
    } else {
        pard__log_debug("%s left job %llu by disconnecting", pard__session_desc(w),
                        (unsigned long long)j->id);
    }
    worker_leave(w);
    job_maybe_free(j);
}

void pard__job_detached_msg(struct pard__session *w, uint64_t job_id)
{
    struct pard__job *j = w->job;
    if (!j || j->id != job_id) {
        pard__log_debug("%s says it detached from job %llu, which it does not hold; ignored",
                        pard__session_desc(w), (unsigned long long)job_id);
        return;
    }
    if (!j->ended && !w->detach_sent) {
        /* It left on its own (a cancelled job, or it could not attach):
         * hand the lane back through the submitter, which drains it. */
        bool running = job_running(j);
        lane_dead(j, w->lane, PARD_DEATH_EXIT);
        if (running) {
            w->refused_job = j->id;
            pard__log_warn("%s left job %llu (%s) on its own; its lane %u goes back to the "
                           "submitter, and it will not be offered this job again",
                           pard__session_desc(w), (unsigned long long)j->id, j->function, w->lane);
        } else {
            pard__log_debug("%s left cancelled job %llu", pard__session_desc(w),
                            (unsigned long long)j->id);
        }
    } else {
        pard__log_debug("%s detached from job %llu", pard__session_desc(w),
                        (unsigned long long)j->id);
    }
    worker_leave(w);
    job_maybe_free(j);
    pard__schedule(w->d);
    pard__watch_kick(w->d);
}

void pard__job_worker_error(struct pard__session *w, const struct pard_msg_error *e)
{
    struct pard__job *j = w->job;
    if (j && e->ref == j->id)
        pard__log_warn("%s reports a problem with job %llu (%s): %s", pard__session_desc(w),
                       (unsigned long long)j->id, j->function, e->message);
    else
        pard__log_warn("%s reports an error: %s (%s)", pard__session_desc(w), e->message,
                       pard_strerror(e->code));
}

/* ======================================================================
 * Assigning lanes
 * ====================================================================== */

static int free_lane(const struct pard__job *j)
{
    for (uint32_t i = 0; i < j->geo.lanes; i++) {
        if (j->owner[i])
            continue;
        /* Acquire: the submitter's reset of a dead lane happens before FREE. */
        if (atomic_load_explicit(&pard__job_lane_ctl(j, i)->state, memory_order_acquire) ==
            PARD_LANE_FREE)
            return (int)i;
    }
    return -1;
}

/* Give lane `lane` of j to worker w and send it attach. Returns false when
 * the lane was not FREE after all. */
static bool assign(struct pard__session *w, struct pard__job *j, uint32_t lane)
{
    struct pard_lane_ctl *ctl = pard__job_lane_ctl(j, lane);
    /* The daemon line is ours while the lane is FREE: fill it, then flip
     * the state; the CAS (release) publishes pid, gen and death with
     * ACTIVE, and fails if anyone changed the state meanwhile. */
    atomic_store_explicit(&ctl->death, PARD_DEATH_NONE, memory_order_relaxed);
    atomic_store_explicit(&ctl->pid, (int32_t)w->pid, memory_order_relaxed);
    atomic_fetch_add_explicit(&ctl->gen, 1, memory_order_relaxed);
    uint32_t expect = PARD_LANE_FREE;
    if (!atomic_compare_exchange_strong_explicit(&ctl->state, &expect, PARD_LANE_ACTIVE,
                                                 memory_order_acq_rel, memory_order_acquire))
        return false;
    atomic_fetch_add_explicit(&j->shm.ctl->lanes_epoch, 1, memory_order_release);
    j->owner[lane] = w;
    j->nattached++;
    w->job = j;
    w->lane = lane;
    w->detach_sent = false;
    w->timeout_killed = false;
    w->lane_done_base = atomic_load_explicit(&ctl->tasks_done, memory_order_relaxed);

    /* The job's shared block goes first: the attach names it. */
    if (j->share)
        pard__share_send(w, j->share);
    struct pard_msg *m = w->d->msg_out;
    pard_msg_init(m, PARD_MSG_ATTACH);
    m->attach.job_id = j->id;
    m->attach.lane = lane;
    m->attach.timeout_ms = j->timeout_ms;
    m->attach.wait_mode = j->wait_mode;
    m->attach.shared = j->share ? j->share->handle : 0;
    m->attach.array = j->array;
    m->attach.item_size = j->item_size;
    m->attach.result_size = j->result_size;
    snprintf(m->attach.function, sizeof(m->attach.function), "%s", j->function);
    pard__log_info("%s joins job %llu (%s) on lane %u", pard__session_desc(w),
                   (unsigned long long)j->id, j->function, lane);
    /* A failed send queues a close; the death path then frees the lane. */
    pard__session_send(w, m, j->shm.region.fd);
    return true;
}

void pard__schedule(struct pard__daemon *d)
{
    if (d->stopping || pard__list_empty(&d->jobs))
        return;
    struct pard__list *sp, *jp;
    for (sp = d->sessions.next; sp != &d->sessions; sp = sp->next) {
        struct pard__session *w = PARD__CONTAINER(sp, struct pard__session, link);
        if (!pard__session_is_idle_worker(w) || w->reap_link.next != &w->reap_link)
            continue;
        for (jp = d->jobs.next; jp != &d->jobs; jp = jp->next) {
            struct pard__job *j = PARD__CONTAINER(jp, struct pard__job, link);
            if (!job_running(j) || j->id == w->refused_job || !pard__worker_serves(w, j->function))
                continue;
            int lane;
            while ((lane = free_lane(j)) >= 0 && !assign(w, j, (uint32_t)lane))
                ;
            if (lane >= 0)
                break;
        }
    }
}

/* ======================================================================
 * Submitting
 * ====================================================================== */

/* Create the region of a job and answer its submitter. false: the job
 * failed and was dropped (the submitter got an error). */
static bool job_activate(struct pard__job *j)
{
    struct pard__daemon *d = j->d;
    struct pard__session *s = j->submitter;
    uint64_t size = pard_job_region_size(&j->geo);
    bool reuse = d->has_spare && memcmp(&d->spare.geo, &j->geo, sizeof(j->geo)) == 0;
    if (!reuse)
        pard__jobs_drop_spare(d); /* its room counts for the new one */
    if (d->shm_bytes + d->share_bytes + size > d->cfg.max_shm) {
        pard__jobs_drop_spare(d);
        pard__session_send_error(s, -PARD_ELIMIT, 0,
                                 "job for %s needs %s of shared memory, but jobs already hold %s "
                                 "of the %s allowed (--max-shm); wait for jobs to finish, or ask "
                                 "for smaller arenas or fewer lanes",
                                 j->function, pard__fmt_bytes(size, 0),
                                 pard__fmt_bytes(d->shm_bytes + d->share_bytes, 1),
                                 pard__fmt_bytes(d->cfg.max_shm, 2));
        job_end(j, "over the shared memory limit");
        return false;
    }
    if (reuse) {
        j->shm = d->spare;
        d->has_spare = false;
        int rc = pard_job_reuse(&j->shm);
        if (rc != 0) {
            pard__log_warn("cannot reuse a job region for job %llu (%s); creating one",
                           (unsigned long long)j->id, pard_strerror(rc));
            pard_job_close(&j->shm);
            reuse = false;
        }
    }
    /* An over-full /dev/shm makes first touches SIGBUS: check the room. */
    struct statvfs vfs;
    if (!reuse && statvfs("/dev/shm", &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < size) {
        pard__session_send_error(s, -PARD_ELIMIT, 0,
                                 "job for %s needs %s of shared memory, but /dev/shm has only %s "
                                 "free; free some, or ask for smaller arenas or fewer lanes",
                                 j->function, pard__fmt_bytes(size, 0),
                                 pard__fmt_bytes((uint64_t)vfs.f_bavail * vfs.f_frsize, 1));
        job_end(j, "/dev/shm is full");
        return false;
    }
    j->owner = calloc(j->geo.lanes ? j->geo.lanes : 1, sizeof(*j->owner));
    int rc = !j->owner ? -ENOMEM : reuse ? 0 : pard_job_create(&j->shm, &j->geo);
    if (rc != 0) {
        if (reuse) /* the region is not the job's until it is live */
            pard_job_close(&j->shm);
        pard__log_error("cannot create the shared memory of job %llu (%s, %s): %s",
                        (unsigned long long)j->id, j->function, pard__fmt_bytes(size, 0),
                        pard_strerror(rc));
        pard__session_send_error(s, rc, 0,
                                 "cannot create the job's shared memory (%s): %s; check the room "
                                 "in /dev/shm",
                                 pard__fmt_bytes(size, 0), pard_strerror(rc));
        job_end(j, "its shared memory could not be created");
        return false;
    }
    j->geo = j->shm.geo;
    j->live = true;
    j->pending = false;
    j->shm_bytes = j->shm.region.size;
    d->shm_bytes += j->shm_bytes;

    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_JOB);
    m->job.job_id = j->id;
    m->job.lanes = j->geo.lanes;
    snprintf(m->job.function, sizeof(m->job.function), "%s", j->function);
    pard__session_send(s, m, j->shm.region.fd);
    char limit[48] = "";
    if (j->timeout_ms)
        snprintf(limit, sizeof(limit), ", task time limit %u ms", j->timeout_ms);
    pard__log_info("job %llu (%s) submitted by %s: %u lanes, %s of shared memory%s%s",
                   (unsigned long long)j->id, j->function, pard__session_desc(s), j->geo.lanes,
                   pard__fmt_bytes(j->shm_bytes, 0), reuse ? " (reused)" : "", limit);
    return true;
}

static void reply_enofunc(struct pard__session *s, const char *function, bool waited)
{
    pard__session_send_error(s, -PARD_ENOFUNC, 0,
                             "no worker serves the function '%s'%s; start a worker program that "
                             "registers it (it finds this daemon through $PARD_SOCKET or "
                             "--socket), or run pard with --spawn N --worker 'PROGRAM ARGS'",
                             function,
                             waited ? " (the workers started by --spawn did not register it)" : "");
}

void pard__job_submit(struct pard__session *s, const struct pard_msg_submit *sub)
{
    struct pard__daemon *d = s->d;
    if (d->njobs >= d->cfg.max_jobs) {
        pard__session_send_error(s, -PARD_ELIMIT, 0,
                                 "too many jobs: this pard runs at most %u at once (--max-jobs); "
                                 "wait for one to finish",
                                 d->cfg.max_jobs);
        return;
    }
    if (sub->array > 1 || (!sub->array && (sub->item_size || sub->result_size))) {
        pard__session_send_error(s, -EINVAL, 0,
                                 "array must be 0 (records) or 1 (an array job); item_size and "
                                 "result_size apply to array jobs only (got array %u, item_size "
                                 "%u, result_size %u)",
                                 sub->array, sub->item_size, sub->result_size);
        return;
    }
    struct pard_job_geometry geo = {
        .ring_capacity = sub->ring_capacity,
        .lanes = sub->max_lanes,
        .window = sub->window,
        .input_arena = sub->input_arena,
        .output_arena = sub->output_arena,
    };
    int rc = pard_job_geometry_fill(&geo);
    if (rc != 0) {
        pard__session_send_error(
            s, rc, 0,
            "cannot make a job with these sizes: ring_capacity %u (power of two, 2 .. %u), "
            "max_lanes %u (at most %u), window %u (power of two, at most %u), arenas of at most "
            "%s: %s",
            geo.ring_capacity, PARD_RING_MAX_CAPACITY, geo.lanes, PARD_JOB_MAX_LANES, geo.window,
            PARD_JOB_MAX_WINDOW, pard__fmt_bytes(PARD_JOB_MAX_ARENA, 0), pard_strerror(rc));
        return;
    }
    if (sub->array &&
        (sub->item_size > geo.input_arena / 2 || sub->result_size > geo.output_arena / 4)) {
        pard__session_send_error(s, -PARD_ETOOBIG, 0,
                                 "items of %u bytes and results of %u bytes: an array job takes "
                                 "items of at most %llu bytes (half its input arena) and results "
                                 "of at most %llu (a quarter of a lane's output arena); map "
                                 "larger ones with pard_map",
                                 sub->item_size, sub->result_size,
                                 (unsigned long long)(geo.input_arena / 2),
                                 (unsigned long long)(geo.output_arena / 4));
        return;
    }
    uint64_t size = pard_job_region_size(&geo);
    if (size > d->cfg.max_job_shm) {
        pard__session_send_error(s, -PARD_ETOOBIG, 0,
                                 "job for %s would need %s of shared memory, over the per-job "
                                 "limit of %s (--max-job-shm); ask for smaller arenas, a smaller "
                                 "window or fewer lanes",
                                 sub->function, pard__fmt_bytes(size, 0),
                                 pard__fmt_bytes(d->cfg.max_job_shm, 1));
        return;
    }
    struct pard__share *share = NULL;
    if (sub->shared && !(share = pard__share_get(s, sub->shared))) {
        pard__session_send_error(s, -ENOENT, 0,
                                 "the job names shared block %llu, which you do not share (it "
                                 "was unshared, or never shared on this connection)",
                                 (unsigned long long)sub->shared);
        return;
    }
    bool served = any_worker_serves(d, sub->function);
    if (!served && !workers_starting(d)) {
        pard__share_put(share);
        reply_enofunc(s, sub->function, false);
        pard__log_info("%s asked for %s, which no worker serves", pard__session_desc(s),
                       sub->function);
        return;
    }
    struct pard__job *j = calloc(1, sizeof(*j));
    if (!j) {
        pard__share_put(share);
        pard__session_send_error(s, -ENOMEM, 0, "out of memory");
        return;
    }
    j->share = share;
    j->d = d;
    j->id = ++d->next_job_id;
    snprintf(j->function, sizeof(j->function), "%s", sub->function);
    j->submitter = s;
    j->submitter_pid = (uint32_t)s->pid;
    j->geo = geo;
    j->timeout_ms = sub->timeout_ms;
    j->array = sub->array;
    j->item_size = sub->item_size;
    j->result_size = sub->result_size;
    j->wait_mode = sub->has_wait_mode ? sub->wait_mode : d->cfg.wait_mode;
    j->created_ns = pard_now_ns();
    pard__list_push_back(&d->jobs, &j->link);
    d->njobs++;
    if (!served) {
        j->pending = true;
        j->pending_deadline_ns = j->created_ns + (int64_t)PARD__PENDING_MS * 1000000;
        pard__log_info("job %llu (%s) waits up to %u ms for the workers started by --spawn",
                       (unsigned long long)j->id, j->function, PARD__PENDING_MS);
        pard__watch_kick(d);
        return;
    }
    if (job_activate(j)) {
        pard__schedule(d);
        pard__watch_kick(d);
    }
}

void pard__jobs_worker_registered(struct pard__session *w)
{
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &w->d->jobs)
    {
        struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->pending && !j->ended && pard__worker_serves(w, j->function))
            job_activate(j);
    }
}

/* ======================================================================
 * The watch tick: time limits, pending deadlines
 * ====================================================================== */

/* A started_ns may be a little ahead of the `now` we read before it (the
 * worker stored it after our clock read); a second ahead is garbage. */
#define PARD__FUTURE_SLACK_NS 1000000000LL

/* Kill the worker of lane `lane`, whose lease is impossible. Its socket's
 * EOF then marks the lane DEAD (death EXIT: no task is blamed, since the
 * lease names none we can trust); the submitter re-queues what it lost. */
static void evict_lease_writer(struct pard__session *w, struct pard__job *j, uint32_t lane,
                               int64_t ahead_ns)
{
    w->timeout_killed = true; /* once */
    pard__log_warn("job %llu (%s): %s wrote an impossible start time in its lease on lane %u "
                   "(%lld s in the future); killing that worker%s",
                   (unsigned long long)j->id, j->function, pard__session_desc(w), lane,
                   (long long)(ahead_ns / 1000000000),
                   w->child ? " (--spawn starts a replacement)" : "");
    if (w->pid > 1 && w->pid != w->d->pid) {
        if (kill(w->pid, SIGKILL) != 0)
            pard__log_error("cannot kill pid %d: %s", (int)w->pid, strerror(errno));
    } else {
        pard__session_close_later(w, "it wrote an impossible lease");
    }
}

static void check_timeouts(struct pard__job *j, int64_t now)
{
    struct pard__daemon *d = j->d;
    int64_t limit = (int64_t)j->timeout_ms * 1000000;
    for (uint32_t i = 0; i < j->geo.lanes; i++) {
        struct pard__session *w = j->owner[i];
        if (!w || w->timeout_killed)
            continue;
        struct pard_lane_ctl *ctl = pard__job_lane_ctl(j, i);
        if (atomic_load_explicit(&ctl->state, memory_order_acquire) != PARD_LANE_ACTIVE)
            continue;
        /* Acquire: pairs with the worker's release of leased; started_ns
         * and current were written before it. */
        if (atomic_load_explicit(&ctl->leased, memory_order_acquire) != 1)
            continue;
        int64_t started = atomic_load_explicit(&ctl->started_ns, memory_order_acquire);
        if (started > now + PARD__FUTURE_SLACK_NS &&
            started > (now = pard_now_ns()) + PARD__FUTURE_SLACK_NS) {
            /* No clock gives that (looked at again: `now` was read when
             * this tick began, and the daemon may have stalled since): the
             * worker wrote garbage in its lease, and would hold its batch
             * past any time limit. */
            evict_lease_writer(w, j, i, started - now);
            continue;
        }
        if (started <= 0 || started > now || now - started <= limit)
            continue;
        uint32_t none = PARD_DEATH_NONE;
        if (!atomic_compare_exchange_strong_explicit(&ctl->death, &none, PARD_DEATH_TIMEOUT,
                                                     memory_order_acq_rel, memory_order_relaxed))
            continue;
        w->timeout_killed = true;
        d->timeouts++;
        uint64_t task = atomic_load_explicit(&ctl->current, memory_order_relaxed);
        pard__log_warn("job %llu (%s): task %llu has run %lld ms on %s, over the job's limit of "
                       "%u ms; killing that worker%s",
                       (unsigned long long)j->id, j->function, (unsigned long long)task,
                       (long long)((now - started) / 1000000), pard__session_desc(w), j->timeout_ms,
                       w->child ? " (--spawn starts a replacement)" : "");
        /* The pid from SO_PEERCRED, never the one in shared memory. Its
         * socket's EOF then marks the lane DEAD (see worker_gone). */
        if (w->pid > 1 && w->pid != w->d->pid) {
            if (kill(w->pid, SIGKILL) != 0)
                pard__log_error("cannot kill pid %d: %s", (int)w->pid, strerror(errno));
        } else {
            pard__log_error("%s has no usable pid (another pid namespace?); closing its "
                            "connection instead",
                            pard__session_desc(w));
            pard__session_close_later(w, "its task ran over the time limit");
        }
    }
}

void pard__jobs_check(struct pard__daemon *d, int64_t now)
{
    bool starting = workers_starting(d);
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &d->jobs)
    {
        struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->live && j->timeout_ms > 0 && j->nattached > 0)
            check_timeouts(j, now);
        if (j->pending && !j->ended) {
            if (any_worker_serves(d, j->function)) {
                job_activate(j);
            } else if (now >= j->pending_deadline_ns || !starting) {
                if (j->submitter)
                    reply_enofunc(j->submitter, j->function, true);
                job_end(j, "no worker registered its function");
            }
        }
    }
}

/* A lane nobody holds that is not FREE yet: a dead worker's, waiting for
 * the submitter to reclaim it. Only the watch timer can see it come FREE. */
static bool has_lane_to_reclaim(const struct pard__job *j)
{
    for (uint32_t i = 0; i < j->geo.lanes; i++)
        if (!j->owner[i] && atomic_load_explicit(&pard__job_lane_ctl(j, i)->state,
                                                 memory_order_relaxed) != PARD_LANE_FREE)
            return true;
    return false;
}

/* An idle worker could join j once a lane comes free. */
static bool idle_worker_for(const struct pard__daemon *d, const struct pard__job *j)
{
    const struct pard__list *pos;
    for (pos = d->sessions.next; pos != &d->sessions; pos = pos->next) {
        const struct pard__session *w = PARD__CONTAINER(pos, struct pard__session, link);
        if (pard__session_is_idle_worker(w) && w->refused_job != j->id &&
            pard__worker_serves(w, j->function))
            return true;
    }
    return false;
}

bool pard__jobs_watch_needed(const struct pard__daemon *d)
{
    const struct pard__list *pos;
    for (pos = d->jobs.next; pos != &d->jobs; pos = pos->next) {
        const struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        if (j->pending || (j->live && j->timeout_ms > 0 && j->nattached > 0))
            return true;
        if (job_running(j) && has_lane_to_reclaim(j) && idle_worker_for(d, j))
            return true;
    }
    return false;
}

/* ======================================================================
 * Shutdown
 * ====================================================================== */

void pard__jobs_shutdown(struct pard__daemon *d)
{
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &d->jobs)
    {
        struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        j->ended = true; /* no detach messages: every connection is closing */
        if (!j->live) {
            job_unlink_free(j); /* pending: its submitter hears of the shutdown */
            continue;
        }
        /* CANCELLED first (a submitter returns -PARD_ECANCELED), then ENDED
         * (workers leave); each change is rung. */
        atomic_store_explicit(&j->shm.ctl->state, PARD_JOB_CANCELLED, memory_order_release);
        ring_all(j);
        atomic_store_explicit(&j->shm.ctl->state, PARD_JOB_ENDED, memory_order_release);
        ring_all(j);
        job_maybe_free(j);
    }
}

void pard__jobs_free_all(struct pard__daemon *d)
{
    while (!pard__list_empty(&d->jobs)) {
        struct pard__job *j = PARD__CONTAINER(d->jobs.next, struct pard__job, link);
        for (uint32_t i = 0; j->owner && i < j->geo.lanes; i++)
            if (j->owner[i])
                j->owner[i]->job = NULL;
        job_unlink_free(j);
    }
    pard__jobs_drop_spare(d);
}
