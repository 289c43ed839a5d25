/* ResNet's macro blocks (model specs of type resblock and bottleneck),
 * expanded at build time into plain layers named as torchvision names
 * them ("<block>.conv1", "<block>.downsample.0", ...), because the shortcut
 * depends on the channel count of the block's input, known only once the
 * earlier layers are set up. The block's last layer answers to its name. */
#include <stdio.h>
#include <string.h>

#include "core/layers/layers_internal.h"
#include "core/model_internal.h"

/* A spec derived from parent: name "<parent>.<suffix>", same location. */
static dlt_status sub_spec(const dlt_layer_spec *parent, const char *suffix, const char *type,
                           dlt_layer_spec *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->type, sizeof out->type, "%s", type);
    int len = snprintf(out->name, sizeof out->name, "%s.%s", parent->name, suffix);
    if (len >= (int)sizeof out->name)
        return DLT_ERR(DLT_ERR_CONFIG, "layer name '%s' is too long for a resblock", parent->name);
    out->file = parent->file;
    out->line = parent->line;
    return DLT_OK;
}

static void spec_set(dlt_layer_spec *s, const char *key, long val)
{
    snprintf(s->kv[s->n_kv].key, sizeof s->kv[0].key, "%s", key);
    snprintf(s->kv[s->n_kv].val, sizeof s->kv[0].val, "%ld", val);
    s->n_kv++;
}

/* A bias-free square convolution for resblocks. */
static void conv_keys(dlt_layer_spec *s, long filters, long kernel, long stride, long pad)
{
    spec_set(s, "filters", filters);
    spec_set(s, "kernel", kernel);
    spec_set(s, "stride", stride);
    spec_set(s, "padding", pad);
    spec_set(s, "bias", 0);
}

static void spec_input(dlt_layer_spec *s, const char *name)
{
    snprintf(s->inputs[s->n_inputs++], DLT_NAME_LEN, "%s", name);
}

/* The input of macro block b: its name into in_name, its channel count
 * into *channels; *f and *stride from the block's keys. */
static dlt_status block_input(dlt_model *m, const dlt_layer_spec *b, char *in_name,
                              long *channels, long *f, long *stride)
{
    char where[256];
    dlt_spec_where(b, where, sizeof where);
    const dlt_key_spec *keys = dlt_layer_find(b->type)->keys;
    *f = dlt_spec_int(b, keys, "filters");
    *stride = dlt_spec_int(b, keys, "stride");
    if (*f < 1 || *stride < 1)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: filters and stride must be >= 1", where);
    if (b->n_inputs > 1)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: %s takes 1 input, got %d", where, b->type,
                       b->n_inputs);
    int src = b->n_inputs ? dlt_model_find_name(m, b->inputs[0]) : m->n_layers - 1;
    if (src == -2)
        return DLT_ERR(DLT_ERR_CONFIG,
                       "%s: unknown input '%s' (inputs name an earlier layer or 'input')", where,
                       b->inputs[0]);
    snprintf(in_name, DLT_NAME_LEN, "%s", src < 0 ? "input" : m->specs[src].name);
    const dlt_shape *xs = dlt_model_src_shape(m, src);
    if (xs->ndim != 4) {
        char sb[96];
        return DLT_ERR(DLT_ERR_SHAPE, "%s: input %s is not (n, c, h, w)", where,
                       dlt_shape_str(xs, sb, sizeof sb));
    }
    *channels = xs->d[1];
    return DLT_OK;
}

/* The shortcut and the end of a block whose main branch ends in main_name:
 * identity, or conv1x1 (stride) + bn when project; then add and relu
 * (named relu_suffix), which answers to the block's name. */
