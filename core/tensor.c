/* Shape helpers. */
#include "core/tensor.h"

#include <stdio.h>

const char *dlt_shape_str(const dlt_shape *s, char *buf, size_t len)
{
    size_t off = 0;
    off += (size_t)snprintf(buf + off, len - off, "[");
    for (int i = 0; i < s->ndim && off < len; i++)
        off += (size_t)snprintf(buf + off, len - off, "%s%lld", i ? ", " : "", (long long)s->d[i]);
    if (off < len) snprintf(buf + off, len - off, "]");
    return buf;
}
