/*
 * decode.c — msgpack body → struct pard_msg.
 *
 * Two steps. First pard__mp_check() walks the raw bytes and proves the
 * body is one complete msgpack object within the structural limits
 * (depth, container sizes, object count), without allocating: msgpack-c
 * sizes its allocations from container headers, so a 10-byte frame
 * claiming a 4-billion-element array must never reach it. Then msgpack-c
 * builds the object tree in a zone (about 24 bytes per object, so at most
 * PARD_OBJECTS_MAX * 24 bytes), strings pointing into the body, and the
 * schema tables of schema.c drive the copy into the fixed-size struct,
 * checking every type, range and length. The zone is freed before
 * returning; the decoded message owns nothing.
 */
#include <errno.h>
#include <string.h>

#include <msgpack.h>

#include "internal.h"

/* ======================================================================
 * Structural pre-check
 * ====================================================================== */

struct skim {
    const uint8_t *p;
    size_t len;
    size_t pos;
    size_t objects;
};

static uint64_t be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Take n bytes (a length field or a payload); -PARD_EPROTO when truncated. */
static int take(struct skim *s, uint64_t n, const uint8_t **out)
{
    if (n > s->len - s->pos)
        return -PARD_EPROTO;
    if (out)
        *out = s->p + s->pos;
    s->pos += (size_t)n;
    return 0;
}

static int take_len(struct skim *s, unsigned width, uint64_t *n)
{
    const uint8_t *q;
    int rc = take(s, width, &q);
    if (rc == 0)
        *n = be(q, width);
    return rc;
}

/*
 * skim_object - step over one object at s->pos. `depth` counts the
 * containers it is inside. Recursion is bounded by PARD_NESTING_MAX.
 */
static int skim_object(struct skim *s, unsigned depth)
{
    const uint8_t *q;
    uint64_t n = 0;
    uint64_t elems = 0; /* child objects of a container */
    int rc;

    if (++s->objects > PARD_OBJECTS_MAX)
        return -PARD_ETOOBIG;
    if ((rc = take(s, 1, &q)) != 0)
        return rc;
    uint8_t b = q[0];

    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0; /* fixint, nil, bool */
    if (b >= 0xa0 && b <= 0xbf)
        return take(s, b & 0x1f, NULL); /* fixstr */
    if (b >= 0x80 && b <= 0x8f) {
        n = b & 0x0f;
        elems = 2 * n;
    } else if (b >= 0x90 && b <= 0x9f) {
        n = b & 0x0f;
        elems = n;
    } else {
        switch (b) {
        case 0xc1:
            return -PARD_EPROTO; /* never used */
        case 0xc4:               /* bin 8/16/32 */
        case 0xd9:               /* str 8/16/32 */
            if ((rc = take_len(s, 1, &n)) != 0)
                return rc;
            return take(s, n, NULL);
        case 0xc5:
        case 0xda:
            if ((rc = take_len(s, 2, &n)) != 0)
                return rc;
            return take(s, n, NULL);
        case 0xc6:
        case 0xdb:
            if ((rc = take_len(s, 4, &n)) != 0)
                return rc;
            return take(s, n, NULL);
        case 0xc7: /* ext 8/16/32: length, type byte, payload */
            if ((rc = take_len(s, 1, &n)) != 0)
                return rc;
            return take(s, n + 1, NULL);
        case 0xc8:
            if ((rc = take_len(s, 2, &n)) != 0)
                return rc;
            return take(s, n + 1, NULL);
        case 0xc9:
            if ((rc = take_len(s, 4, &n)) != 0)
                return rc;
            return take(s, n + 1, NULL);
        case 0xca:
            return take(s, 4, NULL); /* float 32 */
        case 0xcb:
            return take(s, 8, NULL); /* float 64 */
        case 0xcc:
        case 0xd0:
            return take(s, 1, NULL);
        case 0xcd:
        case 0xd1:
            return take(s, 2, NULL);
        case 0xce:
        case 0xd2:
            return take(s, 4, NULL);
        case 0xcf:
        case 0xd3:
            return take(s, 8, NULL);
        case 0xd4: /* fixext 1/2/4/8/16: type byte + payload */
            return take(s, 1 + 1, NULL);
        case 0xd5:
            return take(s, 1 + 2, NULL);
        case 0xd6:
            return take(s, 1 + 4, NULL);
        case 0xd7:
            return take(s, 1 + 8, NULL);
        case 0xd8:
            return take(s, 1 + 16, NULL);
        case 0xdc: /* array 16/32 */
            if ((rc = take_len(s, 2, &n)) != 0)
                return rc;
            elems = n;
            break;
        case 0xdd:
            if ((rc = take_len(s, 4, &n)) != 0)
                return rc;
            elems = n;
            break;
        case 0xde: /* map 16/32 */
            if ((rc = take_len(s, 2, &n)) != 0)
                return rc;
            elems = 2 * n;
            break;
        case 0xdf:
            if ((rc = take_len(s, 4, &n)) != 0)
                return rc;
            elems = 2 * n;
            break;
        default:
            return -PARD_EPROTO; /* unreachable: every byte is covered above */
        }
    }

    /* A container: check its size before looking at its elements. */
    if (n > PARD_CONTAINER_MAX)
        return -PARD_ETOOBIG;
    if (elems > s->len - s->pos)
        return -PARD_EPROTO; /* every element takes at least one byte */
    if (elems > 0 && depth + 1 > PARD_NESTING_MAX)
        return -PARD_EPROTO;
    for (uint64_t i = 0; i < elems; i++)
        if ((rc = skim_object(s, depth + 1)) != 0)
            return rc;
    return 0;
}

