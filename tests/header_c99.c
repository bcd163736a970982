/*
 * header_c99.c — include postbox.h in strict C99 (-std=c99 -pedantic-errors) and make one
 * call through the shared library, to prove the header needs nothing newer.
 */
#include "postbox.h"

#include <string.h>

int main(void)
{
    struct pbx_options o;
    pbx_options_init(&o);
    /* Exit 0 only if the call really went through the library. */
    return o.mode == 0600 && o.durability == PBX_DURABLE_ALWAYS &&
                   strcmp(pbx_strerror(0), "success") == 0
               ? 0
               : 1;
}
