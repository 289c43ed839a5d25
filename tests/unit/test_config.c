/* Config loader tests: defaults, a full file, every error class (with the
 * message's FILE:LINE, key and suggestion checked), overrides (global and
 * layer keys), lists, booleans, help, and load -> write -> load round trips.
 *
 * Configs are written by the tests into a fresh temporary directory, so the
 * expected messages can name exact paths and lines. dlt_config is large
 * (the layer array), so it lives on the heap. */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "launcher/config.h"

static char tmpdir[256];
static char path[512];  /* the last config written */
static dlt_config *cfg; /* loaded by load() */

static void setup(void)
{
    cfg = calloc(1, sizeof *cfg);
    ck_assert_ptr_nonnull(cfg);
}

static void teardown(void)
{
    free(cfg);
}

/* Writes text to tmpdir/name and returns its path. */
static const char *write_cfg(const char *name, const char *text)
{
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static dlt_status load(const char *name, const char *text, int n_over, ...)
{
    char *over[8];
    va_list ap;
    va_start(ap, n_over);
    for (int i = 0; i < n_over; i++) over[i] = va_arg(ap, char *);
    va_end(ap);
    return dlt_config_load(write_cfg(name, text), over, n_over, cfg);
}

/* The last error is want, up to the " [file:line]" that DEBUG builds append. */
static void last_error_is(const char *want)
{
    const char *got = dlt_last_error();
    size_t n = strlen(want);
    ck_assert_msg(!strncmp(got, want, n) && (!got[n] || !strncmp(got + n, " [", 2)),
                  "message\n  '%s', expected\n  '%s'", got, want);
}

/* The last error, which must be a config error, equals "PATH:LINE: rest". */
static void expect_msg(dlt_status st, int line, const char *rest)
{
    char want[1024];
    if (line > 0)
        snprintf(want, sizeof want, "%s:%d: %s", path, line, rest);
    else
        snprintf(want, sizeof want, "%s: %s", path, rest);
    ck_assert_int_eq(st, DLT_ERR_CONFIG);
    last_error_is(want);
}

/* The last error is a config error containing every given fragment. */
static void expect_has(dlt_status st, int n, ...)
{
    ck_assert_int_eq(st, DLT_ERR_CONFIG);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *frag = va_arg(ap, const char *);
        ck_assert_msg(strstr(dlt_last_error(), frag), "message '%s' lacks '%s'", dlt_last_error(),
                      frag);
    }
    va_end(ap);
}

#define LAYERS "model:\n  layers:\n    - {type: dense, units: 10}\n"

