/*
 * test_security.c — what keeps other users and stray programs out, checked
 * on a real pard: the socket is 0600 (in a 0700 directory when pard makes
 * the default one, and it refuses a directory others can enter), every
 * descriptor the daemon and libpard hold is close-on-exec, the job's
 * regions are 0600 and have no name left, and --spawn runs workers
 * without a shell unless --worker-shell asks for one. (Another uid being
 * refused is test_daemon's refuses_a_client_of_another_uid.)
 */
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

#include "client_helpers.h"

/* ======================================================================
 * Descriptors
 * ====================================================================== */

/* The flags line of /proc/PID/fdinfo/FD, or -1. */
static long fd_flags(pid_t pid, int fd)
{
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/%d/fdinfo/%d", (int)pid, fd);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long flags = -1;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, "flags:", 6) == 0)
            flags = strtol(line + 6, NULL, 8);
    fclose(f);
    return flags;
}

struct fd_survey {
    int open;        /* descriptors above 2 */
    int shm;         /* of which shared-memory regions */
    int not_cloexec; /* descriptors without O_CLOEXEC */
    int named_shm;   /* regions whose name still exists */
    int shm_not_0600;
    char first_bad[200];
};

/* Look at every descriptor of pid above 2, except those in `skip` (a set of
 * fds that were open before, for the test's own process). */
static void survey_fds(pid_t pid, const bool *skip, struct fd_survey *s)
{
    memset(s, 0, sizeof(*s));
    char dir[64];
    snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
    DIR *dp = opendir(dir);
    cr_assert_not_null(dp, "cannot list %s", dir);
    int self = dirfd(dp);
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd <= 2 || (pid == getpid() && (fd == self || (fd < 1024 && skip && skip[fd]))))
            continue;
        char link[256] = "", path[320];
        snprintf(path, sizeof(path), "%s/%d", dir, fd);
        ssize_t n = readlink(path, link, sizeof(link) - 1);
        link[n > 0 ? n : 0] = '\0';
        long flags = fd_flags(pid, fd);
        s->open++;
        if (flags < 0 || !(flags & O_CLOEXEC)) {
            if (s->not_cloexec++ == 0)
                snprintf(s->first_bad, sizeof(s->first_bad), "fd %d -> %s", fd, link);
        }
        if (strncmp(link, "/dev/shm/", 9) == 0) {
            s->shm++;
            if (!strstr(link, "(deleted)"))
                s->named_shm++;
            struct stat st;
            if (stat(path, &st) != 0 || (st.st_mode & 0777) != 0600)
                s->shm_not_0600++;
        }
    }
    closedir(dp);
}

struct probe {
    pid_t daemon;
    const bool *before; /* the test's own fds before libpard opened any */
    struct fd_survey d, me;
    bool surveyed;
};

static uint64_t n_inputs = 200;
static char input_buf[24];

static int next_input(void *arg, uint64_t index, const void **data, size_t *len)
{
    (void)arg;
    if (index >= n_inputs)
        return 0;
    *len = (size_t)snprintf(input_buf, sizeof(input_buf), "%llu", (unsigned long long)index);
    *data = input_buf;
    return 1;
}

/* At the first result the job's regions are mapped everywhere: look. */
static int on_result(void *arg, const struct pard_result *r)
{
    struct probe *p = arg;
    if (!p->surveyed) {
        survey_fds(p->daemon, NULL, &p->d);
        survey_fds(getpid(), p->before, &p->me);
        p->surveyed = true;
    }
    return r->status == 0 ? 0 : r->status;
}

Test(security, keeps_its_socket_0600_and_every_descriptor_close_on_exec, .timeout = 60)
{
    bool before[1024] = {false};
    for (int fd = 0; fd < 1024; fd++)
        before[fd] = fcntl(fd, F_GETFD) != -1;
    struct test_daemon d;
    test_daemon_start(&d);
    struct stat st;
    cr_assert_eq(stat(d.socket, &st), 0);
    cr_assert(S_ISSOCK(st.st_mode));
    cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", (unsigned)(st.st_mode & 0777));
    test_worker_start(&d);
    test_wait_workers(&d, 1);

    struct pard_client *c;
    cr_assert_eq(pard_connect(&c, d.socket), 0, "%s", pard_last_error());
    void *block;
    uint64_t handle;
    cr_assert_eq(pard_share(c, 1 << 20, &block, &handle), 0, "%s", pard_last_error());
    memset(block, 7, 1 << 20);
    struct probe p = {.daemon = d.pid, .before = before};
    struct pard_map_opts o = {.shared = handle};
    cr_assert_eq(pard_map(c, "square", next_input, on_result, &p, &o, NULL), 0, "%s",
                 pard_last_error());
    cr_assert(p.surveyed);
    cr_log_info("pard holds %d descriptors above 2 (%d shared-memory regions) during a map; "
                "the submitter %d (%d regions)",
                p.d.open, p.d.shm, p.me.open, p.me.shm);
    cr_assert_geq(p.d.shm, 2, "the daemon holds no job region and shared block during the map");
    cr_assert_geq(p.me.shm, 2, "the submitter maps no job region and shared block");
    cr_assert_eq(p.d.not_cloexec, 0, "the daemon holds %d descriptors a child would inherit: %s",
                 p.d.not_cloexec, p.d.first_bad);
    cr_assert_eq(p.me.not_cloexec, 0, "libpard opened %d descriptors without O_CLOEXEC: %s",
                 p.me.not_cloexec, p.me.first_bad);
    cr_assert_eq(p.d.named_shm + p.me.named_shm, 0, "a region still has a name in /dev/shm");
    cr_assert_eq(p.d.shm_not_0600 + p.me.shm_not_0600, 0, "a region is not mode 0600");
    pard_disconnect(c);
    test_daemon_stop(&d);
}

