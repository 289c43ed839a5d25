/* The model graph: layers in topological (config) order, built once.
 *
 * Build walks the config's layer specs in order. Each spec's inputs are
 * resolved by name to an earlier layer (or "input", the model input; by
 * default the previous layer), so the config order is a topological order and
 * backward is simply the reverse. A "resblock" or "bottleneck" spec is
 * expanded on the spot into plain layers (core/model_blocks.c). The loss
 * layer is appended.
 *
 * Memory (llm.c style) is planned after every setup(): one parameter arena
 * and one gradient arena with identical layout, parameters in backward order
 * (the last layer's first) and exactly contiguous; a state arena (running
 * statistics); activations and their gradients for the planned batch, one
 * buffer per layer output; per-step buffers; one workspace of the largest
 * request, shared because layers run one at a time. Parameters are
 * initialised per parameter from a generator keyed by (seed, parameter name),
 * so the values do not depend on layer order, other layers or the rank.
 *
 * Backward ops accumulate (backend.h), so an output's gradient must be zero
 * before the first of its readers' backward adds into it. Rather than
 * clearing every activation gradient of the planned batch each step, the
 * model zeroes each one just before that first writer runs, for the step's
 * n samples only, and lets the producer say what it reads (zero_dy): the
 * sparse masked-LM head reads only its target rows of the (n, len, vocab)
 * logits gradient, which otherwise costs a full clear per step.
 *
 * The same planner serves dlt_layer_create_standalone(), a single layer with
 * arenas of its own for tests and the PyTorch comparison. */
#include "core/model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/layers/layers_internal.h"
#include "core/model_internal.h"

#define ALIGN_FLOATS 64   /* 256-byte alignment of every activation and buffer */

/* ---- memory planning ---- */

static size_t align_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static dlt_status alloc_floats(dlt_backend *be, size_t n, float **out)
{
    *out = NULL;
    if (n == 0) return DLT_OK;
    void *p;
    if (be->alloc(be, n * sizeof(float), &p) != DLT_OK)
        return DLT_ERR(DLT_ERR_NOMEM, "cannot allocate %.1f MiB on backend %s",
                       (double)n * sizeof(float) / 1048576.0, be->name);
    *out = p;
    return DLT_OK;
}

static void arenas_free(dlt_backend *be, dlt_arenas *a)
{
    float *all[] = { a->params, a->grads, a->state, a->bufs, a->acts, a->act_grads };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]) be->free(be, all[i]);
    if (a->ws) be->free(be, a->ws);
    memset(a, 0, sizeof *a);
}

/* Sizes, allocates and points every output, parameter, buffer and the
 * workspace of layers[0..n). order (n params, may be NULL) receives the
 * parameters in arena order. Inputs are the caller's business. */