// clang-format off
static const char *FULL =
    "name: cnn_fashion\n"                                        /*  1 */
    "data:\n"                                                    /*  2 */
    "  train: data/fashion-mnist/train-*.h5\n"                   /*  3 */
    "  test: data/fashion-mnist/test-*.h5\n"                     /*  4 */
    "  mean: [0.2860]\n"                                         /*  5 */
    "  std: [0.3530]\n"                                          /*  6 */
    "model:\n"                                                   /*  7 */
    "  loss: softmax_cross_entropy\n"                            /*  8 */
    "  input: [1, 28, 28]\n"                                     /*  9 */
    "  layers:\n"                                                /* 10 */
    "    - {type: conv2d, name: conv1, filters: 16, kernel: 5, padding: 2}\n" /* 11 */
    "    - {type: relu}\n"                                       /* 12 */
    "    - {type: add, inputs: [conv1, relu1]}\n"                /* 13 */
    "    - type: conv2d\n"                                       /* 14 */
    "      filters: 8\n"                                         /* 15 */
    "      kernel: 3\n"                                          /* 16 */
    "      bias: no\n"                                           /* 17 */
    "    - {type: flatten}\n"                                    /* 18 */
    "    - {type: dropout, rate: 0.25}\n"                        /* 19 */
    "    - {type: dense, units: 10, inputs: dropout1}\n"         /* 20 */
    "train:\n"                                                   /* 21 */
    "  epochs: 3\n"                                              /* 22 */
    "  batch_size: 128\n"                                        /* 23 */
    "  max_steps: 0\n"                                           /* 24 */
    "  seed: 18446744073709551615\n"                             /* 25 */
    "  device: cpu\n"                                            /* 26 */
    "  threads: 2\n"                                             /* 27 */
    "optimizer:\n"                                               /* 28 */
    "  type: adamw\n"                                            /* 29 */
    "  lr: 3.0e-4\n"                                             /* 30 */
    "  momentum: 0.9\n"                                          /* 31 */
    "  nesterov: true\n"                                         /* 32 */
    "  weight_decay: 0.01\n"                                     /* 33 */
    "  beta1: 0.9\n"                                             /* 34 */
    "  beta2: 0.95\n"                                            /* 35 */
    "  eps: 1.0e-8\n"                                            /* 36 */
    "  alpha: 0.99\n"                                            /* 37 */
    "  clip_norm: 1.0\n"                                         /* 38 */
    "schedule:\n"                                                /* 39 */
    "  type: cosine\n"                                           /* 40 */
    "  warmup_steps: 100\n"                                      /* 41 */
    "  step_size: 1000\n"                                        /* 42 */
    "  gamma: 0.5\n"                                             /* 43 */
    "  lr_min: 1e-6\n"                                           /* 44 */
    "eval:\n"                                                    /* 45 */
    "  every_epochs: 2\n"                                        /* 46 */
    "early_stopping:\n"                                          /* 47 */
    "  metric: accuracy\n"                                       /* 48 */
    "  patience: 4\n"                                            /* 49 */
    "  min_delta: 0.001\n"                                       /* 50 */
    "log:\n"                                                     /* 51 */
    "  every: 10\n";                                             /* 52 */
// clang-format on

static const char *kv(const dlt_layer_spec *s, const char *key)
{
    for (int i = 0; i < s->n_kv; i++)
        if (!strcmp(s->kv[i].key, key)) return s->kv[i].val;
    return NULL;
}

/* ---------------------------------------------------------------- values */

START_TEST(test_defaults)
{
    ck_assert_int_eq(load("minimal.yaml", LAYERS, 0), DLT_OK);
    ck_assert_str_eq(cfg->path, path);
    ck_assert_str_eq(cfg->name, "minimal");
    ck_assert_int_eq(strncmp(cfg->run_dir, "runs/minimal-", 13), 0);
    ck_assert_int_eq(strlen(cfg->run_dir), strlen("runs/minimal-YYYYmmdd-HHMMSS"));
    ck_assert_str_eq(cfg->train_data, "");
    ck_assert_str_eq(cfg->test_data, "");
    ck_assert_int_eq(cfg->n_mean, 0);
    ck_assert_int_eq(cfg->n_std, 0);
    ck_assert_int_eq(cfg->n_input, 0);
    ck_assert_str_eq(cfg->loss, "softmax_cross_entropy");
    ck_assert_int_eq(cfg->epochs, 1);
    ck_assert_int_eq(cfg->batch_size, 32);
    ck_assert_int_eq(cfg->max_steps, 0);
    ck_assert_uint_eq(cfg->seed, 42);
    ck_assert_str_eq(cfg->device, "auto");
    ck_assert_int_eq(cfg->threads, 0);
    ck_assert_str_eq(cfg->optimizer, "sgd");
    ck_assert_float_eq(cfg->lr, 0.01f);
    ck_assert_float_eq(cfg->momentum, 0.0f);
    ck_assert_int_eq(cfg->nesterov, 0);
    ck_assert_float_eq(cfg->beta1, 0.9f);
    ck_assert_float_eq(cfg->beta2, 0.999f);
    ck_assert_float_eq(cfg->eps, 1e-8f);
    ck_assert_float_eq(cfg->alpha, 0.99f);
    ck_assert_float_eq(cfg->clip_norm, 0.0f);
    ck_assert_str_eq(cfg->schedule, "constant");
    ck_assert_int_eq(cfg->warmup_steps, 0);
    ck_assert_int_eq(cfg->step_size, 1000);
    ck_assert_float_eq(cfg->gamma, 0.1f);
    ck_assert_int_eq(cfg->eval_every_epochs, 1);
    ck_assert_str_eq(cfg->early_metric, "");
    ck_assert_int_eq(cfg->early_patience, 3);
    ck_assert_int_eq(cfg->log_every, 50);
    ck_assert_int_eq(cfg->n_layers, 1);
    ck_assert_str_eq(cfg->layers[0].name, "dense1");
    ck_assert_int_eq(cfg->layers[0].n_inputs, 0);
    ck_assert_str_eq(kv(&cfg->layers[0], "units"), "10");
    ck_assert_ptr_null(kv(&cfg->layers[0], "bias")); /* defaults are not copied in */
}
END_TEST

