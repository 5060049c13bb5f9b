/*
 * schema.c — what every message contains: one table per message type,
 * naming each field's key, C location, kind, limits and whether it is
 * required. The encoder (encode.c) and the decoder (decode.c) both walk
 * these tables, so the two cannot disagree. docs/protocol.md is the prose
 * version of this file; change both together.
 *
 * Also here: the wire strings of the enums, name validation, and
 * pard_msg_init().
 */
#include <stdbool.h>
#include <string.h>

#include "internal.h"

/* ======================================================================
 * Table helpers
 * ====================================================================== */

#define FSIZE(T, m) ((uint32_t)sizeof(((T *)0)->m))

/* A scalar, name, text or enum field of struct T. */
#define FIELD(T, key, kind, flags, m)                                                              \
    {                                                                                              \
        key, sizeof(key) - 1, kind, flags, (uint32_t)offsetof(T, m), 0, FSIZE(T, m), 0, NULL       \
    }

/* An optional wait mode with its presence flag. */
#define FIELD_WAIT_OPT(T, key, m, has)                                                             \
    {                                                                                              \
        key, sizeof(key) - 1, PARD__WAIT, 0, (uint32_t)offsetof(T, m), (uint32_t)offsetof(T, has), \
            FSIZE(T, m), 0, NULL                                                                   \
    }

/* An array of names: char m[max][size] with its count. */
#define FIELD_NAMES(T, key, flags, m, count, maxn)                                                 \
    {                                                                                              \
        key, sizeof(key) - 1, PARD__NAMES, flags, (uint32_t)offsetof(T, m),                        \
            (uint32_t)offsetof(T, count), FSIZE(T, m[0]), maxn, NULL                               \
    }

/* An array of maps: struct entry m[max] with its count. */
#define FIELD_LIST(T, key, flags, m, count, maxn, schema)                                          \
    {                                                                                              \
        key, sizeof(key) - 1, PARD__LIST, flags, (uint32_t)offsetof(T, m),                         \
            (uint32_t)offsetof(T, count), FSIZE(T, m[0]), maxn, schema                             \
    }

#define NFIELDS(a) ((uint32_t)(sizeof(a) / sizeof((a)[0])))
#define SCHEMA(name, fields)                                                                       \
    {                                                                                              \
        name, NFIELDS(fields), fields                                                              \
    }
#define EMPTY(name)                                                                                \
    {                                                                                              \
        name, 0, NULL                                                                              \
    }

#define M   struct pard_msg
#define REQ PARD__REQ

/* ======================================================================
 * Message tables
 * ====================================================================== */

static const struct pard__field hello_fields[] = {
    FIELD(M, "role", PARD__ROLE, REQ, hello.role),
    FIELD(M, "pid", PARD__U32, REQ, hello.pid),
    FIELD(M, "name", PARD__NAME, 0, hello.name),
};

static const struct pard__field welcome_fields[] = {
    FIELD(M, "daemon_pid", PARD__U32, REQ, welcome.daemon_pid),
    FIELD(M, "client_id", PARD__U64, REQ, welcome.client_id),
    FIELD(M, "version_string", PARD__TEXT, REQ, welcome.version_string),
};

static const struct pard__field error_fields[] = {
    FIELD(M, "code", PARD__NEG32, REQ, error.code),
    FIELD(M, "message", PARD__TEXT, REQ, error.message),
    FIELD(M, "ref", PARD__U64, 0, error.ref),
};

static const struct pard__field ok_fields[] = {
    FIELD(M, "ref", PARD__U64, 0, ok.ref),
};

static const struct pard__field register_fields[] = {
    FIELD_NAMES(M, "functions", REQ | PARD__MIN1, reg.functions, reg.nfunctions,
                PARD_FUNCTIONS_MAX),
};

