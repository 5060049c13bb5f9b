/*
 * xmlcount.c — case study: count the elements and attributes of every XML
 * file under some directories, serially and then in parallel with pard,
 * and print both times and the speedup.
 *
 *   pard-xmlcount --worker [--socket PATH]     serve the function `xml_count`
 *   pard-xmlcount [--socket PATH] [DIR...]     run the comparison
 *                                              (default: /usr/share/xml /usr/share/mime)
 *
 * The same function runs in both modes, so the totals must agree; the
 * program exits 1 if they do not.
 */
#include <errno.h>
#include <expat.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pard/pard.h"

/* ---- the work: parse one file with expat ------------------------------ */

struct counts {
    uint64_t elements;
    uint64_t attributes;
};

static void XMLCALL on_start(void *data, const XML_Char *name, const XML_Char **atts)
{
    struct counts *c = data;
    c->elements++;
    for (int i = 0; atts[i]; i += 2)
        c->attributes++;
}

/* Count one file. Returns 0, or -1 with a message in err. */
static int count_file(const char *path, struct counts *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    XML_Parser p = XML_ParserCreate(NULL);
    XML_SetUserData(p, c);
    XML_SetStartElementHandler(p, on_start);
    int rc = 0;
    for (;;) {
        void *buf = XML_GetBuffer(p, 65536);
        ssize_t n = buf ? read(fd, buf, 65536) : -1;
        if (n < 0) {
            snprintf(err, errlen, "%s: %s", path, buf ? strerror(errno) : "out of memory");
            rc = -1;
            break;
        }
        if (XML_ParseBuffer(p, (int)n, n == 0) == XML_STATUS_ERROR) {
            snprintf(err, errlen, "%s:%lu: %s", path, (unsigned long)XML_GetCurrentLineNumber(p),
                     XML_ErrorString(XML_GetErrorCode(p)));
            rc = -1;
            break;
        }
        if (n == 0)
            break;
    }
    XML_ParserFree(p);
    close(fd);
    return rc;
}

/* The pard function: input a path, output "ELEMENTS ATTRIBUTES". */
static int xml_count(void *ctx, const void *in, size_t len, struct pard_out *out)
{
    char path[4096], err[512];
    if (len >= sizeof(path))
        return pard_out_error(out, "path too long");
    memcpy(path, in, len);
    path[len] = '\0';
    struct counts c;
    if (count_file(path, &c, err, sizeof(err)) != 0)
        return pard_out_error(out, "%s", err);
    return pard_out_printf(out, "%llu %llu", (unsigned long long)c.elements,
                           (unsigned long long)c.attributes);
}

/* ---- finding the files ------------------------------------------------ */

static char **files;
static size_t nfiles, capfiles;

static int collect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    size_t n = strlen(path);
    if (type != FTW_F || n < 4 || strcmp(path + n - 4, ".xml") != 0)
        return 0;
    if (nfiles == capfiles) {
        capfiles = capfiles ? capfiles * 2 : 256;
        files = realloc(files, capfiles * sizeof(*files));
        if (!files)
            return -1;
    }
    files[nfiles++] = strdup(path);
    return 0;
}

/* ---- the comparison --------------------------------------------------- */

struct run {
    struct counts total;
    uint64_t failed;
    char first_error[512];
};

static int next_path(void *arg, uint64_t index, const void **data, size_t *len)
{
    if (index >= nfiles)
        return 0;
    *data = files[index];
    *len = strlen(files[index]);
    return 1;
}

static int add_result(void *arg, const struct pard_result *r)
{
    struct run *run = arg;
    if (r->status != 0) {
        if (run->failed++ == 0)
            snprintf(run->first_error, sizeof(run->first_error), "%.*s", (int)r->len,
                     (const char *)r->data);
        return 0;
    }
    char buf[64];
    size_t n = r->len < sizeof(buf) - 1 ? r->len : sizeof(buf) - 1;
    memcpy(buf, r->data, n);
    buf[n] = '\0';
    unsigned long long e = 0, a = 0;
    if (sscanf(buf, "%llu %llu", &e, &a) != 2) {
        run->failed++;
        return 0;
    }
    run->total.elements += e;
    run->total.attributes += a;
    return 0;
}