START_TEST(test_full_file)
{
    ck_assert_int_eq(load("full.yaml", FULL, 0), DLT_OK);
    ck_assert_str_eq(cfg->name, "cnn_fashion");
    ck_assert_str_eq(cfg->train_data, "data/fashion-mnist/train-*.h5");
    ck_assert_int_eq(cfg->n_mean, 1);
    ck_assert_float_eq(cfg->mean[0], 0.2860f);
    ck_assert_float_eq(cfg->std[0], 0.3530f);
    ck_assert_int_eq(cfg->n_input, 3);
    ck_assert_int_eq(cfg->input[2], 28);
    ck_assert_uint_eq(cfg->seed, UINT64_MAX);
    ck_assert_str_eq(cfg->device, "cpu");
    ck_assert_str_eq(cfg->optimizer, "adamw");
    ck_assert_float_eq(cfg->lr, 3e-4f);
    ck_assert_int_eq(cfg->nesterov, 1);
    ck_assert_float_eq(cfg->beta2, 0.95f);
    ck_assert_str_eq(cfg->schedule, "cosine");
    ck_assert_int_eq(cfg->warmup_steps, 100);
    ck_assert_float_eq(cfg->lr_min, 1e-6f);
    ck_assert_str_eq(cfg->early_metric, "accuracy");
    ck_assert_float_eq(cfg->early_min_delta, 0.001f);
    ck_assert_int_eq(cfg->log_every, 10);

    ck_assert_int_eq(cfg->n_layers, 7);
    const dlt_layer_spec *l = cfg->layers;
    ck_assert_str_eq(l[0].type, "conv2d");
    ck_assert_str_eq(l[0].name, "conv1");
    ck_assert_str_eq(kv(&l[0], "filters"), "16");
    ck_assert_ptr_eq(l[0].file, cfg->path);
    ck_assert_int_eq(l[0].line, 11);
    ck_assert_int_eq(l[0].kv[0].line, 11);
    ck_assert_str_eq(l[1].name, "relu1");
    ck_assert_int_eq(l[2].n_inputs, 2);
    ck_assert_str_eq(l[2].inputs[0], "conv1");
    ck_assert_str_eq(l[2].inputs[1], "relu1");
    /* default names count layers of the type, named ones included */
    ck_assert_str_eq(l[3].name, "conv2d2");
    ck_assert_int_eq(l[3].line, 14);
    ck_assert_str_eq(kv(&l[3], "bias"), "no");
    ck_assert_int_eq(l[3].kv[2].line, 17);
    ck_assert_str_eq(kv(&l[5], "rate"), "0.25");
    ck_assert_int_eq(l[6].n_inputs, 1); /* a single name is a 1-list */
    ck_assert_str_eq(l[6].inputs[0], "dropout1");
}
END_TEST