static dlt_status arenas_alloc(dlt_backend *be, dlt_layer *layers, int n, dlt_arenas *a,
                               const dlt_param **order)
{
    memset(a, 0, sizeof *a);
    for (int k = 0; k < n; k++) {
        dlt_layer *l = &layers[k];
        for (int i = 0; i < l->n_params; i++) a->n_params += (size_t)dlt_shape_numel(&l->params[i].shape);
        for (int i = 0; i < l->n_bufs; i++) {
            size_t len = align_up((size_t)l->buf_len[i]);
            if (l->buf_persistent[i]) a->n_state += len;
            else a->n_bufs += len;
        }
        a->n_acts += align_up((size_t)dlt_shape_numel(&l->y.shape));
        if (l->workspace_bytes > a->ws_bytes) a->ws_bytes = l->workspace_bytes;
    }
    DLT_CHECK(alloc_floats(be, a->n_params, &a->params));
    DLT_CHECK(alloc_floats(be, a->n_params, &a->grads));
    DLT_CHECK(alloc_floats(be, a->n_state, &a->state));
    DLT_CHECK(alloc_floats(be, a->n_bufs, &a->bufs));
    DLT_CHECK(alloc_floats(be, a->n_acts, &a->acts));
    DLT_CHECK(alloc_floats(be, a->n_acts, &a->act_grads));
    if (a->ws_bytes && be->alloc(be, a->ws_bytes, &a->ws) != DLT_OK)
        return DLT_ERR(DLT_ERR_NOMEM, "cannot allocate a %.1f MiB workspace on backend %s",
                       (double)a->ws_bytes / 1048576.0, be->name);

    size_t po = 0, so = 0, bo = 0, ao = 0;
    int oi = 0;
    for (int k = n - 1; k >= 0; k--) {   /* backward order */
        dlt_layer *l = &layers[k];
        for (int i = 0; i < l->n_params; i++) {
            l->params[i].w = a->params + po;
            l->params[i].g = a->grads + po;
            po += (size_t)dlt_shape_numel(&l->params[i].shape);
            if (order) order[oi++] = &l->params[i];
        }
    }
    for (int k = 0; k < n; k++) {
        dlt_layer *l = &layers[k];
        for (int i = 0; i < l->n_bufs; i++) {
            size_t len = align_up((size_t)l->buf_len[i]);
            if (l->buf_persistent[i]) { *l->buf_ptr[i] = a->state + so; so += len; }
            else { *l->buf_ptr[i] = a->bufs + bo; bo += len; }
        }
        l->y.data = a->acts + ao;
        l->dy.data = a->act_grads + ao;
        l->dy.shape = l->y.shape;
        ao += align_up((size_t)dlt_shape_numel(&l->y.shape));
        l->workspace = a->ws;
    }
    return DLT_OK;
}

/* Fills every parameter from its own generator keyed by (seed, name), then
 * runs the layers' init() (each with a generator keyed by the layer name). */
static dlt_status init_params(dlt_backend *be, dlt_layer *layers, int n, uint64_t seed)
{
    for (int k = 0; k < n; k++) {
        dlt_layer *l = &layers[k];
        for (int i = 0; i < l->n_params; i++) {
            dlt_param *p = &l->params[i];
            size_t len = (size_t)dlt_shape_numel(&p->shape);
            if (p->init != DLT_INIT_UNIFORM_FAN_IN) {
                DLT_CHECK(be->fill(be, p->w, len, p->init == DLT_INIT_ONE ? 1.0f : 0.0f));
                continue;
            }
            float *host = malloc(len * sizeof *host);
            if (!host) return DLT_ERR(DLT_ERR_NOMEM, "out of memory initialising %s", p->name);
            dlt_rng rng = dlt_rng_make(dlt_hash_combine(seed, dlt_hash_str(p->name)));
            double bound = 1.0 / sqrt((double)(p->fan_in > 0 ? p->fan_in : 1));
            for (size_t j = 0; j < len; j++)
                host[j] = (float)((2.0 * dlt_rng_uniform(&rng) - 1.0) * bound);
            dlt_status st = be->upload(be, p->w, host, len * sizeof *host);
            free(host);
            DLT_CHECK(st);
        }
        if (l->ops->init) {
            dlt_rng rng = dlt_rng_make(dlt_hash_combine(seed, dlt_hash_str(l->spec->name)));
            l->ops->init(l, &rng);
        }
    }
    return DLT_OK;
}

/* Checks the backend ops of l's type, runs setup() and the table limits. */
static dlt_status layer_setup(dlt_layer *l)
{
    const char *miss = dlt_backend_missing_op(l->be, dlt_layer_backend_ops(l->ops));
    if (miss)
        return DLT_LAYER_ERR(l, DLT_ERR_UNSUPPORTED, "%s needs op %s, not supported on backend %s",
                             l->ops->type, miss, l->be->name);
    DLT_CHECK(l->ops->setup(l));
    if (!l->ops->forward || !l->ops->backward)
        return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "type %s cannot be used directly", l->ops->type);
    if (l->n_params > DLT_MAX_PARAMS || l->n_bufs > DLT_MAX_BUFFERS)
        return DLT_LAYER_ERR(l, DLT_ERR_INVALID, "declares too many parameters or buffers");
    return DLT_OK;
}

