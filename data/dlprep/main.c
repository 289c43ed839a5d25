/* dlprep: turns raw data into the HDF5 shards dltrain reads.
 *
 *   dlprep fashion-mnist [OUTDIR] [--shard-size N] [--source DIR]
 *   dlprep synthetic OUTDIR --n N --shape C,H,W --classes K --seed S
 *                           [--test-n M] [--shard-size N]
 *
 * The commands live in their own files behind dlprep.h; this file only
 * parses the command line (a small table of options per command, accepting
 * `--opt V` and `--opt=V`), runs the command and turns a failure into one
 * line on stderr and exit status 1 (2 for usage errors). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dlprep/dlprep.h"

#define DEFAULT_SHARD_SIZE 10000
#define FM_DEFAULT_SOURCE "/usr/share/datasets/fashion-mnist"
#define FM_DEFAULT_OUT "data/fashion-mnist"

static void usage(FILE *to)
{
    fprintf(to,
            "usage: dlprep COMMAND [ARGS]\n"
            "\n"
            "Writes image data sets as HDF5 shards (images uint8 [N,C,H,W], labels int64 [N])\n"
            "named OUTDIR/train-00000.h5, ... and OUTDIR/test-00000.h5, ...\n"
            "\n"
            "commands:\n"
            "  fashion-mnist [OUTDIR]   Fashion-MNIST from the Debian package dataset-fashion-mnist\n"
            "                           (OUTDIR default " FM_DEFAULT_OUT ")\n"
            "      --source DIR         directory of the four *-ubyte.gz files\n"
            "                           (default " FM_DEFAULT_SOURCE ")\n"
            "      --shard-size N       samples per shard (default %d)\n"
            "  synthetic OUTDIR         learnable random images: per-class gratings + noise\n"
            "      --n N                train samples (required)\n"
            "      --shape C,H,W        sample shape (required), e.g. 1,28,28\n"
            "      --classes K          number of classes (required)\n"
            "      --seed S             random seed (default 0)\n"
            "      --test-n M           test samples (default N/6; 0: no test split)\n"
            "      --shard-size N       samples per shard (default %d)\n"
            "  text OUTDIR              vocabulary + token shards (tokens int32 [N,L]) from text\n"
            "      --corpus wordnet|FILE  WordNet glosses (wordnet-base) or one unit per line (default wordnet)\n"
            "      --vocab word|wordpiece  vocabulary kind (default word)\n"
            "      --vocab-size N       ids incl. [PAD] [UNK] [CLS] [SEP] [MASK] (default 10000)\n"
            "      --min-count N        drop rarer words (default 2)\n"
            "      --seq-len L          tokens per row (default 32)\n"
            "      --layout sentences|stream  one unit per row, or one running text (default sentences)\n"
            "      --labels lexname|pos|none  WordNet labels of each gloss (default lexname)\n"
            "      --test-frac F        held-out fraction (default 0.05)\n"
            "      --max-units N        use only the first N units (0: all)\n"
            "      --seed S, --shard-size N\n"
            "  preview CONFIG.yaml|SHARDS OUT.png  PNG grid of training samples after the config's\n"
            "                           data.augment.* (shards alone: as stored); --n N (64), --epoch E\n"
            "  scan SHARDS              time one loader epoch: --batch B --threads T --prefetch D\n"
            "                           --augment flip,rrc,crop,rotate,jitter,noise,cutout\n"
            "                           --shuffle-block N --max-steps S --cache-mb M --max-open F\n"
            "  help                     this text\n",
            DEFAULT_SHARD_SIZE, DEFAULT_SHARD_SIZE);
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "dlprep: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see dlprep --help)\n");
    return 2;
}

/* Parses a whole decimal integer in [lo, hi]; 0 on failure. */
static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    char *end;
    if (!s || !*s) return 0;
    long long x = strtoll(s, &end, 10);
    if (*end || x < lo || x > hi) return 0;
    *v = x;
    return 1;
}

