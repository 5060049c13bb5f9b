/*
 * internal.h — private helpers shared by libipc's sources. Not installed.
 */
#ifndef PARD_IPC_INTERNAL_H
#define PARD_IPC_INTERNAL_H

#include "pard/ipc.h"

#define PARD__ALIGN_UP(x, a) (((x) + ((a)-1)) & ~((uint64_t)(a)-1))
#define PARD__IS_POW2(x)     ((x) != 0 && ((x) & ((x)-1)) == 0)

#endif