/* ======================================================================
 * The default directory
 * ====================================================================== */

/* Start pard with no --socket and no $PARD_SOCKET or $XDG_RUNTIME_DIR, so
 * it uses /tmp/pard-$UID/pard.sock; its stderr goes to `log`. */
static pid_t spawn_default(const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0)
            dup2(fd, STDERR_FILENO);
        unsetenv("PARD_SOCKET");
        unsetenv("XDG_RUNTIME_DIR");
        execl(TEST_PARD, TEST_PARD, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    cr_assert(pid > 0);
    return pid;
}

static void read_file(const char *path, char *buf, size_t cap)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
}

Test(security, makes_the_default_directory_0700_and_refuses_one_others_can_enter, .timeout = 60)
{
    char dir[64], sock[96], log[96], text[1024];
    snprintf(dir, sizeof(dir), "/tmp/pard-%u", (unsigned)getuid());
    snprintf(sock, sizeof(sock), "%s/pard.sock", dir);
    snprintf(log, sizeof(log), "/tmp/pard-security-%d.log", (int)getpid());
    struct stat st;
    if (lstat(dir, &st) == 0)
        cr_skip_test("%s exists (a pard of this user may be running there): not touching it", dir);

    /* A directory others may enter: refused, with the reason. */
    cr_assert_eq(mkdir(dir, 0700), 0);
    cr_assert_eq(chmod(dir, 0755), 0);
    pid_t pid = spawn_default(log);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    read_file(log, text, sizeof(text));
    cr_log_info("pard with a 0755 %s: status %#x: %s", dir, status, text);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 1, "status %#x", status);
    cr_assert_not_null(strstr(text, "not a private directory"), "%s", text);
    cr_assert_neq(stat(sock, &st), 0, "pard made a socket in a directory others can enter");
    cr_assert_eq(rmdir(dir), 0);

    /* No directory: pard makes it 0700, the socket 0600. */
    struct test_daemon d = {0};
    snprintf(d.dir, sizeof(d.dir), "%s", dir);
    snprintf(d.socket, sizeof(d.socket), "%s", sock);
    d.pid = spawn_default(log);
    test_daemon_wait_ready(&d);
    cr_assert_eq(lstat(dir, &st), 0);
    cr_assert(S_ISDIR(st.st_mode) && st.st_uid == getuid());
    cr_assert_eq(st.st_mode & 0777, 0700, "directory mode %o", (unsigned)(st.st_mode & 0777));
    cr_assert_eq(stat(sock, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600, "socket mode %o", (unsigned)(st.st_mode & 0777));
    test_daemon_stop(&d); /* also removes the directory */
    unlink(log);
}

/* ======================================================================
 * Workers without a shell
 * ====================================================================== */

/* Wait (20 s at most) until `log` holds `needle`. */
static bool wait_for_log(const char *log, const char *needle, char *text, size_t cap)
{
    for (int i = 0; i < 2000; i++) {
        read_file(log, text, cap);
        if (strstr(text, needle))
            return true;
        usleep(10000);
    }
    return false;
}

