/*
 * share.c — shared blocks: a read-only block of memory (a data set, a
 * model) that a submitter creates once (pard_share) and that every worker
 * of its jobs maps, instead of receiving copies.
 *
 * Protocol (pard/proto.h): the submitter sends `share` {size} with the
 * block's descriptor; we keep the descriptor and answer `ok` {ref =
 * handle}. A `submit` may name the handle (`shared`); before each `attach`
 * for that job the worker receives `share` {handle, size} with the
 * descriptor, and the attach names the handle. `unshare` {handle} (no
 * reply) withdraws the block from new jobs; so does the submitter's
 * connection closing.
 *
 * We never map a block: we only hold its descriptor, check that it is a
 * regular (shm) file of a sane size, and count it against --max-shm. A
 * block lives while its submitter offers it or a job that names it lives.
 *
 * Must not: read or write a block's contents.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

static void share_maybe_free(struct pard__share *sh)
{
    if (sh->owner || sh->refs > 0)
        return;
    struct pard__daemon *d = sh->d;
    pard__log_debug("shared block %llu released (%s)", (unsigned long long)sh->handle,
                    pard__fmt_bytes(sh->size, 0));
    pard__list_remove(&sh->link);
    d->nshares--;
    d->share_bytes -= sh->size;
    close(sh->fd);
    free(sh);
}

static struct pard__share *share_find(struct pard__daemon *d, uint64_t handle)
{
    struct pard__list *pos;
    for (pos = d->shares.next; pos != &d->shares; pos = pos->next) {
        struct pard__share *sh = PARD__CONTAINER(pos, struct pard__share, link);
        if (sh->handle == handle)
            return sh;
    }
    return NULL;
}

void pard__share_msg(struct pard__session *s, const struct pard_msg_share *m, int *fd)
{
    struct pard__daemon *d = s->d;
    if (*fd < 0) {
        pard__session_fail(s, -PARD_EPROTO, "share came without the block's descriptor");
        return;
    }
    if (m->handle != 0) {
        pard__session_send_error(s, -EINVAL, 0, "share: a new block has no handle yet (send 0)");
        return;
    }
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        pard__session_send_error(s, -EINVAL, 0,
                                 "share: the descriptor is not a shared-memory block");
        return;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (d->nshares >= PARD__MAX_SHARES) {
        pard__session_send_error(s, -PARD_ELIMIT, 0,
                                 "too many shared blocks: this pard holds at most %u; unshare "
                                 "some first",
                                 PARD__MAX_SHARES);
        return;
    }
    if (d->has_spare &&
        d->shm_bytes + d->share_bytes + size + d->spare.region.size > d->cfg.max_shm)
        pard__jobs_drop_spare(d); /* a limit needs its room */
    if (d->shm_bytes + d->share_bytes + size > d->cfg.max_shm) {
        pard__session_send_error(s, -PARD_ELIMIT, 0,
                                 "a shared block of %s would take this pard over its shared "
                                 "memory limit of %s (--max-shm; %s in use)",
                                 pard__fmt_bytes(size, 0), pard__fmt_bytes(d->cfg.max_shm, 1),
                                 pard__fmt_bytes(d->shm_bytes + d->share_bytes, 2));
        return;
    }
    struct pard__share *sh = calloc(1, sizeof(*sh));
    if (!sh) {
        pard__session_send_error(s, -ENOMEM, 0, "out of memory");
        return;
    }
    sh->d = d;
    sh->handle = ++d->next_share_handle;
    sh->fd = *fd; /* received with MSG_CMSG_CLOEXEC */
    *fd = -1;
    sh->size = size;
    sh->owner = s;
    pard__list_push_back(&d->shares, &sh->link);
    d->nshares++;
    d->share_bytes += size;
    struct pard_msg *ok = d->msg_out;
    pard_msg_init(ok, PARD_MSG_OK);
    ok->ok.ref = sh->handle;
    pard__session_send(s, ok, -1);
    pard__log_info("%s shares a block of %s (handle %llu)", pard__session_desc(s),
                   pard__fmt_bytes(size, 0), (unsigned long long)sh->handle);
}

void pard__unshare_msg(struct pard__session *s, uint64_t handle)
{
    struct pard__share *sh = share_find(s->d, handle);
    if (!sh || sh->owner != s) {
        /* unshare has no reply: an error message would be unexpected. */
        pard__log_warn("%s unshares block %llu, which it does not share; ignored",
                       pard__session_desc(s), (unsigned long long)handle);
        return;
    }
    sh->owner = NULL;
    pard__log_debug("%s unshares block %llu", pard__session_desc(s), (unsigned long long)handle);
    share_maybe_free(sh);
}

void pard__shares_owner_gone(struct pard__session *s)
{
    struct pard__list *pos, *tmp;
    PARD__LIST_FOREACH_SAFE(pos, tmp, &s->d->shares)
    {
        struct pard__share *sh = PARD__CONTAINER(pos, struct pard__share, link);
        if (sh->owner == s) {
            sh->owner = NULL;
            share_maybe_free(sh);
        }
    }
}

struct pard__share *pard__share_get(struct pard__session *s, uint64_t handle)
{
    struct pard__share *sh = share_find(s->d, handle);
    if (!sh || sh->owner != s)
        return NULL;
    sh->refs++;
    return sh;
}

void pard__share_put(struct pard__share *sh)
{
    if (!sh)
        return;
    sh->refs--;
    share_maybe_free(sh);
}

int pard__share_send(struct pard__session *w, const struct pard__share *sh)
{
    struct pard_msg *m = w->d->msg_out;
    pard_msg_init(m, PARD_MSG_SHARE);
    m->share.handle = sh->handle;
    m->share.size = sh->size;
    return pard__session_send(w, m, sh->fd);
}

void pard__shares_free_all(struct pard__daemon *d)
{
    while (!pard__list_empty(&d->shares)) {
        struct pard__share *sh = PARD__CONTAINER(d->shares.next, struct pard__share, link);
        sh->owner = NULL;
        sh->refs = 0;
        share_maybe_free(sh);
    }
}
