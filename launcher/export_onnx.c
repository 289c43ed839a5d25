/* `dltrain export CONFIG ckpt=PATH out=MODEL.onnx [check=CHECK.h5] [key=value ...]`:
 * the model of CONFIG, with the weights of a checkpoint (the trainer's
 * model.h5 or a full checkpoint, loaded strictly by checkpoint.c), as an
 * ONNX model that onnxruntime or any ONNX runtime can run.
 *
 * The model is built exactly as for training (same config, same layer
 * expansion) on the CPU backend, its weights are loaded, and every layer is
 * translated, in the model's own topological order, into standard ONNX
 * operators of opset 13: dense -> [Flatten] Gemm(transB), conv2d -> Conv,
 * max/avgpool -> MaxPool/AveragePool (count_include_pad, as dltrain),
 * global_avgpool -> GlobalAveragePool + Flatten, batchnorm ->
 * BatchNormalization with the running statistics (inference), relu /
 * sigmoid / tanh as such, exact GELU as 0.5 x (1 + erf(x / sqrt 2)) (Gelu
 * itself is only in opset 20), dropout -> Identity, flatten -> Flatten,
 * add -> Add. The loss layer is left out: the graph's output "logits" is its
 * input. The graph's input "input" is (N, C, H, W) float pixels in [0, 1]
 * (uint8 / 255); the data normalisation (x - mean) / std of the config is
 * the graph's first two nodes, so the file is all a user needs. Layer types
 * without a translation are refused with the layer's name.
 *
 * A layer's inputs are found by the buffer they point at (a producer's
 * output, else the model input): no graph internals beyond model.h. The
 * messages are protobuf-c's structs from Debian's onnx.proto, allocated
 * from one pool freed at the end.
 *
 * check=PATH also runs dltrain's own forward pass (evaluation mode) on the
 * first samples of the test data (else the training data) and writes an
 * HDF5 file with "input" (N, C, H, W) float32 exactly as the ONNX model
 * takes it, "logits" (N, K) float32 and "labels" int64, so that another
 * runtime's output can be compared with dltrain's. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "core/model.h"
#include "data/data.h"
#include "launcher/checkpoint.h"
#include "launcher/commands.h"
#include "launcher/config.h"
#include "onnx.pb-c.h"

#define ONNX_OPSET 13
#define ONNX_IR_VERSION 7
#define CHECK_SAMPLES 16

/* ---- the pool and the graph under construction ---- */

typedef struct {
    void **ptrs;                    /* everything allocated for the messages */
    size_t n_ptrs, cap_ptrs;
    Onnx__NodeProto **nodes;
    size_t n_nodes, cap_nodes;
    Onnx__TensorProto **inits;
    size_t n_inits, cap_inits;
    int oom;
} builder;

static int grow(void ***arr, size_t n, size_t *cap)
{
    if (n < *cap) return 1;
    size_t c = *cap ? 2 * *cap : 64;
    void **p = realloc(*arr, c * sizeof *p);
    if (!p) return 0;
    *arr = p;
    *cap = c;
    return 1;
}

/* Zeroed memory owned by the builder; NULL (and b->oom) when out of memory. */
static void *palloc(builder *b, size_t size)
{
    void *p = calloc(1, size ? size : 1);
    if (!p || !grow(&b->ptrs, b->n_ptrs, &b->cap_ptrs)) {
        free(p);
        b->oom = 1;
        return NULL;
    }
    b->ptrs[b->n_ptrs++] = p;
    return p;
}

static char *pstr(builder *b, const char *s)
{
    char *p = palloc(b, strlen(s) + 1);
    if (p) memcpy(p, s, strlen(s) + 1);
    return p;
}

static void builder_free(builder *b)
{
    for (size_t i = 0; i < b->n_ptrs; i++) free(b->ptrs[i]);
    free(b->ptrs);
    free(b->nodes);
    free(b->inits);
}