/* Options: name, and where the value goes (a string). */
typedef struct {
    const char *name;
    const char **value;
} opt;

/* Splits argv into options from the table and up to max_pos positionals. */
static int parse_args(int argc, char **argv, opt *opts, int nopts, const char **pos, int max_pos,
                      int *npos)
{
    *npos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            if (*npos == max_pos) return usage_error("unexpected argument '%s'", a);
            pos[(*npos)++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        int found = 0;
        for (int k = 0; k < nopts && !found; k++) {
            if (strlen(opts[k].name) != len || strncmp(a, opts[k].name, len) != 0) continue;
            found = 1;
            if (eq) {
                *opts[k].value = eq + 1;
            } else if (i + 1 < argc) {
                *opts[k].value = argv[++i];
            } else {
                return usage_error("option %s needs a value", opts[k].name);
            }
        }
        if (!found) return usage_error("unknown option '%s'", a);
    }
    return 0;
}

static int shard_size(const char *s, int64_t *v)
{
    *v = DEFAULT_SHARD_SIZE;
    if (s && !parse_i64(s, 1, INT32_MAX, v))
        return usage_error("--shard-size must be a positive integer, got '%s'", s);
    return 0;
}

static int run(dlt_status st)
{
    if (st == DLT_OK) return 0;
    fprintf(stderr, "dlprep: %s\n", dlt_last_error());
    return 1;
}

static int cmd_fashion_mnist(int argc, char **argv)
{
    const char *source = FM_DEFAULT_SOURCE, *shard = NULL, *pos[1] = { FM_DEFAULT_OUT };
    opt opts[] = { { "--source", &source }, { "--shard-size", &shard } };
    int npos, rc;
    if ((rc = parse_args(argc, argv, opts, 2, pos, 1, &npos))) return rc;
    dlt_prep_out out = { pos[0], 0 };
    if ((rc = shard_size(shard, &out.shard_size))) return rc;
    return run(dlt_prep_fashion_mnist(&out, source));
}

static int cmd_synthetic(int argc, char **argv)
{
    const char *n = NULL, *shape = NULL, *classes = NULL, *seed = "0", *test_n = NULL;
    const char *shard = NULL, *pos[1] = { NULL };
    opt opts[] = { { "--n", &n },         { "--shape", &shape },     { "--classes", &classes },
                   { "--seed", &seed },   { "--test-n", &test_n },   { "--shard-size", &shard } };
    int npos, rc;
    if ((rc = parse_args(argc, argv, opts, 6, pos, 1, &npos))) return rc;
    if (npos != 1) return usage_error("synthetic needs an output directory%s", "");
    dlt_prep_out out = { pos[0], 0 };
    if ((rc = shard_size(shard, &out.shard_size))) return rc;

    dlt_prep_synth_cfg cfg = { 0 };
    int64_t v;
    if (!n || !parse_i64(n, 1, INT32_MAX, &cfg.n))
        return usage_error("--n must be a positive integer, got '%s'", n ? n : "(none)");
    cfg.test_n = cfg.n / 6 > 0 ? cfg.n / 6 : 1;
    if (test_n && !parse_i64(test_n, 0, INT32_MAX, &cfg.test_n))
        return usage_error("--test-n must be an integer >= 0, got '%s'", test_n);
    if (!classes || !parse_i64(classes, 1, 100000, &v))
        return usage_error("--classes must be in 1..100000, got '%s'", classes ? classes : "(none)");
    cfg.classes = (int)v;
    int c, h, w, used = 0;
    if (!shape || sscanf(shape, "%d,%d,%d%n", &c, &h, &w, &used) != 3 || shape[used] || c < 1 ||
        h < 1 || w < 1 || c > 4096 || h > 4096 || w > 4096)
        return usage_error("--shape must be C,H,W with each in 1..4096, got '%s'",
                           shape ? shape : "(none)");
    cfg.c = c;
    cfg.h = h;
    cfg.w = w;
    char *end;
    cfg.seed = strtoull(seed, &end, 0);
    if (!*seed || *end) return usage_error("--seed must be an unsigned integer, got '%s'", seed);
    return run(dlt_prep_synthetic(&out, &cfg));
}

