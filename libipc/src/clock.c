/*
 * clock.c — the monotonic clock every figure in pard is measured with.
 */
#include <time.h>

#include "internal.h"

int64_t pard_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