int main(int argc, char **argv)
{
    const char *socket_path = NULL;
    bool worker = false;
    int ndirs = 0;
    const char *dirs[64];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--worker") == 0)
            worker = true;
        else if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc)
            socket_path = argv[++i];
        else if (strcmp(argv[i], "--help") == 0) {
            printf("usage: pard-xmlcount --worker [--socket PATH]\n"
                   "       pard-xmlcount [--socket PATH] [DIR...]\n"
                   "Counts elements and attributes of every .xml file under DIRs (default\n"
                   "/usr/share/xml and /usr/share/mime), serially and with pard, and prints\n"
                   "both times and the speedup. --worker serves the function xml_count.\n");
            return 0;
        } else if (ndirs < 64)
            dirs[ndirs++] = argv[i];
    }
    if (worker) {
        static const struct pard_function fns[] = {{"xml_count", xml_count}};
        struct pard_worker_opts o = {.socket_path = socket_path, .name = "xmlcount"};
        int rc = pard_worker_run(fns, 1, &o);
        if (rc != 0)
            fprintf(stderr, "pard-xmlcount: %s\n", pard_last_error());
        return rc != 0;
    }
    if (ndirs == 0) {
        dirs[ndirs++] = "/usr/share/xml";
        dirs[ndirs++] = "/usr/share/mime";
    }
    for (int i = 0; i < ndirs; i++)
        if (nftw(dirs[i], collect, 32, FTW_PHYS) != 0)
            fprintf(stderr, "pard-xmlcount: cannot walk %s: %s\n", dirs[i], strerror(errno));
    if (nfiles == 0) {
        fprintf(stderr, "pard-xmlcount: no .xml files found\n");
        return 1;
    }
    printf("XML files: %zu under", nfiles);
    for (int i = 0; i < ndirs; i++)
        printf(" %s", dirs[i]);
    printf("\n");

    /* Read every file once untimed, so that both runs find them in the page
     * cache and the comparison measures parsing, not the disk. */
    for (size_t i = 0; i < nfiles; i++) {
        char buf[65536];
        int fd = open(files[i], O_RDONLY | O_CLOEXEC);
        while (fd >= 0 && read(fd, buf, sizeof(buf)) > 0)
            ;
        if (fd >= 0)
            close(fd);
    }

    /* Serial: the same function, in this process. */
    struct run serial = {0};
    int64_t t0 = pard_now_ns();
    for (size_t i = 0; i < nfiles; i++) {
        struct counts c;
        char err[512];
        if (count_file(files[i], &c, err, sizeof(err)) != 0) {
            if (serial.failed++ == 0)
                snprintf(serial.first_error, sizeof(serial.first_error), "%s", err);
            continue;
        }
        serial.total.elements += c.elements;
        serial.total.attributes += c.attributes;
    }
    int64_t serial_ns = pard_now_ns() - t0;

    /* Parallel: through pard. */
    struct pard_client *c;
    if (pard_connect(&c, socket_path) != 0) {
        fprintf(stderr, "pard-xmlcount: %s\n", pard_last_error());
        return 1;
    }
    struct run par = {0};
    struct pard_map_stats st;
    t0 = pard_now_ns();
    struct pard_map_opts opts = {.progress = true, .total = nfiles};
    int rc = pard_map(c, "xml_count", next_path, add_result, &par, &opts, &st);
    int64_t par_ns = pard_now_ns() - t0;
    pard_disconnect(c);
    if (rc != 0) {
        fprintf(stderr, "pard-xmlcount: %s\n", pard_last_error());
        return 1;
    }
    printf("  %-9s %12s %12s %8s %10s\n", "", "elements", "attributes", "failed", "time");
    printf("  %-9s %12llu %12llu %8llu %8.1f ms\n", "serial",
           (unsigned long long)serial.total.elements, (unsigned long long)serial.total.attributes,
           (unsigned long long)serial.failed, serial_ns / 1e6);
    printf("  %-9s %12llu %12llu %8llu %8.1f ms\n", "pard", (unsigned long long)par.total.elements,
           (unsigned long long)par.total.attributes, (unsigned long long)par.failed, par_ns / 1e6);
    printf("  speedup: %.2fx with the workers pard runs\n", (double)serial_ns / (double)par_ns);
    if (par.failed)
        printf("  %llu files are not well-formed XML (both runs agree), e.g.\n    %s\n",
               (unsigned long long)par.failed, par.first_error);
    bool same = serial.total.elements == par.total.elements &&
                serial.total.attributes == par.total.attributes && serial.failed == par.failed;
    if (!same)
        fprintf(stderr, "pard-xmlcount: the parallel totals differ from the serial ones\n");
    for (size_t i = 0; i < nfiles; i++)
        free(files[i]);
    free(files);
    return same ? 0 : 1;
}