int pard__mp_check(const uint8_t *buf, size_t len)
{
    struct skim s = {.p = buf, .len = len};
    if (len == 0)
        return -PARD_EPROTO;
    int rc = skim_object(&s, 0);
    if (rc == 0 && s.pos != len)
        rc = -PARD_EPROTO; /* trailing bytes: a body is exactly one object */
    return rc;
}

/* ======================================================================
 * Fields
 * ====================================================================== */

static int decode_map(const msgpack_object *map, const struct pard__schema *schema, uint8_t *base,
                      bool top);

static int copy_name(const msgpack_object *o, uint8_t *dst, uint32_t size, bool allow_empty)
{
    if (o->type != MSGPACK_OBJECT_STR)
        return -PARD_EPROTO;
    uint32_t n = o->via.str.size;
    if (n > PARD_NAME_MAX || n >= size)
        return -PARD_ETOOBIG;
    if (n == 0 && allow_empty) {
        dst[0] = 0;
        return 0;
    }
    if (!pard__name_valid_n(o->via.str.ptr, n))
        return -PARD_EPROTO;
    memcpy(dst, o->via.str.ptr, n);
    dst[n] = 0;
    return 0;
}

static int decode_value(const msgpack_object *o, const struct pard__field *f, uint8_t *base)
{
    uint8_t *p = base + f->off;

    switch (f->kind) {
    case PARD__U32: {
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER || o->via.u64 > UINT32_MAX)
            return -PARD_EPROTO;
        uint32_t u32 = (uint32_t)o->via.u64;
        memcpy(p, &u32, sizeof(u32));
        return 0;
    }
    case PARD__U64:
        if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            return -PARD_EPROTO;
        memcpy(p, &o->via.u64, sizeof(uint64_t));
        return 0;
    case PARD__NEG32: {
        if (o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER || o->via.i64 < INT32_MIN)
            return -PARD_EPROTO;
        int32_t i32 = (int32_t)o->via.i64;
        memcpy(p, &i32, sizeof(i32));
        return 0;
    }
    case PARD__F64: {
        double d;
        if (o->type == MSGPACK_OBJECT_FLOAT64 || o->type == MSGPACK_OBJECT_FLOAT32)
            d = o->via.f64;
        else if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            d = (double)o->via.u64;
        else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
            d = (double)o->via.i64;
        else
            return -PARD_EPROTO;
        memcpy(p, &d, sizeof(d));
        return 0;
    }
    case PARD__NAME:
        return copy_name(o, p, f->size, !(f->flags & PARD__REQ));
    case PARD__TEXT:
        if (o->type != MSGPACK_OBJECT_STR)
            return -PARD_EPROTO;
        if (o->via.str.size >= f->size)
            return -PARD_ETOOBIG;
        if (memchr(o->via.str.ptr, 0, o->via.str.size) != NULL)
            return -PARD_EPROTO; /* would truncate silently */
        memcpy(p, o->via.str.ptr, o->via.str.size);
        p[o->via.str.size] = 0;
        return 0;
    case PARD__ROLE: {
        enum pard_role role;
        if (o->type != MSGPACK_OBJECT_STR ||
            pard__role_parse(o->via.str.ptr, o->via.str.size, &role) != 0)
            return -PARD_EPROTO;
        memcpy(p, &role, sizeof(role));
        return 0;
    }
    case PARD__WAIT: {
        enum pard_wait_mode mode;
        if (o->type != MSGPACK_OBJECT_STR ||
            pard__wait_parse(o->via.str.ptr, o->via.str.size, &mode) != 0)
            return -PARD_EPROTO;
        memcpy(p, &mode, sizeof(mode));
        if (!(f->flags & PARD__REQ)) {
            bool has = true;
            memcpy(base + f->aux, &has, sizeof(has));
        }
        return 0;
    }
    case PARD__NAMES:
    case PARD__LIST: {
        if (o->type != MSGPACK_OBJECT_ARRAY)
            return -PARD_EPROTO;
        uint32_t n = o->via.array.size;
        if (n > f->max)
            return -PARD_ETOOBIG;
        if (n == 0 && (f->flags & PARD__MIN1))
            return -PARD_EPROTO;
        for (uint32_t i = 0; i < n; i++) {
            uint8_t *elem = p + (size_t)i * f->size;
            const msgpack_object *e = &o->via.array.ptr[i];
            memset(elem, 0, f->size);
            int rc = f->kind == PARD__NAMES ? copy_name(e, elem, f->size, false)
                                            : decode_map(e, f->sub, elem, false);
            if (rc != 0)
                return rc;
        }
        memcpy(base + f->aux, &n, sizeof(n));
        return 0;
    }
    default:
        return -PARD_EPROTO;
    }
}

