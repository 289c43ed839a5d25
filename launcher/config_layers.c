/* model.layers: the layer list of a config, checked against the registry.
 *
 * Each entry is a mapping with `type` (a registered layer type, see
 * core/layers/registry.c), an optional `name`, optional `inputs`, and any key
 * of that type's dlt_key_spec table, type-checked here so that layers can
 * read their spec with dlt_spec_int/float/str without failing. Values are
 * kept as the text given (dlt_spec_int reads every YAML boolean word), each
 * with its line (0 when set by an override).
 *
 * Default names are the type followed by the layer's 1-based count among
 * layers of that type (conv2d1, relu1, relu2), counting named layers too, so
 * a default name never changes when another layer is renamed. Inputs must
 * name earlier layers: the graph is built in order, which also rules out
 * cycles. Checks that need every layer (required keys, unique names, inputs)
 * run after the overrides, so an override can fix what the file left out. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/config_internal.h"

#define INPUT_NAME "input" /* what inputs call the model's input (core/model.c) */

/* A layer's key `key` in its type's table, or NULL. */
static const dlt_key_spec *find_lkey(const dlt_layer_ops *ops, const char *key)
{
    for (const dlt_key_spec *k = ops->keys; k && k->name; k++)
        if (!strcmp(k->name, key)) return k;
    return NULL;
}

/* "layer 'conv1' (conv2d)": how messages name a layer. */
static const char *label(const dlt_layer_spec *s, char *buf, size_t len)
{
    snprintf(buf, len, "layer '%s' (%s)", s->name, s->type);
    return buf;
}

/* Layer names prefix parameter names ("conv1.weight") and are matched by
 * inputs, so they are plain identifiers. */
