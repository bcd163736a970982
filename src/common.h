/*
 * common.h — small definitions every part of the library shares: branch hints, alignment,
 * the cache-line size the shared layout is built around, and the internal-linkage marker.
 *
 * Internal names that cross files start with pbx__ and are hidden from the shared library's
 * exports by -fvisibility=hidden and the version script; only the PBX_API names in
 * include/postbox.h are exported.
 */
#ifndef PBX_COMMON_H
#define PBX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "postbox.h"

#define PBX_LIKELY(x)   __builtin_expect(!!(x), 1)
#define PBX_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Every hot word of the shared region sits on its own line of this size (x86-64 and most
 * ARM64 parts; a wrong guess costs speed, never correctness). */
#define PBX_CACHELINE 64

#define PBX_ALIGN_UP(x, a) (((x) + ((a) -1)) & ~((uint64_t) (a) -1))
#define PBX_ARRAY_LEN(a)   (sizeof(a) / sizeof((a)[0]))

/* Relaxed atomic load/store for fields that another process may read or write at any time
 * but whose ordering is supplied by some other access (see ORDERING in shm/queue.c). */
#define PBX_LOAD(p)       __atomic_load_n((p), __ATOMIC_RELAXED)
#define PBX_STORE(p, v)   __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define PBX_ACQUIRE(p)    __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define PBX_RELEASE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

/* A registrant's helper raises at most this many notification signals per wake-up: arrivals
 * are counted in shared state, which a writer may damage (docs/signals.md). */
#define PBX_NOTIFY_BURST 65536u

#endif
