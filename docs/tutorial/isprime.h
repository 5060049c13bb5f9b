/*
 * isprime.h — the tutorial's work, shared by the worker and by
 * `submit --serial`: is n prime? Trial division by 2, 3 and 6k +- 1 up to
 * the square root: about sqrt(n)/3 divisions for a prime, a few
 * milliseconds around 10^12, so that there is something to run in
 * parallel.
 */
#ifndef TUTORIAL_ISPRIME_H
#define TUTORIAL_ISPRIME_H

#include <stdbool.h>
#include <stdint.h>

static inline bool is_prime(uint64_t n)
{
    if (n < 2)
        return false;
    if (n % 2 == 0)
        return n == 2;
    if (n % 3 == 0)
        return n == 3;
    for (uint64_t d = 5; d <= n / d; d += 6)
        if (n % d == 0 || n % (d + 2) == 0)
            return false;
    return true;
}

#endif