static void layer_release(dlt_layer *l)
{
    if (l->ops && l->ops->free && l->priv) l->ops->free(l);
    free(l->priv);
    l->priv = NULL;
}

/* ---- building ---- */

/* Index of the layer called name (or ending the resblock name), -1 for the
 * model input, -2 if unknown. */
int dlt_model_find_name(const dlt_model *m, const char *name)
{
    if (strcmp(name, "input") == 0) return -1;
    for (int k = 0; k < m->n_layers; k++)
        if (strcmp(m->specs[k].name, name) == 0 || strcmp(m->nodes[k].alias, name) == 0) return k;
    return -2;
}

const dlt_shape *dlt_model_src_shape(const dlt_model *m, int src)
{
    return src < 0 ? &m->in_shape : &m->layers[src].y.shape;
}

/* Appends a layer for spec s (copied), resolving its inputs; alias names
 * the resblock it ends, or NULL. */
dlt_status dlt_model_add_layer(dlt_model *m, const dlt_layer_spec *s, const char *alias)
{
    char where[256];
    dlt_spec_where(s, where, sizeof where);
    if (m->n_layers >= m->cap) return DLT_ERR(DLT_ERR_INVALID, "%s: too many layers", where);
    if (dlt_model_find_name(m, s->name) != -2 || (alias && dlt_model_find_name(m, alias) != -2))
        return DLT_ERR(DLT_ERR_CONFIG, "%s: the name '%s' is already used", where,
                       dlt_model_find_name(m, s->name) != -2 ? s->name : alias);
    const dlt_layer_ops *ops = dlt_layer_find(s->type);
    if (!ops) return DLT_ERR(DLT_ERR_CONFIG, "%s: unknown layer type '%s'", where, s->type);

    int k = m->n_layers;
    m->specs[k] = *s;
    dlt_layer *l = &m->layers[k];
    dlt_node *nd = &m->nodes[k];
    memset(l, 0, sizeof *l);
    l->ops = ops;
    l->spec = &m->specs[k];
    l->be = m->be;
    l->index = k;
    if (alias) snprintf(nd->alias, sizeof nd->alias, "%s", alias);

    int n_in = s->n_inputs > 0 ? s->n_inputs : 1;
    if (n_in != ops->n_inputs)
        return DLT_ERR(DLT_ERR_CONFIG, "%s: %s takes %d input%s, got %d", where, ops->type,
                       ops->n_inputs, ops->n_inputs == 1 ? "" : "s", n_in);
    for (int i = 0; i < n_in; i++) {
        int src = k - 1;   /* the previous layer, or the model input for the first */
        if (s->n_inputs > 0) {
            src = dlt_model_find_name(m, s->inputs[i]);
            if (src == -2)
                return DLT_ERR(DLT_ERR_CONFIG,
                               "%s: unknown input '%s' (inputs name an earlier layer or 'input')",
                               where, s->inputs[i]);
        }
        nd->src[i] = src;
        l->x[i].shape = *dlt_model_src_shape(m, src);
        l->dx[i].shape = l->x[i].shape;
    }
    l->n_in = n_in;
    m->n_layers++;   /* before setup, so that a failed setup's priv is freed */
    return layer_setup(l);
}

/* Points every layer input at its producer's output (or the input copy),
 * and finds each output's first gradient writer in backward order. */
static void wire_inputs(dlt_model *m)
{
    for (int k = 0; k < m->n_layers; k++) m->nodes[k].first_writer = -1;
    for (int k = 0; k < m->n_layers; k++) {
        dlt_layer *l = &m->layers[k];
        for (int i = 0; i < l->n_in; i++) {
            int src = m->nodes[k].src[i];
            l->x[i].data = src < 0 ? m->input : m->layers[src].y.data;
            l->dx[i].data = src < 0 ? NULL : m->layers[src].dy.data;
            if (src >= 0) m->nodes[src].first_writer = k;   /* k grows: the last reader */
        }
    }
}

