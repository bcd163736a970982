/*
 * internal.h — library-wide internal functions that are not part of the public API but that
 * the tools and tests in this tree may use (they link the static library).
 */
#ifndef PBX_INTERNAL_H
#define PBX_INTERNAL_H

#include "postbox.h"

/* The errno name of a postbox return value ("EINVAL"), "OK" for success. Static string. */
const char *pbx__errname(int err);

/* Is name a valid bare mailbox name (1..PBX_NAME_MAX of [A-Za-z0-9._-], not "." or "..")? */
int pbx__name_valid(const char *name);

/* The shared-memory state behind a handle (struct pbx_shm, shm/shm.h), or NULL when q is of
 * another transport. For the System V drop-in's hooks (shm/sysv_hooks.c). */
struct pbx_shm;
struct pbx_shm *pbx__handle_shm(pbx_t *q);

#endif