static dlt_status block_tail(dlt_model *m, const dlt_layer_spec *b, const char *in_name,
                             const char *main_name, int project, long out_ch, long stride,
                             const char *relu_suffix)
{
    dlt_layer_spec s;
    char short_name[DLT_NAME_LEN];
    snprintf(short_name, sizeof short_name, "%s", in_name);
    if (project) {
        DLT_CHECK(sub_spec(b, "downsample.0", "conv2d", &s));
        spec_input(&s, in_name);
        conv_keys(&s, out_ch, 1, stride, 0);
        DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
        DLT_CHECK(sub_spec(b, "downsample.1", "batchnorm", &s));
        DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
        snprintf(short_name, sizeof short_name, "%s", s.name);
    }
    DLT_CHECK(sub_spec(b, "add", "add", &s));
    spec_input(&s, main_name);
    spec_input(&s, short_name);
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    DLT_CHECK(sub_spec(b, relu_suffix, "relu", &s));
    return dlt_model_add_layer(m, &s, b->name);
}

/* conv1x1 (filters) - bn - relu - conv3x3 (filters, stride) - bn - relu -
 * conv1x1 (expansion x filters) - bn, plus a shortcut (identity, or
 * conv1x1 + bn when the stride or the channel count changes), add, relu:
 * torchvision's Bottleneck (ResNet v1.5: the stride sits in the 3x3). */
static dlt_status expand_bottleneck(dlt_model *m, const dlt_layer_spec *b)
{
    char in_name[DLT_NAME_LEN];
    long c, f, stride;
    DLT_CHECK(block_input(m, b, in_name, &c, &f, &stride));
    long e = dlt_spec_int(b, dlt_layer_bottleneck.keys, "expansion");
    if (e < 1) {
        char where[256];
        return DLT_ERR(DLT_ERR_CONFIG, "%s: expansion must be >= 1",
                       dlt_spec_where(b, where, sizeof where));
    }
    static const char *const names[3][3] = { { "conv1", "bn1", "relu1" },
                                             { "conv2", "bn2", "relu2" },
                                             { "conv3", "bn3", NULL } };
    const long width[3] = { f, f, e * f }, kernel[3] = { 1, 3, 1 };
    dlt_layer_spec s;
    for (int i = 0; i < 3; i++) {
        DLT_CHECK(sub_spec(b, names[i][0], "conv2d", &s));
        if (i == 0) spec_input(&s, in_name);
        conv_keys(&s, width[i], kernel[i], i == 1 ? stride : 1, kernel[i] / 2);
        DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
        DLT_CHECK(sub_spec(b, names[i][1], "batchnorm", &s));
        DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
        if (!names[i][2]) break;
        DLT_CHECK(sub_spec(b, names[i][2], "relu", &s));
        DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    }
    return block_tail(m, b, in_name, s.name, stride != 1 || c != e * f, e * f, stride, "relu3");
}

/* conv3x3 - bn - relu - conv3x3 - bn, plus a shortcut (identity, or
 * conv1x1 + bn when the stride or the channel count changes), add, relu:
 * torchvision's BasicBlock, with its sub-layer names. */
static dlt_status expand_resblock(dlt_model *m, const dlt_layer_spec *b)
{
    char in_name[DLT_NAME_LEN];
    long c, f, stride;
    DLT_CHECK(block_input(m, b, in_name, &c, &f, &stride));
    int project = stride != 1 || c != f;

    dlt_layer_spec s;
    DLT_CHECK(sub_spec(b, "conv1", "conv2d", &s));
    spec_input(&s, in_name);
    conv_keys(&s, f, 3, stride, 1);
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    DLT_CHECK(sub_spec(b, "bn1", "batchnorm", &s));
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    DLT_CHECK(sub_spec(b, "relu1", "relu", &s));
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    DLT_CHECK(sub_spec(b, "conv2", "conv2d", &s));
    conv_keys(&s, f, 3, 1, 1);
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    DLT_CHECK(sub_spec(b, "bn2", "batchnorm", &s));
    DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    return block_tail(m, b, in_name, s.name, project, f, stride, "relu2");
}

dlt_status dlt_model_expand_block(dlt_model *m, const dlt_layer_spec *b)
{
    return dlt_layer_find(b->type) == &dlt_layer_bottleneck ? expand_bottleneck(m, b)
                                                             : expand_resblock(m, b);
}
