/* Inference set-up for eval and predict.
 *
 * Design. The model is rebuilt from the config exactly as the trainer
 * builds it (same layer specs, same loss layer) and the weights come from a
 * checkpoint by name, strictly: eval of a checkpoint written for another
 * model fails naming the first parameter that differs. The checkpoint's
 * own record of the input shape and class count wins over the config, so
 * `predict` works without the training data at hand. Normalisation of
 * uint8 pixels repeats the loader's (pixel/255 - mean) / std in float. */
#include "launcher/infer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "launcher/checkpoint.h"

int dlt_infer_options(int argc, char **argv, const char *const *names, const char **vals, int n)
{
    for (int i = 0; i < n; i++) vals[i] = NULL;
    int out = 0;
    for (int a = 0; a < argc; a++) {
        int taken = 0;
        for (int i = 0; a > 0 && i < n && !taken; i++) {
            size_t l = strlen(names[i]);
            if (!strncmp(argv[a], names[i], l) && argv[a][l] == '=') {
                vals[i] = argv[a] + l + 1;
                taken = 1;
            }
        }
        if (!taken) argv[out++] = argv[a];
    }
    return out;
}

dlt_status dlt_infer_open(dlt_infer *r, dlt_comm_t comm, const char *config, char **overrides, int n_over,
                          const char *ckpt, int max_batch)
{
    dlt_config *c = &r->cfg;
    r->comm = comm;
    r->rank = dlt_comm_rank(comm);
    r->world = dlt_comm_size(comm);
    if (!ckpt || !ckpt[0]) return DLT_ERR(DLT_ERR_INVALID, "missing ckpt=PATH (a checkpoint or a run's model.h5)");
    DLT_CHECK(dlt_config_load(config, overrides, n_over, c));
    int found = 0;
    DLT_CHECK(dlt_ckpt_read_meta(ckpt, r->input, &r->classes, &found));
    if (!found) {
        if (c->n_input != 3)
            return DLT_ERR(DLT_ERR_CONFIG, "%s: %s does not record the input shape; set model.input: [C, H, W]",
                           config, ckpt);
        for (int i = 0; i < 3; i++) r->input[i] = c->input[i];
        r->classes = 0;
    } else if (c->n_input == 3) {
        for (int i = 0; i < 3; i++)
            if (c->input[i] != r->input[i])
                return DLT_ERR(DLT_ERR_SHAPE, "%s: model.input is [%d, %d, %d] but %s was trained on [%d, %d, %d]",
                               config, c->input[0], c->input[1], c->input[2], ckpt, r->input[0], r->input[1],
                               r->input[2]);
    }
    for (int i = 0; i < 4; i++) {
        r->mean[i] = c->n_mean ? c->mean[c->n_mean > 1 ? i % c->n_mean : 0] : 0.0f;
        r->std[i] = c->n_std ? c->std[c->n_std > 1 ? i % c->n_std : 0] : 1.0f;
    }
    DLT_CHECK(dlt_device_open(c->device, dlt_comm_local_rank(comm), &r->be));
    r->max_batch = max_batch;
    dlt_model_cfg mc = {
        .layers = c->layers, .n_layers = c->n_layers, .loss = c->loss,
        .input = { 3, { r->input[0], r->input[1], r->input[2] } },
        .n_classes = r->classes > 0 ? r->classes : 1, .max_batch = max_batch, .seed = c->seed,
    };
    DLT_CHECK(dlt_model_build(&mc, r->be, &r->model));
    int64_t k = dlt_shape_sample_numel(&dlt_model_logits(r->model)->shape);
    if (r->classes <= 0 || r->classes > k) r->classes = (int)k;
    DLT_CHECK(dlt_ckpt_load_weights(ckpt, r->model, 1, NULL, NULL, NULL));
    size_t sample = (size_t)r->input[0] * (size_t)r->input[1] * (size_t)r->input[2];
    DLT_CHECK(r->be->alloc(r->be, (size_t)max_batch * sample * sizeof(float), (void **)&r->x_dev));
    DLT_CHECK(r->be->alloc(r->be, (size_t)max_batch * sizeof(int32_t), (void **)&r->y_dev));
    r->logits = malloc((size_t)max_batch * (size_t)k * sizeof(float));
    if (!r->logits) return DLT_ERR(DLT_ERR_NOMEM, "out of memory for logits");
    return DLT_OK;
}

void dlt_infer_close(dlt_infer *r)
{
    if (r->be) {
        if (r->x_dev) r->be->free(r->be, r->x_dev);
        if (r->y_dev) r->be->free(r->be, r->y_dev);
    }
    if (r->model) dlt_model_free(r->model);
    if (r->be) r->be->destroy(r->be);
    free(r->logits);
    memset(r, 0, sizeof *r);
}

dlt_status dlt_infer_run(dlt_infer *r, const float *x, const int32_t *labels, int n, double *loss_sum,
                         double *correct)
{
    dlt_backend *be = r->be;
    size_t sample = (size_t)r->input[0] * (size_t)r->input[1] * (size_t)r->input[2];
    DLT_CHECK(be->upload(be, r->x_dev, x, (size_t)n * sample * sizeof(float)));
    /* the loss layer needs labels; without them class 0 stands in, unused */
    if (labels)
        DLT_CHECK(be->upload(be, r->y_dev, labels, (size_t)n * sizeof(int32_t)));
    else
        DLT_CHECK(be->fill(be, (float *)r->y_dev, (size_t)n, 0.0f)); /* int32 0 == float 0.0 bits */
    /* host labels for layers that need them there (the masked-LM head; not
     * in the image models run here, so NULL without labels costs nothing) */
    dlt_step_ctx ctx = { .train = 0, .seed = r->cfg.seed, .labels = r->y_dev, .labels_host = labels };
    dlt_model_out out;
    DLT_CHECK(dlt_model_forward(r->model, r->x_dev, n, &ctx, &out));
    const dlt_tensor *lg = dlt_model_logits(r->model);
    int64_t k = dlt_shape_sample_numel(&lg->shape);
    DLT_CHECK(be->download(be, r->logits, lg->data, (size_t)n * (size_t)k * sizeof(float)));
    if (!labels) return DLT_OK;
    float *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp) return DLT_ERR(DLT_ERR_NOMEM, "out of memory");
    dlt_status st = be->download(be, tmp, out.loss, (size_t)n * sizeof *tmp);
    for (int i = 0; st == DLT_OK && loss_sum && i < n; i++) *loss_sum += tmp[i];
    if (st == DLT_OK && correct && out.correct) {
        st = be->download(be, tmp, out.correct, (size_t)n * sizeof *tmp);
        for (int i = 0; st == DLT_OK && i < n; i++) *correct += tmp[i];
    }
    free(tmp);
    return st;
}

void dlt_infer_softmax(const dlt_infer *r, int i, float *p)
{
    int64_t k = dlt_shape_sample_numel(&dlt_model_logits(r->model)->shape);
    const float *z = r->logits + (size_t)i * (size_t)k;
    double mx = -INFINITY, sum = 0;
    for (int j = 0; j < r->classes; j++)
        if (z[j] > mx) mx = z[j];
    for (int j = 0; j < r->classes; j++) sum += exp((double)z[j] - mx);
    for (int j = 0; j < r->classes; j++) p[j] = (float)(exp((double)z[j] - mx) / sum);
}
