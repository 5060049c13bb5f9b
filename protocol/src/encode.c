/*
 * encode.c — struct pard_msg → msgpack body (and frame), walking the
 * schema tables of schema.c with msgpack-c's packer writing into the
 * caller's buffer. It never allocates.
 *
 * The encoder refuses anything the decoder would refuse, so a pard
 * process never sends a frame its peer must reject.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "internal.h"

/* ======================================================================
 * A bounded output buffer for msgpack's packer
 * ====================================================================== */

struct sink {
    uint8_t *buf;
    size_t cap;
    size_t len;
    bool full; /* a write did not fit */
};

static int sink_write(void *data, const char *bytes, size_t n)
{
    struct sink *s = data;
    if (n > s->cap - s->len) {
        s->full = true;
        return -1;
    }
    memcpy(s->buf + s->len, bytes, n);
    s->len += n;
    return 0;
}

/* ======================================================================
 * Fields
 * ====================================================================== */

static int encode_fields(msgpack_packer *pk, const struct pard__schema *schema, const uint8_t *base,
                         bool with_header, const struct pard_msg *m);

/* The length of a NUL-terminated string stored in a char[size], or -1
 * when there is no NUL within it. */
static long bounded_len(const uint8_t *p, uint32_t size)
{
    const void *nul = memchr(p, 0, size);
    return nul ? (long)((const uint8_t *)nul - p) : -1;
}

/* Whether an optional field holds its absent value (left out). */
static bool field_absent(const struct pard__field *f, const uint8_t *base)
{
    const uint8_t *p = base + f->off;
    switch (f->kind) {
    case PARD__U32: {
        uint32_t v;
        memcpy(&v, p, sizeof(v));
        return v == 0;
    }
    case PARD__U64: {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        return v == 0;
    }
    case PARD__NEG32:
        return false; /* only ever required */
    case PARD__F64: {
        double v;
        memcpy(&v, p, sizeof(v));
        return v == 0.0;
    }
    case PARD__NAME:
    case PARD__TEXT:
        return p[0] == 0;
    case PARD__WAIT: {
        bool has;
        memcpy(&has, base + f->aux, sizeof(has));
        return !has;
    }
    default:
        return false;
    }
}

static bool field_written(const struct pard__field *f, const uint8_t *base)
{
    return (f->flags & PARD__REQ) || !field_absent(f, base);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str(pk, len) != 0 || msgpack_pack_str_body(pk, s, len) != 0)
        return -ENOBUFS;
    return 0;
}

/* Pack a name stored in char[size]; "" only when allowed. */
static int pack_name(msgpack_packer *pk, const uint8_t *p, uint32_t size, bool allow_empty)
{
    long n = bounded_len(p, size);
    if (n < 0 || (n == 0 && !allow_empty) || (n > 0 && !pard__name_valid_n((const char *)p, n)))
        return -EINVAL;
    return pack_str(pk, (const char *)p, (size_t)n);
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static int encode_value(msgpack_packer *pk, const struct pard__field *f, const uint8_t *base)
{
    const uint8_t *p = base + f->off;
    int rc = 0;

    switch (f->kind) {
    case PARD__U32:
        rc = msgpack_pack_uint32(pk, get_u32(p));
        break;
    case PARD__U64: {
        uint64_t v;
        memcpy(&v, p, sizeof(v));
        rc = msgpack_pack_uint64(pk, v);
        break;
    }
    case PARD__NEG32: {
        int32_t v;
        memcpy(&v, p, sizeof(v));
        if (v >= 0)
            return -EINVAL;
        rc = msgpack_pack_int32(pk, v);
        break;
    }
    case PARD__F64: {
        double v;
        memcpy(&v, p, sizeof(v));
        rc = msgpack_pack_double(pk, v);
        break;
    }
    case PARD__NAME:
        return pack_name(pk, p, f->size, !(f->flags & PARD__REQ));
    case PARD__TEXT: {
        long n = bounded_len(p, f->size);
        if (n < 0)
            return -EINVAL;
        return pack_str(pk, (const char *)p, (size_t)n);
    }
    case PARD__ROLE: {
        enum pard_role role;
        memcpy(&role, p, sizeof(role));
        if (role < PARD_ROLE_WORKER || role > PARD_ROLE_CONTROL)
            return -EINVAL;
        const char *s = pard_role_name(role);
        return pack_str(pk, s, strlen(s));
    }
    case PARD__WAIT: {
        enum pard_wait_mode mode;
        memcpy(&mode, p, sizeof(mode));
        const char *s = pard__wait_name(mode);
        if (s == NULL)
            return -EINVAL;
        return pack_str(pk, s, strlen(s));
    }
    case PARD__NAMES:
    case PARD__LIST: {
        uint32_t n = get_u32(base + f->aux);
        if (n > f->max || (n == 0 && (f->flags & PARD__MIN1)))
            return -EINVAL;
        if (msgpack_pack_array(pk, n) != 0)
            return -ENOBUFS;
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *elem = p + (size_t)i * f->size;
            rc = f->kind == PARD__NAMES ? pack_name(pk, elem, f->size, false)
                                        : encode_fields(pk, f->sub, elem, false, NULL);
            if (rc != 0)
                return rc;
        }
        return 0;
    }
    default:
        return -EINVAL;
    }
    return rc == 0 ? 0 : -ENOBUFS;
}

