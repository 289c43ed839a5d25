/* Tests for core/optim.c and the CPU fused update (core/cpu/cpu_optim.c).
 *
 * Oracle: tests/torch/gen_optim.py runs torch.optim (float32), its LR
 * schedulers and clip_grad_norm_ and stores trajectories; every case here is
 * driven through the public dlt_optim API on the CPU backend, so the
 * schedule, the clipping and the update are checked together, step by step.
 * Pure C checks cover what a reference cannot: exact clipping to the
 * threshold, untouched gradients below it, non-finite gradients, argument
 * validation, and which state arenas each optimizer allocates. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/optim.h"
#include "core/status.h"
#include "tests/unit/testutil.h"

#define REL_TOL 1e-5

static dlt_backend *be;

static void setup(void)
{
    ck_assert_msg(dlt_backend_cpu_create(&be) == DLT_OK, "%s", dlt_last_error());
}

static void teardown(void)
{
    be->destroy(be);
    be = NULL;
}

static float *balloc(size_t n)
{
    void *p = NULL;
    ck_assert(be->alloc(be, (n ? n : 1) * sizeof(float), &p) == DLT_OK);
    return p;
}

/* ---- torch references ---- */

static const char *const traj_cases[] = {
    "sgd",          "sgd_wd",          "sgd_mom",        "sgd_mom_wd",
    "sgd_nesterov", "sgd_nesterov_wd", "adam",           "adam_wd",
    "adamw",        "adamw_betas",     "adagrad",        "adagrad_wd",
    "rmsprop",      "rmsprop_mom",     "rmsprop_mom_wd", "sgd_step_clip",
    "adamw_cosine_clip", "rmsprop_warm", "adam_large",   "sgd_nesterov_large",
};
#define N_TRAJ ((int)(sizeof traj_cases / sizeof traj_cases[0]))

/* Fills o's hyper-parameters and schedule from a reference file's attributes. */
static void optim_from_attrs(dlt_optim *o, const char *path)
{
    memset(o, 0, sizeof *o);
    o->h.kind = (dlt_opt_kind)tu_read_attr(path, "kind");
    o->h.weight_decay = (float)tu_read_attr(path, "weight_decay");
    o->h.momentum = (float)tu_read_attr(path, "momentum");
    o->h.nesterov = (int)tu_read_attr(path, "nesterov");
    o->h.beta1 = (float)tu_read_attr(path, "beta1");
    o->h.beta2 = (float)tu_read_attr(path, "beta2");
    o->h.alpha = (float)tu_read_attr(path, "alpha");
    o->h.eps = (float)tu_read_attr(path, "eps");
    o->clip_norm = (float)tu_read_attr(path, "clip_norm");
    o->sched.kind = (dlt_sched_kind)tu_read_attr(path, "sched");
    o->sched.lr = (float)tu_read_attr(path, "lr");
    o->sched.lr_min = (float)tu_read_attr(path, "lr_min");
    o->sched.step_size = (int64_t)tu_read_attr(path, "step_size");
    o->sched.gamma = (float)tu_read_attr(path, "gamma");
    o->sched.total_steps = (int64_t)tu_read_attr(path, "total_steps");
    o->sched.warmup_steps = (int64_t)tu_read_attr(path, "warmup_steps");
}

START_TEST(test_torch_trajectory)
{
    char name[128], path[512];
    snprintf(name, sizeof name, "optim_%s.h5", traj_cases[_i]);
    tu_ref_path(name, path, sizeof path);
    size_t n, ng, nw, nn;
    int64_t dims[8];
    int nd;
    float *w0 = tu_read_f32(path, "w0", &n, NULL, NULL);
    float *grads = tu_read_f32(path, "grads", &ng, dims, &nd);
    float *want = tu_read_f32(path, "weights", &nw, NULL, NULL);
    float *norms = tu_read_f32(path, "norms", &nn, NULL, NULL);
    ck_assert_int_eq(nd, 2);
    size_t steps = (size_t)dims[0];
    ck_assert(steps >= 5 && (size_t)dims[1] == n && nw == ng && nn == steps);

    dlt_optim o;
    optim_from_attrs(&o, path);
    ck_assert_msg(dlt_optim_init(&o, be, n) == DLT_OK, "%s", dlt_last_error());
    float *w = balloc(n), *g = balloc(n);
    memcpy(w, w0, n * sizeof *w);
    for (size_t s = 0; s < steps; s++) {
        memcpy(g, grads + s * n, n * sizeof *g);
        double norm = -1;
        ck_assert_msg(dlt_optim_step(&o, w, g, &norm) == DLT_OK, "%s", dlt_last_error());
        ck_assert_msg(fabs(norm - norms[s]) <= REL_TOL * norms[s], "%s step %zu: norm %g vs %g",
                      traj_cases[_i], s, norm, (double)norms[s]);
        double err = tu_max_rel_err(w, want + s * n, n);
        ck_assert_msg(err <= REL_TOL, "%s step %zu: max rel err %g", traj_cases[_i], s, err);
    }
    ck_assert_int_eq(o.step, (int64_t)steps);
    dlt_optim_free(&o);
    be->free(be, w);
    be->free(be, g);
    free(w0);
    free(grads);
    free(want);
    free(norms);
}
END_TEST

