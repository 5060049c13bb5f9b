/*
 * region.c — anonymous POSIX shared-memory regions with a validated header.
 *
 * Owns: creating (shm_open O_EXCL 0600 + immediate shm_unlink), sizing,
 * mapping and attaching regions, and the header with its section table.
 * The creator fills the header and publishes the magic last with a release
 * store; an attacher checks the magic (acquire), then version, size and
 * every section, and keeps a private copy of the validated table so that a
 * later scribble on the shared header cannot redirect it.
 *
 * Must not: know what the sections hold (that is the layer above), leave a
 * name in /dev/shm, or follow an unchecked offset.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

_Static_assert(sizeof(struct pard_region_header) % PARD_CACHELINE == 0,
               "region header fills whole cache lines");
_Static_assert(offsetof(struct pard_region_header, magic) == 0, "magic first");

#define HEADER_BYTES PARD__ALIGN_UP(sizeof(struct pard_region_header), PARD_CACHELINE)

static void region_reset(struct pard_region *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
}

/* Create and unlink a uniquely named shm object; retry on a name clash. */
static int shm_create_anonymous(void)
{
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t rnd = 0;
        if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd = (uint64_t)pard_now_ns() ^ ((uint64_t)getpid() << 32);
        char name[64];
        snprintf(name, sizeof(name), "/pard-%d-%016llx", (int)getpid(), (unsigned long long)rnd);
        int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd >= 0) {
            /* Unlink at once: from here on only holders of fd can map it,
             * and it vanishes with its last user, even after a crash. */
            shm_unlink(name);
            return fd;
        }
        if (errno != EEXIST)
            return -errno;
    }
    return -EEXIST;
}