static dlt_status build(const dlt_model_cfg *cfg, dlt_model *m)
{
    for (int i = 0; i < cfg->n_layers; i++) {
        dlt_layer_spec s = cfg->layers[i];
        if (!s.name[0]) snprintf(s.name, sizeof s.name, "%.31s%d", s.type, i);
        const dlt_layer_ops *ops = dlt_layer_find(s.type);
        if (ops && ops->is_loss) {
            char where[256];
            return DLT_ERR(DLT_ERR_CONFIG, "%s: %s is a loss; name it in model.loss instead",
                           dlt_spec_where(&s, where, sizeof where), s.type);
        }
        if (ops == &dlt_layer_resblock || ops == &dlt_layer_bottleneck)
            DLT_CHECK(dlt_model_expand_block(m, &s));
        else DLT_CHECK(dlt_model_add_layer(m, &s, NULL));
    }
    dlt_layer_spec ls;
    memset(&ls, 0, sizeof ls);
    snprintf(ls.type, sizeof ls.type, "%s", cfg->loss ? cfg->loss : "");
    snprintf(ls.name, sizeof ls.name, "loss");
    ls.file = cfg->n_layers > 0 ? cfg->layers[0].file : NULL;
    const dlt_layer_ops *lops = dlt_layer_find(ls.type);
    if (!lops || !lops->is_loss)
        return DLT_ERR(DLT_ERR_CONFIG, "model.loss '%s' is not a loss (softmax_cross_entropy, mse)",
                       ls.type);
    DLT_CHECK(dlt_model_add_layer(m, &ls, NULL));
    const dlt_shape *logits = &m->layers[m->n_layers - 1].x[0].shape;
    int64_t k = dlt_shape_sample_numel(logits);
    if (cfg->n_classes > 0 && k < cfg->n_classes) {
        char sb[96];
        return DLT_ERR(DLT_ERR_SHAPE, "model output %s has %lld values per sample but the data has "
                       "%d classes", dlt_shape_str(logits, sb, sizeof sb), (long long)k,
                       cfg->n_classes);
    }

    int n_params = 0;
    for (int i = 0; i < m->n_layers; i++) n_params += m->layers[i].n_params;
    m->order = calloc((size_t)n_params + 1, sizeof *m->order);
    if (!m->order) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    m->n_order = n_params;
    DLT_CHECK(arenas_alloc(m->be, m->layers, m->n_layers, &m->a, m->order));
    DLT_CHECK(alloc_floats(m->be, (size_t)dlt_shape_numel(&m->in_shape), &m->input));
    wire_inputs(m);
    DLT_CHECK(init_params(m->be, m->layers, m->n_layers, cfg->seed));
    return dlt_layers_link(m->layers, m->n_layers);
}

dlt_status dlt_model_build(const dlt_model_cfg *cfg, dlt_backend *be, dlt_model **out)
{
    *out = NULL;
    if (cfg->max_batch < 1) return DLT_ERR(DLT_ERR_INVALID, "max_batch must be >= 1");
    if (cfg->input.ndim < 1 || cfg->input.ndim >= DLT_MAX_DIMS)
        return DLT_ERR(DLT_ERR_INVALID, "model input needs 1 to %d dimensions, got %d",
                       DLT_MAX_DIMS - 1, cfg->input.ndim);
    dlt_model *m = calloc(1, sizeof *m);
    if (!m) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    m->be = be;
    m->max_batch = cfg->max_batch;
    m->in_shape.ndim = cfg->input.ndim + 1;
    m->in_shape.d[0] = cfg->max_batch;
    for (int i = 0; i < cfg->input.ndim; i++) m->in_shape.d[i + 1] = cfg->input.d[i];
    m->cap = cfg->n_layers * RESBLOCK_MAX + 1;
    m->layers = calloc((size_t)m->cap, sizeof *m->layers);
    m->specs = calloc((size_t)m->cap, sizeof *m->specs);
    m->nodes = calloc((size_t)m->cap, sizeof *m->nodes);
    dlt_status st = DLT_ERR_NOMEM;
    if (!m->layers || !m->specs || !m->nodes) {
        DLT_ERR(st, "out of memory");
        goto fail;
    }
    DLT_CHECK_GOTO(build(cfg, m), st, fail);
    *out = m;
    return DLT_OK;
fail:
    dlt_model_free(m);
    return st;
}