static const struct pard__field submit_fields[] = {
    FIELD(M, "function", PARD__NAME, REQ, submit.function),
    FIELD(M, "timeout_ms", PARD__U32, 0, submit.timeout_ms),
    FIELD(M, "retries", PARD__U32, 0, submit.retries),
    FIELD_WAIT_OPT(M, "wait_mode", submit.wait_mode, submit.has_wait_mode),
    FIELD(M, "ring_capacity", PARD__U32, 0, submit.ring_capacity),
    FIELD(M, "input_arena", PARD__U64, 0, submit.input_arena),
    FIELD(M, "output_arena", PARD__U64, 0, submit.output_arena),
    FIELD(M, "max_lanes", PARD__U32, 0, submit.max_lanes),
    FIELD(M, "window", PARD__U32, 0, submit.window),
    FIELD(M, "shared", PARD__U64, 0, submit.shared),
    FIELD(M, "array", PARD__U32, 0, submit.array),
    FIELD(M, "item_size", PARD__U32, 0, submit.item_size),
    FIELD(M, "result_size", PARD__U32, 0, submit.result_size),
};

static const struct pard__field job_fields[] = {
    FIELD(M, "job_id", PARD__U64, REQ, job.job_id),
    FIELD(M, "lanes", PARD__U32, REQ, job.lanes),
    FIELD(M, "function", PARD__NAME, REQ, job.function),
};

static const struct pard__field attach_fields[] = {
    FIELD(M, "job_id", PARD__U64, REQ, attach.job_id),
    FIELD(M, "lane", PARD__U32, REQ, attach.lane),
    FIELD(M, "function", PARD__NAME, REQ, attach.function),
    FIELD(M, "timeout_ms", PARD__U32, REQ, attach.timeout_ms),
    FIELD(M, "wait_mode", PARD__WAIT, REQ, attach.wait_mode),
    FIELD(M, "shared", PARD__U64, 0, attach.shared),
    FIELD(M, "array", PARD__U32, 0, attach.array),
    FIELD(M, "item_size", PARD__U32, 0, attach.item_size),
    FIELD(M, "result_size", PARD__U32, 0, attach.result_size),
};

static const struct pard__field share_fields[] = {
    FIELD(M, "handle", PARD__U64, 0, share.handle),
    FIELD(M, "size", PARD__U64, REQ, share.size),
};

static const struct pard__field unshare_fields[] = {
    FIELD(M, "handle", PARD__U64, REQ, unshare.handle),
};

/* detach, detached, job_end and cancel share one shape and one union
 * storage, so one table (at detach's offsets) serves all four. */
_Static_assert(offsetof(M, detach.job_id) == offsetof(M, detached.job_id), "job_ref layout");
_Static_assert(offsetof(M, detach.job_id) == offsetof(M, job_end.job_id), "job_ref layout");
_Static_assert(offsetof(M, detach.job_id) == offsetof(M, cancel.job_id), "job_ref layout");
static const struct pard__field job_ref_fields[] = {
    FIELD(M, "job_id", PARD__U64, REQ, detach.job_id),
};

static const struct pard__field stats_reply_fields[] = {
    FIELD(M, "workers", PARD__U64, REQ, stats_reply.workers),
    FIELD(M, "idle_workers", PARD__U64, REQ, stats_reply.idle_workers),
    FIELD(M, "jobs", PARD__U64, REQ, stats_reply.jobs),
    FIELD(M, "tasks_done", PARD__U64, REQ, stats_reply.tasks_done),
    FIELD(M, "tasks_per_sec", PARD__F64, REQ, stats_reply.tasks_per_sec),
    FIELD(M, "requeues", PARD__U64, REQ, stats_reply.requeues),
    FIELD(M, "timeouts", PARD__U64, REQ, stats_reply.timeouts),
    FIELD(M, "worker_deaths", PARD__U64, REQ, stats_reply.worker_deaths),
    FIELD(M, "shm_bytes", PARD__U64, REQ, stats_reply.shm_bytes),
    FIELD(M, "uptime_ms", PARD__U64, REQ, stats_reply.uptime_ms),
    FIELD(M, "pid", PARD__U32, REQ, stats_reply.pid),
    FIELD(M, "version_string", PARD__TEXT, REQ, stats_reply.version_string),
};