START_TEST(test_dotted_keys_and_lists)
{
    ck_assert_int_eq(load("dotted.yaml",
                          "optimizer.lr: 0.25\n"
                          "data.mean: 0.5\n" /* a scalar is a 1-list */
                          "data:\n  std: [2]\n"
                          "model.input: [3, 32, 32]\n" LAYERS,
                          0),
                     DLT_OK);
    ck_assert_float_eq(cfg->lr, 0.25f);
    ck_assert_int_eq(cfg->n_mean, 1);
    ck_assert_float_eq(cfg->mean[0], 0.5f);
    ck_assert_float_eq(cfg->std[0], 2.0f);
    ck_assert_int_eq(cfg->n_input, 3);
    ck_assert_int_eq(cfg->input[0], 3);

    expect_msg(load("many.yaml", "data:\n  mean: [1, 2, 3, 4, 5]\n  std: [1]\n" LAYERS, 0), 2,
               "data.mean: at most 4 values, got 5");
    expect_msg(load("std0.yaml", "data:\n  mean: [1, 2]\n  std: [1,\n    0]\n" LAYERS, 0), 4,
               "data.std: 0 is out of range (must be > 0)");
    expect_msg(load("elem.yaml", "data:\n  mean: [1, x]\n  std: [1, 1]\n" LAYERS, 0), 2,
               "data.mean: expected a number, got 'x'");
    expect_msg(load("meanstd.yaml", "data:\n  mean: [0.5, 0.5]\n  std: [0.2]\n" LAYERS, 0), 3,
               "data.std: data.mean and data.std need the same number of values");
}
END_TEST

START_TEST(test_bools)
{
    static const char *const t[] = {"true", "True", "TRUE", "yes", "on", "1"};
    static const char *const f[] = {"false", "False", "no", "NO", "off", "0"};
    char text[256];
    for (int i = 0; i < 6; i++) {
        snprintf(text, sizeof text, "optimizer:\n  momentum: 0.9\n  nesterov: %s\n" LAYERS, t[i]);
        ck_assert_int_eq(load("b.yaml", text, 0), DLT_OK);
        ck_assert_int_eq(cfg->nesterov, 1);
        snprintf(text, sizeof text, "optimizer:\n  momentum: 0.9\n  nesterov: %s\n" LAYERS, f[i]);
        ck_assert_int_eq(load("b.yaml", text, 0), DLT_OK);
        ck_assert_int_eq(cfg->nesterov, 0);
    }
    expect_msg(load("b.yaml", "optimizer:\n  nesterov: maybe\n" LAYERS, 0), 2,
               "optimizer.nesterov: expected true or false, got 'maybe'");
    expect_msg(load("b.yaml", "optimizer:\n  nesterov: [true]\n" LAYERS, 0), 2,
               "optimizer.nesterov: expected true or false, got a sequence");
    /* layer booleans: any of the words, checked */
    ck_assert_int_eq(
        load("b.yaml", "model:\n  layers:\n    - {type: dense, units: 3, bias: off}\n", 0), DLT_OK);
    ck_assert_str_eq(kv(&cfg->layers[0], "bias"), "off");
    expect_msg(load("b.yaml", "model:\n  layers:\n    - {type: dense, units: 3, bias: 2}\n", 0), 3,
               "layer 'dense1' (dense): bias: expected true or false, got '2'");
    /* cross check: Nesterov needs momentum */
    expect_msg(load("b.yaml", "optimizer:\n  nesterov: yes\n" LAYERS, 0), 2,
               "optimizer.nesterov: needs optimizer.momentum > 0");
}
END_TEST

/* ---------------------------------------------------------------- errors */

START_TEST(test_missing_file)
{
    char p[600];
    snprintf(p, sizeof p, "%s/nope.yaml", tmpdir);
    ck_assert_int_eq(dlt_config_load(p, NULL, 0, cfg), DLT_ERR_CONFIG);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot open: No such file or directory", p);
    last_error_is(want);
}
END_TEST

