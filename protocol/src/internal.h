/*
 * internal.h — private declarations shared by protocol/'s sources: the
 * message schema tables that drive both the encoder and the decoder, and
 * the structural pre-check of msgpack bodies. Not installed.
 */
#ifndef PARD_PROTO_INTERNAL_H
#define PARD_PROTO_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "pard/proto.h"

/* What a field holds, in C and on the wire. */
enum pard__kind {
    PARD__U32,   /* uint32_t ← non-negative integer within range */
    PARD__U64,   /* uint64_t ← non-negative integer */
    PARD__NEG32, /* int32_t ← negative integer (error codes) */
    PARD__F64,   /* double ← float or integer */
    PARD__NAME,  /* char[size] ← str, a name (pard_name_valid); "" only when optional */
    PARD__TEXT,  /* char[size] ← str of at most size-1 bytes, no NUL */
    PARD__ROLE,  /* enum pard_role ← "worker" | "submitter" | "control" */
    PARD__WAIT,  /* enum pard_wait_mode ← "spin" | "adaptive" | "block" */
    PARD__NAMES, /* char[max][size] + uint32_t count at aux ← array of names */
    PARD__LIST,  /* entry[max] of `size` bytes + uint32_t count at aux ← array of maps */
};

#define PARD__REQ  1u /* must be present; always encoded */
#define PARD__MIN1 2u /* NAMES/LIST: at least one element */

/*
 * One field of a message or list entry. Offsets are from the start of the
 * struct the schema describes (struct pard_msg for messages, the entry
 * struct for list entries). An optional field is left out by the encoder
 * when it holds its absent value (0, "", or for WAIT a false flag at aux)
 * and decodes to that value when missing.
 */
struct pard__field {
    const char *key;
    uint8_t keylen;
    uint8_t kind;  /* enum pard__kind */
    uint8_t flags; /* PARD__REQ | PARD__MIN1 */
    uint32_t off;  /* the value */
    uint32_t aux;  /* NAMES/LIST: the uint32_t count; optional WAIT: the bool flag */
    uint32_t size; /* bytes of the value; NAMES: of one name; LIST: of one entry */
    uint32_t max;  /* NAMES/LIST: most elements */
    const struct pard__schema *sub; /* LIST: the entries' schema */
};

struct pard__schema {
    const char *name; /* the wire type string (messages) or entry name */
    uint32_t nfields;
    const struct pard__field *fields;
};

/* The schema of each message type, indexed by enum pard_msg_type. */
extern const struct pard__schema pard__schemas[PARD_MSG__COUNT];

/* Wire strings for enums; NULL when the value is not valid. */
const char *pard__wait_name(enum pard_wait_mode mode);
int pard__wait_parse(const char *s, size_t len, enum pard_wait_mode *mode);
int pard__role_parse(const char *s, size_t len, enum pard_role *role);
enum pard_msg_type pard__type_parse(const char *s, size_t len);

/* pard__name_valid_n - pard_name_valid for a counted string. */
bool pard__name_valid_n(const char *s, size_t len);

/* pard__zero_fields - set every field of `schema` at `base` to its absent
 * value (list and name-array counts to 0, their elements untouched). */
void pard__zero_fields(const struct pard__schema *schema, void *base);

/*
 * pard__mp_check - check that buf[0 .. len) is exactly one well-formed
 * msgpack object within the structural limits (PARD_NESTING_MAX,
 * PARD_CONTAINER_MAX, PARD_OBJECTS_MAX), without building anything.
 * Returns 0, -PARD_EPROTO (truncated, reserved byte, trailing bytes, too
 * deep) or -PARD_ETOOBIG (a container or the object count over its limit).
 */
int pard__mp_check(const uint8_t *buf, size_t len);

#endif