void dlt_model_free(dlt_model *m)
{
    if (!m) return;
    for (int k = 0; k < m->n_layers; k++) layer_release(&m->layers[k]);
    arenas_free(m->be, &m->a);
    if (m->input) m->be->free(m->be, m->input);
    free(m->order);
    free(m->layers);
    free(m->specs);
    free(m->nodes);
    free(m);
}

/* ---- steps ---- */

/* ctx plus the model input as token ids when it is one dimension per sample
 * (sequence models), for attention's padding mask. */
static dlt_step_ctx step_ctx(const dlt_model *m, const dlt_step_ctx *ctx)
{
    dlt_step_ctx c = *ctx;
    if (m->in_shape.ndim == 2) {
        c.tokens = m->input;
        c.tokens_len = m->in_shape.d[1];
    }
    return c;
}

dlt_status dlt_model_forward(dlt_model *m, const float *x, int n, const dlt_step_ctx *ctx,
                             dlt_model_out *out)
{
    if (n < 1 || n > m->max_batch)
        return DLT_ERR(DLT_ERR_INVALID, "batch of %d samples, the model was built for 1 to %d", n,
                       m->max_batch);
    /* a copy, so that backward may still read the input after the caller reuses x */
    size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&m->in_shape);
    DLT_CHECK(m->be->copy(m->be, m->input, x, len * sizeof(float)));
    dlt_step_ctx c = step_ctx(m, ctx);
    for (int k = 0; k < m->n_layers; k++) {
        dlt_layer *l = &m->layers[k];
        DLT_CHECK(l->ops->forward(l, &c, n));
    }
    dlt_layer *loss = &m->layers[m->n_layers - 1];
    if (out) {
        out->loss = loss->y.data;
        out->correct = dlt_loss_correct(loss);
        out->count = dlt_loss_count(loss);
    }
    return DLT_OK;
}

/* Zeroes the output gradients that layer k's backward is the first to
 * accumulate into (k is their producers' last reader), just before it runs:
 * through the producer's zero_dy when it has one (it knows which rows its
 * backward reads), else all n samples. Each gradient is zeroed once per
 * backward however many layers read the value (residuals), and a value no
 * layer reads keeps the zero gradient it was allocated with. */
static dlt_status zero_input_grads(dlt_model *m, int k, int n)
{
    const dlt_node *nd = &m->nodes[k];
    for (int i = 0; i < m->layers[k].n_in; i++) {
        int src = nd->src[i], seen = 0;
        for (int j = 0; j < i; j++) seen |= nd->src[j] == src;   /* add(x, x) */
        if (src < 0 || seen || m->nodes[src].first_writer != k) continue;
        dlt_layer *p = &m->layers[src];
        if (p->ops->zero_dy) {
            DLT_CHECK(p->ops->zero_dy(p, n));
            continue;
        }
        size_t len = (size_t)n * (size_t)dlt_shape_sample_numel(&p->dy.shape);
        DLT_CHECK(m->be->fill(m->be, p->dy.data, len, 0.0f));
    }
    return DLT_OK;
}

/* Backward; zero_grads = 0 accumulates into the gradient arena. Layer k's
 * parameters sit right after those of layers k+1.. (backward order), so once
 * layer k is done the arena is final up to the end of its parameters.
 * Activation gradients are zeroed per batch either way (zero_input_grads):
 * accumulation over micro-batches concerns parameters only. */
