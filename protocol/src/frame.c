/*
 * frame.c — the frame reader: bytes in (copied, or received in place),
 * complete frames out, each with the descriptor that was sent with it.
 *
 * The buffer holds [start, end): zero or more complete frames followed by
 * at most one incomplete one. start is always at a frame boundary. Stream
 * positions (base + offset) name frames independently of compaction, which
 * is how pending descriptors remember their frame.
 *
 * This file owns no socket: sock.c moves the bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* A reader that grew beyond this and then emptied gives its memory back. */
#define SHRINK_ABOVE (256u * 1024u)
#define FIRST_CAP    4096u

void pard_frame_put_header(void *dst, uint32_t body_len)
{
    uint8_t *p = dst;
    p[0] = (uint8_t)(body_len >> 24);
    p[1] = (uint8_t)(body_len >> 16);
    p[2] = (uint8_t)(body_len >> 8);
    p[3] = (uint8_t)body_len;
}

uint32_t pard_frame_get_header(const void *src)
{
    const uint8_t *p = src;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void close_fds(const int *fds, int nfds)
{
    for (int i = 0; i < nfds; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

static void drop_pending(struct pard_frame_reader *r)
{
    close_fds(r->fds, (int)r->nfds);
    r->nfds = 0;
}

/* Drop every buffered byte; the positions stay monotonic. */
static void drop_bytes(struct pard_frame_reader *r)
{
    r->base += r->end;
    r->start = r->end = 0;
}

/* Enter the sticky error state: nothing of the broken stream is kept. */
static int fail(struct pard_frame_reader *r, int err)
{
    drop_pending(r);
    drop_bytes(r);
    r->err = err;
    return err;
}

/* The most bytes a reader holds at once. */
static size_t hold_limit(const struct pard_frame_reader *r)
{
    return r->max + PARD_FRAME_HEADER + PARD_FRAME_READER_SLACK;
}

int pard_frame_reader_init(struct pard_frame_reader *r, size_t max)
{
    if (max == 0)
        max = PARD_FRAME_MAX;
    if (max > PARD_FRAME_MAX_LIMIT)
        return -EINVAL;
    memset(r, 0, sizeof(*r));
    r->max = max;
    return 0;
}

void pard_frame_reader_destroy(struct pard_frame_reader *r)
{
    drop_pending(r);
    free(r->buf);
    r->buf = NULL;
    r->cap = r->start = r->end = 0;
}

void pard_frame_reader_reset(struct pard_frame_reader *r)
{
    drop_pending(r);
    r->start = r->end = 0;
    r->base = 0;
    r->err = 0;
}

size_t pard_frame_reader_buffered(const struct pard_frame_reader *r)
{
    return r->end - r->start;
}

int pard_frame_reader_reserve(struct pard_frame_reader *r, size_t want, void **space, size_t *avail)
{
    if (r->err)
        return r->err;
    if (want == 0)
        return -EINVAL;
    size_t held = r->end - r->start;
    if (want > hold_limit(r) || held > hold_limit(r) - want)
        return -ENOBUFS;

    if (held == 0 && r->cap > SHRINK_ABOVE && want <= SHRINK_ABOVE) {
        /* A big frame passed through; do not keep its memory forever. */
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
        drop_bytes(r);
    }
    if (r->cap - r->end < want && r->start > 0) {
        /* Compact: move the incomplete frame to the front. */
        memmove(r->buf, r->buf + r->start, held);
        r->base += r->start;
        r->start = 0;
        r->end = held;
    }
    if (r->cap - r->end < want) {
        size_t need = r->end + want;
        size_t cap = r->cap ? r->cap : FIRST_CAP;
        while (cap < need)
            cap *= 2;
        if (cap > hold_limit(r))
            cap = need > hold_limit(r) ? need : hold_limit(r);
        uint8_t *nb = realloc(r->buf, cap);
        if (nb == NULL)
            return -ENOMEM;
        r->buf = nb;
        r->cap = cap;
    }
    *space = r->buf + r->end;
    *avail = r->cap - r->end;
    return 0;
}

/*
 * owner_frame - the stream position of the last frame that starts before
 * the end of the buffer: the frame a descriptor received with the newest
 * bytes belongs to.
 */
static uint64_t owner_frame(const struct pard_frame_reader *r)
{
    size_t s = r->start;
    for (;;) {
        if (r->end - s < PARD_FRAME_HEADER)
            break;
        uint32_t len = pard_frame_get_header(r->buf + s);
        if (len > r->max)
            break; /* next() will fail the stream */
        size_t next = s + PARD_FRAME_HEADER + len;
        if (next >= r->end)
            break;
        s = next;
    }
    return r->base + s;
}

int pard_frame_reader_commit(struct pard_frame_reader *r, size_t n, const int *fds, int nfds)
{
    if (nfds < 0 || (nfds > 0 && fds == NULL))
        return -EINVAL;
    if (r->err || n > r->cap - r->end) {
        close_fds(fds, nfds);
        return r->err ? r->err : -EINVAL;
    }
    r->end += n;
    if (nfds == 0)
        return 0;

    uint64_t owner = owner_frame(r);
    for (int i = 0; i < nfds; i++) {
        bool taken = false;
        for (uint32_t j = 0; j < r->nfds; j++)
            taken |= r->fd_pos[j] == owner;
        if (taken || r->nfds == PARD_FRAME_READER_FDS) {
            close(fds[i]); /* one descriptor per frame; the rest are the peer's mistake */
            continue;
        }
        r->fds[r->nfds] = fds[i];
        r->fd_pos[r->nfds] = owner;
        r->nfds++;
    }
    return 0;
}

int pard_frame_reader_feed(struct pard_frame_reader *r, const void *data, size_t len,
                           const int *fds, int nfds)
{
    if (len == 0)
        return pard_frame_reader_commit(r, 0, fds, nfds);
    void *space;
    size_t avail;
    int rc = pard_frame_reader_reserve(r, len, &space, &avail);
    if (rc != 0) {
        if (nfds > 0 && fds != NULL)
            close_fds(fds, nfds);
        return rc;
    }
    memcpy(space, data, len);
    return pard_frame_reader_commit(r, len, fds, nfds);
}

/* Take the pending descriptor of the frame at `pos`, if any; close any
 * that belong to frames already returned (cannot happen with a sane
 * peer, but must not leak). */
static int take_fd(struct pard_frame_reader *r, uint64_t pos)
{
    int fd = -1;
    uint32_t kept = 0;
    for (uint32_t j = 0; j < r->nfds; j++) {
        if (r->fd_pos[j] == pos && fd < 0) {
            fd = r->fds[j];
        } else if (r->fd_pos[j] <= pos) {
            close(r->fds[j]);
        } else {
            r->fds[kept] = r->fds[j];
            r->fd_pos[kept] = r->fd_pos[j];
            kept++;
        }
    }
    r->nfds = kept;
    return fd;
}

int pard_frame_reader_next(struct pard_frame_reader *r, const void **body, size_t *len, int *fd)
{
    if (fd)
        *fd = -1;
    if (r->err)
        return r->err;
    size_t held = r->end - r->start;
    if (held < PARD_FRAME_HEADER)
        return 0;
    uint32_t blen = pard_frame_get_header(r->buf + r->start);
    if (blen > r->max)
        return fail(r, -PARD_ETOOBIG);
    if (held - PARD_FRAME_HEADER < blen)
        return 0;

    uint64_t pos = r->base + r->start;
    *body = r->buf + r->start + PARD_FRAME_HEADER;
    *len = blen;
    r->start += PARD_FRAME_HEADER + blen;
    if (r->start == r->end)
        drop_bytes(r); /* empty: restart at the front without moving anything */

    int got = take_fd(r, pos);
    if (fd)
        *fd = got;
    else if (got >= 0)
        close(got);
    return 1;
}