/* Appends a node op(inputs) -> outputs named after its first output. */
static Onnx__NodeProto *add_node(builder *b, const char *op, const char *const *in, int n_in,
                                 const char *out)
{
    Onnx__NodeProto *nd = palloc(b, sizeof *nd);
    char **ins = palloc(b, (size_t)n_in * sizeof *ins);
    char **outs = palloc(b, sizeof *outs);
    if (!nd || !ins || !outs || !grow((void ***)&b->nodes, b->n_nodes, &b->cap_nodes)) {
        b->oom = 1;
        return NULL;
    }
    onnx__node_proto__init(nd);
    for (int i = 0; i < n_in; i++) ins[i] = pstr(b, in[i]);
    outs[0] = pstr(b, out);
    nd->n_input = (size_t)n_in;
    nd->input = ins;
    nd->n_output = 1;
    nd->output = outs;
    nd->name = pstr(b, out);
    nd->op_type = pstr(b, op);
    b->nodes[b->n_nodes++] = nd;
    return nd;
}

static Onnx__AttributeProto *add_attr(builder *b, Onnx__NodeProto *nd, const char *name)
{
    if (!nd) return NULL;
    Onnx__AttributeProto *a = palloc(b, sizeof *a);
    Onnx__AttributeProto **list = palloc(b, (nd->n_attribute + 1) * sizeof *list);
    if (!a || !list) return NULL;
    onnx__attribute_proto__init(a);
    a->name = pstr(b, name);
    for (size_t i = 0; i < nd->n_attribute; i++) list[i] = nd->attribute[i];
    list[nd->n_attribute] = a;
    nd->attribute = list;
    nd->n_attribute++;
    return a;
}

