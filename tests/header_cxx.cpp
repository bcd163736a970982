// header_cxx.cpp — include postbox.h from C++ and call into the shared library, to prove the
// header is usable from C++ (extern "C" linkage, no C-only constructs).
#include "postbox.h"

#include <cerrno>
#include <cstring>

int main()
{
    pbx_options o;
    pbx_options_init(&o);
    pbx_t *q = nullptr;
    // A bad name must be refused with -EINVAL: proves the call crossed into the library.
    int r = pbx_open("no/slash", 0, &o, &q);
    return r == -EINVAL && q == nullptr && o.durability == PBX_DURABLE_ALWAYS &&
                   std::strlen(pbx_strerror(r)) > 0
               ? 0
               : 1;
}