/* pard --spawn 1 --worker CMD [--worker-shell], its stderr to d->dir/pard.log. */
static void start_spawning(struct test_daemon *d, const char *cmd, bool shell, char *log,
                           size_t cap)
{
    memset(d, 0, sizeof(*d));
    snprintf(d->dir, sizeof(d->dir), "/tmp/pard-test-XXXXXX");
    cr_assert_not_null(mkdtemp(d->dir));
    snprintf(d->socket, sizeof(d->socket), "%s/pard.sock", d->dir);
    snprintf(log, cap, "%s/pard.log", d->dir);
    pid_t pid = fork();
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execl(TEST_PARD, TEST_PARD, "--socket", d->socket, "--log-level", "info", "--spawn", "1",
              "--worker", cmd, shell ? "--worker-shell" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    cr_assert(pid > 0);
    d->pid = pid;
    test_daemon_wait_ready(d);
}

Test(security, spawns_workers_without_a_shell_unless_asked, .timeout = 90)
{
    char cmd[256], mark[128], log[128], text[8192];
    for (int shell = 0; shell < 2; shell++) {
        struct test_daemon d;
        char dir[64];
        snprintf(dir, sizeof(dir), "/tmp/pard-mark-XXXXXX");
        cr_assert_not_null(mkdtemp(dir));
        snprintf(mark, sizeof(mark), "%s/mark", dir);
        /* With a shell, ';' ends echo's command and touch makes the mark;
         * without one, echo prints the whole line and nothing else runs. */
        snprintf(cmd, sizeof(cmd), "/bin/echo shell-test;/usr/bin/touch %s", mark);
        start_spawning(&d, cmd, shell, log, sizeof(log));
        /* The first worker has ended: it exited (status 0) or the shell
         * did, after touch. Then look for the mark. */
        bool ended = wait_for_log(log, "exited with status", text, sizeof(text));
        test_daemon_stop(&d);
        struct stat st;
        bool marked = stat(mark, &st) == 0;
        cr_log_info("--worker '%s'%s: mark %s; pard's log: %.300s", cmd,
                    shell ? " --worker-shell" : "", marked ? "made" : "not made", text);
        cr_assert(ended, "the spawned worker never exited: %s", text);
        if (shell)
            cr_assert(marked, "--worker-shell did not run the command through a shell");
        else
            cr_assert(!marked, "the worker command ran through a shell without --worker-shell");
        if (!shell)
            cr_assert_not_null(strstr(text, "shell-test;/usr/bin/touch"),
                               "echo did not get the whole line as its arguments: %s", text);
        unlink(mark);
        rmdir(dir);
        unlink(log);
        rmdir(d.dir);
    }
}

/* ======================================================================
 * Another user
 * ====================================================================== */

/* Run a shell-free command; its exit status, or -1. */
static int run_cmd(char *const argv[])
{
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        if (null >= 0)
            dup2(null, STDOUT_FILENO);
        execv(argv[0], argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A user made for the test (useradd), a real libpard client running as
 * that user, and a socket that lets it in (0666 in a 0755 directory), so
 * that only pard's SO_PEERCRED check stands in the way. */
Test(security, refuses_a_client_of_a_user_created_for_the_test, .timeout = 60)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to create a user");
    if (access("/usr/sbin/useradd", X_OK) != 0 || access("/usr/sbin/userdel", X_OK) != 0)
        cr_skip_test("useradd/userdel are missing (Debian: passwd); "
                     "daemon/refuses_a_client_of_another_uid still checks uid 65534");
    char name[32];
    snprintf(name, sizeof(name), "pardt%d", (int)getpid());
    char *add[] = {"/usr/sbin/useradd",
                   "--system",
                   "--no-create-home",
                   "--shell",
                   "/usr/sbin/nologin",
                   name,
                   NULL};
    cr_assert_eq(run_cmd(add), 0, "useradd %s failed", name);
    struct passwd *pw = getpwnam(name);
    uid_t uid = pw ? pw->pw_uid : 0;
    gid_t gid = pw ? pw->pw_gid : 0;

    struct test_daemon d;
    test_daemon_start(&d);
    chmod(d.dir, 0755);
    chmod(d.socket, 0666);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        struct {
            int rc;
            char msg[400];
        } out = {.rc = 1};
        if (uid != 0 && setgroups(0, NULL) == 0 && setgid(gid) == 0 && setuid(uid) == 0) {
            struct pard_client *c = NULL;
            out.rc = pard_connect_control(&c, d.socket);
            snprintf(out.msg, sizeof(out.msg), "%s", pard_last_error());
            if (out.rc == 0)
                pard_disconnect(c);
        }
        (void)!write(p[1], &out, sizeof(out));
        _exit(0);
    }
    close(p[1]);
    struct {
        int rc;
        char msg[400];
    } got = {.rc = 999};
    ssize_t n = read(p[0], &got, sizeof(got));
    close(p[0]);
    waitpid(pid, NULL, 0);
    char *del[] = {"/usr/sbin/userdel", name, NULL};
    int del_rc = run_cmd(del);
    test_daemon_stop(&d);
    cr_log_info("user %s (uid %u): pard_connect_control returned %d: %s", name, (unsigned)uid,
                got.rc, got.msg);
    cr_assert_neq(uid, 0, "getpwnam(%s) found no user", name);
    cr_assert_eq(n, (ssize_t)sizeof(got), "the client as %s did not report", name);
    cr_assert_eq(got.rc, -PARD_EDENIED, "the client as another user got %d: %s", got.rc, got.msg);
    cr_assert_neq(got.msg[0], '\0', "no message for the refused user");
    cr_assert_eq(del_rc, 0, "userdel %s failed", name);
}