START_TEST(test_syntax_error)
{
    dlt_status st = load("syntax.yaml", "train:\n  epochs: 3\n  batch_size: [1, 2\nlog:\n", 0);
    ck_assert_int_eq(st, DLT_ERR_CONFIG);
    char want[600];
    snprintf(want, sizeof want, "%s:4: YAML syntax error: ", path);
    ck_assert_msg(!strncmp(dlt_last_error(), want, strlen(want)), "got '%s'", dlt_last_error());

    st = load("indent.yaml", "train:\n  epochs: 3\n batch_size: 2\n", 0);
    snprintf(want, sizeof want, "%s:3: YAML syntax error: ", path);
    ck_assert_int_eq(st, DLT_ERR_CONFIG);
    ck_assert_msg(!strncmp(dlt_last_error(), want, strlen(want)), "got '%s'", dlt_last_error());

    /* a self-referencing alias is refused, not followed forever */
    st = load("alias.yaml", "a: &x [1, *x]\n", 0);
    ck_assert_int_eq(st, DLT_ERR_CONFIG);
}
END_TEST

START_TEST(test_unknown_keys)
{
    expect_msg(load("x.yaml", LAYERS "optimizer:\n  type: sgd\n  lrr: 0.1\n", 0), 6,
               "unknown key 'optimizer.lrr' (did you mean 'optimizer.lr'?)");
    /* the right name in the wrong section */
    expect_msg(load("x.yaml", "train:\n  lr: 0.1\n" LAYERS, 0), 2,
               "unknown key 'train.lr' (did you mean 'optimizer.lr'?)");
    expect_msg(load("x.yaml", "optimiser:\n  lr: 0.1\n" LAYERS, 0), 1,
               "unknown key 'optimiser' (did you mean 'optimizer'?)");
    expect_msg(load("x.yaml", "zzzzzzzzzz: 1\n" LAYERS, 0), 1, "unknown key 'zzzzzzzzzz'");
    expect_msg(load("x.yaml", "optimizer: adam\n" LAYERS, 0), 1,
               "optimizer: expected a mapping of keys such as 'optimizer.type', got a scalar");
    expect_msg(load("x.yaml", "log:\n  every: 5\n" LAYERS "log:\n  every: 6\n", 0), 7,
               "duplicate key 'log.every' (first on line 2)");
    expect_msg(load("x.yaml", "- 1\n- 2\n", 0), 1,
               "expected a mapping of keys at the top, got a sequence");
}
END_TEST

START_TEST(test_bad_values)
{
    expect_msg(load("x.yaml", LAYERS "train:\n  epochs: 2\n  batch_size: abc\n", 0), 6,
               "train.batch_size: expected an integer, got 'abc'");
    expect_msg(load("x.yaml", "train:\n  batch_size: 1.5\n" LAYERS, 0), 2,
               "train.batch_size: expected an integer, got '1.5'");
    expect_msg(load("x.yaml", "train:\n  batch_size: 0\n" LAYERS, 0), 2,
               "train.batch_size: 0 is out of range (must be in [1, 16777216])");
    expect_msg(load("x.yaml", "optimizer:\n  lr: 0\n" LAYERS, 0), 2,
               "optimizer.lr: 0 is out of range (must be in (0, 100])");
    expect_msg(load("x.yaml", "optimizer:\n  lr: 1e-60\n" LAYERS, 0), 2,
               "optimizer.lr: 1e-60 is out of range (must be in (0, 100])");
    expect_msg(load("x.yaml", "optimizer:\n  lr: nan\n" LAYERS, 0), 2,
               "optimizer.lr: expected a number, got 'nan'");
    expect_msg(load("x.yaml", "optimizer:\n  beta2: 1\n" LAYERS, 0), 2,
               "optimizer.beta2: 1 is out of range (must be in [0, 1))");
    expect_msg(load("x.yaml", "optimizer:\n  type: adamm\n" LAYERS, 0), 2,
               "optimizer.type: unknown value 'adamm' (one of: sgd, adam, adamw, adagrad, "
               "rmsprop) (did you mean 'adam'?)");
    expect_msg(load("x.yaml", "model:\n  loss: mse2\n  layers: [{type: relu}]\n", 0), 2,
               "model.loss: unknown value 'mse2' (one of: softmax_cross_entropy, mse) (did you "
               "mean 'mse'?)");
    expect_msg(load("x.yaml", "train:\n  seed: -1\n" LAYERS, 0), 2,
               "train.seed: expected a non-negative integer, got '-1'");
    expect_msg(load("x.yaml", "train:\n  epochs:\n    a: 1\n" LAYERS, 0), 3,
               "train.epochs: expected an integer, got a mapping");
    expect_msg(load("x.yaml", "early_stopping:\n  metric: loss\n" LAYERS, 0), 2,
               "early_stopping.metric: needs test data (data.test)");
    expect_has(load("x.yaml", "name: a/b\n" LAYERS, 0), 2, ":1: name: ", "'/'");
}
END_TEST

