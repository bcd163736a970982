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

/* The C library's description and name of an errno value outside the table. strerrordesc_np
 * and strerrorname_np are glibc's (2.32 on). musl has neither; its strerror() returns a pointer
 * into a static table and touches no shared state, so it serves as the description there, and
 * no name is known (cmake/musl-gcc.cmake builds this branch in CI). */
#ifdef __GLIBC__
#define libc_error_text(e) strerrordesc_np(e)
#define libc_error_name(e) strerrorname_np(e)
#else
#define libc_error_text(e) strerror(e)
#define libc_error_name(e) ((void) (e), (const char *) NULL)
#endif

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
    const char *d = err > -4096 ? libc_error_text(-err) : NULL;
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
    const char *n = err > -4096 ? libc_error_name(-err) : NULL;
    return n ? n : "E?";
}