#define W struct pard_msg_worker_entry
static const struct pard__field worker_entry_fields[] = {
    FIELD(W, "id", PARD__U64, REQ, id),
    FIELD(W, "pid", PARD__U32, REQ, pid),
    FIELD(W, "name", PARD__NAME, 0, name),
    FIELD_NAMES(W, "functions", REQ, functions, nfunctions, PARD_FUNCTIONS_MAX),
    FIELD(W, "job_id", PARD__U64, REQ, job_id),
    FIELD(W, "tasks_done", PARD__U64, REQ, tasks_done),
};
#undef W
static const struct pard__schema worker_entry = SCHEMA("worker", worker_entry_fields);

static const struct pard__field workers_reply_fields[] = {
    FIELD_LIST(M, "workers", REQ, workers_reply.workers, workers_reply.nworkers, PARD_LIST_MAX,
               &worker_entry),
};

#define J struct pard_msg_job_entry
static const struct pard__field job_entry_fields[] = {
    FIELD(J, "id", PARD__U64, REQ, id),
    FIELD(J, "function", PARD__NAME, REQ, function),
    FIELD(J, "submitter_pid", PARD__U32, REQ, submitter_pid),
    FIELD(J, "lanes", PARD__U32, REQ, lanes),
    FIELD(J, "submitted", PARD__U64, REQ, submitted),
    FIELD(J, "delivered", PARD__U64, REQ, delivered),
    FIELD(J, "failed", PARD__U64, REQ, failed),
    FIELD(J, "state", PARD__NAME, REQ, state),
    FIELD(J, "age_ms", PARD__U64, REQ, age_ms),
};
#undef J
static const struct pard__schema job_entry = SCHEMA("job", job_entry_fields);

static const struct pard__field jobs_reply_fields[] = {
    FIELD_LIST(M, "jobs", REQ, jobs_reply.jobs, jobs_reply.njobs, PARD_LIST_MAX, &job_entry),
};

const struct pard__schema pard__schemas[PARD_MSG__COUNT] = {
    [PARD_MSG_NONE] = EMPTY(NULL),
    [PARD_MSG_HELLO] = SCHEMA("hello", hello_fields),
    [PARD_MSG_WELCOME] = SCHEMA("welcome", welcome_fields),
    [PARD_MSG_ERROR] = SCHEMA("error", error_fields),
    [PARD_MSG_OK] = SCHEMA("ok", ok_fields),
    [PARD_MSG_REGISTER] = SCHEMA("register", register_fields),
    [PARD_MSG_SUBMIT] = SCHEMA("submit", submit_fields),
    [PARD_MSG_JOB] = SCHEMA("job", job_fields),
    [PARD_MSG_ATTACH] = SCHEMA("attach", attach_fields),
    [PARD_MSG_DETACH] = SCHEMA("detach", job_ref_fields),
    [PARD_MSG_DETACHED] = SCHEMA("detached", job_ref_fields),
    [PARD_MSG_JOB_END] = SCHEMA("job_end", job_ref_fields),
    [PARD_MSG_CANCEL] = SCHEMA("cancel", job_ref_fields),
    [PARD_MSG_STATS] = EMPTY("stats"),
    [PARD_MSG_STATS_REPLY] = SCHEMA("stats_reply", stats_reply_fields),
    [PARD_MSG_LIST_WORKERS] = EMPTY("list_workers"),
    [PARD_MSG_WORKERS_REPLY] = SCHEMA("workers_reply", workers_reply_fields),
    [PARD_MSG_LIST_JOBS] = EMPTY("list_jobs"),
    [PARD_MSG_JOBS_REPLY] = SCHEMA("jobs_reply", jobs_reply_fields),
    [PARD_MSG_SHUTDOWN] = EMPTY("shutdown"),
    [PARD_MSG_SHARE] = SCHEMA("share", share_fields),
    [PARD_MSG_UNSHARE] = SCHEMA("unshare", unshare_fields),
};

#undef M
#undef REQ