START_TEST(test_layer_errors)
{
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - {type: dense, units: 4}\n"
                    "    - {type: convv2d, filters: 3}\n",
                    0),
               4, "model.layers.1: unknown layer type 'convv2d' (did you mean 'conv2d'?)");
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - type: conv2d\n      name: c1\n"
                    "      filter: 3\n",
                    0),
               5, "layer 'c1' (conv2d): unknown key 'filter' (did you mean 'filters'?)");
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - {type: relu}\n"
                    "    - {type: conv2d, name: conv1, filters: 3}\n",
                    0),
               4, "layer 'conv1' (conv2d): missing required key 'kernel'");
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - type: conv2d\n      kernel: 3\n"
                    "      filters: abc\n",
                    0),
               5, "layer 'conv2d1' (conv2d): filters: expected an integer, got 'abc'");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: dropout, rate: high}\n", 0), 3,
               "layer 'dropout1' (dropout): rate: expected a number, got 'high'");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {name: x}\n", 0), 3,
               "model.layers.0: missing 'type'");
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - {type: relu, name: a}\n"
                    "    - {type: relu, name: a}\n",
                    0),
               4, "layer 'a' (relu): the name 'a' is already used on line 3");
    expect_msg(load("l.yaml",
                    "model:\n  layers:\n    - {type: relu}\n"
                    "    - {type: relu, inputs: [relu3]}\n",
                    0),
               4,
               "layer 'relu2' (relu): input 'relu3' is neither an earlier layer nor 'input' "
               "(did you mean 'relu1'?)");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu}\n    - {type: add}\n", 0), 4,
               "layer 'add1' (add): takes 2 inputs, got 1 (the previous layer); list them in "
               "inputs");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu, inputs: [input, input]}\n", 0),
               3, "layer 'relu1' (relu): takes 1 input, got 2");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu}\n    - {type: mse}\n", 0), 4,
               "model.layers.1: mse is a loss; set model.loss instead");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu, name: input}\n", 0), 3,
               "layer 'relu1' (relu): name 'input' is reserved for the model input");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu, name: a.b}\n", 0), 3,
               "layer 'relu1' (relu): name 'a.b': use only letters, digits, '_' and '-'");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - [relu]\n", 0), 3,
               "model.layers.0: expected a mapping {type: ..., ...}, got a sequence");
    expect_msg(load("l.yaml", "model:\n  layers:\n    - {type: relu, type: relu}\n", 0), 3,
               "model.layers.0: duplicate key 'type'");
    expect_msg(load("l.yaml", "train:\n  epochs: 1\n", 0), 0,
               "model.layers: at least one layer is required");
    expect_msg(load("l.yaml", "model:\n  layers: []\n", 0), 2,
               "model.layers: at least one layer is required");

    /* accepted: the model input, a resblock's sub-layer, a single input name */
    ck_assert_int_eq(load("l.yaml",
                          "model:\n  layers:\n"
                          "    - {type: conv2d, filters: 4, kernel: 3}\n"
                          "    - {type: resblock, name: b1, filters: 4}\n"
                          "    - {type: add, inputs: [b1.relu1, input]}\n"
                          "    - {type: relu, inputs: conv2d1}\n",
                          0),
                     DLT_OK);
    ck_assert_int_eq(cfg->layers[2].n_inputs, 2);
    ck_assert_str_eq(cfg->layers[3].inputs[0], "conv2d1");
}
END_TEST

/* ---------------------------------------------------------------- overrides */