int pard_region_open(struct pard_region *r, size_t size)
{
    region_reset(r);
    if (size < HEADER_BYTES || size > PARD_REGION_MAX_SIZE)
        return -PARD_ESIZE;
    size = PARD__ALIGN_UP(size, PARD_CACHELINE);
    int fd = shm_create_anonymous();
    if (fd < 0)
        return fd;
    if (ftruncate(fd, (off_t)size) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    /* Reserve the pages now: on a full /dev/shm this fails with ENOSPC,
     * instead of a SIGBUS in whichever process first touches a page. */
    int rc = posix_fallocate(fd, 0, (off_t)size);
    if (rc != 0) {
        close(fd);
        return -rc;
    }
    void *base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (base == MAP_FAILED) {
        int err = -errno;
        close(fd);
        return err;
    }
    /* ftruncate zero-fills: the magic is 0, so nobody can attach yet. */
    r->base = base;
    r->size = size;
    r->fd = fd;
    return 0;
}

int pard_region_add_section(struct pard_region *r, uint32_t kind, uint64_t size, uint64_t *offset)
{
    if (r->nsections >= PARD_REGION_MAX_SECTIONS)
        return -PARD_ELIMIT;
    uint64_t start = HEADER_BYTES;
    if (r->nsections > 0) {
        const struct pard_section *last = &r->sections[r->nsections - 1];
        start = last->offset + last->size;
    }
    if (size > r->size)
        return -PARD_ESIZE; /* before rounding: rounding UINT64_MAX wraps */
    size = PARD__ALIGN_UP(size, PARD_CACHELINE);
    if (size > r->size || start > r->size - size)
        return -PARD_ESIZE;
    struct pard_section *s = &r->sections[r->nsections];
    s->kind = kind;
    s->flags = 0;
    s->offset = start;
    s->size = size;
    if (offset)
        *offset = start;
    return (int)r->nsections++;
}

void pard_region_publish(struct pard_region *r, uint32_t user_version, const uint64_t user[4])
{
    struct pard_region_header *h = r->base;
    h->version = PARD_REGION_VERSION;
    h->size = r->size;
    h->header_size = sizeof(*h);
    h->nsections = r->nsections;
    h->user_version = user_version;
    h->reserved = 0;
    for (int i = 0; i < 4; i++)
        h->user[i] = user ? user[i] : 0;
    memcpy(h->sections, r->sections, sizeof(h->sections));
    r->user_version = user_version;
    /* Release: everything above, and every section the caller initialised
     * before calling us, is visible to whoever acquires the magic. */
    atomic_store_explicit(&h->magic, PARD_REGION_MAGIC, memory_order_release);
}

/* Validate a header copied out of shared memory against the mapped size. */
static int validate_header(const struct pard_region_header *h, uint32_t magic, size_t mapped,
                           uint32_t user_version)
{
    if (magic == 0)
        return -PARD_ENOTREADY;
    if (magic != PARD_REGION_MAGIC)
        return -PARD_EBADMAGIC;
    if (h->version != PARD_REGION_VERSION || h->header_size != sizeof(*h))
        return -PARD_EVERSION;
    if (user_version != 0 && h->user_version != user_version)
        return -PARD_EVERSION;
    if (h->size != mapped)
        return -PARD_ESIZE;
    if (h->nsections > PARD_REGION_MAX_SECTIONS)
        return -PARD_ECORRUPT;
    uint64_t prev_end = HEADER_BYTES;
    for (uint32_t i = 0; i < h->nsections; i++) {
        const struct pard_section *s = &h->sections[i];
        /* Sections are laid out in order, aligned, after the header and
         * inside the region: check without overflowing. */
        if (s->offset % PARD_CACHELINE != 0 || s->offset < prev_end || s->offset > mapped ||
            s->size > mapped - s->offset)
            return -PARD_ECORRUPT;
        prev_end = s->offset + s->size;
    }
    return 0;
}

/* Whether kept maps the object behind fd (stat st), whole. */
static bool keeps(const struct pard_region *kept, const struct stat *st)
{
    struct stat old;
    return kept && kept->base && kept->fd >= 0 && (off_t)kept->size == st->st_size &&
           fstat(kept->fd, &old) == 0 && old.st_dev == st->st_dev && old.st_ino == st->st_ino;
}

int pard_region_attach(struct pard_region *r, int fd, uint32_t user_version)
{
    return pard_region_attach_kept(r, fd, user_version, NULL);
}

int pard_region_attach_kept(struct pard_region *r, int fd, uint32_t user_version,
                            struct pard_region *kept)
{
    region_reset(r);
    struct stat st;
    if (fstat(fd, &st) != 0)
        return -errno;
    if (st.st_size < (off_t)HEADER_BYTES || (uint64_t)st.st_size > PARD_REGION_MAX_SIZE)
        return -PARD_ESIZE;
    size_t size = (size_t)st.st_size;
    void *base = NULL;
    if (keeps(kept, &st)) {
        /* The same object again (its creator used it once more): its pages
         * are mapped already. The header is validated below as for a new
         * mapping. */
        base = kept->base;
        close(kept->fd);
        region_reset(kept);
    } else {
        if (kept)
            pard_region_close(kept);
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (base == MAP_FAILED)
            return -errno;
    }
    int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
        int err = -errno;
        munmap(base, size);
        return err;
    }
    struct pard_region_header *shared = base;
    /* Acquire: pairs with the creator's release of the magic. */
    uint32_t magic = atomic_load_explicit(&shared->magic, memory_order_acquire);
    /* Validate a private copy: the shared one may change under us. */
    struct pard_region_header copy;
    memcpy((char *)&copy + sizeof(copy.magic), (char *)shared + sizeof(copy.magic),
           sizeof(copy) - sizeof(copy.magic));
    int rc = validate_header(&copy, magic, size, user_version);
    if (rc != 0) {
        munmap(base, size);
        close(own);
        return rc;
    }
    r->base = base;
    r->size = size;
    r->fd = own;
    r->nsections = copy.nsections;
    r->user_version = copy.user_version;
    memcpy(r->sections, copy.sections, sizeof(r->sections));
    return 0;
}

void *pard_region_section(const struct pard_region *r, uint32_t index, uint64_t *size)
{
    if (index >= r->nsections)
        return NULL;
    if (size)
        *size = r->sections[index].size;
    return (char *)r->base + r->sections[index].offset;
}

void *pard_region_find(const struct pard_region *r, uint32_t kind, uint64_t *size)
{
    for (uint32_t i = 0; i < r->nsections; i++)
        if (r->sections[i].kind == kind)
            return pard_region_section(r, i, size);
    return NULL;
}

uint64_t pard_region_user(const struct pard_region *r, unsigned i)
{
    if (i >= 4 || r->base == NULL)
        return 0;
    const struct pard_region_header *h = r->base;
    return h->user[i];
}

void pard_region_unpublish(struct pard_region *r)
{
    struct pard_region_header *h = r->base;
    atomic_store_explicit(&h->magic, 0, memory_order_relaxed);
    memset((char *)h + sizeof(h->magic), 0, sizeof(*h) - sizeof(h->magic));
    r->nsections = 0;
    r->user_version = 0;
    memset(r->sections, 0, sizeof(r->sections));
}

void pard_region_close(struct pard_region *r)
{
    if (r->base)
        munmap(r->base, r->size);
    if (r->fd >= 0)
        close(r->fd);
    region_reset(r);
}
