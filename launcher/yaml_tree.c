/* YAML document -> dlt_yaml_node tree; see yaml_tree.h.
 *
 * We use libyaml's document loader (it resolves anchors and aliases into
 * node ids) and copy the nodes out recursively. Because an alias may point at
 * an enclosing node, or aliases may fan out exponentially, the copy is
 * bounded by depth and total node count; exceeding either is a config error,
 * not a crash.
 *
 * The scalar helpers at the end are strict: a value must be entirely a
 * number (no trailing text, no NaN/Inf), so "12abc" is an error, not 12. */
#include "launcher/yaml_tree.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define MAX_DEPTH 64
#define MAX_NODES 200000

typedef struct {
    yaml_document_t *doc;
    const char *what; /* file name or override text, for messages */
    int count;
} copy_ctx;

const char *dlt_yaml_kind_str(dlt_yaml_kind k)
{
    switch (k) {
    case DLT_YAML_SCALAR: return "a scalar";
    case DLT_YAML_SEQ: return "a sequence";
    case DLT_YAML_MAP: return "a mapping";
    }
    return "a node";
}

void dlt_yaml_free(dlt_yaml_node *n)
{
    if (!n) return;
    for (int i = 0; i < n->n; i++) {
        if (n->items) dlt_yaml_free(n->items[i]);
        if (n->keys) dlt_yaml_free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->text);
    free(n);
}

static dlt_status copy_node(copy_ctx *c, yaml_node_t *y, int depth, dlt_yaml_node **out)
{
    int line = (int)y->start_mark.line + 1;
    if (depth > MAX_DEPTH)
        return DLT_ERR(DLT_ERR_CONFIG, "%s:%d: YAML nesting deeper than %d (recursive alias?)",
                       c->what, line, MAX_DEPTH);
    if (++c->count > MAX_NODES)
        return DLT_ERR(DLT_ERR_CONFIG, "%s:%d: YAML has more than %d nodes (alias expansion?)",
                       c->what, line, MAX_NODES);
    dlt_yaml_node *n = calloc(1, sizeof *n);
    if (!n) return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading YAML", c->what);
    n->line = line;
    *out = n;
    dlt_status st = DLT_OK;
    switch (y->type) {
    case YAML_SCALAR_NODE:
        n->kind = DLT_YAML_SCALAR;
        n->plain = y->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        n->text = malloc(y->data.scalar.length + 1);
        if (!n->text) return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading YAML", c->what);
        memcpy(n->text, y->data.scalar.value, y->data.scalar.length);
        n->text[y->data.scalar.length] = '\0';
        return DLT_OK;
    case YAML_SEQUENCE_NODE: {
        n->kind = DLT_YAML_SEQ;
        int cnt = (int)(y->data.sequence.items.top - y->data.sequence.items.start);
        n->items = calloc((size_t)cnt + 1, sizeof *n->items);
        if (!n->items) return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading YAML", c->what);
        for (int i = 0; i < cnt && st == DLT_OK; i++) {
            yaml_node_t *it = yaml_document_get_node(c->doc, y->data.sequence.items.start[i]);
            n->n = i + 1;
            st = copy_node(c, it, depth + 1, &n->items[i]);
        }
        return st;
    }
    case YAML_MAPPING_NODE: {
        n->kind = DLT_YAML_MAP;
        int cnt = (int)(y->data.mapping.pairs.top - y->data.mapping.pairs.start);
        n->items = calloc((size_t)cnt + 1, sizeof *n->items);
        n->keys = calloc((size_t)cnt + 1, sizeof *n->keys);
        if (!n->items || !n->keys)
            return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory reading YAML", c->what);
        for (int i = 0; i < cnt && st == DLT_OK; i++) {
            yaml_node_pair_t *p = &y->data.mapping.pairs.start[i];
            n->n = i + 1;
            st = copy_node(c, yaml_document_get_node(c->doc, p->key), depth + 1, &n->keys[i]);
            if (st == DLT_OK)
                st =
                    copy_node(c, yaml_document_get_node(c->doc, p->value), depth + 1, &n->items[i]);
        }
        return st;
    }
    default: return DLT_ERR(DLT_ERR_CONFIG, "%s:%d: empty YAML node", c->what, line);
    }
}