static bool key_is(const msgpack_object *k, const char *key, size_t keylen)
{
    return k->via.str.size == keylen && memcmp(k->via.str.ptr, key, keylen) == 0;
}

/*
 * decode_map - fill the schema's fields at base from a map. At the top
 * level "type" and "v" are skipped (the caller has read them). Unknown
 * keys are ignored; duplicates of known keys and missing required keys
 * are refused.
 */
static int decode_map(const msgpack_object *map, const struct pard__schema *schema, uint8_t *base,
                      bool top)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return -PARD_EPROTO;
    uint64_t seen = 0; /* bit j: fields[j] was present (schemas have <= 64 fields) */

    pard__zero_fields(schema, base);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        const msgpack_object *v = &map->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return -PARD_EPROTO;
        if (top && (key_is(k, "type", 4) || key_is(k, "v", 1)))
            continue;
        for (uint32_t j = 0; j < schema->nfields; j++) {
            const struct pard__field *f = &schema->fields[j];
            if (!key_is(k, f->key, f->keylen))
                continue;
            if (seen & ((uint64_t)1 << j))
                return -PARD_EPROTO;
            seen |= (uint64_t)1 << j;
            int rc = decode_value(v, f, base);
            if (rc != 0)
                return rc;
            break;
        }
    }
    for (uint32_t j = 0; j < schema->nfields; j++)
        if ((schema->fields[j].flags & PARD__REQ) && !(seen & ((uint64_t)1 << j)))
            return -PARD_EPROTO;
    return 0;
}

/* Read "type" and "v" from the top-level map: each exactly once. */
static int decode_header(const msgpack_object *map, enum pard_msg_type *type, uint32_t *version)
{
    bool have_type = false, have_v = false;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        const msgpack_object *v = &map->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            return -PARD_EPROTO;
        if (key_is(k, "type", 4)) {
            if (have_type || v->type != MSGPACK_OBJECT_STR)
                return -PARD_EPROTO;
            *type = pard__type_parse(v->via.str.ptr, v->via.str.size);
            if (*type == PARD_MSG_NONE)
                return -PARD_EPROTO;
            have_type = true;
        } else if (key_is(k, "v", 1)) {
            if (have_v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER || v->via.u64 == 0 ||
                v->via.u64 > UINT32_MAX)
                return -PARD_EPROTO;
            *version = (uint32_t)v->via.u64;
            have_v = true;
        }
    }
    return have_type && have_v ? 0 : -PARD_EPROTO;
}

/* ======================================================================
 * Public
 * ====================================================================== */

int pard_msg_decode(const void *buf, size_t len, struct pard_msg *out)
{
    if (out == NULL)
        return -EINVAL;
    out->type = PARD_MSG_NONE;
    out->version = 0;
    if (buf == NULL || len == 0)
        return -PARD_EPROTO;
    if (len > PARD_FRAME_MAX_LIMIT)
        return -PARD_ETOOBIG;

    int rc = pard__mp_check(buf, len);
    if (rc != 0)
        return rc;
    /* Cheap refusal before the zone exists: the body must be a map. */
    const uint8_t b0 = *(const uint8_t *)buf;
    if (!((b0 >= 0x80 && b0 <= 0x8f) || b0 == 0xde || b0 == 0xdf))
        return -PARD_EPROTO;

    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 2048))
        return -ENOMEM;
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return ur = msgpack_unpack(buf, len, &off, &zone, &obj);
    if (ur == MSGPACK_UNPACK_NOMEM_ERROR) {
        rc = -ENOMEM;
    } else if (ur != MSGPACK_UNPACK_SUCCESS || off != len || obj.type != MSGPACK_OBJECT_MAP) {
        rc = -PARD_EPROTO; /* the pre-check makes this unreachable; keep it anyway */
    } else {
        enum pard_msg_type type = PARD_MSG_NONE;
        uint32_t version = 0;
        rc = decode_header(&obj, &type, &version);
        if (rc == 0) {
            const struct pard__schema *schema = &pard__schemas[type];
            if (version != PARD_PROTO_VERSION && type != PARD_MSG_ERROR)
                pard__zero_fields(schema, out); /* another shape: header only */
            else
                rc = decode_map(&obj, schema, (uint8_t *)out, true);
            if (rc == 0) {
                out->type = type;
                out->version = version;
            }
        }
    }
    msgpack_zone_destroy(&zone);
    if (rc != 0) {
        out->type = PARD_MSG_NONE;
        out->version = 0;
    }
    return rc;
}

int pard_msg_check_version(const struct pard_msg *m)
{
    return m->version == PARD_PROTO_VERSION ? 0 : -PARD_EVERSION;
}