static const char *const sched_cases[] = {
    "constant", "constant_warm", "step", "step_warm", "cosine", "cosine_warm", "cosine_warm1",
};
#define N_SCHED ((int)(sizeof sched_cases / sizeof sched_cases[0]))

START_TEST(test_torch_schedule)
{
    char name[128], path[512];
    snprintf(name, sizeof name, "sched_%s.h5", sched_cases[_i]);
    tu_ref_path(name, path, sizeof path);
    dlt_optim o;
    optim_from_attrs(&o, path);
    size_t t;
    float *lr = tu_read_f32(path, "lr", &t, NULL, NULL);
    ck_assert(t >= 20);
    for (size_t s = 0; s < t; s++) {
        double got = dlt_sched_lr(&o.sched, (int64_t)s);
        ck_assert_msg(fabs(got - lr[s]) <= 1e-6 * o.sched.lr, "%s step %zu: %.9g vs %.9g",
                      sched_cases[_i], s, got, (double)lr[s]);
    }
    free(lr);
}
END_TEST

static const char *const clip_cases[] = {"above", "below", "far_above"};

START_TEST(test_torch_clip)
{
    char name[128], path[512];
    snprintf(name, sizeof name, "clip_%s.h5", clip_cases[_i]);
    tu_ref_path(name, path, sizeof path);
    size_t n, nc;
    float *g0 = tu_read_f32(path, "g", &n, NULL, NULL);
    float *want = tu_read_f32(path, "clipped", &nc, NULL, NULL);
    ck_assert(n == nc && n > 0);
    /* lr 0: the update leaves w alone, so only the clipping shows in g. */
    dlt_optim o = {.h = {.kind = DLT_OPT_SGD}, .clip_norm = (float)tu_read_attr(path, "clip_norm")};
    ck_assert(dlt_optim_init(&o, be, n) == DLT_OK);
    float *w = balloc(n), *g = balloc(n);
    memcpy(g, g0, n * sizeof *g);
    double norm = 0;
    ck_assert(dlt_optim_step(&o, w, g, &norm) == DLT_OK);
    double want_norm = tu_read_attr(path, "norm");
    ck_assert_msg(fabs(norm - want_norm) <= 1e-6 * want_norm, "%g vs %g", norm, want_norm);
    ck_assert_msg(fabs(norm - tu_read_attr(path, "torch_norm")) <= REL_TOL * want_norm,
                  "norm differs from torch's return value");
    double err = tu_max_rel_err(g, want, n);
    ck_assert_msg(err <= REL_TOL, "%s: clipped gradient max rel err %g", clip_cases[_i], err);
    for (size_t i = 0; i < n; i++) ck_assert(w[i] == 0.0f);
    dlt_optim_free(&o);
    be->free(be, w);
    be->free(be, g);
    free(g0);
    free(want);
}
END_TEST

/* ---- pure C checks ---- */