static dlt_status set_layer_name(dlt_cfg_loader *L, dlt_layer_spec *s, const dlt_yaml_node *n)
{
    char lb[128];
    if (n->kind != DLT_YAML_SCALAR)
        return dlt_cfg_err(L, n->line, "%s: name: expected a string, got %s",
                           label(s, lb, sizeof lb), dlt_yaml_kind_str(n->kind));
    size_t l = strlen(n->text);
    if (!l || l >= DLT_NAME_LEN)
        return dlt_cfg_err(L, n->line, "%s: name: must have 1 to %d characters",
                           label(s, lb, sizeof lb), DLT_NAME_LEN - 1);
    if (!strcmp(n->text, INPUT_NAME))
        return dlt_cfg_err(L, n->line, "%s: name '%s' is reserved for the model input",
                           label(s, lb, sizeof lb), n->text);
    for (const char *c = n->text; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
            return dlt_cfg_err(L, n->line, "%s: name '%s': use only letters, digits, '_' and '-'",
                               label(s, lb, sizeof lb), n->text);
    dlt_cfg_set_str(s->name, sizeof s->name, n->text);
    return DLT_OK;
}

/* inputs: one name, or a list of up to DLT_MAX_INPUTS names. */
static dlt_status set_layer_inputs(dlt_cfg_loader *L, dlt_layer_spec *s, const dlt_yaml_node *n)
{
    char lb[128];
    if (n->kind == DLT_YAML_MAP)
        return dlt_cfg_err(L, n->line,
                           "%s: inputs: expected a layer name or a list of names, got %s",
                           label(s, lb, sizeof lb), dlt_yaml_kind_str(n->kind));
    int cnt = n->kind == DLT_YAML_SEQ ? n->n : (n->text[0] || !n->plain);
    if (cnt > DLT_MAX_INPUTS)
        return dlt_cfg_err(L, n->line, "%s: inputs: at most %d, got %d", label(s, lb, sizeof lb),
                           DLT_MAX_INPUTS, cnt);
    memset(s->inputs, 0, sizeof s->inputs);
    for (int i = 0; i < cnt; i++) {
        const dlt_yaml_node *it = n->kind == DLT_YAML_SEQ ? n->items[i] : n;
        if (it->kind != DLT_YAML_SCALAR || !it->text[0] || strlen(it->text) >= DLT_NAME_LEN)
            return dlt_cfg_err(L, it->line, "%s: inputs: expected layer names",
                               label(s, lb, sizeof lb));
        dlt_cfg_set_str(s->inputs[i], DLT_NAME_LEN, it->text);
    }
    s->n_inputs = cnt;
    return DLT_OK;
}

/* Sets (or replaces) layer key `key` after checking it against the type's
 * table. The text is kept as given: dlt_spec_int reads every boolean word. */
static dlt_status set_layer_kv(dlt_cfg_loader *L, dlt_layer_spec *s, const char *key, int key_line,
                               const dlt_yaml_node *n)
{
    const dlt_layer_ops *ops = dlt_layer_find(s->type);
    const dlt_key_spec *ks = find_lkey(ops, key);
    char lb[128];
    label(s, lb, sizeof lb);
    if (!ks) {
        const char *cand[66] = {"name", "inputs"};
        int nc = 2;
        for (const dlt_key_spec *k = ops->keys; k && k->name && nc < 66; k++) cand[nc++] = k->name;
        char sug[96];
        return dlt_cfg_err(L, key_line, "%s: unknown key '%s'%s", lb, key,
                           dlt_cfg_did_you_mean(key, cand, nc, sug, sizeof sug));
    }
    static const char *const what[] = {"an integer", "a number", "true or false", "a string"};
    if (n->kind != DLT_YAML_SCALAR)
        return dlt_cfg_err(L, n->line, "%s: %s: expected %s, got %s", lb, key, what[ks->type],
                           dlt_yaml_kind_str(n->kind));
    const char *val = n->text;
    int64_t iv;
    double fv;
    int bv, ok = 1;
    switch (ks->type) {
    case DLT_KEY_INT: ok = dlt_yaml_int(val, &iv); break;
    case DLT_KEY_FLOAT: ok = dlt_yaml_float(val, &fv); break;
    case DLT_KEY_BOOL: ok = dlt_yaml_bool(val, &bv); break;
    case DLT_KEY_STR: break;
    }
    if (!ok)
        return dlt_cfg_err(L, n->line, "%s: %s: expected %s, got '%s'", lb, key, what[ks->type],
                           val);
    if (strlen(val) >= sizeof s->kv[0].val)
        return dlt_cfg_err(L, n->line, "%s: %s: value too long (at most %zu characters)", lb, key,
                           sizeof s->kv[0].val - 1);
    int i = 0;
    while (i < s->n_kv && strcmp(s->kv[i].key, key)) i++;
    if (i == s->n_kv) {
        if (s->n_kv == DLT_MAX_KV)
            return dlt_cfg_err(L, n->line, "%s: more than %d keys", lb, DLT_MAX_KV);
        s->n_kv++;
        dlt_cfg_set_str(s->kv[i].key, sizeof s->kv[i].key, key);
    }
    dlt_cfg_set_str(s->kv[i].val, sizeof s->kv[i].val, val);
    s->kv[i].line = L->override ? 0 : n->line;
    return DLT_OK;
}

/* Names of the registered layer types, for suggestions. */
static int layer_types(const char **out, int cap)
{
    const dlt_layer_ops *const *all = dlt_layer_all();
    int n = 0;
    while (all && all[n] && n < cap) out[n] = all[n]->type, n++;
    return n;
}

/* Reads layer `idx` from a YAML mapping: type first (it decides which keys
 * are valid), then name, then the rest in file order. */
static dlt_status parse_layer(dlt_cfg_loader *L, int idx, const dlt_yaml_node *m)
{
    dlt_config *c = L->cfg;
    dlt_layer_spec *s = &c->layers[idx];
    memset(s, 0, sizeof *s);
    s->file = c->path;
    s->line = m->line;
    if (m->kind != DLT_YAML_MAP)
        return dlt_cfg_err(L, m->line,
                           "model.layers.%d: expected a mapping {type: ..., ...}, got %s", idx,
                           dlt_yaml_kind_str(m->kind));
    int ti = -1, ni = -1;
    for (int i = 0; i < m->n; i++) {
        if (m->keys[i]->kind != DLT_YAML_SCALAR)
            return dlt_cfg_err(L, m->keys[i]->line, "model.layers.%d: keys must be plain names",
                               idx);
        for (int j = 0; j < i; j++)
            if (!strcmp(m->keys[j]->text, m->keys[i]->text))
                return dlt_cfg_err(L, m->keys[i]->line, "model.layers.%d: duplicate key '%s'", idx,
                                   m->keys[i]->text);
        if (!strcmp(m->keys[i]->text, "type")) ti = i;
        if (!strcmp(m->keys[i]->text, "name")) ni = i;
    }
    if (ti < 0) return dlt_cfg_err(L, m->line, "model.layers.%d: missing 'type'", idx);
    const dlt_yaml_node *tn = m->items[ti];
    if (tn->kind != DLT_YAML_SCALAR)
        return dlt_cfg_err(L, tn->line, "model.layers.%d: type: expected a layer type, got %s", idx,
                           dlt_yaml_kind_str(tn->kind));
    if (!dlt_layer_find(tn->text) || strlen(tn->text) >= sizeof s->type) {
        const char *types[128];
        char sug[96];
        int nt = layer_types(types, 128);
        return dlt_cfg_err(L, tn->line, "model.layers.%d: unknown layer type '%s'%s", idx, tn->text,
                           dlt_cfg_did_you_mean(tn->text, types, nt, sug, sizeof sug));
    }
    if (dlt_layer_find(tn->text)->is_loss)
        return dlt_cfg_err(L, tn->line, "model.layers.%d: %s is a loss; set model.loss instead",
                           idx, tn->text);
    dlt_cfg_set_str(s->type, sizeof s->type, tn->text);
    int k = 1; /* default name: type + its 1-based count among layers of that type */
    for (int j = 0; j < idx; j++) k += !strcmp(c->layers[j].type, tn->text);
    snprintf(s->name, sizeof s->name, "%s%d", tn->text, k);
    if (ni >= 0) DLT_CHECK(set_layer_name(L, s, m->items[ni]));
    for (int i = 0; i < m->n; i++) {
        if (i == ti || i == ni) continue;
        if (!strcmp(m->keys[i]->text, "inputs"))
            DLT_CHECK(set_layer_inputs(L, s, m->items[i]));
        else
            DLT_CHECK(set_layer_kv(L, s, m->keys[i]->text, m->keys[i]->line, m->items[i]));
    }
    return DLT_OK;
}

dlt_status dlt_cfg_parse_layers(dlt_cfg_loader *L, const dlt_yaml_node *seq)
{
    if (seq->kind == DLT_YAML_SCALAR && seq->plain && !seq->text[0]) return DLT_OK;
    if (seq->kind != DLT_YAML_SEQ)
        return dlt_cfg_err(L, seq->line, "model.layers: expected a list of layers, got %s",
                           dlt_yaml_kind_str(seq->kind));
    if (seq->n > DLT_CFG_MAX_LAYERS)
        return dlt_cfg_err(L, seq->line, "model.layers: at most %d layers, got %d",
                           DLT_CFG_MAX_LAYERS, seq->n);
    for (int i = 0; i < seq->n; i++) {
        L->cfg->n_layers = i + 1;
        DLT_CHECK(parse_layer(L, i, seq->items[i]));
    }
    return DLT_OK;
}

/* "N.KEY" of an override model.layers.N.KEY=VALUE. */
dlt_status dlt_cfg_override_layer(dlt_cfg_loader *L, const char *rest, const dlt_yaml_node *n)
{
    char *end;
    errno = 0;
    long idx = strtol(rest, &end, 10);
    if (!isdigit((unsigned char)rest[0]) || *end != '.' || !end[1] || errno)
        return dlt_cfg_err(L, 0, "expected model.layers.N.KEY=VALUE (N from 0)");
    if (idx >= L->cfg->n_layers)
        return dlt_cfg_err(L, 0, "model.layers.%ld: no such layer (there are %d, numbered from 0)",
                           idx, L->cfg->n_layers);
    dlt_layer_spec *s = &L->cfg->layers[idx];
    const char *key = end + 1;
    char lb[128];
    if (!strcmp(key, "type"))
        return dlt_cfg_err(L, 0, "%s: the type of a layer cannot be overridden",
                           label(s, lb, sizeof lb));
    if (!strcmp(key, "name")) return set_layer_name(L, s, n);
    if (!strcmp(key, "inputs")) return set_layer_inputs(L, s, n);
    return set_layer_kv(L, s, key, 0, n);
}

/* 1 if name is a sub-layer of resblock or bottleneck b ("block1.conv2"):
 * the model expands macros into layers named so, and later layers may use
 * them. */
static int in_block(const dlt_layer_spec *b, const char *name)
{
    size_t l = strlen(b->name);
    return (!strcmp(b->type, "resblock") || !strcmp(b->type, "bottleneck")) &&
           !strncmp(name, b->name, l) && name[l] == '.' &&
           name[l + 1];
}

/* Checks that need all layers: required keys, unique names, inputs that
 * name earlier layers (the graph is built in order), input counts. */
dlt_status dlt_cfg_check_layers(dlt_cfg_loader *L)
{
    const dlt_config *c = L->cfg;
    if (c->n_layers == 0)
        return dlt_cfg_err(L, L->layers_line, "model.layers: at least one layer is required");
    for (int i = 0; i < c->n_layers; i++) {
        const dlt_layer_spec *s = &c->layers[i];
        const dlt_layer_ops *ops = dlt_layer_find(s->type);
        char lb[128];
        label(s, lb, sizeof lb);
        for (const dlt_key_spec *k = ops->keys; k && k->name; k++) {
            int j = 0;
            while (j < s->n_kv && strcmp(s->kv[j].key, k->name)) j++;
            if (!k->def && j == s->n_kv)
                return dlt_cfg_err(L, s->line, "%s: missing required key '%s'", lb, k->name);
        }
        const char *earlier[DLT_CFG_MAX_LAYERS + 1]; /* names inputs may use */
        for (int j = 0; j < i; j++) {
            earlier[j] = c->layers[j].name;
            if (!strcmp(earlier[j], s->name))
                return dlt_cfg_err(L, s->line, "%s: the name '%s' is already used on line %d", lb,
                                   s->name, c->layers[j].line);
        }
        earlier[i] = INPUT_NAME;
        for (int m = 0; m < s->n_inputs; m++) {
            const char *in = s->inputs[m];
            int j = 0;
            while (j <= i && strcmp(earlier[j], in) && !(j < i && in_block(&c->layers[j], in))) j++;
            char sug[96];
            if (j > i)
                return dlt_cfg_err(
                    L, s->line, "%s: input '%s' is neither an earlier layer nor '%s'%s", lb, in,
                    INPUT_NAME, dlt_cfg_did_you_mean(in, earlier, i + 1, sug, sizeof sug));
        }
        if (s->n_inputs ? s->n_inputs != ops->n_inputs : ops->n_inputs > 1)
            return dlt_cfg_err(L, s->line, "%s: takes %d input%s, got %d%s", lb, ops->n_inputs,
                               ops->n_inputs > 1 ? "s" : "", s->n_inputs ? s->n_inputs : 1,
                               s->n_inputs ? "" : " (the previous layer); list them in inputs");
    }
    return DLT_OK;
}

void dlt_cfg_write_layers(const dlt_config *c, FILE *f)
{
    fprintf(f, "  layers:%s\n", c->n_layers ? "" : " []");
    for (int i = 0; i < c->n_layers; i++) {
        const dlt_layer_spec *s = &c->layers[i];
        const dlt_layer_ops *ops = dlt_layer_find(s->type);
        fprintf(f, "    - {type: %s, name: ", s->type);
        dlt_yaml_put_string(f, s->name);
        if (s->n_inputs) {
            fputs(", inputs: [", f);
            for (int j = 0; j < s->n_inputs; j++) {
                if (j) fputs(", ", f);
                dlt_yaml_put_string(f, s->inputs[j]);
            }
            fputc(']', f);
        }
        for (int j = 0; j < s->n_kv; j++) {
            const dlt_key_spec *ks = ops ? find_lkey(ops, s->kv[j].key) : NULL;
            fprintf(f, ", %s: ", s->kv[j].key);
            if (!ks || ks->type == DLT_KEY_STR)
                dlt_yaml_put_string(f, s->kv[j].val);
            else
                fputs(s->kv[j].val, f);
        }
        fputs("}\n", f);
    }
}

void dlt_cfg_help_layers(FILE *f)
{
    static const char *const tname[] = {"int", "float", "bool", "string"};
    fprintf(f, "\nLayer types. Each entry of model.layers has a type, an optional name (default:\n"
               "the type and its count among layers of that type, from 1: conv2d1, relu2) and\n"
               "optional inputs (default: the previous layer), plus the keys of its type:\n");
    const dlt_layer_ops *const *all = dlt_layer_all();
    for (int i = 0; all && all[i]; i++) {
        if (all[i]->is_loss)
            fprintf(f, "\n  %s (a loss: set it as model.loss)\n", all[i]->type);
        else
            fprintf(f, "\n  %s (%d input%s)\n", all[i]->type, all[i]->n_inputs,
                    all[i]->n_inputs > 1 ? "s" : "");
        for (const dlt_key_spec *k = all[i]->keys; k && k->name; k++)
            fprintf(f, "      %-16s %-7s %-14s %s\n", k->name, tname[k->type],
                    k->def ? (*k->def ? k->def : "\"\"") : "(required)", k->help ? k->help : "");
    }
}