static int cmd_text(int argc, char **argv)
{
    const char *corpus = "wordnet", *vocab = "word", *vsize = "10000", *minc = "2", *L = "32";
    const char *layout = "sentences", *labels = "lexname", *frac = "0.05", *seed = "0", *maxu = "0";
    const char *shard = NULL, *wn = "/usr/share/wordnet", *pos[1] = { NULL };
    opt opts[] = { { "--corpus", &corpus }, { "--vocab", &vocab },   { "--vocab-size", &vsize },
                   { "--min-count", &minc }, { "--seq-len", &L },    { "--layout", &layout },
                   { "--labels", &labels },  { "--test-frac", &frac }, { "--seed", &seed },
                   { "--max-units", &maxu }, { "--shard-size", &shard }, { "--wordnet-dir", &wn } };
    int npos, rc;
    if ((rc = parse_args(argc, argv, opts, 12, pos, 1, &npos))) return rc;
    if (npos != 1) return usage_error("text needs an output directory%s", "");
    dlt_prep_text_cfg c = { .outdir = pos[0], .corpus = corpus, .wordnet_dir = wn, .layout = layout,
                            .labels = labels };
    int64_t v;
    if (strcmp(vocab, "word") && strcmp(vocab, "wordpiece"))
        return usage_error("--vocab must be word or wordpiece, got '%s'", vocab);
    c.wordpiece = !strcmp(vocab, "wordpiece");
    if (!parse_i64(vsize, 6, 10000000, &v)) return usage_error("--vocab-size must be in 6..10000000, got '%s'", vsize);
    c.vocab_size = (int)v;
    if (!parse_i64(minc, 1, INT32_MAX, &v)) return usage_error("--min-count must be >= 1, got '%s'", minc);
    c.min_count = (int)v;
    if (!parse_i64(L, 4, 65536, &v)) return usage_error("--seq-len must be in 4..65536, got '%s'", L);
    c.seq_len = (int)v;
    if (strcmp(layout, "sentences") && strcmp(layout, "stream"))
        return usage_error("--layout must be sentences or stream, got '%s'", layout);
    if (strcmp(labels, "lexname") && strcmp(labels, "pos") && strcmp(labels, "none"))
        return usage_error("--labels must be lexname, pos or none, got '%s'", labels);
    char *end;
    c.test_frac = strtod(frac, &end);
    if (!*frac || *end || !(c.test_frac >= 0 && c.test_frac < 1))
        return usage_error("--test-frac must be in [0, 1), got '%s'", frac);
    if (!parse_i64(maxu, 0, INT32_MAX, &c.max_units)) return usage_error("--max-units must be >= 0, got '%s'", maxu);
    c.seed = strtoull(seed, &end, 0);
    if (!*seed || *end) return usage_error("--seed must be an unsigned integer, got '%s'", seed);
    if ((rc = shard_size(shard, &c.shard_size))) return rc;
    if (!shard) c.shard_size = 100000;
    return run(dlt_prep_text(&c));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    for (int i = 2; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    if (!strcmp(cmd, "fashion-mnist")) return cmd_fashion_mnist(argc - 2, argv + 2);
    if (!strcmp(cmd, "synthetic")) return cmd_synthetic(argc - 2, argv + 2);
    if (!strcmp(cmd, "text")) return cmd_text(argc - 2, argv + 2);
    if (!strcmp(cmd, "preview")) return dlt_prep_cmd_preview(argc - 2, argv + 2);
    if (!strcmp(cmd, "scan")) return dlt_prep_cmd_scan(argc - 2, argv + 2);
    return usage_error("unknown command '%s'; commands: fashion-mnist, synthetic, text, preview, scan",
                       cmd);
}