/* Runs the loader on a prepared parser and converts the first document. */
static dlt_status load(yaml_parser_t *p, const char *what, int with_line, dlt_yaml_node **root)
{
    yaml_document_t doc;
    *root = NULL;
    if (!yaml_parser_load(p, &doc)) {
        if (p->error == YAML_MEMORY_ERROR)
            return DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory parsing YAML", what);
        char where[64] = "";
        if (with_line) snprintf(where, sizeof where, ":%d", (int)p->problem_mark.line + 1);
        if (p->context)
            return DLT_ERR(DLT_ERR_CONFIG, "%s%s: YAML syntax error: %s (%s)", what, where,
                           p->problem ? p->problem : "unknown problem", p->context);
        return DLT_ERR(DLT_ERR_CONFIG, "%s%s: YAML syntax error: %s", what, where,
                       p->problem ? p->problem : "unknown problem");
    }
    dlt_status st;
    yaml_node_t *y = yaml_document_get_root_node(&doc);
    if (!y) {
        /* an empty stream has no document: treat as an empty mapping */
        *root = calloc(1, sizeof **root);
        st = *root ? DLT_OK : DLT_ERR(DLT_ERR_NOMEM, "%s: out of memory", what);
        if (*root) {
            (*root)->kind = DLT_YAML_MAP;
            (*root)->line = 1;
        }
    } else {
        copy_ctx c = {&doc, what, 0};
        st = copy_node(&c, y, 0, root);
        if (st != DLT_OK) {
            dlt_yaml_free(*root);
            *root = NULL;
        }
    }
    yaml_document_delete(&doc);
    return st;
}

dlt_status dlt_yaml_load_file(const char *path, dlt_yaml_node **root)
{
    *root = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return DLT_ERR(DLT_ERR_CONFIG, "%s: cannot open: %s", path, strerror(errno));
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        return DLT_ERR(DLT_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    }
    yaml_parser_set_input_file(&p, f);
    dlt_status st = load(&p, path, 1, root);
    yaml_parser_delete(&p);
    fclose(f);
    return st;
}

dlt_status dlt_yaml_load_string(const char *text, const char *what, dlt_yaml_node **root)
{
    *root = NULL;
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return DLT_ERR(DLT_ERR_NOMEM, "%s: cannot initialise the YAML parser", what);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, strlen(text));
    dlt_status st = load(&p, what, 0, root);
    yaml_parser_delete(&p);
    return st;
}

/* ---- scalars (see yaml_tree.h) ---- */

int dlt_yaml_int(const char *s, int64_t *v)
{
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (!*s || *end || errno) return 0;
    *v = x;
    return 1;
}

int dlt_yaml_uint(const char *s, uint64_t *v)
{
    char *end;
    errno = 0;
    while (isspace((unsigned char)*s)) s++;
    if (*s == '-') return 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (!*s || *end || errno) return 0;
    *v = x;
    return 1;
}

int dlt_yaml_float(const char *s, double *v)
{
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (!*s || *end || !isfinite(x)) return 0;
    *v = x;
    return 1;
}

int dlt_yaml_bool(const char *s, int *v)
{
    static const char *const t[] = {"true", "yes", "on", "1"};
    static const char *const f[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, t[i])) return *v = 1, 1;
        if (!strcasecmp(s, f[i])) return *v = 0, 1;
    }
    return 0;
}

void dlt_yaml_put_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            fprintf(f, "\\x%02x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

void dlt_yaml_put_float(FILE *f, float v)
{
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)v);
        if ((float)strtod(buf, NULL) == v) break;
    }
    fputs(buf, f);
}