/* ======================================================================
 * Names of types and enums
 * ====================================================================== */

static const char *const type_names[PARD_MSG__COUNT] = {
#define PARD__MSG_NAME(name, str) [PARD_MSG_##name] = str,
    PARD_MSG_TYPE_MAP(PARD__MSG_NAME)
#undef PARD__MSG_NAME
};

const char *pard_msg_type_name(enum pard_msg_type type)
{
    if ((unsigned)type >= PARD_MSG__COUNT || type_names[type] == NULL)
        return "unknown";
    return type_names[type];
}

/* Exact comparison of a counted wire string with a C string. */
static bool str_is(const char *s, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(s, lit, len) == 0;
}

enum pard_msg_type pard__type_parse(const char *s, size_t len)
{
    for (unsigned t = 1; t < PARD_MSG__COUNT; t++)
        if (str_is(s, len, type_names[t]))
            return (enum pard_msg_type)t;
    return PARD_MSG_NONE;
}

static const char *const role_names[] = {
    [PARD_ROLE_WORKER] = "worker",
    [PARD_ROLE_SUBMITTER] = "submitter",
    [PARD_ROLE_CONTROL] = "control",
};

const char *pard_role_name(enum pard_role role)
{
    if (role <= PARD_ROLE_NONE || role > PARD_ROLE_CONTROL)
        return "unknown";
    return role_names[role];
}

int pard__role_parse(const char *s, size_t len, enum pard_role *role)
{
    for (int r = PARD_ROLE_WORKER; r <= PARD_ROLE_CONTROL; r++) {
        if (str_is(s, len, role_names[r])) {
            *role = (enum pard_role)r;
            return 0;
        }
    }
    return -PARD_EPROTO;
}

/* The protocol owns these strings (libipc has its own parser, but the wire
 * spelling is a protocol promise, so it is pinned here). */
static const char *const wait_names[] = {
    [PARD_WAIT_ADAPTIVE] = "adaptive",
    [PARD_WAIT_SPIN] = "spin",
    [PARD_WAIT_BLOCK] = "block",
};

const char *pard__wait_name(enum pard_wait_mode mode)
{
    if ((unsigned)mode >= sizeof(wait_names) / sizeof(wait_names[0]))
        return NULL;
    return wait_names[mode];
}

int pard__wait_parse(const char *s, size_t len, enum pard_wait_mode *mode)
{
    for (unsigned w = 0; w < sizeof(wait_names) / sizeof(wait_names[0]); w++) {
        if (str_is(s, len, wait_names[w])) {
            *mode = (enum pard_wait_mode)w;
            return 0;
        }
    }
    return -PARD_EPROTO;
}

/* ======================================================================
 * Names
 * ====================================================================== */

bool pard__name_valid_n(const char *s, size_t len)
{
    if (len == 0 || len > PARD_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool pard_name_valid(const char *s)
{
    if (s == NULL)
        return false;
    return pard__name_valid_n(s, strnlen(s, PARD_NAME_MAX + 1));
}

/* ======================================================================
 * Initialisation
 * ====================================================================== */

void pard__zero_fields(const struct pard__schema *schema, void *base)
{
    uint8_t *b = base;
    for (uint32_t i = 0; i < schema->nfields; i++) {
        const struct pard__field *f = &schema->fields[i];
        switch (f->kind) {
        case PARD__NAMES:
        case PARD__LIST:
            memset(b + f->aux, 0, sizeof(uint32_t));
            break;
        case PARD__WAIT:
            memset(b + f->off, 0, f->size);
            if (!(f->flags & PARD__REQ))
                memset(b + f->aux, 0, sizeof(bool));
            break;
        default:
            memset(b + f->off, 0, f->size);
            break;
        }
    }
}

void pard_msg_init(struct pard_msg *m, enum pard_msg_type type)
{
    m->type = type;
    m->version = PARD_PROTO_VERSION;
    if ((unsigned)type < PARD_MSG__COUNT)
        pard__zero_fields(&pard__schemas[type], m);
}
