/*
 * test_region.c — regions: create, publish, attach from another process,
 * and refusal of every kind of corrupted header.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "helpers.h"
#include "pard/ipc.h"

#define KIND_A 7
#define KIND_B 9

static void make_region(struct pard_region *r, size_t size)
{
    cr_assert_eq(pard_region_open(r, size), 0);
    uint64_t off_a = 0, off_b = 0;
    cr_assert_eq(pard_region_add_section(r, KIND_A, 1000, &off_a), 0);
    cr_assert_eq(pard_region_add_section(r, KIND_B, 4096, &off_b), 1);
    cr_assert_eq(off_a % 64, 0);
    cr_assert_geq(off_b, off_a + 1000);
    memset((char *)r->base + off_a, 0xab, 1000);
    uint64_t user[4] = {1, 2, 3, 4};
    pard_region_publish(r, 42, user);
}

Test(region, attaches_from_another_process_and_sees_the_sections, .timeout = 20)
{
    struct pard_region r;
    make_region(&r, 1 << 20);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        struct pard_region view;
        if (pard_region_attach(&view, r.fd, 42) != 0)
            _exit(1);
        uint64_t size = 0;
        unsigned char *a = pard_region_find(&view, KIND_A, &size);
        if (a == NULL || size < 1000 || a[0] != 0xab || a[999] != 0xab)
            _exit(2);
        if (pard_region_user(&view, 3) != 4)
            _exit(3);
        a[0] = 0xcd; /* the parent must see this: it is shared */
        pard_region_close(&view);
        _exit(0);
    }
    test_wait_ok(pid, "attaching child");
    uint64_t size = 0;
    unsigned char *a = pard_region_find(&r, KIND_A, &size);
    cr_assert_eq(a[0], 0xcd, "a child's write through its mapping is visible");
    pard_region_close(&r);
}

Test(region, leaves_no_name_in_dev_shm_and_is_private_to_its_owner, .timeout = 20)
{
    struct pard_region r;
    make_region(&r, 65536);
    char prefix[64];
    snprintf(prefix, sizeof(prefix), "pard-%d-", (int)getpid());
    DIR *d = opendir("/dev/shm");
    cr_assert_not_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        cr_assert(strncmp(e->d_name, prefix, strlen(prefix)) != 0, "left %s in /dev/shm",
                  e->d_name);
    closedir(d);
    struct stat st;
    cr_assert_eq(fstat(r.fd, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    cr_assert(fcntl(r.fd, F_GETFD) & FD_CLOEXEC, "descriptor is close-on-exec");
    pard_region_close(&r);
}

Test(region, refuses_an_unpublished_region, .timeout = 10)
{
    struct pard_region r, view;
    cr_assert_eq(pard_region_open(&r, 65536), 0);
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ENOTREADY);
    pard_region_close(&r);
}

Test(region, can_be_laid_out_again_by_its_creator, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    unsigned char *a = pard_region_find(&r, KIND_A, NULL);
    pard_region_unpublish(&r);
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ENOTREADY, "unpublished again");
    cr_assert_null(pard_region_find(&r, KIND_A, NULL), "the private table is cleared");
    cr_assert_eq(a[0], 0xab, "the contents stay: the layer above re-initialises them");
    /* A new layout: one section of another kind, at the first offset. */
    uint64_t off = 0;
    cr_assert_eq(pard_region_add_section(&r, KIND_B, 8192, &off), 0);
    uint64_t user[4] = {9, 9, 9, 9};
    pard_region_publish(&r, 43, user);
    cr_assert_eq(pard_region_attach(&view, r.fd, 43), 0);
    uint64_t size = 0;
    cr_assert_not_null(pard_region_find(&view, KIND_B, &size));
    cr_assert_eq(size, 8192);
    cr_assert_null(pard_region_find(&view, KIND_A, NULL), "the old section is gone");
    cr_assert_eq(pard_region_user(&view, 0), 9);
    pard_region_close(&view);
    pard_region_close(&r);
}

Test(region, refuses_a_wrong_magic, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    struct pard_region_header *h = r.base;
    atomic_store(&h->magic, 0xdeadbeef);
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_EBADMAGIC);
    cr_assert_eq(strcmp(pard_strerror(-PARD_EBADMAGIC),
                        "shared memory region has a wrong magic number (not a pard region)"),
                 0);
    pard_region_close(&r);
}

Test(region, describes_any_error_code_even_int_min, .timeout = 10)
{
    /* Codes also come from the wire (error frames): none may trap. */
    cr_assert_str_eq(pard_strerror(INT_MIN), "unknown error");
    cr_assert_str_eq(pard_strerror(0), "success");
    cr_assert_str_eq(pard_strerror(-ENOENT), strerror(ENOENT));
    cr_assert_str_eq(pard_strerror(ENOENT), strerror(ENOENT));
    cr_assert_not_null(pard_strerror(INT_MAX));
}

Test(region, refuses_a_wrong_version, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    struct pard_region_header *h = r.base;
    h->version = 99;
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_EVERSION);
    h->version = PARD_REGION_VERSION;
    cr_assert_eq(pard_region_attach(&view, r.fd, 43), -PARD_EVERSION, "user version checked");
    cr_assert_eq(pard_region_attach(&view, r.fd, 42), 0);
    pard_region_close(&view);
    pard_region_close(&r);
}

