/* Private to the config loader (config.c, config_layers.c): the loading
 * state and the message helpers both halves share. Not for other modules. */
#ifndef DLT_CONFIG_INTERNAL_H
#define DLT_CONFIG_INTERNAL_H

#include <stdio.h>

#include "launcher/config.h"
#include "launcher/yaml_tree.h"

#define DLT_CFG_MAX_KEYS 128 /* rows of the key table (config.c asserts) */

typedef struct {
    dlt_config *cfg;
    const char *override;              /* override being applied; NULL: the file */
    int line[DLT_CFG_MAX_KEYS];        /* key i set on this file line; 0: not from the file */
    const char *ovr[DLT_CFG_MAX_KEYS]; /* key i last set by this override, or NULL */
    int layers_line;                   /* line of model.layers; 0: absent */
} dlt_cfg_loader;

/* Records a DLT_ERR_CONFIG "WHERE: MESSAGE" and returns DLT_ERR_CONFIG; WHERE is
 * "override 'K=V'" while an override is applied, else "FILE:LINE" ("FILE"
 * when line is 0). */
dlt_status dlt_cfg_err(const dlt_cfg_loader *L, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* buf = " (did you mean 'X'?)" for the candidate nearest to bad, or "" when
 * none is plausibly meant; returns buf. */
const char *dlt_cfg_did_you_mean(const char *bad, const char *const *cand, int n, char *buf,
                                 size_t len);

/* Copies s (short enough, checked by the caller) into a zero-filled field. */
void dlt_cfg_set_str(char *dst, size_t size, const char *s);

/* config_layers.c: model.layers. Parse the YAML list; apply the "N.KEY" of an
 * override model.layers.N.KEY=VALUE; check what needs all layers; write; help. */
dlt_status dlt_cfg_parse_layers(dlt_cfg_loader *L, const dlt_yaml_node *seq);
dlt_status dlt_cfg_override_layer(dlt_cfg_loader *L, const char *rest, const dlt_yaml_node *n);
dlt_status dlt_cfg_check_layers(dlt_cfg_loader *L);
void dlt_cfg_write_layers(const dlt_config *c, FILE *f);
void dlt_cfg_help_layers(FILE *f);

#endif
