/* Layer plumbing shared by every layer type: memory declarations made in
 * setup() (parameters, state, per-step buffers), typed access to a layer's
 * spec, and error messages that name the layer and its config line.
 *
 * Declarations only record requests; the model (or the standalone wrapper)
 * sizes and allocates arenas afterwards and writes the pointers back, so a
 * layer never allocates backend memory itself. Overflowing the fixed tables
 * (DLT_MAX_PARAMS, DLT_MAX_BUFFERS) is recorded by pushing the count one past
 * the maximum, which the model reports as an error right after setup(). */
#include "core/layer.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/layers/layers_internal.h"

/* Copies "<layer>.<suffix>" into dst (DLT_NAME_LEN), truncating if needed. */
static void qualified_name(char *dst, const dlt_layer *l, const char *suffix)
{
    const char *lname = l->spec ? l->spec->name : "";
    snprintf(dst, DLT_NAME_LEN, "%.*s.%s", DLT_NAME_LEN / 2, lname, suffix);
}

int dlt_layer_add_param(dlt_layer *l, const char *suffix, dlt_shape shape, dlt_init init,
                        int64_t fan_in)
{
    if (l->n_params >= DLT_MAX_PARAMS) {
        l->n_params = DLT_MAX_PARAMS + 1;
        return -1;
    }
    dlt_param *p = &l->params[l->n_params];
    memset(p, 0, sizeof *p);
    qualified_name(p->name, l, suffix);
    p->shape = shape;
    p->init = init;
    p->fan_in = fan_in;
    return l->n_params++;
}

static void add_buf(dlt_layer *l, const char *suffix, float **ptr, int64_t len, int persistent)
{
    if (l->n_bufs >= DLT_MAX_BUFFERS) {
        l->n_bufs = DLT_MAX_BUFFERS + 1;
        return;
    }
    int i = l->n_bufs++;
    l->buf_ptr[i] = ptr;
    l->buf_len[i] = len;
    l->buf_persistent[i] = persistent;
    qualified_name(l->buf_name[i], l, suffix);
    *ptr = NULL;
}

void dlt_layer_add_state(dlt_layer *l, const char *suffix, float **ptr, int64_t len)
{
    add_buf(l, suffix, ptr, len, 1);
}

void dlt_layer_add_buffer(dlt_layer *l, float **ptr, int64_t len)
{
    char suffix[16];
    snprintf(suffix, sizeof suffix, "buf%d", l->n_bufs);
    add_buf(l, suffix, ptr, len, 0);
}

/* ---- spec access ---- */

/* The value string of key: the spec's, else the table default, else NULL. */
static const char *spec_value(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key)
{
    for (int i = 0; s && i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0) return s->kv[i].val;
    for (const dlt_key_spec *k = keys; k && k->name; k++)
        if (strcmp(k->name, key) == 0) return k->def;
    return NULL;
}

int dlt_spec_has(const dlt_layer_spec *s, const char *key)
{
    for (int i = 0; s && i < s->n_kv; i++)
        if (strcmp(s->kv[i].key, key) == 0) return 1;
    return 0;
}

/* Booleans read as integers, so the config may write true/false, yes/no,
 * on/off or 1/0 and every layer reads them with dlt_spec_int. */
long dlt_spec_int(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key)
{
    const char *v = spec_value(s, keys, key);
    if (!v) return 0;
    if (!strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on")) return 1;
    if (!strcasecmp(v, "false") || !strcasecmp(v, "no") || !strcasecmp(v, "off")) return 0;
    return strtol(v, NULL, 10);
}

double dlt_spec_float(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key)
{
    const char *v = spec_value(s, keys, key);
    return v ? strtod(v, NULL) : 0.0;
}

const char *dlt_spec_str(const dlt_layer_spec *s, const dlt_key_spec *keys, const char *key)
{
    return spec_value(s, keys, key);
}

/* ---- errors ---- */

const char *dlt_spec_where(const dlt_layer_spec *s, char *buf, size_t len)
{
    if (!s)
        snprintf(buf, len, "layer");
    else if (s->file && s->line > 0)
        snprintf(buf, len, "layer '%s' (%s:%d)", s->name, s->file, s->line);
    else if (s->file)
        snprintf(buf, len, "layer '%s' (%s)", s->name, s->file);
    else
        snprintf(buf, len, "layer '%s'", s->name);
    return buf;
}

dlt_status dlt_layer_error(const dlt_layer *l, dlt_status st, const char *file, int line,
                           const char *fmt, ...)
{
    char where[256], msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return dlt_error(st, file, line, "%s: %s", dlt_spec_where(l ? l->spec : NULL, where,
                                                              sizeof where), msg);
}

dlt_status dlt_spec_int_min(const dlt_layer *l, const char *key, long lo, long *out)
{
    const dlt_key_spec *keys = l->ops ? l->ops->keys : NULL;
    const char *v = spec_value(l->spec, keys, key);
    if (!v) return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "missing required key '%s'", key);
    *out = dlt_spec_int(l->spec, keys, key);
    if (*out < lo)
        return DLT_LAYER_ERR(l, DLT_ERR_CONFIG, "key '%s' must be >= %ld (got %s)", key, lo, v);
    return DLT_OK;
}
