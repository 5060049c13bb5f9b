/*
 * stats.c — what the daemon reports: stats_reply, workers_reply and
 * jobs_reply (fields as in pard/proto.h).
 *
 * Counters read from job regions (delivered, requeued, tasks_done, ...)
 * are written by clients and so are untrusted; they are only ever
 * reported, never used to decide anything.
 *
 * Must not: change any state.
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

void pard__stats_reply(struct pard__session *s)
{
    struct pard__daemon *d = s->d;
    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_STATS_REPLY);
    struct pard_msg_stats_reply *r = &m->stats_reply;
    const struct pard__list *pos;
    for (pos = d->sessions.next; pos != &d->sessions; pos = pos->next) {
        const struct pard__session *w = PARD__CONTAINER(pos, struct pard__session, link);
        /* A worker counts once it has registered: before, it serves nothing. */
        if (!w->greeted || w->role != PARD_ROLE_WORKER || w->nfunctions == 0)
            continue;
        r->workers++;
        if (pard__session_is_idle_worker(w))
            r->idle_workers++;
    }
    uint64_t requeues = d->requeued_finished;
    for (pos = d->jobs.next; pos != &d->jobs; pos = pos->next) {
        const struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        r->jobs++;
        if (j->live)
            requeues += atomic_load_explicit(&j->shm.ctl->requeued, memory_order_relaxed);
    }
    r->tasks_done = pard__jobs_delivered(d);
    r->tasks_per_sec = d->tasks_per_sec;
    r->requeues = requeues;
    r->timeouts = d->timeouts;
    r->worker_deaths = d->worker_deaths;
    r->shm_bytes = d->shm_bytes;
    r->uptime_ms = (uint64_t)((pard_now_ns() - d->start_ns) / 1000000);
    r->pid = (uint32_t)d->pid;
    snprintf(r->version_string, sizeof(r->version_string), "%s", PARD__VERSION_STRING);
    pard__session_send(s, m, -1);
}

void pard__list_workers_reply(struct pard__session *s)
{
    struct pard__daemon *d = s->d;
    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_WORKERS_REPLY);
    struct pard_msg_workers_reply *r = &m->workers_reply;
    const struct pard__list *pos;
    for (pos = d->sessions.next; pos != &d->sessions && r->nworkers < PARD_LIST_MAX;
         pos = pos->next) {
        const struct pard__session *w = PARD__CONTAINER(pos, struct pard__session, link);
        if (!w->greeted || w->role != PARD_ROLE_WORKER)
            continue;
        struct pard_msg_worker_entry *e = &r->workers[r->nworkers++];
        memset(e, 0, sizeof(*e));
        e->id = w->id;
        e->pid = (uint32_t)w->pid;
        snprintf(e->name, sizeof(e->name), "%s", w->name);
        e->nfunctions = w->nfunctions;
        for (uint32_t i = 0; i < w->nfunctions; i++)
            memcpy(e->functions[i], w->functions[i], sizeof(e->functions[i]));
        e->job_id = w->job ? w->job->id : 0;
        e->tasks_done = pard__worker_tasks_done(w);
    }
    pard__session_send(s, m, -1);
}

static const char *job_state_name(const struct pard__job *j)
{
    if (j->pending)
        return "pending";
    if (j->ended)
        return "ending";
    switch (atomic_load_explicit(&j->shm.ctl->state, memory_order_relaxed)) {
    case PARD_JOB_RUNNING:
        return "running";
    case PARD_JOB_CANCELLED:
        return "cancelled";
    case PARD_JOB_ENDED:
        return "ending";
    default:
        return "unknown";
    }
}

void pard__list_jobs_reply(struct pard__session *s)
{
    struct pard__daemon *d = s->d;
    struct pard_msg *m = d->msg_out;
    pard_msg_init(m, PARD_MSG_JOBS_REPLY);
    struct pard_msg_jobs_reply *r = &m->jobs_reply;
    int64_t now = pard_now_ns();
    const struct pard__list *pos;
    for (pos = d->jobs.next; pos != &d->jobs && r->njobs < PARD_LIST_MAX; pos = pos->next) {
        const struct pard__job *j = PARD__CONTAINER(pos, struct pard__job, link);
        struct pard_msg_job_entry *e = &r->jobs[r->njobs++];
        memset(e, 0, sizeof(*e));
        e->id = j->id;
        e->submitter_pid = j->submitter_pid;
        e->lanes = j->nattached;
        if (j->live) {
            e->submitted = atomic_load_explicit(&j->shm.ctl->submitted, memory_order_relaxed);
            e->delivered = atomic_load_explicit(&j->shm.ctl->delivered, memory_order_relaxed);
            e->failed = atomic_load_explicit(&j->shm.ctl->failed, memory_order_relaxed);
        }
        e->age_ms = (uint64_t)((now - j->created_ns) / 1000000);
        snprintf(e->function, sizeof(e->function), "%s", j->function);
        snprintf(e->state, sizeof(e->state), "%s", job_state_name(j));
    }
    pard__session_send(s, m, -1);
}