static dlt_status backward(dlt_model *m, int n, const dlt_step_ctx *ctx, float loss_scale,
                           int zero_grads)
{
    dlt_backend *be = m->be;
    if (n < 1 || n > m->max_batch)
        return DLT_ERR(DLT_ERR_INVALID, "batch of %d samples, the model was built for 1 to %d", n,
                       m->max_batch);
    if (zero_grads && m->a.n_params) DLT_CHECK(be->fill(be, m->a.grads, m->a.n_params, 0.0f));
    dlt_loss_set_scale(&m->layers[m->n_layers - 1], loss_scale);
    dlt_step_ctx c = step_ctx(m, ctx);
    size_t ready = 0;
    for (int k = m->n_layers - 1; k >= 0; k--) {
        dlt_layer *l = &m->layers[k];
        DLT_CHECK(zero_input_grads(m, k, n));
        DLT_CHECK(l->ops->backward(l, &c, n));
        for (int i = 0; i < l->n_params; i++) ready += (size_t)dlt_shape_numel(&l->params[i].shape);
        if (m->hook) DLT_CHECK(m->hook(m->hook_user, k, ready));
    }
    return DLT_OK;
}

dlt_status dlt_model_backward(dlt_model *m, int n, const dlt_step_ctx *ctx, float loss_scale)
{
    return backward(m, n, ctx, loss_scale, 1);
}

/* Contract: see model.h. */
dlt_status dlt_model_backward_accumulate(dlt_model *m, int n, const dlt_step_ctx *ctx,
                                         float loss_scale)
{
    return backward(m, n, ctx, loss_scale, 0);
}

/* Contract: see model.h. */
void dlt_model_set_grad_hook(dlt_model *m, dlt_grad_ready_fn fn, void *user)
{
    m->hook = fn;
    m->hook_user = fn ? user : NULL;
}

void dlt_model_reset_state(dlt_model *m)
{
    for (int k = 0; k < m->n_layers; k++) dlt_layer_reset_state(&m->layers[k]);
}

/* ---- accessors ---- */

float *dlt_model_params(dlt_model *m, size_t *n)
{
    if (n) *n = m->a.n_params;
    return m->a.params;
}

float *dlt_model_grads(dlt_model *m, size_t *n)
{
    if (n) *n = m->a.n_params;
    return m->a.grads;
}

float *dlt_model_state(dlt_model *m, size_t *n)
{
    if (n) *n = m->a.n_state;
    return m->a.state;
}

int dlt_model_n_params(const dlt_model *m) { return m->n_order; }

const dlt_param *dlt_model_param(const dlt_model *m, int i)
{
    return i >= 0 && i < m->n_order ? m->order[i] : NULL;
}

int dlt_model_n_layers(const dlt_model *m) { return m->n_layers; }

dlt_layer *dlt_model_layer(dlt_model *m, int i)
{
    return i >= 0 && i < m->n_layers ? &m->layers[i] : NULL;
}

const dlt_tensor *dlt_model_logits(const dlt_model *m)
{
    return &m->layers[m->n_layers - 1].x[0];
}

double dlt_model_flops(const dlt_model *m)
{
    double f = 0.0;
    for (int k = 0; k < m->n_layers; k++) f += m->layers[k].flops;
    return f;
}

static double mib(size_t floats) { return (double)floats * sizeof(float) / 1048576.0; }