/*
 * encode_fields - one map: "type" and "v" first when with_header (from m),
 * then every written field of the schema in table order.
 */
static int encode_fields(msgpack_packer *pk, const struct pard__schema *schema, const uint8_t *base,
                         bool with_header, const struct pard_msg *m)
{
    size_t n = with_header ? 2 : 0;
    for (uint32_t i = 0; i < schema->nfields; i++)
        n += field_written(&schema->fields[i], base);
    if (msgpack_pack_map(pk, n) != 0)
        return -ENOBUFS;

    if (with_header) {
        uint32_t v = m->version ? m->version : PARD_PROTO_VERSION;
        int rc = pack_str(pk, "type", 4);
        if (rc == 0)
            rc = pack_str(pk, schema->name, strlen(schema->name));
        if (rc == 0)
            rc = pack_str(pk, "v", 1);
        if (rc == 0 && msgpack_pack_uint32(pk, v) != 0)
            rc = -ENOBUFS;
        if (rc != 0)
            return rc;
    }
    for (uint32_t i = 0; i < schema->nfields; i++) {
        const struct pard__field *f = &schema->fields[i];
        if (!field_written(f, base))
            continue;
        int rc = pack_str(pk, f->key, f->keylen);
        if (rc == 0)
            rc = encode_value(pk, f, base);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ======================================================================
 * Public
 * ====================================================================== */

int pard_msg_encode(const struct pard_msg *m, void *buf, size_t cap, size_t *len)
{
    if (m == NULL || (buf == NULL && cap > 0) || len == NULL)
        return -EINVAL;
    if (m->type <= PARD_MSG_NONE || m->type >= PARD_MSG__COUNT)
        return -EINVAL;

    struct sink s = {.buf = buf, .cap = cap};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s, sink_write);

    int rc = encode_fields(&pk, &pard__schemas[m->type], (const uint8_t *)m, true, m);
    if (rc == 0 && s.full)
        rc = -ENOBUFS; /* belt and braces: a failed write always fails the pack call */
    if (rc == 0 && s.len > PARD_FRAME_MAX_LIMIT)
        rc = -PARD_ETOOBIG;
    if (rc != 0)
        return rc;
    *len = s.len;
    return 0;
}

int pard_msg_encode_frame(const struct pard_msg *m, void *buf, size_t cap, size_t *len)
{
    if (buf == NULL || cap < PARD_FRAME_HEADER || len == NULL)
        return cap < PARD_FRAME_HEADER && buf != NULL ? -ENOBUFS : -EINVAL;
    size_t body = 0;
    int rc = pard_msg_encode(m, (uint8_t *)buf + PARD_FRAME_HEADER, cap - PARD_FRAME_HEADER, &body);
    if (rc != 0)
        return rc;
    pard_frame_put_header(buf, (uint32_t)body);
    *len = PARD_FRAME_HEADER + body;
    return 0;
}

void pard_msg_set_error(struct pard_msg *m, int code, uint64_t ref, const char *fmt, ...)
{
    pard_msg_init(m, PARD_MSG_ERROR);
    m->error.code = code;
    m->error.ref = ref;

    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(m->error.message, sizeof(m->error.message), fmt, ap);
    va_end(ap);

    if (n >= (int)sizeof(m->error.message)) {
        /* Truncated: do not leave half a UTF-8 sequence at the end. */
        size_t end = sizeof(m->error.message) - 1;
        size_t cut = end;
        while (cut > 0 && ((unsigned char)m->error.message[cut - 1] & 0xC0) == 0x80)
            cut--;
        if (cut > 0 && ((unsigned char)m->error.message[cut - 1] & 0x80)) {
            /* m->error.message[cut - 1] leads a sequence; keep it only if whole. */
            unsigned char lead = (unsigned char)m->error.message[cut - 1];
            size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
            if (end - (cut - 1) < need)
                end = cut - 1;
        }
        m->error.message[end] = 0;
    } else if (n < 0) {
        m->error.message[0] = 0;
    }
}
