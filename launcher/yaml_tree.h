/* A small YAML node tree with line numbers, for the config loader.
 *
 * libyaml parses; this turns its document into plain nodes (scalar,
 * sequence, mapping) that remember the 1-based line they start on, so the
 * config loader can name FILE:LINE in every message without touching the
 * libyaml API. Aliases are expanded (copied); nesting depth and node count
 * are bounded so a hostile file cannot recurse or blow up. */
#ifndef DLT_YAML_TREE_H
#define DLT_YAML_TREE_H

#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

typedef enum { DLT_YAML_SCALAR, DLT_YAML_SEQ, DLT_YAML_MAP } dlt_yaml_kind;

typedef struct dlt_yaml_node dlt_yaml_node;
struct dlt_yaml_node {
    dlt_yaml_kind kind;
    int line;              /* 1-based line where the node starts */
    char *text;            /* SCALAR: its text ("" for an empty value) */
    int plain;             /* SCALAR: 1 if unquoted */
    int n;                 /* SEQ: items; MAP: pairs */
    dlt_yaml_node **items; /* SEQ: the items; MAP: the values */
    dlt_yaml_node **keys;  /* MAP: the keys (any kind; the loader wants scalars) */
};

/* Parses the first document of file `path` into *root (an empty file gives
 * an empty mapping). Errors (DLT_ERR_CONFIG): "PATH: cannot open: REASON",
 * "PATH:LINE: YAML syntax error: PROBLEM". */
dlt_status dlt_yaml_load_file(const char *path, dlt_yaml_node **root);

/* Parses a YAML text (e.g. the "[1, 2]" of an override) into *root; errors
 * are prefixed with `what` (no line number) instead of a file name. */
dlt_status dlt_yaml_load_string(const char *text, const char *what, dlt_yaml_node **root);

/* Frees a tree from the loaders (NULL is fine). */
void dlt_yaml_free(dlt_yaml_node *n);

/* "a scalar", "a sequence", "a mapping": for messages. */
const char *dlt_yaml_kind_str(dlt_yaml_kind k);

/* Strict scalar conversions: 1 and *v set when all of s is a value of that
 * type, else 0. Integers are decimal; floats finite; booleans are the YAML 1.1
 * words true/false, yes/no, on/off (any case) and 1/0. */
int dlt_yaml_int(const char *s, int64_t *v);
int dlt_yaml_uint(const char *s, uint64_t *v);
int dlt_yaml_float(const char *s, double *v);
int dlt_yaml_bool(const char *s, int *v);

/* Writers: s as a double-quoted scalar (escaping '"', '\\' and control
 * characters); v as the shortest decimal that reads back as the same float. */
void dlt_yaml_put_string(FILE *f, const char *s);
void dlt_yaml_put_float(FILE *f, float v);

#endif