static void attr_int(builder *b, Onnx__NodeProto *nd, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = add_attr(b, nd, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

static void attr_float(builder *b, Onnx__NodeProto *nd, const char *name, float v)
{
    Onnx__AttributeProto *a = add_attr(b, nd, name);
    if (!a) return;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT;
    a->has_f = 1;
    a->f = v;
}

/* An INTS attribute of n copies of v (kernel_shape, strides, pads). */
static void attr_ints(builder *b, Onnx__NodeProto *nd, const char *name, int64_t v, int n)
{
    Onnx__AttributeProto *a = add_attr(b, nd, name);
    int64_t *ints = palloc(b, (size_t)n * sizeof *ints);
    if (!a || !ints) return;
    for (int i = 0; i < n; i++) ints[i] = v;
    a->has_type = 1;
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = (size_t)n;
    a->ints = ints;
}

/* A float32 initializer named name of shape dims[0..ndim) copied from host
 * memory data (numel floats), stored as little-endian raw_data. */
static void add_init(builder *b, const char *name, const int64_t *dims, int ndim, const float *data)
{
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= dims[i];
    Onnx__TensorProto *t = palloc(b, sizeof *t);
    int64_t *d = palloc(b, (size_t)(ndim ? ndim : 1) * sizeof *d);
    uint8_t *raw = palloc(b, (size_t)numel * 4);
    if (!t || !d || !raw || !grow((void ***)&b->inits, b->n_inits, &b->cap_inits)) {
        b->oom = 1;
        return;
    }
    onnx__tensor_proto__init(t);
    if (ndim > 0) memcpy(d, dims, (size_t)ndim * sizeof *d);
    for (int64_t i = 0; i < numel; i++) {   /* little endian whatever the host */
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int k = 0; k < 4; k++) raw[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    t->name = pstr(b, name);
    t->has_raw_data = 1;
    t->raw_data.len = (size_t)numel * 4;
    t->raw_data.data = raw;
    b->inits[b->n_inits++] = t;
}

/* A parameter or state buffer of the backend as an initializer. */
static dlt_status add_backend_init(builder *b, dlt_backend *be, const char *name, const dlt_shape *s,
                                   const float *dev)
{
    int64_t dims[DLT_MAX_DIMS];
    size_t n = 1;
    for (int i = 0; i < s->ndim; i++) n *= (size_t)(dims[i] = s->d[i]);
    float *host = malloc(n * sizeof *host);
    if (!host) return DLT_ERR(DLT_ERR_NOMEM, "export: out of memory for %s", name);
    dlt_status st = be->download(be, host, dev, n * sizeof *host);
    if (st == DLT_OK) add_init(b, name, dims, s->ndim, host);
    free(host);
    return st;
}

/* (N, d1, ...) float32 with the batch symbolic. */
static Onnx__ValueInfoProto *value_info(builder *b, const char *name, const dlt_shape *s)
{
    Onnx__ValueInfoProto *v = palloc(b, sizeof *v);
    Onnx__TypeProto *tp = palloc(b, sizeof *tp);
    Onnx__TypeProto__Tensor *tt = palloc(b, sizeof *tt);
    Onnx__TensorShapeProto *sh = palloc(b, sizeof *sh);
    Onnx__TensorShapeProto__Dimension **dims = palloc(b, (size_t)s->ndim * sizeof *dims);
    if (!v || !tp || !tt || !sh || !dims) return NULL;
    for (int i = 0; i < s->ndim; i++) {
        dims[i] = palloc(b, sizeof *dims[i]);
        if (!dims[i]) return NULL;
        onnx__tensor_shape_proto__dimension__init(dims[i]);
        if (i == 0) {
            dims[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dims[i]->dim_param = pstr(b, "N");
        } else {
            dims[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dims[i]->dim_value = s->d[i];
        }
    }
    onnx__tensor_shape_proto__init(sh);
    sh->n_dim = (size_t)s->ndim;
    sh->dim = dims;
    onnx__type_proto__tensor__init(tt);
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = sh;
    onnx__type_proto__init(tp);
    tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    tp->tensor_type = tt;
    onnx__value_info_proto__init(v);
    v->name = pstr(b, name);
    v->type = tp;
    return v;
}

/* ---- layers to nodes ---- */

/* The tensor name of layer l's input i: its producer's name or "x_norm". */
static const char *input_name(dlt_model *m, const dlt_layer *l, int i)
{
    for (int k = 0; k < l->index; k++) {
        dlt_layer *p = dlt_model_layer(m, k);
        if (p->y.data == l->x[i].data) return p->spec->name;
    }
    return "x_norm";
}

static dlt_status export_layer(builder *b, dlt_model *m, dlt_layer *l)
{
    const char *type = l->ops->type, *name = l->spec->name;
    const char *in[3] = { input_name(m, l, 0), NULL, NULL };
    char tmp[DLT_NAME_LEN + 16], tmp2[DLT_NAME_LEN + 16];
    const dlt_key_spec *keys = l->ops->keys;
    dlt_backend *be = l->be;
    for (int i = 0; i < l->n_params; i++)
        DLT_CHECK(add_backend_init(b, be, l->params[i].name, &l->params[i].shape, l->params[i].w));

    if (!strcmp(type, "dense")) {
        if (l->x[0].shape.ndim != 2) {
            snprintf(tmp, sizeof tmp, "%s.flat", name);
            attr_int(b, add_node(b, "Flatten", in, 1, tmp), "axis", 1);
            in[0] = tmp;
        }
        in[1] = l->params[0].name;
        in[2] = l->n_params > 1 ? l->params[1].name : NULL;
        attr_int(b, add_node(b, "Gemm", in, l->n_params > 1 ? 3 : 2, name), "transB", 1);
    } else if (!strcmp(type, "conv2d")) {
        in[1] = l->params[0].name;
        in[2] = l->n_params > 1 ? l->params[1].name : NULL;
        Onnx__NodeProto *nd = add_node(b, "Conv", in, l->n_params > 1 ? 3 : 2, name);
        attr_ints(b, nd, "kernel_shape", dlt_spec_int(l->spec, keys, "kernel"), 2);
        attr_ints(b, nd, "strides", dlt_spec_int(l->spec, keys, "stride"), 2);
        attr_ints(b, nd, "pads", dlt_spec_int(l->spec, keys, "padding"), 4);
    } else if (!strcmp(type, "maxpool") || !strcmp(type, "avgpool")) {
        long size = dlt_spec_int(l->spec, keys, "size"), stride = dlt_spec_int(l->spec, keys, "stride");
        Onnx__NodeProto *nd = add_node(b, type[0] == 'm' ? "MaxPool" : "AveragePool", in, 1, name);
        attr_ints(b, nd, "kernel_shape", size, 2);
        attr_ints(b, nd, "strides", stride > 0 ? stride : size, 2);
        attr_ints(b, nd, "pads", dlt_spec_int(l->spec, keys, "padding"), 4);
        if (type[0] == 'a') attr_int(b, nd, "count_include_pad", 1);
    } else if (!strcmp(type, "global_avgpool")) {
        snprintf(tmp, sizeof tmp, "%s.pool", name);
        add_node(b, "GlobalAveragePool", in, 1, tmp);
        in[0] = tmp;
        attr_int(b, add_node(b, "Flatten", in, 1, name), "axis", 1);
    } else if (!strcmp(type, "batchnorm")) {
        const char *bin[5] = { in[0], l->params[0].name, l->params[1].name, NULL, NULL };
        for (int i = 0; i < l->n_bufs; i++) {
            if (!l->buf_persistent[i]) continue;
            const char *bn = l->buf_name[i];
            dlt_shape s = { 1, { l->buf_len[i] } };
            DLT_CHECK(add_backend_init(b, be, bn, &s, *l->buf_ptr[i]));
            size_t len = strlen(bn);
            if (len > 5 && !strcmp(bn + len - 5, "_mean")) bin[3] = bn;
            if (len > 4 && !strcmp(bn + len - 4, "_var")) bin[4] = bn;
        }
        if (!bin[3] || !bin[4])
            return DLT_ERR(DLT_ERR_INVALID, "export: layer %s has no running statistics", name);
        attr_float(b, add_node(b, "BatchNormalization", bin, 5, name), "epsilon",
                   (float)dlt_spec_float(l->spec, keys, "eps"));
    } else if (!strcmp(type, "relu") || !strcmp(type, "sigmoid") || !strcmp(type, "tanh")) {
        add_node(b, !strcmp(type, "relu") ? "Relu" : !strcmp(type, "tanh") ? "Tanh" : "Sigmoid", in, 1, name);
    } else if (!strcmp(type, "gelu")) {
        /* 0.5 x (1 + erf(x / sqrt 2)), the exact GELU dltrain computes */
        static const float consts[3] = { 1.41421356237f, 1.0f, 0.5f };
        static const char *const cname[3] = { "sqrt2", "one", "half" };
        char cn[3][DLT_NAME_LEN + 16];
        for (int i = 0; i < 3; i++) {   /* per layer: initializer names are unique */
            snprintf(cn[i], sizeof cn[i], "%s.%s", name, cname[i]);
            add_init(b, cn[i], NULL, 0, &consts[i]);
        }
        const char *x = in[0];
        snprintf(tmp, sizeof tmp, "%s.div", name);
        add_node(b, "Div", (const char *[]){ x, cn[0] }, 2, tmp);
        snprintf(tmp2, sizeof tmp2, "%s.erf", name);
        add_node(b, "Erf", (const char *[]){ tmp }, 1, tmp2);
        snprintf(tmp, sizeof tmp, "%s.add", name);
        add_node(b, "Add", (const char *[]){ tmp2, cn[1] }, 2, tmp);
        snprintf(tmp2, sizeof tmp2, "%s.mul", name);
        add_node(b, "Mul", (const char *[]){ x, tmp }, 2, tmp2);
        add_node(b, "Mul", (const char *[]){ tmp2, cn[2] }, 2, name);
    } else if (!strcmp(type, "dropout")) {
        add_node(b, "Identity", in, 1, name);
    } else if (!strcmp(type, "flatten")) {
        attr_int(b, add_node(b, "Flatten", in, 1, name), "axis", 1);
    } else if (!strcmp(type, "add")) {
        in[1] = input_name(m, l, 1);
        add_node(b, "Add", in, 2, name);
    } else {
        return DLT_ERR(DLT_ERR_UNSUPPORTED, "export: layer %s of type %s has no ONNX translation yet "
                       "(supported: dense, conv2d, maxpool, avgpool, global_avgpool, batchnorm, relu, "
                       "sigmoid, tanh, gelu, dropout, flatten, add)", name, type);
    }
    return b->oom ? DLT_ERR(DLT_ERR_NOMEM, "export: out of memory") : DLT_OK;
}

/* Builds the whole ModelProto for m (input per sample `in`) and writes it
 * to path through path.tmp and a rename. */
static dlt_status write_onnx(dlt_model *m, const dlt_config *c, const dlt_shape *in, const char *path)
{
    builder b = { 0 };
    dlt_status st = DLT_OK;
    int ch = (int)in->d[1];
    float mean[4], std[4];
    for (int i = 0; i < ch && i < 4; i++) {
        mean[i] = c->n_mean ? c->mean[c->n_mean > 1 ? i : 0] : 0.0f;
        std[i] = c->n_std ? c->std[c->n_std > 1 ? i : 0] : 1.0f;
    }
    int64_t cdims[4] = { 1, ch, 1, 1 };
    add_init(&b, "data.mean", cdims, 4, mean);
    add_init(&b, "data.std", cdims, 4, std);
    add_node(&b, "Sub", (const char *[]){ "input", "data.mean" }, 2, "x_sub");
    add_node(&b, "Div", (const char *[]){ "x_sub", "data.std" }, 2, "x_norm");

    int nl = dlt_model_n_layers(m);
    for (int k = 0; k < nl - 1 && st == DLT_OK; k++) st = export_layer(&b, m, dlt_model_layer(m, k));
    if (st != DLT_OK) goto out;
    dlt_layer *loss = dlt_model_layer(m, nl - 1);
    add_node(&b, "Identity", (const char *[]){ input_name(m, loss, 0) }, 1, "logits");

    Onnx__ValueInfoProto *vin = value_info(&b, "input", in);
    Onnx__ValueInfoProto *vout = value_info(&b, "logits", &loss->x[0].shape);
    Onnx__GraphProto *g = palloc(&b, sizeof *g);
    Onnx__OperatorSetIdProto *ops = palloc(&b, sizeof *ops);
    Onnx__ModelProto *mp = palloc(&b, sizeof *mp);
    if (b.oom || !vin || !vout || !g || !ops || !mp) {
        st = DLT_ERR(DLT_ERR_NOMEM, "export: out of memory");
        goto out;
    }
    onnx__graph_proto__init(g);
    g->name = pstr(&b, c->name);
    g->n_node = b.n_nodes;
    g->node = b.nodes;
    g->n_initializer = b.n_inits;
    g->initializer = b.inits;
    g->n_input = 1;
    g->input = (Onnx__ValueInfoProto *[]){ vin };
    g->n_output = 1;
    g->output = (Onnx__ValueInfoProto *[]){ vout };
    onnx__operator_set_id_proto__init(ops);
    ops->domain = pstr(&b, "");
    ops->has_version = 1;
    ops->version = ONNX_OPSET;
    onnx__model_proto__init(mp);
    mp->has_ir_version = 1;
    mp->ir_version = ONNX_IR_VERSION;
    mp->n_opset_import = 1;
    mp->opset_import = (Onnx__OperatorSetIdProto *[]){ ops };
    mp->producer_name = pstr(&b, "dltrain");
    mp->producer_version = pstr(&b, DLT_VERSION);
    mp->doc_string = pstr(&b, "input: (N, C, H, W) float32 pixels in [0, 1] (uint8 / 255), normalised "
                              "inside the graph; output: logits (N, K)");
    mp->graph = g;

    size_t len = onnx__model_proto__get_packed_size(mp);
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        st = DLT_ERR(DLT_ERR_NOMEM, "export: out of memory packing %zu bytes", len);
        goto out;
    }
    onnx__model_proto__pack(mp, buf);
    char tmp[DLT_PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", tmp, strerror(errno));
    } else {
        int ok = fwrite(buf, 1, len, f) == len;
        ok = (fclose(f) == 0) && ok;
        if (!ok || rename(tmp, path) != 0) {
            st = DLT_ERR(DLT_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
            remove(tmp);
        }
    }
    free(buf);
out:
    builder_free(&b);
    return st;
}

/* ---- weights and the check file ---- */

static herr_t put(hid_t f, const char *name, hid_t type, hid_t mem, int nd, const hsize_t *dims, const void *p)
{
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t d = H5Dcreate2(f, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, p);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    return e;
}

/* dltrain's logits on the first n samples of ds, with the inputs, to path. */
static dlt_status write_check(dlt_model *m, dlt_backend *be, dlt_dataset_t ds, const dlt_config *c, int n,
                              const char *path)
{
    int ch, h, w;
    dlt_dataset_shape(ds, &ch, &h, &w);
    size_t per = (size_t)ch * h * w;
    int64_t k = dlt_shape_sample_numel(&dlt_model_logits(m)->shape);
    int64_t *idx = malloc((size_t)n * sizeof *idx), *lab64 = malloc((size_t)n * sizeof *lab64);
    uint8_t *raw = malloc((size_t)n * per);
    int32_t *y = malloc((size_t)n * sizeof *y);
    float *x01 = malloc((size_t)n * per * sizeof *x01), *xn = malloc((size_t)n * per * sizeof *xn);
    float *logits = malloc((size_t)n * (size_t)k * sizeof *logits);
    float *x_dev = NULL;
    int32_t *y_dev = NULL;
    dlt_status st = DLT_OK;
    if (!idx || !lab64 || !raw || !y || !x01 || !xn || !logits) {
        st = DLT_ERR(DLT_ERR_NOMEM, "export: out of memory for the check samples");
        goto out;
    }
    for (int i = 0; i < n; i++) idx[i] = i;
    DLT_CHECK_GOTO(dlt_dataset_read(ds, idx, n, raw, y), st, out);
    /* exactly the loader's arithmetic: (p / 255 - mean) / std in float */
    for (size_t i = 0; i < (size_t)n * per; i++) {
        int cc = (int)(i / (size_t)(h * w) % (size_t)ch);
        float mean = c->n_mean ? c->mean[c->n_mean > 1 ? cc : 0] : 0.0f;
        float sd = c->n_std ? c->std[c->n_std > 1 ? cc : 0] : 1.0f;
        x01[i] = (float)raw[i] / 255.0f;
        xn[i] = (x01[i] - mean) / sd;
    }
    DLT_CHECK_GOTO(be->alloc(be, (size_t)n * per * sizeof(float), (void **)&x_dev), st, out);
    DLT_CHECK_GOTO(be->alloc(be, (size_t)n * sizeof(int32_t), (void **)&y_dev), st, out);
    DLT_CHECK_GOTO(be->upload(be, x_dev, xn, (size_t)n * per * sizeof(float)), st, out);
    DLT_CHECK_GOTO(be->upload(be, y_dev, y, (size_t)n * sizeof(int32_t)), st, out);
    dlt_step_ctx ctx = { .train = 0, .seed = c->seed, .labels = y_dev, .labels_host = y };
    DLT_CHECK_GOTO(dlt_model_forward(m, x_dev, n, &ctx, NULL), st, out);
    DLT_CHECK_GOTO(be->download(be, logits, dlt_model_logits(m)->data, (size_t)n * (size_t)k * sizeof(float)),
                   st, out);
    for (int i = 0; i < n; i++) lab64[i] = y[i];

    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) {
        st = DLT_ERR(DLT_ERR_IO, "%s: cannot create", path);
        goto out;
    }
    hsize_t din[4] = { (hsize_t)n, (hsize_t)ch, (hsize_t)h, (hsize_t)w }, dlog[2] = { (hsize_t)n, (hsize_t)k },
            dlab[1] = { (hsize_t)n };
    herr_t e = put(f, "input", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 4, din, x01);
    if (e >= 0) e = put(f, "logits", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, dlog, logits);
    if (e >= 0) e = put(f, "labels", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, dlab, lab64);
    if (H5Fclose(f) < 0 || e < 0) st = DLT_ERR(DLT_ERR_IO, "%s: cannot write", path);
out:
    if (x_dev) be->free(be, x_dev);
    if (y_dev) be->free(be, y_dev);
    free(idx);
    free(lab64);
    free(raw);
    free(y);
    free(x01);
    free(xn);
    free(logits);
    return st;
}

/* ---- the command ---- */

static dlt_status run_export(int argc, char **argv, dlt_config *c)
{
    const char *ckpt = NULL, *out = NULL, *check = NULL;
    char **over = calloc((size_t)argc + 1, sizeof *over);
    if (!over) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    int n_over = 0;
    for (int i = 1; i < argc; i++) {
        if (!strncmp(argv[i], "ckpt=", 5)) ckpt = argv[i] + 5;
        else if (!strncmp(argv[i], "out=", 4)) out = argv[i] + 4;
        else if (!strncmp(argv[i], "check=", 6)) check = argv[i] + 6;
        else over[n_over++] = argv[i];
    }
    dlt_status st = DLT_OK;
    dlt_backend *be = NULL;
    dlt_dataset_t ds = NULL;
    dlt_model *m = NULL;
    if (argc < 1 || !ckpt || !*ckpt || !out || !*out) {
        st = DLT_ERR(DLT_ERR_INVALID, "usage: dltrain export CONFIG ckpt=WEIGHTS.h5 out=MODEL.onnx "
                                      "[check=CHECK.h5] [key=value ...]");
        goto done;
    }
    DLT_CHECK_GOTO(dlt_config_load(argv[0], over, n_over, c), st, done);
    /* the input shape: the checkpoint's record, else model.input, else the
     * data's (which check= needs anyway for its samples) */
    int shape[3], classes, found = 0;
    DLT_CHECK_GOTO(dlt_ckpt_read_meta(ckpt, shape, &classes, &found), st, done);
    if (!found && c->n_input == 3) {
        memcpy(shape, c->input, sizeof shape);
        found = 1;
    }
    if (!found || check) {
        const char *src = c->test_data[0] ? c->test_data : c->train_data;
        DLT_CHECK_GOTO(dlt_dataset_open(src, &ds), st, done);
        int dshape[3];
        dlt_dataset_shape(ds, &dshape[0], &dshape[1], &dshape[2]);
        if (found && memcmp(shape, dshape, sizeof shape)) {
            st = DLT_ERR(DLT_ERR_SHAPE, "%s: samples are [%d, %d, %d] but the model takes [%d, %d, %d]",
                         dlt_dataset_path(ds), dshape[0], dshape[1], dshape[2], shape[0], shape[1], shape[2]);
            goto done;
        }
        memcpy(shape, dshape, sizeof shape);
    }
    int n_check = 1;
    if (check) n_check = dlt_dataset_size(ds) < CHECK_SAMPLES ? (int)dlt_dataset_size(ds) : CHECK_SAMPLES;
    if (n_check < 1) {
        st = DLT_ERR(DLT_ERR_INVALID, "%s: no samples for check=", dlt_dataset_path(ds));
        goto done;
    }
    DLT_CHECK_GOTO(dlt_device_open("cpu", 0, &be), st, done);
    dlt_model_cfg mc = { .layers = c->layers, .n_layers = c->n_layers, .loss = c->loss,
                         .input = { 3, { shape[0], shape[1], shape[2] } }, .n_classes = 0,
                         .max_batch = n_check, .seed = c->seed };
    DLT_CHECK_GOTO(dlt_model_build(&mc, be, &m), st, done);
    DLT_CHECK_GOTO(dlt_ckpt_load_weights(ckpt, m, 1, NULL, NULL, NULL), st, done);
    dlt_shape in = { 4, { n_check, shape[0], shape[1], shape[2] } };
    DLT_CHECK_GOTO(write_onnx(m, c, &in, out), st, done);
    if (check) DLT_CHECK_GOTO(write_check(m, be, ds, c, n_check, check), st, done);
    printf("exported %s (%d layers, weights %s) to %s%s%s\n", c->name, dlt_model_n_layers(m) - 1, ckpt, out,
           check ? ", check data to " : "", check ? check : "");
done:
    if (m) dlt_model_free(m);
    if (ds) dlt_dataset_close(ds);
    if (be) be->destroy(be);
    free(over);
    return st;
}

int dlt_cmd_export(int argc, char **argv)
{
    dlt_config *c = calloc(1, sizeof *c); /* large: the layer array */
    if (!c) {
        fprintf(stderr, "dltrain: error: out of memory\n");
        return 1;
    }
    dlt_status st = run_export(argc, argv, c);
    free(c);
    if (st != DLT_OK) {
        fprintf(stderr, "dltrain: error: %s\n", dlt_last_error());
        return 1;
    }
    return 0;
}