static double norm2(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

START_TEST(test_clip_scales_to_threshold)
{
    enum { N = 1000 };
    float *w = balloc(N), *g = balloc(N);
    tu_fill_uniform(g, N, 11, -5.0f, 5.0f);
    double before = norm2(g, N);
    dlt_optim o = {.h = {.kind = DLT_OPT_SGD}, .clip_norm = (float)(before / 4)};
    ck_assert(dlt_optim_init(&o, be, N) == DLT_OK);
    double reported = 0;
    ck_assert(dlt_optim_step(&o, w, g, &reported) == DLT_OK);
    ck_assert_msg(fabs(reported - before) <= 1e-9 * before, "%g vs %g", reported, before);
    double after = norm2(g, N);
    ck_assert_msg(fabs(after - o.clip_norm) <= 1e-6 * o.clip_norm, "clipped norm %.9g, want %.9g",
                  after, (double)o.clip_norm);
    ck_assert(after < before);
    dlt_optim_free(&o);
    be->free(be, w);
    be->free(be, g);
}
END_TEST

START_TEST(test_clip_below_threshold_untouched)
{
    enum { N = 513 };
    float *w = balloc(N), *g = balloc(N), *copy = malloc(N * sizeof *copy);
    tu_fill_uniform(g, N, 12, -1.0f, 1.0f);
    memcpy(copy, g, N * sizeof *g);
    /* Just above the norm: clip / (norm + 1e-6) is still < 1 only when
     * clip < norm + 1e-6, so clip = 1.001 * norm must leave g bit-identical. */
    dlt_optim o = {.h = {.kind = DLT_OPT_SGD}, .clip_norm = (float)(norm2(g, N) * 1.001)};
    ck_assert(dlt_optim_init(&o, be, N) == DLT_OK);
    ck_assert(dlt_optim_step(&o, w, g, NULL) == DLT_OK);
    ck_assert(memcmp(copy, g, N * sizeof *g) == 0);
    dlt_optim_free(&o);
    /* No clipping at all when clip_norm is 0, however large g is. */
    for (int i = 0; i < N; i++) g[i] = copy[i] * 1e6f;
    memcpy(copy, g, N * sizeof *g);
    dlt_optim o2 = {.h = {.kind = DLT_OPT_SGD}};
    ck_assert(dlt_optim_init(&o2, be, N) == DLT_OK);
    ck_assert(dlt_optim_step(&o2, w, g, NULL) == DLT_OK);
    ck_assert(memcmp(copy, g, N * sizeof *g) == 0);
    dlt_optim_free(&o2);
    be->free(be, w);
    be->free(be, g);
    free(copy);
}
END_TEST

START_TEST(test_nonfinite_gradient_rejected)
{
    enum { N = 64 };
    float *w = balloc(N), *g = balloc(N);
    tu_fill_uniform(w, N, 13, -1.0f, 1.0f);
    tu_fill_uniform(g, N, 14, -1.0f, 1.0f);
    float w_copy[N];
    memcpy(w_copy, w, sizeof w_copy);
    dlt_optim o = {.h = {.kind = DLT_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f},
                   .sched = {.lr = 0.1f},
                   .clip_norm = 1.0f};
    ck_assert(dlt_optim_init(&o, be, N) == DLT_OK);
    g[17] = NAN;
    double norm = 0;
    ck_assert_int_eq(dlt_optim_step(&o, w, g, &norm), DLT_ERR_NUMERIC);
    ck_assert(isnan(norm));
    g[17] = INFINITY;
    ck_assert_int_eq(dlt_optim_step(&o, w, g, NULL), DLT_ERR_NUMERIC);
    ck_assert(strstr(dlt_last_error(), "gradient norm") != NULL);
    ck_assert(memcmp(w, w_copy, sizeof w_copy) == 0);
    ck_assert_int_eq(o.step, 0);
    for (int i = 0; i < N; i++) ck_assert(o.s1[i] == 0.0f && o.s2[i] == 0.0f);
    g[17] = 0.5f;
    ck_assert(dlt_optim_step(&o, w, g, NULL) == DLT_OK);
    ck_assert_int_eq(o.step, 1);
    dlt_optim_free(&o);
    be->free(be, w);
    be->free(be, g);
}
END_TEST

START_TEST(test_schedule_closed_form)
{
    dlt_sched s = {.kind = DLT_SCHED_COSINE, .lr = 0.4f, .lr_min = 0.1f, .total_steps = 14,
                   .warmup_steps = 4};
    for (int k = 0; k < 4; k++) ck_assert_float_eq(dlt_sched_lr(&s, k), 0.4f * (k + 1) / 4);
    ck_assert_float_eq(dlt_sched_lr(&s, 4), 0.4f);                     /* start of cosine */
    ck_assert(fabsf(dlt_sched_lr(&s, 9) - 0.25f) < 1e-7f);             /* half way */
    ck_assert_float_eq(dlt_sched_lr(&s, 14), 0.1f);                    /* end */
    ck_assert_float_eq(dlt_sched_lr(&s, 1000), 0.1f);                  /* stays at the floor */
    for (int k = 4; k < 14; k++) ck_assert(dlt_sched_lr(&s, k + 1) < dlt_sched_lr(&s, k));
    ck_assert_float_eq(dlt_sched_lr(&s, -3), 0.1f);                    /* clamped to step 0 */

    dlt_sched st = {.kind = DLT_SCHED_STEP, .lr = 1.0f, .step_size = 10, .gamma = 0.1f};
    ck_assert_float_eq(dlt_sched_lr(&st, 9), 1.0f);
    ck_assert(fabsf(dlt_sched_lr(&st, 10) - 0.1f) < 1e-8f);
    ck_assert(fabsf(dlt_sched_lr(&st, 25) - 0.01f) < 1e-9f);

    dlt_sched c = {.kind = DLT_SCHED_CONSTANT, .lr = 0.3f};
    ck_assert_float_eq(dlt_sched_lr(&c, 0), 0.3f);
    ck_assert_float_eq(dlt_sched_lr(&c, 123456789), 0.3f);
}
END_TEST

START_TEST(test_parse)
{
    ck_assert_int_eq(dlt_opt_kind_parse("sgd"), DLT_OPT_SGD);
    ck_assert_int_eq(dlt_opt_kind_parse("adam"), DLT_OPT_ADAM);
    ck_assert_int_eq(dlt_opt_kind_parse("adamw"), DLT_OPT_ADAMW);
    ck_assert_int_eq(dlt_opt_kind_parse("AdamW"), DLT_OPT_ADAMW);
    ck_assert_int_eq(dlt_opt_kind_parse("adagrad"), DLT_OPT_ADAGRAD);
    ck_assert_int_eq(dlt_opt_kind_parse("rmsprop"), DLT_OPT_RMSPROP);
    ck_assert_int_eq(dlt_opt_kind_parse("adam "), -1);
    ck_assert_int_eq(dlt_opt_kind_parse("lamb"), -1);
    ck_assert_int_eq(dlt_opt_kind_parse(""), -1);
    ck_assert_int_eq(dlt_opt_kind_parse(NULL), -1);
    ck_assert_int_eq(dlt_sched_kind_parse("constant"), DLT_SCHED_CONSTANT);
    ck_assert_int_eq(dlt_sched_kind_parse("step"), DLT_SCHED_STEP);
    ck_assert_int_eq(dlt_sched_kind_parse("cosine"), DLT_SCHED_COSINE);
    ck_assert_int_eq(dlt_sched_kind_parse("linear"), -1);
    ck_assert_int_eq(dlt_sched_kind_parse(NULL), -1);
}
END_TEST

START_TEST(test_state_arenas)
{
    static const struct {
        dlt_opt_kind kind;
        float momentum;
        int s1, s2;
    } cases[] = {
        {DLT_OPT_SGD, 0.0f, 0, 0},     {DLT_OPT_SGD, 0.9f, 1, 0},
        {DLT_OPT_ADAM, 0.0f, 1, 1},    {DLT_OPT_ADAMW, 0.0f, 1, 1},
        {DLT_OPT_ADAGRAD, 0.0f, 1, 0}, {DLT_OPT_RMSPROP, 0.0f, 1, 0},
        {DLT_OPT_RMSPROP, 0.5f, 1, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dlt_optim o = {.h = {.kind = cases[i].kind, .momentum = cases[i].momentum,
                             .beta1 = 0.9f, .beta2 = 0.99f, .alpha = 0.9f, .eps = 1e-8f},
                       .sched = {.lr = 0.01f}};
        ck_assert(dlt_optim_init(&o, be, 100) == DLT_OK);
        ck_assert_msg((o.s1 != NULL) == cases[i].s1 && (o.s2 != NULL) == cases[i].s2,
                      "case %zu", i);
        if (o.s1)
            for (int j = 0; j < 100; j++) ck_assert(o.s1[j] == 0.0f);
        dlt_optim_free(&o);
        dlt_optim_free(&o); /* idempotent */
        ck_assert(o.s1 == NULL && o.s2 == NULL);
    }
    dlt_optim z;
    memset(&z, 0, sizeof z);
    dlt_optim_free(&z); /* never initialised */
}
END_TEST

START_TEST(test_init_validation)
{
    dlt_optim o = {.h = {.kind = DLT_OPT_SGD, .nesterov = 1}, .sched = {.lr = 0.1f}};
    ck_assert_int_eq(dlt_optim_init(&o, be, 10), DLT_ERR_INVALID);
    ck_assert(strstr(dlt_last_error(), "Nesterov") != NULL);
    ck_assert(o.s1 == NULL && o.s2 == NULL);

    dlt_optim a = {.h = {.kind = DLT_OPT_ADAM, .beta1 = 1.0f, .beta2 = 0.999f},
                   .sched = {.lr = 0.1f}};
    ck_assert_int_eq(dlt_optim_init(&a, be, 10), DLT_ERR_INVALID);

    dlt_optim c = {.h = {.kind = DLT_OPT_SGD},
                   .sched = {.kind = DLT_SCHED_COSINE, .lr = 0.1f, .total_steps = 5,
                             .warmup_steps = 5}};
    ck_assert_int_eq(dlt_optim_init(&c, be, 10), DLT_ERR_INVALID);

    dlt_optim neg = {.h = {.kind = DLT_OPT_SGD}, .sched = {.lr = -0.1f}};
    ck_assert_int_eq(dlt_optim_init(&neg, be, 10), DLT_ERR_INVALID);

    dlt_optim st = {.h = {.kind = DLT_OPT_SGD}, .sched = {.kind = DLT_SCHED_STEP, .lr = 0.1f}};
    ck_assert_int_eq(dlt_optim_init(&st, be, 10), DLT_ERR_INVALID); /* step_size 0 */

    /* h.lr alone means a constant rate of h.lr. */
    dlt_optim h = {.h = {.kind = DLT_OPT_SGD, .lr = 0.5f}};
    ck_assert(dlt_optim_init(&h, be, 4) == DLT_OK);
    float w[4] = {1, 1, 1, 1}, g[4] = {1, 2, 3, 4};
    ck_assert(dlt_optim_step(&h, w, g, NULL) == DLT_OK);
    ck_assert_float_eq(w[3], 1.0f - 0.5f * 4.0f);
    dlt_optim_free(&h);

    /* An empty arena is legal and a no-op. */
    dlt_optim e = {.h = {.kind = DLT_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.9f}, .sched = {.lr = 1}};
    ck_assert(dlt_optim_init(&e, be, 0) == DLT_OK);
    ck_assert(dlt_optim_step(&e, w, g, NULL) == DLT_OK);
    dlt_optim_free(&e);
}
END_TEST

START_TEST(test_sgd_momentum_buffer_starts_at_gradient)
{
    /* torch sets the buffer to the first decayed gradient, whatever the arena
     * held before (a reused arena must not leak into step 1). */
    enum { N = 40 };
    float w[N], g[N], buf[N];
    tu_fill_uniform(w, N, 21, -1.0f, 1.0f);
    tu_fill_uniform(g, N, 22, -1.0f, 1.0f);
    for (int i = 0; i < N; i++) buf[i] = 123.0f;
    float w0[N];
    memcpy(w0, w, sizeof w);
    dlt_opt_hparams h = {.kind = DLT_OPT_SGD, .lr = 0.1f, .weight_decay = 0.01f,
                         .momentum = 0.9f, .t = 1};
    ck_assert(be->opt_update(be, &h, N, w, g, buf, NULL) == DLT_OK);
    for (int i = 0; i < N; i++) {
        float d = g[i] + 0.01f * w0[i];
        ck_assert(fabsf(buf[i] - d) <= 1e-7f);
        ck_assert(fabsf(w[i] - (w0[i] - 0.1f * d)) <= 1e-7f);
    }
    /* Missing state is an error, not a crash. */
    ck_assert_int_eq(be->opt_update(be, &h, N, w, g, NULL, NULL), DLT_ERR_INVALID);
}
END_TEST

START_TEST(test_adam_first_step_is_lr_sized)
{
    /* With bias correction the first Adam step is lr * g / (|g| + eps') for
     * every element: a sign step of size lr, whatever the gradient's scale. */
    enum { N = 100 };
    float w[N] = {0}, g[N], m[N] = {0}, v[N] = {0};
    tu_fill_uniform(g, N, 23, -100.0f, 100.0f);
    dlt_opt_hparams h = {.kind = DLT_OPT_ADAM, .lr = 0.01f, .beta1 = 0.9f, .beta2 = 0.999f,
                         .eps = 1e-8f, .t = 1};
    ck_assert(be->opt_update(be, &h, N, w, g, m, v) == DLT_OK);
    for (int i = 0; i < N; i++) {
        if (fabsf(g[i]) < 1e-3f) continue;
        ck_assert_msg(fabsf(w[i] + copysignf(0.01f, g[i])) <= 1e-7f, "w[%d] = %g for g %g", i,
                      (double)w[i], (double)g[i]);
    }
}
END_TEST

/* ---- ZeRO-1 shards ---- */

/* A stand-in for the allreduce over ranks: adds what the other shard's rank
 * would contribute (*ctx), set by the test before each step. */
static dlt_status fake_sum(void *ctx, double *v, size_t k)
{
    for (size_t i = 0; i < k; i++) v[i] += ((const double *)ctx)[i];
    return DLT_OK;
}

static double seg_sumsq(const float *g, const dlt_optim_shard *sh)
{
    double s = 0;
    for (size_t i = 0; i < sh->count; i++)
        for (size_t j = 0; j < sh->len[i]; j++) s += (double)g[sh->off[i] + j] * g[sh->off[i] + j];
    return s;
}

/* Two complementary shards of one arena, each stepped as its rank would
 * (global norm from its segments plus the other's), together give the
 * whole-arena Adam trajectory with clipping active; each leaves the floats
 * it does not own untouched, and keeps packed state of its own size only. */
START_TEST(test_shards_match_whole_arena)
{
    enum { N = 1000, STEPS = 5 };
    static const size_t a_off[] = { 0, 300, 900 }, a_len[] = { 100, 150, 100 };
    static const size_t b_off[] = { 100, 450, 1000 }, b_len[] = { 200, 450, 0 };
    double a_extra = 0, b_extra = 0;
    dlt_optim_shard sa = { 3, a_off, a_len, 350, fake_sum, &b_extra };
    dlt_optim_shard sb = { 3, b_off, b_len, 650, fake_sum, &a_extra };
    float *w = balloc(N), *wa = balloc(N), *wb = balloc(N), *w0 = malloc(N * sizeof *w0);
    float *g = balloc(N), *ga = balloc(N), *gb = balloc(N), *g0 = malloc(N * sizeof *g0);
    tu_fill_uniform(w0, N, 21, -1.0f, 1.0f);
    memcpy(w, w0, N * sizeof *w);
    memcpy(wa, w0, N * sizeof *w);
    memcpy(wb, w0, N * sizeof *w);
    dlt_optim o[3];
    const dlt_optim_shard *shards[3] = { NULL, &sa, &sb };
    for (int i = 0; i < 3; i++) {
        o[i] = (dlt_optim){ .h = { .kind = DLT_OPT_ADAM, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                                   .weight_decay = 0.01f },
                            .sched = { .lr = 0.01f }, .clip_norm = 2.0f, .shard = shards[i] };
        ck_assert_msg(dlt_optim_init(&o[i], be, N) == DLT_OK, "%s", dlt_last_error());
    }
    ck_assert_uint_eq(dlt_optim_state_floats(&o[0]), N);
    ck_assert_uint_eq(dlt_optim_state_floats(&o[1]), 350);
    ck_assert_uint_eq(dlt_optim_state_floats(&o[2]), 650);
    for (int step = 0; step < STEPS; step++) {
        tu_fill_uniform(g0, N, 100 + (uint64_t)step, -1.0f, 1.0f); /* norm ~18: clipped to 2 */
        memcpy(g, g0, N * sizeof *g);
        memcpy(ga, g0, N * sizeof *g);
        memcpy(gb, g0, N * sizeof *g);
        a_extra = seg_sumsq(g0, &sa);
        b_extra = seg_sumsq(g0, &sb);
        double n0, na, nb;
        ck_assert(dlt_optim_step(&o[0], w, g, &n0) == DLT_OK);
        ck_assert(dlt_optim_step(&o[1], wa, ga, &na) == DLT_OK);
        ck_assert(dlt_optim_step(&o[2], wb, gb, &nb) == DLT_OK);
        ck_assert(n0 > 2.0);
        ck_assert_msg(fabs(na - n0) <= 1e-12 * n0 && fabs(nb - n0) <= 1e-12 * n0, "norms %g %g %g", n0, na, nb);
    }
    /* owned floats follow the whole arena; the others are untouched */
    for (size_t i = 0; i < 3; i++) {
        for (size_t j = a_off[i]; j < a_off[i] + a_len[i]; j++) {
            ck_assert_msg(fabsf(wa[j] - w[j]) <= 1e-6f * fmaxf(1.0f, fabsf(w[j])), "shard a [%zu]", j);
            ck_assert(wb[j] == w0[j]);
        }
        for (size_t j = b_off[i]; j < b_off[i] + b_len[i]; j++) {
            ck_assert_msg(fabsf(wb[j] - w[j]) <= 1e-6f * fmaxf(1.0f, fabsf(w[j])), "shard b [%zu]", j);
            ck_assert(wa[j] == w0[j]);
        }
    }
    /* state_put: values in the full layout land at the packed places */
    float full[N];
    for (int i = 0; i < N; i++) full[i] = (float)i;
    ck_assert(dlt_optim_state_put(&o[1], 1, 250, full + 250, 700) == DLT_OK); /* [250, 950) */
    ck_assert(o[1].s2[99] != 99.0f);                                          /* [0, 100) not in range */
    ck_assert(o[1].s2[100] == 300.0f && o[1].s2[249] == 449.0f);              /* [300, 450) -> [100, 250) */
    ck_assert(o[1].s2[250] == 900.0f && o[1].s2[299] == 949.0f);              /* [900, 950) -> [250, 300) */
    ck_assert(o[1].s2[300] != 950.0f);
    ck_assert_int_eq(dlt_optim_state_put(&o[1], 1, 900, full, 101), DLT_ERR_INVALID);
    /* a shard leaving the arena is refused */
    dlt_optim bad = o[0];
    static const size_t bad_off[] = { 990 }, bad_len[] = { 20 };
    dlt_optim_shard sbad = { 1, bad_off, bad_len, 20, fake_sum, &a_extra };
    bad.shard = &sbad;
    bad.s1 = bad.s2 = NULL;
    ck_assert_int_eq(dlt_optim_init(&bad, be, N), DLT_ERR_INVALID);
    /* an empty shard (more ranks than floats in a bucket) still has its
     * arenas, like every other rank, and its step changes nothing */
    static const size_t e_off[] = { 5 }, e_len[] = { 0 };
    dlt_optim_shard se = { 1, e_off, e_len, 0, fake_sum, &a_extra };
    dlt_optim empty = { .h = o[0].h, .sched = { .lr = 0.01f }, .shard = &se };
    ck_assert(dlt_optim_init(&empty, be, N) == DLT_OK);
    ck_assert(empty.s1 != NULL && empty.s2 != NULL);
    memcpy(w0, wa, N * sizeof *w0);
    a_extra = 1.0;
    double en = 0;
    ck_assert(dlt_optim_step(&empty, wa, ga, &en) == DLT_OK);
    ck_assert(en == 1.0); /* the other ranks' share of the norm only */
    ck_assert(memcmp(w0, wa, N * sizeof *w0) == 0);
    dlt_optim_free(&empty);
    for (int i = 0; i < 3; i++) dlt_optim_free(&o[i]);
    float *bufs[] = { w, wa, wb, g, ga, gb };
    for (int i = 0; i < 6; i++) be->free(be, bufs[i]);
    free(w0);
    free(g0);
}
END_TEST

static Suite *optim_suite(void)
{
    Suite *s = suite_create("optim");
    TCase *ref = tcase_create("torch");
    tcase_add_checked_fixture(ref, setup, teardown);
    tcase_add_loop_test(ref, test_torch_trajectory, 0, N_TRAJ);
    tcase_add_loop_test(ref, test_torch_schedule, 0, N_SCHED);
    tcase_add_loop_test(ref, test_torch_clip, 0, 3);
    suite_add_tcase(s, ref);

    TCase *c = tcase_create("pure");
    tcase_add_checked_fixture(c, setup, teardown);
    tcase_add_test(c, test_clip_scales_to_threshold);
    tcase_add_test(c, test_clip_below_threshold_untouched);
    tcase_add_test(c, test_nonfinite_gradient_rejected);
    tcase_add_test(c, test_schedule_closed_form);
    tcase_add_test(c, test_parse);
    tcase_add_test(c, test_state_arenas);
    tcase_add_test(c, test_init_validation);
    tcase_add_test(c, test_sgd_momentum_buffer_starts_at_gradient);
    tcase_add_test(c, test_adam_first_step_is_lr_sized);
    tcase_add_test(c, test_shards_match_whole_arena);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(optim_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed != 0;
}
