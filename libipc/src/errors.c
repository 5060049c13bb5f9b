/*
 * errors.c — pard_strerror: one table for pard's own codes, strerror for
 * the rest.
 */
#include <limits.h>
#include <string.h>

#include "internal.h"

const char *pard_strerror(int err)
{
    /* err may come from the wire (an error frame's code): INT_MIN has no
     * positive int, so negate in a wider type. */
    long long code = err < 0 ? -(long long)err : err;
    if (code > INT_MAX)
        return "unknown error";
    switch (code) {
#define PARD__ERR_CASE(name, num, msg)                                                             \
    case num:                                                                                      \
        return msg;
        PARD_ERRNO_MAP(PARD__ERR_CASE)
#undef PARD__ERR_CASE
    case 0:
        return "success";
    default:
        /* strerror() is thread-safe in glibc (unknown codes, such as an
         * error frame may carry, are formatted in a thread-local buffer). */
        return strerror((int)code);
    }
}
