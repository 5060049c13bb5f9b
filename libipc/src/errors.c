/*
 * errors.c — pard_strerror: one table for pard's own codes, strerror for
 * the rest.
 */
#include <string.h>

#include "internal.h"

const char *pard_strerror(int err)
{
    int code = err < 0 ? -err : err;
    switch (code) {
#define PARD__ERR_CASE(name, num, msg)                                                             \
    case num:                                                                                      \
        return msg;
        PARD_ERRNO_MAP(PARD__ERR_CASE)
#undef PARD__ERR_CASE
    case 0:
        return "success";
    default:
        /* strerror() is thread-safe in glibc for known codes, which is all
         * -errno can be here. */
        return strerror(code);
    }
}