void dlt_model_describe(const dlt_model *m, FILE *f)
{
    char sb[96];
    fprintf(f, "%-28s %-22s %-20s %12s\n", "layer", "type", "output", "params");
    for (int k = 0; k < m->n_layers; k++) {
        const dlt_layer *l = &m->layers[k];
        int64_t np = 0;
        for (int i = 0; i < l->n_params; i++) np += dlt_shape_numel(&l->params[i].shape);
        fprintf(f, "%-28s %-22s %-20s %12lld\n", l->spec->name, l->ops->type,
                dlt_shape_str(&l->y.shape, sb, sizeof sb), (long long)np);
    }
    fprintf(f, "total: %zu parameters, %.3g MFLOP forward per sample\n", m->a.n_params,
            dlt_model_flops(m) / 1e6);
    fprintf(f, "memory (MiB, backend %s, batch %d): params %.2f, grads %.2f, state %.2f, "
               "activations %.2f, activation grads %.2f, buffers %.2f, workspace %.2f, "
               "input %.2f\n",
            m->be->name, m->max_batch, mib(m->a.n_params), mib(m->a.n_params), mib(m->a.n_state),
            mib(m->a.n_acts), mib(m->a.n_acts), mib(m->a.n_bufs),
            (double)m->a.ws_bytes / 1048576.0, mib((size_t)dlt_shape_numel(&m->in_shape)));
}

/* ---- standalone layers ---- */

typedef struct {
    dlt_layer l;                 /* first, so a dlt_layer* is the wrapper */
    dlt_layer_spec spec;
    dlt_arenas a;
} standalone;

dlt_status dlt_layer_create_standalone(const dlt_layer_spec *spec, const dlt_shape *in, int n_in,
                                       dlt_backend *be, uint64_t seed, dlt_layer **out)
{
    *out = NULL;
    const dlt_layer_ops *ops = dlt_layer_find(spec->type);
    if (!ops) return DLT_ERR(DLT_ERR_CONFIG, "unknown layer type '%s'", spec->type);
    if (n_in != ops->n_inputs)
        return DLT_ERR(DLT_ERR_INVALID, "%s takes %d inputs, got %d", ops->type, ops->n_inputs,
                       n_in);
    standalone *s = calloc(1, sizeof *s);
    if (!s) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    s->spec = *spec;
    if (!s->spec.name[0]) snprintf(s->spec.name, sizeof s->spec.name, "%s", spec->type);
    dlt_layer *l = &s->l;
    l->ops = ops;
    l->spec = &s->spec;
    l->be = be;
    l->n_in = n_in;
    for (int i = 0; i < n_in; i++) l->x[i].shape = l->dx[i].shape = in[i];
    dlt_status st;
    DLT_CHECK_GOTO(layer_setup(l), st, fail);
    DLT_CHECK_GOTO(arenas_alloc(be, l, 1, &s->a, NULL), st, fail);
    for (int i = 0; i < n_in; i++) {
        size_t len = (size_t)dlt_shape_numel(&in[i]);
        DLT_CHECK_GOTO(alloc_floats(be, len, &l->x[i].data), st, fail);
        DLT_CHECK_GOTO(alloc_floats(be, len, &l->dx[i].data), st, fail);
    }
    DLT_CHECK_GOTO(init_params(be, l, 1, seed), st, fail);
    *out = l;
    return DLT_OK;
fail:
    dlt_layer_free_standalone(l);
    return st;
}

void dlt_layer_free_standalone(dlt_layer *l)
{
    if (!l) return;
    standalone *s = (standalone *)l;
    layer_release(l);
    for (int i = 0; i < l->n_in; i++) {
        if (l->x[i].data) l->be->free(l->be, l->x[i].data);
        if (l->dx[i].data) l->be->free(l->be, l->dx[i].data);
    }
    arenas_free(l->be, &s->a);
    free(s);
}

void dlt_layer_zero_grads(dlt_layer *l)
{
    dlt_backend *be = l->be;
    for (int i = 0; i < l->n_in; i++)
        if (l->dx[i].data)
            (void)be->fill(be, l->dx[i].data, (size_t)dlt_shape_numel(&l->dx[i].shape), 0.0f);
    for (int i = 0; i < l->n_params; i++)
        (void)be->fill(be, l->params[i].g, (size_t)dlt_shape_numel(&l->params[i].shape), 0.0f);
}