START_TEST(test_overrides)
{
    ck_assert_int_eq(load("o.yaml", FULL, 8, "optimizer.lr=0.5", "train.batch_size=64",
                          "data.mean=[0.5, 0.25]", "data.std=[1,2]", "model.layers.0.filters=32",
                          "model.layers.4.name=flat", "model.layers.6.inputs=[flat]",
                          "optimizer.nesterov=no"),
                     DLT_OK);
    ck_assert_float_eq(cfg->lr, 0.5f);
    ck_assert_int_eq(cfg->batch_size, 64);
    ck_assert_int_eq(cfg->n_mean, 2);
    ck_assert_float_eq(cfg->mean[1], 0.25f);
    ck_assert_str_eq(kv(&cfg->layers[0], "filters"), "32");
    ck_assert_int_eq(cfg->layers[0].kv[0].line, 0); /* set by an override */
    ck_assert_str_eq(cfg->layers[4].name, "flat");
    ck_assert_str_eq(cfg->layers[6].inputs[0], "flat");
    ck_assert_int_eq(cfg->nesterov, 0);

    /* an override may supply a key the file lacks; "" clears a string */
    ck_assert_int_eq(load("o.yaml",
                          "data:\n  test: t.h5\nmodel:\n  layers:\n"
                          "    - {type: conv2d, filters: 3}\n",
                          3, "model.layers.0.kernel=5", "data.test=", "name=renamed"),
                     DLT_OK);
    ck_assert_str_eq(kv(&cfg->layers[0], "kernel"), "5");
    ck_assert_str_eq(cfg->test_data, "");
    ck_assert_str_eq(cfg->name, "renamed");
    ck_assert_int_eq(strncmp(cfg->run_dir, "runs/renamed-", 13), 0);

    expect_has(load("o.yaml", LAYERS, 1, "train.batch_size=abc"), 1,
               "override 'train.batch_size=abc': train.batch_size: expected an integer, got 'abc'");
    last_error_is("override 'train.batch_size=abc': train.batch_size: expected an integer, "
                  "got 'abc'");
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "optimizer.lrr=0.1"), DLT_ERR_CONFIG);
    last_error_is("override 'optimizer.lrr=0.1': unknown key 'optimizer.lrr' (did you mean "
                  "'optimizer.lr'?)");
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "train.epochs=0"), DLT_ERR_CONFIG);
    last_error_is("override 'train.epochs=0': train.epochs: 0 is out of "
                  "range (must be in [1, 1000000])");
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "model.layers.0.unitz=3"), DLT_ERR_CONFIG);
    last_error_is("override 'model.layers.0.unitz=3': layer 'dense1' "
                  "(dense): unknown key 'unitz' (did you mean 'units'?)");
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "model.layers.0.units=x"), DLT_ERR_CONFIG);
    last_error_is("override 'model.layers.0.units=x': layer 'dense1' "
                  "(dense): units: expected an integer, got 'x'");
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "model.layers.3.units=3"), DLT_ERR_CONFIG);
    last_error_is("override 'model.layers.3.units=3': model.layers.3: no "
                  "such layer (there are 1, numbered from 0)");
    expect_has(load("o.yaml", LAYERS, 1, "model.layers.0.type=relu"), 2,
               "override 'model.layers.0.type=relu'", "cannot be overridden");
    expect_has(load("o.yaml", LAYERS, 1, "model.layers=[]"), 1, "model.layers.N.KEY=VALUE");
    expect_has(load("o.yaml", LAYERS, 1, "optimizer.lr"), 2, "override 'optimizer.lr'",
               "expected KEY=VALUE");
    expect_has(load("o.yaml", LAYERS, 1, "data.mean=[1, 2"), 2, "override 'data.mean=[1, 2'",
               "YAML syntax error");
    /* checks after overrides name the override that caused them */
    ck_assert_int_eq(load("o.yaml", LAYERS, 1, "data.std=[1]"), DLT_ERR_CONFIG);
    last_error_is("override 'data.std=[1]': data.std: data.mean and "
                  "data.std need the same number of values");
}
END_TEST

