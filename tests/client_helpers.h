/*
 * client_helpers.h — helpers for tests that talk to a real pard through
 * libpard: the daemon's stats, and waiting for its workers. Needs
 * pard::pard (tests that only use libipc include helpers.h alone).
 */
#ifndef PARD_TEST_CLIENT_HELPERS_H
#define PARD_TEST_CLIENT_HELPERS_H

#include "helpers.h"
#include "pard/pard.h"
#include "pard/proto.h"

/* Send the daemon at `socket` one request of `type` over a control
 * connection and return its reply (which must be of type `reply`) in a
 * malloc'd message the caller frees: messages are large, not for the stack. */
static inline struct pard_msg *test_control_call(const char *socket, enum pard_msg_type type,
                                                 enum pard_msg_type reply)
{
    struct pard_client *c;
    cr_assert_eq(pard_connect_control(&c, socket), 0, "%s", pard_last_error());
    struct pard_msg *m = malloc(sizeof(*m));
    cr_assert_not_null(m);
    struct pard_frame_reader r;
    pard_frame_reader_init(&r, PARD_FRAME_MAX_CLIENT);
    pard_msg_init(m, type);
    cr_assert_eq(pard_sock_send_msg(pard_client_fd(c), m, -1), 0);
    cr_assert_eq(pard_sock_recv_msg(pard_client_fd(c), &r, m, 5000, NULL), 0);
    cr_assert_eq(m->type, reply);
    pard_frame_reader_destroy(&r);
    pard_disconnect(c);
    return m;
}

/* Ask the daemon at `socket` for its stats. */
static inline void test_get_stats(const char *socket, struct pard_msg_stats_reply *out)
{
    struct pard_msg *m = test_control_call(socket, PARD_MSG_STATS, PARD_MSG_STATS_REPLY);
    *out = m->stats_reply;
    free(m);
}

/* Wait until `n` workers have registered and are idle (20 s at most). */
static inline void test_wait_workers(struct test_daemon *d, uint64_t n)
{
    struct pard_msg_stats_reply s;
    for (int i = 0; i < 2000; i++) {
        test_get_stats(d->socket, &s);
        if (s.idle_workers >= n)
            return;
        usleep(10000);
    }
    cr_assert_fail("only %llu of %llu workers registered", (unsigned long long)s.workers,
                   (unsigned long long)n);
}

#endif