Test(region, refuses_a_size_that_disagrees_with_the_object, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    struct pard_region_header *h = r.base;
    h->size = 1 << 30;
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ESIZE);
    h->size = r.size;
    cr_assert_eq(ftruncate(r.fd, 100), 0);
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ESIZE, "a truncated object");
    pard_region_close(&r);
}

Test(region, refuses_sections_out_of_bounds_or_overlapping, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    struct pard_region_header *h = r.base;
    struct pard_section saved = h->sections[1];

    h->sections[1].offset = UINT64_MAX - 63; /* would overflow offset + size */
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ECORRUPT);
    h->sections[1] = saved;
    h->sections[1].size = 1 << 20; /* past the end */
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ECORRUPT);
    h->sections[1] = saved;
    h->sections[1].offset = 0; /* over the header */
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ECORRUPT);
    h->sections[1] = saved;
    h->sections[1].offset += 8; /* misaligned */
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ECORRUPT);
    h->sections[1] = saved;
    h->nsections = 1000;
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), -PARD_ECORRUPT);
    h->nsections = 2;
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), 0, "restored header attaches");
    pard_region_close(&view);
    pard_region_close(&r);
}

Test(region, keeps_its_validated_table_when_the_shared_one_is_scribbled, .timeout = 10)
{
    struct pard_region r, view;
    make_region(&r, 65536);
    cr_assert_eq(pard_region_attach(&view, r.fd, 0), 0);
    struct pard_region_header *h = r.base;
    h->sections[0].offset = UINT64_MAX;
    uint64_t size = 0;
    void *p = pard_region_find(&view, KIND_A, &size);
    cr_assert_eq((char *)p - (char *)view.base, (ptrdiff_t)r.sections[0].offset);
    pard_region_close(&view);
    pard_region_close(&r);
}

Test(region, rejects_sections_that_do_not_fit, .timeout = 10)
{
    struct pard_region r;
    cr_assert_eq(pard_region_open(&r, 8192), 0);
    uint64_t off;
    cr_assert_eq(pard_region_add_section(&r, 1, 1 << 20, &off), -PARD_ESIZE);
    cr_assert_eq(pard_region_add_section(&r, 1, UINT64_MAX - 10, &off), -PARD_ESIZE);
    cr_assert_geq(pard_region_add_section(&r, 1, 64, &off), 0);
    pard_region_close(&r);
    cr_assert_eq(pard_region_open(&r, 10), -PARD_ESIZE, "smaller than a header");
}

Test(region, refuses_a_descriptor_that_is_not_shared_memory_it_can_map, .timeout = 10)
{
    struct pard_region view;
    int fd = open("/dev/null", O_RDWR);
    cr_assert_geq(fd, 0);
    int rc = pard_region_attach(&view, fd, 0);
    cr_assert(rc == -PARD_ESIZE, "got %d (%s)", rc, pard_strerror(rc));
    close(fd);
    cr_assert_eq(pard_region_attach(&view, -1, 0), -EBADF);
}

Test(region, a_kept_mapping_is_taken_over_only_for_the_same_object, .timeout = 10)
{
    struct pard_region r, other, view, kept;
    make_region(&r, 65536);
    make_region(&other, 65536);
    cr_assert_eq(pard_region_attach(&kept, r.fd, 42), 0);
    void *base = kept.base;
    /* Laid out again by its creator and attached again: the same pages,
     * validated afresh (the new user version must match). */
    pard_region_unpublish(&r);
    uint64_t off = 0, user[4] = {5, 5, 5, 5};
    cr_assert_eq(pard_region_add_section(&r, KIND_B, 8192, &off), 0);
    pard_region_publish(&r, 43, user);
    cr_assert_eq(pard_region_attach_kept(&view, r.fd, 43, &kept), 0);
    cr_assert_eq(view.base, base, "the kept mapping was taken over");
    cr_assert_null(kept.base, "and is no longer kept");
    cr_assert_eq(pard_region_user(&view, 0), 5, "the header was read again");
    cr_assert_null(pard_region_find(&view, KIND_A, NULL), "the old layout is gone");
    /* Another object of the same size: the kept one is closed, fd mapped. */
    kept = view;
    cr_assert_eq(pard_region_attach_kept(&view, other.fd, 42, &kept), 0);
    cr_assert_null(kept.base);
    cr_assert_eq(kept.fd, -1, "closed, descriptor and all");
    unsigned char *a = pard_region_find(&view, KIND_A, NULL);
    cr_assert_not_null(a);
    a[1] = 0x5a; /* the view is of `other` (its address may be the old one's, reused) */
    cr_assert_eq(((unsigned char *)pard_region_find(&other, KIND_A, NULL))[1], 0x5a);
    /* A kept mapping that fails validation is not left mapped either. */
    kept = view;
    cr_assert_eq(pard_region_attach_kept(&view, other.fd, 99, &kept), -PARD_EVERSION);
    cr_assert_null(kept.base);
    cr_assert_null(view.base);
    pard_region_close(&other);
    pard_region_close(&r);
}
