/*
 * proto_samples.h — a full sample of every protocol message, with every
 * field set to a distinct value (and some at their limits), shared by
 * test_proto.c and the fuzz corpus generator.
 */
#ifndef PARD_TEST_PROTO_SAMPLES_H
#define PARD_TEST_PROTO_SAMPLES_H

#include <stdio.h>
#include <string.h>

#include "pard/proto.h"

/* A valid name of exactly `len` bytes (1 .. PARD_NAME_MAX), tagged by i. */
static inline void sample_name(char *dst, size_t len, unsigned i)
{
    static const char alphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    for (size_t k = 0; k < len; k++)
        dst[k] = alphabet[(i * 7 + k) % (sizeof(alphabet) - 1)];
    dst[len] = 0;
}

/*
 * sample_msg - fill m with a sample of `type`. `big` selects the largest
 * message of that type (every list and string at its limit); otherwise a
 * small one with a few entries.
 */
static inline void sample_msg(struct pard_msg *m, enum pard_msg_type type, int big)
{
    pard_msg_init(m, type);
    switch (type) {
    case PARD_MSG_HELLO:
        m->hello.role = PARD_ROLE_WORKER;
        m->hello.pid = 4242;
        sample_name(m->hello.name, big ? PARD_NAME_MAX : 8, 1);
        break;
    case PARD_MSG_WELCOME:
        m->welcome.daemon_pid = 77;
        m->welcome.client_id = 0x100000001ull;
        if (big) {
            memset(m->welcome.version_string, 'v', PARD_TEXT_MAX);
            m->welcome.version_string[PARD_TEXT_MAX] = 0;
        } else {
            strcpy(m->welcome.version_string, "pard 0.1.0 (protocol 1) — ünïcode ok");
        }
        break;
    case PARD_MSG_ERROR:
        m->error.code = big ? INT32_MIN : -PARD_ENOFUNC;
        m->error.ref = big ? UINT64_MAX : 17;
        if (big) {
            memset(m->error.message, 'e', PARD_TEXT_MAX);
            m->error.message[PARD_TEXT_MAX] = 0;
        } else {
            strcpy(m->error.message, "no worker serves function \"sq\"");
        }
        break;
    case PARD_MSG_OK:
        m->ok.ref = 99;
        break;
    case PARD_MSG_REGISTER:
        m->reg.nfunctions = big ? PARD_FUNCTIONS_MAX : 3;
        for (unsigned i = 0; i < m->reg.nfunctions; i++)
            sample_name(m->reg.functions[i], big ? PARD_NAME_MAX : 3 + i, i);
        break;
    case PARD_MSG_SUBMIT:
        sample_name(m->submit.function, big ? PARD_NAME_MAX : 6, 2);
        m->submit.timeout_ms = 1000;
        m->submit.retries = 3;
        m->submit.has_wait_mode = true;
        m->submit.wait_mode = PARD_WAIT_SPIN;
        m->submit.ring_capacity = 4096;
        m->submit.input_arena = 1ull << 33;
        m->submit.output_arena = (1ull << 20) + 5;
        m->submit.max_lanes = 16;
        m->submit.window = big ? UINT32_MAX : 100000;
        m->submit.shared = big ? UINT64_MAX : 9;
        break;
    case PARD_MSG_JOB:
        m->job.job_id = 123456789012ull;
        m->job.lanes = 8;
        sample_name(m->job.function, big ? PARD_NAME_MAX : 5, 3);
        break;
    case PARD_MSG_ATTACH:
        m->attach.job_id = 31;
        m->attach.lane = 5;
        sample_name(m->attach.function, big ? PARD_NAME_MAX : 4, 4);
        m->attach.timeout_ms = 2500;
        m->attach.wait_mode = PARD_WAIT_BLOCK;
        m->attach.shared = big ? 12 : 0;
        break;
    case PARD_MSG_DETACH:
        m->detach.job_id = 41;
        break;
    case PARD_MSG_DETACHED:
        m->detached.job_id = 42;
        break;
    case PARD_MSG_JOB_END:
        m->job_end.job_id = 43;
        break;
    case PARD_MSG_CANCEL:
        m->cancel.job_id = big ? UINT64_MAX : 44;
        break;
    case PARD_MSG_STATS_REPLY:
        m->stats_reply.workers = 1;
        m->stats_reply.idle_workers = 2;
        m->stats_reply.jobs = 3;
        m->stats_reply.tasks_done = big ? UINT64_MAX : 4;
        m->stats_reply.tasks_per_sec = 12345.625;
        m->stats_reply.requeues = 5;
        m->stats_reply.timeouts = 6;
        m->stats_reply.worker_deaths = 7;
        m->stats_reply.shm_bytes = 8ull << 30;
        m->stats_reply.uptime_ms = 9;
        m->stats_reply.pid = 10;
        strcpy(m->stats_reply.version_string, "pard 0.1.0");
        break;
    case PARD_MSG_WORKERS_REPLY:
        m->workers_reply.nworkers = big ? PARD_LIST_MAX : 3;
        for (unsigned i = 0; i < m->workers_reply.nworkers; i++) {
            struct pard_msg_worker_entry *w = &m->workers_reply.workers[i];
            memset(w, 0, sizeof(*w));
            w->id = 1000 + i;
            w->pid = 2000 + i;
            if (big || i != 1) /* worker 1 gave no name */
                sample_name(w->name, big ? PARD_NAME_MAX : 6, i);
            w->nfunctions = big ? PARD_FUNCTIONS_MAX : i;
            for (unsigned f = 0; f < w->nfunctions; f++)
                sample_name(w->functions[f], big ? PARD_NAME_MAX : 2 + f, i + f);
            w->job_id = i == 0 ? 0 : 3000 + i;
            w->tasks_done = 4000 + i;
        }
        break;
    case PARD_MSG_JOBS_REPLY:
        m->jobs_reply.njobs = big ? PARD_LIST_MAX : 2;
        for (unsigned i = 0; i < m->jobs_reply.njobs; i++) {
            struct pard_msg_job_entry *j = &m->jobs_reply.jobs[i];
            memset(j, 0, sizeof(*j));
            j->id = 500 + i;
            sample_name(j->function, big ? PARD_NAME_MAX : 5, i);
            j->submitter_pid = 600 + i;
            j->lanes = 700 + i;
            j->submitted = 800 + i;
            j->delivered = 900 + i;
            j->failed = 1000 + i;
            strcpy(j->state, i % 2 ? "draining" : "running");
            j->age_ms = 1100 + i;
        }
        break;
    case PARD_MSG_SHARE:
        m->share.handle = big ? 77 : 0;
        m->share.size = 1 << 20;
        break;
    case PARD_MSG_UNSHARE:
        m->unshare.handle = 78;
        break;
    case PARD_MSG_STATS:
    case PARD_MSG_LIST_WORKERS:
    case PARD_MSG_LIST_JOBS:
    case PARD_MSG_SHUTDOWN:
    default:
        break;
    }
}

#endif