/* ---------------------------------------------------------------- write / help */

/* Loads the current path with overrides, writes it, loads the result, and
 * checks both structs are equal apart from path, spec.file and lines. */
static void round_trip(int n_over, char **over)
{
    ck_assert_int_eq(dlt_config_load(path, over, n_over, cfg), DLT_OK);
    char out[600];
    snprintf(out, sizeof out, "%s/written.yaml", tmpdir);
    FILE *f = fopen(out, "w");
    ck_assert_ptr_nonnull(f);
    dlt_config_write(cfg, f);
    fclose(f);
    dlt_config *b = calloc(1, sizeof *b);
    ck_assert_ptr_nonnull(b);
    dlt_status st = dlt_config_load(out, NULL, 0, b);
    ck_assert_msg(st == DLT_OK, "reloading the written config: %s", dlt_last_error());
    ck_assert_str_eq(b->path, out);
    for (dlt_config *c = cfg; c; c = c == cfg ? b : NULL) {
        memset(c->path, 0, sizeof c->path);
        for (int i = 0; i < c->n_layers; i++) {
            c->layers[i].file = NULL;
            c->layers[i].line = 0;
            for (int j = 0; j < c->layers[i].n_kv; j++) c->layers[i].kv[j].line = 0;
        }
    }
    ck_assert_str_eq(b->name, cfg->name);
    ck_assert_str_eq(b->run_dir, cfg->run_dir);
    ck_assert_int_eq(b->n_layers, cfg->n_layers);
    ck_assert_float_eq(b->eps, cfg->eps);
    ck_assert_msg(memcmp(b, cfg, sizeof *b) == 0, "the reloaded config differs");
    free(b);
}

START_TEST(test_round_trip)
{
    write_cfg("rt.yaml", FULL);
    round_trip(0, NULL);
    /* awkward strings and floats, and override-set values */
    write_cfg("rt2.yaml", "run_dir: \"out/we\\\"ird: #dir\\\\x\"\n"
                          "data:\n  train: 'a b/*.h5'\n  test: \"\"\n"
                          "optimizer:\n  lr: 0.1\n  eps: 1.0e-7\n  weight_decay: 3.3333333\n"
                          "train:\n  max_steps: 123456789012\n"
                          "model:\n  loss: mse\n  layers:\n"
                          "    - {type: dense, units: 7, bias: yes}\n"
                          "    - {type: gelu}\n"
                          "    - {type: add, name: sum-1, inputs: [input, gelu1]}\n");
    char *over[] = {"optimizer.momentum=0.123456789", "data.mean=[-1.5e-3, 7, 0.1, 1e30]",
                    "data.std=[1, 2, 3, 4]", "model.layers.0.units=9", "model.input=[5]"};
    round_trip(5, over);
}
END_TEST

START_TEST(test_help)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ck_assert_ptr_nonnull(f);
    dlt_config_help(f);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "optimizer.lr"));
    ck_assert_ptr_nonnull(strstr(buf, "peak learning rate"));
    ck_assert_ptr_nonnull(strstr(buf, "one of: sgd, adam, adamw, adagrad, rmsprop"));
    ck_assert_ptr_nonnull(strstr(buf, "early_stopping.patience"));
    ck_assert_ptr_nonnull(strstr(buf, "model.layers"));
    ck_assert_ptr_nonnull(strstr(buf, "  conv2d (1 input)"));
    ck_assert_ptr_nonnull(strstr(buf, "  add (2 inputs)"));
    ck_assert_ptr_nonnull(strstr(buf, "filters"));
    ck_assert_ptr_nonnull(strstr(buf, "(required)"));
    free(buf);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_full_file);
    tcase_add_test(tc, test_dotted_keys_and_lists);
    tcase_add_test(tc, test_bools);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_syntax_error);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_bad_values);
    tcase_add_test(tc, test_layer_errors);
    tcase_add_test(tc, test_overrides);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_help);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dlt_test_config_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    SRunner *sr = srunner_create(config_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return failed != 0;
}
