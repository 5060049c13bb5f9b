/*
 * share.c — shared inputs: a read-only block (a data set, a model) that a
 * submitter creates once and every worker of its jobs maps, with no copy.
 *
 * Owns: the creator's side: a region (anonymous shm, 0600, unlinked) with
 * one PARD_SEC_SHARED section, registered with the daemon by passing its
 * descriptor in a `share` message. The daemon hands the descriptor to each
 * worker of a job that names the handle (worker.c maps it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int pard_share(struct pard_client *c, size_t size, void **data, uint64_t *handle)
{
    if (!c || !data || !handle || size == 0)
        return -EINVAL;
    struct pard__share *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    uint64_t off;
    int rc = pard_region_open(&s->region, sizeof(struct pard_region_header) + 64 + size);
    if (rc == 0)
        rc = pard_region_add_section(&s->region, PARD_SEC_SHARED, size, &off);
    if (rc < 0) {
        pard_region_close(&s->region);
        free(s);
        return pard__set_error(c, rc, "cannot create a shared block of %zu bytes: %s", size,
                               pard_strerror(rc));
    }
    /* user[0]: the exact size (the section is rounded up to 64 bytes). */
    const uint64_t user[4] = {size, 0, 0, 0};
    pard_region_publish(&s->region, PARD_SHARE_LAYOUT_VERSION, user);
    struct pard_msg *m = c->msg;
    pard_msg_init(m, PARD_MSG_SHARE);
    m->share.size = s->region.size;
    rc = pard__send(c, m, s->region.fd);
    while (rc == 0) {
        rc = pard__recv(c, 5000, NULL);
        if (rc != 0 || m->type == PARD_MSG_OK || m->type == PARD_MSG_ERROR)
            break;
    }
    if (rc == 0 && m->type == PARD_MSG_ERROR)
        rc = pard__set_error(c, m->error.code, "pard refused the shared block: %s",
                             m->error.message);
    else if (rc == 0 && m->ok.ref == 0)
        rc = pard__set_error(c, -PARD_EPROTO, "pard gave no handle for the shared block");
    if (rc != 0) {
        pard_region_close(&s->region);
        free(s);
        return rc;
    }
    s->handle = m->ok.ref;
    s->next = c->shares;
    c->shares = s;
    *data = (char *)s->region.base + off;
    *handle = s->handle;
    return 0;
}

int pard_unshare(struct pard_client *c, uint64_t handle)
{
    for (struct pard__share **p = &c->shares; *p; p = &(*p)->next) {
        struct pard__share *s = *p;
        if (s->handle != handle)
            continue;
        *p = s->next;
        struct pard_msg *m = c->msg;
        pard_msg_init(m, PARD_MSG_UNSHARE);
        m->unshare.handle = handle;
        int rc = pard__send(c, m, -1); /* the daemon does not reply */
        pard_region_close(&s->region);
        free(s);
        return rc;
    }
    return -ENOENT;
}

void pard__unshare_all(struct pard_client *c)
{
    while (c->shares) {
        struct pard__share *s = c->shares;
        c->shares = s->next;
        pard_region_close(&s->region);
        free(s);
    }
}
