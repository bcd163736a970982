/*
 * error.c — pbx_strerror() and pbx__errname(), generated from the table in errors.h.
 *
 * Both return static strings and touch no shared state, so they are thread-safe and
 * async-signal-safe; errors outside the table fall back to the C library's description
 * (strerrordesc_np, which is also static), never to strerror(), which is not signal-safe.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>

#include "common.h"
#include "errors.h"
#include "internal.h"

const char *pbx_strerror(int err)
{
    if (err >= 0)
        return "success";
    switch (0u - (unsigned) err) { /* INT_MIN has no negation as an int */
#define PBX_ERROR_TEXT(name, text)                                                                 \
    case name:                                                                                     \
        return text;
        PBX_ERROR_TABLE(PBX_ERROR_TEXT)
#undef PBX_ERROR_TEXT
    default:
        break;
    }
    const char *d = err > -4096 ? strerrordesc_np(-err) : NULL;
    return d ? d : "unknown error";
}

const char *pbx__errname(int err)
{
    if (err >= 0)
        return "OK";
    switch (0u - (unsigned) err) {
#define PBX_ERROR_NAME(name, text)                                                                 \
    case name:                                                                                     \
        return #name;
        PBX_ERROR_TABLE(PBX_ERROR_NAME)
#undef PBX_ERROR_NAME
    default:
        break;
    }
    const char *n = err > -4096 ? strerrorname_np(-err) : NULL;
    return n ? n : "E?";
}
