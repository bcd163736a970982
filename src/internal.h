/*
 * internal.h — library-wide internal functions that are not part of the public API but that
 * the tools and tests in this tree may use (they link the static library).
 */
#ifndef PBX_INTERNAL_H
#define PBX_INTERNAL_H

/* The errno name of a postbox return value ("EINVAL"), "OK" for success. Static string. */
const char *pbx__errname(int err);

/* Is name a valid bare mailbox name (1..PBX_NAME_MAX of [A-Za-z0-9._-], not "." or "..")? */
int pbx__name_valid(const char *name);

#endif
